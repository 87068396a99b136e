"""TCP reassembly of one direction (sniffd.reassembly.HalfStream): segments in,
ordered chunks out, simulated time.

A chunk is ``bytes`` (data of the segment just fed), ``(bytes, ts)`` (data
that waited in the buffer, captured at ``ts``) or ``int`` (a gap of that many
bytes).  Both data forms are compared as ``(bytes, capture time)``; in the
expected values a bare ``b"..."`` is data captured at time 0.0.

Each case is a list of (operation, chunks that operation returns).  Offsets in
the table are relative to the stream's first byte; the sequence number on the
wire is ``isn + offset`` modulo 2**32.  How the data is cut into chunks is not
part of the contract (only the byte stream, the capture times and where the
gaps are), so adjacent data chunks captured at the same time are joined
before comparing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sniffd.budget import SEGMENT_COST
from sniffd.reassembly import HalfStream

ISN = 1_000_000
WRAP_ISN = 2**32 - 5  # five bytes before the sequence space wraps


@dataclass(frozen=True)
class Feed:
    rel: int
    data: bytes
    now: float = 0.0


@dataclass(frozen=True)
class Expire:
    now: float


@dataclass(frozen=True)
class SkipTo:
    rel: int


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class Case:
    name: str
    steps: list  # [(operation, expected chunks), ...]
    anomalies: list = field(default_factory=list)  # sorted
    missed_bytes: int = 0
    isn: int = ISN
    gap_timeout_s: float = 10.0
    max_buffer_bytes: int = 1024


def joined(chunks: list, now: float = 0.0) -> list:
    """Data chunks as ``(bytes, capture time)`` (a bare ``bytes`` was captured
    ``now``), adjacent ones with the same time joined; gaps kept as ints."""
    out: list = []
    for c in chunks:
        if isinstance(c, int):
            out.append(c)
            continue
        data, ts = (c, now) if isinstance(c, (bytes, bytearray)) else c[:2]
        if out and isinstance(out[-1], tuple) and out[-1][1] == ts:
            out[-1] = (out[-1][0] + data, ts)
        else:
            out.append((bytes(data), ts))
    return out


def run(case: Case) -> tuple[list, list, int]:
    hs = HalfStream(case.gap_timeout_s, case.max_buffer_bytes)
    hs.start(case.isn)
    outputs = []
    for op, _expected in case.steps:
        now = getattr(op, "now", None)
        if isinstance(op, Feed):
            chunks = hs.feed((case.isn + op.rel) % 2**32, op.data, op.now)
        elif isinstance(op, Expire):
            chunks = hs.expire(op.now)
        elif isinstance(op, SkipTo):
            chunks = hs.skip_to(op.rel)
        else:
            chunks = hs.close()
        # Only feed may return bare bytes (the segment it was given).
        outputs.append(joined(chunks, now if isinstance(op, Feed) else None))
    return outputs, sorted(hs.anomalies), hs.missed_bytes


CASES = [
    Case(
        "in_order_segments_are_delivered_at_once",
        [(Feed(0, b"abc"), [b"abc"]), (Feed(3, b"def"), [b"def"]), (Feed(6, b"g"), [b"g"])],
    ),
    Case(
        "out_of_order_segments_wait_and_are_delivered_in_order",
        [(Feed(3, b"def"), []), (Feed(6, b"ghi"), []), (Feed(0, b"abc"), [b"abcdefghi"])],
    ),
    Case(
        "data_that_waited_in_the_buffer_keeps_its_capture_time",
        [(Feed(3, b"def", now=1.0), []), (Feed(0, b"abc", now=2.0), [(b"abc", 2.0), (b"def", 1.0)])],
    ),
    Case(
        "segment_filling_the_first_of_two_holes_delivers_up_to_the_second",
        [
            (Feed(0, b"ab"), [b"ab"]),
            (Feed(6, b"gh"), []),
            (Feed(4, b"ef"), []),
            (Feed(2, b"c"), [b"c"]),
            (Feed(3, b"d"), [b"defgh"]),
        ],
    ),
    Case(
        "exact_retransmission_of_delivered_data_is_dropped",
        [(Feed(0, b"abc"), [b"abc"]), (Feed(0, b"abc"), []), (Feed(3, b"def"), [b"def"]), (Feed(3, b"def"), [])],
    ),
    Case(
        "exact_retransmission_of_buffered_data_is_dropped",
        [(Feed(3, b"def"), []), (Feed(3, b"def"), []), (Feed(0, b"abc"), [b"abcdef"])],
    ),
    Case(
        "partial_retransmission_delivers_only_the_new_bytes",
        [(Feed(0, b"abcd"), [b"abcd"]), (Feed(2, b"cdef"), [b"ef"]), (Feed(5, b"fgh"), [b"gh"])],
    ),
    Case(
        "overlap_with_the_same_bytes_raises_no_anomaly",
        [
            (Feed(2, b"cdef"), []),
            (Feed(4, b"efgh"), []),  # overlaps buffered data, same bytes
            (Feed(0, b"abc"), [b"abcdefgh"]),
            (Feed(6, b"ghij"), [b"ij"]),  # overlaps delivered data, same bytes
        ],
    ),
    Case(
        "overlap_conflicting_with_delivered_data_keeps_the_first_copy",
        [(Feed(0, b"abcd"), [b"abcd"]), (Feed(2, b"XYef"), [b"ef"])],
        anomalies=["tcp_overlap_conflict"],
    ),
    Case(
        "overlap_conflicting_with_buffered_data_keeps_the_first_copy",
        [(Feed(2, b"cdef"), []), (Feed(4, b"XYgh"), []), (Feed(0, b"ab"), [b"abcdefgh"])],
        anomalies=["tcp_overlap_conflict"],
    ),
    Case(
        "segment_spanning_two_buffered_pieces_fills_only_the_hole_between",
        [
            (Feed(2, b"cd"), []),
            (Feed(6, b"gh"), []),
            (Feed(2, b"CDefGH"), []),
            (Feed(0, b"ab"), [b"abcdefgh"]),
        ],
        anomalies=["tcp_overlap_conflict", "tcp_overlap_conflict"],
    ),
    Case(
        "data_crossing_the_sequence_wrap_in_order_is_one_stream",
        [(Feed(0, b"abcdefgh"), [b"abcdefgh"]), (Feed(8, b"ij"), [b"ij"])],
        isn=WRAP_ISN,
    ),
    Case(
        "data_after_the_sequence_wrap_arriving_first_waits_for_data_before_it",
        [(Feed(5, b"fghij"), []), (Feed(0, b"abcde"), [b"abcdefghij"])],
        isn=WRAP_ISN,
    ),
    Case(
        "segment_crossing_the_sequence_wrap_arriving_late_fills_the_hole",
        [(Feed(0, b"ab"), [b"ab"]), (Feed(8, b"ij"), []), (Feed(2, b"cdefgh"), [b"cdefghij"])],
        isn=WRAP_ISN,
    ),
    Case(
        "retransmission_across_the_sequence_wrap_is_dropped",
        [(Feed(0, b"abcdefgh"), [b"abcdefgh"]), (Feed(3, b"defgh"), []), (Feed(6, b"ghi"), [b"i"])],
        isn=WRAP_ISN,
    ),
    Case(
        "gap_across_the_sequence_wrap_is_skipped_after_gap_timeout",
        [(Feed(0, b"ab"), [b"ab"]), (Feed(7, b"hi", now=1.0), []), (Expire(11.0), [5, (b"hi", 1.0)])],
        anomalies=["tcp_gap"],
        missed_bytes=5,
        isn=WRAP_ISN,
    ),
    Case(
        "gap_is_skipped_by_expire_once_gap_timeout_has_passed",
        [
            (Feed(0, b"abc"), [b"abc"]),
            (Feed(6, b"ghi", now=1.0), []),
            (Expire(10.999), []),
            (Expire(11.0), [3, (b"ghi", 1.0)]),
            (Feed(3, b"def", now=12.0), []),  # the lost bytes, too late: dropped
            (Feed(9, b"jk", now=12.0), [(b"jk", 12.0)]),
        ],
        anomalies=["tcp_gap"],
        missed_bytes=3,
    ),
    Case(
        "gap_is_skipped_by_a_segment_arriving_after_gap_timeout",
        [(Feed(0, b"abc"), [b"abc"]), (Feed(6, b"ghi", now=1.0), []), (Feed(9, b"jkl", now=11.0), [3, (b"ghi", 1.0), (b"jkl", 11.0)])],
        anomalies=["tcp_gap"],
        missed_bytes=3,
    ),
    Case(
        "each_hole_waits_its_own_gap_timeout",
        [
            (Feed(0, b"a"), [b"a"]),
            (Feed(2, b"c"), []),
            (Feed(4, b"e"), []),
            (Expire(10.0), [1, b"c"]),
            (Expire(19.9), []),
            (Expire(20.0), [1, b"e"]),
        ],
        anomalies=["tcp_gap"],
        missed_bytes=2,
    ),
    Case(
        "out_of_order_data_up_to_the_buffer_bound_keeps_waiting",
        [(Feed(0, b"ab"), [b"ab"]), (Feed(4, b"efgh"), []), (Feed(8, b"ijkl"), []), (Feed(2, b"cd"), [b"cdefghijkl"])],
        # The bound counts each buffered segment's object overhead too.
        max_buffer_bytes=8 + 2 * SEGMENT_COST,
    ),
    Case(
        "out_of_order_data_past_the_buffer_bound_skips_the_hole",
        [
            (Feed(0, b"ab"), [b"ab"]),
            (Feed(4, b"efgh"), []),
            (Feed(8, b"ijkl"), []),
            (Feed(12, b"m"), [2, b"efghijklm"]),
            (Feed(2, b"cd"), []),  # the lost bytes, too late: dropped
        ],
        anomalies=["tcp_buffer_overflow", "tcp_gap"],
        missed_bytes=2,
        max_buffer_bytes=8 + 2 * SEGMENT_COST,
    ),
    Case(
        "close_delivers_everything_buffered_with_gaps_between",
        [
            (Feed(0, b"ab"), [b"ab"]),
            (Feed(4, b"ef"), []),
            (Feed(10, b"kl"), []),
            (Close(), [2, b"ef", 4, b"kl"]),
            (Feed(12, b"mn"), []),  # nothing after close
        ],
        anomalies=["tcp_gap"],
        missed_bytes=6,
    ),
    Case(
        "close_with_nothing_buffered_delivers_nothing",
        [(Feed(0, b"ab"), [b"ab"]), (Close(), [])],
    ),
    Case(
        "skip_to_declares_bytes_never_seen_lost",
        [(Feed(0, b"ab"), [b"ab"]), (SkipTo(5), [3]), (Feed(5, b"fg"), [b"fg"])],
        anomalies=["tcp_gap"],
        missed_bytes=3,
    ),
    Case(
        "skip_to_past_buffered_data_delivers_it_between_gaps",
        [(Feed(0, b"ab"), [b"ab"]), (Feed(6, b"gh"), []), (SkipTo(10), [4, b"gh", 2])],
        anomalies=["tcp_gap"],
        missed_bytes=6,
    ),
    Case(
        "skip_to_before_buffered_data_leaves_it_waiting",
        [(Feed(0, b"ab"), [b"ab"]), (Feed(6, b"gh"), []), (SkipTo(4), [2]), (Feed(4, b"ef"), [b"efgh"])],
        anomalies=["tcp_gap"],
        missed_bytes=2,
    ),
    Case(
        "skip_to_an_offset_already_delivered_does_nothing",
        [(Feed(0, b"abcd"), [b"abcd"]), (SkipTo(2), []), (SkipTo(4), []), (Feed(4, b"e"), [b"e"])],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reassembly(case: Case) -> None:
    expected = ([joined(chunks) for _op, chunks in case.steps], case.anomalies, case.missed_bytes)
    assert expected == run(case)


def test_reassembly_rel_unwraps_sequence_numbers_around_the_next_byte() -> None:
    """A 32-bit sequence number is taken in the +-2**31 window around the next
    byte (RFC 9293 section 3.4), so numbers just past the wrap are ahead."""
    hs = HalfStream(10.0, 1024)
    hs.start(WRAP_ISN)
    assert [0, 4, 5, 10, -1] == [hs.rel(s) for s in (2**32 - 5, 2**32 - 1, 0, 5, 2**32 - 6)]


def test_reassembly_buffer_bound_counts_segments_not_only_bytes():
    """1-byte segments out of order cost ~128 bytes of objects each: the
    bound must trip on their count, not wait for 256 KiB of payload."""
    hs = HalfStream(10.0, 64 * 1024)
    hs.start(0)
    out = []
    for i in range(2, 2000, 2):  # every other byte, so nothing is contiguous
        out += hs.feed(i, b"x", 0.0)
    assert "tcp_buffer_overflow" in hs.anomalies
    assert hs.pending_bytes + len(hs.pending) * SEGMENT_COST <= 64 * 1024


def test_reassembly_buffer_bound_holds_after_every_segment():
    """Tiny pieces with holes between them, then a large segment: skipping
    one hole per call let the buffer grow far past the bound (fuzzing)."""
    bound = 4096
    hs = HalfStream(10.0, bound)
    hs.start(0)
    worst = 0
    for i in range(200):
        hs.feed(10 + 3 * i, b"x", 0.0)  # 1 byte, then a 2-byte hole
        hs.feed(5000 + 60000 * i, b"y" * 60000, 0.0)
        worst = max(worst, hs.pending_bytes + len(hs.pending) * SEGMENT_COST)
    assert worst <= bound
