"""HTTP/1.x syntax (pure): start lines, header sections, body framing.

Functions only: bytes in, values out, no state.  The reader
(``sniffd.http.reader``) decides *where* a start line or a header section
is; this module decides *what it says*.  Everything is lenient in the way the
README's *What sniffd accepts* section describes, and every leniency it uses
is named in the flags it returns, so the record can say what was odd.

RFC references: RFC 9110 (semantics), RFC 9112 (HTTP/1.1 message syntax).
"""

from __future__ import annotations

import re

# tchar (RFC 9110 section 5.6.2).
_TCHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_IS_TCHAR = bytes(1 if i in _TCHARS else 0 for i in range(256))
# Control bytes a request target may not carry (tab and space are separators).
_CTL = bytes(range(0x00, 0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"
_CTL_RE = re.compile(b"[" + re.escape(_CTL) + b"]")
# Method as sent -> str (token methods seen, bounded).
_METHODS: dict[bytes, str] = {}
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])\Z")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_WS = b" \t"

# A header field line's start: a token, optional whitespace, a colon.  Used to
# tell a header section from whatever follows an odd start line.
FIELD_START = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]*:")

# Names of the flags (anomalies) this module returns.
LENIENT = "http_start_line_lenient"
VERSION_INVALID = "http_version_invalid"
URI_CTL = "http_uri_control_chars"
STATUS_INVALID = "http_status_invalid"
NO_COLON = "http_header_no_colon"
FIELD_INVALID = "http_header_invalid"
OBS_FOLD = "http_obs_fold"
TE_AND_CL = "http_te_and_cl"
TE_INVALID = "http_te_invalid"
CL_CONFLICT = "http_cl_conflict"
CL_ZEROS = "http_cl_leading_zeros"
CL_INVALID = "http_cl_invalid"
AMBIGUOUS = "http_ambiguous_framing"

_NO_FLAGS: tuple = ()


def text(b: bytes) -> str:
    """Bytes from the wire as str, lossless: invalid UTF-8 bytes become lone
    surrogates (U+DC80..U+DCFF, Python's surrogateescape), which the JSON
    writer emits as \\udcXX escapes; no valid UTF-8 input can produce them."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("utf-8", "surrogateescape")


def version_text(word: bytes) -> tuple[str, bool]:
    """``HTTP/1.1`` -> ("1.1", True); an odd version word -> (as sent, False)."""
    if word == b"HTTP/1.1":
        return "1.1", True
    if word == b"HTTP/1.0":
        return "1.0", True
    m = _VERSION.match(word)
    if m is not None:
        return f"{m[1].decode()}.{m[2].decode()}", True
    return text(word), False


# ------------------------------------------------------------ start lines


def request_line(line: bytes):
    """Parse a request line (no LF; a trailing CR is ignored).

    Returns ``(method, target, version, flags)`` with ``target`` bytes or
    None and ``version`` a str ("1.1", "0.9" when there is none, or an odd
    word as sent), or None when the line is not a request line: it does not
    start with a token followed by a space or tab (a lone token, ``GET/``,
    binary)."""
    if line.__class__ is not bytes:
        line = bytes(line)
    if line.endswith(b"\r"):
        line = line[:-1]
    # The common line, "METHOD SP target SP HTTP/1.x": one split.
    parts = line.split(b" ")
    if len(parts) == 3:
        method, target, word = parts
        if (word == b"HTTP/1.1" or word == b"HTTP/1.0") and target:
            name = _METHODS.get(method)
            if name is None and TOKEN.fullmatch(method):
                name = method.decode("ascii")
                if len(_METHODS) < 64:
                    _METHODS[bytes(method)] = name  # methods repeat: bounded cache
            if name is not None and _CTL_RE.search(target) is None:
                return name, target, "1.1" if word[7] == 49 else "1.0", _NO_FLAGS
    return _request_line_lenient(line)


def _request_line_lenient(line: bytes):
    flags = []
    i = 0
    n = len(line)
    while i < n and line[i] in _WS:
        i += 1
    if i:
        flags.append(LENIENT)  # whitespace before the request line
    m = TOKEN.match(line, i)
    if m is None or m.end() >= n or line[m.end()] not in _WS:
        return None
    method = m.group().decode("ascii")
    j = m.end()
    rest = line[j:]
    stripped = rest.strip(_WS)
    if len(rest) - len(rest.lstrip(_WS)) > 1:
        flags.append(LENIENT)  # several spaces/tabs after the method
    if not stripped:
        if LENIENT not in flags:
            flags.append(LENIENT)  # no target
        return method, None, "0.9", tuple(flags)
    k = max(stripped.rfind(b" "), stripped.rfind(b"\t"))
    last = stripped[k + 1 :]
    if last[:5].upper() == b"HTTP/":
        version, ok = version_text(last)
        if not ok:
            flags.append(VERSION_INVALID)
        if k < 0:
            target = None
            if LENIENT not in flags:
                flags.append(LENIENT)  # no target
        else:
            before = stripped[:k]
            target = before.rstrip(_WS)
            if len(before) != len(target) or b" " in target or b"\t" in target:
                if LENIENT not in flags:
                    flags.append(LENIENT)  # several separators, spaces inside
            if not target:
                target = None
    else:
        version = "0.9"  # HTTP/0.9 simple request: no version
        target = stripped
    if target is not None and _CTL_RE.search(target) is not None:
        flags.append(URI_CTL)
    return method, target, version, tuple(flags)


def status_line(line: bytes):
    """Parse a status line (no LF).  Returns ``(version, status, reason,
    flags)`` (``status`` None when not three digits) or None when the line
    does not start with ``HTTP/`` (any case)."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if line.startswith(b"HTTP/1.") and len(line) >= 12 and line[8] == 32 and line[9:12].isdigit() and (
            len(line) == 12 or line[12] == 32) and line[7] in b"01":
        return ("1.1" if line[7] == 49 else "1.0"), int(line[9:12]), text(line[13:]), _NO_FLAGS
    flags = []
    s = line.lstrip(_WS)
    if len(s) != len(line):
        flags.append(LENIENT)
    if s[:5].upper() != b"HTTP/":
        return None
    end = 0
    while end < len(s) and s[end] not in _WS:
        end += 1
    version, ok = version_text(s[:end])
    if not ok:
        flags.append(VERSION_INVALID)
    rest = s[end:]
    after = rest.lstrip(_WS)
    if len(rest) - len(after) > 1:
        flags.append(LENIENT)
    k = 0
    while k < len(after) and after[k] not in _WS:
        k += 1
    code = after[:k]
    reason = after[k:]
    if reason[:1] in (b" ", b"\t"):
        # One separator; the reason is the rest as sent, since a
        # reason-phrase may itself begin with SP or HTAB (RFC 9112 section 4),
        # as the common line above keeps it.
        reason = reason[1:]
    if len(code) == 3 and code.isdigit():
        status = int(code)
    else:
        status = None
        flags.append(STATUS_INVALID)
        reason = after  # the whole rest: "2XX OK"
    return version, status, text(reason), tuple(flags)


def is_field_line(line: bytes) -> bool:
    """Could ``line`` (no LF) be a header field line?"""
    return FIELD_START.match(line) is not None


# --------------------------------------------------------- header section


def field_lines(block: bytes) -> list[bytes]:
    """The header section's lines (after the start line, without the empty
    line that ends it), CR stripped; bare LF ends a line too."""
    lines = block.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def framing_fields(headers: dict[str, str], odd: set | None) -> tuple[str | None, str | None, bool]:
    """Transfer-Encoding and Content-Length as the message carries them, and
    whether either came through obs-fold or a malformed name (``odd``)."""
    te = headers.get("transfer-encoding")
    cl = headers.get("content-length")
    tainted = bool(odd) and ("transfer-encoding" in odd or "content-length" in odd)
    return te, cl, tainted


# ------------------------------------------------------------ body framing

# How a body is delimited (RFC 9112 section 6.3).
NONE, LENGTH, CHUNKED, CLOSE = 0, 1, 2, 3
_MAX_CL = (1 << 63) - 1


def content_length(value: str, flags: list[str]) -> int | None:
    """A Content-Length field value -> length, or None when invalid.
    Several equal values are one; differing ones are framed by the first."""
    if value.isdigit() and value.isascii():
        if len(value) > 1 and value[0] == "0":
            flags.append(CL_ZEROS)
            value = value.lstrip("0") or "0"
        if len(value) > 19 or int(value) > _MAX_CL:
            flags.append(CL_INVALID)
            return None
        return int(value)
    parts = [p.strip(" \t") for p in value.split(",")]
    if len(parts) > 1 and all(p.isdigit() and p.isascii() for p in parts):
        if any(len(p) > 1 and p[0] == "0" for p in parts):
            flags.append(CL_ZEROS)
        values = [int(p) for p in parts]
        if any(v > _MAX_CL or len(p.lstrip("0")) > 19 for v, p in zip(values, parts)):
            flags.append(CL_INVALID)
            return None
        if len(set(values)) > 1:
            flags.append(CL_CONFLICT)
        return values[0]
    flags.append(CL_INVALID)
    return None


def _codings(te: str) -> list[str]:
    return [c.strip(" \t").lower() for c in te.split(",") if c.strip(" \t")]


def _chunked_final(codings: list[str]) -> bool:
    """Is the final coding chunked?  That alone frames the body (RFC 9112
    section 6.3)."""
    return bool(codings) and codings[-1] == "chunked"


def _transfer_coded(te: str, cl: str | None, tainted: bool) -> tuple[bool, bool, list[str]]:
    """(chunked is the final coding, chunked is one of them, flags) for a
    message with Transfer-Encoding (and maybe Content-Length)."""
    codings = _codings(te)
    chunked_final = _chunked_final(codings)
    # Chunked applied twice breaks a sender's rule (section 6.1) and a
    # server may reject it (nginx answers 501) where a proxy forwards it:
    # flagged, and read as chunked, as the final coding says.
    flags = [] if chunked_final and codings.count("chunked") == 1 else [TE_INVALID]
    if cl is not None:
        flags.append(TE_AND_CL)
    if flags or tainted:
        flags.append(AMBIGUOUS)
    return chunked_final, "chunked" in codings, flags


def _length_framed(cl: str | None, tainted: bool, otherwise: int) -> tuple[int, int, list[str]]:
    """(kind, length, flags) of a body without Transfer-Encoding: by its
    Content-Length, else (none, or one that is invalid) ``otherwise``: no
    body for a request, to the close for a response."""
    flags: list[str] = []
    if cl is None:
        return otherwise, 0, flags
    n = content_length(cl, flags)
    if flags or tainted:
        flags.append(AMBIGUOUS)
    if n is None:
        return otherwise, 0, flags
    return (LENGTH, n, flags) if n else (NONE, 0, flags)


def request_framing(headers: dict[str, str], odd: set | None) -> tuple[int, int, list[str]]:
    """(kind, length, flags) for a request body (RFC 9112 section 6.3)."""
    te, cl, tainted = framing_fields(headers, odd)
    if te is not None:
        chunked_final, chunked, flags = _transfer_coded(te, cl, tainted)
        return (CHUNKED if chunked_final or chunked else NONE), 0, flags
    return _length_framed(cl, tainted, NONE)


def response_framing(headers: dict[str, str], odd: set | None, status: int | None,
                     bodiless: bool) -> tuple[int, int, list[str]]:
    """(kind, length, flags) for a response body; ``bodiless``: it answers
    HEAD (RFC 9110 section 9.3.2).  1xx, 204 and 304 have none either."""
    if bodiless or (status is not None and (100 <= status < 200 or status == 204 or status == 304)):
        return NONE, 0, []
    te, cl, tainted = framing_fields(headers, odd)
    if te is not None:
        chunked_final, _chunked, flags = _transfer_coded(te, cl, tainted)
        return (CHUNKED if chunked_final else CLOSE), 0, flags
    return _length_framed(cl, tainted, CLOSE)


def chunk_size(line: bytes) -> int | None:
    """A chunk-size line (no LF) -> size, or None when it is not hex or
    overflows 63 bits.  Extensions after ';' and whitespace are ignored."""
    if line.endswith(b"\r"):
        line = line[:-1]
    semi = line.find(b";")
    if semi >= 0:
        line = line[:semi]
    line = line.strip(_WS)
    if _HEX.fullmatch(line) is None:
        return None  # not 1*HEXDIG (RFC 9112 section 7.1): no sign, "0x", "_" or space
    # Leading zeros change no value: only the significant digits can
    # overflow (and 16 of them bound int()'s work on a hostile line).
    digits = line.lstrip(b"0")
    if len(digits) > 16:
        return None
    n = int(digits or b"0", 16)
    if n > _MAX_CL:
        return None
    return n
