"""The fuzzer's input format: one byte string <-> a capture (link type,
snaplen, frames with timestamps).  Shared by fuzz_pipeline.py (which feeds
it to the pipeline), make_seeds.py (which writes seeds in it) and
crash_to_pcap.py (which turns a crash input into a pcap file).

    byte 0        link type: LINKTYPES[b % len(LINKTYPES)]
    byte 1        bit 0: driver (0: Pipeline.feed_batch, as `sniffd read`;
                  1: Pipeline.feed per frame, as the daemon);
                  bits 1-3: snaplen, SNAPLENS[(b >> 1) & 7];
                  bit 4: TIGHT settings (tiny bounds, body capture on)
                  instead of the defaults
    then frames, each:
    2 bytes LE    time step t: bit 15 set: back (t & 0x7fff) ms;
                  else forward (t & 0x7fff) * 10 ms (0 .. 327 s, past every
                  timeout: gap 10 s, linger 10 s, fragments 30 s, idle 300 s)
    2 bytes LE    frame length n (cut to what is left of the input)
    n bytes       the frame, from its link header on

A frame longer than the snaplen is cut to it, keeping its wire length, as a
capture with that snaplen would.  Timestamps are whole microseconds so a
pcap file (microsecond resolution) holds exactly the same values; a step
back never goes below 0.

The format is deliberately dumb so that libFuzzer's byte mutations (flip,
insert, erase, splice) map onto frame-level mutations.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# Every link type sniffd reads (sniffd.decode.SUPPORTED_LINKTYPES).  101
# (LINKTYPE_RAW) is what files say; libpcap reports it as 12 (DLT_RAW).
# New ones go at the end, so existing inputs keep their link type.
LINKTYPES = (1, 113, 276, 12, 101, 0, 108, 228, 229, 14, 9, 50, 51, 104, 204, 205, 219, 239)
# 65535: no cut.  The others cut most frames: snaplen_truncated paths.
SNAPLENS = (65535, 54, 60, 64, 80, 96, 128, 256)

# Bounds small enough for a few frames to reach every one of them (and the
# memory budget's degradation steps), with body capture and decoding on.
# `sniffd read -c` takes them from the .toml crash_to_pcap.py writes.
TIGHT = {
    "limits": {
        "max_connections": 3,
        "max_conn_buffer_bytes": 2048,
        "max_total_buffer_bytes": 4096,
        "max_frag_datagrams": 2,
        "max_frags_per_datagram": 4,
        "max_pending_requests": 2,
        "max_header_bytes": 256,
        "max_header_count": 6,
        "max_uri_bytes": 32,
        "memory_budget_mb": 0.05,
    },
    "bodies": {"capture_bodies": True, "max_body_bytes": 256, "max_decoded_bytes": 1024},
}

T0_US = 1_795_257_725_000_000  # 2026-11-21T10:42:05Z, the tests' T0
_HDR = struct.Struct("<HH")


class Frame(NamedTuple):
    ts_us: int  # capture time, microseconds since the epoch
    data: bytes  # what the capture kept
    wirelen: int  # length on the wire (> len(data) when the snaplen cut it)

    @property
    def ts(self) -> float:
        """The float sniffd computes from a pcap record (sec + usec * 1e-6)."""
        sec, usec = divmod(self.ts_us, 1_000_000)
        return sec + usec * 1e-6


class Capture(NamedTuple):
    linktype: int
    per_frame: bool  # True: Pipeline.feed per frame; False: feed_batch
    snaplen: int
    frames: list[Frame]
    tight: bool = False  # TIGHT settings instead of the defaults


def tight_settings_kwargs() -> dict:
    """TIGHT as keyword arguments of sniffd.settings.Settings."""
    return {k: v for section in TIGHT.values() for k, v in section.items()}


def tight_toml() -> str:
    """TIGHT as a sniffd.toml for `sniffd read -c`."""
    lines = []
    for section, keys in TIGHT.items():
        lines.append(f"[{section}]")
        for k, v in keys.items():
            value = ("true" if v else "false") if isinstance(v, bool) else repr(v)
            lines.append(f"{k} = {value}")
        lines.append("")
    return "\n".join(lines)


def decode(data: bytes) -> Capture:
    if len(data) < 2:
        return Capture(LINKTYPES[0], False, SNAPLENS[0], [])
    linktype = LINKTYPES[data[0] % len(LINKTYPES)]
    per_frame = bool(data[1] & 1)
    snaplen = SNAPLENS[(data[1] >> 1) & 7]
    tight = bool(data[1] & 0x10)
    frames = []
    ts = T0_US
    pos = 2
    while pos + 4 <= len(data):
        step, n = _HDR.unpack_from(data, pos)
        pos += 4
        if step & 0x8000:
            ts = max(0, ts - (step & 0x7FFF) * 1000)
        else:
            ts += step * 10_000
        frame = data[pos : pos + n]
        pos += len(frame)
        frames.append(Frame(ts, frame[:snaplen], len(frame)))
    return Capture(linktype, per_frame, snaplen, frames, tight)


def encode(linktype: int, frames: list[tuple[int, bytes]], per_frame: bool = False, snaplen_index: int = 0,
           tight: bool = False) -> bytes:
    """An input from ``(ts_us, frame)`` pairs (frames at most 65535 bytes).
    Steps are cut at what one header can say: a longer pause becomes a
    shorter one, which the fuzzer does not mind."""
    out = bytearray([LINKTYPES.index(linktype), int(per_frame) | (snaplen_index << 1) | (0x10 if tight else 0)])
    now = T0_US
    for ts_us, frame in frames:
        delta = ts_us - now
        if delta >= 0:
            step = min(delta // 10_000, 0x7FFF)
            now += step * 10_000
        else:
            back = min(-delta // 1000, 0x7FFF)
            step = 0x8000 | back
            now -= back * 1000
        assert len(frame) <= 0xFFFF
        out += _HDR.pack(step, len(frame)) + frame
    return bytes(out)


def write_pcap(path: str, cap: Capture) -> None:
    """A little-endian microsecond pcap of ``cap``: what `sniffd read` of it
    sees is what the fuzz target fed."""
    # LINKTYPE_RAW is written as 101; libpcap reports it as DLT_RAW (12) and
    # sniffd decodes 12 and 101 alike.  Every other value is the same in a
    # file and in libpcap's answer.
    file_linktype = 101 if cap.linktype == 12 else cap.linktype
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, cap.snaplen, file_linktype))
        for fr in cap.frames:
            sec, usec = divmod(fr.ts_us, 1_000_000)
            f.write(struct.pack("<IIII", sec, usec, len(fr.data), fr.wirelen) + fr.data)
