"""Decode stage (pure, stateless): one captured frame in, one value out.

``decode_frame(linktype, frame)`` returns one of

* a ``Segment`` tuple ``(src, dst, sport, dport, seq, ack, flags, payload, lost)``
  for a TCP segment; ``src``/``dst`` are packed addresses (4 or 16 bytes),
  ``lost`` is how many payload bytes the capture did not keep (snaplen);
* a ``Fragment`` for a piece of a fragmented IP datagram (the ``fragments``
  stage puts datagrams back together and calls ``decode_transport``);
* a ``str``: the anomaly name of a frame that cannot be decoded (dropped);
* ``None``: a well-formed frame that is not TCP (ARP, UDP, ...): ignored.

Two implementations give the same values: a fast path written with
``struct`` for the common frame (Ethernet or Linux SLL, IPv4 or IPv6 without
extension headers, TCP), which builds no objects, and dpkt for every other
frame (VLAN/QinQ tags, SLL2, raw IP, BSD NULL/loopback, IPv6 extension
headers, fragments).  ``decode_frame_dpkt`` is the dpkt path on its own, so a
test can check both agree on every capture.

Checksums are not verified: capture hosts with checksum offload record wrong
ones for the packets they send, and a sniffer must log those too.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# dpkt is imported on first use (decode_frame_dpkt): ~35 ms of start-up that
# a capture of only Ethernet/SLL IPv4/IPv6 frames never needs.
dpkt = None

# Link types (pcap LINKTYPE_* values as libpcap reports them via datalink()).
DLT_NULL = 0
DLT_EN10MB = 1
DLT_RAW = 12  # what libpcap maps LINKTYPE_RAW (101) to on Linux
DLT_RAW_BSD = 14
DLT_LOOP = 108
LINKTYPE_RAW = 101
DLT_LINUX_SLL = 113
DLT_IPV4 = 228
DLT_IPV6 = 229
DLT_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES = {
    DLT_NULL: "BSD loopback (NULL)",
    DLT_EN10MB: "Ethernet",
    DLT_RAW: "raw IP",
    DLT_RAW_BSD: "raw IP",
    DLT_LOOP: "OpenBSD loopback",
    LINKTYPE_RAW: "raw IP",
    DLT_LINUX_SLL: "Linux cooked capture v1",
    DLT_IPV4: "raw IPv4",
    DLT_IPV6: "raw IPv6",
    DLT_LINUX_SLL2: "Linux cooked capture v2",
}

ETH_IP4 = 0x0800
ETH_IP6 = 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
PROTO_TCP = 6
PROTO_FRAG6 = 44
# IPv6 extension headers sniffd skips to reach TCP (RFC 8200 section 4).
IP6_EXT = {0, 43, 60, 135, 139, 140}
IP6_AH = 51
IP6_NONXT = 59

# BSD NULL: address family in host byte order of the capturing machine.
AF_INET = 2
AF_INET6 = {10, 24, 28, 30}  # Linux, NetBSD/OpenBSD, FreeBSD, macOS

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


class Fragment(NamedTuple):
    """One IP fragment.  ``offset`` in bytes; ``key`` identifies the datagram."""

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


class UnknownLinkType(ValueError):
    """Raised once per capture, before any frame: configuration-level error."""


def check_linktype(linktype: int) -> None:
    if linktype not in SUPPORTED_LINKTYPES:
        names = ", ".join(f"{v} ({k})" for k, v in sorted(SUPPORTED_LINKTYPES.items()))
        raise UnknownLinkType(f"unsupported link type {linktype}; sniffd reads {names}")


_u16 = struct.Struct("!H").unpack_from
# IPv4 header without options + TCP header up to the flags: one unpack for
# the common frame.
_IP4TCP = struct.Struct("!BBHHHBBH4s4sHHIIBB").unpack_from
# NamedTuple's generated __new__ is a Python function (~250 ns); building
# through tuple.__new__ gives the same Segment in less than half the time.
_tuple_new = tuple.__new__
_IP4 = struct.Struct("!BBHHHBBH4s4s").unpack_from
_tcp = struct.Struct("!HHIIBB").unpack_from
_IP6 = struct.Struct("!IHBB16s16s").unpack_from


# --------------------------------------------------------------- transport

def decode_tcp(src: bytes, dst: bytes, buf: bytes, lost: int):
    """TCP header + payload from an IP payload (``buf``) of which ``lost``
    trailing bytes were not captured."""
    if len(buf) < 20:
        return "truncated_frame"
    sport, dport, seq, ack, off, flags = _tcp(buf, 0)
    hl = (off >> 4) * 4
    if hl < 20:
        return "bad_tcp_header"
    if hl > len(buf):
        return "truncated_frame" if lost else "bad_tcp_header"
    return _tuple_new(Segment, (src, dst, sport, dport, seq, ack, flags, buf[hl:], lost))


def decode_transport(version: int, src: bytes, dst: bytes, proto: int, buf: bytes, lost: int = 0):
    """The upper layer of a whole (possibly reassembled) IP datagram."""
    if version == 6:
        # Extension headers after a Fragment header travel in the payload.
        while proto in IP6_EXT or proto == IP6_AH:
            if len(buf) < 8:
                return "truncated_frame"
            nxt, hlen = buf[0], buf[1]
            size = (hlen + 2) * 4 if proto == IP6_AH else (hlen + 1) * 8
            if size > len(buf):
                return "truncated_frame"
            proto, buf = nxt, buf[size:]
    if proto != PROTO_TCP:
        return None
    return decode_tcp(src, dst, buf, lost)


# --------------------------------------------------------------- fast path

def _ip4(buf: bytes, off: int):
    """IPv4 at ``buf[off:]``: TCP segment, fragment, anomaly or None."""
    n = len(buf) - off
    if n < 20:
        return "truncated_frame"
    vhl, _tos, total, ident, frag, _ttl, proto, _sum, src, dst = _IP4(buf, off)
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
        # large segment with total length 0; the frame length is the truth.
        end = len(buf)
    elif total < hl:
        return "bad_ip_header"
    else:
        end = off + total
        if end > len(buf):
            lost = end - len(buf)
            end = len(buf)
    mf = frag & 0x2000
    foff = (frag & 0x1FFF) * 8
    if mf or foff:
        return Fragment((4, src, dst, proto, ident), 4, src, dst, proto, foff, bool(mf), buf[off + hl : end], lost)
    if proto != PROTO_TCP:
        return None
    return decode_tcp(src, dst, buf[off + hl : end], lost)


def _ip6(buf: bytes, off: int):
    n = len(buf) - off
    if n < 40:
        return "truncated_frame"
    vtcfl, plen, nxt, _hlim, src, dst = _IP6(buf, off)
    if vtcfl >> 28 != 6:
        return "bad_ip_header"
    lost = 0
    if plen == 0:
        end = len(buf)  # jumbogram or TSO: trust the frame
    else:
        end = off + 40 + plen
        if end > len(buf):
            lost = end - len(buf)
            end = len(buf)
    if nxt == PROTO_TCP:
        return decode_tcp(src, dst, buf[off + 40 : end], lost)
    return _ip6_ext(buf[off + 40 : end], src, dst, nxt, lost)


def _ip6_ext(buf: bytes, src: bytes, dst: bytes, nxt: int, lost: int):
    """Walk IPv6 extension headers up to TCP or a Fragment header."""
    while True:
        if nxt == PROTO_TCP:
            return decode_tcp(src, dst, buf, lost)
        if nxt == PROTO_FRAG6:
            if len(buf) < 8:
                return "truncated_frame"
            proto = buf[0]
            fo = _u16(buf, 2)[0]
            ident = struct.unpack_from("!I", buf, 4)[0]
            return Fragment((6, src, dst, ident), 6, src, dst, proto, fo & 0xFFF8, bool(fo & 1), buf[8:], lost)
        if nxt in IP6_EXT or nxt == IP6_AH:
            if len(buf) < 8:
                return "truncated_frame"
            size = (buf[1] + 2) * 4 if nxt == IP6_AH else (buf[1] + 1) * 8
            if size > len(buf):
                return "truncated_frame"
            nxt, buf = buf[0], buf[size:]
            continue
        return None


def _by_ethertype(etype: int, buf: bytes, off: int):
    if etype == ETH_IP4:
        return _ip4(buf, off)
    if etype == ETH_IP6:
        return _ip6(buf, off)
    return None


def _ip4_tcp(frame: bytes, off: int):
    """IPv4 with no options carrying TCP, not fragmented, lengths
    consistent: one struct unpack, one slice.  Anything else: None, and the
    caller takes the general path."""
    (_vhl, _tos, total, _id, frag, _ttl, _p, _sum, src, dst,
     sport, dport, seq, ack, doff, flags) = _IP4TCP(frame, off)
    if frag & 0x3FFF:
        return None
    hl = (doff >> 4) * 4
    end = off + total
    start = off + 20 + hl
    if hl < 20 or start > end or end > len(frame):
        return None
    return _tuple_new(Segment, (src, dst, sport, dport, seq, ack, flags, frame[start:end], 0))


def decode_frame(linktype: int, frame: bytes):
    """Fast path for the common frames; everything else goes through dpkt."""
    if linktype == DLT_EN10MB:
        if len(frame) >= 14:
            etype = (frame[12] << 8) | frame[13]
            if etype == ETH_IP4:
                if len(frame) >= 54 and frame[14] == 0x45 and frame[23] == PROTO_TCP:
                    seg = _ip4_tcp(frame, 14)
                    if seg is not None:
                        return seg
                return _ip4(frame, 14)
            if etype == ETH_IP6 and len(frame) >= 54 and frame[20] == PROTO_TCP:
                return _ip6(frame, 14)
    elif linktype == DLT_LINUX_SLL:
        if len(frame) >= 16:
            etype = (frame[14] << 8) | frame[15]
            if etype == ETH_IP4:
                if len(frame) >= 56 and frame[16] == 0x45 and frame[25] == PROTO_TCP:
                    seg = _ip4_tcp(frame, 16)
                    if seg is not None:
                        return seg
                return _ip4(frame, 16)
            if etype == ETH_IP6 and len(frame) >= 56 and frame[22] == PROTO_TCP:
                return _ip6(frame, 16)
    return decode_frame_dpkt(linktype, frame)


# ----------------------------------------------------------------- batches

# Link header length of the link types decode_batch decodes.
LINK_HEADER = {DLT_EN10MB: 14, DLT_LINUX_SLL: 16}
_META_ITER = struct.Struct("=4I").iter_unpack
# From the ethertype to the TCP flags of an IPv4 (no options) TCP frame:
# the fields _ip4_tcp reads.
_ETHERTYPE_IP4_TCP = struct.Struct("!HBxH2xHxB2x4s4sHHIIBB").unpack_from


def decode_batch_py(buf: bytes, meta: bytes, link: int, k: int, n: int, now: float, next_expire: float,
                    frame_no: int, every: float) -> tuple[list[tuple], float, float, int, int]:
    """One capture batch (pcapy-ng next_batch: ``buf`` and ``meta`` of
    (sec, usec, offset, caplen) native uint32s), decoded and clocked.

    The clock is the pipeline's: packet time (``sec + usec * 1e-6``), never
    backwards (a frame earlier than ``now`` is counted in ``backwards`` and
    taken at ``now``), housekeeping due whenever it reaches ``next_expire``
    (then due again ``every`` seconds later; ``next_expire`` 0: not yet
    started).  Returns ``(items, now, next_expire, frame_no, backwards)``
    with one ``(now, seg, caplen, frame_no)`` item per frame to process,
    ``frame_no`` counting every frame seen, and ``seg``:

    - the segment tuple of a common frame (a link header of ``link`` bytes,
      ethertype IPv4, IHL 5, TCP, not a fragment, lengths consistent and
      whole in the frame: _ip4_tcp's checks), as decode_frame gives it;
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
        ts = sec + usec * 1e-6
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
            (etype, vhl, total, frag, proto, src, dst, sport, dport, seq, ack, doff,
             flags) = _ETHERTYPE_IP4_TCP(buf, off + link - 2)
            if etype == ETH_IP4 and vhl == 0x45 and proto == PROTO_TCP and not frag & 0x3FFF:
                hl = (doff >> 4) << 2
                ip = off + link
                start = ip + 20 + hl
                end = ip + total
                if hl >= 20 and start <= end <= off + caplen:
                    if n > 1 and flow_hash(src, dst, sport, dport) % n != k:
                        continue
                    seg = (src, dst, sport, dport, seq, ack, flags, buf[start:end], 0)
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
    """(ethertype-ish version, bytes of the IP packet) via dpkt's link classes,
    or an anomaly name / None."""
    try:
        if linktype == DLT_EN10MB:
            if len(frame) < 14:
                return "truncated_frame"
            eth = dpkt.ethernet.Ethernet(frame)
            # dpkt parses 802.1Q / 802.1ad (QinQ) tags into eth.vlan_tags;
            # eth.type stays the outer TPID and the innermost tag carries the
            # payload's ethertype.  The IP packet follows the last tag.
            tags = getattr(eth, "vlan_tags", None) or []
            if getattr(eth, "mpls_labels", None):
                return None
            etype = tags[-1].type if tags else eth.type
            return etype, frame[14 + 4 * len(tags) :]
        if linktype == DLT_LINUX_SLL:
            if len(frame) < 16:
                return "truncated_frame"
            sll = dpkt.sll.SLL(frame)
            return sll.ethtype, frame[16:]
        if linktype == DLT_LINUX_SLL2:
            if len(frame) < 20:
                return "truncated_frame"
            sll2 = dpkt.sll2.SLL2(frame)
            return sll2.ethtype, frame[20:]
        if linktype in (DLT_NULL, DLT_LOOP):
            if len(frame) < 4:
                return "truncated_frame"
            le = int.from_bytes(frame[:4], "little")
            be = int.from_bytes(frame[:4], "big")
            fam = be if linktype == DLT_LOOP else (le if le < 0x10000 else be)
            if fam == AF_INET:
                return ETH_IP4, frame[4:]
            if fam in AF_INET6:
                return ETH_IP6, frame[4:]
            return None
        if linktype in (DLT_RAW, DLT_RAW_BSD, LINKTYPE_RAW, DLT_IPV4, DLT_IPV6):
            if not frame:
                return "truncated_frame"
            v = frame[0] >> 4
            if v == 4:
                return ETH_IP4, frame
            if v == 6:
                return ETH_IP6, frame
            return "bad_ip_header"
    except (dpkt.NeedData, dpkt.UnpackError, struct.error):
        return "truncated_frame"
    return None


def _ip4_dpkt(pkt: bytes):
    if len(pkt) < 20:
        return "truncated_frame"
    try:
        ip = dpkt.ip.IP(pkt)
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
        return Fragment((4, ip.src, ip.dst, ip.p, ip.id), 4, ip.src, ip.dst, ip.p, foff, mf, body, lost)
    if ip.p != PROTO_TCP:
        return None
    return decode_tcp(ip.src, ip.dst, body, lost)


def _ip6_dpkt(pkt: bytes):
    # dpkt's IP6 walks extension headers eagerly and raises on the first
    # truncated or fragmented one, where sniffd wants a named anomaly or a
    # Fragment: the 40-byte fixed header and the walk are done here instead
    # (the same code as the fast path).
    return _ip6(pkt, 0)


def decode_frame_dpkt(linktype: int, frame: bytes):
    if dpkt is None:
        _import_dpkt()
    link = _link_dpkt(linktype, frame)
    if link is None or isinstance(link, str):
        return link
    etype, pkt = link
    if etype == ETH_IP4:
        return _ip4_dpkt(pkt)
    if etype == ETH_IP6:
        return _ip6_dpkt(pkt)
    return None
