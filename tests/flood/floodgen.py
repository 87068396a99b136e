"""Write flood captures fast: raw struct-packed pcap records, no dpkt.

tests/craft.py builds every frame through dpkt objects and computes real
checksums: right for small hand-made captures, but ~50 us a frame (a
minute for a million SYNs).  Here a frame is one ``struct.pack`` of the
Ethernet + IPv4 + TCP headers (54 bytes, checksums left 0: sniffd does not
verify them, see README "Reading captures") followed by the payload, and
records are written to the file in large joined blocks: a million SYN
frames, with the legitimate traffic merged in, take 1-1.5 s.

The layers:

    frame(...)                      one Ethernet/IPv4/TCP frame as bytes
    Conversation                    one TCP connection, seq/ack kept right
    Exchange, keepalive(...),       legitimate traffic: whole keep-alive
    legit_traffic(...)              connections (handshake, N exchanges, FIN),
                                    timestamped, and the records they must give
    syn_flood, far_ahead_flood,     the floods: frames in wire order (syn_flood
    overlap_flood, ...              yields them timestamped)
    PcapWriter                      (ts_us, frame) records -> pcap file
    write_capture(path, flood, legit)
                                    merge a timed flood iterator and the
                                    legitimate frames by timestamp into a file

Time is integer microseconds since the epoch (``ts_us``) throughout, so
frames sort exactly and a record's timestamp is what the test said.  A
timed stream is an iterable of ``(ts_us, frame_bytes)`` in non-decreasing
time order (``spaced`` makes one from frames).
"""

from __future__ import annotations

import heapq
import ipaddress
import random
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# Every flood capture starts here (2026-11-21T10:42:05Z, tests/pcap's T0).
T0_US = 1_795_257_725_000_000

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MSS = 1448
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)
_RECORD = struct.Struct("<IIII")
# Ethernet II (dst, src, type) + IPv4 (20 bytes, DF, TTL 64, proto 6,
# checksum 0) + TCP (20 bytes, no options, checksum 0).
_HEADERS = struct.Struct("!6s6sH" "BBHHHBBH4s4s" "HHIIBBHHH")
_MAC_A = bytes.fromhex("020000000001")
_MAC_B = bytes.fromhex("020000000002")
HEADERS_LEN = _HEADERS.size  # 54


def ip(text: str) -> bytes:
    """An IPv4 address as its 4 packed bytes."""
    return ipaddress.IPv4Address(text).packed


def frame(src: bytes, sport: int, dst: bytes, dport: int, seq: int, ack: int, flags: int,
          payload: bytes = b"", window: int = 65535) -> bytes:
    """One Ethernet/IPv4/TCP frame; ``src``/``dst`` are packed IPv4 addresses."""
    return _HEADERS.pack(
        _MAC_B, _MAC_A, 0x0800,
        0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst,
        sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, window, 0, 0,
    ) + payload


# --------------------------------------------------------------- writing


class PcapWriter:
    """A classic little-endian microsecond pcap file, Ethernet link type.

    ``add(ts_us, frame)`` per record, in time order; records are joined and
    written in blocks.  Use as a context manager (or call ``close``)."""

    BLOCK = 8192  # records per write: amortises the write call

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f = open(self.path, "wb")
        self._f.write(_PCAP_HEADER)
        self._buf: list[bytes] = []
        self.count = 0
        self.last_ts_us = 0

    def add(self, ts_us: int, data: bytes) -> None:
        n = len(data)
        buf = self._buf
        buf.append(_RECORD.pack(ts_us // 1_000_000, ts_us % 1_000_000, n, n))
        buf.append(data)
        if len(buf) >= 2 * self.BLOCK:
            self._f.write(b"".join(buf))
            buf.clear()
        self.count += 1
        self.last_ts_us = ts_us

    def add_all(self, frames: Iterable[tuple[int, bytes]]) -> None:
        rec = _RECORD.pack
        buf = self._buf
        write = self._f.write
        block = 2 * self.BLOCK
        n = 0
        ts = self.last_ts_us
        for ts, data in frames:
            size = len(data)
            buf.append(rec(ts // 1_000_000, ts % 1_000_000, size, size))
            buf.append(data)
            if len(buf) >= block:
                write(b"".join(buf))
                buf.clear()
            n += 1
        self.count += n
        self.last_ts_us = ts

    def close(self) -> None:
        if self._buf:
            self._f.write(b"".join(self._buf))
            self._buf.clear()
        self._f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_capture(path: str | Path, flood: Iterable[tuple[int, bytes]],
                  legit: Iterable[tuple[int, bytes]] = ()) -> int:
    """Write the flood and the legitimate frames, merged by timestamp (at
    equal times the flood's frame first), to ``path``; returns the number
    of frames.  ``flood`` may be a long iterator; ``legit`` any iterable,
    sorted here."""
    legit = sorted(legit, key=lambda f: f[0])
    with PcapWriter(path) as w:
        if legit:
            w.add_all(heapq.merge(flood, legit, key=_ts))
        else:
            w.add_all(flood)
        return w.count


def _ts(item: tuple[int, bytes]) -> int:
    return item[0]


def spaced(frames: Sequence[bytes], t0_us: int, step_us: int) -> list[tuple[int, bytes]]:
    """``frames`` timestamped ``step_us`` apart from ``t0_us``."""
    return [(t0_us + i * step_us, f) for i, f in enumerate(frames)]


# ------------------------------------------------------------ conversations


class Conversation:
    """One TCP connection: every method returns frames and advances the
    sender's sequence number as if the bytes were sent; every ACK carries
    everything the peer sent so far (craft.TcpConversation's contract)."""

    def __init__(self, client: tuple[str, int], server: tuple[str, int],
                 client_isn: int = 1_000_000, server_isn: int = 3_000_000) -> None:
        self.cip, self.cport = ip(client[0]), client[1]
        self.sip, self.sport = ip(server[0]), server[1]
        self.client = client
        self.server = server
        self.cseq = client_isn & 0xFFFFFFFF
        self.sseq = server_isn & 0xFFFFFFFF

    def _frame(self, from_client: bool, flags: int, payload: bytes = b"", seq: int | None = None) -> bytes:
        if from_client:
            s = self.cseq if seq is None else seq
            f = frame(self.cip, self.cport, self.sip, self.sport, s, self.sseq if flags & ACK else 0,
                      flags, payload)
        else:
            s = self.sseq if seq is None else seq
            f = frame(self.sip, self.sport, self.cip, self.cport, s, self.cseq, flags, payload)
        if seq is None:
            n = len(payload) + (1 if flags & (SYN | FIN) else 0)
            if from_client:
                self.cseq = (self.cseq + n) & 0xFFFFFFFF
            else:
                self.sseq = (self.sseq + n) & 0xFFFFFFFF
        return f

    def handshake(self) -> list[bytes]:
        return [self._frame(True, SYN), self._frame(False, SYN | ACK), self._frame(True, ACK)]

    def client_data(self, data: bytes, mss: int = MSS) -> list[bytes]:
        return [self._frame(True, ACK | PSH, data[i:i + mss]) for i in range(0, len(data), mss)]

    def server_data(self, data: bytes, mss: int = MSS) -> list[bytes]:
        return [self._frame(False, ACK | PSH, data[i:i + mss]) for i in range(0, len(data), mss)]

    def client_ack(self) -> bytes:
        return self._frame(True, ACK)

    def server_ack(self) -> bytes:
        return self._frame(False, ACK)

    def client_segment_at(self, offset: int, payload: bytes) -> bytes:
        """A client segment at ``offset`` bytes past the next sequence number
        (ahead of it, or behind it with a negative offset), without
        advancing it: out-of-order, overlapping and conflicting copies."""
        return self._frame(True, ACK | PSH, payload, seq=(self.cseq + offset) & 0xFFFFFFFF)

    def server_segment_at(self, offset: int, payload: bytes) -> bytes:
        return self._frame(False, ACK | PSH, payload, seq=(self.sseq + offset) & 0xFFFFFFFF)

    def close(self) -> list[bytes]:
        """Client FIN, server FIN, client ACK."""
        return [self._frame(True, FIN | ACK), self._frame(False, FIN | ACK), self._frame(True, ACK)]


# ------------------------------------------------------ legitimate traffic


@dataclass(frozen=True)
class Exchange:
    """One legitimate transaction and what its record must say."""

    client_port: int
    method: str
    uri: str
    status: int
    request_body_len: int
    response_body_len: int

    def request_bytes(self) -> bytes:
        body = b"q" * self.request_body_len
        head = f"{self.method} {self.uri} HTTP/1.1\r\nHost: legit.test\r\nUser-Agent: floodgen\r\n"
        if body:
            head += f"Content-Length: {len(body)}\r\nContent-Type: application/octet-stream\r\n"
        return (head + "\r\n").encode() + body

    def response_bytes(self) -> bytes:
        body = bytes(i % 251 for i in range(self.response_body_len))
        head = (f"HTTP/1.1 {self.status} OK\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        return head.encode() + body


def keepalive(conv: Conversation, exchanges: Sequence[Exchange], t0_us: int, step_us: int = 20,
              response_mss: int = MSS) -> list[tuple[int, bytes]]:
    """A whole legitimate connection as timestamped frames: handshake, each
    exchange in turn on the same connection (request, server ACK, response,
    client ACK), then FIN both ways.  ``step_us`` apart: the connection lives
    a few hundred microseconds, as on a LAN."""
    frames = conv.handshake()
    for ex in exchanges:
        frames += conv.client_data(ex.request_bytes())
        frames.append(conv.server_ack())
        frames += conv.server_data(ex.response_bytes(), response_mss)
        frames.append(conv.client_ack())
    frames += conv.close()
    return spaced(frames, t0_us, step_us)


LEGIT_SERVER = ("10.2.0.1", 80)


def legit_traffic(times_us: Sequence[int], per_connection: int = 3, first_port: int = 41000,
                  client_ip: str = "10.1.0.1", server: tuple[str, int] = LEGIT_SERVER,
                  step_us: int = 20) -> tuple[list[tuple[int, bytes]], list[Exchange]]:
    """One keep-alive connection starting at each of ``times_us``, each with
    ``per_connection`` transactions (GET and POST, bodies of assorted
    sizes, some spanning several segments).  Returns the frames and the
    exchanges whose records must appear."""
    frames: list[tuple[int, bytes]] = []
    expected: list[Exchange] = []
    for c, t in enumerate(times_us):
        port = first_port + c
        exs = []
        for k in range(per_connection):
            n = c * per_connection + k
            method = "POST" if n % 3 == 2 else "GET"
            exs.append(Exchange(port, method, f"/legit/{c}/{k}?n={n}", 200 if n % 4 else 201,
                                 300 + 17 * n if method == "POST" else 0, 50 + 997 * (n % 7) + n))
        conv = Conversation((client_ip, port), server, client_isn=7_000_000 + 100_000 * c,
                            server_isn=9_000_000 + 100_000 * c)
        frames += keepalive(conv, exs, t, step_us)
        expected += exs
    return frames, expected


# ------------------------------------------------------------------ floods


def syn_flood(n: int, t0_us: int, step_us: int, dst: tuple[str, int] = LEGIT_SERVER,
              first_src: str = "100.64.0.0") -> Iterator[tuple[int, bytes]]:
    """``n`` SYNs from distinct 4-tuples (source addresses counting up from
    ``first_src``, 50,000 source ports each), ``step_us`` apart."""
    base = int(ipaddress.IPv4Address(first_src))
    dip, dport = ip(dst[0]), dst[1]
    pack = _HEADERS.pack
    to_bytes = int.to_bytes
    for i in range(n):
        src = to_bytes(base + i // 50_000, 4, "big")
        yield t0_us + i * step_us, pack(
            _MAC_B, _MAC_A, 0x0800,
            0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, dip,
            10_000 + i % 50_000, dport, (i * 2_654_435_761) & 0xFFFFFFFF, 0, 0x50, SYN, 65535, 0, 0,
        )


def flood_client(i: int, first: str = "100.64.0.0") -> tuple[str, int]:
    """The ``i``-th flood client: 50,000 source ports per address."""
    return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address(first)) + i // 50_000)), 10_000 + i % 50_000


def legit_times(start_us: int, end_us: int, connections: int = 7, margin_us: int = 5_000) -> list[int]:
    """Start times for ``connections`` legitimate connections: one before
    the flood starts, one after it ends, the rest evenly inside it."""
    inside = connections - 2
    span = end_us - start_us
    return ([start_us - margin_us]
            + [start_us + span * (k + 1) // (inside + 1) for k in range(inside)]
            + [end_us + margin_us])


def far_ahead_flood(conns: int, segments: int, size: int = 1400, ahead: int = 1 << 20) -> list[bytes]:
    """``conns`` connections that complete the handshake and then send
    ``segments`` segments each, ``ahead`` bytes past the next expected
    sequence number (far beyond any receive window): the first byte never
    comes, so a receiver that waited for it would buffer everything.
    Segments go round-robin over the connections, so all of them grow their
    buffers at once.  The bytes are pseudo-random (fixed seed): whatever
    an attacker sends, not HTTP."""
    convs = [Conversation(flood_client(i), LEGIT_SERVER, client_isn=i * 7919, server_isn=i * 104729)
             for i in range(conns)]
    frames = [f for c in convs for f in c.handshake()]
    filler = random.Random(size).randbytes(size)
    for k in range(segments):
        off = ahead + k * size
        frames += [c.client_segment_at(off, filler) for c in convs]
    return frames


def overlap_flood(conns: int, copies_before: int, copies_after: int) -> tuple[list[bytes], list[Exchange]]:
    """``conns`` connections whose request arrives in two segments, the
    second first; then ``copies_before`` copies of the buffered second
    segment whose bytes disagree with it (whole, front half, back half, in
    turn); then the first segment (the request is delivered); then
    ``copies_after`` disagreeing copies of the delivered second segment;
    then a 200 response and FIN.  The first copy of each byte must win, so
    each connection's record is the request as first sent.  Phases go
    round-robin over the connections."""
    convs, exchanges, reqs = [], [], []
    for i in range(conns):
        c = Conversation(flood_client(i), LEGIT_SERVER, client_isn=i * 7919, server_isn=i * 104729)
        ex = Exchange(c.cport, "GET", f"/overlap/{i}", 200, 0, 10)
        req = ex.request_bytes()
        pad = 2 * MSS - len(req)
        # Stretch the request to exactly two full segments with a padding
        # header, so both copies are MSS bytes.
        req = req[:-2] + b"X-Pad: " + b"p" * (pad - 9) + b"\r\n\r\n"
        assert len(req) == 2 * MSS
        convs.append(c)
        exchanges.append(ex)
        reqs.append(req)
    frames = [f for c in convs for f in c.handshake()]
    frames += [c.client_segment_at(MSS, r[MSS:]) for c, r in zip(convs, reqs)]
    half = MSS // 2
    for k in range(copies_before):
        for c, r in zip(convs, reqs):
            second = r[MSS:]
            bad = second.replace(b"p", b"q")
            if k % 3 == 0:
                frames.append(c.client_segment_at(MSS, bad))
            elif k % 3 == 1:
                frames.append(c.client_segment_at(MSS, bad[:half]))
            else:
                frames.append(c.client_segment_at(MSS + half, bad[half:]))
    for c, r in zip(convs, reqs):
        frames += c.client_data(r)  # the first segment fills the hole ...
        frames.pop()  # ... the second was already buffered: not sent again
    for k in range(copies_after):
        for c, r in zip(convs, reqs):
            bad = r[MSS:].replace(b"p", b"r" if k % 2 else b"s")
            frames.append(c.client_segment_at(-MSS, bad))
    for c, ex in zip(convs, exchanges):
        frames.append(c.server_ack())
        frames += c.server_data(ex.response_bytes())
        frames.append(c.client_ack())
    for c in convs:
        frames += c.close()
    return frames, exchanges


def big_header_conversation(conv: Conversation, line_bytes: int, in_request: bool,
                            then: Exchange | None = None) -> list[bytes]:
    """Handshake, then one exchange whose request (``in_request``) or
    response carries a header line of ``line_bytes`` bytes; then, when
    ``then`` is given, a normal exchange on the same connection.  No FIN:
    the connection is still open when the capture ends."""
    big = b"X-Big: " + b"b" * (line_bytes - 9) + b"\r\n"
    if in_request:
        req = b"GET /big-header-request HTTP/1.1\r\nHost: flood.test\r\n" + big + b"\r\n"
        resp = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n"
    else:
        req = b"GET /big-header-response HTTP/1.1\r\nHost: flood.test\r\n\r\n"
        resp = b"HTTP/1.1 200 OK\r\n" + big + b"Content-Length: 5\r\n\r\nhello"
    frames = conv.handshake() + conv.client_data(req) + [conv.server_ack()]
    frames += conv.server_data(resp) + [conv.client_ack()]
    if then is not None:
        frames += conv.client_data(then.request_bytes()) + [conv.server_ack()]
        frames += conv.server_data(then.response_bytes()) + [conv.client_ack()]
    return frames


def round_robin(*streams: Sequence[bytes]) -> list[bytes]:
    """Frames of several connections, one from each in turn."""
    out = []
    iters = [iter(s) for s in streams]
    while iters:
        alive = []
        for it in iters:
            f = next(it, None)
            if f is not None:
                out.append(f)
                alive.append(it)
        iters = alive
    return out


def endless_chunked(conv: Conversation, total_bytes: int, chunk: int = 1024, ack_every: int = 32,
                    ) -> Iterator[bytes]:
    """Handshake, a GET, then a chunked 200 response whose chunks of
    ``chunk`` bytes go on for ``total_bytes`` of body and never end (no
    last chunk, no FIN).  A generator: the body is never held whole."""
    yield from conv.handshake()
    yield from conv.client_data(b"GET /endless HTTP/1.1\r\nHost: flood.test\r\n\r\n")
    yield conv.server_ack()
    yield from conv.server_data(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\n")
    one = b"%x\r\n" % chunk + b"e" * chunk + b"\r\n"
    per_segment = max(1, MSS // len(one))
    payload = one * per_segment
    sent = 0
    n = 0
    while sent < total_bytes:
        yield conv._frame(False, ACK | PSH, payload)
        sent += chunk * per_segment
        n += 1
        if n % ack_every == 0:
            yield conv.client_ack()


def pipelined_requests(conv: Conversation, count: int, header_bytes: int) -> tuple[list[bytes], list[str]]:
    """Handshake, then ``count`` GETs sent back to back without waiting
    (each with about ``header_bytes`` of headers), packed into full
    segments; the server only ACKs and never answers.  No FIN.  Returns
    the frames and the URIs in order."""
    uris = [f"/pipelined/{i}" for i in range(count)]
    filler = "f" * max(0, header_bytes - 60)
    stream = "".join(f"GET {u} HTTP/1.1\r\nHost: flood.test\r\nX-Filler: {filler}\r\n\r\n" for u in uris).encode()
    frames = conv.handshake()
    for k, f in enumerate(conv.client_data(stream)):
        frames.append(f)
        if k % 8 == 7:
            frames.append(conv.server_ack())
    frames.append(conv.server_ack())
    return frames, uris


def one_byte_exchange(conv: Conversation, ex: Exchange) -> Iterator[bytes]:
    """A whole connection with ``ex`` sent one byte per segment both ways
    (the receiver ACKs every 100 segments), then FIN."""
    yield from conv.handshake()
    for n, f in enumerate(conv.client_data(ex.request_bytes(), mss=1)):
        yield f
        if n % 100 == 99:
            yield conv.server_ack()
    yield conv.server_ack()
    for n, f in enumerate(conv.server_data(ex.response_bytes(), mss=1)):
        yield f
        if n % 100 == 99:
            yield conv.client_ack()
    yield conv.client_ack()
    yield from conv.close()


def one_byte_out_of_order(conv: Conversation, count: int) -> list[bytes]:
    """Handshake, then ``count`` one-byte client segments after a hole at
    the first byte, in ascending order: each is buffered (the hole is never
    filled), at the full per-segment object cost and at the end of the
    reassembly queue."""
    frames = conv.handshake()
    frames += [conv.client_segment_at(1 + k, b"z") for k in range(count)]
    return frames


def streamed_exchange(conv: Conversation, ex: Exchange, t0_us: int, interval_us: int,
                      step_us: int = 20) -> list[tuple[int, bytes]]:
    """A whole connection whose response is streamed: handshake and request
    at ``t0_us``, then one response segment (and the client's ACK) every
    ``interval_us``, then FIN.  The connection is never idle longer than
    ``interval_us``, but lives for as many intervals as the response has
    segments."""
    frames = spaced(conv.handshake() + conv.client_data(ex.request_bytes()) + [conv.server_ack()], t0_us, step_us)
    t = t0_us
    for seg in conv.server_data(ex.response_bytes()):
        t += interval_us
        frames += spaced([seg, conv.client_ack()], t, step_us)
    frames += spaced(conv.close(), t + interval_us, step_us)
    return frames


def unterminated_headers(conns: int, line_bytes: int, mss: int = MSS) -> tuple[Iterator[bytes], int]:
    """``conns`` connections that complete the handshake and then each send
    a request whose header line runs ``line_bytes`` bytes (below
    max_header_bytes) and never ends: no CRLF, no FIN, no response.  All
    handshakes first, then the line's segments round-robin over the
    connections, so every connection's unfinished head grows at once.
    Returns a generator of the frames (the capture is hundreds of MB: it is
    never held whole; every connection's filler segments are the same
    bytes, only the 54-byte headers are packed per frame) and their count."""
    convs = [Conversation(flood_client(i), LEGIT_SERVER, client_isn=i * 7919, server_isn=i * 104729)
             for i in range(conns)]
    heads = [f"GET /unterminated/{i} HTTP/1.1\r\nHost: flood.test\r\nX-Slow: ".encode() for i in range(conns)]
    # Every line is padded to the same length: segment k>0 of every
    # connection is the same bytes.
    width = max(map(len, heads))
    lines = [h + b"s" * (width - len(h)) for h in heads]
    filler = b"s" * (line_bytes - width)
    rest = [filler[k:k + mss] for k in range(max(0, mss - width), len(filler), mss)]
    first = [ln + filler[:mss - width] for ln in lines]

    def frames() -> Iterator[bytes]:
        for c in convs:
            yield from c.handshake()
        for c, seg in zip(convs, first):
            yield from c.client_data(seg, mss)
        for seg in rest:
            for c in convs:
                yield c._frame(True, ACK | PSH, seg)

    return frames(), conns * (3 + 1 + len(rest))


IDLE_REQUEST = (b"GET /idle/%d HTTP/1.1\r\nHost: flood.test\r\nUser-Agent: floodgen\r\n"
                b"Accept: */*\r\n\r\n")
IDLE_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                 b"Cache-Control: no-store\r\n\r\nok")


def idle_connections(n: int) -> Iterator[bytes]:
    """``n`` keep-alive connections, one after the other, that each make one
    request (GET /idle/<i>), get its 200 and then stay open and silent: no
    FIN, no further segment.  Five frames a connection (handshake, request,
    response), packed directly (``syn_flood``'s way: a million frames in a
    couple of seconds)."""
    sip, sport = ip(LEGIT_SERVER[0]), LEGIT_SERVER[1]
    base = int(ipaddress.IPv4Address("100.64.0.0"))
    pack = _HEADERS.pack
    to_bytes = int.to_bytes
    resp = IDLE_RESPONSE
    rlen = len(resp)
    for i in range(n):
        cip = to_bytes(base + i // 50_000, 4, "big")
        cport = 10_000 + i % 50_000
        c = (i * 2_654_435_761) & 0xFFFFFFFF
        s = (i * 40_503 + 12_345) & 0xFFFFFFFF
        c1, s1 = (c + 1) & 0xFFFFFFFF, (s + 1) & 0xFFFFFFFF
        req = IDLE_REQUEST % i
        c2 = (c1 + len(req)) & 0xFFFFFFFF
        yield pack(_MAC_B, _MAC_A, 0x0800, 0x45, 0, 40, 0, 0x4000, 64, 6, 0, cip, sip,
                   cport, sport, c, 0, 0x50, SYN, 65535, 0, 0)
        yield pack(_MAC_B, _MAC_A, 0x0800, 0x45, 0, 40, 0, 0x4000, 64, 6, 0, sip, cip,
                   sport, cport, s, c1, 0x50, SYN | ACK, 65535, 0, 0)
        yield pack(_MAC_B, _MAC_A, 0x0800, 0x45, 0, 40, 0, 0x4000, 64, 6, 0, cip, sip,
                   cport, sport, c1, s1, 0x50, ACK, 65535, 0, 0)
        yield pack(_MAC_B, _MAC_A, 0x0800, 0x45, 0, 40 + len(req), 0, 0x4000, 64, 6, 0, cip, sip,
                   cport, sport, c1, s1, 0x50, ACK | PSH, 65535, 0, 0) + req
        yield pack(_MAC_B, _MAC_A, 0x0800, 0x45, 0, 40 + rlen, 0, 0x4000, 64, 6, 0, sip, cip,
                   sport, cport, s1, c2, 0x50, ACK | PSH, 65535, 0, 0) + resp
