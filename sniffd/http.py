"""HTTP/1.x session of one connection (stateful, sans-I/O): two byte streams
in, paired transactions out.

Call order:

1. ``feed(from_client, chunks, now)`` with each direction's reassembled
   chunks (``bytes`` data, ``int`` gap length) as they become available.
2. ``note(from_client, names)`` to put transport anomalies (gaps, overlap
   conflicts) on the transaction that direction is carrying.
3. ``end(from_client, now)`` when a direction is finished (FIN/RST).
4. ``close(reason, now)`` when the connection is over; every open
   transaction is finished.
5. ``take()`` returns finished ``Transaction`` objects, in order of
   completion, and forgets them.

httptools (llhttp) owns message framing.  What it cannot know, this module
adds:

* A response to HEAD, and a 2xx response to CONNECT, has no body whatever
  its headers say (RFC 9110 sections 9.3.2, 9.3.6); llhttp cannot be told the
  request method.  For the stretch of stream that may hold such a response
  the parser is fed *carefully*: known-length runs (Content-Length body, chunk
  data) in one piece, everything else a byte at a time, so the exact end of
  the header section is known; there the parser is replaced by a fresh one.
* ``100 Continue`` and other 1xx (but 101) are interim: they go on the
  transaction and do not consume the request (RFC 9110 section 15.2).
* ``101 Switching Protocols`` and CONNECT answered 2xx end HTTP on the
  connection: the transaction is logged, the rest is not parsed.
* Gaps (Zeek's ``Undelivered`` policy): inside a body of known length (or a
  close-delimited one) the gap is filled with zeros for the parser and
  counted in ``missed_bytes``; anywhere else the message ends, is marked
  ``message_interrupted``, and the parser resynchronises at the next request
  or status line.
* Parse errors and mid-stream pickup resynchronise the same way.

Leniency: a sniffer must log what real clients and servers accept, so
llhttp's lenient flags are on (bare LF, data after ``Connection: close``,
odd chunk extensions, ...).
"""

from __future__ import annotations

import re

import httptools

from sniffd.budget import HEADER_COST, Meter

# Request and status lines that resynchronisation accepts as the start of a
# message (RFC 9112 sections 3 and 4).  Methods: RFC 9110 plus WebDAV and the
# common extensions llhttp knows.
_METHODS = (
    rb"GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH|PROPFIND|PROPPATCH|MKCOL|COPY|MOVE|"
    rb"LOCK|UNLOCK|REPORT|MKACTIVITY|CHECKOUT|MERGE|SEARCH|PURGE|LINK|UNLINK|SOURCE|QUERY|"
    rb"MSEARCH|M-SEARCH|NOTIFY|SUBSCRIBE|UNSUBSCRIBE|ACL|BIND|UNBIND|REBIND"
)
REQUEST_LINE = re.compile(rb"(?:" + _METHODS + rb") [\x21-\x7e\x80-\xff]+ HTTP/1\.[019]\r?\n")
STATUS_LINE = re.compile(rb"HTTP/1\.[019] [1-5][0-9][0-9][ \r\n]")

# While looking for a start line, keep at most this much unparsed data; the
# longest request line llhttp-based servers accept is 8-64 KiB.
RESYNC_WINDOW = 64 * 1024
# A connection whose first 64 KiB hold no start line is not HTTP.
NON_HTTP_AFTER = 64 * 1024

_ZEROS = bytes(64 * 1024)
_HEADER_END = re.compile(rb"\n\r?\n")
_UNHIGH = bytes(range(128)) + b"x" * 128

HTTP, RESYNC, HELD, TUNNEL, DEAD = "http", "resync", "held", "tunnel", "dead"

# Requests whose response llhttp cannot frame by itself (no body after HEAD's
# headers, a tunnel after CONNECT's 2xx): see HttpSession._parse.
_SPECIAL = frozenset(("HEAD", "CONNECT"))

_LENIENT = dict(
    lenient_headers=True,
    lenient_chunked_length=True,
    lenient_keep_alive=True,
    lenient_transfer_encoding=True,
    lenient_version=True,
    lenient_data_after_close=True,
    lenient_optional_lf_after_cr=True,
    lenient_optional_cr_before_lf=True,
    lenient_optional_crlf_after_chunk=True,
    lenient_spaces_after_chunk_size=True,
)


# Header name as sent -> its lowercase str (see _Side.on_header).
_NAMES: dict[bytes, str] = {}


def _text(b: bytes) -> str:
    """Bytes from the wire as str, lossless: invalid UTF-8 bytes become lone
    surrogates (U+DC80..U+DCFF, Python's surrogateescape), which the JSON
    writer emits as \\udcXX escapes; no valid UTF-8 input can produce them."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("utf-8", "surrogateescape")


class Message:
    __slots__ = (
        "start_ts", "end_ts", "method", "uri", "status", "reason", "version",
        "headers", "header_count", "header_bytes", "body_len", "missed_bytes",
        "complete", "content_length", "chunked", "no_body", "hdrs_done", "line_seen", "feed_no", "mem",
        "uri_len", "hdr_fed", "body_truncated", "body", "released", "_uri_parts",
        "_reason_parts",
    )

    def __init__(self, now: float) -> None:
        self.start_ts = now
        self.end_ts = now
        self.method: str | None = None
        self.uri: str | None = None
        self.status: int | None = None
        self.reason: str | None = None
        self.version: str | None = None
        self.headers: dict[str, str] = {}
        self.header_count = 0
        self.header_bytes = 0
        self.body_len = 0
        self.missed_bytes = 0
        self.complete = False
        self.content_length: int | None = None
        self.chunked = False
        self.no_body = False
        self.hdrs_done = False
        self.line_seen = False
        self.feed_no = 0
        self.mem = 0  # bytes charged to the session's Meter for this message
        self.uri_len = 0
        self.hdr_fed = 0  # header-section bytes fed after the first chunk
        self.body_truncated = False
        self.body = None  # sniffd.bodies.BodyBuffer when bodies are captured
        # Set when the transaction was handed out (take) and its memory left
        # the Meter: a message still being parsed after that (request
        # headers finishing after the response) charges nothing more.
        self.released = False
        self._uri_parts: list[bytes] = []
        self._reason_parts: list[bytes] = []


class Transaction:
    __slots__ = ("request", "response", "interim", "depth", "anomalies", "tunnel", "end_reason")

    def __init__(self, depth: int) -> None:
        self.request: Message | None = None
        self.response: Message | None = None
        self.interim: list[tuple[int, str]] = []
        self.depth = depth
        self.anomalies: set[str] = set()
        self.tunnel = False
        # Why the record was written: complete, fin, rst, idle, evicted,
        # shutdown, end_of_input, gap, parse_error, header_limit,
        # pending_overflow, reused (see README).
        self.end_reason: str | None = None

    @property
    def ts(self) -> float:
        return (self.request or self.response).start_ts


class _Side:
    """One direction: its parser, the message it is building, its mode."""

    __slots__ = (
        "session", "is_request", "parser", "msg", "txn", "mode", "buf",
        "began", "messages", "good", "feed_no", "raw_line", "line_complete", "seen_bytes", "carry", "careful", "line",
        "chunk_left", "stop", "resync_pending", "max_header_bytes",
        "max_header_count", "filling", "tail", "buf_charged", "meter",
    )

    def __init__(self, session: "HttpSession", is_request: bool, mode: str) -> None:
        self.session = session
        self.is_request = is_request
        self.parser = None
        self.msg: Message | None = None
        self.txn: Transaction | None = None
        self.mode = mode
        self.buf = bytearray()  # unparsed bytes (RESYNC / HELD)
        self.buf_charged = 0  # len(buf) as last charged to the Meter
        # Start lines parsed during the current feed_data call, of messages
        # begun in it (resynchronisation skips that many matches).
        self.began = 0
        self.messages = 0  # messages begun on this side, ever
        self.good = 0  # messages whose start line parsed: this side speaks HTTP
        self.feed_no = 0
        # Request side: the original bytes of a request line that carried
        # bytes >= 0x80 (llhttp rejects them in a URL; see HttpSession._request_line).
        self.raw_line: bytes | None = None
        self.line_complete = False
        self.seen_bytes = 0
        self.carry: set[str] = set()  # anomalies waiting for the next transaction
        self.careful = False
        self.line = bytearray()  # careful mode: bytes of the current chunk-size line
        self.chunk_left: int | None = None
        self.stop: str | None = None  # set by a callback to end the current feed
        self.resync_pending = False
        self.max_header_bytes = session.max_header_bytes
        self.max_header_count = session.max_header_count
        self.meter = session.meter
        self.filling = False
        self.tail = b""  # careful mode: last two bytes fed
        # The parser is made on the first byte fed (HttpSession._feed): a
        # direction that never carries data costs no llhttp state.

    def new_parser(self) -> None:
        if self.is_request:
            self.parser = httptools.HttpRequestParser(self)
        else:
            self.parser = httptools.HttpResponseParser(self)
        self.parser.set_dangerous_leniencies(**_LENIENT)
        self.tail = b""
        self.line.clear()
        self.chunk_left = None

    # ---------------------------------------------------- llhttp callbacks

    def on_message_begin(self) -> None:
        now = self.session.now
        self.msg = Message(now)
        self.msg.feed_no = self.feed_no
        self.messages += 1
        if self.is_request:
            self.txn = self.session._request_begins(self.msg)
        else:
            self.txn = self.session._response_begins(self.msg)
        if self.carry:
            self.txn.anomalies |= self.carry
            self.carry = set()
        if self.resync_pending:
            self.txn.anomalies.add("http_resync")
            self.resync_pending = False

    def _line_seen(self) -> None:
        msg = self.msg
        if not msg.line_seen:
            msg.line_seen = True
            self.good += 1
            if msg.feed_no == self.feed_no:
                self.began += 1

    def on_url(self, url: bytes) -> None:
        msg = self.msg
        room = self.session.max_uri_bytes - msg.uri_len
        if len(url) > room:
            url = url[: max(room, 0)]
            self.txn.anomalies.add("uri_limit")
        msg.uri_len += len(url)
        msg._uri_parts.append(url)
        if not msg.line_seen:
            self._line_seen()

    def on_status(self, status: bytes) -> None:
        self.msg._reason_parts.append(status)
        if not self.msg.line_seen:
            self._line_seen()

    def _start_line(self) -> None:
        """The start line is complete (first header, or end of headers):
        keep its fields now, so a message cut short still has them."""
        msg, p = self.msg, self.parser
        msg.version = p.get_http_version()
        if self.is_request:
            msg.method = p.get_method().decode("ascii", "replace")
            raw, self.raw_line = self.raw_line, None
            if raw is not None and not raw.isascii():
                # llhttp saw 'x' for bytes >= 0x80 (_request_line): the
                # record gets the bytes that were on the wire.
                parts = raw.split(b" ")
                msg.uri = _text(parts[1] if len(parts) > 1 else b"")
            else:
                msg.uri = _text(b"".join(msg._uri_parts))
            if msg.method in _SPECIAL:
                self.session.special = True
        else:
            msg.status = p.get_status_code()
            msg.reason = _text(b"".join(msg._reason_parts))
        msg._uri_parts = msg._reason_parts = None

    def on_header(self, name: bytes, value: bytes) -> None:
        msg = self.msg
        if msg._uri_parts is not None:
            self._start_line()
        n = len(name) + len(value)
        msg.header_count += 1
        msg.header_bytes += n + 4
        if msg.header_count > self.max_header_count or msg.header_bytes > self.max_header_bytes:
            self.txn.anomalies.add("header_limit")
            return
        if not msg.released:
            cost = n + HEADER_COST
            msg.mem += cost
            meter = self.meter  # Meter.add, inlined: once per header
            meter.http_bytes += cost
            if meter.http_bytes > meter.limit:
                meter.over = True
        key = _NAMES.get(name)
        if key is None:
            key = _text(name).lower()
            if len(_NAMES) < 512:
                # Header names repeat on every message: keep the lowercase
                # str of the first 512 spellings seen (bounded).
                _NAMES[name] = key
        try:
            val = value.decode()
        except UnicodeDecodeError:
            val = _text(value)
        headers = msg.headers
        if key in headers:
            # RFC 9110 section 5.3: repeated fields combine with ", ".
            headers[key] = headers[key] + ", " + val
        else:
            headers[key] = val

    def on_headers_complete(self) -> None:
        msg = self.msg
        msg.end_ts = self.session.now
        msg.hdrs_done = True
        if msg._uri_parts is not None:
            self._start_line()
        cl = msg.headers.get("content-length")
        if cl is not None:
            try:
                msg.content_length = int(cl.split(",")[0].strip())
            except ValueError:
                msg.content_length = None
        te = msg.headers.get("transfer-encoding", "")
        msg.chunked = "chunked" in te.lower()
        bodies = self.session.bodies
        if bodies is not None:
            if self.session.meter.keep_bodies:
                msg.body = bodies.start(msg.headers)
            else:
                msg.body_truncated = True
        if not msg.line_seen:
            self._line_seen()
        if not self.is_request:
            self.session._response_headers(self, msg)

    def on_body(self, body: bytes) -> None:
        msg = self.msg
        msg.end_ts = self.session.now
        if not self.filling:
            # body_len counts bytes seen; zeros standing in for a gap are
            # counted in missed_bytes instead.
            msg.body_len += len(body)
            if msg.body is not None:
                self.session._keep_body(self, msg, body)
        if self.chunk_left is not None:
            self.chunk_left -= len(body)

    def on_chunk_header(self) -> None:
        if self.careful:
            try:
                self.chunk_left = int(bytes(self.line).split(b";")[0].strip(), 16)
            except ValueError:
                self.chunk_left = None
        self.line.clear()

    def on_chunk_complete(self) -> None:
        self.chunk_left = None
        self.line.clear()

    def on_message_complete(self, at_close: bool = False) -> None:
        msg = self.msg
        msg.complete = True
        if not at_close:
            # The byte that completed it; a close-delimited body ends at its
            # last byte (set by on_body), not at the FIN that told us so.
            msg.end_ts = self.session.now
        self.msg = None
        self.line.clear()
        self.chunk_left = None
        if self.is_request:
            self.session._request_complete(self, msg)
        else:
            self.session._response_complete(self, msg)

    # ----------------------------------------------------------- feeding

    def body_left(self) -> int | None:
        """Bytes of the current body that can be fed in one piece safely."""
        msg = self.msg
        if msg is None or msg.method is None and msg.status is None:
            return None
        if msg.content_length is not None and not msg.chunked:
            return msg.content_length - msg.body_len
        if msg.chunked:
            return self.chunk_left if self.chunk_left and self.chunk_left > 0 else None
        return None


class HttpSession:
    def __init__(self, max_pending_requests: int = 100, max_header_bytes: int = 65536,
                 max_header_count: int = 256, midstream: bool = False, max_uri_bytes: int = 8192,
                 meter: Meter | None = None, bodies=None) -> None:
        self.max_pending_requests = max_pending_requests
        self.max_uri_bytes = max_uri_bytes
        self.meter = meter if meter is not None else Meter()
        # sniffd.bodies.BodyCapture when bodies are captured, else None.
        self.bodies = bodies
        # Why messages finished by the operation in progress end (end,
        # close, a gap, a parse error): becomes a transaction's end_reason.
        self.ending: str | None = None
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self.now = 0.0
        self.depth = 0
        # Requests awaiting a response, oldest first.  A list, not a deque:
        # it is short (max_pending_requests) and an empty deque costs 768
        # bytes on every connection.
        self.pending: list[Transaction] = []
        self.done: list[Transaction] = []
        mode = RESYNC if midstream else HTTP
        self.req = _Side(self, True, mode)
        self.resp = _Side(self, False, mode)
        self.midstream = midstream
        self.non_http = False
        # True while a HEAD or CONNECT request awaits its response: only then
        # can a response need careful feeding (see _needs_care).
        self.special = False
        # Anomalies for the session's stats that touch no transaction.
        self.loose: list[str] = []

    # ---------------------------------------------------------- public

    def feed(self, from_client: bool, chunks: list, now: float) -> None:
        self.now = now
        side = self.req if from_client else self.resp
        for c in chunks:
            mode = side.mode
            if mode is DEAD or mode is TUNNEL:
                return
            cls = c.__class__
            if cls is int:
                self._gap(side, c)
                continue
            if cls is tuple:
                c, self.now = c  # data that waited for a hole: its capture time
            else:
                self.now = now
            side.seen_bytes += len(c)
            if mode is HTTP and (from_client or not self.special):
                # The common case: whole chunk to llhttp, no careful feeding.
                side.careful = False
                rest = self._feed(side, c)
                if rest:
                    self._data(side, rest)
            else:
                self._data(side, c)

    def feed_data(self, from_client: bool, data: bytes, now: float) -> None:
        """``feed`` for one in-order data chunk: the flow table's fast path
        calls this once per data segment, without building a chunk list."""
        side = self.req if from_client else self.resp
        if side.mode is not HTTP or (self.special and not from_client):
            self.feed(from_client, (data,), now)
            return
        self.now = now
        side.seen_bytes += len(data)
        side.careful = False
        rest = self._feed(side, data)
        if rest:
            self._data(side, rest)

    def note(self, from_client: bool, names) -> None:
        side = self.req if from_client else self.resp
        txn = side.txn if side.msg is not None else None
        if txn is None and not from_client and self.pending:
            txn = self.pending[0]
        if txn is not None:
            txn.anomalies.update(names)
        else:
            side.carry.update(names)

    def end(self, from_client: bool, now: float, why: str = "fin") -> None:
        """That direction will carry no more data (FIN or RST); ``why`` is
        the end_reason of a transaction this finishes."""
        self.now = now
        self.ending = why
        side = self.req if from_client else self.resp
        if side.mode is HELD and side.is_request:
            self._set_buf(side, bytearray())
        msg = side.msg
        if msg is not None and side.mode is HTTP:
            if not side.is_request and self._close_delimited(msg):
                # RFC 9112 section 6.3 rule 8: the body ends with the connection.
                side.on_message_complete(at_close=True)
            else:
                side.txn.anomalies.add("message_incomplete")
                self._abandon(side)
        if side.mode is RESYNC and side.good == 0 and side.seen_bytes:
            self._mark_non_http()
        side.mode = DEAD if side.mode is not TUNNEL else TUNNEL
        if side.buf:
            self._set_buf(side, bytearray())
        self.ending = None

    def close(self, reason: str | None, now: float, why: str = "end_of_input") -> None:
        """Finish every open transaction; ``reason`` is an anomaly name for
        transactions cut by it (idle_timeout, cut_by_shutdown, conn_evicted,
        memory_evicted) or None for a normal end (FIN/RST seen, end of
        input); ``why`` is their end_reason."""
        self.now = now
        for from_client in (True, False):
            side = self.req if from_client else self.resp
            if side.msg is not None and reason and side.mode is HTTP:
                side.txn.anomalies.add(reason)
            self.end(from_client, now, why)
        while self.pending:
            txn = self.pending.pop(0)
            if txn.response is None:
                txn.anomalies.add("response_missing")
                if reason:
                    txn.anomalies.add(reason)
            if txn.end_reason is None:
                txn.end_reason = why
            self.done.append(txn)

    def take(self) -> list[Transaction]:
        """Finished transactions, oldest first; their memory leaves the
        meter here, the one place every transaction leaves the session."""
        done, self.done = self.done, []
        freed = 0
        for txn in done:
            for msg in (txn.request, txn.response):
                if msg is not None and not msg.released:
                    freed += msg.mem
                    msg.released = True
        if freed:
            self.meter.http_bytes -= freed
        return done

    @property
    def open_transactions(self) -> int:
        return len(self.pending)

    # --------------------------------------------------- pairing (callbacks)

    def _request_begins(self, msg: Message) -> Transaction:
        self.depth += 1
        txn = Transaction(self.depth)
        txn.request = msg
        if self.midstream and self.depth == 1:
            txn.anomalies.add("midstream_pickup")
        if len(self.pending) >= self.max_pending_requests:
            # Pipelining deeper than the bound: the oldest unanswered request
            # is written now rather than held without limit (not one whose
            # response is being parsed: that one finishes by itself, and
            # writing it here too wrote it twice: found by fuzzing).
            k = 1 if self.pending[0].response is not None and len(self.pending) > 1 else 0
            old = self.pending.pop(k)
            old.anomalies.update(("response_missing", "pending_overflow"))
            old.end_reason = "pending_overflow"
            self.done.append(old)
        self.pending.append(txn)
        return txn

    def _response_begins(self, msg: Message) -> Transaction:
        if self.pending:
            txn = self.pending[0]
            if txn.response is not None:
                # A second final response to one request cannot happen; treat
                # this one as unsolicited rather than overwrite.
                txn = None
        else:
            txn = None
        if txn is None:
            self.depth += 1
            txn = Transaction(self.depth)
            txn.anomalies.add("request_missing")
            if self.midstream and self.depth == 1:
                txn.anomalies.add("midstream_pickup")
            self.pending.insert(0, txn)
        txn.response = msg
        return txn

    def _response_headers(self, side: _Side, msg: Message) -> None:
        txn = side.txn
        method = txn.request.method if txn.request is not None else None
        status = msg.status
        if method == "HEAD" or (method == "CONNECT" and 200 <= status < 300):
            # Headers only (RFC 9110 sections 9.3.2 and 9.3.6).  Careful
            # feeding guarantees the parser was fed exactly to here.
            msg.no_body = True
            side.stop = "connect" if method == "CONNECT" else "head"

    def _request_complete(self, side: _Side, msg: Message) -> None:
        side.txn = None

    def _response_complete(self, side: _Side, msg: Message) -> None:
        txn = side.txn
        side.txn = None
        status = msg.status or 0
        if 100 <= status < 200 and status != 101:
            txn.interim.append((status, msg.reason or ""))
            txn.response = None
            self.meter.http_bytes -= msg.mem
            return
        txn.end_reason = "complete"
        self._finish(txn)
        if self.req.mode is HELD:
            self._resume_requests()

    def _finish(self, txn: Transaction) -> None:
        if self.pending and self.pending[0] is txn:
            self.pending.pop(0)
        else:
            try:
                self.pending.remove(txn)
            except ValueError:
                pass
        if self.special and txn.request is not None and txn.request.method in _SPECIAL:
            # Back to whole-chunk feeding once no HEAD/CONNECT is pending.
            self.special = any(t.request is not None and t.request.method in _SPECIAL for t in self.pending)
        if txn.end_reason is None:
            txn.end_reason = self.ending or "complete"
        self.done.append(txn)

    # ------------------------------------------------------------- data

    def _data(self, side: _Side, data: bytes) -> None:
        stuck = -1
        while data:
            mode = side.mode
            if mode is HTTP:
                n = len(data)
                data = self._parse(side, data)
                if data and len(data) == n and side.mode is HTTP:
                    # A parse error resynchronised at the very start of what
                    # it was given.  Once is a real restart; twice means the
                    # start line found there fails itself: skip a byte and
                    # look further, or this would loop forever.
                    if stuck == n:
                        side.mode = RESYNC
                        side.parser = None
                        self._set_buf(side, bytearray())
                        data = data[1:]
                        stuck = -1
                    else:
                        stuck = n
            elif mode is RESYNC:
                data = self._resync(side, data)
            elif mode is HELD:
                if len(side.buf) + len(data) <= RESYNC_WINDOW:
                    side.buf += data
                    self._charge_buf(side)
                return
            else:
                return

    def _needs_care(self, side: _Side) -> bool:
        """Could the bytes about to be fed hold a response to HEAD/CONNECT?"""
        if side.is_request or not self.special:
            return False
        for txn in self.pending:
            if txn.response is not None and txn.response is not side.msg:
                continue
            req = txn.request
            if req is not None and req.method in ("HEAD", "CONNECT"):
                return True
        return False

    def _parse(self, side: _Side, data: bytes) -> bytes:
        """Feed ``data``; return what is left for another mode to take.

        Careful mode feeds in pieces that end exactly where a message
        boundary can be: a header section up to its first empty line, a
        known-length body run, chunk-size lines a byte at a time.  llhttp
        fires its callbacks at the last byte of each piece, so a HEAD or
        CONNECT response is stopped exactly at the end of its headers."""
        if not self._needs_care(side):
            side.careful = False
            return self._feed(side, data)
        side.careful = True
        i, n = 0, len(data)
        msg = side.msg
        if n > 1 and msg is not None and msg.hdrs_done:
            run = side.body_left()
            if run is not None and run >= n:
                # The whole chunk lies inside the current body run, so it
                # holds no boundary: one piece, as the loop below would feed
                # it, without the loop's copies (most careful-mode chunks are
                # body segments of other responses queued before a HEAD's).
                rest = self._feed(side, data)
                side.tail = data[-2:]
                if rest:
                    return rest
                if side.mode is HTTP and side.msg is None and not self._needs_care(side):
                    side.careful = False
                return b""
        while i < n and side.mode is HTTP:
            msg = side.msg
            if msg is None or not msg.hdrs_done:
                step = self._header_run(side, data, i)
                in_body = False
            else:
                run = side.body_left()
                step = run if run and run > 0 else 1
                in_body = step == 1
            piece = data[i : i + step]
            if in_body:
                side.line += piece
            rest = self._feed(side, piece)
            i += len(piece) - len(rest)
            side.tail = (side.tail + piece)[-2:]
            if rest:
                # ``rest`` is the unconsumed end of ``piece``, so data[i:]
                # already starts with it (returning rest + data[i:] parsed
                # those bytes twice: found by fuzzing).
                return data[i:]
            if side.mode is not HTTP:
                return data[i:]
            if side.msg is None and not self._needs_care(side):
                # Past every HEAD/CONNECT answer: back to whole chunks.
                side.careful = False
                return self._feed(side, data[i:]) if i < n else b""
        return data[i:]

    @staticmethod
    def _header_run(side: _Side, data: bytes, i: int) -> int:
        """Bytes from ``i`` up to and including the empty line that ends a
        header section (RFC 9112 section 2.1; a bare LF is accepted like
        llhttp's lenient mode does), or to the end of ``data``."""
        t = side.tail
        if t.endswith(b"\n"):
            if data.startswith(b"\n", i):
                return 1
            if data.startswith(b"\r\n", i):
                return 2
        elif t.endswith(b"\n\r") and data.startswith(b"\n", i):
            return 1
        m = _HEADER_END.search(data, i)
        return (m.end() - i) if m else len(data) - i

    def _feed(self, side: _Side, data: bytes) -> bytes:
        if side.parser is None:
            side.new_parser()
        side.began = 0
        side.feed_no += 1
        side.stop = None
        fed = data
        if side.is_request:
            msg = side.msg
            if msg is None or not side.line_complete:
                fed = self._request_line(side, data)
        try:
            side.parser.feed_data(fed)
        except httptools.HttpParserUpgrade as e:
            off = e.args[0] if e.args else len(data)
            return self._upgraded(side, data[off:])
        except httptools.HttpParserCallbackError as e:
            if side.stop is not None:
                return self._stopped(side)
            return self._parse_error(side, data, e)
        except httptools.HttpParserError as e:
            return self._parse_error(side, data, e)
        if side.stop is not None:
            return self._stopped(side)
        msg = side.msg
        if msg is not None and not msg.hdrs_done and msg.feed_no != side.feed_no:
            # Still in the header section after a whole chunk: count it, and
            # end a message whose headers grow past max_header_bytes
            # (httptools buffers a header value whole: this bounds it).
            msg.hdr_fed += len(data)
            if msg.hdr_fed > self.max_header_bytes:
                self._header_overflow(side)
        return b""

    def _header_overflow(self, side: _Side) -> None:
        msg, txn = side.msg, side.txn
        txn.anomalies.add("header_limit")
        if msg._uri_parts is not None and (msg._uri_parts or msg._reason_parts):
            side._start_line()  # keep the start line seen so far
        self.ending = "header_limit"
        self._abandon(side)
        self.ending = None
        side.mode = RESYNC
        side.parser = None
        self._set_buf(side, bytearray())

    @staticmethod
    def _request_line(side: _Side, data: bytes) -> bytes:
        """Keep the original bytes of the request line being fed, and give
        llhttp a copy with bytes >= 0x80 replaced one for one by 'x'.

        llhttp rejects such bytes in a request target even in lenient mode,
        but clients do send raw UTF-8 (and worse) there; a sniffer must log
        it.  The replacement keeps every position, so upgrade offsets and
        careful feeding still hold; the record's URI comes from the original
        bytes (see _start_line)."""
        start = 0
        if side.msg is None:
            while start < len(data) and data[start] in b"\r\n":
                start += 1  # llhttp skips empty lines between messages
        eol = data.find(b"\n", start)
        end = len(data) if eol < 0 else eol
        line = data[start:end]
        side.raw_line = line if side.msg is None or side.raw_line is None else side.raw_line + line
        side.line_complete = eol >= 0
        if line.isascii():
            return data
        return data[:start] + line.translate(_UNHIGH) + data[end:]

    def _stopped(self, side: _Side) -> bytes:
        """The parser was fed exactly to the end of a HEAD/CONNECT response's
        headers (careful mode): finish it and start a fresh parser."""
        stop, side.stop = side.stop, None
        msg = side.msg
        if msg is not None:
            side.on_message_complete()
        if stop == "connect":
            self._tunnel()
            return b""
        side.new_parser()
        return b""

    def _upgraded(self, side: _Side, rest: bytes) -> bytes:
        if side.is_request:
            # CONNECT or an Upgrade request: what follows is HTTP only if the
            # server declines.  Hold it until the response decides.
            side.mode = HELD
            self._set_buf(side, bytearray(rest[:RESYNC_WINDOW]))
            return b""
        # 101 Switching Protocols (the transaction already completed).
        self._tunnel()
        return b""

    def _tunnel(self) -> None:
        """The connection left HTTP: log what was open, parse no more."""
        for txn in list(self.pending) + self.done[-1:]:
            txn.anomalies.add("http_upgrade")
            txn.tunnel = True
        for side in (self.req, self.resp):
            side.mode = TUNNEL
            self._set_buf(side, bytearray())
            side.parser = None
        self.loose.append("http_upgrade")

    def _resume_requests(self) -> None:
        """The server declined an upgrade/CONNECT: the held bytes are HTTP."""
        side = self.req
        if side.mode is HELD:
            held = bytes(side.buf)
            self._set_buf(side, bytearray())
            side.mode = HTTP
            side.new_parser()
            if held:
                self._data(side, held)

    def _parse_error(self, side: _Side, data: bytes, err: Exception) -> bytes:
        if side.msg is not None:
            side.txn.anomalies.add("http_parse_error")
            self.ending = "parse_error"
            self._abandon(side)
            self.ending = None
        else:
            side.carry.add("http_parse_error")
        side.raw_line = None
        if side.good == 0 and side.is_request and not self.midstream:
            self._mark_non_http()
            return b""
        # The error position is not reported by httptools: rescan this
        # chunk, skipping the start lines of messages already parsed from it.
        skip = side.began
        side.mode = RESYNC
        side.parser = None
        self._set_buf(side, bytearray())
        return self._resync(side, data, skip_matches=skip)

    def _resync(self, side: _Side, data: bytes, skip_matches: int = 0) -> bytes:
        buf = side.buf
        buf += data
        pos = 0
        for _ in range(skip_matches):
            m = self._start_line_at(side, buf, pos)
            if m is None:
                break
            pos = m.start() + 1
        if pos:
            # Start lines of messages already parsed: drop them so a later
            # call (more data appended) cannot match them again.
            del buf[:pos]
        m = self._start_line_at(side, buf, 0)
        if m is None:
            if side.good == 0 and side.seen_bytes > NON_HTTP_AFTER:
                self._mark_non_http()
                return b""
            # Keep only what could still be the start of a start line: each
            # chunk is then searched once (not the whole buffer again, which
            # made junk quadratic) and a resyncing direction holds little.
            keep = self.max_uri_bytes + 256
            if len(buf) > keep:
                del buf[: len(buf) - keep]
            self._charge_buf(side)
            return b""
        start = m.start()
        skipped = start > 0 or pos > 0
        rest = bytes(buf[start:])
        self._set_buf(side, bytearray())
        side.mode = HTTP
        side.new_parser()
        if skipped and (side.good > 0 or not self.midstream or start > 0):
            side.resync_pending = True
        return rest

    def _start_line_at(self, side: _Side, buf: bytearray, pos: int):
        """The first request/status line in ``buf`` from ``pos``, or None.

        Every start line contains "HTTP/1." (RFC 9112 sections 3 and 4): find
        that with bytes.find first (C speed), then run the regex only in a
        window around it.  A regex scan of every position was quadratic-ish
        on junk such as a flood of 'P' (each position tries PUT, POST, ...)."""
        if side.is_request:
            window = self.max_uri_bytes + 64
            lo = pos
            while True:
                idx = buf.find(b" HTTP/1.", lo)
                if idx < 0:
                    return None
                m = REQUEST_LINE.search(buf, max(lo, idx - window), idx + 11)
                if m is not None:
                    return m
                lo = idx + 1
        lo = pos
        while True:
            idx = buf.find(b"HTTP/1.", lo)
            if idx < 0:
                return None
            m = STATUS_LINE.match(buf, idx)
            if m is not None:
                return m
            lo = idx + 1

    def _gap(self, side: _Side, n: int) -> None:
        mode = side.mode
        msg = side.msg
        if mode is HTTP and msg is not None and msg.hdrs_done:
            left = side.body_left()
            if msg.content_length is not None and not msg.chunked and left is not None:
                fill = min(n, left)
                msg.missed_bytes += fill
                if msg.body is not None:
                    msg.body.gap(fill)
                side.txn.anomalies.add("body_gap")
                self._fill(side, fill)
                n -= fill
                if n == 0:
                    return
            elif not side.is_request and self._close_delimited(msg):
                msg.missed_bytes += n
                if msg.body is not None:
                    msg.body.gap(n)
                side.txn.anomalies.add("body_gap")
                self._fill(side, n)
                return
        if side.msg is not None and side.mode is HTTP:
            side.msg.missed_bytes += n
            side.txn.anomalies.add("message_interrupted")
            self.ending = "gap"
            self._abandon(side)
            self.ending = None
        if side.mode in (HTTP, RESYNC):
            # Whatever follows the gap may start mid-message: look for the
            # next start line (http_resync is marked only if bytes are skipped).
            side.mode = RESYNC
            side.parser = None
            self._set_buf(side, bytearray())
        elif side.mode is HELD:
            self._set_buf(side, bytearray())

    def _set_buf(self, side: _Side, buf: bytearray) -> None:
        side.buf = buf
        self._charge_buf(side)

    def _charge_buf(self, side: _Side) -> None:
        """Resync and held-upgrade buffers count against the memory budget."""
        delta = len(side.buf) - side.buf_charged
        if delta:
            side.buf_charged += delta
            self.meter.add(delta)

    def _keep_body(self, side: _Side, msg: Message, data: bytes) -> None:
        buf = msg.body
        before = buf.held_bytes
        if not self.meter.keep_bodies:
            # Memory budget step 2: stop keeping bodies, free this one now.
            msg.body = None
            msg.body_truncated = True
            side.txn.anomalies.add("memory_bodies_dropped")
            msg.mem -= before
            self.meter.http_bytes -= before
            return
        buf.feed(data)
        grown = buf.held_bytes - before
        if grown and not msg.released:
            msg.mem += grown
            self.meter.add(grown)

    def _fill(self, side: _Side, n: int) -> None:
        """Feed ``n`` zeros for bytes lost inside a body whose framing does
        not depend on its content (Content-Length, close-delimited)."""
        side.filling = True
        try:
            while n > 0 and side.mode is HTTP:
                k = min(n, len(_ZEROS))
                self._feed(side, _ZEROS[:k])
                n -= k
        finally:
            side.filling = False

    def _abandon(self, side: _Side) -> None:
        """End the current message as it stands (interrupted or incomplete)."""
        msg, txn = side.msg, side.txn
        side.msg = None
        side.txn = None
        if msg is None or txn is None:
            return
        if msg.method is None and msg.status is None:
            # Not even the start line: nothing worth a record on its own.
            if side.is_request and txn.response is None:
                try:
                    self.pending.remove(txn)
                except ValueError:
                    pass
                side.carry |= txn.anomalies
                self.depth -= 1
                return
            if not side.is_request:
                txn.response = None
                side.carry |= txn.anomalies - {"request_missing"}
                if txn.request is None:
                    try:
                        self.pending.remove(txn)
                    except ValueError:
                        pass
                    self.depth -= 1
                return
        if not side.is_request:
            self._finish(txn)

    @staticmethod
    def _close_delimited(msg: Message) -> bool:
        s = msg.status
        return (
            s is not None and not msg.no_body and msg.content_length is None and not msg.chunked
            and not (100 <= s < 200 or s in (204, 304))
        )

    def _mark_non_http(self) -> None:
        if not self.non_http:
            self.non_http = True
            self.loose.append("non_http")
        for side in (self.req, self.resp):
            side.mode = DEAD
            side.parser = None
            self._set_buf(side, bytearray())
