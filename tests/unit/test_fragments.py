"""IP fragment reassembly (sniffd.fragments.Defragmenter): ``decode.Fragment``
values in, whole datagrams and anomaly names out, simulated time.

``feed`` returns ``(datagram, anomalies)`` with ``datagram`` =
``(version, src, dst, proto, payload, lost, ttl, ctx, verify)`` once every
byte is there.
"""

from __future__ import annotations

import ipaddress
from itertools import permutations

import pytest

from sniffd.decode import Fragment
from sniffd.fragments import Defragmenter

SRC4, DST4 = ipaddress.ip_address("10.0.0.1").packed, ipaddress.ip_address("10.0.0.2").packed
SRC6, DST6 = ipaddress.ip_address("2001:db8::1").packed, ipaddress.ip_address("2001:db8::2").packed
TCP = 6
DATA = bytes(range(65, 65 + 40))  # 40 distinct bytes: 'A'..'h'


def frag4(offset: int, data: bytes, more: bool, ident: int = 7, lost: int = 0, ttl: int = 64, ctx=None,
          verify: bool = False) -> Fragment:
    return Fragment((4, SRC4, DST4, TCP, ident, ctx), 4, SRC4, DST4, TCP, offset, more, data, lost, ttl, ctx, verify)


def frag6(offset: int, data: bytes, more: bool, ident: int = 0x1234ABCD) -> Fragment:
    return Fragment((6, SRC6, DST6, ident, None), 6, SRC6, DST6, TCP, offset, more, data, 0, 64, None, False)


def pieces(make, cuts: list[int], data: bytes = DATA) -> list[Fragment]:
    """``data`` cut at the offsets ``cuts`` (multiples of 8)."""
    bounds = [0, *cuts, len(data)]
    return [make(a, data[a:b], b != len(data)) for a, b in zip(bounds, bounds[1:])]


def feed_all(d: Defragmenter, frags: list[Fragment], now: float = 0.0) -> list:
    return [d.feed(f, now) for f in frags]


def defragmenter(frag_timeout_s=30.0, max_frag_datagrams=16, max_frags_per_datagram=16) -> Defragmenter:
    return Defragmenter(frag_timeout_s, max_frag_datagrams, max_frags_per_datagram)


@pytest.mark.parametrize(
    "make,version,src,dst,cuts",
    [
        (frag4, 4, SRC4, DST4, [16, 24]),
        (frag4, 4, SRC4, DST4, [8, 16, 32]),
        (frag6, 6, SRC6, DST6, [16, 24]),
        (frag6, 6, SRC6, DST6, [8, 16, 32]),
    ],
    ids=["ipv4_3_pieces", "ipv4_4_pieces", "ipv6_3_pieces", "ipv6_4_pieces"],
)
def test_fragments_in_every_order_give_the_whole_datagram_once(make, version, src, dst, cuts) -> None:
    frags = pieces(make, cuts)
    for order in permutations(range(len(frags))):
        d = defragmenter()
        got = feed_all(d, [frags[i] for i in order])
        expected = [(None, [])] * (len(frags) - 1) + [((version, src, dst, TCP, DATA, 0, 64, None, False), [])]
        assert (expected, 0) == (got, len(d)), order


def test_fragments_of_different_datagrams_are_kept_apart() -> None:
    a = pieces(lambda o, b, m: frag4(o, b, m, ident=1), [16])
    other = bytes(40)
    b = pieces(lambda o, data, m: frag4(o, data, m, ident=2), [16], other)
    d = defragmenter()
    got = feed_all(d, [a[0], b[0], b[1], a[1]])
    assert [
        (None, []),
        (None, []),
        ((4, SRC4, DST4, TCP, other, 0, 64, None, False), []),
        ((4, SRC4, DST4, TCP, DATA, 0, 64, None, False), []),
    ] == got


def test_fragments_overlap_with_the_same_bytes_raises_no_anomaly() -> None:
    d = defragmenter()
    got = feed_all(d, [frag4(0, DATA[0:24], True), frag4(16, DATA[16:32], True), frag4(16, DATA[16:32], True), frag4(32, DATA[32:], False)])
    assert [(None, []), (None, []), (None, []), ((4, SRC4, DST4, TCP, DATA, 0, 64, None, False), [])] == got


@pytest.mark.parametrize("order", ["AB", "BA"])
def test_fragments_overlap_with_different_bytes_drops_the_whole_datagram(order: str) -> None:
    """A (bytes 0-24) and B (16-32) disagree on bytes 16-24: as Linux and
    RFC 5722 do, the datagram is dropped whole; what comes after it cannot
    complete it, and its connection (A has the TCP ports) is reported for
    the record."""
    a = frag4(0, DATA[0:24], True)
    b = frag4(16, b"xxxxxxxx" + b"yyyyyyyy", True)
    first, second = (a, b) if order == "AB" else (b, a)
    d = defragmenter()
    got = feed_all(d, [first, second, frag4(32, DATA[32:], False)])
    assert [(None, []), (None, ["ip_fragment_overlap"]), (None, [])] == got
    sport, dport = int.from_bytes(DATA[0:2], "big"), int.from_bytes(DATA[2:4], "big")
    assert [(SRC4, DST4, sport, dport, None)] == d.overlapped


def test_fragments_overlap_without_the_first_fragment_names_no_connection() -> None:
    d = defragmenter()
    got = feed_all(d, [frag4(16, DATA[16:32], True), frag4(24, b"zzzzzzzz", True)])
    assert [(None, []), (None, ["ip_fragment_overlap"])] == got
    assert [] == d.overlapped


def test_fragments_incomplete_within_the_timeout_are_dropped_by_expire() -> None:
    frags = pieces(frag4, [16, 24])
    d = defragmenter(frag_timeout_s=30.0)
    d.feed(frags[0], 0.0)
    d.feed(frag4(0, DATA[:8], True, ident=99), 5.0)
    got = [d.expire(29.9), len(d), d.expire(30.0), len(d), d.expire(35.0), len(d)]
    # The rest of the first datagram, after it was dropped, does not complete it.
    late = feed_all(d, frags[1:], 36.0)
    assert [[], 2, ["ip_fragment_timeout"], 1, ["ip_fragment_timeout"], 0] == got
    assert [(None, []), (None, [])] == late


def test_fragments_datagram_completed_in_time_is_not_expired() -> None:
    frags = pieces(frag4, [16, 24])
    d = defragmenter(frag_timeout_s=30.0)
    got = [d.feed(frags[0], 0.0), d.feed(frags[1], 10.0), d.feed(frags[2], 29.0), d.expire(100.0)]
    assert [(None, []), (None, []), ((4, SRC4, DST4, TCP, DATA, 0, 64, None, False), []), []] == got


def test_fragments_datagram_cap_drops_the_oldest_partial_datagram() -> None:
    data = {i: bytes([48 + i]) * 40 for i in (1, 2, 3)}
    one, two, three = (pieces(lambda o, b, m, i=i: frag4(o, b, m, ident=i), [16], data[i]) for i in (1, 2, 3))
    d = defragmenter(max_frag_datagrams=2)
    got = feed_all(d, [one[0], two[0], three[0], two[1], three[1], one[1]])
    assert (
        [
            (None, []),
            (None, []),
            (None, ["ip_fragment_overflow"]),  # datagram 1, the oldest, dropped to make room
            ((4, SRC4, DST4, TCP, data[2], 0, 64, None, False), []),
            ((4, SRC4, DST4, TCP, data[3], 0, 64, None, False), []),
            (None, []),  # datagram 1's first piece is gone: its last one waits alone
        ],
        1,
    ) == (got, len(d))


def test_fragments_per_datagram_cap_drops_that_datagram() -> None:
    frags = pieces(frag4, [8, 16, 24])
    d = defragmenter(max_frags_per_datagram=3)
    got = feed_all(d, frags)
    assert ([(None, []), (None, []), (None, []), (None, ["ip_fragment_overflow"])], 0) == (got, len(d))


def test_fragments_claiming_more_than_64_kib_are_dropped() -> None:
    d = defragmenter()
    got = [d.feed(frag4(0, DATA[:16], True), 0.0), d.feed(frag4(65528, DATA[:16], False), 0.0)]
    assert ([(None, []), (None, ["ip_fragment_overflow"])], 0) == (got, len(d))


def test_fragments_last_piece_cut_by_snaplen_gives_the_datagram_with_lost_bytes() -> None:
    d = defragmenter()
    got = feed_all(d, [frag4(0, DATA[:16], True), frag4(16, DATA[16:20], False, lost=20)])
    assert [(None, []), ((4, SRC4, DST4, TCP, DATA[:20], 20, 64, None, False), [])] == got


def test_fragments_middle_piece_cut_by_snaplen_ends_the_payload_there() -> None:
    d = defragmenter()
    got = feed_all(d, [frag4(0, DATA[:4], True, lost=4), frag4(8, DATA[8:16], True), frag4(16, DATA[16:], False)])
    assert [(None, []), (None, []), ((4, SRC4, DST4, TCP, DATA[:4], 36, 64, None, False), [])] == got


def test_fragments_ttl_and_verify_are_the_first_fragment_s_and_ctx_is_shared() -> None:
    """The datagram's TTL and whether its checksum is checked come from the
    fragment at offset 0, whatever order they arrive in; its ctx from the key
    all the fragments share."""
    ctx = ((10,), (("gre", SRC6, DST6, 5),))
    frags = [frag4(0, DATA[:16], True, ttl=9, ctx=ctx, verify=True), frag4(16, DATA[16:], False, ttl=200, ctx=ctx)]
    d = defragmenter()
    got = feed_all(d, frags[::-1])
    assert [(None, []), ((4, SRC4, DST4, TCP, DATA, 0, 9, ctx, True), [])] == got


def test_fragments_of_one_datagram_id_in_two_vlans_are_two_datagrams() -> None:
    a = pieces(lambda o, b, m: frag4(o, b, m, ctx=((1,), ())), [16])
    b = pieces(lambda o, b, m: frag4(o, b, m, ctx=((2,), ())), [16], bytes(40))
    d = defragmenter()
    got = feed_all(d, [a[0], b[1], a[1], b[0]])
    assert [
        (None, []),
        (None, []),
        ((4, SRC4, DST4, TCP, DATA, 0, 64, ((1,), ()), False), []),
        ((4, SRC4, DST4, TCP, bytes(40), 0, 64, ((2,), ()), False), []),
    ] == got
