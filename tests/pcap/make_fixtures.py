#!/usr/bin/env python3
"""Recreate the shipped captures in captures/ and their expected records.

    .venv/bin/python tests/pcap/make_fixtures.py [OUTDIR]     (default: captures/)

Writes NAME.pcap and NAME.jsonl for each fixture below.  The traffic is fixed
(timestamps, ISNs, IP ids, MACs), so the output is byte-for-byte the same on every
run and every machine; tests/pcap/test_fixtures.py checks that.  The expected
records are written here by hand from the traffic, in output order, one JSON
object per line; sniffd's output is never copied into them.

    sample         keep-alive on Ethernet/IPv4: GET 200 with a body, POST with a
                   JSON body -> 201, GET -> 404.  The README demo shows this one.
    pipeline_head  three pipelined requests GET, HEAD, GET; the HEAD response has
                   Content-Length: 1048576 and (correctly) no body.
    vlan_ipv6      802.1Q VLAN 42, IPv6, two requests on one connection, the second
                   request and its response each split over two segments.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for craft

import craft  # noqa: E402
from craft import TcpConversation  # noqa: E402

T0 = 1795257725.0  # 2026-11-21T10:42:05Z


def ms(n: float) -> float:
    return T0 + n / 1000


# --- sample ---------------------------------------------------------------------------

SAMPLE_REQ1 = b"GET / HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
SAMPLE_BODY1 = b"<!doctype html>\n<title>sniffd</title>\n<p>It works.</p>\n"  # 55 bytes
SAMPLE_RESP1 = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 55\r\n\r\n" + SAMPLE_BODY1
)
SAMPLE_BODY2 = b'{"title": "hello", "text": "first note"}'  # 40 bytes
SAMPLE_REQ2 = (
    b"POST /api/notes HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n"
    b"Content-Type: application/json\r\nContent-Length: 40\r\n\r\n" + SAMPLE_BODY2
)
SAMPLE_RESP2 = (
    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nLocation: /api/notes/1\r\n"
    b'Content-Length: 9\r\n\r\n{"id": 1}'
)
SAMPLE_REQ3 = b"GET /missing HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
SAMPLE_RESP3 = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n"


def sample_packets():
    c = TcpConversation(("192.0.2.10", 52100), ("198.51.100.20", 80), client_isn=3_152_001_000, server_isn=770_005_000)
    return [
        *zip([ms(0), ms(1.2), ms(1.3)], c.handshake()),
        (ms(3), c.client_data(SAMPLE_REQ1)[0]),
        (ms(3.9), c.server_ack()),
        (ms(15.25), c.server_data(SAMPLE_RESP1)[0]),
        (ms(15.4), c.client_ack()),
        (ms(40), c.client_data(SAMPLE_REQ2)[0]),
        (ms(52.5), c.server_data(SAMPLE_RESP2)[0]),
        (ms(52.6), c.client_ack()),
        (ms(80), c.client_data(SAMPLE_REQ3)[0]),
        (ms(86.125), c.server_data(SAMPLE_RESP3)[0]),
        (ms(86.3), c.client_ack()),
        *zip([ms(100), ms(101), ms(101.1)], c.close()),
    ]


SAMPLE_CLIENT = {"ip": "192.0.2.10", "port": 52100}
SAMPLE_SERVER = {"ip": "198.51.100.20", "port": 80}
SAMPLE_CID = "1:AjxUc4eNfbjPWdZM6+KiXOkkxCc="
SAMPLE_REQ_HEADERS = {"host": "www.example.com", "user-agent": "curl/8.5.0", "accept": "*/*"}

SAMPLE_EXPECTED = [
    {
        "kind": "http",
        "ts": "2026-11-21T10:42:05.003000Z",
        "client": SAMPLE_CLIENT,
        "server": SAMPLE_SERVER,
        "request": {
            "method": "GET",
            "uri": "/",
            "version": "1.1",
            "host": "www.example.com",
            "headers": SAMPLE_REQ_HEADERS,
            "body_len": 0,
            "missed_bytes": 0,
            "body_truncated": False,
        },
        "response": {
            "status": 200,
            "reason": "OK",
            "version": "1.1",
            "headers": {"content-type": "text/html; charset=utf-8", "content-length": "55"},
            "body_len": 55,
            "missed_bytes": 0,
            "body_truncated": False,
            "interim": [],
        },
        "duration_ms": 12.25,
        "trans_depth": 1,
        "community_id": SAMPLE_CID,
        "end_reason": "complete",
        "anomalies": [],
    },
    {
        "kind": "http",
        "ts": "2026-11-21T10:42:05.040000Z",
        "client": SAMPLE_CLIENT,
        "server": SAMPLE_SERVER,
        "request": {
            "method": "POST",
            "uri": "/api/notes",
            "version": "1.1",
            "host": "www.example.com",
            "headers": {**SAMPLE_REQ_HEADERS, "content-type": "application/json", "content-length": "40"},
            "body_len": 40,
            "missed_bytes": 0,
            "body_truncated": False,
        },
        "response": {
            "status": 201,
            "reason": "Created",
            "version": "1.1",
            "headers": {"content-type": "application/json", "location": "/api/notes/1", "content-length": "9"},
            "body_len": 9,
            "missed_bytes": 0,
            "body_truncated": False,
            "interim": [],
        },
        "duration_ms": 12.5,
        "trans_depth": 2,
        "community_id": SAMPLE_CID,
        "end_reason": "complete",
        "anomalies": [],
    },
    {
        "kind": "http",
        "ts": "2026-11-21T10:42:05.080000Z",
        "client": SAMPLE_CLIENT,
        "server": SAMPLE_SERVER,
        "request": {
            "method": "GET",
            "uri": "/missing",
            "version": "1.1",
            "host": "www.example.com",
            "headers": SAMPLE_REQ_HEADERS,
            "body_len": 0,
            "missed_bytes": 0,
            "body_truncated": False,
        },
        "response": {
            "status": 404,
            "reason": "Not Found",
            "version": "1.1",
            "headers": {"content-type": "text/plain", "content-length": "10"},
            "body_len": 10,
            "missed_bytes": 0,
            "body_truncated": False,
            "interim": [],
        },
        "duration_ms": 6.125,
        "trans_depth": 3,
        "community_id": SAMPLE_CID,
        "end_reason": "complete",
        "anomalies": [],
    },
]

# --- pipeline_head --------------------------------------------------------------------

PIPE_REQS = (
    b"GET /style.css HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
    b"HEAD /big.iso HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
    b"GET /favicon.ico HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
)
PIPE_RESP1 = b"HTTP/1.1 200 OK\r\nContent-Type: text/css\r\nContent-Length: 20\r\n\r\nbody { margin: 0; }\n"
PIPE_RESP2 = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n"
PIPE_RESP3 = b"HTTP/1.1 200 OK\r\nContent-Type: image/x-icon\r\nContent-Length: 4\r\n\r\n\x00\x00\x01\x00"


def pipeline_head_packets():
    c = TcpConversation(("192.0.2.11", 52200), ("198.51.100.20", 80), client_isn=91_000, server_isn=4_100_000_000)
    return [
        *zip([ms(0), ms(1), ms(1.1)], c.handshake()),
        (ms(2), c.client_data(PIPE_REQS)[0]),
        (ms(9), c.server_data(PIPE_RESP1 + PIPE_RESP2)[0]),
        (ms(11.5), c.server_data(PIPE_RESP3)[0]),
        (ms(11.6), c.client_ack()),
        *zip([ms(30), ms(31), ms(31.1)], c.close()),
    ]


PIPE_CLIENT = {"ip": "192.0.2.11", "port": 52200}
PIPE_CID = "1:stcdXPr5WOa50x59kdet+n5/dN0="


def _pipe_record(method, uri, headers, body_len, duration_ms, depth):
    return {
        "kind": "http",
        "ts": "2026-11-21T10:42:05.002000Z",
        "client": PIPE_CLIENT,
        "server": SAMPLE_SERVER,
        "request": {
            "method": method,
            "uri": uri,
            "version": "1.1",
            "host": "www.example.com",
            "headers": {"host": "www.example.com"},
            "body_len": 0,
            "missed_bytes": 0,
            "body_truncated": False,
        },
        "response": {
            "status": 200,
            "reason": "OK",
            "version": "1.1",
            "headers": headers,
            "body_len": body_len,
            "missed_bytes": 0,
            "body_truncated": False,
            "interim": [],
        },
        "duration_ms": duration_ms,
        "trans_depth": depth,
        "community_id": PIPE_CID,
        "end_reason": "complete",
        "anomalies": [],
    }


PIPELINE_HEAD_EXPECTED = [
    _pipe_record("GET", "/style.css", {"content-type": "text/css", "content-length": "20"}, 20, 7.0, 1),
    _pipe_record(
        "HEAD", "/big.iso", {"content-type": "application/octet-stream", "content-length": "1048576"}, 0, 7.0, 2
    ),
    _pipe_record("GET", "/favicon.ico", {"content-type": "image/x-icon", "content-length": "4"}, 4, 9.5, 3),
]

# --- vlan_ipv6 ------------------------------------------------------------------------

V6_REQ1 = b"GET /v6 HTTP/1.1\r\nHost: [2001:db8:20::80]\r\nAccept: text/plain\r\n\r\n"
V6_RESP1 = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nhello over v6\n"
V6_REQ2 = b"GET /api/status?verbose=1 HTTP/1.1\r\nHost: [2001:db8:20::80]\r\nAccept: application/json\r\n\r\n"
V6_BODY2 = b'{"status": "ok", "vlan": 42, "ipv6": true}'  # 42 bytes
V6_RESP2 = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 42\r\n\r\n" + V6_BODY2


def vlan_ipv6_packets():
    c = TcpConversation(("2001:db8:10::5", 51000), ("2001:db8:20::80", 80), client_isn=1, server_isn=2_000_000_001)
    packets = [*zip([ms(0), ms(0.5), ms(0.6)], c.handshake())]
    packets += [(ms(1), c.client_data(V6_REQ1)[0]), (ms(4), c.server_data(V6_RESP1)[0]), (ms(4.1), c.client_ack())]
    r2a, r2b = c.client_data(V6_REQ2, [30])
    packets += [(ms(10), r2a), (ms(10.2), r2b)]
    s2a, s2b = c.server_data(V6_RESP2, [60])
    packets += [(ms(13), s2a), (ms(13.75), s2b), (ms(13.8), c.client_ack())]
    packets += zip([ms(20), ms(20.5), ms(20.6)], c.close())
    return packets


V6_CLIENT = {"ip": "2001:db8:10::5", "port": 51000}
V6_SERVER = {"ip": "2001:db8:20::80", "port": 80}
V6_CID = "1:uknjq+sk3JtIIE+pM1N7XDbA1tk="

VLAN_IPV6_EXPECTED = [
    {
        "kind": "http",
        "ts": "2026-11-21T10:42:05.001000Z",
        "client": V6_CLIENT,
        "server": V6_SERVER,
        "vlan": [42],
        "request": {
            "method": "GET",
            "uri": "/v6",
            "version": "1.1",
            "host": "[2001:db8:20::80]",
            "headers": {"host": "[2001:db8:20::80]", "accept": "text/plain"},
            "body_len": 0,
            "missed_bytes": 0,
            "body_truncated": False,
        },
        "response": {
            "status": 200,
            "reason": "OK",
            "version": "1.1",
            "headers": {"content-type": "text/plain", "content-length": "14"},
            "body_len": 14,
            "missed_bytes": 0,
            "body_truncated": False,
            "interim": [],
        },
        "duration_ms": 3.0,
        "trans_depth": 1,
        "community_id": V6_CID,
        "end_reason": "complete",
        "anomalies": [],
    },
    {
        "kind": "http",
        "ts": "2026-11-21T10:42:05.010000Z",
        "client": V6_CLIENT,
        "server": V6_SERVER,
        "vlan": [42],
        "request": {
            "method": "GET",
            "uri": "/api/status?verbose=1",
            "version": "1.1",
            "host": "[2001:db8:20::80]",
            "headers": {"host": "[2001:db8:20::80]", "accept": "application/json"},
            "body_len": 0,
            "missed_bytes": 0,
            "body_truncated": False,
        },
        "response": {
            "status": 200,
            "reason": "OK",
            "version": "1.1",
            "headers": {"content-type": "application/json", "content-length": "42"},
            "body_len": 42,
            "missed_bytes": 0,
            "body_truncated": False,
            "interim": [],
        },
        "duration_ms": 3.75,
        "trans_depth": 2,
        "community_id": V6_CID,
        "end_reason": "complete",
        "anomalies": [],
    },
]

# name -> (packets, capture options, expected records in output order)
FIXTURES = {
    "sample": (sample_packets, {}, SAMPLE_EXPECTED),
    "pipeline_head": (pipeline_head_packets, {}, PIPELINE_HEAD_EXPECTED),
    "vlan_ipv6": (vlan_ipv6_packets, {"tags": craft.dot1q(42)}, VLAN_IPV6_EXPECTED),
}

# Captures whose traffic is clean: sniffd must raise no anomaly on them.
CLEAN = {"sample", "pipeline_head", "vlan_ipv6"}


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else HERE.parent.parent / "captures"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (packets, options, expected) in FIXTURES.items():
        craft.capture(out_dir / f"{name}.pcap", packets(), **options)
        with open(out_dir / f"{name}.jsonl", "w", encoding="utf-8", newline="\n") as f:
            for record in expected:
                f.write(json.dumps(record) + "\n")
        print(f"wrote {out_dir / name}.pcap and .jsonl ({len(expected)} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
