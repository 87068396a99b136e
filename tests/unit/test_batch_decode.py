"""decode.decode_batch: sniffd/_batch.c against its Python reference
(decode.decode_batch_py), and the reference against decode_frame.

The C version must give the very same list (same floats, same tuples, same
offsets) for any batch: every test capture, frames broken at each field it
reads, random bytes, and meta entries pointing past the buffer.
"""

from __future__ import annotations

import struct
from pathlib import Path

import craft
import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sniffd import capture, decode
from sniffd.capture import OfflineCapture
from sniffd.decode import DLT_EN10MB, DLT_LINUX_SLL, LINK_HEADER, Segment, decode_batch_py, decode_frame

try:
    from sniffd._batch import decode_batch as decode_batch_c
except ImportError:  # reported by test_the_c_batch_decoder_is_built
    decode_batch_c = None

needs_c = pytest.mark.skipif(decode_batch_c is None, reason="sniffd._batch not built")

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


def test_the_c_batch_decoder_is_built_and_used() -> None:
    """scripts/install provides gcc and the Python headers, so the extension
    must have been built; without it sniffd is correct but much slower, and
    that must not pass unnoticed."""
    assert decode_batch_c is not None
    assert decode.decode_batch is decode_batch_c


INF = float("-inf")


def clocked(fn, buf, meta, link, k=0, n=1, now=INF, next_expire=0.0, frame_no=0, every=1.0, verify=None):
    """decode_batch; ``verify`` None: the nine-argument call (no checksums)."""
    if verify is None:
        return fn(buf, meta, link, k, n, now, next_expire, frame_no, every)
    return fn(buf, meta, link, k, n, now, next_expire, frame_no, every, verify)


def both(buf, meta, link, k=0, n=1, now=INF, next_expire=0.0, frame_no=0, every=1.0, verify=None):
    """decode_batch in C and in Python: asserts they agree, returns the result."""
    py = clocked(decode_batch_py, buf, meta, link, k, n, now, next_expire, frame_no, every, verify)
    assert clocked(decode_batch_c, buf, meta, link, k, n, now, next_expire, frame_no, every, verify) == py
    return py


def pack(frames: list[tuple[int, int, bytes]], extra: bytes = b"") -> tuple[bytes, bytes]:
    buf, meta = bytearray(), bytearray()
    for sec, usec, frame in frames:
        meta += struct.pack("=4I", sec, usec, len(buf), len(frame))
        buf += frame
    return bytes(buf + extra), bytes(meta)


@needs_c
@pytest.mark.parametrize("path", sorted(CAPTURES.glob("**/*.pcap")), ids=lambda p: p.name)
def test_c_and_python_agree_on_every_test_capture(path: Path) -> None:
    cap = OfflineCapture(str(path), "")
    link = LINK_HEADER.get(cap.linktype, 0)
    for b in cap.batches():
        for lk in {link, 0, 14, 16}:
            both(b.buf, b.meta, lk)
            both(b.buf, b.meta, lk, verify=True)


def frame_variants(linktype: int) -> list[bytes]:
    seg = craft.Segment("10.0.0.1", 40000, "10.0.0.2", 80, 1000, 2000, craft.ACK | craft.PSH, b"GET / HTTP/1.1\r\n\r\n")
    ip = craft.ip_packet(seg)
    f = craft.link_frame(ip, linktype)
    at = LINK_HEADER[linktype]

    def patched(pos: int, value: bytes) -> bytes:
        b = bytearray(f)
        b[at + pos : at + pos + len(value)] = value
        return bytes(b)

    total = len(ip)
    return [
        f,
        f + b"\0" * 9,  # Ethernet padding: not payload
        f[:-3],  # snaplen cut: left to decode_frame (lost bytes)
        f[: at + 39],  # one byte short of the headers
        f[: at + 40],
        patched(2, struct.pack("!H", total + 1)),
        patched(2, struct.pack("!H", total - 1)),
        patched(2, struct.pack("!H", 39)),
        patched(0, b"\x46"),
        patched(0, b"\x65"),
        patched(6, b"\x20\x00"),
        patched(6, b"\x00\x01"),
        patched(6, b"\x40\x00"),
        patched(6, b"\x80\x00"),  # the reserved bit is not a fragment bit
        patched(9, b"\x11"),
        patched(32, b"\x40"),
        patched(32, b"\x60"),
        patched(32, b"\xf0"),
        patched(-2, b"\x86\xdd"),
        patched(-2, b"\x81\x00"),
        patched(12, b"\xff\xff\xff\xff"),
        patched(20, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
        b"",
    ]


@pytest.mark.parametrize("verify", [False, True], ids=["unchecked", "checksums"])
@pytest.mark.parametrize("linktype", [DLT_EN10MB, DLT_LINUX_SLL])
def test_python_reference_agrees_with_decode_frame(linktype: int, verify: bool) -> None:
    """A segment only where decode_frame gives that very segment."""
    frames = [(1_700_000_000 + i, i * 7919 % 1_000_000, f) for i, f in enumerate(frame_variants(linktype))]
    buf, meta = pack(frames)
    out, *_ = clocked(decode_batch_py, buf, meta, LINK_HEADER[linktype], every=1e12, verify=verify)
    fast = set()
    for i, ((sec, usec, frame), (ts, seg, caplen, frame_no)) in enumerate(zip(frames, out, strict=True)):
        assert (ts, caplen, frame_no) == (sec + usec * 1e-6, len(frame), i + 1)
        if seg.__class__ is tuple:
            fast.add(i)
            assert decode_frame(linktype, frame, verify) == Segment(*seg)
        else:
            assert buf[seg : seg + caplen] == frame
    # The whole frame, padded, IP length one short (the byte is padding),
    # DF, the reserved bit, TCP options, other addresses, ports and numbers.
    assert fast == {0, 1, 6, 12, 13, 16, 20, 21}


@needs_c
@pytest.mark.parametrize("linktype", [DLT_EN10MB, DLT_LINUX_SLL])
def test_c_agrees_on_each_broken_frame(linktype: int) -> None:
    frames = [(1_700_000_000 + i, i * 7919 % 1_000_000, f) for i, f in enumerate(frame_variants(linktype))]
    buf, meta = pack(frames)
    for lk in (0, 14, 16):
        both(buf, meta, lk)
        both(buf, meta, lk, verify=True)


@needs_c
def test_c_leaves_frames_past_the_buffer_to_python() -> None:
    f = frame_variants(DLT_EN10MB)[0]
    buf, meta = pack([(1, 2, f)])
    meta += struct.pack("=4I", 3, 4, len(buf) - 10, len(f))  # runs past the end
    meta += struct.pack("=4I", 3, 4, 2**32 - 1, 2**32 - 1)
    both(buf, meta, 14)


@needs_c
@settings(max_examples=300, deadline=None)
@given(
    seed=st.sampled_from(frame_variants(DLT_EN10MB)[:2] + frame_variants(DLT_LINUX_SLL)[:1]),
    edits=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=5),
    cut=st.integers(0, 70),
    times=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    junk=st.binary(max_size=80),
)
def test_c_agrees_on_mutated_and_random_frames(seed, edits, cut, times, junk) -> None:
    b = bytearray(seed)
    for pos, value in edits:
        if pos < len(b):
            b[pos] = value
    mutated = bytes(b[: len(b) - cut % (len(b) + 1)])
    buf, meta = pack([(times[0], times[1], mutated), (times[1], times[0], junk), (0, 999_999, seed)])
    for lk in (14, 16):
        both(buf, meta, lk)
        both(buf, meta, lk, verify=True)
        both(buf, meta, lk, 1, 2, now=float(times[1] % 5000), next_expire=float(times[0] % 7000), frame_no=times[0],
             verify=bool(times[0] & 1))


def checksum_frames(linktype: int) -> list[bytes]:
    """Common frames: a valid checksum, a wrong one, a payload bit flipped,
    an odd length, and the 0x0000 / 0xFFFF pair (both zeros: valid)."""
    seg = craft.Segment("10.0.0.1", 40000, "10.0.0.2", 80, 1000, 2000, craft.ACK | craft.PSH, b"GET / HTTP/1.1\r\n\r\n")
    good = craft.link_frame(craft.ip_packet(seg), linktype)
    at = LINK_HEADER[linktype] + 20 + 16  # the checksum field
    wrong = good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1 :]
    flipped = good[:-1] + bytes([good[-1] ^ 0x20])
    odd = craft.link_frame(craft.ip_packet(seg.with_payload(b"GET /x HTTP/1.0\r\n\r\n!")), linktype)
    # Two payload bytes that make the sum with checksum 0 come to 0xFFFF:
    # the checksum is then 0x0000, and 0xFFFF is the same zero.
    zero = craft.link_frame(craft.ip_packet(seg.with_payload(seg.payload + b"\0\0")), linktype)
    ip = LINK_HEADER[linktype]
    body = bytearray(zero[ip + 20 :])
    body[16:18] = b"\0\0"
    pseudo = zero[ip + 12 : ip + 20] + struct.pack(">xBH", 6, len(body))
    body[-2:] = struct.pack(">H", dpkt.in_cksum(pseudo + bytes(body)))
    sums = [zero[:ip + 20] + bytes(body[:16]) + z + bytes(body[18:]) for z in (b"\0\0", b"\xff\xff")]
    return [good, wrong, flipped, odd, *sums]


@needs_c
@pytest.mark.parametrize("linktype", [DLT_EN10MB, DLT_LINUX_SLL])
def test_checksums_in_c_and_python_valid_invalid_and_unchecked(linktype: int) -> None:
    frames = [(1, i, f) for i, f in enumerate(checksum_frames(linktype))]
    buf, meta = pack(frames)
    link = LINK_HEADER[linktype]
    checked = [item[1][10] for item in both(buf, meta, link, verify=True)[0]]
    unchecked = [item[1][10] for item in both(buf, meta, link, verify=False)[0]]
    # A frame cut by the snaplen is not a common frame: decode_frame decides (-1).
    cut = decode_frame(linktype, frames[0][2][:-3], True).csum
    assert ([1, 0, 0, 1, 1, 1], [-1] * 6, -1) == (checked, unchecked, cut)


def test_the_clock_never_goes_back_and_ticks_once_a_second() -> None:
    """Hand-computed: the first frame starts the ticks (no housekeeping
    before it), a frame earlier than the clock is counted and taken at the
    clock, housekeeping comes before the frame that makes it due."""
    f = frame_variants(DLT_EN10MB)[9]  # not a common frame: its offset comes back
    times = [(10, 0), (10, 500_000), (9, 0), (11, 200_000), (11, 300_000), (13, 0), (12, 0)]
    buf, meta = pack([(s, u, f) for s, u in times])
    n = len(f)

    def t(sec: int, usec: int) -> float:  # the documented packet time
        return sec + usec * 1e-6

    items, now, next_expire, frame_no, backwards = both(buf, meta, 14)
    assert items == [
        (t(10, 0), 0, n, 1),
        (t(10, 500_000), n, n, 2),
        (t(10, 500_000), 2 * n, n, 3),
        (t(11, 200_000), None, 0, 4), (t(11, 200_000), 3 * n, n, 4),
        (t(11, 300_000), 4 * n, n, 5),
        (t(13, 0), None, 0, 6), (t(13, 0), 5 * n, n, 6),
        (t(13, 0), 6 * n, n, 7),
    ]
    assert (now, next_expire, frame_no, backwards) == (13.0, 14.0, 7, 2)
    # Carried into the next batch: nothing is due before 14 s.
    items, *clock = both(buf[: 2 * n], meta[:32], 14, now=now, next_expire=next_expire, frame_no=frame_no)
    assert items == [(13.0, 0, n, 8), (13.0, n, n, 9)]
    assert clock == [13.0, 14.0, 9, 2]


# ------------------------------------------------------- shards (read --workers)


@needs_c
@pytest.mark.parametrize("path", sorted(CAPTURES.glob("**/*.pcap")), ids=lambda p: p.name)
def test_c_and_python_shard_alike_on_every_test_capture(path: Path) -> None:
    cap = OfflineCapture(str(path), "")
    link = LINK_HEADER.get(cap.linktype, 0)
    for b in cap.batches():
        for k, n in ((0, 2), (1, 2), (2, 3)):
            got, *clock = both(b.buf, b.meta, link, k, n)
            whole, *clock1 = both(b.buf, b.meta, link)
            # A shard drops other shards' common frames, and only those;
            # the clock and the housekeeping ticks are the whole capture's.
            assert clock == clock1
            kept = {(item[3], item[1] is None): item for item in got}
            assert set(kept) <= {(item[3], item[1] is None) for item in whole}
            for item in whole:
                key = (item[3], item[1] is None)
                if key in kept:
                    assert kept[key] == item
                else:
                    seg = item[1]
                    assert seg.__class__ is tuple and decode.flow_hash(*seg[:4]) % n != k


@needs_c
def test_c_rejects_a_shard_outside_its_count() -> None:
    with pytest.raises(ValueError):
        clocked(decode_batch_c, b"", b"", 14, 2, 2)


# ------------------------------------------------------------- pcap_records

from sniffd.capture import pcap_records_py  # noqa: E402

try:
    from sniffd._batch import pcap_records as pcap_records_c
except ImportError:
    pcap_records_c = None


def pcap_file(tmp_path: Path, nano: bool, big_endian: bool, snaplen: int = 65535) -> bytes:
    conv = craft.TcpConversation()
    segs = conv.handshake() + conv.client_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n") + conv.server_data(b"x" * 3000, [1448])
    path = tmp_path / "f.pcap"
    craft.capture(path, [(1_700_000_000.123456 + i * 0.000713, s) for i, s in enumerate(segs)], nano=nano, snaplen=snaplen)
    data = path.read_bytes()
    if big_endian:
        # The same file written big-endian: swap every header field.
        out = bytearray(struct.pack(">IHHiIII", *struct.unpack_from("<IHHiIII", data, 0)))
        pos = 24
        while pos < len(data):
            sec, frac, caplen, wire = struct.unpack_from("<4I", data, pos)
            out += struct.pack(">4I", sec, frac, caplen, wire) + data[pos + 16 : pos + 16 + caplen]
            pos += 16 + caplen
        data = bytes(out)
    return data


@needs_c
@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_pcap_records_c_and_python_agree_at_every_cut(tmp_path, nano, big_endian) -> None:
    data = pcap_file(tmp_path, nano, big_endian)
    swapped = big_endian  # this machine is little-endian (x86_64)
    for cut in range(24, len(data) + 1, 7):
        buf = data[:cut]
        for n in (1, 3, 512):
            pos, stop = 24, 0
            while stop == 0:
                c = pcap_records_c(buf, pos, n, swapped, nano, 65535)
                assert c == pcap_records_py(buf, pos, n, swapped, nano, 65535)
                _meta, pos, stop = c
        assert stop == 1
    assert pcap_records_c(data, 24, 512, swapped, nano, 100)[2] == 2  # caplen above the maximum


@pytest.mark.parametrize("chunk", [None, 1000, 1600, 4000], ids=["chunk-default", "chunk-1000", "chunk-1600", "chunk-4000"])
@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_walked_file_reads_as_libpcap_reads_it(tmp_path, nano, big_endian, chunk, monkeypatch) -> None:
    """OfflineCapture walks classic pcap files itself; every frame and
    timestamp must be libpcap's, also when the file is cut inside a record
    (the walk hands over to libpcap, which reports the cut).  Small chunks
    put records across chunk ends (re-read from the file) and, at 1600
    bytes, leave a chunk room for one full-size record only; at 1000, a
    record longer than a chunk goes to libpcap."""
    if chunk is not None:
        monkeypatch.setattr(capture, "_CHUNK", chunk)
    data = pcap_file(tmp_path, nano, big_endian)
    path = tmp_path / "g.pcap"
    for cut in (len(data), len(data) - 5, len(data) - 1500, 24 + 16 + 20):
        path.write_bytes(data[:cut])
        walked = OfflineCapture(str(path), "")
        assert walked._walk_as is not None
        plain = OfflineCapture(str(path), "")
        plain._walk_as = None  # libpcap's next_batch
        frames_w = [f for b in walked.batches(3) for f in b.frames()]
        frames_p = [f for b in plain.batches(3) for f in b.frames()]
        assert frames_w == frames_p
        assert (walked.truncated is None) == (plain.truncated is None) == (cut == len(data))
        assert walked.truncated == plain.truncated


def test_record_longer_than_the_snaplen_is_left_to_libpcap(tmp_path) -> None:
    """A header snaplen below the records' caplen (libpcap cuts such records
    to it): the walk stops there and libpcap goes on."""
    data = bytearray(pcap_file(tmp_path, False, False))
    struct.pack_into("<I", data, 16, 1000)
    path = tmp_path / "h.pcap"
    path.write_bytes(data)
    walked = OfflineCapture(str(path), "")
    plain = OfflineCapture(str(path), "")
    plain._walk_as = None
    assert walked._walk_as == (False, False, 1000)
    frames = [f for b in walked.batches() for f in b.frames()]
    assert frames == [f for b in plain.batches() for f in b.frames()]
    assert max(len(f) for _ts, f in frames) == 1000  # libpcap's cut: the hand-over happened
    assert walked.truncated == plain.truncated


def test_filtered_reads_are_left_to_libpcap_and_pcapng_is_walked_by_sniffd_pcapng(tmp_path) -> None:
    """The classic walk reads unfiltered classic pcap; an unfiltered pcapng
    is walked by sniffd.pcapng (tests/pcap/test_pcapng.py), a filtered one
    read by libpcap a record at a time."""
    conv = craft.TcpConversation()
    path = tmp_path / "n.pcapng"
    craft.capture(path, [(1.0, s) for s in conv.handshake()], fmt="pcapng")
    assert (None, True) == (OfflineCapture(str(path), "")._walk_as, OfflineCapture(str(path), "")._walk_pcapng_file)
    assert (None, False) == (OfflineCapture(str(path), "tcp")._walk_as, OfflineCapture(str(path), "tcp")._walk_pcapng_file)
    path = tmp_path / "p.pcap"
    craft.capture(path, [(1.0, s) for s in conv.handshake()])
    assert OfflineCapture(str(path), "tcp")._walk_as is None
    assert OfflineCapture(str(path), "")._walk_as is not None
    assert not OfflineCapture(str(path), "")._walk_pcapng_file


@needs_c
@pytest.mark.parametrize("epoch", [0, 2**32, 2**34], ids=["epoch-0", "epoch-2^32", "epoch-2^34"])
def test_decode_batch_adds_the_epoch_in_c_and_python_alike(epoch) -> None:
    """capture.Batch.epoch: seconds past 2106 (a uint32 of them ends there)."""
    f = frame_variants(DLT_EN10MB)[0]
    buf, meta = pack([(0, 1, f), (5, 250000, f), (4294967295, 999999, f)])
    args = (buf, meta, 14, 0, 1, INF, 0.0, 0, 1.0, False, epoch)
    py = decode_batch_py(*args)
    assert decode_batch_c(*args) == py
    expected = [(epoch + 0) + 1 * 1e-6, (epoch + 5) + 250000 * 1e-6, (epoch + 4294967295) + 999999 * 1e-6]
    assert expected == [now for now, seg, _caplen, _no in py[0] if seg is not None]


@needs_c
@settings(max_examples=400, deadline=None)
@given(
    data=st.binary(max_size=300),
    pos=st.integers(0, 320),
    n=st.integers(0, 6),
    swapped=st.booleans(),
    nano=st.booleans(),
    max_caplen=st.integers(0, 300),
)
def test_pcap_records_c_and_python_agree_on_any_bytes(data, pos, n, swapped, nano, max_caplen) -> None:
    assert pcap_records_c(data, pos, n, swapped, nano, max_caplen) == pcap_records_py(data, pos, n, swapped, nano, max_caplen)


@needs_c
def test_c_refuses_arguments_that_would_read_outside_the_buffers() -> None:
    f = frame_variants(DLT_EN10MB)[0]
    buf, meta = pack([(1, 2, f)])
    with pytest.raises(ValueError):
        clocked(decode_batch_c, buf, meta, 1)  # the ethertype would be read before the frame
    with pytest.raises(ValueError):
        pcap_records_c(buf, -1, 1, False, False, 100)
    with pytest.raises(ValueError):
        pcap_records_c(buf, 0, 2**62, False, False, 100)
