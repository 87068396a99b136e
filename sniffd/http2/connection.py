"""One HTTP/2 connection in clear (h2c) seen from the outside: both directions'
frames -> one ``Transaction`` per stream.  Sans-I/O: fed bytes and times,
returns values, reads no clock, never raises on what came off the wire.

Call order (each direction's bytes in order, the two directions interleaved
as they were captured)::

    conn = H2Connection()                       # prior knowledge: the client
                                                # sends the preface first
    conn = H2Connection.after_upgrade(req, resp)  # or after Upgrade: h2c / 101
    conn.feed(from_client, data, now)           # reassembled bytes
    conn.gap(from_client, nbytes)               # bytes lost in a capture gap
    conn.note(from_client, names)               # the flow table's anomalies
    conn.end(from_client, now, why)             # FIN / RST of one direction
    conn.close(reason, now, why)                # the connection is over
    txns = conn.take()                          # finished, in finishing order

``mem`` is the bytes the connection holds (buffers, HPACK tables, open
streams, finished transactions not taken yet), for the memory budget;
``loose`` counts the anomalies that touched no stream.

What the records get, per stream (see ``sniffd.http2.fields`` for the field
mapping): ``Transaction.stream_id``; ``request`` / ``response`` Messages
with ``version`` ``"2"`` (an upgraded stream 1 keeps its HTTP/1.1 request as
sent, and the 101 in ``interim``); ``interim``: 1xx responses as
``(status, None)``; ``end_reason``: ``complete``, ``rst_stream`` (the code
in ``h2_error``), ``goaway`` (a stream above the last-stream-id of a GOAWAY:
never processed; the code in ``h2_error``), ``gap``, ``stream_limit``, or the
``why`` given to ``end`` / ``close`` (``fin``, ``rst``, ``idle``,
``end_of_input`` ...); ``grpc``: ``(status, message)`` from a response's
``grpc-status`` / ``grpc-message``; ``pushed_by``: for a server push, the
stream whose response carried the PUSH_PROMISE (the pushed stream's request
is the promised request, its response the pushed response).

Gaps.  Inside a DATA frame a gap only costs body bytes (``missed_bytes``,
``body_gap``, as a gap inside an HTTP/1 body of known length).  Inside another frame whose length is known, that frame is
dropped and reading goes on; a header block (HEADERS, PUSH_PROMISE,
CONTINUATION) dropped that way breaks the direction's HPACK state.  A gap
that loses the frame boundaries (it spans a frame header) ends the reading
of that direction: there is no marker to find the next frame by, and the
HPACK state could not be trusted after it anyway.  Every stream the loss
touched gets ``http2_gap``; every header section that could not be decoded
afterwards gets ``http2_hpack_desync`` and a Message with no method, uri,
status nor fields (``headers`` is ``{}``), though its timing, body length
and END_STREAM still come from the frames.  The other direction is read on:
its HPACK state is its own.
"""

from __future__ import annotations

import base64
import enum

from sniffd.http.message import Message, Transaction
from sniffd.http2 import frames as fr
from sniffd.http2.decoder import HeaderDecoder
from sniffd.http2.fields import Limits, request_fields
from sniffd.http2.streams import DONE, FIELD_COST, STREAM_COST, Stream

# The longest header block (HEADERS or PUSH_PROMISE and its CONTINUATION
# frames, compressed) kept to decode.  Four times the 64 KiB header list
# hpack itself and most servers accept (nginx's large_client_header_buffers
# total 32 KiB; Go's http2 server 1 MB of *decoded* list): no real block
# comes near it compressed.  A longer block cannot be decoded, and since it
# may have changed the dynamic table, the direction's HPACK state is lost
# (http2_header_block_limit).  This is also the bound on any other frame's
# payload kept (SETTINGS, GOAWAY; DATA is never buffered).
MAX_HEADER_BLOCK_BYTES = 262_144

# The largest decoded header list (RFC 7541 section 4.1 sizes: name, value
# and 32 per field) hpack may build from one block: what one indexed byte
# can expand to is bounded only by this.  Go's net/http accepts 1 MB of
# header (DefaultMaxHeaderBytes), so a list under it is one a real server
# could have taken.  Past it hpack stops mid-block and the direction's
# HPACK state is lost (http2_header_list_limit).  Transient: only the first
# max_header_bytes of it are kept on the record.
MAX_HEADER_LIST_BYTES = 1_048_576

# Open streams tracked per connection.  Servers allow 100 to 250 at once
# (SETTINGS_MAX_CONCURRENT_STREAMS: Apache and h2o 100, nginx 128, Go 250),
# so only a flood or a peer ignoring the setting reaches 1,000; past it the
# oldest open stream is written as it stands (end_reason stream_limit,
# http2_stream_limit).  ~1 KiB each before header fields.
MAX_OPEN_STREAMS = 1000

# The HTTP/1 reader's defaults for the same config keys (sniffd.http.session).
DEFAULT_MAX_HEADER_BYTES = 65536
DEFAULT_MAX_HEADER_COUNT = 256

CLIENT, SERVER = 0, 1


class Kind(enum.Enum):
    """What a header block in progress will be."""

    HEADERS = 0
    PUSH_PROMISE = 1


class _Block:
    """A header block being collected (HEADERS / PUSH_PROMISE, then
    CONTINUATION frames until END_HEADERS, RFC 9113 section 6.10)."""

    __slots__ = ("kind", "stream_id", "end_stream", "promised", "start", "off", "parts", "size", "lost")

    def __init__(self, kind: Kind, stream_id: int, end_stream: bool, promised: int, start: float, off: int) -> None:
        self.kind = kind
        self.stream_id = stream_id
        self.end_stream = end_stream
        self.promised = promised
        self.start = start
        self.off = off
        self.parts: list[bytes] = []
        self.size = 0
        # Why the block cannot be decoded (an anomaly name), None while it can.
        self.lost: str | None = None


class H2Connection:
    """See the module docstring.  Constructor arguments are the config keys
    they share a name with; ``bodies``: a ``sniffd.bodies.BodyCapture`` when
    bodies are captured; ``first_depth``: the trans_depth of the first
    stream (after an upgrade, that of the HTTP/1 request it continues)."""

    def __init__(self, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
                 max_header_count: int = DEFAULT_MAX_HEADER_COUNT,
                 max_header_block_bytes: int = MAX_HEADER_BLOCK_BYTES,
                 max_header_list_bytes: int = MAX_HEADER_LIST_BYTES,
                 max_open_streams: int = MAX_OPEN_STREAMS, bodies=None, first_depth: int = 1) -> None:
        if max_open_streams < 1 or max_header_block_bytes < 1 or max_header_list_bytes < 1:
            raise ValueError("H2Connection: max_open_streams, max_header_block_bytes and "
                             "max_header_list_bytes must be at least 1")
        self.limits = Limits(max_header_bytes, max_header_count)
        self.max_header_block_bytes = max_header_block_bytes
        self.max_open_streams = max_open_streams
        self.bodies = bodies
        # [client, server]: each direction's frame reader, the decoder of
        # the header blocks it sends, and its header block in progress.
        self.readers = [fr.FrameReader(True, max_header_block_bytes), fr.FrameReader(False, max_header_block_bytes)]
        self.decoders = [HeaderDecoder(max_header_list_bytes), HeaderDecoder(max_header_list_bytes)]
        self.blocks: list[_Block | None] = [None, None]
        # Open streams, oldest first (dict order).
        self.streams: dict[int, Stream] = {}
        self.done: list[Transaction] = []
        # Anomalies that touched no stream: name -> count (bounded by the names).
        self.loose: dict[str, int] = {}
        # Anomalies waiting for the next stream (noted while none was open).
        self.carry: set[str] = set()
        self.next_depth = first_depth
        # The highest stream id each side has opened (client odd, server even).
        self.last_id = [0, 0]
        # The last-stream-id of the lowest GOAWAY each side sent (None: none).
        self.goaway: list[int | None] = [None, None]
        # The largest frame each side may send: the other side's
        # SETTINGS_MAX_FRAME_SIZE, the largest announced (RFC 9113 4.2).
        self.max_frame = [fr.DEFAULT_MAX_FRAME_SIZE, fr.DEFAULT_MAX_FRAME_SIZE]
        # A direction that is no longer read: (anomaly or None, end_reason)
        # for the streams it cuts, else None.
        self.dead: list[tuple[str | None, str] | None] = [None, None]
        self.now = 0.0
        # Bytes the streams hold, open and finished-not-taken (Stream.mem).
        self.stream_mem = 0
        self.keep_bodies = bodies is not None

    # ------------------------------------------------------------- entries

    @classmethod
    def after_upgrade(cls, request: Message, switching: Message | None = None, **kwargs) -> H2Connection:
        """A connection that switched to HTTP/2 by ``Upgrade: h2c`` (RFC 7540
        section 3.2; RFC 9113 section 3.1 deprecated the mechanism, clients
        still use it): ``request`` (the HTTP/1.1 request, complete) is stream
        1's request, ``switching`` (the 101 response, if at hand) goes to its
        interim responses, and the response comes on stream 1 in HTTP/2.
        Feed the client's bytes from the first one after the request (the
        preface) and the server's from the first one after the 101 (its
        SETTINGS).  The request's HTTP2-Settings field is the client's
        first SETTINGS."""
        conn = cls(**kwargs)
        st = conn._open(1, CLIENT)
        before = st.mem
        st.promised(request, True)
        conn.stream_mem += st.mem - before
        if switching is not None:
            st.txn.interim.append((switching.status, switching.reason))
        encoded = request.headers.get("http2-settings")
        if encoded is not None:
            entries = None
            try:
                # RFC 7540 section 3.2.1: base64url, padding omitted.
                text = encoded.strip()
                raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
                entries = fr.settings_entries(raw)
            except Exception:
                pass
            if entries is None:
                st.txn.anomalies.add("http2_protocol_error")
            else:
                conn._settings(CLIENT, entries, 1)
        conn.now = request.end_ts
        return conn

    def feed(self, from_client: bool, data: bytes, now: float) -> None:
        d = CLIENT if from_client else SERVER
        if self.dead[d] is not None:
            return
        if now > self.now:
            self.now = now
        reader = self.readers[d]
        for f in reader.feed(data):
            self._frame(d, f, now)
        if reader.failure is not None and self.dead[d] is None:
            self._kill(d, reader.failure, "parse_error")

    def gap(self, from_client: bool, nbytes: int) -> None:
        d = CLIENT if from_client else SERVER
        if self.dead[d] is not None or nbytes <= 0:
            return
        lost = self.readers[d].skip(nbytes)
        kind = lost.kind
        if kind == "data":
            st = self.streams.get(lost.stream_id)
            if st is not None:
                st.missed(from_client, lost.content)
            if lost.frame is not None:
                self._frame(d, lost.frame, self.now)
        elif kind == "frame":
            t = lost.type
            if t == fr.HEADERS or t == fr.PUSH_PROMISE or t == fr.CONTINUATION:
                # A header block's bytes are gone: what it did to the dynamic
                # table is unknown.  Its frame header was read, so its stream
                # and flags still say where the block belongs and ends.
                self._lost_block_frame(d, lost, self.now)
            else:
                self._flag(lost.stream_id, "http2_gap")
        elif kind == "sync":
            self._kill(d, "http2_gap", "gap")

    def note(self, from_client: bool, names) -> None:
        """Anomalies from the transport (tcp_gap, tcp_overlap_conflict ...)
        for the streams whose message of that direction is in progress; the
        next stream when none is."""
        d = CLIENT if from_client else SERVER
        hit = False
        for st in self.streams.values():
            if st.sides[d] is not DONE:
                st.txn.anomalies.update(names)
                hit = True
        if not hit:
            self.carry.update(names)

    def end(self, from_client: bool, now: float, why: str = "fin") -> None:
        """That direction will carry no more bytes (FIN or RST): its
        messages not complete end here, with ``why`` as end_reason."""
        d = CLIENT if from_client else SERVER
        if now > self.now:
            self.now = now
        if self.dead[d] is not None:
            return
        self.readers[d].end()
        if self.blocks[d] is not None:
            self._drop_block(d, None)
        self._kill(d, None, why)

    def close(self, reason: str | None, now: float, why: str = "end_of_input") -> None:
        """Finish every open stream; ``reason``: an anomaly for the streams
        it cuts (idle_timeout, conn_evicted, memory_evicted,
        cut_by_shutdown) or None for a normal end; ``why``: their end_reason."""
        if reason:
            for st in self.streams.values():
                st.txn.anomalies.add(reason)
        self.end(True, now, why)
        self.end(False, now, why)
        for st in list(self.streams.values()):
            st.cut(None, why)
            self._finish(st)
        if self.carry:
            for name in self.carry:
                self._loose(name)
            self.carry = set()

    def take(self) -> list[Transaction]:
        """Finished transactions, in the order they finished (a stream's
        ``depth`` is its place in the order streams were opened)."""
        done = self.done
        if not done:
            return done
        self.done = []
        for txn in done:
            self.stream_mem -= txn_mem(txn)
        return done

    def drop_bodies(self) -> int:
        """Memory budget: stop keeping bodies (now and for new streams);
        returns the bytes freed."""
        self.keep_bodies = False
        freed = 0
        for st in self.streams.values():
            freed += st.drop_body()
        self.stream_mem -= freed
        return freed

    @property
    def mem(self) -> int:
        """Bytes held: frame buffers, header blocks in progress, HPACK
        dynamic tables, streams and the transactions not taken yet."""
        total = self.stream_mem
        for d in (CLIENT, SERVER):
            total += self.readers[d].held + self.decoders[d].table_bytes
            block = self.blocks[d]
            if block is not None:
                total += block.size
        return total

    @property
    def open_transactions(self) -> int:
        return len(self.streams)

    # ------------------------------------------------------------ frames

    def _frame(self, d: int, f: fr.Frame, now: float) -> None:
        t = f.type
        block = self.blocks[d]
        if block is not None and (t != fr.CONTINUATION or f.stream_id != block.stream_id):
            # RFC 9113 section 6.10: nothing may come between a header
            # block's frames; a receiver fails the connection.  The stream
            # gets the name with its (undecoded) header section.
            block.lost = "http2_bad_continuation"
            self._end_block(d, now)
        if not f.more and f.length > self.max_frame[d]:
            # Larger than the receiver allowed (SETTINGS_MAX_FRAME_SIZE): a
            # FRAME_SIZE_ERROR for it (RFC 9113 section 4.2); read anyway.
            self._flag(f.stream_id, "http2_frame_too_large")
        if t == fr.DATA:
            self._data(d, f, now)
        elif t == fr.HEADERS:
            self._headers_frame(d, f, now)
        elif t == fr.CONTINUATION:
            self._continuation(d, f, now)
        elif t == fr.RST_STREAM:
            code = fr.rst_stream_code(f.payload)
            if code is None or f.stream_id == 0:
                self._flag(f.stream_id, "http2_protocol_error")
                return
            st = self.streams.get(f.stream_id)
            if st is not None:
                st.txn.h2_error = fr.error_name(code)
                st.cut(None, "rst_stream")
                self._finish(st)
        elif t == fr.SETTINGS:
            if f.stream_id != 0:
                self._loose("http2_protocol_error")
                return
            if f.flags & fr.ACK:
                if f.length:
                    self._loose("http2_protocol_error")
                return
            entries = None if f.cut else fr.settings_entries(f.payload)
            if entries is None:
                self._loose("http2_protocol_error")
                return
            self._settings(d, entries, 0)
        elif t == fr.PUSH_PROMISE:
            self._push_promise_frame(d, f, now)
        elif t == fr.GOAWAY:
            fields = fr.goaway_fields(f.payload)
            if fields is None or f.stream_id != 0:
                self._loose("http2_protocol_error")
                return
            self._goaway(d, *fields)
        elif t == fr.PING:
            if f.length != 8 or f.stream_id != 0:
                self._loose("http2_protocol_error")
        elif t == fr.PRIORITY:
            if f.length != 5 or f.stream_id == 0:
                self._flag(f.stream_id, "http2_protocol_error")
        elif t == fr.WINDOW_UPDATE:
            if f.length != 4:
                self._flag(f.stream_id, "http2_protocol_error")
        # Any other type: unknown, ignored (RFC 9113 section 4.1 and 5.5).

    def _data(self, d: int, f: fr.Frame, now: float) -> None:
        sid = f.stream_id
        last = not f.more
        if sid == 0:
            if last:
                self._loose("http2_protocol_error")
            return
        st = self.streams.get(sid)
        if st is None:
            if last and sid > self.last_id[_initiator(sid)]:
                # DATA on a stream never opened (RFC 9113 section 5.1).
                self._loose("http2_protocol_error")
            # Else a stream already finished: frames in flight after an
            # RST_STREAM are normal (section 5.4.2).
            return
        if f.bad_padding:
            st.txn.anomalies.add("http2_protocol_error")
        before = st.mem
        st.data(d == CLIENT, f.payload, last and bool(f.flags & fr.END_STREAM), now, self.readers[d].pos)
        self.stream_mem += st.mem - before
        if st.finished:
            self._finish(st)

    def _headers_frame(self, d: int, f: fr.Frame, now: float) -> None:
        block = _Block(Kind.HEADERS, f.stream_id, bool(f.flags & fr.END_STREAM), 0, now, self.readers[d].pos)
        if f.cut:
            block.lost = "http2_header_block_limit"
        else:
            frag = fr.headers_fragment(f.flags, f.payload)
            if frag is None:
                # Padding or priority longer than the frame: the block
                # cannot be found in it (a PROTOCOL_ERROR).
                block.lost = "http2_protocol_error"
            else:
                self._add(block, frag)
        if f.stream_id == 0:
            self._loose("http2_protocol_error")
        self.blocks[d] = block
        if f.flags & fr.END_HEADERS:
            self._end_block(d, now)

    def _push_promise_frame(self, d: int, f: fr.Frame, now: float) -> None:
        block = _Block(Kind.PUSH_PROMISE, f.stream_id, False, 0, now, self.readers[d].pos)
        if d == CLIENT:
            self._loose("http2_protocol_error")  # only servers push (RFC 9113 8.4)
        if f.cut:
            block.lost = "http2_header_block_limit"
        else:
            parsed = fr.push_promise_fields(f.flags, f.payload)
            if parsed is None:
                block.lost = "http2_protocol_error"
            else:
                block.promised = parsed[0]
                self._add(block, parsed[1])
        self.blocks[d] = block
        if f.flags & fr.END_HEADERS:
            self._end_block(d, now)

    def _continuation(self, d: int, f: fr.Frame, now: float) -> None:
        block = self.blocks[d]
        if block is None:
            # A CONTINUATION with no block open: a fragment of a block whose
            # start was not seen, so the dynamic table is no longer known.
            self._flag(f.stream_id, "http2_bad_continuation")
            self.decoders[d].lose("http2_bad_continuation")
            return
        if f.cut:
            block.lost = block.lost or "http2_header_block_limit"
        else:
            self._add(block, f.payload)
        if f.flags & fr.END_HEADERS:
            self._end_block(d, now)

    def _lost_block_frame(self, d: int, lost, now: float) -> None:
        t = lost.type
        if t == fr.CONTINUATION:
            block = self.blocks[d]
            if block is None:
                self.decoders[d].lose("http2_gap")
                self._flag(lost.stream_id, "http2_gap")
                return
            block.lost = block.lost or "http2_gap"
        else:
            if self.blocks[d] is not None:
                self.blocks[d].lost = "http2_bad_continuation"
                self._end_block(d, now)
            kind = Kind.HEADERS if t == fr.HEADERS else Kind.PUSH_PROMISE
            end_stream = t == fr.HEADERS and bool(lost.flags & fr.END_STREAM)
            block = _Block(kind, lost.stream_id, end_stream, 0, now, self.readers[d].pos)
            block.lost = "http2_gap"
            self.blocks[d] = block
        if lost.flags & fr.END_HEADERS:
            self._end_block(d, now)

    def _add(self, block: _Block, frag: bytes) -> None:
        if block.lost is not None:
            return
        if block.size + len(frag) > self.max_header_block_bytes:
            block.lost = "http2_header_block_limit"
            block.parts = []
            block.size = 0
            return
        block.parts.append(frag)
        block.size += len(frag)

    def _drop_block(self, d: int, name: str | None) -> None:
        """A block in progress will never end (its direction ended or lost
        its frame boundaries): its stream's header section is lost."""
        block = self.blocks[d]
        self.blocks[d] = None
        self.decoders[d].lose(name or block.lost or "http2_gap")
        if name is not None:
            self._flag(block.stream_id, name)

    def _end_block(self, d: int, now: float) -> None:
        """The block is over (END_HEADERS, or abandoned): decode it, in
        this direction's order, whatever becomes of its stream."""
        block = self.blocks[d]
        self.blocks[d] = None
        dec = self.decoders[d]
        if block.lost is not None:
            dec.lose(block.lost)
            fields, anomaly = None, block.lost
        else:
            fields, anomaly = dec.decode(b"".join(block.parts))
        if block.kind is Kind.HEADERS:
            self._header_section(d, block, fields, anomaly, now)
        else:
            self._push_promise(d, block, fields, anomaly, now)

    def _header_section(self, d: int, block: _Block, fields, anomaly: str | None, now: float) -> None:
        sid = block.stream_id
        if sid == 0:
            return
        st = self.streams.get(sid)
        if st is None:
            if sid <= self.last_id[_initiator(sid)]:
                return  # a stream already finished (section 5.4.2)
            if d == CLIENT and sid % 2 == 0:
                anomaly_extra = "http2_protocol_error"  # clients open odd streams (5.1.1)
            else:
                anomaly_extra = None
            st = self._open(sid, d)
            if anomaly_extra:
                st.txn.anomalies.add(anomaly_extra)
        before = st.mem
        st.headers(d == CLIENT, fields, block.end_stream, block.start, now, block.off, self.limits, anomaly)
        self.stream_mem += st.mem - before
        if st.finished:
            self._finish(st)

    def _push_promise(self, d: int, block: _Block, fields, anomaly: str | None, now: float) -> None:
        promised = block.promised
        if promised == 0 and block.lost is not None:
            # The promise itself was lost: its pushed response will show up
            # as a stream with no request.
            self._flag(block.stream_id, anomaly or "http2_gap")
            return
        if d == CLIENT or promised == 0 or promised % 2 or promised <= self.last_id[SERVER] \
                or promised in self.streams:
            # RFC 9113 section 6.6 / 5.1.1: promised ids are new, even ids.
            self._flag(block.stream_id, "http2_protocol_error")
            return
        st = self._open(promised, SERVER)
        st.txn.pushed_by = block.stream_id
        msg = Message(block.start, block.off, None)
        msg.end_ts = now
        msg.version = "2"
        if fields is not None:
            request_fields(msg, fields, self.limits, st.txn.anomalies)
        if anomaly is not None:
            st.txn.anomalies.add(anomaly)
        before = st.mem
        st.promised(msg, fields is not None)
        self.stream_mem += st.mem - before

    def _settings(self, d: int, entries: list[tuple[int, int]], stream_id: int) -> None:
        """SETTINGS sent by side ``d``: they govern what the other side sends."""
        other = 1 - d
        for ident, value in entries:
            if ident == fr.SETTINGS_HEADER_TABLE_SIZE:
                # RFC 7541 section 4.2: the limit for the dynamic table of
                # the blocks the other side sends.
                self.decoders[other].announce(value)
            elif ident == fr.SETTINGS_MAX_FRAME_SIZE:
                if fr.DEFAULT_MAX_FRAME_SIZE <= value <= fr.LARGEST_MAX_FRAME_SIZE:
                    if value > self.max_frame[other]:
                        self.max_frame[other] = value
                else:
                    self._flag(stream_id, "http2_protocol_error")
            elif ident == fr.SETTINGS_ENABLE_PUSH and value > 1:
                self._flag(stream_id, "http2_protocol_error")
            # The others (MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE,
            # MAX_HEADER_LIST_SIZE, unknown ones) change nothing sniffd reads.

    def _goaway(self, d: int, last: int, code: int) -> None:
        """GOAWAY sent by side ``d``: the other side's streams above ``last``
        were not and will not be processed (RFC 9113 section 6.8)."""
        prev = self.goaway[d]
        self.goaway[d] = last if prev is None else min(prev, last)
        name = fr.error_name(code)
        other_parity = 1 if d == SERVER else 0  # client streams are odd
        touched = False
        for st in list(self.streams.values()):
            if code:
                st.txn.anomalies.add("http2_goaway_error")
                if st.txn.h2_error is None:
                    st.txn.h2_error = name
                touched = True
            if st.id % 2 == other_parity and st.id > last:
                st.txn.h2_error = name
                st.cut(None, "goaway")
                self._finish(st)
        if code and not touched:
            self._loose("http2_goaway_error")

    # ------------------------------------------------------------ streams

    def _open(self, sid: int, d: int) -> Stream:
        """A new stream, ``d`` being the side whose frame opened it."""
        if len(self.streams) >= self.max_open_streams:
            oldest = next(iter(self.streams.values()))
            oldest.txn.anomalies.add("http2_stream_limit")
            oldest.cut(None, "stream_limit")
            self._finish(oldest)
        bodies = self.bodies if self.keep_bodies else None
        st = Stream(sid, self.next_depth, bodies)
        self.next_depth += 1
        self.streams[sid] = st
        self.stream_mem += st.mem
        init = _initiator(sid)
        if sid > self.last_id[init]:
            self.last_id[init] = sid
        if self.carry:
            st.txn.anomalies.update(self.carry)
            self.carry = set()
        # The initiator's peer said GOAWAY below this id: it will not be
        # processed (RFC 9113 section 6.8).
        g = self.goaway[1 - init]
        if g is not None and sid > g:
            st.cut(init != CLIENT, "goaway")  # the side that will not answer
        for side in (CLIENT, SERVER):
            dead = self.dead[side]
            if dead is not None:
                if dead[0] is not None:
                    st.txn.anomalies.add(dead[0])
                st.cut(side == CLIENT, dead[1])
        return st

    def _finish(self, st: Stream) -> None:
        if self.streams.pop(st.id, None) is None:
            return
        txn = st.finish()
        # The cost stays counted until take(): recompute it from the
        # transaction then, as the stream is gone.
        self.stream_mem += txn_mem(txn) - st.mem
        self.done.append(txn)

    def _kill(self, d: int, name: str | None, why: str) -> None:
        """Direction ``d`` is no longer read: every message of it in
        progress is cut (``name`` the anomaly, ``why`` the end_reason)."""
        self.dead[d] = (name, why)
        if self.blocks[d] is not None:
            self._drop_block(d, name)
        self.decoders[d].lose(name or "http2_gap")
        touched = False
        for st in list(self.streams.values()):
            if st.sides[d] is not DONE:
                if name is not None:
                    st.txn.anomalies.add(name)
                touched = True
                st.cut(d == CLIENT, why)
                if st.finished:
                    self._finish(st)
        if name is not None and not touched:
            self._loose(name)

    def _flag(self, sid: int, name: str) -> None:
        st = self.streams.get(sid) if sid else None
        if st is not None:
            st.txn.anomalies.add(name)
        else:
            self._loose(name)

    def _loose(self, name: str) -> None:
        self.loose[name] = self.loose.get(name, 0) + 1


def _initiator(sid: int) -> int:
    """Client-initiated streams are odd, server-initiated (push) even."""
    return CLIENT if sid % 2 else SERVER


def txn_mem(txn: Transaction) -> int:
    """What a finished transaction holds until the records stage takes it."""
    total = STREAM_COST
    for msg in (txn.request, txn.response):
        if msg is not None:
            total += msg.header_bytes + msg.header_count * FIELD_COST
            if msg.body is not None:
                total += msg.body.held_bytes
    return total
