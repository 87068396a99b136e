"""Decode stage (pure, stateless): one captured frame in, one value out.

``decode_frame(linktype, frame, verify=False)`` returns one of

* a ``Segment`` for a TCP segment, a tuple of twelve fields:

  ``(src, dst, sport, dport, seq, ack, flags, payload, lost, ttl, csum, ctx)``

  - ``src``/``dst``: packed addresses (4 or 16 bytes) of the innermost IP
    header, the one carrying TCP;
  - ``sport`` .. ``flags``: the TCP header's fields; ``payload``: the TCP
    payload captured; ``lost``: how many payload bytes the capture did not
    keep (snaplen);
  - ``ttl``: that IP header's TTL (IPv4) or hop limit (IPv6);
  - ``csum``: the TCP checksum, checked only when ``verify`` is true: 1
    valid, 0 invalid, -1 not checked (``verify`` false; the payload was cut
    by the snaplen; or the segment's length is unknowable: an IP length of 0,
    as TCP segmentation offload and IPv6 jumbograms write it, or an IPv6
    Routing header with segments left, whose final destination the
    pseudo-header takes (RFC 8200 section 8.1));
  - ``ctx``: the encapsulation context, hashable.  ``None`` for a plain frame
    (no VLAN tag, no tunnel: the common case), else ``(vlans, tunnels)``:
    ``vlans`` the VLAN ids (ints) of every 802.1Q / 802.1ad / QinQ tag met on
    the way in, outer first, those of Ethernet frames inside tunnels included
    (VLAN id 0, IEEE 802.1Q's null VLAN id, marks a tag that only carries a
    priority: not listed); ``tunnels`` one ``(type, src, dst, key)`` per
    tunnel, outer first, ``src``/``dst`` the packed outer IP addresses (None
    where the layer has none), ``key`` what tells one tunnel from another:

    ==========  ===================================  ==========  =====================
    type        what                                 src, dst    key
    ==========  ===================================  ==========  =====================
    ``mpls``    an MPLS label stack (RFC 3032)       None        the labels (a tuple
                                                                 of ints), outer first
    ``pppoe``   a PPPoE session (RFC 2516)           None        the session id
    ``gre``     GRE version 0 (RFC 2784, 2890)       outer IP    the key, or None
    ``erspan``  ERSPAN type I, II or III, over GRE   outer IP    the session id, None
                                                                 for type I
    ``vxlan``   VXLAN, UDP port 4789 (RFC 7348)      outer IP    the VNI, None when
                                                                 the I flag is clear
    ``geneve``  Geneve, UDP port 6081 (RFC 8926)     outer IP    the VNI
    ``teredo``  Teredo, IPv6 in UDP (RFC 4380)       outer IPv4  None
    ``ipip``    IPv4 or IPv6 in IPv4 or IPv6         outer IP    None
                (protocols 4 and 41)
    ==========  ===================================  ==========  =====================

    Connections are keyed by ``ctx_key(ctx)``: the VLAN ids and each
    tunnel's type and key, which both directions share.

* a ``Fragment`` for a piece of a fragmented IP datagram (the ``fragments``
  stage puts datagrams back together and calls ``decode_transport``, which
  decodes, and checks the checksum of, the whole datagram);
* a ``str``: the anomaly name of a frame that cannot be decoded (dropped);
* ``None``: a well-formed frame that is not TCP (ARP, UDP, ...): ignored.

Link types: Ethernet, Linux cooked capture v1 and v2, raw IP, BSD NULL and
OpenBSD loopback, PPP (with or without address and control, protocol
compressed or not), PPP in HDLC-like framing, PPPoE, Cisco HDLC, both with a
direction byte, MPLS, and Linux NFLOG (``SUPPORTED_LINKTYPES``).  Inside
them: VLAN tags, MPLS, PPPoE, GRE (IPv4, IPv6, Ethernet, MPLS, ERSPAN),
VXLAN, Geneve, Teredo and IP in IP, nested in any order, down to TCP.  At
most ``MAX_LAYERS`` encapsulation headers (VLAN tags, MPLS labels, tunnels)
are followed: a frame with more is ``tunnel_too_deep``, so no crafted
packet makes the decoder recurse without end.  A tunnel header that cannot
be right (an unknown version where only one exists) is
``bad_tunnel_header``; one cut short is ``truncated_frame``; a payload whose
kind cannot be told is non-TCP.

The common frame has three implementations held to the same values:
sniffd/_batch.c (``decode_batch``, Ethernet or SLL, IPv4 without options,
whole unfragmented TCP), its Python reference ``decode_batch_py``, and
``decode_frame``, whose first lines take the same frame with one struct
unpack.  Every other frame is decoded by the struct code below, one function
per header.  ``decode_frame_dpkt`` decodes the outer link and IPv4 headers
with dpkt instead (Ethernet's first two VLAN tags, SLL, SLL2) and the
rest with the same code: the tests hold it and ``decode_frame`` to the same
values, so the two readings of those headers check each other.  dpkt has no
reader for most of the encapsulations (VXLAN, Geneve, Teredo, ERSPAN, NFLOG,
Cisco HDLC) and follows at most two VLAN tags, so it is not the decoder.

The TCP checksum is not checked unless asked: capture hosts with checksum
offload record wrong ones for the packets they send, and a sniffer must log
those too.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# dpkt is imported on first use (decode_frame_dpkt, the tests' second
# reading): ~35 ms of start-up that sniffd itself never needs.
dpkt = None

# Link types (pcap LINKTYPE_* values as libpcap reports them via datalink()).
DLT_NULL = 0
DLT_EN10MB = 1
DLT_PPP = 9
DLT_RAW = 12  # what libpcap maps LINKTYPE_RAW (101) to on Linux
DLT_RAW_BSD = 14
DLT_PPP_SERIAL = 50  # PPP in HDLC-like framing (RFC 1662), or Cisco HDLC
DLT_PPP_ETHER = 51  # PPPoE session header, no Ethernet
LINKTYPE_RAW = 101
DLT_C_HDLC = 104
DLT_LOOP = 108
DLT_LINUX_SLL = 113
DLT_PPP_WITH_DIR = 204
DLT_C_HDLC_WITH_DIR = 205
DLT_MPLS = 219
DLT_IPV4 = 228
DLT_IPV6 = 229
DLT_NFLOG = 239
DLT_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES = {
    DLT_NULL: "BSD loopback (NULL)",
    DLT_EN10MB: "Ethernet",
    DLT_PPP: "PPP",
    DLT_RAW: "raw IP",
    DLT_RAW_BSD: "raw IP",
    DLT_PPP_SERIAL: "PPP in HDLC-like framing",
    DLT_PPP_ETHER: "PPPoE",
    LINKTYPE_RAW: "raw IP",
    DLT_C_HDLC: "Cisco HDLC",
    DLT_LOOP: "OpenBSD loopback",
    DLT_LINUX_SLL: "Linux cooked capture v1",
    DLT_PPP_WITH_DIR: "PPP with direction",
    DLT_C_HDLC_WITH_DIR: "Cisco HDLC with direction",
    DLT_MPLS: "MPLS",
    DLT_IPV4: "raw IPv4",
    DLT_IPV6: "raw IPv6",
    DLT_NFLOG: "Linux NFLOG",
    DLT_LINUX_SLL2: "Linux cooked capture v2",
}

ETH_IP4 = 0x0800
ETH_IP6 = 0x86DD
# 802.1Q, 802.1ad, and the two pre-standard QinQ TPIDs switches still send.
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
ETH_MPLS = 0x8847
ETH_MPLS_MC = 0x8848
ETH_PPPOE = 0x8864  # session stage; discovery (0x8863) carries no IP
ETH_TEB = 0x6558  # transparent Ethernet bridging: an Ethernet frame follows
ETH_ERSPAN2 = 0x88BE  # ERSPAN type II, or type I without a GRE sequence number
ETH_ERSPAN3 = 0x22EB

PROTO_IPIP = 4
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6 = 41
PROTO_GRE = 47
PROTO_FRAG6 = 44
PROTO_ROUTING = 43
# IPv6 extension headers sniffd skips to reach TCP (RFC 8200 section 4).
IP6_EXT = {0, 43, 60, 135, 139, 140}
IP6_AH = 51
IP6_NONXT = 59

UDP_TEREDO = 3544  # RFC 4380 section 2.18; relays use any port (see _teredo)
UDP_VXLAN = 4789  # RFC 7348 section 5 (IANA), destination port
UDP_GENEVE = 6081  # RFC 8926 section 3.3, destination port

# PPP protocol numbers (RFC 1332, 5072, 3032 section 4.3).
PPP_IP4 = 0x0021
PPP_IP6 = 0x0057
PPP_MPLS = 0x0281
PPP_MPLS_MC = 0x0283

# Encapsulation headers followed around one packet: each VLAN tag, each MPLS
# label and each tunnel counts one.  Real traffic needs a handful (QinQ, a
# VPN label stack of three, a tunnel or two); 16 leaves room and bounds the
# recursion a crafted packet of nested tunnels could ask for.
MAX_LAYERS = 16

# BSD NULL: address family in host byte order of the capturing machine.
AF_INET = 2
AF_INET6 = {10, 24, 28, 30}  # Linux, NetBSD/OpenBSD, FreeBSD, macOS
# NFLOG's family byte is a Linux NFPROTO_* value.
NFPROTO_IPV4 = 2
NFPROTO_IPV6 = 10
NFULA_PAYLOAD = 9

TH_FIN, TH_SYN, TH_RST, TH_PSH, TH_ACK = 0x01, 0x02, 0x04, 0x08, 0x10


class Segment(NamedTuple):
    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    lost: int
    ttl: int
    csum: int
    ctx: tuple | None


class Fragment(NamedTuple):
    """One IP fragment.  ``offset`` in bytes; ``key`` identifies the datagram
    (its encapsulation context included: fragments meet only when they came
    through the same VLANs and tunnels)."""

    key: tuple
    version: int
    src: bytes
    dst: bytes
    proto: int
    offset: int
    more: bool
    data: bytes
    # For IPv4 the whole datagram length is known from the last fragment only;
    # ``lost`` counts bytes of this fragment the snaplen cut.
    lost: int
    ttl: int
    ctx: tuple | None
    # Whether the TCP checksum of the whole datagram is to be checked
    # (decode_frame's ``verify``, and the IP header lets it be known).
    verify: bool


class UnknownLinkType(ValueError):
    """Raised once per capture, before any frame: configuration-level error."""


def check_linktype(linktype: int) -> None:
    if linktype not in SUPPORTED_LINKTYPES:
        numbers: dict[str, list[int]] = {}
        for number, name in sorted(SUPPORTED_LINKTYPES.items()):
            numbers.setdefault(name, []).append(number)
        names = ", ".join(f"{name} ({', '.join(map(str, n))})" for name, n in numbers.items())
        raise UnknownLinkType(f"unsupported link type {linktype}; sniffd reads {names}")


_u16 = struct.Struct("!H").unpack_from
_u32 = struct.Struct("!I").unpack_from
_HH = struct.Struct("!HH").unpack_from
_HHH = struct.Struct("!HHH").unpack_from
# IPv4 header without options + TCP header up to the flags: one unpack for
# the common frame.
_IP4TCP = struct.Struct("!BBHHHBBH4s4sHHIIBB").unpack_from
# NamedTuple's generated __new__ is a Python function (~250 ns); building
# through tuple.__new__ gives the same Segment in less than half the time.
_tuple_new = tuple.__new__
_IP4 = struct.Struct("!BBHHHBBH4s4s").unpack_from
_tcp = struct.Struct("!HHIIBB").unpack_from
_IP6 = struct.Struct("!IHBB16s16s").unpack_from


# ----------------------------------------------------------- the context

def _layers(ctx) -> int:
    """Encapsulation headers in ``ctx`` (see MAX_LAYERS)."""
    if ctx is None:
        return 0
    vlans, tunnels = ctx
    return len(vlans) + sum(len(key) if kind == "mpls" else 1 for kind, _s, _d, key in tunnels)


def _push(ctx, tunnel: tuple, size: int = 1):
    """``ctx`` with one more tunnel inside, or ``tunnel_too_deep``."""
    if ctx is None:
        return ((), (tunnel,)) if size <= MAX_LAYERS else "tunnel_too_deep"
    if _layers(ctx) + size > MAX_LAYERS:
        return "tunnel_too_deep"
    return (ctx[0], ctx[1] + (tunnel,))


def ctx_key(ctx):
    """The part of a segment's ``ctx`` that keys its connection, the same in
    both directions: the VLAN ids and each tunnel's type and key, not the
    outer addresses (they are swapped in the other direction, and Teredo or
    6to4 relays make them differ outright) nor MPLS labels (assigned hop by
    hop, for each direction on its own: RFC 3031 section 3.3)."""
    if ctx is None:
        return None
    return (ctx[0], tuple((kind, None if kind == "mpls" else key) for kind, _s, _d, key in ctx[1]))


def ctx_reversed(ctx):
    """``ctx`` as the other direction's packets would carry it: the outer
    addresses of every tunnel swapped, but ERSPAN's (the mirroring switch
    sends both directions to its collector)."""
    if ctx is None:
        return None
    return (ctx[0], tuple((kind, src, dst, key) if kind == "erspan" else (kind, dst, src, key)
                          for kind, src, dst, key in ctx[1]))


# --------------------------------------------------------------- transport

def _tcp_csum(src: bytes, dst: bytes, seg: bytes) -> int:
    """1 if the TCP segment ``seg`` (header and payload, whole) sums right
    with its pseudo-header (RFC 9293 section 3.1, RFC 8200 section 8.1), else 0.

    The ones' complement sum of 16-bit words is their sum modulo 0xFFFF
    (2**16 = 1 modulo 0xFFFF, so a big-endian integer of any length is
    congruent to the sum of its 16-bit words, and the end-around carry is
    that same reduction); the segment counts right when the sum is 0xFFFF,
    i.e. 0 modulo 0xFFFF (a sum of +0 cannot happen: the protocol word
    is 6).  An odd length is padded with a zero byte: a shift."""
    n = len(seg)
    s = int.from_bytes(seg, "big")
    if n & 1:
        s <<= 8
    total = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + PROTO_TCP + n + s
    return 0 if total % 0xFFFF else 1


def decode_tcp(src: bytes, dst: bytes, buf: bytes, lost: int, ttl: int = 0, ctx=None, verify: bool = False):
    """TCP header + payload from an IP payload (``buf``) of which ``lost``
    trailing bytes were not captured; ``verify``: check the checksum."""
    if len(buf) < 20:
        return "truncated_frame"
    sport, dport, seq, ack, off, flags = _tcp(buf, 0)
    hl = (off >> 4) * 4
    if hl < 20:
        return "bad_tcp_header"
    if hl > len(buf):
        return "truncated_frame" if lost else "bad_tcp_header"
    csum = _tcp_csum(src, dst, buf) if verify and not lost else -1
    return _tuple_new(Segment, (src, dst, sport, dport, seq, ack, flags, buf[hl:], lost, ttl, csum, ctx))


def decode_transport(version: int, src: bytes, dst: bytes, proto: int, buf: bytes, lost: int = 0,
                     ttl: int = 0, ctx=None, verify: bool = False):
    """The upper layer of a whole (possibly reassembled) IP datagram, whose
    IP header had TTL / hop limit ``ttl`` and came through ``ctx``."""
    if version == 6:
        # Extension headers after a Fragment header travel in the payload.
        while proto in IP6_EXT or proto == IP6_AH:
            if len(buf) < 8:
                return "truncated_frame"
            nxt, hlen = buf[0], buf[1]
            size = (hlen + 2) * 4 if proto == IP6_AH else (hlen + 1) * 8
            if size > len(buf):
                return "truncated_frame"
            if proto == PROTO_ROUTING and buf[3]:
                verify = False
            proto, buf = nxt, buf[size:]
    if proto == PROTO_TCP:
        return decode_tcp(src, dst, buf, lost, ttl, ctx, verify and not lost)
    return _tunnel(proto, src, dst, buf, ctx, verify)


# --------------------------------------------------------------------- IP

def _ip4(buf: bytes, off: int, ctx=None, verify: bool = False):
    """IPv4 at ``buf[off:]``: TCP segment, fragment, anomaly or None."""
    n = len(buf) - off
    if n < 20:
        return "truncated_frame"
    vhl, _tos, total, ident, frag, ttl, proto, _sum, src, dst = _IP4(buf, off)
    if vhl >> 4 != 4:
        return "bad_ip_header"
    hl = (vhl & 0xF) * 4
    if hl < 20:
        return "bad_ip_header"
    if hl > n:
        return "truncated_frame"
    lost = 0
    if total == 0:
        # TCP segmentation offload: the sending host's capture shows one
        # large segment with total length 0; the frame length is the truth
        # (and the checksum, which the card will write, cannot be checked).
        end = len(buf)
        known = False
    elif total < hl:
        return "bad_ip_header"
    else:
        known = True
        end = off + total
        if end > len(buf):
            lost = end - len(buf)
            end = len(buf)
    mf = frag & 0x2000
    foff = (frag & 0x1FFF) * 8
    if mf or foff:
        return Fragment((4, src, dst, proto, ident, ctx), 4, src, dst, proto, foff, bool(mf), buf[off + hl : end],
                        lost, ttl, ctx, verify and known)
    if proto == PROTO_TCP:
        return decode_tcp(src, dst, buf[off + hl : end], lost, ttl, ctx, verify and known)
    return _tunnel(proto, src, dst, buf[off + hl : end], ctx, verify)


def _ip6(buf: bytes, off: int, ctx=None, verify: bool = False):
    n = len(buf) - off
    if n < 40:
        return "truncated_frame"
    vtcfl, plen, nxt, hlim, src, dst = _IP6(buf, off)
    if vtcfl >> 28 != 6:
        return "bad_ip_header"
    lost = 0
    known = True
    if plen == 0:
        end = len(buf)  # jumbogram or TSO: trust the frame
        known = False
    else:
        end = off + 40 + plen
        if end > len(buf):
            lost = end - len(buf)
            end = len(buf)
    if nxt == PROTO_TCP:
        return decode_tcp(src, dst, buf[off + 40 : end], lost, hlim, ctx, verify and known)
    return _ip6_ext(buf[off + 40 : end], src, dst, nxt, lost, hlim, ctx, verify, known)


def _ip6_ext(buf: bytes, src: bytes, dst: bytes, nxt: int, lost: int, hlim: int, ctx, verify: bool, known: bool):
    """Walk IPv6 extension headers up to TCP, a Fragment header or a tunnel."""
    while True:
        if nxt == PROTO_TCP:
            return decode_tcp(src, dst, buf, lost, hlim, ctx, verify and known)
        if nxt == PROTO_FRAG6:
            if len(buf) < 8:
                return "truncated_frame"
            proto = buf[0]
            fo = _u16(buf, 2)[0]
            ident = _u32(buf, 4)[0]
            return Fragment((6, src, dst, ident, ctx), 6, src, dst, proto, fo & 0xFFF8, bool(fo & 1), buf[8:], lost,
                            hlim, ctx, verify and known)
        if nxt in IP6_EXT or nxt == IP6_AH:
            if len(buf) < 8:
                return "truncated_frame"
            size = (buf[1] + 2) * 4 if nxt == IP6_AH else (buf[1] + 1) * 8
            if size > len(buf):
                return "truncated_frame"
            if nxt == PROTO_ROUTING and buf[3]:
                known = False  # segments left: the final destination is elsewhere
            nxt, buf = buf[0], buf[size:]
            continue
        return _tunnel(nxt, src, dst, buf, ctx, verify)


def _ip_any(buf: bytes, off: int, ctx, verify: bool):
    """An IP packet of either version, told by its first nibble."""
    if len(buf) <= off:
        return "truncated_frame"
    v = buf[off] >> 4
    if v == 4:
        return _ip4(buf, off, ctx, verify)
    if v == 6:
        return _ip6(buf, off, ctx, verify)
    return "bad_ip_header"


# --------------------------------------------------------------- tunnels

def _tunnel(proto: int, src: bytes, dst: bytes, buf: bytes, ctx, verify: bool):
    """What an IP packet from ``src`` to ``dst`` carries, TCP aside: a
    tunnel decoded down to its TCP, else None (not TCP)."""
    if proto == PROTO_UDP:
        return _udp(src, dst, buf, ctx, verify)
    if proto == PROTO_GRE:
        return _gre(src, dst, buf, ctx, verify)
    if proto == PROTO_IPIP or proto == PROTO_IPV6:
        ctx = _push(ctx, ("ipip", src, dst, None))
        if ctx.__class__ is str:
            return ctx
        return _ip4(buf, 0, ctx, verify) if proto == PROTO_IPIP else _ip6(buf, 0, ctx, verify)
    return None


def _udp(src: bytes, dst: bytes, buf: bytes, ctx, verify: bool):
    if len(buf) < 8:
        return "truncated_frame"
    sport, dport, ulen = _HHH(buf, 0)
    if dport == UDP_VXLAN:
        return _vxlan(src, dst, buf, 8, ctx, verify)
    if dport == UDP_GENEVE:
        return _geneve(src, dst, buf, 8, ctx, verify)
    return _teredo(src, dst, buf, ulen, ctx, verify, sport == UDP_TEREDO or dport == UDP_TEREDO)


def _vxlan(src: bytes, dst: bytes, buf: bytes, off: int, ctx, verify: bool):
    """RFC 7348 section 5: flags (I = 0x08: the VNI is valid), 3 reserved
    bytes, the 24-bit VNI, 1 reserved byte; an Ethernet frame follows."""
    if len(buf) < off + 8:
        return "truncated_frame"
    vni = _u32(buf, off + 4)[0] >> 8 if buf[off] & 0x08 else None
    ctx = _push(ctx, ("vxlan", src, dst, vni))
    if ctx.__class__ is str:
        return ctx
    return _ethernet(buf, off + 8, ctx, verify)


def _geneve(src: bytes, dst: bytes, buf: bytes, off: int, ctx, verify: bool):
    """RFC 8926 section 3.4: version (2 bits, 0), options length (6 bits, in
    4-byte words), O and C flags, protocol type (an ethertype), 24-bit VNI,
    then the options."""
    if len(buf) < off + 8:
        return "truncated_frame"
    first = buf[off]
    if first >> 6:
        return "bad_tunnel_header"  # "an unknown version MUST be dropped" (section 3.4)
    start = off + 8 + (first & 0x3F) * 4
    if len(buf) < start:
        return "truncated_frame"
    ptype = _u16(buf, off + 2)[0]
    ctx = _push(ctx, ("geneve", src, dst, _u32(buf, off + 4)[0] >> 8))
    if ctx.__class__ is str:
        return ctx
    if ptype == ETH_TEB:
        return _ethernet(buf, start, ctx, verify)
    return _ether_payload(ptype, buf, start, ctx, verify)


def _teredo(src: bytes, dst: bytes, buf: bytes, ulen: int, ctx, verify: bool, on_port: bool):
    """Teredo (RFC 4380 section 5.1.1): an IPv6 packet in UDP, after an
    optional authentication header (type 0x0001) and an optional origin
    indication (type 0x0000), in that order.

    Port 3544 is the Teredo server's; relays and clients talk to each other
    from any port, so, as Zeek does, a UDP datagram on any port is Teredo
    when it has exactly that shape: the headers, an IPv6 header, and the
    IPv6 payload length accounting for the rest of the datagram as the UDP
    length gives it (the frame itself may be cut by the snaplen).  On port
    3544 the lengths need not agree, and a datagram cut inside the headers
    is a truncated frame; on other ports anything else is plain UDP."""
    n = len(buf)
    off = 8
    if n < off + 2:
        return "truncated_frame" if on_port else None
    first = buf[off]
    if first and first >> 4 != 6:
        return None
    if first == 0 and buf[off + 1] == 1:
        if n < off + 4:
            return "truncated_frame" if on_port else None
        # Client id, authentication value, 8-byte nonce, confirmation byte.
        off += 4 + buf[off + 2] + buf[off + 3] + 9
    if n >= off + 2 and buf[off] == 0 and buf[off + 1] == 0:
        off += 8
    if n < off + 40:
        return "truncated_frame" if on_port and ulen > n else None
    if buf[off] >> 4 != 6:
        return None
    if not on_port and 40 + _u16(buf, off + 4)[0] != ulen - off:
        return None
    ctx = _push(ctx, ("teredo", src, dst, None))
    if ctx.__class__ is str:
        return ctx
    return _ip6(buf, off, ctx, verify)


def _gre(src: bytes, dst: bytes, buf: bytes, ctx, verify: bool):
    """GRE (RFC 2784, key and sequence number RFC 2890): flags C, K, S and
    the version, then the protocol type (an ethertype); checksum + reserved
    (C), key (K) and sequence number (S) follow, 4 bytes each."""
    n = len(buf)
    if n < 4:
        return "truncated_frame"
    flags, ptype = _HH(buf, 0)
    if flags & 0x7:
        return None  # version 1 is PPTP's enhanced GRE (RFC 2637): PPP, not decoded
    if flags & 0x4000:
        # The routing present bit of RFC 1701, which RFC 2784 section 2.3
        # says a receiver that does not implement RFC 1701 must discard.
        return "bad_tunnel_header"
    off = 8 if flags & 0x8000 else 4
    key = None
    if flags & 0x2000:
        if n < off + 4:
            return "truncated_frame"
        key = _u32(buf, off)[0]
        off += 4
    if flags & 0x1000:
        off += 4
    if n < off:
        return "truncated_frame"
    if ptype == ETH_ERSPAN2 or ptype == ETH_ERSPAN3:
        return _erspan(src, dst, buf, off, ptype, bool(flags & 0x1000), ctx, verify)
    ctx = _push(ctx, ("gre", src, dst, key))
    if ctx.__class__ is str:
        return ctx
    if ptype == ETH_TEB:
        return _ethernet(buf, off, ctx, verify)
    return _ether_payload(ptype, buf, off, ctx, verify)


def _erspan(src: bytes, dst: bytes, buf: bytes, off: int, ptype: int, seq: bool, ctx, verify: bool):
    """ERSPAN over GRE (draft-foschiano-erspan): type I (protocol 0x88BE
    without a GRE sequence number) has no header of its own; type II (0x88BE
    with one) an 8-byte header, version 1; type III (0x22EB) a 12-byte one,
    version 2, then an 8-byte platform-specific subheader when its O flag is
    set.  The session id is the low 10 bits of bytes 2-3 in both.  The
    mirrored frame is Ethernet, or for type III with frame type 2, IP."""
    n = len(buf)
    if ptype == ETH_ERSPAN2 and not seq:
        ctx = _push(ctx, ("erspan", src, dst, None))
        if ctx.__class__ is str:
            return ctx
        return _ethernet(buf, off, ctx, verify)
    size, version = (8, 1) if ptype == ETH_ERSPAN2 else (12, 2)
    if n < off + size:
        return "truncated_frame"
    if buf[off] >> 4 != version:
        return "bad_tunnel_header"
    session = _u16(buf, off + 2)[0] & 0x3FF
    frame_type = 0
    start = off + size
    if version == 2:
        word = _u16(buf, off + 10)[0]  # P, FT (5 bits), HW ID, D, Gra, O
        frame_type = (word >> 10) & 0x1F
        if word & 1:
            start += 8
            if n < start:
                return "truncated_frame"
    ctx = _push(ctx, ("erspan", src, dst, session))
    if ctx.__class__ is str:
        return ctx
    if frame_type == 0:
        return _ethernet(buf, start, ctx, verify)
    if frame_type == 2:
        return _ip_any(buf, start, ctx, verify)
    return None


# ----------------------------------------------------- link-layer headers

def _ethernet(buf: bytes, off: int, ctx, verify: bool):
    """An Ethernet II frame at ``buf[off:]``."""
    if len(buf) < off + 14:
        return "truncated_frame"
    return _ether_payload(_u16(buf, off + 12)[0], buf, off + 14, ctx, verify)


def _ether_payload(etype: int, buf: bytes, off: int, ctx, verify: bool):
    """What follows an ethertype (Ethernet, SLL, Cisco HDLC, GRE, Geneve):
    VLAN tags, then IPv4, IPv6, MPLS or PPPoE; anything else is not TCP."""
    while etype in VLAN_TPIDS:
        if len(buf) < off + 4:
            return "truncated_frame"
        tci, etype = _HH(buf, off)
        vid = tci & 0xFFF
        if vid:
            if ctx is None:
                ctx = ((vid,), ())
            elif _layers(ctx) >= MAX_LAYERS:
                return "tunnel_too_deep"
            else:
                ctx = (ctx[0] + (vid,), ctx[1])
        off += 4
    if etype == ETH_IP4:
        return _ip4(buf, off, ctx, verify)
    if etype == ETH_IP6:
        return _ip6(buf, off, ctx, verify)
    if etype == ETH_MPLS or etype == ETH_MPLS_MC:
        return _mpls(buf, off, ctx, verify)
    if etype == ETH_PPPOE:
        return _pppoe(buf, off, ctx, verify)
    return None


# Ethertypes an Ethernet pseudowire inside MPLS is believed to carry (see _mpls).
_PW_ETHERTYPES = frozenset((ETH_IP4, ETH_IP6, ETH_MPLS, ETH_MPLS_MC, ETH_PPPOE)) | VLAN_TPIDS


def _pw_ethernet_at(buf: bytes, off: int) -> bool:
    return len(buf) >= off + 14 and _u16(buf, off + 12)[0] in _PW_ETHERTYPES


def _mpls(buf: bytes, off: int, ctx, verify: bool):
    """An MPLS label stack (RFC 3032 section 2.1: 20-bit label, 3-bit
    traffic class, bottom-of-stack bit, TTL), then its payload.

    MPLS does not say what the payload is.  After the bottom of the stack, a
    first nibble of 4 or 6 is IPv4 or IPv6 (as routers and Wireshark read
    it).  Otherwise it may be an Ethernet pseudowire (RFC 4448), with a
    4-byte control word first (RFC 4385: first nibble 0) or without: each
    reading is believed when its ethertype is one sniffd decodes, and the
    frame is decoded only when exactly one reading is (a destination MAC
    starting with nibble 0 makes the two readings meet; then it is not
    decoded).  A pseudowire whose destination MAC starts with 4 or 6 and
    has no control word is read as IP: why RFC 4385 recommends the word."""
    labels: list[int] = []
    room = MAX_LAYERS - _layers(ctx)
    while True:
        if len(buf) < off + 4:
            return "truncated_frame"
        if len(labels) >= room:
            return "tunnel_too_deep"
        entry = _u32(buf, off)[0]
        off += 4
        labels.append(entry >> 12)
        if entry & 0x100:
            break
    ctx = _push(ctx, ("mpls", None, None, tuple(labels)), len(labels))
    if ctx.__class__ is str:
        return ctx
    if len(buf) <= off:
        return "truncated_frame"
    v = buf[off] >> 4
    if v == 4 or v == 6:
        return _ip_any(buf, off, ctx, verify)
    plain = _pw_ethernet_at(buf, off)
    if plain != (v == 0 and _pw_ethernet_at(buf, off + 4)):
        return _ethernet(buf, off if plain else off + 4, ctx, verify)
    return None


def _pppoe(buf: bytes, off: int, ctx, verify: bool):
    """A PPPoE session header (RFC 2516 section 4: version 1 and type 1 in
    one byte, code 0, session id, length), then PPP's protocol field."""
    if len(buf) < off + 6:
        return "truncated_frame"
    if buf[off] != 0x11 or buf[off + 1]:
        return "bad_tunnel_header"
    ctx = _push(ctx, ("pppoe", None, None, _u16(buf, off + 2)[0]))
    if ctx.__class__ is str:
        return ctx
    return _ppp(buf, off + 6, ctx, verify)


def _ppp(buf: bytes, off: int, ctx, verify: bool):
    """PPP's protocol field (RFC 1661 section 2: one byte when compressed,
    which an odd first byte shows) and what it carries."""
    if len(buf) <= off:
        return "truncated_frame"
    proto = buf[off]
    if proto & 1:
        off += 1
    else:
        if len(buf) < off + 2:
            return "truncated_frame"
        proto = _u16(buf, off)[0]
        off += 2
    if proto == PPP_IP4:
        return _ip4(buf, off, ctx, verify)
    if proto == PPP_IP6:
        return _ip6(buf, off, ctx, verify)
    if proto == PPP_MPLS or proto == PPP_MPLS_MC:
        return _mpls(buf, off, ctx, verify)
    return None


def _ppp_frame(frame: bytes, off: int, verify: bool):
    """PPP with or without the HDLC-like address and control bytes
    (0xFF 0x03, RFC 1662 section 3.1; omitted when negotiated away).  A
    first byte of 0xFF is the address: 0x00FF is no protocol (RFC 1661
    section 2 reserves it)."""
    if frame[off : off + 1] == b"\xff":
        off += 2
    return _ppp(frame, off, None, verify)


def _c_hdlc(frame: bytes, off: int, verify: bool):
    """Cisco HDLC: address (0x0F unicast, 0x8F broadcast), control 0, and
    an ethertype."""
    if len(frame) < off + 4:
        return "truncated_frame"
    return _ether_payload(_u16(frame, off + 2)[0], frame, off + 4, None, verify)


def _nflog(frame: bytes, verify: bool):
    """Linux NFLOG (LINKTYPE_NFLOG): family (NFPROTO_*), version, resource
    id, then type-length-value attributes, each padded to 4 bytes; the
    packet is the NFULA_PAYLOAD attribute (type 9).  An attribute's length
    and type are in the capturing host's byte order, which libpcap turns into
    the reading host's (sniffd reads NFLOG through libpcap only); the top
    bit of the type is the netlink nested flag."""
    n = len(frame)
    if n < 4:
        return "truncated_frame"
    family = frame[0]
    off = 4
    while off < n:
        if n < off + 4:
            return "truncated_frame"
        length, kind = _NATIVE_HH(frame, off)
        if length < 4:
            return "truncated_frame"  # no attribute is shorter than its header
        if kind & 0x7FFF == NFULA_PAYLOAD:
            # Cut to the attribute; a payload the snaplen cut runs to the
            # frame's end and the IP length says how much is missing.
            packet = frame[off + 4 : off + length]
            if family == NFPROTO_IPV4:
                return _ip4(packet, 0, None, verify)
            if family == NFPROTO_IPV6:
                return _ip6(packet, 0, None, verify)
            return None
        if off + length > n:
            return "truncated_frame"
        off += (length + 3) & ~3
    return None


_NATIVE_HH = struct.Struct("=HH").unpack_from


def _null_family(linktype: int, frame: bytes):
    if len(frame) < 4:
        return "truncated_frame"
    le = int.from_bytes(frame[:4], "little")
    be = int.from_bytes(frame[:4], "big")
    fam = be if linktype == DLT_LOOP else (le if le < 0x10000 else be)
    if fam == AF_INET:
        return ETH_IP4
    if fam in AF_INET6:
        return ETH_IP6
    return None


def _decode_link(linktype: int, frame: bytes, verify: bool):
    """Any frame of any supported link type, with the struct code."""
    if linktype == DLT_EN10MB:
        return _ethernet(frame, 0, None, verify)
    if linktype == DLT_LINUX_SLL:
        if len(frame) < 16:
            return "truncated_frame"
        return _ether_payload(_u16(frame, 14)[0], frame, 16, None, verify)
    if linktype == DLT_LINUX_SLL2:
        if len(frame) < 20:
            return "truncated_frame"
        return _ether_payload(_u16(frame, 0)[0], frame, 20, None, verify)
    if linktype in (DLT_RAW, DLT_RAW_BSD, LINKTYPE_RAW, DLT_IPV4, DLT_IPV6):
        return _ip_any(frame, 0, None, verify)
    if linktype == DLT_NULL or linktype == DLT_LOOP:
        fam = _null_family(linktype, frame)
        if fam.__class__ is not int:
            return fam
        return _ip4(frame, 4, None, verify) if fam == ETH_IP4 else _ip6(frame, 4, None, verify)
    if linktype == DLT_PPP:
        return _ppp_frame(frame, 0, verify)
    if linktype == DLT_PPP_SERIAL:
        if frame[:1] in (b"\x0f", b"\x8f"):
            return _c_hdlc(frame, 0, verify)  # Cisco PPP with HDLC framing (RFC 1547 section 4.3.1)
        return _ppp_frame(frame, 0, verify)
    if linktype == DLT_PPP_ETHER:
        return _pppoe(frame, 0, None, verify)
    if linktype == DLT_C_HDLC:
        return _c_hdlc(frame, 0, verify)
    if linktype == DLT_PPP_WITH_DIR:
        if not frame:
            return "truncated_frame"
        return _ppp_frame(frame, 1, verify)
    if linktype == DLT_C_HDLC_WITH_DIR:
        return _c_hdlc(frame, 1, verify)
    if linktype == DLT_MPLS:
        return _mpls(frame, 0, None, verify)
    if linktype == DLT_NFLOG:
        return _nflog(frame, verify)
    return None


# --------------------------------------------------------------- fast path

def _ip4_tcp(frame: bytes, off: int, verify: bool):
    """IPv4 with no options carrying TCP, not fragmented, lengths
    consistent: one struct unpack, one slice.  Anything else: None, and the
    caller takes the general path."""
    (_vhl, _tos, total, _id, frag, ttl, _p, _sum, src, dst,
     sport, dport, seq, ack, doff, flags) = _IP4TCP(frame, off)
    if frag & 0x3FFF:
        return None
    hl = (doff >> 4) * 4
    end = off + total
    start = off + 20 + hl
    if hl < 20 or start > end or end > len(frame):
        return None
    csum = _tcp_csum(src, dst, frame[off + 20 : end]) if verify else -1
    return _tuple_new(Segment, (src, dst, sport, dport, seq, ack, flags, frame[start:end], 0, ttl, csum, None))


def decode_frame(linktype: int, frame: bytes, verify: bool = False):
    """The value of one frame (see the module docstring); ``verify``: check
    TCP checksums.  Ethernet and SLL carrying IP directly take a short
    path; everything else the general one."""
    if linktype == DLT_EN10MB:
        if len(frame) >= 14:
            etype = (frame[12] << 8) | frame[13]
            if etype == ETH_IP4:
                if len(frame) >= 54 and frame[14] == 0x45 and frame[23] == PROTO_TCP:
                    seg = _ip4_tcp(frame, 14, verify)
                    if seg is not None:
                        return seg
                return _ip4(frame, 14, None, verify)
            if etype == ETH_IP6 and len(frame) >= 54 and frame[20] == PROTO_TCP:
                return _ip6(frame, 14, None, verify)
    elif linktype == DLT_LINUX_SLL:
        if len(frame) >= 16:
            etype = (frame[14] << 8) | frame[15]
            if etype == ETH_IP4:
                if len(frame) >= 56 and frame[16] == 0x45 and frame[25] == PROTO_TCP:
                    seg = _ip4_tcp(frame, 16, verify)
                    if seg is not None:
                        return seg
                return _ip4(frame, 16, None, verify)
            if etype == ETH_IP6 and len(frame) >= 56 and frame[22] == PROTO_TCP:
                return _ip6(frame, 16, None, verify)
    return _decode_link(linktype, frame, verify)


# ----------------------------------------------------------------- batches

# Link header length of the link types decode_batch decodes.
LINK_HEADER = {DLT_EN10MB: 14, DLT_LINUX_SLL: 16}
_META_ITER = struct.Struct("=4I").iter_unpack
# From the ethertype to the TCP flags of an IPv4 (no options) TCP frame:
# the fields _ip4_tcp reads.
_ETHERTYPE_IP4_TCP = struct.Struct("!HBxH2xHBB2x4s4sHHIIBB").unpack_from


def decode_batch_py(buf: bytes, meta: bytes, link: int, k: int, n: int, now: float, next_expire: float,
                    frame_no: int, every: float, verify: bool = False,
                    epoch: int = 0) -> tuple[list[tuple], float, float, int, int]:
    """One capture batch (pcapy-ng next_batch: ``buf`` and ``meta`` of
    (sec, usec, offset, caplen) native uint32s), decoded and clocked.
    ``epoch`` (capture.Batch.epoch) is added to every ``sec``: a uint32 of
    seconds ends in 2106.

    The clock is the pipeline's: packet time (``(epoch + sec) + usec *
    1e-6``), never
    backwards (a frame earlier than ``now`` is counted in ``backwards`` and
    taken at ``now``), housekeeping due whenever it reaches ``next_expire``
    (then due again ``every`` seconds later; ``next_expire`` 0: not yet
    started).  Returns ``(items, now, next_expire, frame_no, backwards)``
    with one ``(now, seg, caplen, frame_no)`` item per frame to process,
    ``frame_no`` counting every frame seen, and ``seg``:

    - the segment tuple of a common frame (a link header of ``link`` bytes,
      ethertype IPv4, IHL 5, TCP, not a fragment, lengths consistent and
      whole in the frame: _ip4_tcp's checks), as decode_frame gives it
      (``ctx`` None; ``csum`` checked when ``verify``, else -1);
    - for every other frame its offset in ``buf``, for decode_frame to decide
      (``link`` 0: every frame);
    - None: no frame; housekeeping is due here, before the next item.

    With shard ``k`` of ``n``, a common frame whose flow_hash % n is not k
    (another worker's connection) gets no item: it only moves the clock.

    The reference for sniffd/_batch.c, which does this in C (the per-packet
    Python around struct.unpack was a quarter of `sniffd read`)."""
    out = []
    backwards = 0
    size = len(buf)
    for sec, usec, off, caplen in _META_ITER(meta):
        ts = (epoch + sec) + usec * 1e-6
        frame_no += 1
        if ts >= now:
            now = ts
        else:
            backwards += 1
        if now >= next_expire:
            if next_expire:
                out.append((now, None, 0, frame_no))
            next_expire = now + every
        seg = off
        if link and caplen >= link + 40 and off + caplen <= size:
            (etype, vhl, total, frag, ttl, proto, src, dst, sport, dport, seq, ack, doff,
             flags) = _ETHERTYPE_IP4_TCP(buf, off + link - 2)
            if etype == ETH_IP4 and vhl == 0x45 and proto == PROTO_TCP and not frag & 0x3FFF:
                hl = (doff >> 4) << 2
                ip = off + link
                start = ip + 20 + hl
                end = ip + total
                if hl >= 20 and start <= end <= off + caplen:
                    if n > 1 and flow_hash(src, dst, sport, dport) % n != k:
                        continue
                    csum = _tcp_csum(src, dst, buf[ip + 20 : end]) if verify else -1
                    seg = (src, dst, sport, dport, seq, ack, flags, buf[start:end], 0, ttl, csum, None)
        out.append((now, seg, caplen, frame_no))
    return out, now, next_expire, frame_no, backwards


try:
    from sniffd._batch import decode_batch
except ImportError:  # built without a C compiler: the same, slower
    decode_batch = decode_batch_py


# --------------------------------------------------------------- sharding

_FOLD = struct.Struct("!4I").unpack_from

# 32-bit unsigned arithmetic, as sniffd/_batch.c computes it for the common
# frame.  The multiplication matters: Linux gives connect() even ephemeral
# ports, so the low bits of a plain XOR hardly vary.
_GOLDEN = 2654435761


def _fold(addr: bytes) -> int:
    if len(addr) == 4:
        return int.from_bytes(addr, "big")
    a, b, c, d = _FOLD(addr)
    return a ^ b ^ c ^ d


def flow_hash(src: bytes, dst: bytes, sport: int, dport: int) -> int:
    """Symmetric (both directions hash alike) and the same in every process
    (Python's hash() of bytes is salted per process): what spreads a
    capture's connections over `sniffd read --workers` processes."""
    return _mix(_fold(src) ^ _fold(dst) ^ sport ^ dport)


def _mix(x: int) -> int:
    return ((x * _GOLDEN) & 0xFFFFFFFF) >> 16


# --------------------------------------------------------------- dpkt path

def _import_dpkt() -> None:
    global dpkt
    import dpkt as module

    dpkt = module


def _link_dpkt(linktype: int, frame: bytes):
    """(ethertype, offset of what it types, ctx) for the link types dpkt has
    a class for (Ethernet's first two VLAN tags, SLL, SLL2), None for the
    others, or an anomaly name."""
    try:
        if linktype == DLT_EN10MB:
            if len(frame) < 14:
                return "truncated_frame"
            etype = _u16(frame, 12)[0]
            if etype <= 1500:
                return None  # an 802.3 length: LLC, which no path decodes
            # Up to two 802.1Q / 802.1ad tags, each by dpkt's class
            # (dpkt.ethernet.Ethernet would read the payload too, its own
            # way); _ether_payload reads any further tags.
            off, vids = 14, ()
            while etype in VLAN_TPIDS and off < 22:
                tag = dpkt.ethernet.VLANtag8021Q(frame[off : off + 4])
                if tag.id:
                    vids += (tag.id,)
                etype, off = tag.type, off + 4
            return etype, off, ((vids, ()) if vids else None)
        if linktype == DLT_LINUX_SLL:
            if len(frame) < 16:
                return "truncated_frame"
            return dpkt.sll.SLL(frame[:16]).ethtype, 16, None
        if linktype == DLT_LINUX_SLL2:
            if len(frame) < 20:
                return "truncated_frame"
            return dpkt.sll2.SLL2(frame[:20]).ethtype, 20, None
    except (dpkt.NeedData, dpkt.UnpackError, struct.error):
        return "truncated_frame"
    return None


def _ip4_dpkt(pkt: bytes, ctx, verify: bool):
    if len(pkt) < 20:
        return "truncated_frame"
    try:
        # The header only: dpkt would read the payload its own way.
        ip = dpkt.ip.IP(pkt[: max(20, (pkt[0] & 0xF) * 4)])
    except dpkt.UnpackError:
        return "bad_ip_header"
    except dpkt.NeedData:
        return "truncated_frame"
    if ip.v != 4:
        return "bad_ip_header"
    hl = ip.hl * 4
    if hl > len(pkt):
        return "truncated_frame"
    lost = 0
    known = ip.len != 0
    if ip.len == 0:
        body = pkt[hl:]
    elif ip.len < hl:
        return "bad_ip_header"
    else:
        body = pkt[hl : ip.len]
        lost = max(0, ip.len - len(pkt))
    mf = bool(ip.mf)
    foff = ip.offset * 8  # dpkt gives the field: 8-byte units
    if mf or foff:
        return Fragment((4, ip.src, ip.dst, ip.p, ip.id, ctx), 4, ip.src, ip.dst, ip.p, foff, mf, body, lost, ip.ttl,
                        ctx, verify and known)
    if ip.p == PROTO_TCP:
        return decode_tcp(ip.src, ip.dst, body, lost, ip.ttl, ctx, verify and known)
    return _tunnel(ip.p, ip.src, ip.dst, body, ctx, verify)


def decode_frame_dpkt(linktype: int, frame: bytes, verify: bool = False):
    """decode_frame with the outer link header and IPv4 header read by dpkt
    where it has a class for them (see the module docstring)."""
    if dpkt is None:
        _import_dpkt()
    link = _link_dpkt(linktype, frame)
    if link is None:
        return _decode_link(linktype, frame, verify)
    if link.__class__ is str:
        return link
    etype, off, ctx = link
    if etype == ETH_IP4:
        return _ip4_dpkt(frame[off:], ctx, verify)
    return _ether_payload(etype, frame, off, ctx, verify)
