"""Seeded, reproducible damage to a capture: reordering, duplicates, re-cut retransmissions, loss.

    .venv/bin/python bench/transform.py IN.pcap OUT.pcap --transforms shuffle,duplicate,resegment [--seed 1]
    .venv/bin/python bench/transform.py IN.pcap OUT.pcap --transforms loss [--loss-rate 0.01] [--seed 1]
    .venv/bin/python bench/transform.py IN.pcap OUT.pcap --drop-packets 1234      # exactly these input packets

Also writes a sidecar, ``OUT.pcap.json`` by default (``--sidecar``), saying
exactly what was done: every dropped packet (connection, direction, TCP seq
and length, its index in IN), every copy inserted, the parameters and seed.
bench/damage.py reads it with the clean original to know which transactions
a loss damaged.

Input: a classic pcap (microsecond or nanosecond, either byte order) of
Ethernet/IPv4/TCP, such as bench/make_corpus.py's corpus.  Frames that are
not IPv4/TCP, and IP fragments, are copied through untouched and take no part
in any transform.

The transforms, applied in this fixed order whatever order ``--transforms``
lists them in (so a loss is never undone by a copy of the lost packet):

``loss``
    Drops ``--loss-rate`` (1%) of the data packets (TCP payload > 0), a
    seeded sample of exactly round(rate x data packets) of them; or, with
    ``--drop-packets I,J``, exactly input packets I and J (0-based).
``shuffle``
    Within each connection, each direction's packets (all of them: SYN,
    SYN-ACK, pure ACKs, data, FIN, RST) are cut into consecutive windows whose
    size is drawn per window from 1..``--window-max`` (6), and each window is
    permuted at random.  The permuted packets are put back into the *time
    slots* that direction had: slot k keeps its position in the file and its
    timestamp and now holds another packet of the same window.  So the two
    directions interleave exactly as before, the file stays time-ordered,
    and a packet moves at most window-max - 1 places within its direction.
``duplicate``
    ``--dup-rate`` (5%) of the data packets are sent again, byte for byte,
    k packets later, k drawn from 1..``--dup-max-distance`` (12) and counted
    in *the same connection's* packets (both directions): with 8 connections
    interleaved, counting global positions would put most copies within one
    or two packets of their connection.  When the connection has fewer than
    k packets left, the copy goes after its last one.
``resegment``
    ``--reseg-rate`` (2%) of the data packets are sent again cut at other
    offsets: one retransmitted segment with the same bytes at the right
    sequence number, placed like a duplicate.  Half of them (seeded) cover a
    proper sub-range of the packet's payload; the other half start inside
    the packet and run on into the next segment of that direction (as a
    stack that re-packetises a retransmission does), no longer than the
    direction's largest segment; such a piece carries the next segment's
    header (its ACK: a retransmission is sent after what it carries) and is
    placed after whichever of the two came later.  IP total length, IP and TCP checksums are
    recomputed; FIN is kept only when the piece ends where the original did.

The sidecar's ``output_from_input`` gives, for every output packet, the input
packet it is (its index) or was cut from (``"rI"``), so the shuffle's
permutation is on record too.

``duplicate`` and ``resegment`` copy packets of the input (after loss and
shuffle), never each other's copies.  An inserted packet takes the timestamp
of the packet it follows.  Output timestamps never decrease: a packet stamped
earlier than the one before it (tcpdump on 2 CPUs does that now and then)
gets the previous timestamp, and the sidecar counts it
(``timestamps_clamped``).

Every random choice comes from ``random.Random`` seeded with the seed and the
transform's name, so one seed gives byte-identical output, and turning one
transform on or off does not change what another one chooses.

``--keep-connections N`` keeps only the first N connections (by their first
packet) before anything else: a smaller corpus with the same traffic.
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# pcap magic -> (byte order, timestamp fraction units per second).
_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
LINKTYPE_ETHERNET = 1

ETH_HEADER = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = 0x8100
IPPROTO_TCP = 6

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

C2S, S2C = 0, 1
DIRECTION_NAMES = ("client_to_server", "server_to_client")

TRANSFORMS = ("loss", "shuffle", "duplicate", "resegment")  # also the order they are applied in

# The damage model (issue 10): windows of 1 to 6 packets, 5% of data
# packets duplicated 1-12 packets later, 2% re-sent cut at other offsets,
# 1% of data packets dropped.
DEFAULT_WINDOW_MAX = 6
DEFAULT_DUP_RATE = 0.05
DEFAULT_DUP_MAX_DISTANCE = 12
DEFAULT_RESEG_RATE = 0.02
DEFAULT_LOSS_RATE = 0.01

_SEQ_MOD = 1 << 32


class TransformError(Exception):
    """The input cannot be transformed (not a classic pcap, not Ethernet, cut short)."""


# --- reading -------------------------------------------------------------------


@dataclass
class Pcap:
    """A classic pcap held in memory: its header fields and every frame."""

    order: str
    frac_per_s: int
    header: bytes  # the 24-byte file header, written back unchanged
    linktype: int
    packets: list[Packet]


@dataclass(eq=False)
class Packet:
    """One frame, decoded as far as this tool needs (IPv4/TCP fields are None for other frames)."""

    index: int  # position in the input file, 0-based
    sec: int
    frac: int
    frame: bytes
    ip_off: int | None = None  # start of the IPv4 header in frame
    tcp_off: int | None = None
    payload_off: int | None = None
    src: bytes = b""
    dst: bytes = b""
    sport: int = 0
    dport: int = 0
    seq: int = 0
    flags: int = 0
    payload_len: int = 0
    conn: int | None = None  # index into Capture.connections
    direction: int = C2S

    @property
    def is_tcp(self) -> bool:
        return self.tcp_off is not None

    @property
    def is_data(self) -> bool:
        return self.payload_len > 0

    @property
    def payload(self) -> bytes:
        return self.frame[self.payload_off : self.payload_off + self.payload_len]

    @property
    def ts(self) -> tuple[int, int]:
        return (self.sec, self.frac)


def read_pcap(path: str | Path) -> Pcap:
    """Every frame of a classic pcap; TransformError for pcapng, a non-Ethernet link or a cut file."""
    data = Path(path).read_bytes()
    if len(data) < 24 or data[:4] not in _MAGICS:
        raise TransformError(f"{path}: not a classic pcap file (magic {data[:4].hex()})")
    order, frac_per_s = _MAGICS[data[:4]]
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    if linktype != LINKTYPE_ETHERNET:
        raise TransformError(f"{path}: link type {linktype}, only Ethernet (1) is supported")
    rec = struct.Struct(order + "IIII")
    packets = []
    pos, end = 24, len(data)
    while pos < end:
        if pos + 16 > end:
            raise TransformError(f"{path}: cut short in the header of packet {len(packets)}")
        sec, frac, caplen, _wirelen = rec.unpack_from(data, pos)
        pos += 16
        if pos + caplen > end:
            raise TransformError(f"{path}: cut short inside packet {len(packets)}")
        p = Packet(len(packets), sec, frac, data[pos : pos + caplen])
        _decode(p)
        packets.append(p)
        pos += caplen
    return Pcap(order, frac_per_s, data[:24], linktype, packets)


def _decode(p: Packet) -> None:
    """Fill the IPv4/TCP fields of ``p`` when it is an unfragmented IPv4 TCP segment with whole headers."""
    f = p.frame
    off = ETH_HEADER
    if len(f) < off:
        return
    ethertype = struct.unpack_from("!H", f, 12)[0]
    if ethertype == ETHERTYPE_VLAN and len(f) >= 18:
        ethertype, off = struct.unpack_from("!H", f, 16)[0], 18
    if ethertype != ETHERTYPE_IPV4 or len(f) < off + 20:
        return
    ihl = (f[off] & 0x0F) * 4
    total_len = struct.unpack_from("!H", f, off + 2)[0]
    frag = struct.unpack_from("!H", f, off + 6)[0]
    if f[off] >> 4 != 4 or ihl < 20 or f[off + 9] != IPPROTO_TCP or frag & 0x3FFF or len(f) < off + total_len:
        return
    t = off + ihl
    if total_len < ihl + 20:
        return
    thl = (f[t + 12] >> 4) * 4
    if thl < 20 or ihl + thl > total_len:
        return
    p.ip_off, p.tcp_off, p.payload_off = off, t, t + thl
    p.payload_len = total_len - ihl - thl
    p.src, p.dst = f[off + 12 : off + 16], f[off + 16 : off + 20]
    p.sport, p.dport, p.seq = struct.unpack_from("!HHI", f, t)
    p.flags = f[t + 13]


# --- connections -------------------------------------------------------------------


@dataclass
class Connection:
    """One TCP connection: who is the client (the sender of the SYN) and its packets in file order."""

    index: int
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    packets: list[Packet] = field(default_factory=list)
    isn: list[int | None] = field(default_factory=lambda: [None, None])  # SYN seq per direction

    @property
    def key(self) -> tuple[str, int]:
        return (self.client_ip, self.client_port)


def ip_text(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def assign_connections(packets: list[Packet]) -> list[Connection]:
    """Group TCP packets into connections and set each packet's ``conn`` and ``direction``.

    The client is the side that sent the SYN without ACK; for a connection
    whose handshake is not in the file, the sender of its first packet
    (unless that is a SYN-ACK).  A SYN with another initial sequence number
    on a 4-tuple whose connection saw a FIN or RST starts a new connection
    (the client port was reused).
    """
    conns: list[Connection] = []
    by_tuple: dict[tuple, int] = {}
    closed: set[int] = set()
    for p in packets:
        if not p.is_tcp:
            continue
        a, b = (p.src, p.sport), (p.dst, p.dport)
        key = (a, b) if a < b else (b, a)
        ci = by_tuple.get(key)
        syn_only = p.flags & (SYN | ACK) == SYN
        if ci is not None and syn_only and ci in closed:
            c = conns[ci]
            if c.isn[C2S] != p.seq:
                ci = None
        if ci is None:
            client_is_src = not (p.flags & SYN and p.flags & ACK)
            cs, ss = (a, b) if client_is_src else (b, a)
            c = Connection(len(conns), ip_text(cs[0]), cs[1], ip_text(ss[0]), ss[1])
            conns.append(c)
            ci = by_tuple[key] = c.index
            closed.discard(ci)
        c = conns[ci]
        p.conn = ci
        p.direction = C2S if (ip_text(p.src), p.sport) == (c.client_ip, c.client_port) else S2C
        if p.flags & SYN and c.isn[p.direction] is None:
            c.isn[p.direction] = p.seq
        if p.flags & (FIN | RST):
            closed.add(ci)
        c.packets.append(p)
    return conns


# --- crafting -------------------------------------------------------------------


def inet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum of 16-bit words, complemented."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def craft_segment(p: Packet, seq: int, payload: bytes, *, keep_fin: bool) -> bytes:
    """A copy of ``p``'s frame carrying ``payload`` at ``seq``: IP length and both checksums recomputed."""
    f = p.frame
    ip_off, tcp_off, payload_off = p.ip_off, p.tcp_off, p.payload_off
    ihl = tcp_off - ip_off
    ip = bytearray(f[ip_off:tcp_off])
    tcp = bytearray(f[tcp_off:payload_off])
    struct.pack_into("!H", ip, 2, ihl + len(tcp) + len(payload))
    struct.pack_into("!H", ip, 10, 0)
    struct.pack_into("!H", ip, 10, inet_checksum(bytes(ip)))
    struct.pack_into("!I", tcp, 4, seq % _SEQ_MOD)
    if not keep_fin:
        tcp[13] &= ~FIN & 0xFF
    struct.pack_into("!H", tcp, 16, 0)
    pseudo = bytes(ip[12:20]) + struct.pack("!BBH", 0, IPPROTO_TCP, len(tcp) + len(payload))
    struct.pack_into("!H", tcp, 16, inet_checksum(pseudo + bytes(tcp) + payload))
    return f[:ip_off] + bytes(ip) + bytes(tcp) + payload


# --- the transforms ---------------------------------------------------------------


@dataclass
class Params:
    seed: int = 1
    loss_rate: float = DEFAULT_LOSS_RATE
    drop_packets: tuple[int, ...] | None = None  # explicit input indices instead of loss_rate
    window_max: int = DEFAULT_WINDOW_MAX
    dup_rate: float = DEFAULT_DUP_RATE
    dup_max_distance: int = DEFAULT_DUP_MAX_DISTANCE
    reseg_rate: float = DEFAULT_RESEG_RATE
    keep_connections: int | None = None


def _rng(seed: int, name: str) -> random.Random:
    # A str seed is hashed with SHA-512 by random.seed: stable across runs and versions.
    return random.Random(f"sniffd-bench-transform/{seed}/{name}")


def _conn_info(c: Connection) -> dict:
    return {"client_ip": c.client_ip, "client_port": c.client_port, "server_ip": c.server_ip, "server_port": c.server_port}


def _packet_info(p: Packet, conns: list[Connection], digits: int) -> dict:
    return {"index": p.index, **_conn_info(conns[p.conn]), "direction": DIRECTION_NAMES[p.direction],
            "seq": p.seq, "len": p.payload_len, "flags": p.flags, "ts": f"{p.sec}.{p.frac:0{digits}d}"}


def parse_transforms(text: str) -> list[str]:
    names = [t.strip() for t in text.replace("+", ",").split(",") if t.strip()]
    unknown = [t for t in names if t not in TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown transform(s) {unknown}; known: {', '.join(TRANSFORMS)}")
    return [t for t in TRANSFORMS if t in names]


def transform(pcap: Pcap, transforms: list[str], params: Params) -> tuple[list[tuple[tuple[int, int], bytes]], dict]:
    """Apply ``transforms`` (any subset of TRANSFORMS, applied in TRANSFORMS order) to ``pcap``.

    Returns the output frames as ((sec, frac), frame) in file order, and the
    sidecar dict (see the module docstring).
    """
    transforms = [t for t in TRANSFORMS if t in transforms]
    if params.drop_packets is not None and "loss" not in transforms:
        transforms = ["loss"] + transforms
    packets = list(pcap.packets)
    conns = assign_connections(packets)
    digits = len(str(pcap.frac_per_s)) - 1  # 6 (microseconds) or 9 (nanoseconds)
    side: dict = {
        "tool": "bench/transform.py",
        "seed": params.seed,
        "transforms": transforms,
        "order": list(TRANSFORMS),
        "params": {"loss_rate": params.loss_rate, "drop_packets": list(params.drop_packets) if params.drop_packets is not None else None,
                   "window_max": params.window_max, "dup_rate": params.dup_rate, "dup_max_distance": params.dup_max_distance,
                   "reseg_rate": params.reseg_rate, "keep_connections": params.keep_connections},
        "input_packets": len(packets),
        "input_connections": len(conns),
    }

    if params.keep_connections is not None:
        kept = set(range(min(params.keep_connections, len(conns))))
        packets = [p for p in packets if p.conn in kept]
        side["kept_connections"] = [[conns[i].client_ip, conns[i].client_port] for i in sorted(kept)]

    # loss
    if "loss" in transforms:
        data = [p for p in packets if p.is_data]
        if params.drop_packets is not None:
            by_index = {p.index: p for p in packets}
            bad = [i for i in params.drop_packets if i not in by_index or not by_index[i].is_data]
            if bad:
                raise TransformError(f"--drop-packets: {bad} are not data packets of the input")
            dropped = {by_index[i] for i in params.drop_packets}
        else:
            dropped = set(_rng(params.seed, "loss").sample(data, round(params.loss_rate * len(data))))
        packets = [p for p in packets if p not in dropped]
        side["loss"] = {"data_packets": len(data), "dropped": [_packet_info(p, conns, digits) for p in sorted(dropped, key=lambda p: p.index)]}

    slot_ts = [p.ts for p in packets]

    # shuffle
    if "shuffle" in transforms:
        rng = _rng(params.seed, "shuffle")
        positions: dict[tuple[int, int], list[int]] = {}
        for i, p in enumerate(packets):
            if p.conn is not None:
                positions.setdefault((p.conn, p.direction), []).append(i)
        windows = moved = 0
        out = list(packets)
        for key in sorted(positions):
            pos = positions[key]
            i = 0
            while i < len(pos):
                w = rng.randint(1, params.window_max)
                slots = pos[i : i + w]
                chosen = [packets[s] for s in slots]
                rng.shuffle(chosen)
                for s, p in zip(slots, chosen):
                    out[s] = p
                    moved += p is not packets[s]
                windows += 1
                i += w
        packets = out
        side["shuffle"] = {"windows": windows, "packets_moved": moved}

    # duplicate and resegment: copies inserted after a later packet of the same connection
    inserts: dict[int, list[tuple[bytes, int | str]]] = {}  # position -> [(frame, source)]
    conn_positions: dict[int, list[int]] = {}
    for i, p in enumerate(packets):
        if p.conn is not None:
            conn_positions.setdefault(p.conn, []).append(i)
    where = {id(p): i for i, p in enumerate(packets)}

    def place(p: Packet, rng: random.Random) -> tuple[int, int, int]:
        """Position to insert a copy of ``p`` after: (position, k asked, k given)."""
        pos = conn_positions[p.conn]
        j = bisect.bisect_left(pos, where[id(p)])
        k = rng.randint(1, params.dup_max_distance)
        j2 = min(j + k, len(pos) - 1)
        return pos[j2], k, j2 - j

    if "duplicate" in transforms:
        rng = _rng(params.seed, "duplicate")
        data = [p for p in packets if p.is_data]
        chosen = sorted(rng.sample(data, round(params.dup_rate * len(data))), key=lambda p: where[id(p)])
        copies = []
        for p in chosen:
            after, k, given = place(p, rng)
            inserts.setdefault(after, []).append((p.frame, p.index))
            copies.append({**_packet_info(p, conns, digits), "packets_later": given, "packets_later_drawn": k})
        side["duplicate"] = {"data_packets": len(data), "copies": copies}

    if "resegment" in transforms:
        rng = _rng(params.seed, "resegment")
        # Per direction, its data packets in sequence order, to run a piece on into the next segment.
        by_dir: dict[tuple[int, int], list[Packet]] = {}
        for p in packets:
            if p.is_data:
                by_dir.setdefault((p.conn, p.direction), []).append(p)
        successor: dict[int, Packet] = {}
        largest: dict[tuple[int, int], int] = {}
        for key, ps in by_dir.items():
            base = conns[key[0]].isn[key[1]]
            base = ps[0].seq if base is None else base
            ps = sorted(ps, key=lambda p: (p.seq - base) % _SEQ_MOD)
            largest[key] = max(p.payload_len for p in ps)
            for a, b in zip(ps, ps[1:]):
                if (a.seq + a.payload_len) % _SEQ_MOD == b.seq:
                    successor.setdefault(id(a), b)
        data = [p for p in packets if p.payload_len >= 2]
        chosen = sorted(rng.sample(data, round(params.reseg_rate * len(data))), key=lambda p: where[id(p)])
        copies = []
        for p in chosen:
            n = p.payload_len
            nxt = successor.get(id(p))
            if rng.random() < 0.5 and nxt is not None:
                # From inside p into the next segment, no longer than the direction's largest segment.
                a = rng.randint(1, n - 1)
                room = largest[(p.conn, p.direction)] - (n - a)
                b = rng.randint(1, max(1, min(nxt.payload_len, room)))
                payload = p.payload[a:] + nxt.payload[:b]
                seq, keep_fin, kind = p.seq + a, b == nxt.payload_len and bool(nxt.flags & FIN), "spanning"
            else:
                while True:
                    a = rng.randint(0, n - 1)
                    b = rng.randint(a + 1, n)
                    if (a, b) != (0, n):
                        break
                payload = p.payload[a:b]
                seq, keep_fin, kind = p.seq + a, b == n and bool(p.flags & FIN), "within"
            # A retransmission is sent after everything it carries: a
            # spanning piece takes the next segment's header (its ACK, as
            # a stack re-packetising later would send at least) and goes
            # after whichever of the two came later.
            src = nxt if kind == "spanning" and where[id(nxt)] > where[id(p)] else p
            frame = craft_segment(nxt if kind == "spanning" else p, seq, payload, keep_fin=keep_fin)
            after, k, given = place(src, rng)
            inserts.setdefault(after, []).append((frame, f"r{p.index}"))
            copies.append({**_packet_info(p, conns, digits), "kind": kind, "piece_seq": seq % _SEQ_MOD, "piece_len": len(payload),
                           "packets_later": given, "packets_later_drawn": k})
        side["resegment"] = {"candidates": len(data), "copies": copies}

    # Materialise: slot timestamps, copies after their packet, never going back in time.
    frames: list[tuple[tuple[int, int], bytes]] = []
    sources: list[int | str] = []
    last = (0, 0)
    clamped = 0
    for i, p in enumerate(packets):
        ts = slot_ts[i]
        if ts < last:
            ts = last
            clamped += 1
        frames.append((ts, p.frame))
        sources.append(p.index)
        last = ts
        for frame, source in inserts.get(i, ()):
            frames.append((ts, frame))
            sources.append(source)
    side["timestamps_clamped"] = clamped
    side["output_packets"] = len(frames)
    # Where each output packet came from: its input index (a duplicate repeats
    # its original's), or "rI" for a piece re-cut from input packet I.
    side["output_from_input"] = sources
    return frames, side


def write_pcap(path: str | Path, pcap: Pcap, frames: list[tuple[tuple[int, int], bytes]]) -> None:
    rec = struct.Struct(pcap.order + "IIII")
    with open(path, "wb", buffering=1 << 20) as f:
        f.write(pcap.header)
        for (sec, frac), frame in frames:
            f.write(rec.pack(sec, frac, len(frame), len(frame)))
            f.write(frame)


def transform_file(src: str | Path, dst: str | Path, transforms: list[str], params: Params,
                   sidecar: str | Path | None = None) -> dict:
    """Read ``src``, transform, write ``dst`` and the sidecar (default ``dst`` + ``.json``); return the sidecar."""
    t0 = time.monotonic()
    pcap = read_pcap(src)
    frames, side = transform(pcap, transforms, params)
    write_pcap(dst, pcap, frames)
    side = {"input": str(src), "output": str(dst), **side, "made_in_s": round(time.monotonic() - t0, 2)}
    Path(sidecar or default_sidecar(dst)).write_text(dumps_sidecar(side))
    return side


def dumps_sidecar(side: dict) -> str:
    """Indented JSON, but the long per-packet index list on one line."""
    sources = side.get("output_from_input")
    text = json.dumps({k: v for k, v in side.items() if k != "output_from_input"}, indent=1)
    if sources is None:
        return text + "\n"
    return text[:-2] + ',\n "output_from_input": ' + json.dumps(sources, separators=(",", ":")) + "\n}\n"


def default_sidecar(dst: str | Path) -> Path:
    return Path(f"{dst}.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("--transforms", default="", help=f"comma-separated, any of {','.join(TRANSFORMS)} (applied in that order)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sidecar", type=Path, default=None, help="default OUTPUT.json")
    ap.add_argument("--loss-rate", type=float, default=DEFAULT_LOSS_RATE)
    ap.add_argument("--drop-packets", default=None, help="comma-separated input packet indices (0-based) to drop instead of --loss-rate")
    ap.add_argument("--window-max", type=int, default=DEFAULT_WINDOW_MAX)
    ap.add_argument("--dup-rate", type=float, default=DEFAULT_DUP_RATE)
    ap.add_argument("--dup-max-distance", type=int, default=DEFAULT_DUP_MAX_DISTANCE)
    ap.add_argument("--reseg-rate", type=float, default=DEFAULT_RESEG_RATE)
    ap.add_argument("--keep-connections", type=int, default=None, help="keep only the first N connections")
    args = ap.parse_args(argv)
    try:
        transforms = parse_transforms(args.transforms)
    except ValueError as e:
        ap.error(str(e))
    drop = None if args.drop_packets is None else tuple(int(x) for x in args.drop_packets.split(",") if x.strip())
    if not transforms and drop is None:
        ap.error("nothing to do: give --transforms and/or --drop-packets")
    if args.window_max < 1 or args.dup_max_distance < 1:
        ap.error("--window-max and --dup-max-distance must be at least 1")
    params = Params(seed=args.seed, loss_rate=args.loss_rate, drop_packets=drop, window_max=args.window_max, dup_rate=args.dup_rate,
                    dup_max_distance=args.dup_max_distance, reseg_rate=args.reseg_rate, keep_connections=args.keep_connections)
    try:
        side = transform_file(args.input, args.output, transforms, params, args.sidecar)
    except (TransformError, OSError) as e:
        print(f"transform: error: {e}", file=sys.stderr)
        return 1
    summary = {k: side[k] for k in ("transforms", "seed", "input_packets", "output_packets", "timestamps_clamped")}
    for name, key in (("loss", "dropped"), ("duplicate", "copies"), ("resegment", "copies")):
        if name in side:
            summary[f"{name}_{key}"] = len(side[name][key])
    if "shuffle" in side:
        summary["shuffle_moved"] = side["shuffle"]["packets_moved"]
    print(f"transform: wrote {args.output} and {args.sidecar or default_sidecar(args.output)}: {json.dumps(summary)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
