"""``sniffd read --workers N`` spreads connections over N processes; the
output must be exactly what one process writes, in the same order."""

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


def _outputs(pcap, tmp_path, *extra) -> list[str]:
    outs = []
    for workers in (1, 2, 3):
        out = tmp_path / f"w{workers}.jsonl"
        proc = run_sniffd("read", pcap, "-o", out, "--workers", workers, *extra)
        assert (0, "") == (proc.returncode, proc.stderr)
        outs.append(out.read_text())
    return outs


def test_workers_give_the_same_records_in_the_same_order_on_mixed_traffic(tmp_path):
    pcap = tmp_path / "mixed.pcap"
    _mixed_capture(pcap)
    one, two, three = _outputs(pcap, tmp_path)
    assert 50 == len(one.splitlines())
    assert [one, one] == [two, three]


def test_workers_give_the_same_records_on_vlan_tagged_traffic(tmp_path):
    """Tagged frames are not matched by libpcap's shard filter; Python hashes them alike."""
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
