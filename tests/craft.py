"""Craft capture files with dpkt, for tests that run sniffd on known traffic.

Importable helpers, no tests.  The layers follow the wire:

    TcpConversation -> Segment          TCP, with seq/ack kept right for you; a Segment's
                                        ttl, urgent pointer (URG) and a wrong checksum
                                        are set with dataclasses.replace
    ip_packet(segment)  -> bytes        IPv4 or IPv6 (+ extension headers)
    ipv4_fragments / ipv6_fragments     one IP packet -> N fragment packets
    mpls, pppoe_session, gre, erspan2,  encapsulations: the header(s) of one layer
    erspan3, udp, vxlan, geneve,        around its payload (an IP packet, an
    teredo                              Ethernet frame or another layer)
    link_frame(l3, linktype)            Ethernet (+802.1Q / QinQ), SLL, SLL2, raw, NULL,
                                        PPP (plain, HDLC-like, PPPoE, with direction),
                                        Cisco HDLC, MPLS, NFLOG
    write_pcap / write_pcapng           Frame(ts, bytes[, wirelen]) -> file
    capture(path, [(ts, item), ...])    all of the above in one call (``wrap``: any
                                        function of the IP packet giving the frame)

Time is a plain float clock chosen by the test: every packet is given as
``(ts, item)``.  Float seconds are resolved to the microsecond when written
(a float near 1.8e9 s has ~0.24 us resolution, so finer digits are noise); pass
a ``decimal.Decimal`` to write an exact nanosecond timestamp.

Files are always written little-endian, whatever the host, so that a capture
generated twice from the same inputs is byte-for-byte identical on any machine
(dpkt's own writers use the host's byte order).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import dpkt

# --- link types, as written in the pcap / pcapng file header -------------------------
# https://www.tcpdump.org/linktypes.html.  LINKTYPE_RAW is 101 in files; libpcap
# reports it to the program as DLT_RAW (12 on Linux), so readers must accept both.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_PPP_HDLC = 50
LINKTYPE_PPP_ETHER = 51
LINKTYPE_RAW = 101
LINKTYPE_C_HDLC = 104
LINKTYPE_LINUX_SLL = 113
LINKTYPE_PPP_WITH_DIR = 204
LINKTYPE_C_HDLC_WITH_DIR = 205
LINKTYPE_MPLS = 219
LINKTYPE_NFLOG = 239
LINKTYPE_LINUX_SLL2 = 276

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_IPV6 = 0x86DD
TPID_8021Q = 0x8100  # customer VLAN tag (IEEE 802.1Q)
TPID_8021AD = 0x88A8  # service VLAN tag, the outer tag of QinQ (IEEE 802.1ad)
ETH_TYPE_MPLS = 0x8847
ETH_TYPE_PPPOE = 0x8864  # PPPoE session stage (RFC 2516)
ETH_TYPE_TEB = 0x6558  # transparent Ethernet bridging (an Ethernet frame in GRE, Geneve)
ETH_TYPE_ERSPAN2 = 0x88BE
ETH_TYPE_ERSPAN3 = 0x22EB

# BSD loopback puts the address family in the capturing host's byte order.
# AF_INET is 2 everywhere; AF_INET6 differs by OS (24 NetBSD/OpenBSD, 28 FreeBSD,
# 30 macOS), and libpcap readers accept all three.
AF_INET = 2
AF_INET6_BSD = 24

IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_GRE = 47
IPPROTO_HOPOPTS = 0
IPPROTO_FRAGMENT = 44
IPPROTO_DSTOPTS = 60
IPPROTO_ROUTING = 43

FIN = dpkt.tcp.TH_FIN
SYN = dpkt.tcp.TH_SYN
RST = dpkt.tcp.TH_RST
PSH = dpkt.tcp.TH_PUSH
ACK = dpkt.tcp.TH_ACK
URG = dpkt.tcp.TH_URG

CLIENT_MAC = bytes.fromhex("020000000001")
SERVER_MAC = bytes.fromhex("020000000002")

SEQ_MOD = 2**32


def _seq(n: int) -> int:
    return n % SEQ_MOD


def _ip_bytes(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def _is_v6(ip: str) -> bool:
    return ipaddress.ip_address(ip).version == 6


def _checksum(data: bytes) -> int:
    return dpkt.in_cksum(data)


# --- TCP -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One TCP segment, addresses included (needed for the checksum).

    The fields after ``window`` are for decoys: ``ttl`` is the TTL / hop limit
    of the IP packet ``ip_packet`` puts it in, ``urgent`` the urgent pointer
    (set ``URG`` in ``flags`` too), ``bad_checksum`` writes a wrong TCP
    checksum (the right one with its lowest bit flipped: never the other
    ones'-complement zero, which would still be right).
    """

    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes = b""
    window: int = 65535
    ttl: int = 64
    urgent: int = 0
    bad_checksum: bool = False

    @property
    def next_seq(self) -> int:
        """Sequence number just past this segment (SYN and FIN count as one)."""
        n = len(self.payload) + bool(self.flags & SYN) + bool(self.flags & FIN)
        return _seq(self.seq + n)

    def sub(self, start: int, stop: int | None = None, payload: bytes | None = None) -> Segment:
        """A segment carrying ``payload[start:stop]`` at the matching sequence number.

        For retransmissions and overlaps.  Give ``payload`` (same length as the
        slice) to make a copy of that range with *different* bytes.
        """
        stop = len(self.payload) if stop is None else stop
        assert 0 <= start <= stop <= len(self.payload), (start, stop)
        piece = self.payload[start:stop]
        if payload is not None:
            assert len(payload) == len(piece), "a conflicting copy must cover the same range"
            piece = payload
        flags = self.flags & ~(SYN | FIN)
        if stop == len(self.payload):
            flags |= self.flags & FIN
        return replace(self, seq=_seq(self.seq + start), payload=piece, flags=flags)

    def with_payload(self, payload: bytes) -> Segment:
        return replace(self, payload=payload)

    def tcp_bytes(self) -> bytes:
        tcp = dpkt.tcp.TCP(
            sport=self.sport,
            dport=self.dport,
            seq=self.seq,
            ack=self.ack if self.flags & ACK else 0,
            flags=self.flags,
            win=self.window,
            urp=self.urgent,
            data=self.payload,
        )
        tcp.sum = 0
        raw = bytes(tcp)
        if _is_v6(self.src):
            pseudo = struct.pack(">16s16sI3xB", _ip_bytes(self.src), _ip_bytes(self.dst), len(raw), IPPROTO_TCP)
        else:
            pseudo = struct.pack(">4s4sxBH", _ip_bytes(self.src), _ip_bytes(self.dst), IPPROTO_TCP, len(raw))
        csum = _checksum(pseudo + raw) ^ (1 if self.bad_checksum else 0)
        return raw[:16] + struct.pack(">H", csum) + raw[18:]


class TcpConversation:
    """Segments of one TCP connection, with sequence and ack numbers kept consistent.

    Every method returns segments and advances the sender's sequence number, as
    if the bytes were really sent; whether a segment reaches the capture is up to
    the test (drop it from the list to make a gap, list it twice to duplicate it,
    reorder the list, or add ``seg.sub(...)`` copies for overlaps).  Acks always
    acknowledge everything the peer has sent so far.

    Sequence numbers wrap at 2**32: use an ISN like ``2**32 - 10`` to cross it.
    """

    def __init__(
        self,
        client: tuple[str, int] = ("10.0.0.1", 40000),
        server: tuple[str, int] = ("10.0.0.2", 80),
        client_isn: int = 1_000_000,
        server_isn: int = 3_000_000,
        window: int = 65535,
    ) -> None:
        assert _is_v6(client[0]) == _is_v6(server[0]), "both ends must be the same IP version"
        self.client = client
        self.server = server
        self.window = window
        self._next = {"client": _seq(client_isn), "server": _seq(server_isn)}

    # -- internals
    def _segment(self, side: str, flags: int, payload: bytes = b"") -> Segment:
        peer = "server" if side == "client" else "client"
        src, sport = self.client if side == "client" else self.server
        dst, dport = self.server if side == "client" else self.client
        seg = Segment(src, sport, dst, dport, self._next[side], self._next[peer], flags, payload, self.window)
        self._next[side] = seg.next_seq
        return seg

    def _data(self, side: str, data: bytes, sizes: Sequence[int] | None) -> list[Segment]:
        chunks = split_bytes(data, sizes)
        segs = []
        for i, chunk in enumerate(chunks):
            flags = ACK | (PSH if i == len(chunks) - 1 else 0)
            segs.append(self._segment(side, flags, chunk))
        return segs

    # -- handshake
    def syn(self, payload: bytes = b"") -> Segment:
        """The client's SYN; with ``payload``, data the server takes (TCP Fast
        Open, RFC 7413): the SYN-ACK acknowledges it.  For data the server
        does not take, ``replace(conv.syn(), payload=...)``."""
        seg = self._segment("client", SYN, payload)
        return replace(seg, ack=0)

    def syn_ack(self) -> Segment:
        return self._segment("server", SYN | ACK)

    def handshake(self) -> list[Segment]:
        """SYN, SYN-ACK, ACK."""
        return [self.syn(), self.syn_ack(), self.client_ack()]

    # -- data and acks
    def client_data(self, data: bytes, sizes: Sequence[int] | None = None) -> list[Segment]:
        """Client -> server data, cut into segments of ``sizes`` bytes (rest in a last one)."""
        return self._data("client", data, sizes)

    def server_data(self, data: bytes, sizes: Sequence[int] | None = None) -> list[Segment]:
        return self._data("server", data, sizes)

    def client_ack(self) -> Segment:
        return self._segment("client", ACK)

    def server_ack(self) -> Segment:
        return self._segment("server", ACK)

    # -- teardown
    def client_fin(self) -> Segment:
        return self._segment("client", FIN | ACK)

    def server_fin(self) -> Segment:
        return self._segment("server", FIN | ACK)

    def client_rst(self) -> Segment:
        return self._segment("client", RST | ACK)

    def server_rst(self) -> Segment:
        return self._segment("server", RST | ACK)

    def close(self) -> list[Segment]:
        """Client FIN, server FIN-ACK, client ACK."""
        return [self.client_fin(), self.server_fin(), self.client_ack()]


def split_bytes(data: bytes, sizes: Sequence[int] | None) -> list[bytes]:
    """``data`` cut into pieces of ``sizes`` bytes; what is left over is one last piece."""
    if not sizes:
        return [data]
    pieces, pos = [], 0
    for size in sizes:
        assert size > 0 and pos + size <= len(data), (sizes, len(data))
        pieces.append(data[pos : pos + size])
        pos += size
    if pos < len(data):
        pieces.append(data[pos:])
    return pieces


def reorder(items: Sequence, order: Sequence[int]) -> list:
    """``items`` in the given order (a permutation of their indexes)."""
    assert sorted(order) == list(range(len(items))), order
    return [items[i] for i in order]


# --- IP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtHeader:
    """An IPv6 extension header: its protocol number and its bytes without next-header."""

    proto: int
    body: bytes  # everything after the next-header byte; total length is a multiple of 8


def hop_by_hop_options() -> ExtHeader:
    """A Hop-by-Hop Options header holding only padding (RFC 8200 section 4.3)."""
    return ExtHeader(IPPROTO_HOPOPTS, b"\x00" + b"\x01\x04\x00\x00\x00\x00")  # len 0, PadN(4)


def destination_options() -> ExtHeader:
    """A Destination Options header holding only padding (RFC 8200 section 4.6)."""
    return ExtHeader(IPPROTO_DSTOPTS, b"\x00" + b"\x01\x04\x00\x00\x00\x00")


def ipv4(
    src: str,
    dst: str,
    payload: bytes,
    *,
    proto: int = IPPROTO_TCP,
    ip_id: int = 0,
    ttl: int = 64,
    dont_fragment: bool = True,
    more_fragments: bool = False,
    offset: int = 0,
    total_length: int | None = None,
) -> bytes:
    """An IPv4 packet.  ``offset`` is in bytes (a multiple of 8); ``total_length``
    lets a test lie about the length in the header."""
    assert offset % 8 == 0
    ip = dpkt.ip.IP(src=_ip_bytes(src), dst=_ip_bytes(dst), p=proto, id=ip_id, ttl=ttl)
    ip.df = int(dont_fragment)
    ip.mf = int(more_fragments)
    ip.offset = offset // 8  # the header counts 8-byte units
    ip.len = 20 + len(payload) if total_length is None else total_length
    ip.sum = 0
    ip.sum = _checksum(ip.pack_hdr())
    return ip.pack_hdr() + payload


def ipv6(
    src: str,
    dst: str,
    payload: bytes,
    *,
    nxt: int = IPPROTO_TCP,
    ext_headers: Sequence[ExtHeader] = (),
    hop_limit: int = 64,
) -> bytes:
    """An IPv6 packet; ``ext_headers`` are chained in order before ``payload``."""
    chain = b""
    protos = [h.proto for h in ext_headers] + [nxt]
    for header, following in zip(ext_headers, protos[1:]):
        chain += bytes([following]) + header.body
        assert len(chain) % 8 == 0
    ip6 = dpkt.ip6.IP6(src=_ip_bytes(src), dst=_ip_bytes(dst), nxt=protos[0], hlim=hop_limit)
    ip6.plen = len(chain) + len(payload)
    return ip6.pack_hdr() + chain + payload


def ip_packet(seg: Segment, *, ip_id: int = 0, ext_headers: Sequence[ExtHeader] = ()) -> bytes:
    """``seg`` inside an IPv4 or IPv6 packet, chosen by its addresses."""
    if _is_v6(seg.src):
        return ipv6(seg.src, seg.dst, seg.tcp_bytes(), ext_headers=ext_headers, hop_limit=seg.ttl)
    assert not ext_headers, "extension headers are IPv6 only"
    return ipv4(seg.src, seg.dst, seg.tcp_bytes(), ip_id=ip_id, ttl=seg.ttl)


def _fragment_sizes(length: int, count: int) -> list[int]:
    """``count`` sizes, multiples of 8 but the last, adding up to ``length``."""
    size = -(-length // count)
    size += -size % 8
    sizes = []
    while length > 0:
        sizes.append(min(size, length))
        length -= sizes[-1]
    assert len(sizes) == count, f"cannot cut {length} bytes into {count} fragments"
    return sizes


def ipv4_fragments(packet: bytes, count: int) -> list[bytes]:
    """An unfragmented IPv4 packet cut into ``count`` fragments, in order."""
    ip = dpkt.ip.IP(packet)
    src, dst = str(ipaddress.ip_address(ip.src)), str(ipaddress.ip_address(ip.dst))
    payload = packet[ip.hl * 4 : ip.len]
    frags, pos = [], 0
    sizes = _fragment_sizes(len(payload), count)
    for i, size in enumerate(sizes):
        frags.append(
            ipv4(
                src,
                dst,
                payload[pos : pos + size],
                proto=ip.p,
                ip_id=ip.id,
                ttl=ip.ttl,
                dont_fragment=False,
                more_fragments=i < len(sizes) - 1,
                offset=pos,
            )
        )
        pos += size
    return frags


def ipv6_fragments(packet: bytes, count: int, ident: int = 0x1234ABCD) -> list[bytes]:
    """An IPv6 packet cut into ``count`` fragments with Fragment headers (RFC 8200 s4.5).

    Hop-by-Hop and Routing headers stay in every fragment (the unfragmentable part);
    the rest, from the first other header on, is what is fragmented.
    """
    nxt = packet[6]
    pos = 40
    last_nxt_at = 6  # where the "next header" byte that will point at Fragment lives
    while nxt in (IPPROTO_HOPOPTS, IPPROTO_ROUTING):
        last_nxt_at = pos
        nxt, hdr_len = packet[pos], (packet[pos + 1] + 1) * 8
        pos += hdr_len
    unfrag = bytearray(packet[:pos])
    unfrag[last_nxt_at] = IPPROTO_FRAGMENT
    fragmentable = packet[pos:]
    frags, off = [], 0
    sizes = _fragment_sizes(len(fragmentable), count)
    for i, size in enumerate(sizes):
        more = i < len(sizes) - 1
        frag_hdr = struct.pack(">BBHI", nxt, 0, off | int(more), ident)
        body = bytes(unfrag[40:]) + frag_hdr + fragmentable[off : off + size]
        head = bytearray(unfrag[:40])
        head[4:6] = struct.pack(">H", len(body))
        frags.append(bytes(head) + body)
        off += size
    return frags


# --- encapsulations --------------------------------------------------------------------
# Each builder puts one layer's header(s) around ``payload``; nest them from the
# inside out.  Outer IP headers are craft.ipv4 / craft.ipv6 with the protocol given.


def mpls(payload: bytes, labels: Sequence[int], *, ttl: int = 64, control_word: bool = False) -> bytes:
    """An MPLS label stack (RFC 3032), outer label first, bottom-of-stack set on
    the last; ``control_word``: the 4-byte pseudowire control word (RFC 4385, all
    zero) before ``payload`` (an Ethernet frame, for a pseudowire)."""
    out = b""
    for i, label in enumerate(labels):
        out += struct.pack(">I", (label << 12) | ((i == len(labels) - 1) << 8) | ttl)
    return out + (bytes(4) if control_word else b"") + payload


def pppoe_session(l3: bytes, session: int, *, code: int = 0, version_type: int = 0x11) -> bytes:
    """A PPPoE session header (RFC 2516 section 4) and PPP protocol field around an IP packet."""
    ppp_payload = struct.pack(">H", ppp_protocol(l3)) + l3
    return struct.pack(">BBHH", version_type, code, session, len(ppp_payload)) + ppp_payload


def gre(payload: bytes, proto: int, *, key: int | None = None, seq: int | None = None, checksum: bool = False,
        version: int = 0) -> bytes:
    """A GRE header (RFC 2784, 2890): C, K, S flags as asked, then the payload
    (protocol type ``proto``, an ethertype)."""
    flags = (0x8000 if checksum else 0) | (0x2000 if key is not None else 0) | (0x1000 if seq is not None else 0)
    head = struct.pack(">HH", flags | version, proto)
    rest = (struct.pack(">I", key) if key is not None else b"") + (struct.pack(">I", seq) if seq is not None else b"")
    if checksum:
        csum = _checksum(head + b"\0\0\0\0" + rest + payload)
        return head + struct.pack(">HH", csum, 0) + rest + payload
    return head + rest + payload


def erspan2(frame: bytes, session: int, *, seq: int = 1, vlan: int = 0, index: int = 0) -> bytes:
    """ERSPAN type II around a mirrored Ethernet frame, with its GRE header
    (sequence number present, protocol 0x88BE): the IP payload of the outer packet."""
    header = struct.pack(">HHI", (1 << 12) | vlan, session & 0x3FF, index & 0xFFFFF)
    return gre(header + frame, ETH_TYPE_ERSPAN2, seq=seq)


def erspan3(frame: bytes, session: int, *, seq: int = 1, subheader: bool = False, frame_type: int = 0,
            timestamp: int = 0) -> bytes:
    """ERSPAN type III (12-byte header, version 2; ``subheader``: the O flag and
    the 8-byte platform-specific subheader), with its GRE header (protocol 0x22EB)."""
    word = (frame_type << 10) | (1 if subheader else 0)  # P, FT, HW ID, D, Gra, O
    header = struct.pack(">HHIHH", 2 << 12, session & 0x3FF, timestamp, 0, word)
    if subheader:
        header += bytes(8)
    return gre(header + frame, ETH_TYPE_ERSPAN3, seq=seq)


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP datagram with its checksum (RFC 768; IPv6 pseudo-header, RFC 8200 section 8.1)."""
    length = 8 + len(payload)
    raw = struct.pack(">HHHH", sport, dport, length, 0) + payload
    if _is_v6(src):
        pseudo = struct.pack(">16s16sI3xB", _ip_bytes(src), _ip_bytes(dst), length, IPPROTO_UDP)
    else:
        pseudo = struct.pack(">4s4sxBH", _ip_bytes(src), _ip_bytes(dst), IPPROTO_UDP, length)
    csum = _checksum(pseudo + raw) or 0xFFFF
    return raw[:6] + struct.pack(">H", csum) + raw[8:]


def vxlan(frame: bytes, vni: int, *, valid: bool = True) -> bytes:
    """A VXLAN header (RFC 7348 section 5: I flag unless not ``valid``, VNI) before an Ethernet frame."""
    return struct.pack(">BxxxI", 0x08 if valid else 0, vni << 8) + frame


def geneve(payload: bytes, vni: int, *, proto: int = ETH_TYPE_TEB, options: bytes = b"", version: int = 0) -> bytes:
    """A Geneve header (RFC 8926 section 3.4) with ``options`` (a multiple of 4 bytes)."""
    assert len(options) % 4 == 0
    return struct.pack(">BBHI", (version << 6) | (len(options) // 4), 0, proto, vni << 8) + options + payload


def teredo(ipv6_packet: bytes, *, origin: tuple[int, str] | None = None, auth: bool = False) -> bytes:
    """A Teredo UDP payload (RFC 4380 section 5.1.1): optionally an authentication
    header (no client id, no value, a nonce, confirmation 0), optionally an origin
    indication (port and IPv4 address, both obfuscated), then the IPv6 packet."""
    out = b""
    if auth:
        out += struct.pack(">HBB", 1, 0, 0) + b"\x11" * 8 + b"\x00"
    if origin is not None:
        port, addr = origin
        out += struct.pack(">HH4s", 0, port ^ 0xFFFF, bytes(b ^ 0xFF for b in _ip_bytes(addr)))
    return out + ipv6_packet


def ip_src(l3: bytes) -> str:
    """The source address of an IP packet, as text (to choose a tunnel's direction)."""
    return str(ipaddress.ip_address(l3[8:24] if l3[0] >> 4 == 6 else l3[12:16]))


# --- link layer ------------------------------------------------------------------------


def _ethertype(l3: bytes) -> int:
    return ETH_TYPE_IPV6 if l3[0] >> 4 == 6 else ETH_TYPE_IPV4


def dot1q(vid: int) -> list[tuple[int, int]]:
    """Tags for one 802.1Q VLAN."""
    return [(TPID_8021Q, vid)]


def qinq(outer_vid: int, inner_vid: int) -> list[tuple[int, int]]:
    """Tags for QinQ: an 802.1ad service tag outside an 802.1Q customer tag."""
    return [(TPID_8021AD, outer_vid), (TPID_8021Q, inner_vid)]


def ethernet(l3: bytes, *, tags: Sequence[tuple[int, int]] = (), src=CLIENT_MAC, dst=SERVER_MAC,
             etype: int | None = None) -> bytes:
    """An Ethernet II frame; ``tags`` are (TPID, VLAN id) pairs, outermost first;
    ``etype`` the payload's ethertype (default: IPv4 or IPv6, by ``l3``'s version)."""
    header = dst + src
    for tpid, vid in tags:
        header += struct.pack(">HH", tpid, vid & 0x0FFF)
    return header + struct.pack(">H", _ethertype(l3) if etype is None else etype) + l3


def linux_sll(l3: bytes, *, packet_type: int = 0) -> bytes:
    """Linux cooked capture v1 header (16 bytes, LINKTYPE_LINUX_SLL)."""
    sll = dpkt.sll.SLL(type=packet_type, hrd=1, hlen=6, hdr=CLIENT_MAC + b"\0\0", ethtype=_ethertype(l3))
    return sll.pack_hdr() + l3


def linux_sll2(l3: bytes, *, packet_type: int = 0, ifindex: int = 2) -> bytes:
    """Linux cooked capture v2 header (20 bytes, LINKTYPE_LINUX_SLL2)."""
    sll2 = dpkt.sll2.SLL2(
        ethtype=_ethertype(l3), intindex=ifindex, hrd=1, type=packet_type, hlen=6, hdr=CLIENT_MAC + b"\0\0"
    )
    return sll2.pack_hdr() + l3


def bsd_null(l3: bytes, *, family: int | None = None) -> bytes:
    """BSD loopback (LINKTYPE_NULL): 4-byte address family in host order.

    The files here are little-endian, so the family is written little-endian too,
    as a little-endian host would.
    """
    if family is None:
        family = AF_INET6_BSD if l3[0] >> 4 == 6 else AF_INET
    return struct.pack("<I", family) + l3


def ppp_protocol(l3: bytes) -> int:
    """PPP's protocol number for an IP packet: 0x0021 IPv4, 0x0057 IPv6 (RFC 1332, 5072)."""
    return 0x0057 if l3[0] >> 4 == 6 else 0x0021


def ppp(l3: bytes, *, address_control: bool = True, compressed: bool = False) -> bytes:
    """A PPP frame (LINKTYPE_PPP): 0xFF 0x03 unless ``address_control`` is off,
    then the protocol, in one byte when ``compressed`` (RFC 1661 section 6.5)."""
    proto = ppp_protocol(l3)
    head = b"\xff\x03" if address_control else b""
    return head + (bytes([proto]) if compressed else struct.pack(">H", proto)) + l3


def cisco_hdlc(l3: bytes, *, etype: int | None = None, address: int = 0x0F) -> bytes:
    """Cisco HDLC (LINKTYPE_C_HDLC): address, control 0, ethertype."""
    return bytes([address, 0]) + struct.pack(">H", _ethertype(l3) if etype is None else etype) + l3


def nflog(l3: bytes, *, family: int | None = None, prefix: bytes = b"sniffd\0") -> bytes:
    """Linux NFLOG (LINKTYPE_NFLOG): family, version 0, resource id (big-endian),
    then attributes (length and type in the capturing host's byte order: here
    little-endian, as the files are), each padded to 4 bytes: a packet header
    (type 1), a prefix (type 10) and the packet (type 9)."""
    if family is None:
        family = 10 if l3[0] >> 4 == 6 else 2

    def tlv(kind: int, value: bytes) -> bytes:
        out = struct.pack("<HH", 4 + len(value), kind) + value
        return out + bytes(-len(out) % 4)

    hw = struct.pack(">HBx", _ethertype(l3), 3)  # hw protocol, hook (local out)
    return struct.pack(">BBH", family, 0, 42) + tlv(1, hw) + tlv(10, prefix) + tlv(9, l3)


def link_frame(l3: bytes, linktype: int = LINKTYPE_ETHERNET, *, tags: Sequence[tuple[int, int]] = ()) -> bytes:
    """``l3`` (an IP packet) framed for ``linktype``."""
    if linktype == LINKTYPE_ETHERNET:
        return ethernet(l3, tags=tags)
    assert not tags, "VLAN tags are Ethernet only"
    if linktype == LINKTYPE_LINUX_SLL:
        return linux_sll(l3)
    if linktype == LINKTYPE_LINUX_SLL2:
        return linux_sll2(l3)
    if linktype == LINKTYPE_RAW:
        return l3
    if linktype == LINKTYPE_NULL:
        return bsd_null(l3)
    if linktype == LINKTYPE_PPP:
        return ppp(l3)
    if linktype == LINKTYPE_PPP_HDLC:
        return ppp(l3)
    if linktype == LINKTYPE_PPP_ETHER:
        return pppoe_session(l3, 0x1234)
    if linktype == LINKTYPE_C_HDLC:
        return cisco_hdlc(l3)
    if linktype == LINKTYPE_PPP_WITH_DIR:
        return b"\x01" + ppp(l3)
    if linktype == LINKTYPE_C_HDLC_WITH_DIR:
        return b"\x00" + cisco_hdlc(l3)
    if linktype == LINKTYPE_MPLS:
        return mpls(l3, [16])
    if linktype == LINKTYPE_NFLOG:
        return nflog(l3)
    raise ValueError(f"no framing for linktype {linktype}")


# --- files -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    ts: float | Decimal
    data: bytes
    wirelen: int | None = None  # length on the wire; None means len(data)


def _ts_parts(ts: float | Decimal, digits: int) -> tuple[int, int]:
    """(seconds, fraction in 10**-digits units).  Floats are taken to the microsecond."""
    if isinstance(ts, Decimal):
        units = int((ts * 10**digits).to_integral_value())
    else:
        units = round(ts * 1_000_000) * 10 ** (digits - 6)
    return divmod(units, 10**digits)


def write_pcap(
    path: Path | str,
    frames: Iterable[Frame],
    *,
    linktype: int = LINKTYPE_ETHERNET,
    snaplen: int = 65535,
    nano: bool = False,
) -> list[int]:
    """Write a classic pcap file (little-endian), microsecond or nanosecond.

    A frame longer than ``snaplen`` is cut to it, keeping its wire length, as a
    capture with that snaplen would.  Returns the file offset of each record header,
    so a test can cut the file inside a given record (see ``truncate``).
    """
    magic = dpkt.pcap.TCPDUMP_MAGIC_NANO if nano else dpkt.pcap.TCPDUMP_MAGIC
    digits = 9 if nano else 6
    offsets = []
    with open(path, "wb") as f:
        f.write(bytes(dpkt.pcap.LEFileHdr(magic=magic, snaplen=snaplen, linktype=linktype)))
        for frame in frames:
            wirelen = len(frame.data) if frame.wirelen is None else frame.wirelen
            data = frame.data[:snaplen]
            sec, frac = _ts_parts(frame.ts, digits)
            offsets.append(f.tell())
            f.write(bytes(dpkt.pcap.LEPktHdr(tv_sec=sec, tv_usec=frac, caplen=len(data), len=wirelen)))
            f.write(data)
    return offsets


def write_pcapng(
    path: Path | str,
    frames: Iterable[Frame],
    *,
    linktype: int = LINKTYPE_ETHERNET,
    snaplen: int = 65535,
) -> None:
    """Write a pcapng file: one section, one interface, Enhanced Packet Blocks, microseconds."""
    with open(path, "wb") as f:
        f.write(bytes(dpkt.pcapng.SectionHeaderBlockLE()))
        f.write(bytes(dpkt.pcapng.InterfaceDescriptionBlockLE(snaplen=snaplen, linktype=linktype)))
        for frame in frames:
            wirelen = len(frame.data) if frame.wirelen is None else frame.wirelen
            data = frame.data[:snaplen]
            sec, usec = _ts_parts(frame.ts, 6)
            ts = sec * 1_000_000 + usec
            epb = dpkt.pcapng.EnhancedPacketBlockLE(
                ts_high=ts >> 32, ts_low=ts & 0xFFFFFFFF, caplen=len(data), pkt_len=wirelen, pkt_data=data
            )
            f.write(bytes(epb))


def truncate(path: Path | str, size: int) -> None:
    """Cut the file at ``size`` bytes (e.g. mid-record, as a capture killed while writing)."""
    with open(path, "r+b") as f:
        f.truncate(size)


# --- all in one ------------------------------------------------------------------------

Item = Segment | bytes  # a TCP segment, or an already built IP packet (e.g. a fragment)


def frames(
    packets: Iterable[tuple[float | Decimal, Item]],
    *,
    linktype: int = LINKTYPE_ETHERNET,
    tags: Sequence[tuple[int, int]] = (),
    ext_headers: Sequence[ExtHeader] = (),
    first_ip_id: int = 1,
    wrap=None,
) -> list[Frame]:
    """Frames for ``(ts, segment or IP packet)`` pairs; IPv4 ids count up from
    ``first_ip_id``.  ``wrap``: a function from the IP packet to the whole frame
    (tunnels and odd framings), instead of ``link_frame``."""
    out = []
    for n, (ts, item) in enumerate(packets):
        l3 = item if isinstance(item, bytes) else ip_packet(item, ip_id=first_ip_id + n, ext_headers=ext_headers)
        out.append(Frame(ts, link_frame(l3, linktype, tags=tags) if wrap is None else wrap(l3)))
    return out


def capture(
    path: Path | str,
    packets: Iterable[tuple[float | Decimal, Item]],
    *,
    linktype: int = LINKTYPE_ETHERNET,
    tags: Sequence[tuple[int, int]] = (),
    ext_headers: Sequence[ExtHeader] = (),
    fmt: str = "pcap",
    nano: bool = False,
    snaplen: int = 65535,
    wrap=None,
) -> list[int]:
    """Write ``(ts, segment or IP packet)`` pairs as a capture file.

    ``fmt`` is "pcap" or "pcapng".  ``wrap``: see ``frames``.  Returns the record
    offsets for pcap (see write_pcap).
    """
    fr = frames(packets, linktype=linktype, tags=tags, ext_headers=ext_headers, wrap=wrap)
    if fmt == "pcapng":
        assert not nano, "pcapng files here use the default microsecond resolution"
        write_pcapng(path, fr, linktype=linktype, snaplen=snaplen)
        return []
    assert fmt == "pcap", fmt
    return write_pcap(path, fr, linktype=linktype, snaplen=snaplen, nano=nano)
