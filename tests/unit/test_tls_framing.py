"""TLS record framing (sniffd.tls.records) and handshake message framing (sniffd.tls.handshake).

Both readers have a short way for what real stacks send (a whole header, a
whole record or message, in one piece) and a long way for what TCP may do
to it (a header or body cut anywhere).  Each stream here is fed whole, in
two pieces split at every offset, and one byte at a time: every way must
give the same records and messages, written out by hand below.
"""

from __future__ import annotations

import tlscraft as T

from sniffd.tls.handshake import END, START, HandshakeReader
from sniffd.tls.records import BAD, RecordReader


def pieces(data: bytes):
    """``data`` whole, in two pieces split at every offset, and byte by byte."""
    yield [data]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


def records_of(feeds: list[bytes], reader: RecordReader | None = None) -> list[tuple]:
    """(content type, whole body) per record, and any BAD event, from the reader's events."""
    reader = reader or RecordReader()
    out: list = []
    for piece in feeds:
        for ctype, chunk, first in reader.feed(piece):
            if ctype == BAD:
                out.append((BAD, chunk))
            elif first:
                out.append([ctype, bytes(chunk)])
            else:
                out[-1][1] += bytes(chunk)
    return [tuple(r) for r in out]


STREAM = T.record(22, b"hello") + T.record(20, b"\x01") + T.record(23, b"") + T.record(21, b"\x02\x28") + T.record(23, bytes(300))
STREAM_RECORDS = [(22, b"hello"), (20, b"\x01"), (23, b""), (21, b"\x02\x28"), (23, bytes(300))]


def test_records_are_the_same_however_the_stream_is_cut():
    for feeds in pieces(STREAM):
        assert STREAM_RECORDS == records_of(feeds), [len(p) for p in feeds]


def test_each_record_has_one_first_piece_at_its_header():
    r = RecordReader()
    events = [(ctype, first) for piece in (STREAM[:7], STREAM[7:12], STREAM[12:]) for ctype, _chunk, first in r.feed(piece)]
    # The first record's header came with 2 body bytes, the rest of its body with the second piece.
    assert [(22, True), (22, False), (20, True), (23, True), (21, True), (23, True)] == events
    assert 5 == r.records


def test_a_bad_header_is_reported_once_and_the_reader_is_dead():
    stream = T.record(22, b"ok") + b"\x63\x03\x03\x00\x01x" + T.record(22, b"never")
    for feeds in pieces(stream):
        r = RecordReader()
        assert [(22, b"ok"), (BAD, "content_type")] == records_of(feeds, r)
        assert ([], True) == (list(r.feed(T.record(22, b"more"))), r.dead)


def test_bad_version_and_oversized_length_are_named():
    assert [(BAD, "version")] == records_of([b"\x16\x02\x00\x00\x01x"])
    assert [(BAD, "length")] == records_of([b"\x17\x03\x03" + (2**14 + 2049).to_bytes(2, "big")])
    assert [(23, b"")] == records_of([b"\x17\x03\x03" + (2**14 + 2048).to_bytes(2, "big")])  # the most allowed


# --- handshake messages ---------------------------------------------------------------

KEEP = {1: 10, 2: 100}
MESSAGES = T.handshake(1, bytes(range(20))) + T.handshake(11, b"skip!") + T.handshake(2, b"") + T.handshake(14, b"") + T.handshake(2, b"sh")
MESSAGE_EVENTS = [
    (START, 1, 20, None), (END, 1, 20, bytes(range(10))),  # kept: its first 10 bytes
    (START, 11, 5, None), (END, 11, 5, None),  # not kept
    (START, 2, 0, None), (END, 2, 0, b""),
    (START, 14, 0, None), (END, 14, 0, None),
    (START, 2, 2, None), (END, 2, 2, b"sh"),
]  # fmt: skip


def test_messages_are_the_same_however_the_records_are_cut():
    for feeds in pieces(MESSAGES):
        r = HandshakeReader(KEEP)
        events = [ev for piece in feeds for ev in r.feed(piece)]
        assert (MESSAGE_EVENTS, 5, 0) == (events, r.messages, r.mem), [len(p) for p in feeds]


def test_a_message_in_progress_holds_only_its_kept_part():
    r = HandshakeReader(KEEP)
    assert [(START, 1, 20, None)] == r.feed(MESSAGES[:9])
    assert (5, True) == (r.mem, r.in_message)
    assert [(END, 1, 20, bytes(range(10)))] == r.feed(MESSAGES[9:24])
    assert (0, False) == (r.mem, r.in_message)


def test_a_header_cut_in_two_is_held_until_it_is_whole():
    r = HandshakeReader(KEEP)
    assert [] == r.feed(MESSAGES[:3])
    assert (3, True) == (r.mem, r.in_message)
    assert [(START, 1, 20, None)] == r.feed(MESSAGES[3:4])
