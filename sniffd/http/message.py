"""The values the HTTP stage hands to the records stage: ``Message`` (one
request or response) and ``Transaction`` (a request and the response that
answered it).  Plain data with slots; the reader fills messages, the pairing
puts them into transactions."""

from __future__ import annotations


class Message:
    """One request or response.  Made when its start line has been read (a
    message whose start line never completed is not a message), so every
    Message has a start line: parsed, or kept raw in ``start_line`` when it
    could not be parsed (``http_parse_error``)."""

    __slots__ = (
        "start_ts", "end_ts", "method", "uri", "status", "reason", "version", "start_line",
        "headers", "header_count", "header_bytes", "odd", "body_len", "missed_bytes", "complete",
        "body", "body_truncated", "mem", "released", "txn", "start_off", "ack", "head_end", "end_off",
    )

    def __init__(self, now: float, start_off: int, ack: int | None) -> None:
        self.start_ts = now
        self.end_ts = now
        self.method: str | None = None
        self.uri: str | None = None
        self.status: int | None = None
        self.reason: str | None = None
        self.version: str | None = None
        # The start line as sent, only when it could not be parsed.
        self.start_line: str | None = None
        self.headers: dict[str, str] = {}
        self.header_count = 0
        self.header_bytes = 0
        # Names of fields that came through obs-fold or with a malformed
        # name: on Transfer-Encoding / Content-Length they make the framing
        # ambiguous.  None until one does (most messages).
        self.odd: set | None = None
        self.body_len = 0
        self.missed_bytes = 0
        self.complete = False
        self.body = None  # sniffd.bodies.BodyBuffer when the body is captured
        self.body_truncated = False
        # Bytes charged to the session's Meter for this message; ``released``
        # once its transaction was handed out and that memory left the Meter.
        self.mem = 0
        self.released = False
        self.txn: Transaction | None = None
        # Stream offsets (bytes from the start of this direction's stream):
        # where the message starts, where its header section ends, where it
        # ends; and ``ack``, the offset in the other direction's stream that
        # the segment carrying its first byte acknowledged (None: no ACK).
        self.start_off = start_off
        self.ack = ack
        self.head_end: int | None = None
        self.end_off: int | None = None


class Transaction:
    __slots__ = ("request", "response", "interim", "depth", "anomalies", "end_reason", "connect", "held",
                 "stream_id", "h2_error", "pushed_by", "grpc")

    def __init__(self) -> None:
        self.request: Message | None = None
        self.response: Message | None = None
        self.interim: list[tuple[int | None, str | None]] = []
        # 1-based position on the connection, given when it is finished
        # (requests and responses are finished in the connection's order).
        self.depth = 0
        self.anomalies: set[str] = set()
        # Why the record was written: complete, fin, rst, idle, evicted,
        # shutdown, end_of_input, gap, parse_error, header_limit,
        # pending_overflow, reused (see README).
        self.end_reason: str | None = None
        # Inside a CONNECT tunnel that carries HTTP: (target, trans_depth).
        self.connect: tuple[str | None, int] | None = None
        # Finished, but held back by the pairing until the acknowledgements
        # decide which request it answers (see sniffd.http.pairing).
        self.held = False
        # HTTP/2 (sniffd.http2) only, None on HTTP/1: the stream id; the
        # RFC 9113 section 7 error code name of the RST_STREAM or GOAWAY
        # that ended the stream (or of a GOAWAY with an error while it was
        # open); for a server push, the stream whose response promised it;
        # gRPC's outcome, (grpc-status as int or None, grpc-message
        # percent-decoded or None), when the response sent grpc-status.
        self.stream_id: int | None = None
        self.h2_error: str | None = None
        self.pushed_by: int | None = None
        self.grpc: tuple[int | None, str | None] | None = None

    @property
    def ts(self) -> float:
        return (self.request or self.response).start_ts
