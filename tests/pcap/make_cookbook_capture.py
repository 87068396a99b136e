#!/usr/bin/env python3
"""Recreate captures/cookbook.pcap, the traffic README's *Querying the records
(jq cookbook)* runs its queries on.

    .venv/bin/python tests/pcap/make_cookbook_capture.py [OUTDIR]     (default: captures/)

captures/sample.pcap is three clean requests: nothing for a 5xx rate, a slow
request or an anomaly to show.  This one has ten requests on six connections
(Ethernet/IPv4, port 80), every message in one segment, so each duration is
the time from the request's segment to its response's:

    conn  client           server            host             requests
    1     192.0.2.10:50100 198.51.100.20:80  www.example.com  GET /           200   12 ms
                                                              GET /search     200  850 ms
                                                              GET /report.pdf 500 1200 ms
    2     192.0.2.11:50200 198.51.100.21:80  api.example.com  GET /v1/items   200   30 ms
                                                              POST /v1/items  201   45 ms
                                                              GET /v1/items/7 503    5 ms
    3     192.0.2.13:50400 198.51.100.20:80  www.example.com  GET /logo.png   200    3 ms
    4     192.0.2.12:50300 198.51.100.21:80  api.example.com  POST /upload    400    2 ms
          Content-Length and Transfer-Encoding: chunked (http_te_and_cl, http_ambiguous_framing)
    5     192.0.2.12:50301 198.51.100.20:80  www.example.com  POST /comment   200   10 ms
          two Content-Length values, 3 and 5 (http_cl_conflict, http_ambiguous_framing)
    6     192.0.2.11:50201 198.51.100.20:80  www.example.com  GET /hang       none: the server
          closes without answering (response_missing)

The traffic is fixed (timestamps, ISNs), so the file is byte-for-byte the same
on every run; tests/docs/test_jq_cookbook.py checks that, and holds each
query's output to the answers counted by hand from the table above.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for craft

import craft  # noqa: E402
from craft import TcpConversation  # noqa: E402

T0 = 1795262400.0  # 2026-11-21T12:00:00Z, before captures/tls/loopback_handshakes.pcap (read after it)


def ms(n: float) -> float:
    return T0 + n / 1000


def get(uri: str, host: str) -> bytes:
    return f"GET {uri} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n".encode()


def response(status: int, reason: str, body: bytes, ctype: str = "text/plain", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


WWW, API = "www.example.com", "api.example.com"
NOTE = b'{"title": "hello"}'


def exchange(c: TcpConversation, t_req: float, request: bytes, t_resp: float, resp: bytes) -> list:
    """Request, the server's ack, the response, the client's ack."""
    return [
        (ms(t_req), c.client_data(request)[0]),
        (ms(t_req + 0.5), c.server_ack()),
        (ms(t_resp), c.server_data(resp)[0]),
        (ms(t_resp + 0.1), c.client_ack()),
    ]


def opened(c: TcpConversation, t: float) -> list:
    return list(zip([ms(t), ms(t + 0.2), ms(t + 0.3)], c.handshake()))


def closed(c: TcpConversation, t: float) -> list:
    return list(zip([ms(t), ms(t + 0.2), ms(t + 0.3)], c.close()))


def conn1() -> list:
    c = TcpConversation(("192.0.2.10", 50100), ("198.51.100.20", 80), client_isn=11_000, server_isn=21_000)
    return [
        *opened(c, 0),
        *exchange(c, 1, get("/", WWW), 13, response(200, "OK", b"<p>home</p>\n", "text/html")),
        *exchange(c, 20, get("/search?q=sniffd", WWW), 870, response(200, "OK", b"<p>3 results</p>\n", "text/html")),
        *exchange(c, 900, get("/report.pdf", WWW), 2100, response(500, "Internal Server Error", b"error\n")),
        *closed(c, 2200),
    ]


def conn2() -> list:
    c = TcpConversation(("192.0.2.11", 50200), ("198.51.100.21", 80), client_isn=12_000, server_isn=22_000)
    post = (f"POST /v1/items HTTP/1.1\r\nHost: {API}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(NOTE)}\r\n\r\n").encode() + NOTE
    return [
        *opened(c, 100),
        *exchange(c, 101, get("/v1/items", API), 131, response(200, "OK", b"[]", "application/json")),
        *exchange(c, 140, post, 185, response(201, "Created", b'{"id": 7}', "application/json")),
        *exchange(c, 200, get("/v1/items/7", API), 205, response(503, "Service Unavailable", b"busy\n")),
        *closed(c, 300),
    ]


def conn3() -> list:
    c = TcpConversation(("192.0.2.13", 50400), ("198.51.100.20", 80), client_isn=13_000, server_isn=23_000)
    return [
        *opened(c, 399),
        *exchange(c, 400, get("/logo.png", WWW), 403, response(200, "OK", b"\x89PNG", "image/png")),
        *closed(c, 410),
    ]


def conn4() -> list:
    """Content-Length and Transfer-Encoding: chunked in one request (RFC 9112 section 6.3:
    chunked wins; a proxy that goes by Content-Length would read 4 bytes of body)."""
    c = TcpConversation(("192.0.2.12", 50300), ("198.51.100.21", 80), client_isn=14_000, server_isn=24_000)
    req = (f"POST /upload HTTP/1.1\r\nHost: {API}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n0\r\n\r\n").encode()
    return [
        *opened(c, 499),
        *exchange(c, 500, req, 502, response(400, "Bad Request", b"", extra="Connection: close\r\n")),
        (ms(502.2), c.server_fin()),
        (ms(502.4), c.client_fin()),
        (ms(502.6), c.server_ack()),
    ]


def conn5() -> list:
    """Two Content-Length values that differ (3 and 5): the first is used."""
    c = TcpConversation(("192.0.2.12", 50301), ("198.51.100.20", 80), client_isn=15_000, server_isn=25_000)
    req = f"POST /comment HTTP/1.1\r\nHost: {WWW}\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabc".encode()
    return [
        *opened(c, 599),
        *exchange(c, 600, req, 610, response(200, "OK", b"ok")),
        *closed(c, 620),
    ]


def conn6() -> list:
    """A request the server never answers: it closes the connection 3 s later."""
    c = TcpConversation(("192.0.2.11", 50201), ("198.51.100.20", 80), client_isn=16_000, server_isn=26_000)
    return [
        *opened(c, 699),
        (ms(700), c.client_data(get("/hang", WWW))[0]),
        (ms(700.5), c.server_ack()),
        (ms(3700), c.server_fin()),
        (ms(3700.2), c.client_fin()),
        (ms(3700.4), c.server_ack()),
    ]


def cookbook_packets() -> list:
    packets = conn1() + conn2() + conn3() + conn4() + conn5() + conn6()
    return sorted(packets, key=lambda p: p[0])  # stable: one connection's packets keep their order


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else HERE.parent.parent / "captures"
    out_dir.mkdir(parents=True, exist_ok=True)
    craft.capture(out_dir / "cookbook.pcap", cookbook_packets())
    print(f"wrote {out_dir / 'cookbook.pcap'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
