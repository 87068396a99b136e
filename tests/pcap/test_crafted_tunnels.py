"""Tunnels: the same HTTP exchange carried every way sniffd decodes, read by
the real `sniffd read`, each capture's records written out by hand.

Both directions go through the tunnel as real endpoints send them: the outer
addresses swapped for the server's packets (ERSPAN aside: a switch mirrors
both directions to one collector), MPLS labels chosen for each direction on
its own.  Where tshark decodes the same capture, the request URIs it finds
must be sniffd's too.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import craft
import orjson
import pytest
from craft import TcpConversation
from pcapcheck import T0, read_records, run_sniffd, without_run_fields
from test_crafted_linktypes import EXPECTED_V4, EXPECTED_V6, REQUEST, RESPONSE, encapsulated, exchange

V4_ENDS = (("10.0.0.1", 40000), ("10.0.0.2", 80))
V6_ENDS = (("2001:db8::10", 40000), ("2001:db8::80", 80))
CLIENTS = {"10.0.0.1", "2001:db8::10"}
OA, OB = "192.0.2.1", "192.0.2.2"  # tunnel endpoints: OA on the client's side
OA6, OB6 = "2001:db8:ffff::1", "2001:db8:ffff::2"


def from_client(l3: bytes) -> bool:
    return craft.ip_src(l3) in CLIENTS


def outer(l3: bytes, a: str = OA, b: str = OB) -> tuple[str, str]:
    """The outer (source, destination) for a packet of either direction."""
    return (a, b) if from_client(l3) else (b, a)


def ipv4_over(l3: bytes, proto: int, payload: bytes | None = None, a: str = OA, b: str = OB) -> bytes:
    src, dst = outer(l3, a, b)
    return craft.ipv4(src, dst, l3 if payload is None else payload, proto=proto)


def udp_over(l3: bytes, payload: bytes, dport: int, sport: int = 50000) -> bytes:
    src, dst = outer(l3)
    if not from_client(l3) and dport not in (4789, 6081):
        sport, dport = dport, sport  # the reply comes back from the port it went to
    return craft.ethernet(craft.ipv4(src, dst, craft.udp(src, dst, sport, dport, payload), proto=craft.IPPROTO_UDP))


def ether(l3: bytes) -> bytes:
    return craft.ethernet(l3)


# name -> (wrap: IP packet -> frame, client and server, the record's vlan / tunnel fields)
TUNNELS = {
    "mpls": (
        # Labels differ by direction (each LSP is one-way): still one connection.
        lambda l3: craft.ethernet(craft.mpls(l3, [100, 200] if from_client(l3) else [300]), etype=0x8847),
        V4_ENDS, {"tunnel": [{"type": "mpls", "src": None, "dst": None, "labels": [100, 200]}]},
    ),
    "mpls_pseudowire": (
        lambda l3: craft.ethernet(craft.mpls(ether(l3), [16], control_word=True), etype=0x8847),
        V4_ENDS, {"tunnel": [{"type": "mpls", "src": None, "dst": None, "labels": [16]}]},
    ),
    "pppoe": (
        lambda l3: craft.ethernet(craft.pppoe_session(l3, 0x1234), etype=0x8864),
        V6_ENDS, {"tunnel": [{"type": "pppoe", "src": None, "dst": None, "session": 0x1234}]},
    ),
    "gre_key": (
        lambda l3: ether(ipv4_over(l3, craft.IPPROTO_GRE, craft.gre(l3, 0x0800, key=7))),
        V4_ENDS, {"tunnel": [{"type": "gre", "src": OA, "dst": OB, "key": 7}]},
    ),
    "gre_over_ipv6_ethernet_in_vlan": (
        lambda l3: ether(craft.ipv6(*outer(l3, OA6, OB6), craft.gre(craft.ethernet(l3, tags=craft.dot1q(30)), 0x6558),
                                    nxt=craft.IPPROTO_GRE)),
        V4_ENDS, {"vlan": [30], "tunnel": [{"type": "gre", "src": OA6, "dst": OB6, "key": None}]},
    ),
    "erspan2": (
        lambda l3: ether(craft.ipv4(OA, OB, craft.erspan2(ether(l3), 77), proto=craft.IPPROTO_GRE)),
        V4_ENDS, {"tunnel": [{"type": "erspan", "src": OA, "dst": OB, "session": 77}]},
    ),
    "erspan3": (
        lambda l3: ether(craft.ipv4(OA, OB, craft.erspan3(ether(l3), 78, subheader=True), proto=craft.IPPROTO_GRE)),
        V6_ENDS, {"tunnel": [{"type": "erspan", "src": OA, "dst": OB, "session": 78}]},
    ),
    "vxlan": (
        lambda l3: udp_over(l3, craft.vxlan(ether(l3), 5000), 4789),
        V4_ENDS, {"tunnel": [{"type": "vxlan", "src": OA, "dst": OB, "vni": 5000}]},
    ),
    "geneve": (
        lambda l3: udp_over(l3, craft.geneve(ether(l3), 700, options=bytes(8)), 6081),
        V6_ENDS, {"tunnel": [{"type": "geneve", "src": OA, "dst": OB, "vni": 700}]},
    ),
    "teredo_3544": (
        lambda l3: udp_over(l3, craft.teredo(l3), 3544),
        V6_ENDS, {"tunnel": [{"type": "teredo", "src": OA, "dst": OB}]},
    ),
    "teredo_relay_ports": (
        # Between a Teredo client and a relay: no port 3544 at all.
        lambda l3: udp_over(l3, craft.teredo(l3, origin=(32900, OB) if not from_client(l3) else None), 32900, 3797),
        V6_ENDS, {"tunnel": [{"type": "teredo", "src": OA, "dst": OB}]},
    ),
    "ipv4_in_ipv4": (
        lambda l3: ether(ipv4_over(l3, craft.IPPROTO_IPIP)),
        V4_ENDS, {"tunnel": [{"type": "ipip", "src": OA, "dst": OB}]},
    ),
    "ipv6_in_ipv4": (
        lambda l3: ether(ipv4_over(l3, craft.IPPROTO_IPV6)),
        V6_ENDS, {"tunnel": [{"type": "ipip", "src": OA, "dst": OB}]},
    ),
    "ipv4_in_ipv6": (
        lambda l3: ether(craft.ipv6(*outer(l3, OA6, OB6), l3, nxt=craft.IPPROTO_IPIP)),
        V4_ENDS, {"tunnel": [{"type": "ipip", "src": OA6, "dst": OB6}]},
    ),
    "vxlan_in_gre_with_vlans": (
        # Outer VLAN 10, GRE key 1 between OA and OB carrying Ethernet with
        # VLAN 20, then IPv4 between 198.51.100.1 and .2 carrying VXLAN 42.
        lambda l3: craft.ethernet(ipv4_over(l3, craft.IPPROTO_GRE, craft.gre(craft.ethernet(
            ipv4_over(l3, craft.IPPROTO_UDP, craft.udp(*outer(l3, "198.51.100.1", "198.51.100.2"), 1234, 4789,
                                                       craft.vxlan(ether(l3), 42)), "198.51.100.1", "198.51.100.2"),
            tags=craft.dot1q(20)), 0x6558, key=1)), tags=craft.dot1q(10)),
        V4_ENDS, {"vlan": [10, 20],
                  "tunnel": [{"type": "gre", "src": OA, "dst": OB, "key": 1},
                             {"type": "vxlan", "src": "198.51.100.1", "dst": "198.51.100.2", "vni": 42}]},
    ),
}


@pytest.mark.parametrize("name", sorted(TUNNELS))
def test_exchange_through_a_tunnel_gives_one_record_with_the_tunnel(tmp_path, name):
    wrap, ends, fields = TUNNELS[name]
    pcap = tmp_path / f"{name}.pcap"
    craft.capture(pcap, exchange(*ends), wrap=wrap)
    records = read_records(pcap)
    expected = encapsulated(EXPECTED_V6 if ends == V6_ENDS else EXPECTED_V4, **fields)
    assert [expected] == records
    assert list(expected) == list(records[0])  # vlan and tunnel right after server


def tshark_uris(pcap, *options: str) -> list[str]:
    command = ["tshark", "-r", str(pcap), *options, "-Y", "http.request", "-T", "fields", "-e", "http.request.uri"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout
    return out.split()


# tshark reads every one of these, two with an option: Teredo between other
# ports than 3544 with its Teredo heuristic (off by default), and an MPLS
# pseudowire with a control word when told the label carries one (without
# it, tshark reads the control word as the start of an Ethernet header).
TSHARK_OPTIONS = {
    "teredo_relay_ports": ("--enable-heuristic", "teredo_udp"),
    "mpls_pseudowire": ("-d", "mpls.label==16,pwethcw"),
}


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("name", sorted(TUNNELS))
def test_tshark_finds_the_same_requests_in_the_tunnel(tmp_path, name):
    wrap, ends, _fields = TUNNELS[name]
    pcap = tmp_path / f"{name}.pcap"
    # Two requests on the connection, so a second URI must be found too.
    c = TcpConversation(*ends)
    packets = [(T0 + i * 0.001, seg) for i, seg in enumerate(
        c.handshake() + c.client_data(REQUEST) + c.server_data(RESPONSE)
        + c.client_data(REQUEST.replace(b"/index.html", b"/second?x=1")) + c.server_data(RESPONSE) + c.close())]
    craft.capture(pcap, packets, wrap=wrap)
    sniffd = [r["request"]["uri"] for r in read_records(pcap)]
    assert (["/index.html", "/second?x=1"], sniffd) == (sniffd, tshark_uris(pcap, *TSHARK_OPTIONS.get(name, ())))


# --- connections told apart by their encapsulation ---------------------------------


def two_contexts(wraps) -> list[tuple[float, bytes]]:
    """Two exchanges with the same addresses and ports, each through its own
    wrap, interleaved packet by packet; the second 1 ms after the first."""
    out = []
    for n, wrap in enumerate(wraps):
        for ts, seg in exchange():
            out.append((ts + n * 0.001, craft.Frame(ts + n * 0.001, wrap(craft.ip_packet(seg)))))
    return sorted(out, key=lambda p: p[0])


def record_at(ms: float, duration: float, **fields) -> dict:
    rec = encapsulated(EXPECTED_V4, **fields)
    rec["ts"] = f"2026-11-21T10:42:05.{int(round(ms * 1000)):06d}Z"
    rec["duration_ms"] = duration
    return rec


@pytest.mark.parametrize("kind", ["vlan", "vni"])
def test_same_four_tuple_in_two_vlans_or_two_vnis_is_two_connections(tmp_path, kind):
    if kind == "vlan":
        wraps = [lambda l3, v=v: craft.ethernet(l3, tags=craft.dot1q(v)) for v in (100, 200)]
        fields = [{"vlan": [100]}, {"vlan": [200]}]
    else:
        wraps = [lambda l3, v=v: udp_over(l3, craft.vxlan(ether(l3), v), 4789) for v in (5000, 5001)]
        fields = [{"tunnel": [{"type": "vxlan", "src": OA, "dst": OB, "vni": v}]} for v in (5000, 5001)]
    pcap = tmp_path / f"two_{kind}.pcap"
    craft.write_pcap(pcap, [frame for _ts, frame in two_contexts(wraps)])
    # The request of each went at 3 ms (4 ms), its response at 10 ms (11 ms).
    assert [record_at(3, 7.0, **fields[0]), record_at(4, 7.0, **fields[1])] == read_records(pcap)


def test_outer_packet_fragmented_on_the_tunnel_path_is_put_back_together(tmp_path):
    """GRE packets cut in two by a small MTU on the tunnel's path, the
    response's pieces in reverse order."""
    frames = []
    for ts, seg in exchange():
        l3 = craft.ip_packet(seg)
        outer_packet = ipv4_over(l3, craft.IPPROTO_GRE, craft.gre(l3, 0x0800, key=7))
        pieces = craft.ipv4_fragments(outer_packet, 2) if len(outer_packet) > 100 else [outer_packet]
        frames += [craft.Frame(ts, ether(p)) for p in (pieces if from_client(l3) else pieces[::-1])]
    pcap = tmp_path / "frag.pcap"
    craft.write_pcap(pcap, frames)
    assert [encapsulated(EXPECTED_V4, tunnel=[{"type": "gre", "src": OA, "dst": OB, "key": 7}])] == read_records(pcap)


# --- broken tunnels: a named anomaly, never a crash ----------------------------------


def nested_ipip(l3: bytes, depth: int) -> bytes:
    src, dst = outer(l3)
    for _ in range(depth):
        l3 = craft.ipv4(src, dst, l3, proto=craft.IPPROTO_IPIP)
    return l3


_NOT_TCP = craft.ipv4("10.0.0.1", "10.0.0.2", b"")  # only gives the tunnel its direction
BROKEN = {
    # name: (frame, anomaly)
    "gre_header_cut_short": (ether(craft.ipv4(OA, OB, b"\x20\x00\x08", proto=craft.IPPROTO_GRE)), "truncated_frame"),
    "vxlan_header_cut_short": (udp_over(_NOT_TCP, b"\x08\x00\x00", 4789), "truncated_frame"),
    "geneve_version_1": (udp_over(_NOT_TCP, craft.geneve(b"", 1, version=1), 6081), "bad_tunnel_header"),
    "pppoe_version_2": (craft.ethernet(craft.pppoe_session(_NOT_TCP, 1, version_type=0x21), etype=0x8864),
                        "bad_tunnel_header"),
    "seventeen_nested_ipip": (ether(nested_ipip(craft.ip_packet(exchange()[3][1]), 17)), "tunnel_too_deep"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_tunnel_frame_is_counted_and_the_rest_is_read(tmp_path, name):
    """One broken frame among a GRE exchange: counted under its name, exit
    status 0, no traceback, the exchange's record as without it."""
    frame, anomaly = BROKEN[name]
    wrap, _ends, fields = TUNNELS["gre_key"]
    frames = craft.frames(exchange(), wrap=wrap)
    frames.insert(4, craft.Frame(T0 + 0.0035, frame))
    pcap = tmp_path / f"{name}.pcap"
    craft.write_pcap(pcap, frames)
    out = tmp_path / "out.jsonl"
    proc = run_sniffd("read", pcap, "-o", out, "--stats")
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    records = without_run_fields([orjson.loads(line) for line in out.read_text().splitlines()])  # strict
    assert (0, {anomaly: 1}, [encapsulated(EXPECTED_V4, **fields)]) == (proc.returncode, stats["anomalies"], records)
    assert "Traceback" not in proc.stderr


def test_sixteen_nested_tunnels_are_still_read(tmp_path):
    pcap = tmp_path / "deep.pcap"
    craft.capture(pcap, exchange(), wrap=lambda l3: ether(nested_ipip(l3, 16)))
    assert [encapsulated(EXPECTED_V4, tunnel=[{"type": "ipip", "src": OA, "dst": OB}] * 16)] == read_records(pcap)


def test_wrong_tcp_checksums_do_not_lose_the_transaction(tmp_path):
    """sniffd read does not check checksums (offload writes wrong ones on the
    capturing host's own packets): every segment's checksum broken, same record."""
    def wrap(l3: bytes) -> bytes:
        return ether(l3[: 20 + 16] + b"\xde\xad" + l3[20 + 18 :])

    pcap = tmp_path / "badsum.pcap"
    craft.capture(pcap, exchange(), wrap=wrap)
    assert [EXPECTED_V4] == read_records(pcap)
