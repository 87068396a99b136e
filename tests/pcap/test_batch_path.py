"""`sniffd read`'s batch loop decodes the common frame inline
(Pipeline.feed_batch); every other frame, and every frame of ``feed``, goes
through decode.decode_frame.  Both must give the same records and the same
stats on every test capture and on frames broken in every way the inline
checks guard against.  A third run on the dpkt decoder (no inline path, no
struct fast path) ties both to the reference decoder.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import craft
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sniffd.pipeline
from sniffd.capture import Batch, OfflineCapture
from sniffd.decode import DLT_EN10MB, DLT_LINUX_SLL, decode_batch_py, decode_frame, decode_frame_dpkt
from sniffd.pipeline import Pipeline

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
KEY = b"k" * 32


# One salt for every pipeline here, so the paths compared give the same uids
# (connections counted in the same order) as they give the same records.
UID_SALT = 0


def _records(recs: list[dict]) -> list[str]:
    return [json.dumps(r, sort_keys=True) for r in recs]


def by_frame(linktype: int, frames: list[tuple[float, bytes]], decode=decode_frame):
    p = Pipeline(decode=decode, redact_key=KEY, uid_salt=UID_SALT)
    out = []
    for ts, frame in frames:
        out += p.feed(ts, linktype, frame)
    out += p.flush()
    return _records(out), p.stats


def by_batch(linktype: int, batches: list[Batch], decode=decode_frame):
    p = Pipeline(decode=decode, redact_key=KEY, uid_salt=UID_SALT)
    out = []
    for b in batches:
        out += p.feed_batch(linktype, b)
    out += p.flush()
    return _records(out), p.stats


def batch_of(frames: list[tuple[float, bytes]]) -> Batch:
    """One Batch laid out as pcapy-ng's next_batch lays one out."""
    buf, meta = bytearray(), bytearray()
    for ts, frame in frames:
        sec = int(ts)
        usec = round((ts - sec) * 1e6)
        meta += struct.pack("=4I", sec, usec, len(buf), len(frame))
        buf += frame
    return Batch(bytes(buf), bytes(meta))


class Counting:
    """decode_frame, counting the frames that reach it.  Installed as
    ``sniffd.pipeline.decode_frame`` and given as the decoder, the inline path
    stays on (feed_batch compares the two by identity)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, linktype: int, frame: bytes, verify: bool = False):
        self.calls += 1
        return decode_frame(linktype, frame, verify)


def all_three(linktype: int, frames: list[tuple[float, bytes]], batches: list[Batch], monkeypatch) -> int:
    """Assert the runs agree (batch decoding in C, and in its Python
    reference as without a compiler; per frame; the dpkt decoder); return
    how many frames the batch decoder took (all frames minus those that
    reached decode_frame)."""
    counting = Counting()
    monkeypatch.setattr(sniffd.pipeline, "decode_frame", counting)
    inline = by_batch(linktype, batches, decode=counting)
    monkeypatch.setattr(sniffd.pipeline, "decode_batch", decode_batch_py)
    inline_py = by_batch(linktype, batches, decode=counting)
    monkeypatch.undo()
    reference = by_frame(linktype, frames)
    dpkt_path = by_batch(linktype, batches, decode=decode_frame_dpkt)
    assert inline == reference
    assert inline_py == reference
    assert dpkt_path == reference
    return len(frames) - counting.calls // 2


def capture_files() -> list[Path]:
    return sorted(CAPTURES.glob("*.pcap")) + sorted((CAPTURES / "fuzz").glob("*.pcap"))


@pytest.mark.parametrize("path", capture_files(), ids=lambda p: str(p.relative_to(CAPTURES)))
def test_inline_decoding_gives_the_same_records_and_stats_on_every_capture(path: Path, monkeypatch) -> None:
    cap = OfflineCapture(str(path), "")
    batches = list(cap.batches())
    frames = [f for b in batches for f in b.frames()]
    taken = all_three(cap.linktype, frames, batches, monkeypatch)
    if path.name in ("sample.pcap", "pipeline_head.pcap"):
        # Ethernet + IPv4 captures: the inline path must really be what ran.
        assert taken > len(frames) // 2


# A conversation whose frames the tests below break one at a time.
CLIENT = ("10.1.0.1", 40000)
SERVER = ("10.1.0.2", 80)


def conversation(linktype: int) -> list[tuple[float, bytes]]:
    conv = craft.TcpConversation(CLIENT, SERVER)
    segs = conv.handshake()
    segs += conv.client_data(b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    segs += [conv.server_ack()]
    segs += conv.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", sizes=[20])
    segs += [conv.client_ack()]
    segs += conv.client_data(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
    segs += conv.server_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    segs += conv.close()
    fr = craft.frames([(1_700_000_000 + k * 0.001, s) for k, s in enumerate(segs)], linktype=linktype)
    return [(float(f.ts), f.data) for f in fr]


def _ip_offset(linktype: int) -> int:
    return 14 if linktype == DLT_EN10MB else 16


def with_frame(frames, i: int, frame: bytes):
    return frames[:i] + [(frames[i][0], frame)] + frames[i + 1 :]


def broken_variants(linktype: int):
    """(name, frames) with one data frame changed where an inline check looks."""
    frames = conversation(linktype)
    i = next(k for k, (_, f) in enumerate(frames) if b"GET /a" in f)
    f = frames[i][1]
    ip = _ip_offset(linktype)

    def patched(pos: int, value: bytes) -> bytes:
        b = bytearray(f)
        b[pos : pos + len(value)] = value
        return bytes(b)

    total = struct.unpack_from("!H", f, ip + 2)[0]
    yield "unchanged", frames
    yield "ethernet_padding_after_the_packet", with_frame(frames, i, f + b"\0" * 7)
    yield "snaplen_cut_inside_the_payload", with_frame(frames, i, f[:-5])
    yield "cut_inside_the_tcp_header", with_frame(frames, i, f[: ip + 30])
    yield "ip_total_length_short_of_the_headers", with_frame(frames, i, patched(ip + 2, struct.pack("!H", 30)))
    yield "ip_total_length_past_the_frame", with_frame(frames, i, patched(ip + 2, struct.pack("!H", total + 9)))
    yield "ip_total_length_cuts_the_payload", with_frame(frames, i, patched(ip + 2, struct.pack("!H", total - 3)))
    yield "ip_options_present", with_frame(frames, i, patched(ip, b"\x46"))
    yield "ip_version_6_in_an_ipv4_ethertype", with_frame(frames, i, patched(ip, b"\x65"))
    yield "more_fragments_flag", with_frame(frames, i, patched(ip + 6, b"\x20\x00"))
    yield "fragment_offset", with_frame(frames, i, patched(ip + 6, b"\x00\x02"))
    yield "dont_fragment_flag_only", with_frame(frames, i, patched(ip + 6, b"\x40\x00"))
    yield "protocol_udp", with_frame(frames, i, patched(ip + 9, b"\x11"))
    yield "tcp_data_offset_below_5", with_frame(frames, i, patched(ip + 32, b"\x40"))
    yield "tcp_data_offset_past_the_packet", with_frame(frames, i, patched(ip + 32, b"\xf0"))
    yield "tcp_options_present", with_frame(frames, i, patched(ip + 32, b"\x60"))
    yield "ethertype_arp", with_frame(frames, i, patched(ip - 2, b"\x08\x06"))


LINKTYPES = [DLT_EN10MB, DLT_LINUX_SLL]
VARIANTS = [(lt, name, frames) for lt in LINKTYPES for name, frames in broken_variants(lt)]


@pytest.mark.parametrize("linktype,name,frames", VARIANTS, ids=[f"{lt}-{n}" for lt, n, _ in VARIANTS])
def test_inline_decoding_agrees_on_each_broken_frame(linktype: int, name: str, frames, monkeypatch) -> None:
    for size in (1, 3, len(frames)):
        batches = [batch_of(frames[k : k + size]) for k in range(0, len(frames), size)]
        all_three(linktype, frames, batches, monkeypatch)


def test_the_conversation_gives_its_two_records_through_the_inline_path(monkeypatch) -> None:
    """The broken-frame cases start from a conversation that is itself
    decoded inline and logged whole: two records, both complete."""
    frames = conversation(DLT_EN10MB)
    counting = Counting()
    monkeypatch.setattr(sniffd.pipeline, "decode_frame", counting)
    recs, stats = by_batch(DLT_EN10MB, [batch_of(frames)], decode=counting)
    assert counting.calls == 0
    assert [(json.loads(r)["request"]["uri"], json.loads(r)["response"]["status"]) for r in recs] == [
        ("/a?x=1", 200),
        ("/b", 404),
    ]
    assert stats["packets"] == len(frames)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    linktype=st.sampled_from(LINKTYPES),
    which=st.integers(0, 50),
    edits=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 80),
)
def test_inline_decoding_agrees_on_mutated_headers(linktype, which, edits, cut, monkeypatch) -> None:
    frames = conversation(linktype)
    i = which % len(frames)
    b = bytearray(frames[i][1])
    for pos, value in edits:
        if pos < len(b):
            b[pos] = value
    mutated = bytes(b[: len(b) - cut % (len(b) + 1)])
    frames = with_frame(frames, i, mutated)
    all_three(linktype, frames, [batch_of(frames)], monkeypatch)
