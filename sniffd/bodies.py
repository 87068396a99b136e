"""Body capture (pure, optional): keep the start of a message body, decoded
and redacted, as a JSON-ready value.

Off by default: the caller decides, per message, whether to call ``start``.
Bodies are where the data is (form posts, API payloads), so they are worth
having when debugging; they are also where the secrets and the size are, so
every step is bounded and redaction happens before anything leaves here.

Call order, per message::

    buf = capture.start(headers)      # None: content type not captured
    buf.feed(chunk) ...               # body bytes in order, after de-chunking
    buf.gap(n)                        # optional: n body bytes lost to a capture gap
    value = buf.finish()              # once; the dict below

``finish()`` returns::

    {"encoding": "utf-8" | "base64" | None, "data": str | None,
     "bytes": int, "truncated": bool, "gap": bool,
     "content_encoding": str | None, "decoded": bool, "decode_error": str | None,
     "decoded_truncated": bool, "redacted": bool}

- ``bytes``: raw (still content-encoded) bytes kept, at most
  ``max_body_bytes``; ``truncated``: more raw bytes came than that.
- ``gap``: body bytes were lost to a capture gap; nothing after the gap is
  kept, since the bytes on either side of a hole spliced together would decode
  to garbage or, worse, to plausible but wrong content.
- ``content_encoding``: the Content-Encoding as sent, lowercased (``x-gzip``
  as ``gzip``, RFC 9110 section 8.4.1.3), None when absent or ``identity``.
- ``decoded``: ``data`` holds the decoded content (True also when there was
  nothing to decode); False: ``data`` holds the raw bytes as sent.
- ``decode_error``: why decoding did not end cleanly: ``unsupported_encoding``
  (anything but gzip, deflate, br; no data transcoding of chains either),
  ``corrupt`` (the decompressor rejected the data; ``decoded`` is False), or
  ``incomplete`` (the compressed stream stopped before its end although
  neither ``truncated`` nor ``gap`` explains it; ``data`` is what decoded).
  A stream cut by ``max_body_bytes`` or a gap decodes as far as it goes and is
  not an error.
- ``decoded_truncated``: decoding stopped at ``max_decoded_bytes`` with more
  to come: a decompression bomb, or just a large body.
- ``encoding``: ``utf-8`` when the data is UTF-8 text (valid UTF-8 without
  control characters other than tab, LF, FF, CR: NULs and other controls are
  binary, and would cost six bytes each as JSON escapes); else ``base64``.
  When the data was cut by a cap, an incomplete UTF-8 sequence at the cut (at
  most 3 bytes) is dropped from the text.
- ``redacted``: secrets were replaced (``Redactor.json_text`` for JSON bodies,
  ``application/json`` and ``*/*+json``; ``Redactor.form`` for form bodies;
  ``Redactor.xml_text`` for XML bodies, ``application/xml``, ``text/xml`` and
  ``*/*+xml``: SOAP WS-Security passwords and the like), or withheld: a JSON,
  form or XML body that could not be decoded cannot be searched for secrets,
  so its data is not kept (``data`` and ``encoding`` None); nor is an XML body
  with NUL bytes (UTF-16 or UTF-32, which the scan cannot read).
  Other text (HTML, JavaScript, plain text) is kept as sent: it may hold
  secrets too; capture it knowingly.

Invalid JSON (a body cut by ``max_body_bytes``, or just broken) is kept and
still redacted: ``Redactor.json_text`` scans the text for member names rather
than parsing it, and a secret member whose value runs past the cut is
tokenised to the end.  Valid JSON is not re-serialised, so ``data`` is the
body as sent apart from the redacted values.

Memory.  Decompression runs in ``finish`` in steps of at most
``_STEP_BYTES`` output (``zlib.decompressobj().decompress(data, max_length)``,
``brotli.Decompressor.process(data, output_buffer_limit=...)``) and stops at
``max_decoded_bytes``, so a bomb (1 GB of zeros in 1 MB of gzip, or more in
brotli) costs at most ``max_decoded_bytes`` of output and CPU in proportion.
Turning the output into one ``str`` needs the bytes and the string at once:
peak Python allocation is about 2x ``max_decoded_bytes`` for text, 2.75x for
base64, 3x for a JSON body that gets redacted (the text, the pieces and the
result).  Brotli's own window (up to 16 MiB, chosen by the sender, RFC 7932
section 9.1) is allocated by the C library outside Python's allocator.

Sans-I/O: no clock, no files, no threads; ``finish`` never raises because of
what the body contained.
"""

from __future__ import annotations

import binascii
import codecs
import re
import zlib
from fnmatch import fnmatchcase

import brotli

from sniffd.redact import Redactor

# Why 64 KiB: enough for nearly every form post and API payload, and the
# whole of a gzip bomb of over 60 MB of output; 1000 open messages cost 64 MB.
DEFAULT_MAX_BODY_BYTES = 64 * 1024
# Why 1 MiB: 16x the raw cap, above typical compression ratios of text (5-10x)
# so real bodies decode whole, far below what a bomb would expand to.
DEFAULT_MAX_DECODED_BYTES = 1024 * 1024
# Media types worth reading in a log: text, and the structured text formats
# APIs use.  Images, video, archives and octet streams are not.
DEFAULT_CONTENT_TYPES: tuple[str, ...] = (
    "text/*",
    "application/json",
    "application/*+json",
    "application/x-www-form-urlencoded",
    "application/xml",
    "application/*+xml",
    "application/javascript",
)

# Output per decompression step.  Small enough that a step's buffer is noise
# next to the cap; large enough that the Python loop costs little.  (brotli
# hands back at least one ~32 KiB block whatever limit it is given.)
_STEP_BYTES = 32 * 1024
# Controls that do not occur in text (tab, LF, FF and CR do).
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _brotli_is_bounded() -> bool:
    """brotli >= 1.2.0 can cap the output of one ``process`` call; older
    versions cannot, and a single input byte can expand to megabytes."""
    try:
        brotli.Decompressor().process(b"", output_buffer_limit=1)
    except TypeError:
        return False
    return True


def _header(headers: dict[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def _media_type(content_type: str | None) -> str | None:
    """``"Text/HTML; charset=utf-8"`` -> ``"text/html"`` (RFC 9110 section
    8.3.1); the first of several joined values."""
    if content_type is None:
        return None
    media = content_type.split(",", 1)[0].split(";", 1)[0].strip(" \t").lower()
    return media or None


def _content_coding(value: str | None) -> str | None:
    if value is None:
        return None
    codings = [c.strip(" \t").lower() for c in value.split(",")]
    codings = ["gzip" if c == "x-gzip" else c for c in codings if c and c != "identity"]
    return ", ".join(codings) or None


class _Inflated:
    """Output of a bounded decompression."""

    __slots__ = ("chunks", "more", "error", "complete")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.more = False  # output stopped at the cap with more to come
        self.error: str | None = None  # "corrupt"
        self.complete = False  # the compressed stream reached its end


def _inflate_zlib(data: bytes, wbits: int, cap: int) -> _Inflated:
    """zlib/gzip/raw deflate, never more than ``cap`` bytes of output.
    Concatenated gzip members (RFC 1952 section 2.2) are decoded in turn."""
    r = _Inflated()
    total = 0
    d = zlib.decompressobj(wbits)
    buf = data
    try:
        while True:
            want = min(_STEP_BYTES, cap - total)
            if want == 0:
                if not d.eof:
                    r.more = bool(d.decompress(buf, 1))
                else:
                    r.complete = True
                    r.more = wbits == 31 and d.unused_data[:2] == b"\x1f\x8b"
                return r
            out = d.decompress(buf, want)
            progress = bool(out) or len(d.unconsumed_tail) < len(buf)
            buf = d.unconsumed_tail
            if out:
                r.chunks.append(out)
                total += len(out)
            if d.eof:
                rest = d.unused_data
                if wbits == 31 and rest[:2] == b"\x1f\x8b":
                    d, buf = zlib.decompressobj(wbits), rest
                    continue
                # Bytes after the end of the stream are ignored, as gzip(1)
                # ignores trailing garbage with a warning.
                r.complete = True
                return r
            if not buf and not out or not progress:
                return r  # input used up before the end of the stream
    except zlib.error:
        r.error = "corrupt"
        return r


def _inflate_brotli(data: bytes, cap: int) -> _Inflated:
    """Brotli (RFC 7932), never more than ``cap`` bytes of output kept; each
    ``process`` call is limited to about ``_STEP_BYTES`` of output."""
    r = _Inflated()
    total = 0
    d = brotli.Decompressor()
    try:
        out = d.process(data, output_buffer_limit=min(_STEP_BYTES, cap) or 1)
        while True:
            room = cap - total
            if len(out) > room:
                out, r.more = out[:room], True
            if out:
                r.chunks.append(out)
                total += len(out)
            if d.is_finished():
                r.complete = True
                return r
            if r.more or d.can_accept_more_data():
                return r  # cap reached, or input used up before the end
            if total >= cap:
                r.more = bool(d.process(b"", output_buffer_limit=1))
                return r
            out = d.process(b"", output_buffer_limit=min(_STEP_BYTES, cap - total))
    except brotli.error:
        r.error = "corrupt"
        return r


def _text(data: bytes, cut: bool) -> str | None:
    """``data`` as text when it is UTF-8 text (see the module docstring),
    else None.  ``cut``: the data was cut by a cap, so an incomplete sequence
    at its end is expected and dropped."""
    if _CONTROL_BYTES.search(data):
        return None
    try:
        text, used = codecs.utf_8_decode(data, "strict", False)
    except UnicodeDecodeError:
        return None
    if used == len(data) or (cut and len(data) - used <= 3):
        return text
    return None


def _base64(box: list[bytes]) -> str:
    """Base64 of the bytes in ``box``, which are taken out and freed before
    the ASCII becomes a str.  Encoded a step at a time into a buffer of the
    exact size: ``binascii.b2a_base64`` on the whole would allocate twice the
    input before trimming.  Peak: 1 + 4/3 times the input while encoding,
    4/3 + 4/3 while the str is made."""
    data = box.pop()
    n = len(data)
    out = bytearray(4 * ((n + 2) // 3))
    step = 3 * _STEP_BYTES  # a multiple of 3: no padding inside
    with memoryview(data) as mv:
        j = 0
        for i in range(0, n, step):
            piece = binascii.b2a_base64(mv[i : i + step], newline=False)
            out[j : j + len(piece)] = piece
            j += len(piece)
    del data
    return out.decode("ascii")


class BodyCapture:
    """Settings for body capture, and the factory of one ``BodyBuffer`` per
    message.

    ``max_body_bytes``: raw (still content-encoded) bytes kept per message.
    ``max_decoded_bytes``: hard cap on the decompressed size.
    ``content_types``: media type patterns captured (``fnmatch`` style:
    ``text/*``, ``application/*+json``; any case).  ``redactor``: applied to
    JSON, form and XML bodies; None keeps bodies as sent (only where no
    credential can appear).  ``json_keys``: JSON member names redacted at any depth
    (default: the redactor's ``params``).

    Bad configuration raises ``ValueError`` naming the argument; a brotli
    too old to bound its output raises ``RuntimeError``.
    """

    def __init__(
        self,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
        content_types: tuple[str, ...] | frozenset[str] = DEFAULT_CONTENT_TYPES,
        redactor: Redactor | None = None,
        json_keys: frozenset[str] | None = None,
    ) -> None:
        for name, v in (("max_body_bytes", max_body_bytes), ("max_decoded_bytes", max_decoded_bytes)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0 (got {v!r})")
        if isinstance(content_types, str) or not all(isinstance(t, str) and t.count("/") == 1 for t in content_types):
            raise ValueError("content_types must be a list of media types such as 'text/*' or 'application/json'")
        if json_keys is not None and (
            isinstance(json_keys, str) or not all(isinstance(k, str) and k for k in json_keys)
        ):
            raise ValueError("json_keys must be a set of non-empty names")
        if not _brotli_is_bounded():
            raise RuntimeError(
                "body capture needs brotli >= 1.2.0 (Decompressor.process(output_buffer_limit=...)) "
                f"to bound decompression; installed: {getattr(brotli, '__version__', 'unknown')}"
            )
        self.max_body_bytes = max_body_bytes
        self.max_decoded_bytes = max_decoded_bytes
        self.content_types: tuple[str, ...] = tuple(t.strip().lower() for t in content_types)
        self.redactor = redactor
        self.json_keys: frozenset[str] | None = (
            frozenset(json_keys) if json_keys is not None else (redactor.params if redactor else None)
        )

    def allows(self, media_type: str | None) -> bool:
        return media_type is not None and any(fnmatchcase(media_type, p) for p in self.content_types)

    def start(self, headers: dict[str, str]) -> BodyBuffer | None:
        """A buffer for the body of the message with these header fields, or
        None when its media type is not captured (no Content-Type: not
        captured, since there is nothing to say it is text)."""
        media = _media_type(_header(headers, "content-type"))
        if not self.allows(media):
            return None
        assert media is not None
        if media == "application/json" or media.endswith("+json"):
            kind = "json"
        elif media == "application/x-www-form-urlencoded":
            kind = "form"
        elif media in ("application/xml", "text/xml") or media.endswith("+xml"):
            kind = "xml"  # SOAP 1.1 is text/xml, SOAP 1.2 application/soap+xml
        else:
            kind = "other"
        return BodyBuffer(self, kind, _content_coding(_header(headers, "content-encoding")))


class BodyBuffer:
    """One message's body: ``feed`` the bytes, then ``finish`` once."""

    __slots__ = ("_cap", "_kind", "_coding", "_buf", "truncated", "gap_seen", "dropped_bytes", "_done")

    def __init__(self, capture: BodyCapture, kind: str, coding: str | None) -> None:
        self._cap = capture
        self._kind = kind
        self._coding = coding
        self._buf = bytearray()
        self.truncated = False
        self.gap_seen = False
        self.dropped_bytes = 0  # bytes fed but not kept (past the cap or a gap)
        self._done = False

    def feed(self, chunk: bytes) -> None:
        """Keeps bytes up to ``max_body_bytes``; counts the rest."""
        if self._done:
            raise RuntimeError("BodyBuffer.feed after finish")
        room = 0 if self.gap_seen else self._cap.max_body_bytes - len(self._buf)
        if len(chunk) > room:
            if not self.gap_seen:
                self.truncated = True
            self.dropped_bytes += len(chunk) - max(room, 0)
            chunk = chunk[: max(room, 0)]
        self._buf += chunk

    @property
    def held_bytes(self) -> int:
        """Raw bytes held until ``finish`` (for a memory meter)."""
        return len(self._buf)

    def gap(self, missed_bytes: int) -> None:
        """``missed_bytes`` of the body were lost; nothing after is kept."""
        if missed_bytes > 0:
            self.gap_seen = True

    def finish(self) -> dict:
        """The JSON-ready value described in the module docstring."""
        if self._done:
            raise RuntimeError("BodyBuffer.finish called twice")
        self._done = True
        raw = bytes(self._buf)
        self._buf = bytearray()
        value = {
            "encoding": None,
            "data": None,
            "bytes": len(raw),
            "truncated": self.truncated,
            "gap": self.gap_seen,
            "content_encoding": self._coding,
            "decoded": True,
            "decode_error": None,
            "decoded_truncated": False,
            "redacted": False,
        }
        cut = self.truncated or self.gap_seen
        data = raw
        if self._coding is not None and raw:
            cap = self._cap.max_decoded_bytes
            if self._coding == "gzip":
                r = _inflate_zlib(raw, 31, cap)
            elif self._coding == "deflate":
                # RFC 9110 section 8.4.1.2 says zlib format (RFC 1950), but
                # some servers send raw deflate (RFC 1951).  A zlib header is
                # CM=8 and a multiple of 31 (RFC 1950 section 2.2).
                zlib_header = len(raw) >= 2 and raw[0] & 0x0F == 8 and (raw[0] << 8 | raw[1]) % 31 == 0
                r = _inflate_zlib(raw, 15 if zlib_header else -15, cap)
            elif self._coding == "br":
                r = _inflate_brotli(raw, cap)
            else:
                r = None
                value["decoded"], value["decode_error"] = False, "unsupported_encoding"
            if r is not None:
                if r.error:
                    value["decoded"], value["decode_error"] = False, r.error
                else:
                    more, complete, chunks = r.more, r.complete, r.chunks
                    del r
                    raw = data = b""  # free the raw bytes before the join
                    data = b"".join(chunks)
                    del chunks
                    value["decoded_truncated"] = more
                    if not complete and not cut and not more:
                        value["decode_error"] = "incomplete"
                    cut = cut or more
        del raw
        # Hand the only reference over, so _fill can free the bytes as soon as
        # their text exists (memory peak: see the module docstring).
        box = [data]
        del data
        self._fill(value, box, cut)
        return value

    def _fill(self, value: dict, box: list[bytes], cut: bool) -> None:
        """Redacts the data in ``box`` (taken out of it) and puts it in
        ``value`` as text or base64."""
        data = box.pop()
        red = self._cap.redactor
        decoded = value["decoded"]
        if red is not None and self._kind in ("json", "form", "xml"):
            if not decoded:
                value["redacted"] = True  # withheld: secrets cannot be found in undecoded bytes
                return
            if self._kind == "form":
                new = red.form(data)
                value["redacted"] = new != data
                data = new
            else:
                keys = self._cap.json_keys
                redact = (lambda t: red.json_text(t, keys)) if self._kind == "json" else red.xml_text
                text = _text(data, cut)
                if text is not None:
                    del data
                    text, value["redacted"] = redact(text)
                    value["encoding"], value["data"] = "utf-8", text
                    return
                if self._kind == "xml" and b"\x00" in data:
                    # UTF-16 or UTF-32 XML (XML 1.0 section 4.3.3 allows any
                    # declared encoding): the ASCII scan cannot find its
                    # secrets, so it is withheld like undecodable data.
                    value["redacted"] = True
                    return
                # Not UTF-8: redact on the surrogateescape form, keep as base64.
                text, changed = redact(data.decode("utf-8", "surrogateescape"))
                if changed:
                    data = text.encode("utf-8", "surrogateescape")
                del text
                value["redacted"] = changed
                box.append(data)
                del data
                value["encoding"], value["data"] = "base64", _base64(box)
                return
        text = _text(data, cut)
        if text is not None:
            del data
            value["encoding"], value["data"] = "utf-8", text
        else:
            box.append(data)
            del data
            value["encoding"], value["data"] = "base64", _base64(box)
