"""sniffd's HTTP framing beside llhttp's (httptools, strict mode) on the same bytes.

Issue 9: wherever sniffd parses instead of llhttp, it is held to llhttp on
valid input: same messages, same framing.  This module is that comparison,
shared by the hypothesis test (tests/unit/test_http_vs_llhttp.py, valid
conversations built by strategies) and the coverage-guided harness
(fuzz/fuzz_http_diff.py, any bytes, compared where llhttp accepts them).

Both parsers are reduced to one value per message, ``Seen``: where it starts
and ends in its direction's stream, its start line, its header fields and the
length of its (de-chunked) body, in sniffd's terms:

* header names lowercased, a repeated field joined with ", " (RFC 9110
  section 5.3), values without the spaces and tabs around them (RFC 9110
  section 5.5: they are not part of the value; llhttp drops the leading ones
  and hands over the trailing ones), bytes decoded as sniffd's records do
  (``syntax.text``).  Trailer fields count as header fields, as sniffd
  records them (llhttp reports both through ``on_header``).  README *What
  sniffd accepts* (header section) documents each of these.

llhttp is run by ``llhttp_messages``: fed one byte at a time, so the offset
of every callback is known (httptools gives no positions), and, optionally,
in the given segments, which must give the same messages.  Two things
llhttp cannot know on its own are told to it the way llhttp's API allows:

* a response that answers HEAD has no body (RFC 9110 section 9.3.2):
  llhttp's ``on_headers_complete`` returns 1 for it ("skip body", as Node
  does), which httptools cannot return; the runner does the equivalent by
  ending the message at its head and starting a fresh parser there;
* a close-delimited response body ends with the stream: httptools has no
  ``llhttp_finish``, so the runner completes such a message at the end.

sniffd is run by ``sniffd_messages`` through ``HttpSession`` (both
directions, in the given order), with its ``end_message`` callback recorded
so that every message it framed (interim responses included) is seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httptools

from sniffd import records
from sniffd.anomalies import ANOMALIES
from sniffd.http import HttpSession, Message, Transaction, syntax
from sniffd.http import reader as _reader
from sniffd.http.reader import MessageReader
from sniffd.http.syntax import text

try:
    from sniffd.http import _fields
except ImportError:  # tests/unit/test_http_fields.py says so
    _fields = None

# Methods llhttp's request parser knows for HTTP/1.x (llhttp 9, strict mode),
# minus CONNECT (a tunnel: llhttp pauses) and PRI (the HTTP/2 preface).
LLHTTP_METHODS = (
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "PROPFIND", "PROPPATCH", "MKCOL",
    "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH",
    "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PURGE", "MKCALENDAR", "LINK", "UNLINK", "BIND", "REBIND", "UNBIND",
    "ACL", "QUERY", "SOURCE",
)


@dataclass
class Seen:
    """One message as a parser framed it, normalised (see the module doc)."""

    start: int  # stream offset of its first byte
    end: int | None  # offset just after its last byte; None: not complete
    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str | None = None
    version: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body_len: int = 0

    def content(self) -> tuple:
        """Everything but the offsets."""
        return (self.method, self.uri, self.status, self.reason, self.version, self.headers, self.body_len)


def normalised(fields: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """(name, value) pairs as sent -> sniffd's header dict, as items."""
    out: dict[str, str] = {}
    for name, value in fields:
        key = text(name).lower()
        val = text(value.strip(b" \t"))
        out[key] = out[key] + ", " + val if key in out else val
    return list(out.items())


# ------------------------------------------------------------------ llhttp


@dataclass
class Llhttp:
    """What llhttp made of one direction's stream."""

    messages: list[Seen]  # complete ones, then at most one whose head was read (end None)
    error: str | None = None  # llhttp refused the byte at error_at
    error_at: int | None = None
    upgrade: bool = False  # llhttp paused for an upgrade/CONNECT after the last message
    head_ends: list[int] = field(default_factory=list)  # per message: offset after its head
    # Responses: per message, the index (among final responses) of the
    # request it answers.
    answers: list[int | None] = field(default_factory=list)
    restarts: list[int] = field(default_factory=list)  # where a HEAD answer ended and a fresh parser began
    # A message llhttp had begun but not read the head of when the input
    # ended (no error): where it started.
    partial_start: int | None = None


class _Collector:
    """httptools protocol: collects messages into ``done``; ``pos`` is the
    offset of the byte being fed (byte-at-a-time), None when fed in pieces."""

    def __init__(self, is_request: bool, bodiless, finals: int, done: list) -> None:
        self.is_request = is_request
        self.bodiless = bodiless
        self.finals = finals  # final responses before this one
        self.done = done
        self.parser = (httptools.HttpRequestParser if is_request else httptools.HttpResponseParser)(self)
        self.pos: int | None = None
        self.cur: dict | None = None
        self.skip = False  # the current response answers HEAD: it ends with its head

    def on_message_begin(self) -> None:
        self.cur = {"start": self.pos, "end": None, "url": b"", "status": b"", "fields": [], "body": 0,
                    "head_end": None, "answers": None}
        self.skip = False

    def on_url(self, b: bytes) -> None:
        self.cur["url"] += b

    def on_status(self, b: bytes) -> None:
        self.cur["status"] += b

    def on_header(self, name: bytes, value: bytes) -> None:
        self.cur["fields"].append((name, value))

    def on_headers_complete(self) -> None:
        cur = self.cur
        p = self.parser
        cur["head_end"] = None if self.pos is None else self.pos + 1
        cur["version"] = p.get_http_version()
        if self.is_request:
            cur["method"] = p.get_method().decode("ascii")
            return
        status = p.get_status_code()
        cur["code"] = status
        cur["answers"] = self.finals
        if not 100 <= status < 200 or status == 101:
            self.finals += 1
            self.skip = self.bodiless(cur["answers"])

    def on_body(self, b: bytes) -> None:
        self.cur["body"] += len(b)

    def on_message_complete(self) -> None:
        self.cur["end"] = None if self.pos is None else self.pos + 1
        self.done.append(self.cur)
        self.cur = None


def _seen(m: dict, is_request: bool) -> Seen:
    s = Seen(m["start"], m["end"], version=m["version"], headers=normalised(m["fields"]), body_len=m["body"])
    if is_request:
        s.method, s.uri = m["method"], text(m["url"])
    else:
        s.status, s.reason = m["code"], text(m["status"])
    return s


def _needs_eof(m: dict) -> bool:
    """llhttp_message_needs_eof for a response whose head was read: a
    status other than 1xx, 204 and 304 (000-099 and 600-999 included), no
    Content-Length, and no Transfer-Encoding whose last coding is chunked."""
    if m["code"] // 100 == 1 or m["code"] in (204, 304):
        return False
    te = b",".join(v for n, v in m["fields"] if n.lower() == b"transfer-encoding")
    codings = [c.strip(b" \t").lower() for c in te.split(b",") if c.strip(b" \t")]
    if codings and codings[-1] == b"chunked":
        return False
    return not any(n.lower() == b"content-length" for n, _v in m["fields"])


def _feed(col: _Collector, piece: bytes) -> tuple[str | None, bool]:
    """(error, upgrade) after feeding ``piece``."""
    try:
        col.parser.feed_data(piece)
    except httptools.HttpParserUpgrade:
        return None, True
    except httptools.HttpParserError as e:
        if "Pause on CONNECT/Upgrade" in str(e):
            return None, True  # a 101 without Upgrade: paused all the same
        return str(e) or type(e).__name__, False
    return None, False


def llhttp_messages(stream: bytes, is_request: bool, bodiless=lambda k: False) -> Llhttp:
    """Run llhttp over one direction's ``stream`` byte by byte (exact
    offsets).  ``bodiless(k)``: the k-th final response (0-based) answers
    HEAD."""
    out = Llhttp([])
    done: list[dict] = []
    col = _Collector(is_request, bodiless, 0, done)
    n = len(stream)
    i = 0
    while i < n:
        col.pos = i
        err, up = _feed(col, stream[i : i + 1])
        if err is not None or up:
            out.error, out.upgrade = err, up
            out.error_at = i if err is not None else None
            break
        i += 1
        cur = col.cur
        if col.skip and cur is not None and cur["head_end"] == i:
            # Answers HEAD: the message ends with its head (llhttp's "skip
            # body"); a fresh parser takes what follows.
            cur["end"] = i
            done.append(cur)
            out.restarts.append(i)
            col = _Collector(is_request, bodiless, col.finals, done)
    _finish(out, col, done, is_request, n)
    return out


def llhttp_in_pieces(stream: bytes, is_request: bool, bodiless, cuts: list[int], restarts: list[int]) -> Llhttp:
    """llhttp fed ``stream`` in the pieces ``cuts`` makes (and restarted at
    ``restarts``, the HEAD answers' ends a byte-by-byte run found)."""
    out = Llhttp([])
    done: list[dict] = []
    col = _Collector(is_request, bodiless, 0, done)
    bounds = sorted(set(cuts) | set(restarts) | {0, len(stream)})
    todo = set(restarts)
    for a, b in zip(bounds, bounds[1:]):
        if a in todo:
            cur = col.cur
            if cur is not None:
                done.append(cur)
                col = _Collector(is_request, bodiless, col.finals, done)
        err, up = _feed(col, stream[a:b])
        if err is not None or up:
            out.error, out.upgrade = err, up
            break
    if len(stream) in todo and col.cur is not None:
        done.append(col.cur)
        col.cur = None
    _finish(out, col, done, is_request, len(stream))
    return out


def _finish(out: Llhttp, col: _Collector, done: list[dict], is_request: bool, n: int) -> None:
    cur = col.cur
    if out.error is None and not out.upgrade and cur is not None:
        if "version" in cur:
            if not is_request and not col.skip and _needs_eof(cur):
                cur["end"] = n if cur["start"] is not None else None  # the end of the stream ends the body
            done.append(cur)
        else:
            out.partial_start = cur["start"]
    for m in done:
        out.messages.append(_seen(m, is_request))
        out.head_ends.append(m["head_end"])
        out.answers.append(m["answers"])


# ------------------------------------------------------------------ sniffd


class RecordingSession(HttpSession):
    """An ``HttpSession`` that also keeps every message it ended, per
    direction in stream order, with how it ended (interim responses too,
    which transactions keep only as (status, reason))."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ended: tuple[list, list] = ([], [])

    def end_message(self, reader, msg, how: str) -> None:
        self.ended[0 if reader.is_request else 1].append((msg, how))
        super().end_message(reader, msg, how)


@dataclass
class Sniffd:
    requests: list[Seen]
    responses: list[Seen]
    hows: tuple[list[str], list[str]]  # how each request / response ended
    messages: tuple[list, list]  # the Message objects, as requests / responses
    transactions: list[Transaction]
    loose: list[str]
    mode: str  # the session's mode at the end ("http", "tunnel", ...)


class python_reference:
    """Within this block sniffd parses heads with the Python reference
    alone (``_fields.c`` switched off), when ``on``."""

    def __init__(self, on: bool = True) -> None:
        self.on = on

    def __enter__(self):
        self.saved = _reader._cfields, _reader._chead
        if self.on:
            _reader._cfields = _reader._chead = None
        return self

    def __exit__(self, *exc) -> None:
        _reader._cfields, _reader._chead = self.saved


def seen_of(msg) -> Seen:
    return Seen(msg.start_off, msg.end_off if msg.complete else None, msg.method, msg.uri, msg.status, msg.reason,
                msg.version, list(msg.headers.items()), msg.body_len)


def sniffd_messages(client: bytes, server: bytes, steps: list[tuple[bool, int, int]], python_only: bool = False,
                    **session_args) -> Sniffd:
    """Feed ``steps`` ((from_client, start, end) pieces of the two streams,
    in that order) to a fresh session, then close it; take() after every
    step, as the flow table does."""
    txns: list[Transaction] = []
    with python_reference(python_only):
        s = RecordingSession(**session_args)
        now = 0.0
        for from_client, a, b in steps:
            now += 0.001
            s.feed(from_client, [(client if from_client else server)[a:b]], now)
            txns += s.take()
        s.close(None, now + 1.0)
        txns += s.take()
    ended = s.ended
    return Sniffd([seen_of(m) for m, _ in ended[0]], [seen_of(m) for m, _ in ended[1]],
                  ([h for _, h in ended[0]], [h for _, h in ended[1]]),
                  ([m for m, _ in ended[0]], [m for m, _ in ended[1]]), txns, list(s.loose), s.mode.value)


# ---------------------------------------------------------------- feeding


def pieces(n: int, cuts) -> list[tuple[int, int]]:
    """[0, n) cut at ``cuts`` (any ints; those outside (0, n) ignored)."""
    bounds = sorted({c for c in cuts if 0 < c < n} | {0, n})
    return [(a, b) for a, b in zip(bounds, bounds[1:])]


def every(n: int, size: int) -> list[int]:
    """Cuts for segments of ``size`` bytes."""
    return list(range(size, n, max(1, size)))


def causal_need(server_len: int, client_len: int, responses: list[tuple[int, int | None, int | None]],
                request_heads: list[int]):
    """A function: server offset -> how much of the client stream must have
    been fed before that server byte (a server answers a request once it has
    read its head; bytes between responses belong to the next one).
    ``responses``: (start, end, index of the request answered)."""
    table = []
    for _start, end, k in responses:
        ok = k is not None and k < len(request_heads) and request_heads[k] is not None
        table.append((end, request_heads[k] if ok else client_len))

    def need(p: int) -> int:
        # The first response that ends after p: p is in it, or before its
        # start line (empty lines belong to the next message).
        for end, nd in table:
            if end is None or p < end:
                return nd
        return client_len

    return need


def schedule(client_len: int, server_len: int, client_cuts, server_cuts, need, prefer) -> list[tuple[bool, int, int]]:
    """Interleave the two directions' pieces: client first when ``prefer``
    (an iterator of bools, repeated when exhausted) says so, a server piece
    only once the client bytes it answers were fed."""
    cp = pieces(client_len, client_cuts)
    sp = pieces(server_len, server_cuts)
    prefer = list(prefer) or [True]
    out: list[tuple[bool, int, int]] = []
    fed = 0
    ci = si = t = 0
    while ci < len(cp) or si < len(sp):
        can_s = si < len(sp) and need(sp[si][1] - 1) <= fed
        if ci < len(cp) and (not can_s or prefer[t % len(prefer)]):
            out.append((True, *cp[ci]))
            fed = cp[ci][1]
            ci += 1
        else:
            assert can_s, "a server piece waits for client bytes that do not exist"
            out.append((False, *sp[si]))
            si += 1
        t += 1
    return out


def diff(label: str, expected: list[Seen], got: list[Seen]) -> str | None:
    """The first difference between two message lists, said plainly, or None."""
    for i, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            fields = [f for f in ("start", "end", "method", "uri", "status", "reason", "version", "headers", "body_len")
                      if getattr(e, f) != getattr(g, f)]
            return f"{label} #{i}: " + "; ".join(f"{f}: {getattr(e, f)!r} != {getattr(g, f)!r}" for f in fields)
    if len(expected) != len(got):
        return f"{label}: {len(expected)} messages != {len(got)}"
    return None


def check_well_typed(sn: Sniffd) -> None:
    """Whatever the input: every transaction makes a one-line record with
    documented anomalies, and every message has values of its types."""
    for t in sn.transactions:
        assert isinstance(t, Transaction) and t.depth >= 1
        assert t.anomalies <= set(ANOMALIES), t.anomalies - set(ANOMALIES)
        assert all(isinstance(s, (int, type(None))) and isinstance(r, (str, type(None))) for s, r in t.interim)
        for m in (t.request, t.response):
            if m is not None:
                assert isinstance(m, Message)
                assert all(v is None or isinstance(v, str) for v in (m.method, m.uri, m.reason, m.version))
                assert m.status is None or isinstance(m.status, int)
                assert all(isinstance(k, str) and isinstance(v, str) for k, v in m.headers.items())
                assert m.body_len >= 0 and m.missed_bytes >= 0
        line = records.dumps(records.build(t, {"ip": "10.0.0.1", "port": 40000}, {"ip": "10.0.0.2", "port": 80},
                                           "1:x", uid="C00000000000000001", sensor="httpdiff", interface=None))
        assert "\n" not in line
    assert set(sn.loose) <= set(ANOMALIES)


# ------------------------------------------------ _fields.c and its reference

NAMES_MAX = 512  # _fields.c's NAMES_MAX, the reader's bound on its names cache


def python_fields(block: bytes, names: dict, max_count: int, max_bytes: int) -> tuple:
    """MessageReader._fields with the C path off, on a fresh message, with
    ``names`` as the reader's cache.  Returns ((headers, count, nbytes),
    what it found odd: anomalies and odd field names)."""
    r = MessageReader(True, None, max_header_count=max_count, max_header_bytes=max_bytes)
    msg = Message(0.0, 0, None)
    msg.txn = Transaction()
    saved = _reader._NAMES
    _reader._NAMES = names
    try:
        with python_reference():
            r._fields(msg, block)
    finally:
        _reader._NAMES = saved
    odd = sorted(msg.txn.anomalies) + sorted(msg.odd or ())
    return (msg.headers, msg.header_count, msg.header_bytes), odd


def python_head(data: bytes, start: int, eol: int, fields_end: int, is_request: bool, names: dict, max_count: int,
                max_bytes: int, max_uri: int) -> tuple:
    """What MessageReader._whole_head makes of a head without the C path:
    the start line by syntax, the fields by python_fields.  Returns (the
    value head() would give, what was odd or uncommon about it)."""
    line = data[start:eol]
    odd: list[str] = []
    if is_request:
        parsed = syntax.request_line(line)
        if parsed is None:
            return None, ["not a request line"]
        first, target, version, flags = parsed
        if version == "0.9":
            odd.append("HTTP/0.9")  # _whole_head leaves it to the general path
        if target is None:
            odd.append("no target")
        elif len(target) > max_uri:
            odd.append("uri_limit")
        second = None if target is None else text(target)
    else:
        parsed = syntax.status_line(line)
        if parsed is None:
            return None, ["not a status line"]
        version, first, second, flags = parsed
    odd += flags
    got, field_odd = python_fields(data[eol + 1 : fields_end], names, max_count, max_bytes)
    return (first, second, version, *got), odd + field_odd


def check_names(names: dict, before: dict) -> None:
    """The cache maps token names to their lowercase str, within its bound."""
    if len(before) <= NAMES_MAX:
        assert len(names) <= NAMES_MAX
    for raw, key in names.items():
        if raw not in before:
            assert (bytes, str) == (type(raw), type(key))
            assert syntax.TOKEN.fullmatch(raw) and key == raw.decode("ascii").lower(), (raw, key)


def fields_parity(block: bytes, names: dict, max_count: int, max_bytes: int) -> str:
    """``_fields.fields`` against its reference on ``block`` (which ends
    with a line end), each with its own copy of the cache ``names``.
    Asserts: C answers exactly the reference's value, and declines exactly
    when the reference finds something odd; the cache ends the same after C
    then the reference (as the reader runs them) as after the reference
    alone.  Returns "C answered" or "C declined"."""
    c_names, py_names = dict(names), dict(names)
    got = _fields.fields(block, c_names, max_count, max_bytes)
    want, odd = python_fields(block, py_names, max_count, max_bytes)
    if got is None:
        assert odd, f"the C path declined a plain header section: {block!r}"
        python_fields(block, c_names, max_count, max_bytes)  # the reader's fallback, on the same cache
    else:
        assert [] == odd, f"the C path took a header section the reference finds odd ({odd}): {block!r}"
        assert want == got, block
        assert list(want[0].items()) == list(got[0].items()), block  # same order of first appearance
    assert list(py_names.items()) == list(c_names.items()), block
    check_names(c_names, names)
    return "C declined" if got is None else "C answered"


def head_parity(data: bytes, start: int, eol: int, fields_end: int, is_request: bool, names: dict, max_count: int,
                max_bytes: int, max_uri: int) -> str:
    """``_fields.head`` against its reference: when it answers, the
    offsets were sane, the reference finds nothing odd and gives the same
    value.  (It may decline heads the reference takes without a flag, such
    as ``HTTP/2.0``: that only costs speed.)"""
    c_names = dict(names)
    got = _fields.head(data, start, eol, fields_end, is_request, c_names, max_count, max_bytes, max_uri)
    if got is None:
        return "C declined"
    assert 0 <= start <= eol < len(data) and eol + 1 <= fields_end <= len(data)
    want, odd = python_head(data, start, eol, fields_end, is_request, dict(names), max_count, max_bytes, max_uri)
    assert [] == odd, f"head() parsed what the reference finds odd ({odd}): {data[start:fields_end]!r}"
    assert want == got, data[start:fields_end]
    assert got[2] in ("1.0", "1.1")
    check_names(c_names, names)
    return "C answered"
