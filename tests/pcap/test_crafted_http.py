"""HTTP/1.x message framing and pairing, end to end: pipelining with HEAD, 100-continue,
CONNECT and Upgrade tunnels, close-delimited and chunked bodies, missing responses,
and non-HTTP bytes on port 80."""

import craft
from craft import TcpConversation
from pcapcheck import T0, anomalies, community_id, read_records

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 80)
CID = community_id("10.0.0.1", 40000, "10.0.0.2", 80)
ENDS = {"client": {"ip": "10.0.0.1", "port": 40000}, "server": {"ip": "10.0.0.2", "port": 80}}


def ms(n):
    return T0 + n / 1000


def test_pipelined_get_head_get_pair_each_response_with_its_request(tmp_path):
    """Three requests in one segment; the HEAD response announces Content-Length: 1000
    but has no body (RFC 9110 s9.3.2), and the third response follows it at once."""
    c = TcpConversation(CLIENT, SERVER)
    requests = (
        b"GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n"
        b"HEAD /b HTTP/1.1\r\nHost: example.test\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: example.test\r\n\r\n"
    )
    packets = [
        *zip([ms(0), ms(1), ms(2)], c.handshake()),
        (ms(3), c.client_data(requests)[0]),
        (ms(10), c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nalpha")[0]),
        (
            ms(11),
            c.server_data(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ngamma"
            )[0],
        ),
        (ms(12), c.client_ack()),
        *zip([ms(20), ms(21), ms(22)], c.close()),
    ]
    pcap = tmp_path / "pipeline_head.pcap"
    craft.capture(pcap, packets)

    def rec(method, uri, length, body_len, duration_ms, depth):
        return {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.003000Z",
            **ENDS,
            "request": {
                "method": method,
                "uri": uri,
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
                "headers": {"content-length": length},
                "body_len": body_len,
                "missed_bytes": 0,
                "body_truncated": False,
                "interim": [],
            },
            "duration_ms": duration_ms,
            "trans_depth": depth,
            "community_id": CID,
            "end_reason": "complete",
            "anomalies": [],
        }

    assert [
        rec("GET", "/a", "5", 5, 7.0, 1),
        rec("HEAD", "/b", "1000", 0, 8.0, 2),
        rec("GET", "/c", "5", 5, 8.0, 3),
    ] == read_records(pcap)


def test_100_continue_is_kept_as_interim_of_one_record(tmp_path):
    c = TcpConversation(CLIENT, SERVER)
    body = b'{"a":"hello"}'
    head = (
        b"POST /upload HTTP/1.1\r\nHost: example.test\r\nContent-Type: application/json\r\n"
        b"Content-Length: 13\r\nExpect: 100-continue\r\n\r\n"
    )
    packets = [
        *zip([ms(0), ms(1), ms(2)], c.handshake()),
        (ms(3), c.client_data(head)[0]),
        (ms(5), c.server_data(b"HTTP/1.1 100 Continue\r\n\r\n")[0]),
        (ms(6), c.client_data(body)[0]),
        (ms(10), c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")[0]),
        (ms(11), c.client_ack()),
        *zip([ms(20), ms(21), ms(22)], c.close()),
    ]
    pcap = tmp_path / "continue.pcap"
    craft.capture(pcap, packets)
    assert [
        {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.003000Z",
            **ENDS,
            "request": {
                "method": "POST",
                "uri": "/upload",
                "version": "1.1",
                "host": "example.test",
                "headers": {
                    "host": "example.test",
                    "content-type": "application/json",
                    "content-length": "13",
                    "expect": "100-continue",
                },
                "body_len": 13,
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
                "interim": [{"status": 100, "reason": "Continue"}],
            },
            "duration_ms": 7.0,
            "trans_depth": 1,
            "community_id": CID,
            "end_reason": "complete",
            "anomalies": [],
        }
    ] == read_records(pcap)


def test_connect_answered_200_carrying_plain_http_is_parsed_and_named(tmp_path):
    """A forward proxy's tunnel that carries plain HTTP: the requests inside are logged,
    each naming the tunnel (the CONNECT target and its transaction)."""
    c = TcpConversation(CLIENT, SERVER)
    packets = [
        *zip([ms(0), ms(1), ms(2)], c.handshake()),
        (ms(3), c.client_data(b"CONNECT example.test:80 HTTP/1.1\r\nHost: example.test:80\r\n\r\n")[0]),
        (ms(10), c.server_data(b"HTTP/1.1 200 Connection Established\r\n\r\n")[0]),
        (ms(11), c.client_data(b"GET /inside HTTP/1.1\r\nHost: example.test\r\n\r\n")[0]),
        (ms(12), c.server_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")[0]),
        (ms(13), c.client_ack()),
        *zip([ms(20), ms(21), ms(22)], c.close()),
    ]
    pcap = tmp_path / "connect.pcap"
    craft.capture(pcap, packets)
    assert [
        {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.003000Z",
            **ENDS,
            "request": {
                "method": "CONNECT",
                "uri": "example.test:80",
                "version": "1.1",
                "host": "example.test:80",
                "headers": {"host": "example.test:80"},
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
            },
            "response": {
                "status": 200,
                "reason": "Connection Established",
                "version": "1.1",
                "headers": {},
                "body_len": 0,
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
            "ts": "2026-11-21T10:42:05.011000Z",
            **ENDS,
            "connect_tunnel": {"target": "example.test:80", "trans_depth": 1},
            "request": {
                "method": "GET",
                "uri": "/inside",
                "version": "1.1",
                "host": "example.test",
                "headers": {"host": "example.test"},
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
            },
            "response": {
                "status": 404,
                "reason": "Not Found",
                "version": "1.1",
                "headers": {"content-length": "0"},
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
                "interim": [],
            },
            "duration_ms": 1.0,
            "trans_depth": 2,
            "community_id": CID,
            "end_reason": "complete",
            "anomalies": [],
        },
    ] == read_records(pcap)


def test_websocket_upgrade_101_logs_one_record_and_ignores_frames(tmp_path):
    """After 101 the connection carries WebSocket frames; a server frame whose payload
    looks like a status line must not be taken for one."""
    c = TcpConversation(CLIENT, SERVER)
    upgrade = (
        b"GET /chat HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    switching = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    )
    masked = b"\x82\x84\x01\x02\x03\x04" + bytes(b ^ m for b, m in zip(b"\x00\xff\x10\x20", b"\x01\x02\x03\x04"))
    lookalike = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    packets = [
        *zip([ms(0), ms(1), ms(2)], c.handshake()),
        (ms(3), c.client_data(upgrade)[0]),
        (ms(10), c.server_data(switching)[0]),
        (ms(11), c.client_data(masked)[0]),
        (ms(12), c.server_data(b"\x82" + bytes([len(lookalike)]) + lookalike)[0]),
        (ms(13), c.client_ack()),
        *zip([ms(20), ms(21), ms(22)], c.close()),
    ]
    pcap = tmp_path / "websocket.pcap"
    craft.capture(pcap, packets)
    assert [
        {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.003000Z",
            **ENDS,
            "request": {
                "method": "GET",
                "uri": "/chat",
                "version": "1.1",
                "host": "example.test",
                "headers": {
                    "host": "example.test",
                    "upgrade": "websocket",
                    "connection": "Upgrade",
                    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "sec-websocket-version": "13",
                },
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
            },
            "response": {
                "status": 101,
                "reason": "Switching Protocols",
                "version": "1.1",
                "headers": {
                    "upgrade": "websocket",
                    "connection": "Upgrade",
                    "sec-websocket-accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                },
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
                "interim": [],
            },
            "duration_ms": 7.0,
            "trans_depth": 1,
            "community_id": CID,
            "end_reason": "complete",
            "anomalies": anomalies("http_upgrade"),
        }
    ] == read_records(pcap)


def test_close_delimited_response_body_ends_at_server_fin(tmp_path):
    """No Content-Length, not chunked: the body is everything up to the FIN (RFC 9112 s6.3).
    The FIN comes 8 ms after the last byte; duration_ms runs to the last byte."""
    c = TcpConversation(CLIENT, SERVER)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    body = bytes(range(256)) + bytes(range(244))  # 500 bytes, including CR, LF and NUL
    packets = [*zip([ms(0), ms(1), ms(2)], c.handshake())]
    request = b"GET /stream HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
    packets.append((ms(3), c.client_data(request)[0]))
    s0, s1 = c.server_data(head + body, [len(head) + 200])
    packets += [(ms(10), s0), (ms(12), s1), (ms(13), c.client_ack())]
    packets += [(ms(20), c.server_fin()), (ms(21), c.client_fin()), (ms(22), c.server_ack())]
    pcap = tmp_path / "close_delimited.pcap"
    craft.capture(pcap, packets)
    assert [
        {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.003000Z",
            **ENDS,
            "request": {
                "method": "GET",
                "uri": "/stream",
                "version": "1.1",
                "host": "example.test",
                "headers": {"host": "example.test", "connection": "close"},
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
            },
            "response": {
                "status": 200,
                "reason": "OK",
                "version": "1.1",
                "headers": {"content-type": "text/plain", "connection": "close"},
                "body_len": 500,
                "missed_bytes": 0,
                "body_truncated": False,
                "interim": [],
            },
            "duration_ms": 9.0,
            "trans_depth": 1,
            "community_id": CID,
            "end_reason": "complete",
            "anomalies": [],
        }
    ] == read_records(pcap)


def test_chunked_request_and_response_bodies_are_measured_dechunked(tmp_path):
    """Chunked both ways, segments cut inside chunk-size lines and chunk data."""
    c = TcpConversation(CLIENT, SERVER)
    request = (
        b"POST /upload HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: text/plain\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    response = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
        b"1a\r\nabcdefghijklmnopqrstuvwxyz\r\nA\r\n0123456789\r\n0\r\n\r\n"
    )
    packets = [*zip([ms(0), ms(1), ms(2)], c.handshake())]
    r0, r1 = c.client_data(request, [len(request) - 11])
    assert r1.payload == b"orld\r\n0\r\n\r\n"  # cut inside " world"
    s0, s1, s2 = c.server_data(response, [74, 20])
    assert (s0.payload[-3:], s1.payload[:3]) == (b"\r\n1", b"a\r\n")  # cut inside "1a\r\n"
    packets += [(ms(3), r0), (ms(4), r1), (ms(10), s0), (ms(11), s1), (ms(12), s2), (ms(13), c.client_ack())]
    packets += zip([ms(20), ms(21), ms(22)], c.close())
    pcap = tmp_path / "chunked.pcap"
    craft.capture(pcap, packets)
    assert [
        {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.003000Z",
            **ENDS,
            "request": {
                "method": "POST",
                "uri": "/upload",
                "version": "1.1",
                "host": "example.test",
                "headers": {
                    "host": "example.test",
                    "transfer-encoding": "chunked",
                    "content-type": "text/plain",
                },
                "body_len": 11,
                "missed_bytes": 0,
                "body_truncated": False,
            },
            "response": {
                "status": 200,
                "reason": "OK",
                "version": "1.1",
                "headers": {"transfer-encoding": "chunked", "content-type": "text/plain"},
                "body_len": 36,
                "missed_bytes": 0,
                "body_truncated": False,
                "interim": [],
            },
            "duration_ms": 9.0,
            "trans_depth": 1,
            "community_id": CID,
            "end_reason": "complete",
            "anomalies": [],
        }
    ] == read_records(pcap)


def test_request_without_response_before_fin_is_logged_with_response_null(tmp_path):
    c = TcpConversation(CLIENT, SERVER)
    packets = [
        *zip([ms(0), ms(1), ms(2)], c.handshake()),
        (ms(3), c.client_data(b"GET /nothing HTTP/1.1\r\nHost: example.test\r\n\r\n")[0]),
        (ms(4), c.server_ack()),
        *zip([ms(10), ms(11), ms(12)], c.close()),
    ]
    pcap = tmp_path / "no_response.pcap"
    craft.capture(pcap, packets)
    assert [
        {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.003000Z",
            **ENDS,
            "request": {
                "method": "GET",
                "uri": "/nothing",
                "version": "1.1",
                "host": "example.test",
                "headers": {"host": "example.test"},
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
            },
            "response": None,
            "duration_ms": None,
            "trans_depth": 1,
            "community_id": CID,
            "end_reason": "fin",
            "anomalies": anomalies("response_missing"),
        }
    ] == read_records(pcap)


def test_non_http_bytes_on_port_80_give_no_http_record_and_later_connection_is_logged(tmp_path):
    """A TLS ClientHello-like burst and an alert on port 80, closed; then a normal GET.
    The burst starts like a ClientHello, so it is read as TLS (on any port): a TLS record
    that says the hello could not be parsed (its extensions block runs past its end) and
    the server's fatal alert; no HTTP record."""
    junk = TcpConversation(CLIENT, SERVER)
    ok = TcpConversation(("10.0.0.1", 40001), SERVER, client_isn=5_000_000, server_isn=6_000_000)
    hello = b"\x16\x03\x01\x00\x45\x01\x00\x00\x41\x03\x03" + bytes(range(32))
    hello += b"\x00\x02\x13\x01\x01\x00" + b"\xfe" * 27
    packets = [
        *zip([ms(0), ms(1), ms(2)], junk.handshake()),
        (ms(3), junk.client_data(hello)[0]),
        (ms(4), junk.server_data(b"\x15\x03\x03\x00\x02\x02\x46")[0]),
        *zip([ms(5), ms(6), ms(7)], junk.close()),
        *zip([ms(100), ms(101), ms(102)], ok.handshake()),
        (ms(103), ok.client_data(b"GET /after HTTP/1.1\r\nHost: example.test\r\n\r\n")[0]),
        (ms(110), ok.server_data(b"HTTP/1.1 204 No Content\r\n\r\n")[0]),
        (ms(111), ok.client_ack()),
        *zip([ms(120), ms(121), ms(122)], ok.close()),
    ]
    pcap = tmp_path / "garbage.pcap"
    craft.capture(pcap, packets)
    assert [
        {
            "kind": "tls",
            "ts": "2026-11-21T10:42:05.003000Z",
            **ENDS,
            "tls": {
                "version": None, "negotiated": False, "cipher": None, "sni": None, "alpn_offered": [], "alpn": None,
                "resumed": None, "established": False, "hello_retry": False,
                "alerts": [{"from": "server", "level": "fatal", "description": "protocol_version"}],
                "ja3": None, "ja3s": None, "ja4": None, "ja4s": None, "server_cert": None,
                "client_bytes": len(hello), "server_bytes": 7, "starttls": None,
            },
            "duration_ms": 3.0,
            "community_id": CID,
            "end_reason": "fin",
            "anomalies": ["tls_bad_hello"],
        },
        {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.103000Z",
            "client": {"ip": "10.0.0.1", "port": 40001},
            "server": {"ip": "10.0.0.2", "port": 80},
            "request": {
                "method": "GET",
                "uri": "/after",
                "version": "1.1",
                "host": "example.test",
                "headers": {"host": "example.test"},
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
            },
            "response": {
                "status": 204,
                "reason": "No Content",
                "version": "1.1",
                "headers": {},
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
                "interim": [],
            },
            "duration_ms": 7.0,
            "trans_depth": 1,
            "community_id": community_id("10.0.0.1", 40001, "10.0.0.2", 80),
            "end_reason": "complete",
            "anomalies": [],
        }
    ] == read_records(pcap)
