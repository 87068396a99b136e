"""HTTP/2 bytes written by hand for the tests, sharing no code with sniffd.http2.

Frames are built with struct from RFC 9113 section 4.1 (``frame``) and header
blocks with a literal-only HPACK encoder written from RFC 7541 section 6.2.2
(``block``): what a test expects from them is written in the test.
"""

from __future__ import annotations

import struct

# RFC 9113 section 3.4.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    """RFC 9113 section 4.1: 24-bit length, type, flags, R + 31-bit stream id."""
    return struct.pack("!I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack("!I", sid) + payload


def hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 section 5.1 integer with an N-bit prefix; ``first`` holds the
    pattern bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """RFC 7541 section 6.2.2: literal field without indexing, new name, no Huffman."""
    return b"\x00" + hpack_int(len(name), 7, 0) + name + hpack_int(len(value), 7, 0) + value


def indexed_literal(name: bytes, value: bytes) -> bytes:
    """RFC 7541 section 6.2.1: literal with incremental indexing, new name."""
    return b"\x40" + hpack_int(len(name), 7, 0) + name + hpack_int(len(value), 7, 0) + value


def block(*fields: tuple[str, str]) -> bytes:
    return b"".join(literal(n.encode(), v.encode()) for n, v in fields)


def settings(*pairs: tuple[int, int], ack: bool = False) -> bytes:
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack("!HI", k, v) for k, v in pairs))


def headers(sid: int, fields: bytes, end_stream: bool = False, end_headers: bool = True,
            pad: int | None = None, priority: bool = False) -> bytes:
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    payload = fields
    if priority:
        flags |= PRIO
        payload = struct.pack("!IB", 0x80000000 | 3, 200) + payload  # exclusive on 3, weight 201
    if pad is not None:
        flags |= PADDED
        payload = bytes([pad]) + payload + b"\0" * pad
    return frame(HEADERS, flags, sid, payload)


def continuation(sid: int, fields: bytes, end_headers: bool) -> bytes:
    return frame(CONTINUATION, END_HEADERS if end_headers else 0, sid, fields)


def data(sid: int, body: bytes, end_stream: bool = False, pad: int | None = None) -> bytes:
    flags = END_STREAM if end_stream else 0
    payload = body
    if pad is not None:
        flags |= PADDED
        payload = bytes([pad]) + body + b"\0" * pad
    return frame(DATA, flags, sid, payload)


def rst(sid: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, sid, struct.pack("!I", code))


def goaway(last: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack("!II", last, code) + debug)


def push_promise(sid: int, promised: int, fields: bytes) -> bytes:
    return frame(PUSH_PROMISE, END_HEADERS, sid, struct.pack("!I", promised) + fields)


def ping(ack: bool = False) -> bytes:
    return frame(PING, ACK if ack else 0, 0, b"12345678")


def window_update(sid: int, inc: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, sid, struct.pack("!I", inc))


CLIENT_START = PREFACE + settings((3, 100), (4, 65535))
SERVER_START = settings((3, 128)) + settings(ack=True)
CLIENT_ACK = settings(ack=True)

GET_ROOT = block((":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "example.com"))


def req_block(method: str, path: str, *extra: tuple[str, str]) -> bytes:
    return block((":method", method), (":scheme", "http"), (":path", path), (":authority", "example.com"), *extra)


def resp_block(status: int, *extra: tuple[str, str]) -> bytes:
    return block((":status", str(status)), *extra)
