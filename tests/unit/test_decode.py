"""Decode stage (sniffd.decode): one captured frame in, one value out.

Every case is checked against both readings, the struct decoder
(``decode_frame``) and the one that reads the outer link and IPv4 headers
with dpkt (``decode_frame_dpkt``): they must give the same value, and that
value is the expected one, written by hand.  Frames are built with
tests/craft.py (dpkt).
"""

from __future__ import annotations

import ipaddress
import struct

import craft
import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sniffd.anomalies import ANOMALIES
from sniffd.decode import (
    DLT_C_HDLC,
    DLT_C_HDLC_WITH_DIR,
    DLT_EN10MB,
    DLT_IPV4,
    DLT_IPV6,
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    DLT_LOOP,
    DLT_MPLS,
    DLT_NFLOG,
    DLT_NULL,
    DLT_PPP,
    DLT_PPP_ETHER,
    DLT_PPP_SERIAL,
    DLT_PPP_WITH_DIR,
    DLT_RAW,
    DLT_RAW_BSD,
    LINKTYPE_RAW,
    SUPPORTED_LINKTYPES,
    TH_ACK,
    TH_PSH,
    Fragment,
    Segment,
    decode_frame,
    decode_frame_dpkt,
    decode_transport,
)

V4 = ("10.0.0.1", 40000, "10.0.0.2", 80)
V6 = ("2001:db8::1", 40000, "2001:db8::2", 80)
PAYLOAD = b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"
SEQ, ACK = 1_000_001, 3_000_001


def packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def tcp_segment(ends=V4, payload: bytes = PAYLOAD) -> craft.Segment:
    src, sport, dst, dport = ends
    return craft.Segment(src, sport, dst, dport, SEQ, ACK, craft.ACK | craft.PSH, payload)


def expected_segment(ends=V4, payload: bytes = PAYLOAD, lost: int = 0, ttl: int = 64, csum: int = -1,
                     ctx=None) -> Segment:
    src, sport, dst, dport = ends
    return Segment(packed(src), packed(dst), sport, dport, SEQ, ACK, TH_ACK | TH_PSH, payload, lost, ttl, csum, ctx)


def both(linktype: int, frame: bytes, verify: bool = False) -> tuple:
    return decode_frame(linktype, frame, verify), decode_frame_dpkt(linktype, frame, verify)


IP4 = craft.ip_packet(tcp_segment(V4))
IP6 = craft.ip_packet(tcp_segment(V6))
TCP4_BYTES = tcp_segment(V4).tcp_bytes()
TCP6_BYTES = tcp_segment(V6).tcp_bytes()
IP6_EXT = craft.ip_packet(
    tcp_segment(V6), ext_headers=[craft.hop_by_hop_options(), craft.destination_options()]
)


def null_frame(l3: bytes, family: int, order: str) -> bytes:
    return struct.pack(order + "I", family) + l3


# (name, linktype, frame, expected value)
CASES = [
    ("ethernet_ipv4_tcp", DLT_EN10MB, craft.ethernet(IP4), expected_segment(V4)),
    ("ethernet_ipv6_tcp", DLT_EN10MB, craft.ethernet(IP6), expected_segment(V6)),
    ("ethernet_8021q_ipv4_tcp", DLT_EN10MB, craft.ethernet(IP4, tags=craft.dot1q(100)),
     expected_segment(V4, ctx=((100,), ()))),
    ("ethernet_8021q_ipv6_tcp", DLT_EN10MB, craft.ethernet(IP6, tags=craft.dot1q(100)),
     expected_segment(V6, ctx=((100,), ()))),
    ("ethernet_qinq_ipv4_tcp", DLT_EN10MB, craft.ethernet(IP4, tags=craft.qinq(10, 20)),
     expected_segment(V4, ctx=((10, 20), ()))),
    ("ethernet_qinq_ipv6_tcp", DLT_EN10MB, craft.ethernet(IP6, tags=craft.qinq(10, 20)),
     expected_segment(V6, ctx=((10, 20), ()))),
    ("ethernet_priority_tag_vlan_0_is_no_vlan", DLT_EN10MB, craft.ethernet(IP4, tags=craft.dot1q(0)),
     expected_segment(V4)),
    ("ethernet_three_tags", DLT_EN10MB, craft.ethernet(IP4, tags=[(0x88A8, 1), (0x88A8, 2), (0x8100, 3)]),
     expected_segment(V4, ctx=((1, 2, 3), ()))),
    ("ethernet_legacy_qinq_tpid_9100", DLT_EN10MB, craft.ethernet(IP4, tags=[(0x9100, 7), (0x8100, 8)]),
     expected_segment(V4, ctx=((7, 8), ()))),
    ("sll_ipv4_tcp", DLT_LINUX_SLL, craft.linux_sll(IP4), expected_segment(V4)),
    ("sll_ipv6_tcp", DLT_LINUX_SLL, craft.linux_sll(IP6), expected_segment(V6)),
    ("sll2_ipv4_tcp", DLT_LINUX_SLL2, craft.linux_sll2(IP4), expected_segment(V4)),
    ("sll2_ipv6_tcp", DLT_LINUX_SLL2, craft.linux_sll2(IP6), expected_segment(V6)),
    ("raw_dlt12_ipv4_tcp", DLT_RAW, IP4, expected_segment(V4)),
    ("raw_dlt12_ipv6_tcp", DLT_RAW, IP6, expected_segment(V6)),
    ("raw_linktype101_ipv4_tcp", LINKTYPE_RAW, IP4, expected_segment(V4)),
    ("raw_linktype101_ipv6_tcp", LINKTYPE_RAW, IP6, expected_segment(V6)),
    ("null_little_endian_ipv4_tcp", DLT_NULL, null_frame(IP4, 2, "<"), expected_segment(V4)),
    ("null_big_endian_ipv4_tcp", DLT_NULL, null_frame(IP4, 2, ">"), expected_segment(V4)),
    ("null_little_endian_ipv6_bsd_tcp", DLT_NULL, null_frame(IP6, 24, "<"), expected_segment(V6)),
    ("null_big_endian_ipv6_bsd_tcp", DLT_NULL, null_frame(IP6, 24, ">"), expected_segment(V6)),
    ("null_little_endian_ipv6_freebsd_tcp", DLT_NULL, null_frame(IP6, 28, "<"), expected_segment(V6)),
    ("null_big_endian_ipv6_macos_tcp", DLT_NULL, null_frame(IP6, 30, ">"), expected_segment(V6)),
    ("ethernet_ipv6_hop_by_hop_and_destination_options_tcp", DLT_EN10MB, craft.ethernet(IP6_EXT), expected_segment(V6)),
    ("sll_ipv6_hop_by_hop_and_destination_options_tcp", DLT_LINUX_SLL, craft.linux_sll(IP6_EXT), expected_segment(V6)),
    ("raw_ipv6_hop_by_hop_and_destination_options_tcp", DLT_RAW, IP6_EXT, expected_segment(V6)),
    (
        "ipv4_total_length_larger_than_the_frame_is_lost_payload",
        DLT_EN10MB,
        craft.ethernet(craft.ipv4("10.0.0.1", "10.0.0.2", tcp_segment(V4).tcp_bytes(), total_length=20 + 20 + len(PAYLOAD) + 100)),
        expected_segment(V4, lost=100),
    ),
    (
        "ipv6_payload_length_larger_than_the_frame_is_lost_payload",
        DLT_EN10MB,
        craft.ethernet(IP6[:4] + struct.pack(">H", 20 + len(PAYLOAD) + 100) + IP6[6:]),
        expected_segment(V6, lost=100),
    ),
    (
        "ethernet_padding_after_the_ip_packet_is_not_payload",
        DLT_EN10MB,
        craft.ethernet(craft.ip_packet(tcp_segment(V4, b""))) + b"\0" * 6,
        expected_segment(V4, payload=b""),
    ),
    (
        "tcp_data_offset_below_5_is_bad_tcp_header",
        DLT_EN10MB,
        craft.ethernet(IP4[:20] + IP4[20:32] + bytes([0x40]) + IP4[33:]),
        "bad_tcp_header",
    ),
    (
        "tcp_data_offset_past_the_packet_is_bad_tcp_header",
        DLT_EN10MB,
        craft.ethernet(craft.ipv4("10.0.0.1", "10.0.0.2", tcp_segment(V4, b"").tcp_bytes()[:12] + bytes([0xF0]) + tcp_segment(V4, b"").tcp_bytes()[13:])),
        "bad_tcp_header",
    ),
    (
        "ipv4_header_length_below_5_is_bad_ip_header",
        DLT_EN10MB,
        craft.ethernet(bytes([0x44]) + IP4[1:]),
        "bad_ip_header",
    ),
    (
        "ipv4_total_length_below_header_length_is_bad_ip_header",
        DLT_EN10MB,
        craft.ethernet(IP4[:2] + struct.pack(">H", 19) + IP4[4:]),
        "bad_ip_header",
    ),
    (
        "ethertype_ipv4_carrying_version_6_is_bad_ip_header",
        DLT_EN10MB,
        craft.ethernet(IP4)[:12] + b"\x08\x00" + IP6,
        "bad_ip_header",
    ),
    (
        "udp_is_not_tcp",
        DLT_EN10MB,
        craft.ethernet(craft.ipv4("10.0.0.1", "10.0.0.2", bytes(dpkt.udp.UDP(sport=5353, dport=53, data=b"q")), proto=17)),
        None,
    ),
    (
        "udp_over_ipv6_is_not_tcp",
        DLT_EN10MB,
        craft.ethernet(craft.ipv6("2001:db8::1", "2001:db8::2", bytes(dpkt.udp.UDP(sport=5353, dport=53, data=b"q")), nxt=17)),
        None,
    ),
    (
        "arp_is_not_ip",
        DLT_EN10MB,
        craft.SERVER_MAC + craft.CLIENT_MAC + b"\x08\x06" + bytes(dpkt.arp.ARP()),
        None,
    ),
    (
        "null_with_an_unknown_family_is_not_ip",
        DLT_NULL,
        null_frame(IP4, 7, "<"),
        None,
    ),
    ("ipv4_ttl_is_the_header_s", DLT_RAW,
     craft.ipv4("10.0.0.1", "10.0.0.2", TCP4_BYTES, ttl=3), expected_segment(V4, ttl=3)),
    ("ipv6_hop_limit_is_the_ttl", DLT_RAW, craft.ipv6("2001:db8::1", "2001:db8::2", TCP6_BYTES, hop_limit=200),
     expected_segment(V6, ttl=200)),
]


@pytest.mark.parametrize("linktype,frame,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decode_fast_path_and_dpkt_path_agree(linktype: int, frame: bytes, expected) -> None:
    assert (expected, expected) == both(linktype, frame)


# ------------------------------------------------------------- fragments


def frags4() -> list[bytes]:
    return craft.ipv4_fragments(craft.ipv4("10.0.0.1", "10.0.0.2", tcp_segment(V4).tcp_bytes(), ip_id=0x4242), 3)


def frags6(ext_headers=()) -> list[bytes]:
    return craft.ipv6_fragments(craft.ipv6("2001:db8::1", "2001:db8::2", tcp_segment(V6).tcp_bytes(), ext_headers=ext_headers), 3)


TCP4 = tcp_segment(V4).tcp_bytes()
TCP6 = tcp_segment(V6).tcp_bytes()
SRC4, DST4, SRC6, DST6 = packed("10.0.0.1"), packed("10.0.0.2"), packed("2001:db8::1"), packed("2001:db8::2")


def frag4_value(offset: int, more: bool, data: bytes, ctx=None) -> Fragment:
    return Fragment((4, SRC4, DST4, 6, 0x4242, ctx), 4, SRC4, DST4, 6, offset, more, data, 0, 64, ctx, False)


def frag6_value(offset: int, more: bool, data: bytes, ctx=None) -> Fragment:
    return Fragment((6, SRC6, DST6, 0x1234ABCD, ctx), 6, SRC6, DST6, 6, offset, more, data, 0, 64, ctx, False)


# craft cuts the 58-byte TCP segment (20 header + 38 payload) into three
# fragments of 24, 24 and 10 bytes (all but the last a multiple of 8).
FRAG_CASES = [
    (
        "ipv4_first_fragment",
        craft.ethernet(frags4()[0]),
        frag4_value(0, True, TCP4[0:24]),
    ),
    (
        "ipv4_middle_fragment",
        craft.ethernet(frags4()[1]),
        frag4_value(24, True, TCP4[24:48]),
    ),
    (
        "ipv4_last_fragment",
        craft.ethernet(frags4()[2]),
        frag4_value(48, False, TCP4[48:]),
    ),
    (
        "ipv6_first_fragment",
        craft.ethernet(frags6()[0]),
        frag6_value(0, True, TCP6[0:24]),
    ),
    (
        "ipv6_last_fragment",
        craft.ethernet(frags6()[2]),
        frag6_value(48, False, TCP6[48:]),
    ),
    (
        "ipv6_fragment_after_hop_by_hop_options",
        craft.ethernet(frags6([craft.hop_by_hop_options()])[1]),
        frag6_value(24, True, TCP6[24:48]),
    ),
]


def test_decode_fragment_test_data_is_cut_where_the_expected_values_say() -> None:
    assert (58, 58, [24, 24, 10]) == (len(TCP4), len(TCP6), [len(f) - 20 - 14 for f in map(craft.ethernet, frags4())])


@pytest.mark.parametrize("frame,expected", [c[1:] for c in FRAG_CASES], ids=[c[0] for c in FRAG_CASES])
def test_decode_ip_fragment_is_returned_for_the_fragments_stage(frame: bytes, expected: Fragment) -> None:
    assert (expected, expected) == both(DLT_EN10MB, frame)


# ------------------------------------------------------- tunnels, link types

O4A, O4B = "192.0.2.1", "192.0.2.2"  # a tunnel's outer endpoints
O6A, O6B = "2001:db8:ffff::1", "2001:db8:ffff::2"
PA, PB, P6A, P6B = packed(O4A), packed(O4B), packed(O6A), packed(O6B)
ETH4 = craft.ethernet(IP4)  # an Ethernet frame inside a tunnel


def outer4(payload: bytes, proto: int, ttl: int = 64) -> bytes:
    return craft.ipv4(O4A, O4B, payload, proto=proto, ttl=ttl)


def outer6(payload: bytes, nxt: int) -> bytes:
    return craft.ipv6(O6A, O6B, payload, nxt=nxt)


def over_udp(payload: bytes, dport: int, sport: int = 54321) -> bytes:
    return craft.ethernet(outer4(craft.udp(O4A, O4B, sport, dport, payload), craft.IPPROTO_UDP))


def eth(payload: bytes, etype: int) -> bytes:
    return craft.ethernet(payload, etype=etype)


def on_gre(inner: bytes, **kw) -> bytes:
    return craft.ethernet(outer4(craft.gre(inner, **kw), craft.IPPROTO_GRE))


def tun(*tunnels: tuple, vlans: tuple = ()) -> tuple:
    """An expected ctx: (vlans, tunnels)."""
    return (tuple(vlans), tuple(tunnels))


def nested_ipip(depth: int) -> bytes:
    pkt = IP4
    for _ in range(depth):
        pkt = outer4(pkt, craft.IPPROTO_IPIP)
    return craft.ethernet(pkt)


MPLS_100_200 = ("mpls", None, None, (100, 200))
GRE = ("gre", PA, PB, None)
IPIP = ("ipip", PA, PB, None)
# The first fragment of an outer IPv4 packet carrying GRE: 4 + 78 bytes of
# GRE and inner packet, cut into 48 + 34.
GRE_PAYLOAD = craft.gre(IP4, proto=0x0800)
OUTER_FRAGMENT = craft.ipv4_fragments(outer4(GRE_PAYLOAD, craft.IPPROTO_GRE), 2)[0]

TUNNEL_CASES = [
    ("mpls_two_labels_ipv4", DLT_EN10MB,
     eth(craft.mpls(IP4, [100, 200]), 0x8847), expected_segment(V4, ctx=tun(MPLS_100_200))),
    ("mpls_multicast_ethertype_ipv6", DLT_EN10MB, eth(craft.mpls(IP6, [17]), 0x8848),
     expected_segment(V6, ctx=tun(("mpls", None, None, (17,))))),
    ("mpls_ethernet_pseudowire_with_control_word", DLT_EN10MB, eth(craft.mpls(ETH4, [300], control_word=True), 0x8847),
     expected_segment(V4, ctx=tun(("mpls", None, None, (300,))))),
    ("mpls_ethernet_pseudowire_without_control_word", DLT_EN10MB, eth(craft.mpls(ETH4, [300]), 0x8847),
     expected_segment(V4, ctx=tun(("mpls", None, None, (300,))))),
    # A VLAN-tagged frame without control word reads as Ethernet both ways
    # (0x8100 at byte 12, 0x0800 at byte 16): not decoded.
    ("mpls_pseudowire_read_two_ways_is_not_decoded", DLT_EN10MB,
     eth(craft.mpls(craft.ethernet(IP4, tags=craft.dot1q(5)), [300]), 0x8847), None),
    ("mpls_payload_neither_ip_nor_ethernet_is_not_tcp", DLT_EN10MB, eth(craft.mpls(b"\x11" * 60, [1]), 0x8847), None),
    ("mpls_sixteen_labels_are_decoded", DLT_EN10MB, eth(craft.mpls(IP4, list(range(16))), 0x8847),
     expected_segment(V4, ctx=tun(("mpls", None, None, tuple(range(16)))))),
    ("mpls_seventeen_labels_are_too_deep", DLT_EN10MB,
     eth(craft.mpls(IP4, list(range(17))), 0x8847), "tunnel_too_deep"),
    ("mpls_stack_cut_short_is_truncated_frame", DLT_EN10MB,
     eth(craft.mpls(IP4, [1, 2])[:6], 0x8847), "truncated_frame"),
    ("pppoe_session_ipv4", DLT_EN10MB, eth(craft.pppoe_session(IP4, 0x1234), 0x8864),
     expected_segment(V4, ctx=tun(("pppoe", None, None, 0x1234)))),
    ("pppoe_session_ipv6_in_a_vlan", DLT_EN10MB,
     craft.ethernet(craft.pppoe_session(IP6, 7), tags=craft.dot1q(40), etype=0x8864),
     expected_segment(V6, ctx=tun(("pppoe", None, None, 7), vlans=(40,)))),
    ("pppoe_version_2_is_bad_tunnel_header", DLT_EN10MB, eth(craft.pppoe_session(IP4, 1, version_type=0x21), 0x8864),
     "bad_tunnel_header"),
    ("pppoe_lcp_is_not_tcp", DLT_EN10MB, eth(struct.pack(">BBHHH", 0x11, 0, 1, 6, 0xC021) + bytes(4), 0x8864), None),
    ("gre_ipv4", DLT_EN10MB, on_gre(IP4, proto=0x0800), expected_segment(V4, ctx=tun(GRE))),
    ("gre_checksum_key_sequence_ipv6", DLT_EN10MB, on_gre(IP6, proto=0x86DD, key=7, seq=3, checksum=True),
     expected_segment(V6, ctx=tun(("gre", PA, PB, 7)))),
    ("gre_over_ipv6", DLT_EN10MB, craft.ethernet(outer6(craft.gre(IP4, 0x0800, key=9), craft.IPPROTO_GRE)),
     expected_segment(V4, ctx=tun(("gre", P6A, P6B, 9)))),
    ("gre_transparent_ethernet_with_a_vlan", DLT_EN10MB,
     on_gre(craft.ethernet(IP4, tags=craft.dot1q(30)), proto=0x6558, key=5),
     expected_segment(V4, ctx=tun(("gre", PA, PB, 5), vlans=(30,)))),
    ("gre_mpls_ipv4", DLT_EN10MB, on_gre(craft.mpls(IP4, [44]), proto=0x8847),
     expected_segment(V4, ctx=tun(GRE, ("mpls", None, None, (44,))))),
    ("gre_version_1_pptp_is_not_decoded", DLT_EN10MB, on_gre(IP4, proto=0x0800, version=1), None),
    ("gre_routing_bit_is_bad_tunnel_header", DLT_EN10MB,
     craft.ethernet(outer4(struct.pack(">HH", 0x4000, 0x0800) + bytes(4) + IP4, craft.IPPROTO_GRE)),
     "bad_tunnel_header"),
    ("gre_header_cut_short_is_truncated_frame", DLT_EN10MB, craft.ethernet(outer4(b"\x20\x00\x08", craft.IPPROTO_GRE)),
     "truncated_frame"),
    ("gre_key_cut_short_is_truncated_frame", DLT_EN10MB,
     craft.ethernet(outer4(struct.pack(">HH", 0x2000, 0x0800) + b"\0\0", craft.IPPROTO_GRE)), "truncated_frame"),
    ("erspan_type_2", DLT_EN10MB, craft.ethernet(outer4(craft.erspan2(ETH4, 77), craft.IPPROTO_GRE)),
     expected_segment(V4, ctx=tun(("erspan", PA, PB, 77)))),
    ("erspan_type_3_with_platform_subheader", DLT_EN10MB,
     craft.ethernet(outer4(craft.erspan3(ETH4, 99, subheader=True), craft.IPPROTO_GRE)),
     expected_segment(V4, ctx=tun(("erspan", PA, PB, 99)))),
    ("erspan_type_3_ip_frame", DLT_EN10MB,
     craft.ethernet(outer4(craft.erspan3(IP6, 98, frame_type=2), craft.IPPROTO_GRE)),
     expected_segment(V6, ctx=tun(("erspan", PA, PB, 98)))),
    ("erspan_type_1_has_no_header_nor_session", DLT_EN10MB, on_gre(ETH4, proto=0x88BE),
     expected_segment(V4, ctx=tun(("erspan", PA, PB, None)))),
    ("erspan_type_2_with_version_2_is_bad_tunnel_header", DLT_EN10MB,
     on_gre(struct.pack(">HHI", 2 << 12, 5, 0) + ETH4, proto=0x88BE, seq=1), "bad_tunnel_header"),
    ("erspan_type_3_header_cut_short_is_truncated_frame", DLT_EN10MB,
     on_gre(bytes([0x20]) + bytes(5), proto=0x22EB, seq=1),
     "truncated_frame"),
    ("vxlan", DLT_EN10MB,
     over_udp(craft.vxlan(ETH4, 5000), 4789), expected_segment(V4, ctx=tun(("vxlan", PA, PB, 5000)))),
    ("vxlan_vlans_outside_and_inside", DLT_EN10MB,
     craft.ethernet(outer4(craft.udp(O4A, O4B, 1, 4789, craft.vxlan(craft.ethernet(IP4, tags=craft.dot1q(12)), 5001)),
                           17),
                    tags=craft.dot1q(10)),
     expected_segment(V4, ctx=tun(("vxlan", PA, PB, 5001), vlans=(10, 12)))),
    ("vxlan_without_the_i_flag_has_no_vni", DLT_EN10MB, over_udp(craft.vxlan(ETH4, 5000, valid=False), 4789),
     expected_segment(V4, ctx=tun(("vxlan", PA, PB, None)))),
    ("vxlan_header_cut_short_is_truncated_frame", DLT_EN10MB, over_udp(b"\x08\0\0\0", 4789), "truncated_frame"),
    ("udp_from_port_4789_is_not_vxlan", DLT_EN10MB, over_udp(craft.vxlan(ETH4, 1), 53, sport=4789), None),
    ("geneve_ethernet_with_options", DLT_EN10MB, over_udp(craft.geneve(ETH4, 700, options=bytes(8)), 6081),
     expected_segment(V4, ctx=tun(("geneve", PA, PB, 700)))),
    ("geneve_ipv4", DLT_EN10MB, over_udp(craft.geneve(IP4, 701, proto=0x0800), 6081),
     expected_segment(V4, ctx=tun(("geneve", PA, PB, 701)))),
    ("geneve_version_1_is_bad_tunnel_header", DLT_EN10MB,
     over_udp(craft.geneve(ETH4, 1, version=1), 6081), "bad_tunnel_header"),
    ("geneve_options_cut_short_is_truncated_frame", DLT_EN10MB,
     over_udp(craft.geneve(b"", 1, options=bytes(8))[:12], 6081),
     "truncated_frame"),
    ("teredo_from_port_3544", DLT_EN10MB, over_udp(craft.teredo(IP6), 50000, sport=3544),
     expected_segment(V6, ctx=tun(("teredo", PA, PB, None)))),
    ("teredo_with_authentication_and_origin_indication", DLT_EN10MB,
     over_udp(craft.teredo(IP6, origin=(40000, "198.51.100.7"), auth=True), 3544),
     expected_segment(V6, ctx=tun(("teredo", PA, PB, None)))),
    ("teredo_between_other_ports_when_the_lengths_agree", DLT_EN10MB,
     over_udp(craft.teredo(IP6, origin=(3797, "192.0.2.1")), 3797, sport=32900),
     expected_segment(V6, ctx=tun(("teredo", PA, PB, None)))),
    ("udp_that_only_looks_like_teredo_is_plain_udp", DLT_EN10MB,
     over_udp(craft.teredo(IP6) + b"x", 3797, sport=32900), None),
    ("teredo_cut_inside_the_ipv6_header_is_truncated_frame", DLT_EN10MB,
     over_udp(craft.teredo(IP6), 3544)[: 14 + 20 + 8 + 30], "truncated_frame"),
    ("ipv4_in_ipv4", DLT_EN10MB, craft.ethernet(outer4(IP4, craft.IPPROTO_IPIP)), expected_segment(V4, ctx=tun(IPIP))),
    ("ipv6_in_ipv4", DLT_EN10MB, craft.ethernet(outer4(IP6, craft.IPPROTO_IPV6)), expected_segment(V6, ctx=tun(IPIP))),
    ("ipv4_in_ipv6", DLT_EN10MB, craft.ethernet(outer6(IP4, craft.IPPROTO_IPIP)),
     expected_segment(V4, ctx=tun(("ipip", P6A, P6B, None)))),
    ("ipv6_in_ipv6", DLT_EN10MB, craft.ethernet(outer6(IP6, craft.IPPROTO_IPV6)),
     expected_segment(V6, ctx=tun(("ipip", P6A, P6B, None)))),
    ("protocol_4_carrying_ipv6_is_bad_ip_header", DLT_EN10MB,
     craft.ethernet(outer4(IP6, craft.IPPROTO_IPIP)), "bad_ip_header"),
    ("ttl_is_the_inner_header_s", DLT_EN10MB,
     craft.ethernet(outer4(craft.ipv4("10.0.0.1", "10.0.0.2", TCP4_BYTES, ttl=9), craft.IPPROTO_IPIP, ttl=200)),
     expected_segment(V4, ttl=9, ctx=tun(IPIP))),
    ("vxlan_in_gre", DLT_EN10MB,
     on_gre(craft.ethernet(craft.ipv4("198.51.100.1", "198.51.100.2",
                                      craft.udp("198.51.100.1", "198.51.100.2", 1234, 4789, craft.vxlan(ETH4, 42)),
                                      proto=17)),
            proto=0x6558, key=1),
     expected_segment(V4, ctx=tun(("gre", PA, PB, 1), ("vxlan", packed("198.51.100.1"), packed("198.51.100.2"), 42)))),
    ("sixteen_nested_tunnels_are_decoded", DLT_EN10MB, nested_ipip(16), expected_segment(V4, ctx=tun(*[IPIP] * 16))),
    ("seventeen_nested_tunnels_are_too_deep", DLT_EN10MB, nested_ipip(17), "tunnel_too_deep"),
    ("fragment_inside_a_tunnel_carries_the_tunnel", DLT_EN10MB, on_gre(frags4()[0], proto=0x0800, key=3),
     frag4_value(0, True, TCP4[0:24], ctx=tun(("gre", PA, PB, 3)))),
    ("fragment_of_the_outer_packet_is_reassembled_first", DLT_EN10MB, craft.ethernet(OUTER_FRAGMENT),
     Fragment((4, PA, PB, 47, 0, None), 4, PA, PB, 47, 0, True, GRE_PAYLOAD[:48], 0, 64, None, False)),
]

PPP_LCP = b"\xff\x03\xc0\x21" + bytes(8)
LINK_CASES = [
    ("openbsd_loopback_ipv6", DLT_LOOP, null_frame(IP6, 24, ">"), expected_segment(V6)),
    ("raw_bsd_dlt14_ipv4", DLT_RAW_BSD, IP4, expected_segment(V4)),
    ("raw_ipv4_linktype_228", DLT_IPV4, IP4, expected_segment(V4)),
    ("raw_ipv6_linktype_229", DLT_IPV6, IP6, expected_segment(V6)),
    ("ppp_ipv4", DLT_PPP, craft.ppp(IP4), expected_segment(V4)),
    ("ppp_ipv6_without_address_and_control", DLT_PPP, craft.ppp(IP6, address_control=False), expected_segment(V6)),
    ("ppp_protocol_compressed_to_one_byte", DLT_PPP,
     craft.ppp(IP4, address_control=False, compressed=True), expected_segment(V4)),
    ("ppp_mpls", DLT_PPP,
     b"\xff\x03\x02\x81" + craft.mpls(IP4, [5]), expected_segment(V4, ctx=tun(("mpls", None, None, (5,))))),
    ("ppp_lcp_is_not_tcp", DLT_PPP, PPP_LCP, None),
    ("ppp_in_hdlc_framing", DLT_PPP_SERIAL, craft.ppp(IP4), expected_segment(V4)),
    ("ppp_hdlc_link_type_carrying_cisco_hdlc", DLT_PPP_SERIAL, craft.cisco_hdlc(IP6), expected_segment(V6)),
    ("pppoe_link_type", DLT_PPP_ETHER,
     craft.pppoe_session(IP4, 0x1234), expected_segment(V4, ctx=tun(("pppoe", None, None, 0x1234)))),
    ("cisco_hdlc_ipv4", DLT_C_HDLC, craft.cisco_hdlc(IP4), expected_segment(V4)),
    ("cisco_hdlc_broadcast_ipv6", DLT_C_HDLC, craft.cisco_hdlc(IP6, address=0x8F), expected_segment(V6)),
    ("cisco_hdlc_slarp_is_not_tcp", DLT_C_HDLC, craft.cisco_hdlc(bytes(20), etype=0x8035), None),
    ("ppp_with_direction", DLT_PPP_WITH_DIR, b"\x01" + craft.ppp(IP4), expected_segment(V4)),
    ("cisco_hdlc_with_direction", DLT_C_HDLC_WITH_DIR, b"\x00" + craft.cisco_hdlc(IP6), expected_segment(V6)),
    ("mpls_link_type", DLT_MPLS, craft.mpls(IP4, [16]), expected_segment(V4, ctx=tun(("mpls", None, None, (16,))))),
    ("nflog_ipv4", DLT_NFLOG, craft.nflog(IP4), expected_segment(V4)),
    ("nflog_ipv6", DLT_NFLOG, craft.nflog(IP6), expected_segment(V6)),
    ("nflog_without_a_payload_attribute_is_not_tcp", DLT_NFLOG, craft.nflog(IP4)[:4 + 8 + 12], None),
    ("nflog_ipv4_family_with_an_ipv6_packet_is_bad_ip_header", DLT_NFLOG, craft.nflog(IP6, family=2), "bad_ip_header"),
    ("nflog_bridge_family_is_not_decoded", DLT_NFLOG, craft.nflog(IP4, family=7), None),
    ("nflog_attribute_shorter_than_its_header_is_truncated_frame", DLT_NFLOG,
     b"\x02\x00\x00\x2a" + struct.pack("<HH", 2, 1),
     "truncated_frame"),
]


@pytest.mark.parametrize("linktype,frame,expected", [c[1:] for c in TUNNEL_CASES + LINK_CASES],
                         ids=[c[0] for c in TUNNEL_CASES + LINK_CASES])
def test_decode_tunnels_and_link_types_both_paths(linktype: int, frame: bytes, expected) -> None:
    assert (expected, expected) == both(linktype, frame)


def test_decode_every_supported_link_type_has_a_case() -> None:
    assert set(SUPPORTED_LINKTYPES) == {c[1] for c in CASES + LINK_CASES}


# ------------------------------------------------------------- truncation

HEADER_LEN = {
    # (linktype, frame builder, addresses, bytes before the TCP payload, ctx)
    "ethernet_ipv4": (DLT_EN10MB, craft.ethernet(IP4), V4, 14 + 20 + 20, None),
    "ethernet_ipv6": (DLT_EN10MB, craft.ethernet(IP6), V6, 14 + 40 + 20, None),
    "ethernet_8021q_ipv4": (DLT_EN10MB, craft.ethernet(IP4, tags=craft.dot1q(7)), V4, 18 + 20 + 20, tun(vlans=(7,))),
    "ethernet_qinq_ipv6": (DLT_EN10MB, craft.ethernet(IP6, tags=craft.qinq(1, 2)), V6, 22 + 40 + 20, tun(vlans=(1, 2))),
    "ethernet_ipv6_ext": (DLT_EN10MB, craft.ethernet(IP6_EXT), V6, 14 + 40 + 16 + 20, None),
    "sll_ipv4": (DLT_LINUX_SLL, craft.linux_sll(IP4), V4, 16 + 20 + 20, None),
    "sll_ipv6": (DLT_LINUX_SLL, craft.linux_sll(IP6), V6, 16 + 40 + 20, None),
    "sll2_ipv4": (DLT_LINUX_SLL2, craft.linux_sll2(IP4), V4, 20 + 20 + 20, None),
    "raw_ipv4": (DLT_RAW, IP4, V4, 20 + 20, None),
    "raw101_ipv6": (LINKTYPE_RAW, IP6, V6, 40 + 20, None),
    "null_ipv4": (DLT_NULL, null_frame(IP4, 2, "<"), V4, 4 + 20 + 20, None),
    "null_ipv6": (DLT_NULL, null_frame(IP6, 30, ">"), V6, 4 + 40 + 20, None),
    "ppp_ipv6": (DLT_PPP, craft.ppp(IP6), V6, 4 + 40 + 20, None),
    "cisco_hdlc_ipv4": (DLT_C_HDLC, craft.cisco_hdlc(IP4), V4, 4 + 20 + 20, None),
    "pppoe_link_ipv4": (DLT_PPP_ETHER, craft.pppoe_session(IP4, 9), V4, 8 + 20 + 20, tun(("pppoe", None, None, 9))),
    "mpls_ipv4": (DLT_EN10MB, eth(craft.mpls(IP4, [100, 200]), 0x8847), V4, 14 + 8 + 20 + 20, tun(MPLS_100_200)),
    "pppoe_ipv6": (DLT_EN10MB, eth(craft.pppoe_session(IP6, 3), 0x8864), V6, 14 + 8 + 40 + 20,
                   tun(("pppoe", None, None, 3))),
    "gre_key_ipv4": (DLT_EN10MB, on_gre(IP4, proto=0x0800, key=7), V4, 14 + 20 + 8 + 20 + 20, tun(("gre", PA, PB, 7))),
    "erspan3_subheader_ipv4": (DLT_EN10MB,
                               craft.ethernet(outer4(craft.erspan3(ETH4, 5, subheader=True), craft.IPPROTO_GRE)), V4,
                               14 + 20 + 8 + 12 + 8 + 14 + 20 + 20, tun(("erspan", PA, PB, 5))),
    "vxlan_vlan_ipv6": (DLT_EN10MB, over_udp(craft.vxlan(craft.ethernet(IP6, tags=craft.dot1q(3)), 9), 4789), V6,
                        14 + 20 + 8 + 8 + 18 + 40 + 20, tun(("vxlan", PA, PB, 9), vlans=(3,))),
    "geneve_options_ipv4": (DLT_EN10MB, over_udp(craft.geneve(IP4, 8, proto=0x0800, options=bytes(8)), 6081), V4,
                            14 + 20 + 8 + 8 + 8 + 20 + 20, tun(("geneve", PA, PB, 8))),
    "teredo_auth_origin_ipv6": (DLT_EN10MB, over_udp(craft.teredo(IP6, origin=(1, "192.0.2.9"), auth=True), 3544), V6,
                                14 + 20 + 8 + 13 + 8 + 40 + 20, tun(("teredo", PA, PB, None))),
    "ipv6_in_ipv4": (DLT_EN10MB, craft.ethernet(outer4(IP6, craft.IPPROTO_IPV6)), V6, 14 + 20 + 40 + 20, tun(IPIP)),
}


@pytest.mark.parametrize("name", sorted(HEADER_LEN))
def test_decode_truncated_frame_at_every_length_is_an_anomaly_or_lost_payload(name: str) -> None:
    """Cut before the end of the TCP header: ``truncated_frame``; cut inside
    the payload: the segment with the rest counted as lost (snaplen)."""
    linktype, frame, ends, header_len, ctx = HEADER_LEN[name]
    assert len(frame) == header_len + len(PAYLOAD)
    for n in range(len(frame) + 1):
        if n < header_len:
            expected = "truncated_frame"
        else:
            kept = n - header_len
            expected = expected_segment(ends, PAYLOAD[:kept], len(PAYLOAD) - kept, ctx=ctx)
        assert (expected, expected) == both(linktype, frame[:n]), f"frame cut to {n} bytes"


def test_decode_nflog_cut_at_every_length() -> None:
    """NFLOG has no length of its own: cut between two attributes, before the
    payload one, it is a whole NFLOG message without a packet (None);
    anywhere else before the TCP payload, ``truncated_frame``."""
    # Header 4, packet header attribute 8, prefix attribute 4 + 7 padded to
    # 12, payload attribute header 4; the last 2 bytes of padding left off.
    frame = craft.nflog(IP4)[:-2]
    header_len = 28 + 20 + 20
    assert len(frame) == header_len + len(PAYLOAD)
    for n in range(len(frame) + 1):
        if n in (4, 12, 23, 24):  # 23: the prefix whole, its padding not
            expected = None
        elif n < header_len:
            expected = "truncated_frame"
        else:
            expected = expected_segment(V4, PAYLOAD[: n - header_len], len(PAYLOAD) - (n - header_len))
        assert (expected, expected) == both(DLT_NFLOG, frame[:n]), f"frame cut to {n} bytes"


# ------------------------------------------------------------- checksums


def _segment_summing_to_zero(v6: bool) -> bytes:
    """A TCP segment (header and payload) whose ones' complement sum with its
    pseudo-header, checksum field 0, is 0xFFFF: its checksum is then 0x0000,
    and 0xFFFF (the other zero) must be read as valid too (RFC 1624 section 3).
    The last two payload bytes are chosen to make it so; dpkt.in_cksum is the
    independent arithmetic."""
    seg = tcp_segment(V6 if v6 else V4, PAYLOAD + b"\0\0")
    raw = bytearray(seg.tcp_bytes())
    raw[16:18] = b"\0\0"
    src, dst = (packed(V6[0]), packed(V6[2])) if v6 else (packed(V4[0]), packed(V4[2]))
    pseudo = src + dst + (struct.pack(">I3xB", len(raw), 6) if v6 else struct.pack(">xBH", 6, len(raw)))
    complement = dpkt.in_cksum(pseudo + bytes(raw))  # ~sum: adding it as a word makes the sum 0xFFFF
    raw[-2:] = struct.pack(">H", complement)
    assert dpkt.in_cksum(pseudo + bytes(raw)) == 0
    return bytes(raw)


def routing_header(segments_left: int) -> craft.ExtHeader:
    """A Routing header (RFC 8200 section 4.4): length 0, type 0, ``segments_left``."""
    return craft.ExtHeader(43, bytes([0, 0, segments_left]) + bytes(4))


def _with_checksum(tcp: bytes, value: int) -> bytes:
    return tcp[:16] + struct.pack(">H", value) + tcp[18:]


ZERO4 = _segment_summing_to_zero(False)
ZERO6 = _segment_summing_to_zero(True)
BAD4 = bytearray(craft.ethernet(IP4))
BAD4[-1] ^= 0x01  # one payload bit flipped after the checksum was computed
ODD = tcp_segment(V4, b"GET /odd HTTP/1.0\r\n\r\n" + b"x")  # an odd number of bytes

CHECKSUM_CASES = [
    # (name, linktype, frame, csum with verify)
    ("ethernet_ipv4_valid", DLT_EN10MB, craft.ethernet(IP4), 1),
    ("ethernet_ipv4_one_bit_flipped", DLT_EN10MB, bytes(BAD4), 0),
    ("ethernet_ipv4_checksum_field_wrong", DLT_EN10MB,
     craft.ethernet(craft.ipv4(V4[0], V4[2], _with_checksum(TCP4_BYTES, 0x1234))), 0),
    ("ethernet_ipv4_odd_length_valid", DLT_EN10MB, craft.ethernet(craft.ip_packet(ODD)), 1),
    ("ethernet_ipv6_valid", DLT_EN10MB, craft.ethernet(IP6), 1),
    ("ethernet_ipv6_wrong", DLT_EN10MB,
     craft.ethernet(craft.ipv6(V6[0], V6[2], _with_checksum(TCP6_BYTES, 0xBEEF))), 0),
    ("sll_ipv4_valid", DLT_LINUX_SLL, craft.linux_sll(IP4), 1),
    ("checksum_0x0000_valid", DLT_EN10MB, craft.ethernet(craft.ipv4(V4[0], V4[2], _with_checksum(ZERO4, 0x0000))), 1),
    ("checksum_0xffff_is_the_same_zero", DLT_EN10MB,
     craft.ethernet(craft.ipv4(V4[0], V4[2], _with_checksum(ZERO4, 0xFFFF))), 1),
    ("ipv6_checksum_0xffff", DLT_EN10MB, craft.ethernet(craft.ipv6(V6[0], V6[2], _with_checksum(ZERO6, 0xFFFF))), 1),
    ("ipv4_options_valid", DLT_EN10MB,
     craft.ethernet(bytes([0x46]) + IP4[1:2] + struct.pack(">H", len(IP4) + 4) + IP4[4:10]
                                                      + b"\0\0" + IP4[12:20] + b"\x01\x01\x01\x00" + IP4[20:]), 1),
    ("inside_vxlan_valid", DLT_EN10MB, over_udp(craft.vxlan(ETH4, 5000), 4789), 1),
    ("inside_teredo_wrong", DLT_EN10MB,
     over_udp(craft.teredo(craft.ipv6(V6[0], V6[2], _with_checksum(TCP6_BYTES, 1))), 3544), 0),
    ("cut_by_the_snaplen_is_not_checked", DLT_EN10MB, craft.ethernet(IP4)[:-5], -1),
    ("ipv4_total_length_0_tso_is_not_checked", DLT_EN10MB, craft.ethernet(IP4[:2] + b"\0\0" + IP4[4:]), -1),
    ("ipv6_payload_length_0_is_not_checked", DLT_EN10MB, craft.ethernet(IP6[:4] + b"\0\0" + IP6[6:]), -1),
    ("ipv6_routing_header_with_segments_left_is_not_checked", DLT_EN10MB,
     craft.ethernet(craft.ipv6(V6[0], V6[2], TCP6_BYTES, ext_headers=[routing_header(segments_left=1)])), -1),
    ("ipv6_routing_header_with_no_segments_left_is_checked", DLT_EN10MB,
     craft.ethernet(craft.ipv6(V6[0], V6[2], TCP6_BYTES, ext_headers=[routing_header(segments_left=0)])), 1),
]


@pytest.mark.parametrize("linktype,frame,csum", [c[1:] for c in CHECKSUM_CASES], ids=[c[0] for c in CHECKSUM_CASES])
def test_decode_checksum_is_checked_only_when_asked(linktype: int, frame: bytes, csum: int) -> None:
    checked, unchecked = both(linktype, frame, True), both(linktype, frame, False)
    assert ((csum, csum), (-1, -1)) == ((checked[0].csum, checked[1].csum), (unchecked[0].csum, unchecked[1].csum))
    assert checked[0]._replace(csum=-1) == unchecked[0]


def test_decode_checksum_of_a_reassembled_datagram_is_the_whole_segment_s() -> None:
    """The fragments stage hands the whole datagram to decode_transport."""
    good = decode_transport(4, SRC4, DST4, 6, TCP4, 0, 64, None, True)
    bad = decode_transport(4, SRC4, DST4, 6, TCP4[:-1] + b"?", 0, 64, None, True)
    cut = decode_transport(4, SRC4, DST4, 6, TCP4[:-1], 1, 64, None, True)
    assert (1, 0, -1) == (good.csum, bad.csum, cut.csum)
    assert decode_frame(DLT_EN10MB, craft.ethernet(frags4()[0]), True).verify is True


# ------------------------------------------------------------- any bytes

LINKTYPES = sorted(SUPPORTED_LINKTYPES)


def _valid(value) -> bool:
    """None, a Segment, a Fragment, or the name of a documented anomaly."""
    if isinstance(value, str):
        return value in ANOMALIES
    return value is None or isinstance(value, (Segment, Fragment))


@pytest.mark.parametrize("linktype", LINKTYPES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=st.binary(max_size=120))
def test_decode_random_bytes_never_raise_and_both_paths_agree(linktype: int, frame: bytes) -> None:
    fast, slow = both(linktype, frame)
    assert (True, fast) == (_valid(fast), slow)


# Random bytes rarely get past the link header; mutate real frames instead.
SEEDS = ([(lt, fr) for _name, lt, fr, _exp in CASES + TUNNEL_CASES + LINK_CASES]
         + [(DLT_EN10MB, fr) for _name, fr, _exp in FRAG_CASES])


@settings(max_examples=150, deadline=None)
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 200),
    verify=st.booleans(),
)
def test_decode_mutated_frames_never_raise_and_both_paths_agree(seed, edits, cut, verify) -> None:
    linktype, frame = seed
    buf = bytearray(frame)
    for pos, value in edits:
        if pos < len(buf):
            buf[pos] = value
    mutated = bytes(buf[: len(buf) - cut % (len(buf) + 1)])
    fast, slow = both(linktype, mutated, verify)
    assert (True, fast) == (_valid(fast), slow)
