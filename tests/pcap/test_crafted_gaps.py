"""Lost TCP data (a segment the capture never saw): inside a body of known length it is
skipped and counted; elsewhere it ends that message only (Zeek's Undelivered policy)."""

import craft
from craft import TcpConversation
from pcapcheck import T0, anomalies, community_id, read_records

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 80)
CID = community_id("10.0.0.1", 40000, "10.0.0.2", 80)


def ms(n):
    return T0 + n / 1000


def test_gap_inside_content_length_body_is_counted_in_missed_bytes(tmp_path):
    """The middle 100 of a 300-byte body is lost; the next transaction is unaffected."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 300\r\n\r\n"
    body = b"a" * 100 + b"b" * 100 + b"c" * 100
    c = TcpConversation(CLIENT, SERVER)
    packets = [*zip([ms(0), ms(1), ms(2)], c.handshake())]
    packets.append((ms(3), c.client_data(b"GET /big HTTP/1.1\r\nHost: example.test\r\n\r\n")[0]))
    s0, lost, s2 = c.server_data(head + body, [len(head) + 100, 100])
    assert lost.payload == b"b" * 100
    packets += [(ms(10), s0), (ms(12), s2), (ms(13), c.client_ack())]
    packets.append((ms(20), c.client_data(b"GET /small HTTP/1.1\r\nHost: example.test\r\n\r\n")[0]))
    packets.append((ms(25), c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")[0]))
    packets.append((ms(26), c.client_ack()))
    packets += zip([ms(30), ms(31), ms(32)], c.close())
    pcap = tmp_path / "body_gap.pcap"
    craft.capture(pcap, packets)
    assert [
        {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.003000Z",
            "client": {"ip": "10.0.0.1", "port": 40000},
            "server": {"ip": "10.0.0.2", "port": 80},
            "request": {
                "method": "GET",
                "uri": "/big",
                "version": "1.1",
                "host": "example.test",
                "headers": {"host": "example.test"},
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
            },
            "response": {
                "status": 200,
                "reason": "OK",
                "version": "1.1",
                "headers": {"content-type": "application/octet-stream", "content-length": "300"},
                "body_len": 200,
                "missed_bytes": 100,
                "body_truncated": False,
                "interim": [],
            },
            "duration_ms": 9.0,
            "trans_depth": 1,
            "community_id": CID,
            "end_reason": "complete",
            "anomalies": anomalies("body_gap", "tcp_gap"),
        },
        {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.020000Z",
            "client": {"ip": "10.0.0.1", "port": 40000},
            "server": {"ip": "10.0.0.2", "port": 80},
            "request": {
                "method": "GET",
                "uri": "/small",
                "version": "1.1",
                "host": "example.test",
                "headers": {"host": "example.test"},
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
            },
            "response": {
                "status": 200,
                "reason": "OK",
                "version": "1.1",
                "headers": {"content-length": "2"},
                "body_len": 2,
                "missed_bytes": 0,
                "body_truncated": False,
                "interim": [],
            },
            "duration_ms": 5.0,
            "trans_depth": 2,
            "community_id": CID,
            "end_reason": "complete",
            "anomalies": [],
        },
    ] == read_records(pcap)


def test_gap_in_request_headers_interrupts_only_that_request(tmp_path):
    """Keep-alive, 3 requests; request 2 loses everything after "User-" (20 bytes),
    so the gap ends exactly where request 3 begins.  Request 2 keeps what was seen
    before the gap; every request stays paired with its own response."""

    def request(path):
        return f"GET {path} HTTP/1.1\r\nHost: example.test\r\nUser-Agent: craft/1.0\r\n\r\n".encode()

    def response(body):
        return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()

    c = TcpConversation(CLIENT, SERVER)
    packets = [*zip([ms(0), ms(1), ms(2)], c.handshake())]
    packets += [(ms(3), c.client_data(request("/one"))[0]), (ms(10), c.server_data(response("one"))[0])]
    packets.append((ms(11), c.client_ack()))
    seen, lost = c.client_data(request("/two"), [44])
    assert (seen.payload[-7:], len(lost.payload)) == (b"\r\nUser-", 20)
    packets += [(ms(20), seen), (ms(25), c.server_data(response("two"))[0]), (ms(26), c.client_ack())]
    packets += [(ms(30), c.client_data(request("/three"))[0]), (ms(35), c.server_data(response("three"))[0])]
    packets.append((ms(36), c.client_ack()))
    packets += zip([ms(40), ms(41), ms(42)], c.close())
    pcap = tmp_path / "header_gap.pcap"
    craft.capture(pcap, packets)

    full_headers = {"host": "example.test", "user-agent": "craft/1.0"}
    assert [
        {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.003000Z",
            "client": {"ip": "10.0.0.1", "port": 40000},
            "server": {"ip": "10.0.0.2", "port": 80},
            "request": {
                "method": "GET",
                "uri": "/one",
                "version": "1.1",
                "host": "example.test",
                "headers": full_headers,
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
            },
            "response": {
                "status": 200,
                "reason": "OK",
                "version": "1.1",
                "headers": {"content-length": "3"},
                "body_len": 3,
                "missed_bytes": 0,
                "body_truncated": False,
                "interim": [],
            },
            "duration_ms": 7.0,
            "trans_depth": 1,
            "community_id": CID,
            "end_reason": "complete",
            "anomalies": [],
        },
        {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.020000Z",
            "client": {"ip": "10.0.0.1", "port": 40000},
            "server": {"ip": "10.0.0.2", "port": 80},
            "request": {
                "method": "GET",
                "uri": "/two",
                "version": "1.1",
                "host": "example.test",
                "headers": {"host": "example.test"},
                "body_len": 0,
                "missed_bytes": 20,
                "body_truncated": False,
            },
            "response": {
                "status": 200,
                "reason": "OK",
                "version": "1.1",
                "headers": {"content-length": "3"},
                "body_len": 3,
                "missed_bytes": 0,
                "body_truncated": False,
                "interim": [],
            },
            "duration_ms": 5.0,
            "trans_depth": 2,
            "community_id": CID,
            "end_reason": "complete",
            "anomalies": anomalies("message_interrupted", "tcp_gap"),
        },
        {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.030000Z",
            "client": {"ip": "10.0.0.1", "port": 40000},
            "server": {"ip": "10.0.0.2", "port": 80},
            "request": {
                "method": "GET",
                "uri": "/three",
                "version": "1.1",
                "host": "example.test",
                "headers": full_headers,
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
            },
            "response": {
                "status": 200,
                "reason": "OK",
                "version": "1.1",
                "headers": {"content-length": "5"},
                "body_len": 5,
                "missed_bytes": 0,
                "body_truncated": False,
                "interim": [],
            },
            "duration_ms": 5.0,
            "trans_depth": 3,
            "community_id": CID,
            "end_reason": "complete",
            "anomalies": [],
        },
    ] == read_records(pcap)
