"""One direction of an HTTP/1.x connection, parsed incrementally (sans-I/O).

A ``MessageReader`` is fed that direction's reassembled bytes in stream
order (``feed``), told about bytes that were lost (``gap``) and about the
end of the stream (``end``).  It frames messages and calls its *listener*
(the session) at four points, in stream order:

* ``begin(reader, msg)``: a start line was read (``msg`` has its method,
  target and version, or status and reason; or ``start_line`` when it could
  not be parsed).  The listener pairs the message and sets ``msg.txn``.
* ``expects_09(reader)``: (responses) does the next response answer an
  HTTP/0.9 request?  Then bytes that are not a status line are its body.
* ``framing(reader, msg) -> (kind, length, peek)``: the header section was
  read; the listener says how the body is delimited (``syntax.NONE``,
  ``LENGTH``, ``CHUNKED``, ``CLOSE``).  ``peek``: the request this response
  answers is unknown, so look at what follows the headers first: a status
  line there means the response had no body (it answered a HEAD).
* ``end_message(reader, msg, how)``: the message is over: ``"complete"``,
  ``"close"`` (a close-delimited body ended with the stream), ``"gap"``
  (a gap outside a known-length body interrupted it), ``"error"`` (a broken
  chunked body), ``"limit"`` (the header section passed max_header_bytes),
  ``"incomplete"`` (the stream ended first).
* ``lost(reader, start, end)``: the stream offsets [start, end) were lost
  where messages may have begun (a gap between or inside messages, up to
  where parsing resumed); ``junk(reader, n)``: ``n`` bytes that belong to no
  message were skipped to find the next start line.

The reader's state (``State``) is the whole parsing state of the direction;
the transitions are in ``_run``, ``gap`` and ``end``, summarised here:

    IDLE --start line--> HEAD --headers--> BODY | CHUNK_SIZE | CLOSE | PEEK | IDLE
    BODY --0 left--> IDLE            CHUNK_SIZE --n>0--> CHUNK_DATA --0 left--> CHUNK_END --> CHUNK_SIZE
    CHUNK_SIZE --0--> TRAILERS --empty line--> IDLE
    PEEK --status line follows--> IDLE (no body) | otherwise the body's state
    HEAD/IDLE --junk--> RESYNC --start line--> IDLE;   any --gap (framing lost)--> RESYNC
    any --hold()--> HELD --release()--> IDLE;          any --off()--> OFF
    any --give()--> GIVEN --hand_off()--> OFF  (everything kept whole for another parser)

Stream offsets: ``pos`` is the offset of the next byte; every message knows
where it starts and ends, and ``ack`` of the segment that carried its first
byte (the pairing uses both, see ``sniffd.http.pairing``).
"""

from __future__ import annotations

import enum
import re

from sniffd.budget import HEADER_COST
from sniffd.http import syntax
from sniffd.http.message import Message
from sniffd.http.syntax import CHUNKED, CLOSE, LENGTH, NONE, text

# While looking for a start line, keep at most this much of the skipped data
# beyond max_uri_bytes: a request line split over segments is found whole.
RESYNC_SLACK = 256
# A direction whose first 64 KiB hold no start line is not HTTP.
NON_HTTP_AFTER = 64 * 1024
# Bytes held while an upgrade or CONNECT awaits its answer.
HOLD_BYTES = 64 * 1024
# A chunk-size line longer than this is broken (extensions included).
MAX_CHUNK_LINE = 4096
# Lost bytes between messages no longer than this may be blank lines only.
_BLANK_LINES = 4

_ZEROS = bytes(64 * 1024)
# A request line inside junk or after a gap: a token (not preceded by
# another token character), a target without spaces, a version, the end of
# the line.  Only lines with a version are recognised there (an HTTP/0.9
# line in junk is indistinguishable from text).
_REQUEST_IN_JUNK = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]+[^ \t\r\n]+[ \t]+HTTP/[0-9]\.[0-9][ \t]*\r?\n")
# Methods recognised at the end of a token glued to junk (longest first).
_KNOWN_METHODS = (b"PROPPATCH", b"PROPFIND", b"OPTIONS", b"CONNECT", b"DELETE", b"UNLOCK", b"PATCH", b"TRACE",
                  b"MKCOL", b"HEAD", b"POST", b"COPY", b"MOVE", b"LOCK", b"GET", b"PUT")
_STATUS_IN_JUNK = re.compile(rb"HTTP/[0-9]\.[0-9][ \t]+[0-9]{3}[ \t\r\n]")
# First bytes that no HTTP message starts with: a TLS record (handshake,
# alert), an SSLv2 hello, an SSH banner.
_NOT_HTTP_START = re.compile(rb"\x16\x03[\x00-\x04]|\x15\x03[\x00-\x04]|\x80[\x00-\xff]\x01\x03|SSH-")

# Header name as sent -> its lowercase str, for token names only (bounded).
_NAMES: dict[bytes, str] = {}

try:  # the common head and header section, in C (see _fields.c)
    from sniffd.http._fields import fields as _cfields, head as _chead
except ImportError:  # built without a C compiler: the Python reference alone
    _cfields = _chead = None
_WS = b" \t"


class State(enum.IntEnum):
    IDLE = 0
    HEAD = 1
    BODY = 2
    CHUNK_SIZE = 3
    CHUNK_DATA = 4
    CHUNK_END = 5
    TRAILERS = 6
    CLOSE = 7
    PEEK = 8
    RESYNC = 9
    HELD = 10
    OFF = 11
    GIVEN = 12


IDLE, HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, BODY_CLOSE, PEEK, RESYNC, HELD, OFF, GIVEN = State

# Results of MessageReader._head
_NEED = -1


class MessageReader:
    __slots__ = (
        "is_request", "listener", "state", "buf", "buf_charged", "left", "msg", "pos", "now", "ack",
        "max_header_bytes", "max_header_count", "max_uri_bytes", "meter", "bodies",
        "head_start", "head_ts", "head_ack", "line_end", "scan", "lost_from", "lost_clean", "junk_from", "gap_end", "good", "v1", "seen", "verdict",
        "peek_kind", "peek_left", "cr", "filling", "midstream", "held_bytes_dropped", "given",
    )

    def __init__(self, is_request: bool, listener, *, max_header_bytes: int = 65536, max_header_count: int = 256,
                 max_uri_bytes: int = 8192, meter=None, bodies=None, midstream: bool = False) -> None:
        self.is_request = is_request
        self.listener = listener
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self.max_uri_bytes = max_uri_bytes
        self.meter = meter
        self.bodies = bodies
        self.midstream = midstream
        self.state = RESYNC if midstream else IDLE
        # HEAD / CHUNK_SIZE / TRAILERS / PEEK / RESYNC / HELD bytes: a
        # bytearray while it holds some, the shared b"" while empty (most of
        # the time; an empty bytearray per direction was 112 bytes of every
        # idle session).  Sites that grow it in place check it is non-empty.
        self.buf = b""
        self.buf_charged = 0  # len(buf) as last charged to the meter
        self.left = 0  # BODY / CHUNK_DATA: bytes to go
        self.msg: Message | None = None
        self.pos = 0
        self.now = 0.0
        self.ack: int | None = None
        self.head_start = 0  # HEAD: stream offset of the message's first byte (buf[0])
        self.head_ts = 0.0
        self.head_ack: int | None = None
        self.line_end = -1  # HEAD: index (from head_start) of the start line's LF
        self.scan = 0  # HEAD: index (from head_start) where the next search resumes
        # RESYNC: offset where a lost stretch began (None: skipping junk),
        # and where the skipped junk began (None: nothing skipped yet).
        self.lost_from: int | None = 0 if midstream else None
        # Whether the lost stretch began between messages (see pairing.Lost.whole).
        self.lost_clean = False
        self.junk_from: int | None = None
        self.gap_end = -1  # where the last lost bytes ended
        self.good = 0  # start lines parsed
        self.v1 = False  # an HTTP/1.x start line was parsed (not only HTTP/0.9 guesses)
        self.seen = 0  # bytes fed
        # Did this direction look like HTTP?  None: not known yet.
        self.verdict: bool | None = None
        self.peek_kind = NONE
        self.peek_left = 0
        self.cr = False  # CHUNK_END: the CR was seen
        self.filling = False  # feeding zeros for a gap inside a body
        self.held_bytes_dropped = 0
        # GIVEN: what this direction got since give(), as feed chunks.
        self.given: list | None = None

    # ------------------------------------------------------------ public

    def feed(self, data: bytes, now: float, ack: int | None) -> None:
        self.now = now
        self.ack = ack
        base = self.pos
        n = len(data)
        self.pos = base + n
        self.seen += n
        st = self.state
        if (st is BODY or st is CHUNK_DATA) and n < self.left:
            # The common case inside a body: the whole chunk is body.
            msg = self.msg
            self.left -= n
            msg.body_len += n
            msg.end_ts = now
            if msg.body is not None:
                self.listener.keep_body(self, msg, data)
            return
        if st is OFF:
            return
        if n + len(self.buf) > self.max_header_bytes and st is not BODY and st is not CHUNK_DATA \
                and st is not BODY_CLOSE:
            self._run_parts(data, base)
            return
        self._run(data, 0, base)

    def _run_parts(self, data: bytes, base: int) -> None:
        """``_run`` for a chunk that could take an unfinished head (or trailer
        section) past max_header_bytes: parsed in parts no longer than what
        the head may still hold plus one byte, so the bound ends the head
        before more is held, and each part is parsed as if it had come on
        its own (the result is the same: the reader gives the same records
        however the stream is cut).  A chunk is one segment's payload
        (~1.4 KiB) nearly always, but a reassembled run, an IP datagram or
        a GRO super-segment can be 64-256 KiB, and the whole of it used to
        be copied into the head's buffer before the bound was checked."""
        n = len(data)
        i = 0
        limit = self.max_header_bytes + 1
        while i < n:
            st = self.state
            if st is OFF:
                break
            if st is BODY or st is CHUNK_DATA or st is BODY_CLOSE:
                k = n
            else:
                k = min(n, i + max(1, limit - (len(self.buf) if st is HEAD or st is TRAILERS else 0)))
            # What has been fed so far ends here (release() reads it).
            self.pos = base + k
            self._run(data[i:k] if i or k < n else data, 0, base + i)
            i = k
        self.pos = base + n

    def gap(self, n: int) -> None:
        """``n`` bytes of this direction were lost (Zeek's Undelivered policy:
        inside a body of known length they count as missed bytes and framing
        goes on; anywhere else the message ends and parsing resynchronises)."""
        base = self.pos
        self.pos = self.gap_end = base + n
        while n > 0:
            st = self.state
            msg = self.msg
            if st is BODY or st is CHUNK_DATA:
                fill = min(n, self.left)
                self._missed(msg, fill)
                self.left -= fill
                n -= fill
                base += fill
                if self.left == 0:
                    if st is BODY:
                        self._complete(base)
                    else:
                        self.state = CHUNK_END
                        self.cr = False
                continue
            if st is BODY_CLOSE:
                self._missed(msg, n)
                return
            if st is PEEK:
                # Whether a body follows is unknowable now (a response to a
                # lost HEAD has none, and its headers would make the next
                # responses its body): it ends at its head, the gap starts a
                # lost stretch, and parsing resumes at the next status line.
                msg.missed_bytes += n
                msg.txn.anomalies.add("message_interrupted")
                self._end(msg, "gap", msg.head_end)
                if self.lost_from is None:
                    self.lost_from = base
                self.junk_from = None
                self._set_buf(b"")
                self.state = RESYNC
                return
            if st is OFF:
                return
            if st is GIVEN:
                self.given.append(n)
                return
            if st is HELD:
                self.listener.held_gap(self)
                return
            if msg is not None and st is not IDLE:
                if st is HEAD:
                    self._partial_fields(msg)
                elif st is TRAILERS:
                    self._partial_trailers(msg)
                msg.missed_bytes += n
                msg.txn.anomalies.add("message_interrupted")
                self._end(msg, "gap", base)
            if self.lost_from is None:
                self.lost_clean = st is IDLE and msg is None
                if st is HEAD and msg is None:
                    self.lost_from = self.head_start  # a start line cut short is lost too
                elif st is RESYNC and self.junk_from is not None:
                    self.lost_from = self.junk_from
                else:
                    self.lost_from = base
            if self.is_request and not (self.midstream and self.good == 0):
                # Requests may have been in the lost bytes: the pairing knows
                # now (a response to one may come before the next request
                # line, or none may come); the resync widens the stretch.
                self.listener.lost(self, self.lost_from, self.pos)
            self.junk_from = None
            self._set_buf(b"")
            self.state = RESYNC
            return

    def end(self) -> None:
        """The stream ended (FIN, RST, or the connection is being closed)."""
        st = self.state
        msg = self.msg
        if st is BODY_CLOSE:
            msg.complete = True
            self._end(msg, "close", self.pos)
        elif st is PEEK:
            # Nothing followed the headers: the response had no body.
            self._complete(msg.head_end)
        elif st is HEAD and msg is not None and self.line_end >= 0 and msg.version == "0.9" and self.is_request \
                and msg.head_end is None and self._await_09():
            self._complete(self.head_start + self.line_end + 1)
        elif msg is not None and st is not IDLE and st is not RESYNC:
            if st is HEAD:
                self._partial_fields(msg)
            elif st is TRAILERS:
                self._partial_trailers(msg)
            msg.txn.anomalies.add("message_incomplete")
            self._end(msg, "incomplete", self.pos)
        if self.good == 0 and self.seen and self.verdict is None:
            self.verdict = False
        self._set_buf(b"")
        self.state = OFF

    def finish_09(self) -> None:
        """The peer started answering: an HTTP/0.9 request line that waited
        to see whether header lines follow had none."""
        msg = self.msg
        if self.state is HEAD and msg is not None and msg.version == "0.9" and msg.head_end is None \
                and self.is_request and self._await_09():
            at = self.head_start + self.line_end + 1
            rest = bytes(self.buf[self.line_end + 1:])
            self._set_buf(b"")
            self._complete(at)
            if rest:
                self._run(rest, 0, at)

    def peek_evidence(self, ack: int) -> None:
        """The peer acknowledged up to ``ack`` of this stream when it sent its
        next request: if that is exactly the end of the headers of the
        response being peeked at, the response ended there (no body)."""
        msg = self.msg
        if self.state is PEEK and msg is not None and msg.head_end is not None and not self.buf:
            if ack == msg.head_end:
                self._complete(msg.head_end)
            # An ack past the head says something followed it, not that it
            # was a body (more responses may have): the bytes will tell.

    def hold(self) -> None:
        """Keep what follows unparsed until ``release``, ``off`` or ``hand_off``."""
        if self.state is not OFF:
            self.state = HELD
            self._set_buf(b"")
            self.held_bytes_dropped = 0

    def release(self) -> None:
        """Parse the held bytes (and what follows) as HTTP again."""
        if self.state is HELD:
            held = bytes(self.buf)
            self._set_buf(b"")
            self.state = IDLE
            if held:
                self._run(held, 0, self.pos - len(held))

    def held(self) -> bytes:
        return bytes(self.buf) if self.state is HELD else b""

    def give(self) -> None:
        """This direction is another parser's from here (a protocol switch
        handed over, sniffd.handover): keep everything that comes, whole and
        unbounded (the flow table takes it with ``hand_off`` as soon as the
        feed in progress returns), from the held bytes (``hold``) if there
        are some, else from the next byte."""
        given: list = []
        if self.state is HELD:
            if self.buf:
                given.append((bytes(self.buf), self.now, None))
            if self.held_bytes_dropped:
                given.append(self.held_bytes_dropped)  # past HOLD_BYTES: lost
        self._set_buf(b"")
        self.given = given
        self.state = GIVEN

    def hand_off(self, start: int) -> list:
        """Parse nothing more (``off``), and give what this direction got
        from stream offset ``start`` on as ``feed`` chunks for another
        parser: bytes as ``(bytes, ts, ack)``, ints for bytes lost.  What
        is missing before them (a gap while holding starts the hold again)
        is lost too: together they span exactly [start, pos)."""
        given = self.given if self.state is GIVEN else []
        self.given = None
        missing = self.pos - start - sum(c if c.__class__ is int else len(c[0]) for c in given)
        if missing > 0:
            given.insert(0, missing)
        self.off()
        return given

    def off(self) -> None:
        """Parse nothing more on this direction."""
        self._set_buf(b"")
        self.state = OFF
        self.msg = None

    @property
    def idle(self) -> bool:
        """Between messages (nothing half-read)."""
        return self.state is IDLE and self.msg is None

    # ----------------------------------------------------------- the loop

    def _run(self, data: bytes, i: int, base: int) -> None:
        """Parse ``data[i:]``; ``data[0]`` is at stream offset ``base``.  The
        loop may switch to another buffer (resynchronisation, a held peek):
        then ``data``, ``i`` and ``base`` are replaced, never recursed."""
        n = len(data)
        while i < n:
            st = self.state
            if st is BODY or st is CHUNK_DATA:
                msg = self.msg
                k = n - i
                left = self.left
                if k >= left:
                    k = left
                msg.body_len += k
                msg.end_ts = self.now
                if msg.body is not None and not self.filling:
                    self.listener.keep_body(self, msg, data[i:i + k])
                self.left = left - k
                i += k
                if self.left == 0:
                    if st is BODY:
                        self._complete(base + i)
                    else:
                        self.state = CHUNK_END
                        self.cr = False
            elif st is IDLE:
                c = data[i]
                if c == 10 or c == 13:
                    i += 1  # empty lines before a message (RFC 9112 section 2.2)
                    continue
                if c == 22 and self.is_request and not self.v1 and self.good and _NOT_HTTP_START.match(data, i) \
                        and self.listener.tls_after_09(self):
                    continue  # given to another parser: the rest is kept for it (GIVEN, below)
                if self.verdict is None and self.good == 0 and _NOT_HTTP_START.match(data, i):
                    self.verdict = False
                    self.listener.not_http(self)
                    if self.state is OFF:
                        return
                    if self.state is GIVEN:
                        continue
                    self.junk_from = base + i
                    self.state = RESYNC
                    continue
                if not self.is_request and c != 72 and self.listener.expects_09(self):
                    have = data[i:i + 5].upper()
                    if b"HTTP/"[:len(have)] != have:
                        self._response_09(base + i)
                        continue
                self.state = HEAD
                self.head_start = base + i
                self.head_ts = self.now  # the message's first byte: its time and ack
                self.head_ack = self.ack
                self.line_end = -1
                self.scan = 0
            elif st is HEAD:
                r = self._head(data, i, base)
                if r is None:
                    return  # all consumed, waiting for more
                data, i, base = r
                n = len(data)
            elif st is CHUNK_SIZE:
                j = data.find(b"\n", i)
                if j < 0:
                    self._buffer(data, i)
                    if len(self.buf) > MAX_CHUNK_LINE:
                        self._chunk_error(base + n)
                        return
                    return
                line = data[i:j]
                if self.buf:
                    line = bytes(self.buf) + line
                    self._set_buf(b"")
                i = j + 1
                size = syntax.chunk_size(line)
                msg = self.msg
                if size is None:
                    if not line.strip(b" \t\r"):
                        continue  # a stray empty line: tolerated
                    self._chunk_error(base + i)
                    continue
                if size:
                    self.left = size
                    self.state = CHUNK_DATA
                else:
                    self.state = TRAILERS
                    self.scan = 0
                    self.head_start = base + i
            elif st is CHUNK_END:
                c = data[i]
                if c == 13 and not self.cr:
                    self.cr = True
                    i += 1
                    continue
                if c == 10:
                    i += 1
                self.state = CHUNK_SIZE  # a missing CRLF is tolerated (llhttp's lenient mode)
            elif st is TRAILERS:
                r = self._trailers(data, i, base)
                if r < 0:
                    return
                i = r
            elif st is BODY_CLOSE:
                msg = self.msg
                k = n - i
                msg.body_len += k
                msg.end_ts = self.now
                if msg.body is not None and not self.filling:
                    self.listener.keep_body(self, msg, data[i:])
                return
            elif st is PEEK:
                have = bytes(self.buf) + data[i:] if self.buf else data[i:i + 5]
                if len(have) < 5 and b"HTTP/"[:len(have)] == have.upper():
                    self._buffer(data, i)
                    return
                start = base + i - len(self.buf)
                if self.buf:
                    data, i, base = bytes(self.buf) + data[i:], 0, start
                    n = len(data)
                    self._set_buf(b"")
                if have[:5].upper() == b"HTTP/":
                    self._complete(start)  # a status line: no body came
                else:
                    self._peek_body(start)
            elif st is RESYNC:
                r = self._resync(data, i, base)
                if r is None:
                    return
                data, i, base = r
                n = len(data)
            elif st is HELD:
                room = HOLD_BYTES - len(self.buf)
                if room > 0:
                    self._buffer(data[i:i + room], 0)
                self.held_bytes_dropped += max(0, n - i - room)
                self.listener.held_data(self)
                return
            elif st is GIVEN:
                self.given.append((data[i:] if i else data, self.now, self.ack))
                return
            else:  # OFF
                return

    # ----------------------------------------------------------- messages

    def _new(self, start: int) -> Message:
        msg = Message(self.head_ts, start, self.head_ack)
        self.msg = msg
        return msg

    def _head(self, data: bytes, i: int, base: int):
        """HEAD: find and parse the start line and the header section.
        Returns None when everything was consumed (more is needed), else
        ``(data, i, base)`` to go on with."""
        buf = self.buf
        if not buf and self.line_end < 0:
            # The common head: whole in this chunk.  _whole_head does it in
            # one go, or declines (then the general path below decides).
            eol = data.find(b"\n", i)
            if eol >= 0:
                e1 = data.find(b"\n\r\n", eol)
                e2 = data.find(b"\n\n", eol)
                if e1 >= 0 or e2 >= 0:
                    if e1 < 0 or (0 <= e2 < e1):
                        k, end = e2, e2 + 2
                    else:
                        k, end = e1, e1 + 3
                    if self._whole_head(data, i, base, eol, k + 1, end):
                        return data, end, base
        if buf:
            skip = len(buf)
            buf += data[i:]
            self._charge()
            b, s = buf, 0
        else:
            skip = 0
            b, s = data, i
        # b[s] is the message's first byte (stream offset head_start).
        if self.line_end < 0:
            eol = b.find(b"\n", s + self.scan)
            if eol < 0:
                return self._need(data, i, b, s)
            line = b[s:eol]
            if self.is_request:
                parsed = syntax.request_line(line)
            else:
                parsed = syntax.status_line(line)
            if parsed is None:
                return self._bad_start(data, i, base, b, s, eol)
            self.line_end = eol - s
            self.scan = 0
            msg = self._new(self.head_start)
            if self.is_request:
                method, target, version, flags = parsed
                msg.method = method
                if target is not None:
                    if len(target) > self.max_uri_bytes:
                        target = target[: self.max_uri_bytes]
                        flags = flags + ("uri_limit",)
                    msg.uri = text(target)
            else:
                version, status, reason, flags = parsed
                msg.status = status
                msg.reason = reason
            msg.version = version
            self.good += 1
            self.verdict = True
            if version != "0.9":
                self.v1 = True
            self.listener.begin(self, msg)
            if flags:
                msg.txn.anomalies.update(flags)
            if self.state is not HEAD:
                return None  # the listener stopped this direction
        msg = self.msg
        le = s + self.line_end  # index of the start line's LF
        if msg.version == "0.9" and self.is_request:
            # HTTP/0.9: header lines follow only if the next line is one.
            nxt = b[le + 1 : le + 1 + 256]
            if not nxt or nxt == b"\r":
                return self._need(data, i, b, s)
            if nxt[:1] == b"\n" or nxt[:2] == b"\r\n":
                pass  # an empty line: a header section without fields
            elif not syntax.FIELD_START.match(nxt):
                if self._could_be_field(nxt):
                    return self._need(data, i, b, s)
                # A simple request: it ends with its line.
                return self._head_done(data, i, base, b, s, le + 1, le + 1, skip)
        start = max(le, s + self.scan)
        e1 = b.find(b"\n\r\n", start)
        e2 = b.find(b"\n\n", start)
        if e1 < 0 and e2 < 0:
            self.scan = max(self.line_end, len(b) - s - 2)
            return self._need(data, i, b, s)
        if e1 < 0 or (0 <= e2 < e1):
            k, end = e2, e2 + 2
        else:
            k, end = e1, e1 + 3
        return self._head_done(data, i, base, b, s, k + 1, end, skip)

    def _whole_head(self, data: bytes, i: int, base: int, eol: int, fields_end: int, end: int) -> bool:
        """A head whose start line is data[i:eol] and whose fields end at
        data[fields_end] (the head at data[end]).  Parse it, tell the
        listener, set up the body.  False (nothing done) for the odd cases
        the general path handles: a start line that does not parse, an
        HTTP/0.9 request.  The general path does the same in steps
        (``_head``, ``_head_done``, ``_framing``); this is the hot path."""
        if _chead is not None:
            done = _chead(data, i, eol, fields_end, self.is_request, _NAMES, self.max_header_count,
                          self.max_header_bytes, self.max_uri_bytes)
            if done is not None:
                return self._whole_head_c(done, base, end)
        if self.is_request:
            parsed = syntax.request_line(data[i:eol])
            if parsed is None or parsed[2] == "0.9":
                return False
            method, target, version, flags = parsed
            msg = Message(self.head_ts, self.head_start, self.head_ack)
            msg.method = method
            if target is not None:
                if len(target) > self.max_uri_bytes:
                    target = target[: self.max_uri_bytes]
                    flags = flags + ("uri_limit",)
                try:
                    msg.uri = target.decode()
                except UnicodeDecodeError:
                    msg.uri = text(target)
        else:
            parsed = syntax.status_line(data[i:eol])
            if parsed is None:
                return False
            version, status, reason, flags = parsed
            msg = Message(self.head_ts, self.head_start, self.head_ack)
            msg.status = status
            msg.reason = reason
        msg.version = version
        if not self._opened(msg, flags):
            return True  # the listener stopped this direction
        if fields_end > eol + 1:
            self._fields(msg, data[eol + 1 : fields_end])
        return self._head_read(msg, base + end)

    def _opened(self, msg: Message, flags) -> bool:
        """``msg``'s start line was read: it is this direction's message, the
        listener pairs it, ``flags`` go on its transaction.  False if the
        listener stopped this direction."""
        self.msg = msg
        self.v1 = True  # the whole-head paths take no HTTP/0.9 line
        if self.verdict is not True:
            self.good += 1
            self.verdict = True
        self.listener.begin(self, msg)
        if flags:
            msg.txn.anomalies.update(flags)
        return self.state is HEAD

    def _whole_head_c(self, done: tuple, base: int, end: int) -> bool:
        """``_whole_head`` with the head parsed by _fields.c's head()."""
        first, second, version, headers, count, nbytes = done
        msg = Message(self.head_ts, self.head_start, self.head_ack)
        if self.is_request:
            msg.method = first
            msg.uri = second
        else:
            msg.status = first
            msg.reason = second
        msg.version = version
        if not self._opened(msg, ()):
            return True  # the listener stopped this direction
        msg.headers = headers
        msg.header_count = count
        msg.header_bytes = nbytes
        meter = self.meter
        if count and meter is not None:
            cost = nbytes + count * HEADER_COST
            msg.mem += cost
            meter.http_bytes += cost
            if meter.http_bytes > meter.limit:
                meter.over = True
        return self._head_read(msg, base + end)

    def _head_read(self, msg: Message, head_end: int) -> bool:
        """The hot path's end of a head: framing, then the body's state."""
        msg.head_end = head_end
        msg.end_ts = self.now
        listener = self.listener
        kind, length, peek = listener.framing(self, msg)
        if self.msg is not msg:
            return True
        if kind == NONE:
            msg.complete = True
            msg.end_off = head_end
            self.msg = None
            self.state = IDLE
            listener.end_message(self, msg, "complete")
        elif kind == LENGTH and not peek and self.bodies is None:
            self.left = length
            self.state = BODY
        else:
            self._body_of(msg, kind, length, peek, head_end)
        return True

    def _head_done(self, data, i, base, b, s, fields_end, end, skip):
        """The header section is b[line_end+1 : fields_end]; the head ends at
        b[end]."""
        msg = self.msg
        le = s + self.line_end
        if fields_end > le + 1 and msg.start_line is None:
            # (A message whose start line could not be parsed keeps no
            # headers, however its head was cut into segments.)
            self._fields(msg, b[le + 1 : fields_end])
        head_end = self.head_start + (end - s)
        msg.head_end = head_end
        msg.end_ts = self.now
        # Where parsing goes on: after the head.  From the buffer, the rest
        # of it goes on as the input (a head may end before bytes that were
        # already buffered: an HTTP/0.9 line followed by another message).
        self.line_end = -1
        self.scan = 0
        if b is data:
            self._framing(msg, head_end)
            return data, end, base
        rest = bytes(b[end:])
        self._set_buf(b"")
        self._framing(msg, head_end)
        return rest, 0, head_end

    def _framing(self, msg: Message, head_end: int) -> None:
        """The head is read: set up the body (or end the message)."""
        if msg.start_line is not None:
            kind, length, peek = NONE, 0, False
        else:
            kind, length, peek = self.listener.framing(self, msg)
            if self.msg is not msg:
                return  # the listener ended it (a stop at a tunnel)
        if kind == NONE:
            msg.complete = True
            self._end(msg, "complete", head_end)
            return
        self._body_of(msg, kind, length, peek, head_end)

    def _body_of(self, msg: Message, kind: int, length: int, peek: bool, head_end: int) -> None:
        """The message has a body of this kind: set the state to read it."""
        bodies = self.bodies
        if bodies is not None:
            if self.meter.keep_bodies:
                msg.body = bodies.start(msg.headers)
            else:
                msg.body_truncated = True
        if peek:
            self.state = PEEK
            self.peek_kind = kind
            self.peek_left = length
            return
        self._start_body(kind, length, head_end)

    def _start_body(self, kind: int, length: int, at: int) -> None:
        if kind == LENGTH:
            self.left = length
            self.state = BODY
        elif kind == CHUNKED:
            self.state = CHUNK_SIZE
        elif kind == CLOSE:
            self.state = BODY_CLOSE
        else:
            self._complete(at)

    def _peek_body(self, at: int) -> None:
        self._start_body(self.peek_kind, self.peek_left, at)

    def _fields(self, msg: Message, block: bytes) -> None:
        """Header (or trailer) field lines into ``msg.headers``.

        The loop is the hot path of a header section: a line whose name is
        a token already seen takes the fast branch; everything else (a new
        name, obs-fold, no colon, a malformed name) goes to ``_odd_field``."""
        if block.__class__ is not bytes:
            block = bytes(block)
        if _cfields is not None and msg.header_count == 0:
            done = _cfields(block, _NAMES, self.max_header_count, self.max_header_bytes)
            if done is not None:
                msg.headers, count, nbytes = done
                msg.header_count = count
                msg.header_bytes = nbytes
                meter = self.meter
                if count and not msg.released and meter is not None:
                    cost = nbytes + count * HEADER_COST
                    msg.mem += cost
                    meter.http_bytes += cost
                    if meter.http_bytes > meter.limit:
                        meter.over = True
                return
        lines = block.split(b"\r\n")
        if block.count(b"\n") != len(lines) - 1:  # bare LF line ends (RFC 9112 section 2.2)
            lines = [ln[:-1] if ln[-1:] == b"\r" else ln for ln in block.split(b"\n")]
        headers = msg.headers
        names = _NAMES
        count = msg.header_count
        nbytes = msg.header_bytes
        max_count = self.max_header_count
        max_bytes = self.max_header_bytes
        last = None
        for line in lines:
            if not line:
                continue
            name, colon, value = line.partition(b":")
            key = names.get(name)
            if key is None or not colon:
                key, value = self._odd_field(msg, line, last)
                if key is None:
                    if value is None:
                        last = None
                    continue
            else:
                value = value.strip(_WS)
            count += 1
            nbytes += len(line) + 2
            if count > max_count or nbytes > max_bytes:
                msg.txn.anomalies.add("header_limit")
                last = None
                continue
            try:
                val = value.decode()
            except UnicodeDecodeError:
                val = text(value)
            if key in headers:
                # RFC 9110 section 5.3: repeated fields combine with ", ".
                headers[key] += ", " + val
            else:
                headers[key] = val
            last = key
        # The fields kept cost their bytes plus the str/dict overhead.
        kept = count - msg.header_count
        cost = nbytes - msg.header_bytes + kept * HEADER_COST
        msg.header_count = count
        msg.header_bytes = nbytes
        meter = self.meter
        if kept > 0 and not msg.released and meter is not None:
            msg.mem += cost
            meter.http_bytes += cost  # Meter.add, inlined: once per section
            if meter.http_bytes > meter.limit:
                meter.over = True

    def _odd_field(self, msg: Message, line: bytes, last: str | None):
        """A field line off the fast path.  Returns ``(key, value)`` to store,
        ``(None, b"")`` when the line was handled (obs-fold), or
        ``(None, None)`` when it was skipped."""
        anomalies = msg.txn.anomalies
        c0 = line[0]
        if c0 == 32 or c0 == 9:
            # obs-fold (RFC 9112 section 5.2): a continuation line.
            anomalies.add("http_obs_fold")
            headers = msg.headers
            if last is not None and last in headers:
                headers[last] = headers[last] + " " + text(line.strip(_WS))
                if msg.odd is None:
                    msg.odd = set()
                msg.odd.add(last)
                return None, b""
            return None, None
        colon = line.find(b":")
        if colon < 0:
            anomalies.add("http_header_no_colon")
            return None, None
        name = line[:colon]
        value = line[colon + 1 :].strip(_WS)
        if syntax.TOKEN.fullmatch(name):
            key = name.decode("ascii").lower()
            if len(_NAMES) < 512:
                _NAMES[name] = key  # names repeat on every message: bounded cache
            return key, value
        trimmed = name.strip(_WS)
        anomalies.add("http_header_invalid")
        if not trimmed:
            return None, None
        key = text(trimmed).lower()
        if msg.odd is None:
            msg.odd = set()
        msg.odd.add(key)
        return key, value

    def _partial_fields(self, msg: Message) -> None:
        """A head cut short: keep the complete field lines read so far."""
        buf = self.buf
        if self.line_end < 0 or not buf or msg.start_line is not None:
            return
        last = buf.rfind(b"\n")
        if last > self.line_end:
            self._fields(msg, bytes(buf[self.line_end + 1 : last + 1]))

    def _partial_trailers(self, msg: Message) -> None:
        """A trailer section cut short: keep its complete field lines, as
        ``_partial_fields`` does for a head (``buf`` holds the section so
        far from its first byte)."""
        buf = self.buf
        last = buf.rfind(b"\n")
        if last >= 0:
            self._fields(msg, bytes(buf[: last + 1]))

    def _trailers(self, data: bytes, i: int, base: int) -> int:
        """TRAILERS: up to the empty line after the last chunk.  Returns the
        index after it, or -1 when more is needed."""
        if self.buf:
            self.buf += data[i:]
            self._charge()
            b, s, skip = self.buf, 0, len(self.buf) - (len(data) - i)
        else:
            b, s, skip = data, i, 0
        if b[s : s + 1] == b"\n":
            end, fields_end = s + 1, s
        elif b[s : s + 2] == b"\r\n":
            end, fields_end = s + 2, s
        else:
            e1 = b.find(b"\n\r\n", s + self.scan)
            e2 = b.find(b"\n\n", s + self.scan)
            if (e1 < 0 and e2 < 0) or (len(b) - s == 1 and b[s] == 13):
                if b is data:
                    self._buffer(data, i)
                if len(self.buf) > self.max_header_bytes:
                    self._partial_trailers(self.msg)
                    self._chunk_error(base + len(data))
                    return -1
                self.scan = max(0, len(b) - s - 2)
                return -1
            if e1 < 0 or (0 <= e2 < e1):
                end, fields_end = e2 + 2, e2 + 1
            else:
                end, fields_end = e1 + 3, e1 + 1
        msg = self.msg
        if fields_end > s:
            self._fields(msg, b[s:fields_end])
        nxt = end if b is data else i + (end - skip)
        if b is not data:
            self._set_buf(b"")
        self.scan = 0
        self._complete(base + nxt)
        return nxt

    # ------------------------------------------------------------ endings

    def _complete(self, at: int) -> None:
        msg = self.msg
        msg.complete = True
        self._end(msg, "complete", at)

    def _end(self, msg: Message, how: str, at: int) -> None:
        msg.end_off = at
        if how == "complete" and (msg.head_end is None or at > msg.head_end) and not self.filling:
            msg.end_ts = self.now  # the byte that completed it
        self.msg = None
        self.left = 0
        self.line_end = -1
        st = self.state
        if st is not OFF and st is not HELD and st is not GIVEN:
            self.state = IDLE
        self.listener.end_message(self, msg, how)

    def _missed(self, msg: Message, n: int) -> None:
        msg.missed_bytes += n
        if msg.body is not None:
            msg.body.gap(n)
        msg.txn.anomalies.add("body_gap")

    def _chunk_error(self, at: int) -> None:
        msg = self.msg
        msg.txn.anomalies.add("http_chunk_invalid")
        self._set_buf(b"")
        self._end(msg, "error", at)
        self.state = RESYNC
        self.junk_from = at  # what follows up to a start line is the broken body
        self.lost_from = None
        self.listener.desync(self, msg)

    def _header_limit(self, data, i, base, b, s):
        """The header section passed max_header_bytes: end the message as it
        stands and look for the next start line."""
        msg = self.msg
        msg.txn.anomalies.add("header_limit")
        self._partial_fields(msg)
        at = self.head_start + (len(b) - s)
        if b is not data:
            self._set_buf(b"")
        self._end(msg, "limit", at)
        self.state = RESYNC
        self.lost_from = None
        self.junk_from = at  # the rest of the oversized head, up to a start line
        self.listener.desync(self, msg)
        return None

    # ---------------------------------------------------- odd start lines

    def _need(self, data, i, b, s):
        """The head is not complete yet: keep its bytes (bounded)."""
        if b is data:
            self._buffer(data, i)
        if len(self.buf) > self.max_header_bytes:
            msg = self.msg
            if msg is not None:
                self._header_limit(data, i, 0, self.buf, 0)
                return None
            # A start line longer than any server accepts: not a message.
            self.junk_from = self.head_start
            self.state = RESYNC
            junk = bytes(self.buf)
            self._set_buf(b"")
            return self._resync(junk, 0, self.head_start)
        return None

    @staticmethod
    def _could_be_field(nxt: bytes) -> bool:
        """Is ``nxt`` (no LF) a prefix that may still become a field line?"""
        if b"\n" in nxt:
            return False
        m = syntax.TOKEN.match(nxt)
        end = m.end() if m else 0
        return end == len(nxt) or not nxt[end:].strip(_WS)

    def _await_09(self) -> bool:
        """An HTTP/0.9 request line is waiting for its next line."""
        nxt = bytes(self.buf[self.line_end + 1:]) if self.buf else b""
        return not nxt or nxt == b"\r" or self._could_be_field(nxt)

    def _response_09(self, at: int) -> None:
        """An HTTP/0.9 response: no status line, the body runs to the close."""
        if self.state is not HEAD:
            self.head_ts, self.head_ack = self.now, self.ack
        msg = self._new(at)
        msg.version = "0.9"
        self.good += 1
        self.verdict = True
        self.listener.begin(self, msg)
        msg.head_end = at
        self._framing(msg, at)

    def _bad_start(self, data, i, base, b, s, eol):
        """The line b[s:eol] is neither a request nor a status line."""
        if not self.is_request and self.listener.expects_09(self):
            at = self.head_start
            self.line_end = -1
            self._response_09(at)
            return self._switch(data, i, base, b, s)
        line = b[s:eol]
        # 1. A start line later in the same line: skip the junk before it.
        j = self._start_in_line(line)
        if j > 0:
            at = s + j
            self.listener.junk(self, j, True)
            return self._restart_head(data, i, base, b, s, at)
        # 2. A header section follows: an unparseable message.
        nxt = bytes(b[eol + 1 : eol + 1 + 256])
        head_like = nxt[:1] == b"\n" or nxt[:2] == b"\r\n" or syntax.FIELD_START.match(nxt) is not None
        if not head_like and (not nxt or nxt == b"\r" or self._could_be_field(nxt)):
            self.scan = eol - s  # search from this LF again next time
            return self._need(data, i, b, s)
        if head_like:
            msg = self._new(self.head_start)
            cut = line[: self.max_uri_bytes]
            if cut.endswith(b"\r"):
                cut = cut[:-1]
            msg.start_line = text(cut)
            self.line_end = eol - s
            self.scan = 0
            self.listener.begin(self, msg)
            msg.txn.anomalies.add("http_parse_error")
            self.listener.desync(self, msg)
            if self.state is not HEAD:
                return None
            e1 = b.find(b"\n\r\n", eol)
            e2 = b.find(b"\n\n", eol)
            if e1 < 0 and e2 < 0:
                self.scan = max(self.line_end, len(b) - s - 2)
                return self._need(data, i, b, s)
            end = e2 + 2 if e1 < 0 or (0 <= e2 < e1) else e1 + 3
            skip = len(b) - (len(data) - i) if b is not data else 0
            return self._head_done(data, i, base, b, s, s + self.line_end + 1, end, skip)
        # 3. Junk: skip to the next start line.
        self.junk_from = self.head_start
        self.state = RESYNC
        return self._switch(data, i, base, b, s)

    def _start_in_line(self, line: bytes) -> int:
        """Offset of a request/status line that starts inside ``line``, or 0."""
        if self.is_request:
            k = line.find(b"HTTP/")
            if k < 0:
                return 0
            m = _REQUEST_IN_JUNK.search(line + b"\n", 1)
            if m is None:
                return 0
            j = m.start()
            # A token that begins inside a token run started earlier: the
            # whole run is the method, and that failed at offset 0.
            return j if not syntax._IS_TCHAR[line[j - 1]] else 0
        k = line.find(b"HTTP/", 1)
        if k > 0 and _STATUS_IN_JUNK.match(line + b"\n", k):
            return k
        return 0

    def _restart_head(self, data, i, base, b, s, at):
        """Start the head again at b[at] (junk before it was skipped)."""
        self.head_start += at - s
        self.line_end = -1
        self.scan = 0
        if b is data:
            return data, at, base
        rest = bytes(b[at:])
        self._set_buf(b"")
        return rest, 0, self.head_start

    def _switch(self, data, i, base, b, s):
        """Go on in another state with the head's bytes (b[s:] and the rest
        of data) as input."""
        if b is data:
            return data, s, base
        rest = bytes(b[s:])
        self._set_buf(b"")
        return rest, 0, self.head_start

    # --------------------------------------------------- resynchronisation

    def _resync(self, data: bytes, i: int, base: int):
        """RESYNC: skip to the next start line.  Returns None when all was
        consumed, else ``(data, i, base)`` positioned at the start line."""
        buf = self.buf
        if buf:
            origin = base + i - len(buf)
            buf += data[i:]
            self._charge()
            b = buf
            s = 0
        else:
            origin = base + i
            b = data
            s = i
        j = self._find_start(b, s)
        if j < 0:
            if self.verdict is None and self.good == 0 and self.seen > NON_HTTP_AFTER:
                self.verdict = False
                self.listener.not_http(self)
                if self.state is OFF or self.state is GIVEN:
                    return None
            keep = self.max_uri_bytes + RESYNC_SLACK
            if b is data:
                tail = data[max(i, len(data) - keep):]
                self._set_buf(tail)
            elif len(buf) > keep:
                del buf[: len(buf) - keep]
                self._charge()
            return None
        at = origin + (j - s)
        if self.junk_from is not None and self.junk_from >= origin and not bytes(b[s:j]).strip(b"\r\n \t"):
            self.junk_from = None  # only empty lines were skipped
        self._resynced(at)
        self.state = IDLE
        if b is data:
            return data, j, base
        rest = bytes(b[j:])
        self._set_buf(b"")
        return rest, 0, at

    def _resynced(self, at: int) -> None:
        """A start line was found at stream offset ``at``."""
        if self.lost_from is not None:
            start, self.lost_from = self.lost_from, None
            _junk_from, self.junk_from = self.junk_from, None
            if self.midstream and self.good == 0:
                if at > start:
                    self.listener.junk(self, at - start, False)
            else:
                # Lost from a message's end, with more than blank lines
                # up to the next start line: at least one message began in
                # the lost bytes (the rest of it was skipped).
                self.listener.lost(self, start, at, self.lost_clean and at - start > _BLANK_LINES,
                                   at - self.gap_end > _BLANK_LINES)
        elif self.junk_from is not None:
            n, self.junk_from = at - self.junk_from, None
            if n > 0:
                self.listener.junk(self, n, True)

    def skipping_after_gap(self) -> bool:
        """Is the reader skipping the rest of a message cut by lost bytes
        (more than blank lines since them, no start line yet)?"""
        return self.state is RESYNC and self.lost_from is not None and self.pos - self.gap_end > _BLANK_LINES

    def _find_start(self, b, s: int) -> int:
        """Index of the first start line in b[s:], or -1."""
        if self.is_request:
            lo = s
            while True:
                k = b.find(b"HTTP/", lo)
                if k < 0:
                    return -1
                # The line around "HTTP/": from the previous LF.
                ls = b.rfind(b"\n", s, k) + 1
                if ls == 0:
                    ls = s
                le = b.find(b"\n", k)
                if le < 0:
                    return -1  # the line is not complete yet: wait
                # Leftmost match: its token cannot start inside a longer run.
                m = _REQUEST_IN_JUNK.search(b, ls, le + 1)
                if m is not None:
                    j = m.start()
                    # After a gap, glued to what came before it (a body's
                    # tail after a lost head: "...qyNGET / HTTP/1.1"): a
                    # known method at the end of an unknown token is where
                    # the line starts.  (Not after junk: CCM_POST is a method.)
                    tok = b[j : syntax.TOKEN.match(b, j).end()]
                    if self.lost_from is not None and tok not in _KNOWN_METHODS:
                        for known in _KNOWN_METHODS:
                            if tok.endswith(known):
                                return j + len(tok) - len(known)
                    return j
                lo = k + 1
        lo = s
        while True:
            k = b.find(b"HTTP/", lo)
            if k < 0:
                return -1
            if _STATUS_IN_JUNK.match(b, k):
                return k
            if len(b) - k < 14:
                return -1  # maybe a status line, not complete yet
            lo = k + 1

    # ------------------------------------------------------------ helpers

    def _buffer(self, data: bytes, i: int) -> None:
        if self.buf:
            self.buf += data[i:]
        else:
            self.buf = bytearray(data[i:])
        self._charge()

    def _set_buf(self, value) -> None:
        self.buf = bytearray(value) if value else b""
        self._charge()

    def _charge(self) -> None:
        """Buffered bytes count against the memory budget."""
        delta = len(self.buf) - self.buf_charged
        if delta and self.meter is not None:
            self.buf_charged += delta
            self.meter.add(delta)
