"""TLS bytes written by hand for the TLS stage's tests, and TCP streams read back from pcaps.

Everything here follows the RFCs' structures directly (RFC 8446 section 4,
RFC 5246 section 7.4, RFC 6066, RFC 7301) and shares no code with
``sniffd.tls``, so a misreading in one cannot hide in the other.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import dpkt


def u8(n: int) -> bytes:
    return bytes([n])


def u16(n: int) -> bytes:
    return struct.pack("!H", n)


def u24(n: int) -> bytes:
    return struct.pack("!I", n)[1:]


def vec8(b: bytes) -> bytes:
    return u8(len(b)) + b


def vec16(b: bytes) -> bytes:
    return u16(len(b)) + b


def vec24(b: bytes) -> bytes:
    return u24(len(b)) + b


# --- extensions (type, body) ---------------------------------------------------------


def ext(etype: int, body: bytes = b"") -> tuple[int, bytes]:
    return (etype, body)


def ext_sni(name: str) -> tuple[int, bytes]:
    return (0, vec16(u8(0) + vec16(name.encode())))


def ext_alpn(protocols: list[bytes]) -> tuple[int, bytes]:
    return (16, vec16(b"".join(vec8(p) for p in protocols)))


def ext_supported_versions(versions: list[int]) -> tuple[int, bytes]:
    return (43, vec8(b"".join(u16(v) for v in versions)))


def ext_groups(groups: list[int]) -> tuple[int, bytes]:
    return (10, vec16(b"".join(u16(g) for g in groups)))


def ext_point_formats(formats: list[int]) -> tuple[int, bytes]:
    return (11, vec8(bytes(formats)))


def ext_sigalgs(algs: list[int]) -> tuple[int, bytes]:
    return (13, vec16(b"".join(u16(a) for a in algs)))


def ext_key_share(shares: list[tuple[int, int]]) -> tuple[int, bytes]:
    """KeyShareClientHello with (group, key length) entries; the keys are random bytes."""
    return (51, vec16(b"".join(u16(g) + vec16(os.urandom(n)) for g, n in shares)))


def extensions_block(exts: list[tuple[int, bytes]]) -> bytes:
    return vec16(b"".join(u16(t) + vec16(body) for t, body in exts))


# --- handshake messages -------------------------------------------------------------


def handshake(msg_type: int, body: bytes) -> bytes:
    return u8(msg_type) + vec24(body)


def client_hello(
    ciphers: list[int],
    exts: list[tuple[int, bytes]] | None,
    version: int = 0x0303,
    session_id: bytes = b"",
    compression: bytes = b"\x00",
) -> bytes:
    """A ClientHello handshake message (header included); ``exts`` None: no extensions block."""
    body = u16(version) + os.urandom(32) + vec8(session_id) + vec16(b"".join(u16(c) for c in ciphers)) + vec8(compression)
    if exts is not None:
        body += extensions_block(exts)
    return handshake(1, body)


HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


def server_hello(
    cipher: int,
    exts: list[tuple[int, bytes]] | None,
    version: int = 0x0303,
    session_id: bytes = b"",
    random: bytes | None = None,
) -> bytes:
    body = u16(version) + (random if random is not None else os.urandom(32)) + vec8(session_id) + u16(cipher) + u8(0)
    if exts is not None:
        body += extensions_block(exts)
    return handshake(2, body)


def certificate(ders: list[bytes]) -> bytes:
    """A TLS 1.2 Certificate message (RFC 5246 section 7.4.2)."""
    return handshake(11, vec24(b"".join(vec24(d) for d in ders)))


SERVER_HELLO_DONE = handshake(14, b"")


# --- records ------------------------------------------------------------------------


def record(ctype: int, payload: bytes, version: int = 0x0303) -> bytes:
    return u8(ctype) + u16(version) + vec16(payload)


def records(ctype: int, payload: bytes, size: int, version: int = 0x0303) -> bytes:
    """``payload`` cut into records of at most ``size`` bytes."""
    return b"".join(record(ctype, payload[i : i + size], version) for i in range(0, len(payload), size))


def alert(level: int, description: int) -> bytes:
    return record(21, bytes([level, description]))


CCS = record(20, b"\x01")


def app_data(n: int) -> bytes:
    return record(23, os.urandom(n))


def sslv2_client_hello(version: int, specs: list[int], challenge: bytes = b"\x11" * 16, session_id: bytes = b"") -> bytes:
    """An SSL 2.0-format ClientHello record (RFC 5246 appendix E.2), 3-byte cipher specs."""
    spec_bytes = b"".join(struct.pack("!I", s)[1:] for s in specs)
    body = u8(1) + u16(version) + u16(len(spec_bytes)) + u16(len(session_id)) + u16(len(challenge)) + spec_bytes + session_id + challenge
    return u16(0x8000 | len(body)) + body


# --- TCP streams from a pcap --------------------------------------------------------


@dataclass
class Connection:
    """One TCP connection's payload, in capture order: (from_client, bytes, ts)."""

    client_port: int
    server_port: int
    segments: list[tuple[bool, bytes, float]] = field(default_factory=list)

    def stream(self, from_client: bool) -> bytes:
        return b"".join(d for c, d, _ in self.segments if c == from_client)


def connections(pcap: Path, server_ports: set[int]) -> dict[int, Connection]:
    """Every TCP connection to ``server_ports`` in an Ethernet pcap (loopback on
    Linux), keyed by client port; retransmitted bytes are dropped by sequence
    number (loopback neither loses nor reorders)."""
    out: dict[int, Connection] = {}
    next_seq: dict[tuple[int, bool], int] = {}
    with open(pcap, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            if tcp.dport in server_ports:
                port, from_client = tcp.sport, True
            elif tcp.sport in server_ports:
                port, from_client = tcp.dport, False
            else:
                continue
            conn = out.setdefault(port, Connection(port, tcp.dport if from_client else tcp.sport))
            key = (port, from_client)
            syn = bool(tcp.flags & dpkt.tcp.TH_SYN)
            if syn:
                next_seq[key] = (tcp.seq + 1) & 0xFFFFFFFF
                continue
            data = bytes(tcp.data)
            if not data:
                continue
            expected = next_seq.get(key, tcp.seq)
            skip = (expected - tcp.seq) & 0xFFFFFFFF
            if skip >= len(data) and skip < 2**31:
                continue  # a retransmission of bytes already taken
            if skip < 2**31:
                data = data[skip:]
            next_seq[key] = (tcp.seq + skip + len(data)) & 0xFFFFFFFF
            conn.segments.append((from_client, data, float(ts)))
    return out
