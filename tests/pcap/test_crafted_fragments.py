"""IP fragments arriving out of order are reassembled before TCP sees them.

The fragments of one datagram share a timestamp (sent back to back), so the
record's ts and duration_ms do not depend on which fragment's time a datagram
is given.
"""

import craft
from craft import TcpConversation
from pcapcheck import T0, community_id, read_records

REQUEST = b"GET /fragmented HTTP/1.1\r\nHost: example.test\r\nUser-Agent: craft/1.0\r\nAccept: */*\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 40\r\n\r\n" + b"0123456789" * 4


def fragmented_exchange(conv, fragment, order):
    """Handshake, then request and response each as one datagram cut into 3 fragments
    sent in ``order``; close."""
    syn, syn_ack, ack = conv.handshake()
    (req,) = conv.client_data(REQUEST)
    (resp,) = conv.server_data(RESPONSE)
    ack2 = conv.client_ack()
    fin1, fin2, ack3 = conv.close()
    req_frags = fragment(craft.ip_packet(req, ip_id=0x1111))
    resp_frags = fragment(craft.ip_packet(resp, ip_id=0x2222))
    return (
        [(T0 + 0.000, syn), (T0 + 0.001, syn_ack), (T0 + 0.002, ack)]
        + [(T0 + 0.003, frag) for frag in craft.reorder(req_frags, order)]
        + [(T0 + 0.010, frag) for frag in craft.reorder(resp_frags, order)]
        + [(T0 + 0.011, ack2), (T0 + 0.020, fin1), (T0 + 0.021, fin2), (T0 + 0.022, ack3)]
    )


def expected(client_ip, server_ip):
    return {
        "kind": "http",
        "ts": "2026-11-21T10:42:05.003000Z",
        "client": {"ip": client_ip, "port": 40000},
        "server": {"ip": server_ip, "port": 80},
        "request": {
            "method": "GET",
            "uri": "/fragmented",
            "version": "1.1",
            "host": "example.test",
            "headers": {"host": "example.test", "user-agent": "craft/1.0", "accept": "*/*"},
            "body_len": 0,
            "missed_bytes": 0,
            "body_truncated": False,
        },
        "response": {
            "status": 200,
            "reason": "OK",
            "version": "1.1",
            "headers": {"content-type": "text/plain", "content-length": "40"},
            "body_len": 40,
            "missed_bytes": 0,
            "body_truncated": False,
            "interim": [],
        },
        "duration_ms": 7.0,
        "trans_depth": 1,
        "community_id": community_id(client_ip, 40000, server_ip, 80),
        "end_reason": "complete",
        "anomalies": [],
    }


def test_ipv4_fragments_out_of_order_are_reassembled(tmp_path):
    pcap = tmp_path / "ipv4_frags.pcap"
    conv = TcpConversation(("10.0.0.1", 40000), ("10.0.0.2", 80))
    packets = fragmented_exchange(conv, lambda p: craft.ipv4_fragments(p, 3), order=[2, 0, 1])
    craft.capture(pcap, packets)
    assert [expected("10.0.0.1", "10.0.0.2")] == read_records(pcap)


def test_ipv6_fragment_header_fragments_out_of_order_are_reassembled(tmp_path):
    pcap = tmp_path / "ipv6_frags.pcap"
    conv = TcpConversation(("2001:db8::10", 40000), ("2001:db8::80", 80))
    packets = fragmented_exchange(conv, lambda p: craft.ipv6_fragments(p, 3), order=[1, 2, 0])
    craft.capture(pcap, packets)
    assert [expected("2001:db8::10", "2001:db8::80")] == read_records(pcap)
