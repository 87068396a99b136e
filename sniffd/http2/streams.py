"""One HTTP/2 stream seen from the outside: its request and its response, each
read as a ``Message``, and the one ``Transaction`` they make (RFC 9113 section
5.1 and 8.1).  Pure; the connection (``sniffd.http2.connection``) decides
which frame goes to which stream.

A stream has two sides, the request (client's frames) and the response
(server's frames).  Each side moves through ``Side`` as written in
``TRANSITIONS``; the stream is finished when both sides are DONE (each sent
END_STREAM) or CUT (RST_STREAM, GOAWAY, a capture gap, the connection's end).

Interim (1xx) responses (RFC 9113 section 8.1) are header sections the
response side receives while IDLE; they go to ``Transaction.interim`` as
``(status, None)`` and leave the side IDLE.
"""

from __future__ import annotations

import enum

from sniffd.http.message import Message, Transaction
from sniffd.http2 import fields as F
from sniffd.http2.fields import Limits

# Memory one stream and its transaction hold before any header field (the
# objects, their slots and dicts), and each field kept (its str objects and
# its dict entry; the same figure as the HTTP/1 reader's HEADER_COST).
STREAM_COST = 1024
FIELD_COST = 160


class Side(enum.Enum):
    IDLE = 0  # no header section yet (interim responses leave it here)
    OPEN = 1  # header section read, body or trailers may follow
    DONE = 2  # END_STREAM seen: the message is complete
    CUT = 3   # ended without END_STREAM: reset, refused, lost, connection over


IDLE, OPEN, DONE, CUT = Side


class Event(enum.Enum):
    HEADERS = 0       # a header section, no END_STREAM
    HEADERS_END = 1   # a header section with END_STREAM
    DATA = 2          # DATA, no END_STREAM
    DATA_END = 3      # DATA with END_STREAM


HEADERS, HEADERS_END, DATA_, DATA_END = Event

# (side state, event) -> (next state, anomaly or None).  The rules:
# - a message starts with a header section; DATA first is a PROTOCOL_ERROR
#   (RFC 9113 section 8.1), counted as an empty message that started there;
# - after it, DATA frames, then optionally one trailer section, which must
#   carry END_STREAM; a second header section without it is a PROTOCOL_ERROR;
# - END_STREAM (on HEADERS or DATA) ends the side: any frame after it is a
#   STREAM_CLOSED error (RFC 9113 section 5.1, half-closed), ignored;
# - a CUT side ignores everything (its frames were reset or its bytes lost).
TRANSITIONS: dict[tuple[Side, Event], tuple[Side, str | None]] = {
    (IDLE, HEADERS): (OPEN, None),
    (IDLE, HEADERS_END): (DONE, None),
    (IDLE, DATA_): (OPEN, "http2_protocol_error"),
    (IDLE, DATA_END): (DONE, "http2_protocol_error"),
    (OPEN, HEADERS): (OPEN, "http2_protocol_error"),
    (OPEN, HEADERS_END): (DONE, None),
    (OPEN, DATA_): (OPEN, None),
    (OPEN, DATA_END): (DONE, None),
    (DONE, HEADERS): (DONE, "http2_stream_closed"),
    (DONE, HEADERS_END): (DONE, "http2_stream_closed"),
    (DONE, DATA_): (DONE, "http2_stream_closed"),
    (DONE, DATA_END): (DONE, "http2_stream_closed"),
    (CUT, HEADERS): (CUT, None),
    (CUT, HEADERS_END): (CUT, None),
    (CUT, DATA_): (CUT, None),
    (CUT, DATA_END): (CUT, None),
}


class Stream:
    """One stream.  ``sides``: [request side, response side]; ``why``: the
    end_reason a CUT gave (the first one), None while nothing cut it;
    ``mem``: bytes this stream holds, for the connection's meter."""

    __slots__ = ("id", "txn", "sides", "why", "mem", "decoded", "bodies")

    def __init__(self, stream_id: int, depth: int, bodies=None) -> None:
        self.id = stream_id
        txn = self.txn = Transaction()
        txn.depth = depth
        txn.stream_id = stream_id
        self.sides = [IDLE, IDLE]
        self.why: str | None = None
        self.mem = STREAM_COST
        # Whether each side's header section was decoded (not known: the
        # HPACK state was lost), for the checks that need the fields.
        self.decoded = [False, False]
        # sniffd.bodies.BodyCapture, or None: bodies are not captured.
        self.bodies = bodies

    @property
    def finished(self) -> bool:
        a, b = self.sides
        return (a is DONE or a is CUT) and (b is DONE or b is CUT)

    def _step(self, side: int, event: Event) -> bool:
        """Apply ``event`` to a side; False when the side ignores it."""
        state = self.sides[side]
        nxt, anomaly = TRANSITIONS[state, event]
        if anomaly is not None:
            self.txn.anomalies.add(anomaly)
        if state is DONE or state is CUT:
            return False
        self.sides[side] = nxt
        return True

    def _message(self, side: int) -> Message | None:
        return self.txn.request if side == 0 else self.txn.response

    def headers(self, from_client: bool, fields: list[tuple[bytes, bytes]] | None, end_stream: bool,
                start: float, now: float, off: int, limits: Limits, anomaly: str | None = None) -> None:
        """A header section for this stream, begun (its HEADERS frame) at
        ``start`` and ended (END_HEADERS) at ``now``.  ``fields``: decoded,
        or None when the direction's HPACK state was lost (``anomaly`` says
        why): the message then has no method, uri, status or fields."""
        side = 0 if from_client else 1
        txn = self.txn
        if anomaly is not None:
            txn.anomalies.add(anomaly)
        state = self.sides[side]
        if state is IDLE:
            msg = Message(start, off, None)
            msg.end_ts = now
            msg.version = "2"
            if fields is not None:
                if from_client:
                    F.request_fields(msg, fields, limits, txn.anomalies)
                else:
                    F.response_fields(msg, fields, limits, txn.anomalies)
                    if msg.status is not None and 100 <= msg.status < 200:
                        # An interim response (RFC 9113 section 8.1); one
                        # with END_STREAM is malformed, and ends the side.
                        txn.interim.append((msg.status, None))
                        if not end_stream:
                            return
                        txn.anomalies.add("http2_malformed_headers")
                        self._step(side, HEADERS_END)
                        return
            self._step(side, HEADERS_END if end_stream else HEADERS)
            if from_client:
                txn.request = msg
            else:
                txn.response = msg
            self.decoded[side] = fields is not None
            self.mem += msg.header_bytes + msg.header_count * FIELD_COST
            if self.bodies is not None and fields is not None and not end_stream:
                msg.body = self.bodies.start(msg.headers)
            if end_stream:
                self._complete(side, msg)
            return
        if fields is None and state is OPEN and not end_stream:
            # Undecoded: the section the side was opened with may have been
            # an interim (1xx) response and this the final one; no rule is
            # known broken.
            return
        if not self._step(side, HEADERS_END if end_stream else HEADERS):
            return
        msg = self._message(side)
        msg.end_ts = now
        if fields is not None:
            before = msg.header_bytes + msg.header_count * FIELD_COST
            F.trailer_fields(msg, fields, limits, txn.anomalies)
            self.mem += msg.header_bytes + msg.header_count * FIELD_COST - before
        if end_stream:
            self._complete(side, msg)

    def promised(self, request: Message, decoded: bool) -> None:
        """A pushed stream: its request is the one the PUSH_PROMISE carried
        (RFC 9113 section 8.4), complete, with no body."""
        self.txn.request = request
        request.complete = True
        self.sides[0] = DONE
        self.decoded[0] = decoded
        self.mem += request.header_bytes + request.header_count * FIELD_COST

    def data(self, from_client: bool, piece: bytes, end_stream: bool, now: float, off: int) -> int:
        """A piece of DATA content (``end_stream`` on the frame's last piece
        only).  Returns the bytes of body now held for capture (for the
        connection's meter)."""
        side = 0 if from_client else 1
        if not self._step(side, DATA_END if end_stream else DATA_):
            return 0
        msg = self._message(side)
        if msg is None:
            # DATA before any header section: the message starts here.
            msg = Message(now, off, None)
            msg.version = "2"
            if from_client:
                self.txn.request = msg
            else:
                self.txn.response = msg
        msg.end_ts = now
        msg.body_len += len(piece)
        grown = 0
        body = msg.body
        if body is not None and piece:
            before = body.held_bytes
            body.feed(piece)
            grown = body.held_bytes - before
            self.mem += grown
        if end_stream:
            self._complete(side, msg)
        return grown

    def missed(self, from_client: bool, n: int) -> None:
        """``n`` bytes of this side's body were lost in a capture gap (the
        frame boundaries were kept)."""
        msg = self._message(0 if from_client else 1)
        if msg is None or n <= 0:
            return
        msg.missed_bytes += n
        if msg.body is not None:
            msg.body.gap(n)
        self.txn.anomalies.add("body_gap")

    def drop_body(self) -> int:
        """Stop keeping bodies (memory budget); returns the bytes freed."""
        freed = 0
        for msg in (self.txn.request, self.txn.response):
            if msg is not None and msg.body is not None:
                freed += msg.body.held_bytes
                msg.body = None
                msg.body_truncated = True
                self.txn.anomalies.add("memory_bodies_dropped")
        self.bodies = None
        self.mem -= freed
        return freed

    def cut(self, from_client: bool | None, why: str) -> None:
        """End a side (``from_client`` True/False) or both (None) without
        END_STREAM; ``why`` becomes the end_reason if it is the first."""
        for side in ((0, 1) if from_client is None else ((0,) if from_client else (1,))):
            state = self.sides[side]
            if state is DONE or state is CUT:
                continue
            self.sides[side] = CUT
            if self.why is None:
                self.why = why
            msg = self._message(side)
            if msg is not None and state is OPEN and self.decoded[side] and not msg.missed_bytes \
                    and F.content_length(msg.headers) == msg.body_len:
                # All the content its Content-Length announced came; only
                # END_STREAM is missing (curl resets a stream with
                # STREAM_CLOSED as soon as it has that much): complete.
                msg.complete = True

    def _complete(self, side: int, msg: Message) -> None:
        msg.complete = True
        if not self.decoded[side]:
            return
        expected = F.content_length(msg.headers)
        if expected is None:
            return
        if side == 1:
            req = self.txn.request
            status = msg.status
            if (req is not None and req.method == "HEAD") or status == 204 or status == 304:
                return  # no content whatever Content-Length says (RFC 9110 8.6)
        if expected != msg.body_len + msg.missed_bytes:
            # RFC 9113 section 8.1.1: malformed; the request-smuggling shape
            # when a proxy turns this into HTTP/1.
            self.txn.anomalies.add("http2_content_length_mismatch")

    def finish(self) -> Transaction:
        """The transaction, with its end_reason and the anomalies that say
        what is missing."""
        txn = self.txn
        txn.end_reason = self.why or "complete"
        req, resp = txn.request, txn.response
        if req is None:
            txn.anomalies.add("request_missing")
        elif not req.complete:
            txn.anomalies.add("message_incomplete")
        if resp is None:
            txn.anomalies.add("response_missing")
        else:
            if not resp.complete:
                txn.anomalies.add("message_incomplete")
            if self.decoded[1]:
                txn.grpc = F.grpc_status(resp.headers)
        return txn
