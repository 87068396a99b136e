"""``sniffd read --workers N`` spreads connections over N processes; the
output must be exactly what one process writes, in the same order."""

from sniffd.decode import flow_hash

import ipaddress
import re
from pathlib import Path

import pytest

import craft
from craft import TcpConversation
from pcapcheck import T0, run_sniffd

ROOT_CAPTURES = sorted((Path(__file__).resolve().parents[2] / "captures").glob("*.pcap"))


def _exchange(conv: TcpConversation, t: float, n: int) -> list:
    """A handshake, one GET with a body of n bytes, a close; at time t."""
    req = b"GET /conn/%d HTTP/1.1\r\nHost: example.test\r\n\r\n" % n
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + b"z" * n
    segs = conv.handshake() + conv.client_data(req) + conv.server_data(resp, [30]) + [conv.client_ack()] + conv.close()
    return [(t + i * 0.0001, s) for i, s in enumerate(segs)]


def _mixed_capture(path) -> None:
    """40 IPv4 connections on even client ports (as Linux assigns them), 10 of
    them with the request IP-fragmented, and 10 IPv6 connections, interleaved."""
    packets = []
    for i in range(40):
        conv = TcpConversation(("10.0.0.%d" % (1 + i % 3), 40000 + 2 * i), ("10.0.0.200", 80))
        ex = _exchange(conv, T0 + i * 0.001, 50 + i)
        if i % 4 == 0:
            ts, req = ex[3]
            ex[3:4] = [(ts, frag) for frag in craft.ipv4_fragments(craft.ip_packet(req, ip_id=500 + i), 3)]
        packets += ex
    for i in range(10):
        conv = TcpConversation(("2001:db8::%x" % (i + 1), 50000 + 2 * i), ("2001:db8::80", 8080))
        packets += _exchange(conv, T0 + 0.5 + i * 0.001, 70 + i)
    packets.sort(key=lambda p: p[0])
    craft.capture(path, packets)


_UID = re.compile(r'"uid":"(C[0-9A-Za-z]{17})"')


def _numbered_uids(text: str) -> tuple[str, set[str]]:
    """``text`` with each uid replaced by the order of its first appearance
    (#0, #1, ...), and the uids it had: two outputs equal so numbered group
    their records into connections alike."""
    names: dict[str, int] = {}
    return _UID.sub(lambda m: '"uid":"#%d"' % names.setdefault(m.group(1), len(names)), text), set(names)


def _outputs(pcap, tmp_path, *extra) -> list[str]:
    """The outputs of 1, 2 and 3 workers, uids numbered (_numbered_uids);
    no uid is in two of them (every run and every worker draws its own)."""
    outs, uids = [], []
    for workers in (1, 2, 3):
        out = tmp_path / f"w{workers}.jsonl"
        proc = run_sniffd("read", pcap, "-o", out, "--workers", workers, *extra)
        assert (0, "") == (proc.returncode, proc.stderr)
        text, names = _numbered_uids(out.read_text())
        outs.append(text)
        uids.append(names)
    assert (set(), set(), set()) == (uids[0] & uids[1], uids[0] & uids[2], uids[1] & uids[2])
    return outs


def test_workers_give_the_same_records_in_the_same_order_on_mixed_traffic(tmp_path):
    pcap = tmp_path / "mixed.pcap"
    _mixed_capture(pcap)
    one, two, three = _outputs(pcap, tmp_path)
    assert 50 == len(one.splitlines())
    assert [one, one] == [two, three]


def test_workers_give_the_same_records_on_vlan_tagged_traffic(tmp_path):
    """Tagged frames are not the common frame decode_batch shards in C; Python hashes them alike."""
    packets = []
    for i in range(12):
        packets += _exchange(TcpConversation(("10.1.0.1", 41000 + 2 * i), ("10.1.0.2", 80)), T0 + i * 0.001, 10 + i)
    packets.sort(key=lambda p: p[0])
    pcap = tmp_path / "vlan.pcap"
    craft.capture(pcap, packets, tags=craft.dot1q(7))
    one, two, three = _outputs(pcap, tmp_path)
    assert 12 == len(one.splitlines())
    assert [one, one] == [two, three]


def test_workers_honour_the_users_bpf_filter(tmp_path):
    pcap = tmp_path / "mixed.pcap"
    _mixed_capture(pcap)
    one, two, three = _outputs(pcap, tmp_path, "-f", "tcp port 8080")
    assert 10 == len(one.splitlines())
    assert [one, one] == [two, three]


@pytest.mark.parametrize("pcap", ROOT_CAPTURES, ids=lambda p: p.name)
def test_workers_give_the_same_records_on_the_shipped_captures(pcap, tmp_path):
    one, two, three = _outputs(pcap, tmp_path)
    assert [one, one] == [two, three]


def _port_in_shard(client: str, server: str, sport: int, shard: int, start: int) -> int:
    """The first client port from ``start`` whose connection falls to
    ``shard`` of 2 (and of 3, so the three-worker run splits them too)."""
    c, s = ipaddress.ip_address(client).packed, ipaddress.ip_address(server).packed
    port = start
    while not (flow_hash(c, s, port, sport) % 2 == shard and flow_hash(c, s, port, sport) % 3 == shard):
        port += 2
    return port


def test_workers_keep_one_process_order_for_records_finished_at_the_same_moment(tmp_path):
    """Records finished at one packet time by connections of different
    workers: responses whose last segments carry the same timestamp, idle
    connections expired by one housekeeping pass, and connections still
    open at the end.  One process writes them in capture order (the first
    two) and in the order their connections began (the others); merging by
    time alone, with ties broken by worker number, put the second worker's
    first (seen on the benchmark corpus)."""
    packets = []
    t = T0
    # Pairs finishing together: the connection of worker 1 first in the file.
    for i in range(4):
        a = TcpConversation(("10.2.0.1", _port_in_shard("10.2.0.1", "10.2.0.9", 80, 1, 42000 + 200 * i)), ("10.2.0.9", 80))
        b = TcpConversation(("10.2.0.2", _port_in_shard("10.2.0.2", "10.2.0.9", 80, 0, 43000 + 200 * i)), ("10.2.0.9", 80))
        for conv, n in ((a, 11 + i), (b, 21 + i)):
            packets += [(t, s) for s in conv.handshake() + conv.client_data(b"GET /same/%d HTTP/1.1\r\nHost: h\r\n\r\n" % n)]
            t += 0.001
        last = t + 0.002
        for conv, n in ((a, 11 + i), (b, 21 + i)):
            packets.append((last, conv.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")[0]))
        t = last + 0.001
    # Requests left unanswered on both workers' connections: idle-expired
    # together (idle_timeout_s = 5 below), in the order they began, which
    # is not the order their requests were sent.
    quiet = []
    for i in range(6):
        shard = i % 2
        conv = TcpConversation(("10.3.0.%d" % (1 + i), _port_in_shard("10.3.0.%d" % (1 + i), "10.3.0.9", 80, shard, 44000)),
                               ("10.3.0.9", 80))
        packets += [(t + 0.0001 * k, s) for k, s in enumerate(conv.handshake())]
        t += 0.001
        quiet.append(conv)
    for conv in reversed(quiet):
        packets += [(t, s) for s in conv.client_data(b"GET /quiet HTTP/1.1\r\nHost: h\r\n\r\n")]
        t += 0.001
    # Still open at the end of the file, on both workers again.
    for i in range(4):
        conv = TcpConversation(("10.4.0.%d" % (1 + i), _port_in_shard("10.4.0.%d" % (1 + i), "10.4.0.9", 80, i % 2, 45000)),
                               ("10.4.0.9", 80))
        packets += [(t + 10 + 0.001 * i, s) for s in conv.handshake() + conv.client_data(b"GET /open HTTP/1.1\r\nHost: h\r\n\r\n")]
    packets.sort(key=lambda p: p[0])
    pcap = tmp_path / "ties.pcap"
    craft.capture(pcap, packets)
    cfg = tmp_path / "sniffd.toml"
    cfg.write_text("[limits]\nidle_timeout_s = 5.0\n")
    one, two, three = _outputs(pcap, tmp_path, "-c", cfg)
    uris = [line.split('"uri":"')[1].split('"')[0] for line in one.splitlines()]
    assert uris == ["/same/11", "/same/21", "/same/12", "/same/22", "/same/13", "/same/23", "/same/14", "/same/24"] + [
        "/quiet"] * 6 + ["/open"] * 4
    assert [one, one] == [two, three]


def test_workers_give_the_same_records_for_one_four_tuple_in_many_vlans_and_tunnels(tmp_path):
    """The same addresses and ports in 4 VLANs, 4 VXLAN VNIs and 4 GRE keys,
    all at the same instants: 12 connections in one shard, ordered by their
    encapsulation where time and endpoints tie."""
    def vxlan(vni):
        return lambda l3: craft.ethernet(craft.ipv4("192.0.2.1", "192.0.2.2", craft.udp(
            "192.0.2.1", "192.0.2.2", 1, 4789, craft.vxlan(craft.ethernet(l3), vni)), proto=17))

    def gre(key):
        return lambda l3: craft.ethernet(craft.ipv4("192.0.2.1", "192.0.2.2", craft.gre(l3, 0x0800, key=key), proto=47))

    wraps = [(lambda l3, v=v: craft.ethernet(l3, tags=craft.dot1q(v))) for v in (4, 3, 2, 1)]
    wraps += [vxlan(v) for v in (9, 8, 7, 6)] + [gre(k) for k in (5, 6, 7, 8)]
    frames = []
    for n, wrap in enumerate(wraps):
        conv = TcpConversation(("10.0.0.1", 40000), ("10.0.0.2", 80))
        frames += [(i, n, f) for i, f in enumerate(craft.frames(_exchange(conv, T0, 10 + n), wrap=wrap))]
    pcap = tmp_path / "contexts.pcap"
    craft.write_pcap(pcap, [f for _i, _n, f in sorted(frames, key=lambda x: (x[0], x[1]))])
    one, two, three = _outputs(pcap, tmp_path)
    assert 12 == len(one.splitlines())
    assert [one, one] == [two, three]
