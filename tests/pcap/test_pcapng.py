"""pcapng time stamps: 64 bits, any if_tsresol, if_tsoffset; broken files.

pcapy-ng's next_batch gave pcapng time stamps as 32-bit seconds, so packets
from 2106-02-07T06:28:16Z on came out in 1970 (issue 11).  sniffd now walks
pcapng files itself (sniffd/pcapng.py, runs of Enhanced Packet Blocks in
C) and libpcap reads filtered ones a record at a time.  The files here are
written block by block with struct (not by a library that might share a
reader's idea of the format), and every expected time is written by hand,
at the precision records carry (microseconds, truncated as libpcap
truncates).  Each file is read both ways, and the two must agree, frame for
frame and in what they say about a broken file.
"""

from __future__ import annotations

import struct
import sys
from decimal import Decimal
from pathlib import Path

import craft
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pcapcheck import T0, load_jsonl, read_records, run_sniffd, stderr_lines

from sniffd import capture, pcapng
from sniffd.capture import OfflineCapture
from sniffd.pcapng import pcapng_epbs_py
from sniffd.pipeline import Pipeline
from sniffd.records import rfc3339

try:
    from sniffd._batch import pcapng_epbs as pcapng_epbs_c
except ImportError:
    pcapng_epbs_c = None

needs_c = pytest.mark.skipif(pcapng_epbs_c is None, reason="sniffd._batch (the C extension) is not built")

# A filter every packet passes: the read goes through libpcap (next()).
PASS_ALL = "len >= 0"

Y2025 = 1735689600  # 2025-01-01T00:00:00Z
Y2200 = 7258118400  # 2200-01-01T00:00:00Z
S2106 = 2**32  # 2106-02-07T06:28:16Z: uint32 seconds end here


# --- writing pcapng, block by block ---------------------------------------------


def block(btype: int, body: bytes, order: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    size = 12 + len(body)
    return struct.pack(order + "II", btype, size) + body + struct.pack(order + "I", size)


def shb(order: str = "<", major: int = 1) -> bytes:
    return block(pcapng.SHB, struct.pack(order + "IHHq", 0x1A2B3C4D, major, 0, -1), order)


def option(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def idb(order: str = "<", linktype: int = 1, snaplen: int = 0, tsresol: int | None = None,
        tsoffset: int | None = None, extra: bytes = b"") -> bytes:
    """An Interface Description Block; ``tsresol`` is the option's byte
    (n: 10^-n s; 0x80 | n: 2^-n s), ``tsoffset`` seconds."""
    opts = extra
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), order)
    if tsoffset is not None:
        opts += option(14, struct.pack(order + "q", tsoffset), order)
    if opts:
        opts += option(0, b"", order)
    return block(pcapng.IDB, struct.pack(order + "HHI", linktype, 0, snaplen) + opts, order)


def epb(iface: int, t: int, data: bytes, order: str = "<", wirelen: int | None = None) -> bytes:
    """An Enhanced Packet Block at ``t`` units of its interface."""
    wire = len(data) if wirelen is None else wirelen
    return block(pcapng.EPB, struct.pack(order + "5I", iface, t >> 32, t & 0xFFFFFFFF, len(data), wire) + data, order)


def pb(iface: int, t: int, data: bytes, order: str = "<") -> bytes:
    """The obsolete Packet Block."""
    return block(pcapng.PB, struct.pack(order + "HH4I", iface, 0, t >> 32, t & 0xFFFFFFFF, len(data), len(data)) + data, order)


def spb(data: bytes, order: str = "<") -> bytes:
    """A Simple Packet Block: no interface id, no time stamp."""
    return block(pcapng.SPB, struct.pack(order + "I", len(data)) + data, order)


def frame(n: int, size: int = 60) -> bytes:
    """A recognisable frame (its content is not read here)."""
    return bytes([n % 256]) * size


def walked(path: Path, batch_size: int = 512) -> tuple[list[tuple[str, bytes]], str | None]:
    """(RFC 3339 time, frame) of every packet as sniffd walks the file, and why it stopped."""
    cap = OfflineCapture(str(path))
    assert cap._walk_pcapng_file
    got = [(rfc3339(ts), f) for b in cap.batches(batch_size) for ts, f in b.frames()]
    return got, cap.truncated


def by_libpcap(path: Path) -> tuple[list[tuple[str, bytes]], str | None]:
    cap = OfflineCapture(str(path), PASS_ALL)
    assert not cap._walk_pcapng_file
    got = [(rfc3339(ts), f) for b in cap.batches(3) for ts, f in b.frames()]
    return got, cap.truncated


def write(tmp_path: Path, data: bytes, name: str = "f.pcapng") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- time stamps ----------------------------------------------------------------

# (case, tsresol option byte, tsoffset, time stamp in units, expected time,
#  whether libpcap 1.9.1 computes it right: it multiplies the fraction by
#  10^6 in 64 bits, which overflows for units finer than 2^-44 s, where a
#  64-bit count reaches only 1970-01-13 anyway)
TIMESTAMPS = [
    ("usec_default", None, None, Y2025 * 10**6 + 123456, "2025-01-01T00:00:00.123456Z", True),
    ("nsec_2200", 9, None, Y2200 * 10**9 + 123456789, "2200-01-01T00:00:00.123456Z", True),
    ("nsec_last_uint32_second", 9, None, (S2106 - 1) * 10**9 + 999999999, "2106-02-07T06:28:15.999999Z", True),
    ("nsec_first_second_past_uint32", 9, None, S2106 * 10**9 + 1, "2106-02-07T06:28:16.000000Z", True),
    ("usec_2200", 6, None, Y2200 * 10**6 + 654321, "2200-01-01T00:00:00.654321Z", True),
    ("msec", 3, None, Y2025 * 10**3 + 123, "2025-01-01T00:00:00.123000Z", True),
    ("whole_seconds_2200", 0, None, Y2200, "2200-01-01T00:00:00.000000Z", True),
    ("psec", 12, None, 86400 * 10**12 + 123456789012, "1970-01-02T00:00:00.123456Z", True),
    ("1e-19_largest_count", 19, None, 2**64 - 1, "1970-01-01T00:00:01.844674Z", True),
    ("2^-10", 0x80 | 10, None, Y2025 * 1024 + 513, "2025-01-01T00:00:00.500976Z", True),
    ("2^-20_2200", 0x80 | 20, None, Y2200 * 2**20 + 2**19, "2200-01-01T00:00:00.500000Z", True),
    ("2^-32", 0x80 | 32, None, Y2025 * 2**32 + 2**29, "2025-01-01T00:00:00.125000Z", True),
    ("2^-63_largest_count", 0x80 | 63, None, 2**64 - 1, "1970-01-01T00:00:01.999999Z", False),
    ("offset_to_2200", None, Y2200, 123456, "2200-01-01T00:00:00.123456Z", True),
    ("offset_back_a_day", 9, -86400, (Y2025 + 86400) * 10**9 + 5, "2025-01-01T00:00:00.000000Z", True),
    ("offset_with_2^-10", 0x80 | 10, S2106, 256, "2106-02-07T06:28:16.250000Z", True),
]


@pytest.mark.parametrize("case,tsresol,tsoffset,t,expected,libpcap_right", TIMESTAMPS, ids=[c[0] for c in TIMESTAMPS])
@pytest.mark.parametrize("order", ["<", ">"], ids=["le", "be"])
def test_pcapng_time_stamp_is_read_at_any_resolution_and_offset(tmp_path, order, case, tsresol, tsoffset, t, expected, libpcap_right):
    path = write(tmp_path, shb(order) + idb(order, tsresol=tsresol, tsoffset=tsoffset) + epb(0, t, frame(1), order))
    assert ([(expected, frame(1))], None) == walked(path)
    if libpcap_right:
        assert ([(expected, frame(1))], None) == by_libpcap(path)


def test_interfaces_with_different_resolutions_in_one_file(tmp_path):
    """Three interfaces (ns, default us, 2^-10 s with an offset), packets
    interleaved across 2106; batches split where the epoch changes."""
    data = (shb() + idb(tsresol=9) + idb() + idb(tsresol=0x80 | 10, tsoffset=Y2200)
            + epb(0, Y2025 * 10**9 + 999_999_999, frame(1))
            + epb(1, Y2200 * 10**6 + 1, frame(2))
            + epb(2, 3 * 1024 + 768, frame(3))
            + epb(0, S2106 * 10**9 + 42_000, frame(4))
            + epb(1, (S2106 - 1) * 10**6 + 999_999, frame(5)))
    expected = [
        ("2025-01-01T00:00:00.999999Z", frame(1)),
        ("2200-01-01T00:00:00.000001Z", frame(2)),
        ("2200-01-01T00:00:03.750000Z", frame(3)),
        ("2106-02-07T06:28:16.000042Z", frame(4)),
        ("2106-02-07T06:28:15.999999Z", frame(5)),
    ]
    path = write(tmp_path, data)
    for batch_size in (1, 2, 512):
        assert (expected, None) == walked(path, batch_size)
    assert (expected, None) == by_libpcap(path)
    assert [(0, 1), (S2106, 3), (0, 1)] == [(b.epoch, len(b)) for b in OfflineCapture(str(path)).batches()]


EXPECTED_SECTIONS = [
    ("2025-01-01T00:00:00.007000Z", frame(1)),
    ("2200-01-01T00:00:00.000008Z", frame(2)),
    ("2025-01-01T00:00:00.000009Z", frame(3)),
]


def sections(orders: str) -> bytes:
    a, b, c = orders
    return (shb(a) + idb(a, tsresol=3) + epb(0, Y2025 * 1000 + 7, frame(1), a)
            + shb(b) + idb(b, tsresol=9) + epb(0, Y2200 * 10**9 + 8_000, frame(2), b)
            + shb(c) + idb(c) + epb(0, Y2025 * 10**6 + 9, frame(3), c))


@pytest.mark.parametrize("orders", ["<<<", ">>>"])
def test_each_section_has_its_own_interfaces(tmp_path, orders):
    path = write(tmp_path, sections(orders))
    assert (EXPECTED_SECTIONS, None) == walked(path)
    assert (EXPECTED_SECTIONS, None) == by_libpcap(path)


def test_sections_may_change_byte_order(tmp_path):
    """pcapng allows it (a file can be the concatenation of two captures);
    libpcap 1.9.1 reads the next section's length in the old order and
    stops ("pcapng block size 469762048 > maximum"), so only the walk (a
    read without a filter) reads such a file to its end."""
    path = write(tmp_path, sections("<><"))
    assert (EXPECTED_SECTIONS, None) == walked(path)


def test_simple_and_obsolete_packet_blocks_and_unknown_blocks(tmp_path):
    """A Simple Packet Block has no time (libpcap gives 1970, and cuts it to
    the snapshot length); a Packet Block is read like an EPB; other blocks
    (statistics, custom) are skipped."""
    data = (shb() + idb(snaplen=50, tsresol=9)
            + block(5, b"\0" * 16)  # Interface Statistics Block
            + pb(0, Y2200 * 10**9 + 1_000, frame(1, 40))
            + spb(frame(2, 80))
            + block(0x40000BAD, b"custom")
            + epb(0, Y2200 * 10**9 + 2_000, frame(3, 50)))
    expected = [
        ("2200-01-01T00:00:00.000001Z", frame(1, 40)),
        ("1970-01-01T00:00:00.000000Z", frame(2, 50)),
        ("2200-01-01T00:00:00.000002Z", frame(3, 50)),
    ]
    path = write(tmp_path, data)
    assert (expected, None) == walked(path)
    assert (expected, None) == by_libpcap(path)


@pytest.mark.parametrize("chunk", [64, 100, 333, 4096], ids=lambda c: f"chunk-{c}")
def test_blocks_across_chunk_ends_are_read_whole(tmp_path, monkeypatch, chunk):
    """The walk reads the file in chunks; a block cut by a chunk's end is
    re-read, also one longer than a whole chunk."""
    monkeypatch.setattr(capture, "_CHUNK", chunk)
    data = shb() + idb(tsresol=9) + b"".join(epb(0, Y2200 * 10**9 + i * 1_000, frame(i, 40 + 37 * i)) for i in range(12))
    expected = [(f"2200-01-01T00:00:00.{i:06d}Z", frame(i, 40 + 37 * i)) for i in range(12)]
    assert (expected, None) == walked(write(tmp_path, data), 5)


def test_classic_nanosecond_pcap_gives_truncated_microseconds_both_ways(tmp_path):
    """Magic 0xa1b23c4d: the fraction is nanoseconds, read as microseconds
    truncated, by the C walk and by libpcap (a filtered read) alike."""
    path = tmp_path / "nano.pcap"
    conv = craft.TcpConversation()
    craft.capture(path, [(Decimal("4294967295.123456789"), s) for s in conv.handshake()], nano=True)
    for bpf in ("", PASS_ALL):
        cap = OfflineCapture(str(path), bpf)
        assert ["2106-02-07T06:28:15.123456Z"] * 3 == [rfc3339(ts) for b in cap.batches() for ts, _f in b.frames()]


# --- broken files ---------------------------------------------------------------

BASE = shb() + idb(tsresol=9) + epb(0, Y2200 * 10**9, frame(1, 100)) + epb(0, Y2200 * 10**9 + 1_000, frame(2, 150))
FIRST = [("2200-01-01T00:00:00.000000Z", frame(1, 100))]
BOTH = FIRST + [("2200-01-01T00:00:00.000001Z", frame(2, 150))]


def bad_length(data: bytes, at: int, length: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<I", out, at + 4, length)
    return bytes(out)


SECOND = len(shb() + idb(tsresol=9) + epb(0, 0, frame(1, 100)))  # offset of the second EPB

# (case, file, packets before the break, libpcap's message for it)
BROKEN = [
    ("cut_in_block_header", BASE[:-(len(epb(0, 0, frame(2, 150))) - 5)], FIRST,
     "truncated pcapng dump file; tried to read 8 bytes, only got 5"),
    ("cut_in_packet_data", BASE[:-30], FIRST, "truncated pcapng dump file; tried to read 176 bytes, only got 146"),
    ("cut_in_trailer", BASE[:-2], FIRST, "truncated pcapng dump file; tried to read 176 bytes, only got 174"),
    ("cut_in_next_section_header", BASE + shb()[:10], BOTH, "truncated pcapng dump file; tried to read 20 bytes, only got 2"),
    ("trailer_differs", BASE[:-1] + b"\x01", FIRST, "block total length in header and trailer don't match"),
    ("length_below_12", bad_length(BASE, SECOND, 8), FIRST, "block in pcapng dump file has a length of 8 < 12"),
    ("length_above_16_MiB", bad_length(BASE, SECOND, 20 << 20), FIRST, "pcapng block size 20971520 > maximum 16777216"),
    ("unknown_interface", BASE + epb(1, 0, frame(3)), BOTH,
     "a packet arrived on interface 1, but there's no Interface Description Block for that interface"),
    ("caplen_above_snaplen", shb() + idb(snaplen=120) + epb(0, 0, frame(1, 100)) + epb(0, 0, frame(2, 150)),
     [("1970-01-01T00:00:00.000000Z", frame(1, 100))], "invalid packet capture length 150, bigger than snaplen of 120"),
    ("second_link_type", BASE + idb(linktype=113) + epb(1, 0, frame(3)), BOTH,
     "an interface has a type 113 different from the type of the first interface"),
    ("second_tsresol", BASE + idb(extra=option(9, b"\x06") + option(9, b"\x09")), BOTH,
     "Interface Description Block has more than one if_tsresol option"),
    ("tsresol_2^-64", BASE + idb(tsresol=0x80 | 64), BOTH, "Interface Description Block if_tsresol option resolution 2^-64 is too high"),
    ("tsresol_10^-20", BASE + idb(tsresol=20), BOTH, "Interface Description Block if_tsresol option resolution 10^-20 is too high"),
    ("epb_too_short", BASE + block(pcapng.EPB, b"abcd"), BOTH, "block of type 6 in pcapng dump file is too short"),
    ("idb_too_short", BASE + block(pcapng.IDB, b"ab"), BOTH, "block of type 1 in pcapng dump file is too short"),
    ("section_version_2", BASE + shb(major=2), BOTH, "unknown pcapng savefile major version number 2"),
    # Times a record cannot carry: libpcap reads them, sniffd stops at them.
    ("year_10000", BASE + idb(tsresol=0) + epb(1, 253402300800, frame(3)), BOTH,
     "a packet's time stamp (253402300800 s from 1970) is after the year 9999, where a record has no time for it"),
    ("before_1970", BASE + idb(tsoffset=-10) + epb(1, 5 * 10**6, frame(3)), BOTH,
     "a packet's time stamp (-5 s from 1970) is before 1970, where a record has no time for it"),
]


@pytest.mark.parametrize("case,data,before,message", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_pcapng_keeps_the_packets_before_the_break_and_says_why_as_libpcap(tmp_path, case, data, before, message):
    path = write(tmp_path, data)
    assert (before, message) == walked(path)
    assert (before, message) == by_libpcap(path)


def test_every_cut_of_a_file_reads_as_libpcap_reads_it(tmp_path):
    data = BASE + idb(tsresol=0x80 | 10) + spb(frame(3, 30)) + epb(1, Y2025 * 1024 + 1, frame(4, 70))
    header = len(shb() + idb(tsresol=9))  # libpcap opens no file cut before its first packet
    for cut in range(header, len(data) + 1):
        path = write(tmp_path, data[:cut])
        assert by_libpcap(path) == walked(path), cut


def test_block_lengths_not_a_multiple_of_4_stop_the_walk(tmp_path):
    """libpcap says so too, with a stray "zu" in its message (1.9.1)."""
    data = bad_length(BASE, SECOND, 230)
    assert (FIRST, "block in pcapng dump file has a length of 230 that is not a multiple of 4") == walked(write(tmp_path, data))


# --- C walk and its Python reference -------------------------------------------

MIXED = (shb() + idb(tsresol=9) + idb(tsresol=0x80 | 20, tsoffset=-100) + idb(snaplen=0)
         + b"".join(epb(i % 3, (Y2200 if i % 2 else Y2025) * 10**9 + i * 999_999_937, frame(i, 20 + 13 * i)) for i in range(9))
         + block(5, b"\0" * 8) + epb(0, Y2200 * 10**9, frame(9)))


def interfaces(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack("=Qq", units, offset) for units, offset in pairs)


IFACES = interfaces((10**9, 0), (2**20, -100), (10**6, 0))


@needs_c
@pytest.mark.parametrize("swap", [False, True], ids=["le", "be"])
def test_pcapng_epbs_c_and_python_agree_at_every_cut(swap):
    data = MIXED
    start = len(shb() + idb(tsresol=9) + idb(tsresol=0x80 | 20, tsoffset=-100) + idb(snaplen=0))
    if swap:
        # The same blocks big-endian: the fields pcapng_epbs reads, swapped.
        out, pos = bytearray(data[:start]), start
        while pos < len(data):
            btype, blen = struct.unpack_from("<II", data, pos)
            if btype == pcapng.EPB:
                fields = struct.unpack_from("<7I", data, pos)
                out += struct.pack(">7I", *fields) + data[pos + 28 : pos + blen - 4] + struct.pack(">I", blen)
            else:
                out += struct.pack(">II", btype, blen) + data[pos + 8 : pos + blen - 4] + struct.pack(">I", blen)
            pos += blen
        data = bytes(out)
    swapped = swap == (sys.byteorder == "little")
    for cut in range(start, len(data) + 1, 3):
        buf = data[:cut]
        for n in (1, 4, 512):
            for snapshot in (0, 100, 262144):
                pos, stop, walked_any = start, 0, False
                while stop == 0:
                    c = pcapng_epbs_c(buf, pos, n, swapped, IFACES, snapshot, -1)
                    assert c == pcapng_epbs_py(buf, pos, n, swapped, IFACES, snapshot, -1)
                    meta, pos, stop, _epoch = c
                    walked_any |= bool(meta)
                if cut == len(data) and snapshot:
                    assert walked_any


@needs_c
@settings(max_examples=400, deadline=None)
@given(
    data=st.binary(max_size=200),
    pos=st.integers(0, 210),
    n=st.integers(0, 5),
    swapped=st.booleans(),
    ifaces=st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(-(2**63), 2**63 - 1)), max_size=3),
    snapshot=st.integers(0, 300),
    epoch=st.sampled_from([-1, 0, 2**32, 2**33]),
)
def test_pcapng_epbs_c_and_python_agree_on_any_bytes(data, pos, n, swapped, ifaces, snapshot, epoch):
    table = interfaces(*ifaces)
    assert pcapng_epbs_c(data, pos, n, swapped, table, snapshot, epoch) == pcapng_epbs_py(data, pos, n, swapped, table, snapshot, epoch)


@needs_c
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_pcapng_epbs_c_and_python_agree_on_mutated_files(data):
    buf = bytearray(MIXED)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    start = len(shb() + idb(tsresol=9) + idb(tsresol=0x80 | 20, tsoffset=-100) + idb(snaplen=0))
    args = (bytes(buf), start, 512, sys.byteorder != "little", IFACES, 262144, -1)
    assert pcapng_epbs_c(*args) == pcapng_epbs_py(*args)


# --- the whole pipeline ---------------------------------------------------------


def exchange_frames() -> list[craft.Frame]:
    """Handshake, one GET at +3 ms answered at +10 ms, close at +20 ms."""
    c = craft.TcpConversation(("10.0.0.1", 40000), ("10.0.0.2", 80))
    segs = [*c.handshake(), c.client_data(b"GET /y2200 HTTP/1.1\r\nHost: example.test\r\n\r\n")[0],
            c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")[0], c.client_ack(), *c.close()]
    ms = [0, 1, 2, 3, 10, 11, 20, 21, 22]
    return craft.frames([(T0 + m / 1000, s) for m, s in zip(ms, segs)])


def test_read_gives_a_record_in_2200_from_a_nanosecond_pcapng(tmp_path):
    """The exchange at 2200-01-01 plus 123456789 ns, in a nanosecond pcapng;
    the same exchange at T0 in a classic pcap gives every other field."""
    frames = exchange_frames()
    classic = tmp_path / "t0.pcap"
    craft.write_pcap(classic, frames)
    (reference,) = read_records(classic)
    data = shb() + idb(tsresol=9) + b"".join(
        epb(0, Y2200 * 10**9 + 123_456_789 + round((f.ts - T0) * 1e3) * 10**6, f.data) for f in frames)
    path = write(tmp_path, data, "y2200.pcapng")
    expected = dict(reference, ts="2200-01-01T00:00:00.126456Z")
    for extra in ([], ["-f", "tcp port 80"], ["--workers", "2"]):
        assert [expected] == read_records(path, *extra), extra


def test_pipeline_feed_and_feed_batch_agree_past_2106(tmp_path):
    """Pipeline.feed (one frame: its float time split into an epoch and
    uint32 seconds) and feed_batch on the walked pcapng give the same record."""
    frames = exchange_frames()
    key = b"k" * 32
    one = Pipeline(redact_key=key, uid_salt=0)  # one salt: the same uids too
    by_frame = [r for f in frames for r in one.feed(Y2200 + 0.5 + (f.ts - T0), 1, f.data)] + one.flush()
    data = shb() + idb() + b"".join(epb(0, (Y2200 * 1000 + 500 + round((f.ts - T0) * 1e3)) * 1000, f.data) for f in frames)
    batched = Pipeline(redact_key=key, uid_salt=0)
    cap = OfflineCapture(str(write(tmp_path, data)))
    by_batch = [r for b in cap.batches() for r in batched.feed_batch(cap.linktype, b)] + batched.flush()
    assert ["2200-01-01T00:00:00.503000Z"] == [r["ts"] for r in by_frame]
    assert by_frame == by_batch


def test_truncated_pcapng_gives_the_records_before_the_cut_a_warning_and_exit_0(tmp_path):
    frames = exchange_frames()
    data = shb() + idb(tsresol=9) + b"".join(epb(0, Y2200 * 10**9 + round((f.ts - T0) * 1e3) * 10**6, f.data) for f in frames)
    path = write(tmp_path, data[:-20], "cut.pcapng")  # inside the last ACK
    out = tmp_path / "out.jsonl"
    proc = run_sniffd("read", path, "-o", out)
    assert 0 == proc.returncode, proc.stderr
    assert ["/y2200"] == [r["request"]["uri"] for r in load_jsonl(out)]
    (warning,) = stderr_lines(proc)
    assert warning.startswith(f"sniffd: warning: {path}: capture file is truncated or damaged (truncated pcapng dump file; "), warning


@pytest.mark.parametrize("case,data", [
    ("byte_order_magic_wrong", shb()[:8] + b"\x00\x11\x22\x33" + shb()[12:] + idb()),
    ("first_interface_tsresol_too_high", shb() + idb(tsresol=20) + epb(0, 0, frame(1))),
    ("cut_inside_the_section_header", shb()[:20]),
], ids=lambda c: c if isinstance(c, str) else "")
def test_pcapng_libpcap_cannot_open_exits_2_with_one_line_and_no_output(tmp_path, case, data):
    path = write(tmp_path, data, "bad.pcapng")
    out = tmp_path / "out.jsonl"
    proc = run_sniffd("read", path, "-o", out)
    lines = stderr_lines(proc)
    assert (2, 1, False) == (proc.returncode, len(lines), out.exists()), proc.stderr
    assert lines[0].startswith(f"sniffd: error: {path}: not a readable pcap/pcapng file"), lines[0]
