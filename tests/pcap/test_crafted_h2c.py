"""HTTP/2 in clear through the real ``sniffd read``: a connection whose client
stream begins with the preface (prior knowledge), or that switches with
``Upgrade: h2c`` answered 101, gives one record per stream, in the HTTP
record's shape with ``version: "2"`` and the stream's fields; HTTP/1 records
beside them unchanged.

The HTTP/2 bytes are written by hand (tests/h2craft.py, which shares no code
with sniffd.http2); every expected record is written here from those bytes.
"""

import json
import re
import sys
from pathlib import Path

import craft
from craft import TcpConversation
from pcapcheck import T0, community_id, load_jsonl, run_sniffd, without_run_fields

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from h2craft import (  # noqa: E402
    CLIENT_ACK, CLIENT_START, GET_ROOT, PREFACE, SERVER_START, block, data, goaway, headers, indexed_literal, literal,
    push_promise, req_block, resp_block, rst,
)

HTTP2_RECORD_KEYS = ["kind", "ts", "client", "server", "request", "response", "duration_ms", "trans_depth", "stream_id",
                     "pushed_by", "h2_error", "grpc", "community_id", "end_reason", "anomalies"]
HTTP1_RECORD_KEYS = ["kind", "ts", "client", "server", "request", "response", "duration_ms", "trans_depth",
                     "community_id", "end_reason", "anomalies"]


def ms(n):
    return T0 + n / 1000


def stamp(n) -> str:
    """The record's ts for ms(n) (T0 is 2026-11-21T10:42:05Z)."""
    return f"2026-11-21T10:42:05.{round(n * 1000):06d}Z"


def ends(client, server):
    return {"client": {"ip": client[0], "port": client[1]}, "server": {"ip": server[0], "port": server[1]}}


def h2_record(c, s, ts, request, response, duration, depth, stream_id, end_reason="complete", anomalies=(),
              pushed_by=None, h2_error=None, grpc=None):
    return {"kind": "http", "ts": stamp(ts), **ends(c, s), "request": request, "response": response,
            "duration_ms": duration, "trans_depth": depth, "stream_id": stream_id, "pushed_by": pushed_by,
            "h2_error": h2_error, "grpc": grpc, "community_id": community_id(*c, *s), "end_reason": end_reason,
            "anomalies": sorted(anomalies)}


def req2(method, uri, headers, body_len=0, host="example.com"):
    return {"method": method, "uri": uri, "version": "2", "host": host, "headers": headers, "body_len": body_len,
            "missed_bytes": 0, "body_truncated": False}


def resp2(status, headers, body_len=0, interim=()):
    return {"status": status, "reason": None, "version": "2", "headers": headers, "body_len": body_len,
            "missed_bytes": 0, "body_truncated": False, "interim": list(interim)}


ROOT = {"host": "example.com", ":scheme": "http"}


def read(pcap: Path) -> tuple[list[dict], dict]:
    out = pcap.with_name(pcap.name + ".out.jsonl")
    proc = run_sniffd("read", pcap, "-o", out, "--stats")
    assert proc.returncode == 0, proc.stderr
    return without_run_fields(load_jsonl(out)), json.loads(proc.stderr.strip().splitlines()[-1])


def exchange(t: TcpConversation, client: list, server: list, start: float = 0) -> list:
    """Handshake at ``start``, then (ms, bytes or segments) client and server steps, acks, close at +20 ms."""
    packets = list(zip([ms(start), ms(start + 0.5), ms(start + 0.7)], t.handshake()))
    for at, payload in sorted(client + server, key=lambda step: step[0]):
        side = t.client_data if (at, payload) in client else t.server_data
        packets += [(ms(start + at), seg) for seg in side(payload)]
    packets.append((ms(start + 15), t.client_ack()))
    packets += list(zip([ms(start + 20), ms(start + 21), ms(start + 22)], t.close()))
    return packets


# --- prior knowledge -------------------------------------------------------------------------

OK_RESPONSE = SERVER_START + headers(1, resp_block(200, ("content-type", "text/plain"), ("content-length", "2"))) \
    + data(1, b"ok", end_stream=True)
OK_FIELDS = {"content-type": "text/plain", "content-length": "2"}


def test_prior_knowledge_on_any_port_with_the_preface_cut_over_segments(tmp_path):
    """Port 50080 is no HTTP port: the preface decides.  One connection's first
    segment is 5 bytes ("PRI *"), the next 10: too few to tell, so the flow
    waits for the 24th byte; another's arrive 2nd, 3rd, then 1st.  A third,
    HTTP/1, opens with "P" alone (POST cut after its first byte): read as
    HTTP/1, its record exactly what it would be uncut."""
    c1, c2, c3 = ("10.0.0.1", 41001), ("10.0.0.1", 41002), ("10.0.0.1", 41003)
    s = ("10.0.0.2", 50080)
    client_bytes = CLIENT_START + headers(1, GET_ROOT, end_stream=True)
    a = TcpConversation(c1, s)
    first = [*zip([ms(0), ms(0.5), ms(0.7)], a.handshake())]
    first += list(zip([ms(1), ms(2), ms(3)], a.client_data(client_bytes, [5, 10])))
    first += [(ms(10), a.server_data(OK_RESPONSE)[0]), (ms(11), a.client_ack())]
    first += list(zip([ms(20), ms(21), ms(22)], a.close()))
    b = TcpConversation(c2, s, client_isn=5_000_000)
    second = [*zip([ms(30), ms(30.5), ms(30.7)], b.handshake())]
    segs = b.client_data(client_bytes, [5, 10])
    second += [(ms(31), segs[1]), (ms(32), segs[2]), (ms(33), segs[0])]
    second += [(ms(40), b.server_data(OK_RESPONSE)[0]), (ms(41), b.client_ack())]
    second += list(zip([ms(50), ms(51), ms(52)], b.close()))
    h = TcpConversation(c3, s, client_isn=7_000_000)
    post = b"POST /form HTTP/1.1\r\nHost: example.test\r\nContent-Length: 3\r\n\r\na=1"
    third = [*zip([ms(60), ms(60.5), ms(60.7)], h.handshake())]
    third += list(zip([ms(61), ms(62)], h.client_data(post, [1])))
    third += [(ms(70), h.server_data(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")[0]), (ms(71), h.client_ack())]
    third += list(zip([ms(80), ms(81), ms(82)], h.close()))
    pcap = tmp_path / "prior.pcap"
    craft.capture(pcap, first + second + third)
    records, stats = read(pcap)
    assert [
        h2_record(c1, s, 3, req2("GET", "/", ROOT), resp2(200, OK_FIELDS, 2), 7.0, 1, 1),
        # The reassembly delivers the three segments at once, when the first arrives (33 ms):
        # the HEADERS frame is in the last one, captured at 32 ms.
        h2_record(c2, s, 32, req2("GET", "/", ROOT), resp2(200, OK_FIELDS, 2), 8.0, 1, 1),
        {
            "kind": "http",
            "ts": stamp(61),
            **ends(c3, s),
            "request": {"method": "POST", "uri": "/form", "version": "1.1", "host": "example.test",
                        "headers": {"host": "example.test", "content-length": "3"}, "body_len": 3,
                        "missed_bytes": 0, "body_truncated": False},
            "response": {"status": 201, "reason": "Created", "version": "1.1", "headers": {"content-length": "0"},
                         "body_len": 0, "missed_bytes": 0, "body_truncated": False, "interim": []},
            "duration_ms": 9.0,
            "trans_depth": 1,
            "community_id": community_id(*c3, *s),
            "end_reason": "complete",
            "anomalies": [],
        },
    ] == records
    assert [HTTP2_RECORD_KEYS, HTTP2_RECORD_KEYS, HTTP1_RECORD_KEYS] == [list(r) for r in records]
    assert ({}, 0) == (stats["anomalies"], stats["memory_estimate_bytes"])


def test_a_server_that_sends_its_settings_before_the_clients_preface(tmp_path):
    """An HTTP/2 server may send its SETTINGS as soon as it accepts (nghttp2 and
    Go's server do): the server's bytes come first, and the client's preface
    still decides.  (Read as HTTP/1, the preface was a PRI request and junk.)"""
    c, s = ("10.0.0.1", 41005), ("10.0.0.2", 80)
    t = TcpConversation(c, s)
    packets = [*zip([ms(0), ms(0.5), ms(0.7)], t.handshake())]
    packets.append((ms(1), t.server_data(SERVER_START)[0]))
    packets.append((ms(2), t.client_data(CLIENT_START + headers(1, GET_ROOT, end_stream=True))[0]))
    packets.append((ms(3), t.server_data(headers(1, resp_block(200, ("content-type", "text/plain"),
                                                               ("content-length", "2"))) + data(1, b"ok", end_stream=True))[0]))
    packets.append((ms(4), t.client_ack()))
    packets += list(zip([ms(20), ms(21), ms(22)], t.close()))
    pcap = tmp_path / "server_first.pcap"
    craft.capture(pcap, packets)
    records, stats = read(pcap)
    assert [h2_record(c, s, 2, req2("GET", "/", ROOT), resp2(200, OK_FIELDS, 2), 1.0, 1, 1)] == records
    assert ({}, 0) == (stats["anomalies"], stats["memory_estimate_bytes"])


GRPC_REQUEST = b"\x00\x00\x00\x00\x07\x0a\x05world"
GRPC_REPLY = b"\x00\x00\x00\x00\x05\x0a\x03hey"


def test_concurrent_streams_grpc_reset_push_and_goaway(tmp_path):
    """Four streams open at once; the server answers 3 (gRPC, status in the
    trailers), resets 5 (RST_STREAM CANCEL), pushes /style.css on 1 (PUSH_PROMISE),
    answers 1 and the push, then says GOAWAY with last-stream-id 5: stream 7
    was never processed.  Records come as streams finish; trans_depth is the
    order they were opened (the pushed stream last)."""
    c, s = ("10.0.0.1", 41010), ("10.0.0.2", 8080)
    t = TcpConversation(c, s)
    grpc_req = req_block("POST", "/pkg.Greeter/SayHello", ("content-type", "application/grpc"), ("te", "trailers"))
    client = [(1, CLIENT_START + headers(1, GET_ROOT, end_stream=True) + headers(3, grpc_req)
               + data(3, GRPC_REQUEST, end_stream=True) + headers(5, req_block("GET", "/five"), end_stream=True)
               + headers(7, req_block("GET", "/seven"), end_stream=True))]
    push_req = block((":method", "GET"), (":scheme", "http"), (":path", "/style.css"), (":authority", "example.com"))
    server = [
        (5, SERVER_START + headers(3, resp_block(200, ("content-type", "application/grpc"))) + data(3, GRPC_REPLY)
         + headers(3, block(("grpc-status", "7"), ("grpc-message", "not%20allowed")), end_stream=True)),
        (6, rst(5, 0x8)),
        (7, push_promise(1, 2, push_req) + headers(1, resp_block(200, ("content-length", "2")))
         + data(1, b"hi", end_stream=True)),
        (8, headers(2, resp_block(200, ("content-type", "text/css"))) + data(2, b"p{}", end_stream=True)),
        (9, goaway(5, 0)),
    ]
    pcap = tmp_path / "streams.pcap"
    craft.capture(pcap, exchange(t, client, server))
    records, stats = read(pcap)
    assert [
        h2_record(c, s, 1, req2("POST", "/pkg.Greeter/SayHello", {**ROOT, "content-type": "application/grpc",
                                                                     "te": "trailers"}, len(GRPC_REQUEST)),
                  resp2(200, {"content-type": "application/grpc", "grpc-status": "7",
                              "grpc-message": "not%20allowed"}, len(GRPC_REPLY)),
                  4.0, 2, 3, grpc={"status": 7, "message": "not allowed"}),
        h2_record(c, s, 1, req2("GET", "/five", ROOT), None, None, 3, 5, "rst_stream", ["response_missing"],
                  h2_error="CANCEL"),
        h2_record(c, s, 1, req2("GET", "/", ROOT), resp2(200, {"content-length": "2"}, 2), 6.0, 1, 1),
        h2_record(c, s, 7, req2("GET", "/style.css", ROOT), resp2(200, {"content-type": "text/css"}, 3), 1.0, 5, 2,
                  pushed_by=1),
        h2_record(c, s, 1, req2("GET", "/seven", ROOT), None, None, 4, 7, "goaway", ["response_missing"],
                  h2_error="NO_ERROR"),
    ] == records
    assert ({"response_missing": 2}, 0) == (stats["anomalies"], stats["memory_estimate_bytes"])


# --- gaps ------------------------------------------------------------------------------------


def test_a_gap_in_a_header_block_flags_the_streams_and_guesses_no_header_after_it(tmp_path):
    """The server's segment holding the rest of stream 1's response HEADERS never
    reached the capture.  That block (literal with incremental indexing: it
    changed the HPACK table) cannot be decoded, and neither can stream 3's
    after it (the table is unknown): both have status null and no fields, but
    their bodies and END_STREAM still come from the frames.  The client's
    direction, whole, is read as it came."""
    c, s = ("10.0.0.1", 41020), ("10.0.0.2", 80)
    t = TcpConversation(c, s)
    one = headers(1, literal(b":status", b"200") + indexed_literal(b"x-trace", b"a1b2c3d4"))
    segments = [SERVER_START + one[:11], one[11:], data(1, b"ok", end_stream=True)
                + headers(3, literal(b":status", b"404") + b"\xbe") + data(3, b"nope", end_stream=True)]
    packets = [*zip([ms(0), ms(0.5), ms(0.7)], t.handshake())]
    packets.append((ms(1), t.client_data(CLIENT_START + headers(1, GET_ROOT, end_stream=True)
                                         + headers(3, req_block("GET", "/b"), end_stream=True))[0]))
    server_segs = [t.server_data(p)[0] for p in segments]
    packets += [(ms(4), server_segs[0]), (ms(5), server_segs[2])]  # server_segs[1] is lost
    packets.append((ms(6), t.client_ack()))
    packets += list(zip([ms(20), ms(21), ms(22)], t.close()))
    pcap = tmp_path / "gap.pcap"
    craft.capture(pcap, packets)
    records, stats = read(pcap)
    unknown = {"status": None, "reason": None, "version": "2", "headers": {}, "missed_bytes": 0,
               "body_truncated": False, "interim": []}  # body_len: from the DATA frames
    assert [
        h2_record(c, s, 1, req2("GET", "/", ROOT), {**unknown, "body_len": 2}, 4.0, 1, 1,
                  anomalies=["tcp_gap", "http2_gap"]),
        h2_record(c, s, 1, req2("GET", "/b", ROOT), {**unknown, "body_len": 4}, 4.0, 2, 3,
                  anomalies=["tcp_gap", "http2_hpack_desync"]),
    ] == records
    assert (1, 0) == (stats["anomalies"].get("tcp_gap"), stats["memory_estimate_bytes"])


# --- upgrade ---------------------------------------------------------------------------------

UPGRADE_REQUEST = (b"GET /up HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                   b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
UPGRADE_FIELDS = {"host": "example.com", "connection": "Upgrade, HTTP2-Settings", "upgrade": "h2c",
                  "http2-settings": "AAMAAABkAAQCAAAAAAIAAAAA"}
SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"


def _upgraded(c, s, ts, duration, body=2, anomalies=()):
    """Stream 1 of an upgraded connection: the HTTP/1.1 request as sent, the 101 as interim."""
    return h2_record(
        c, s, ts,
        {"method": "GET", "uri": "/up", "version": "1.1", "host": "example.com", "headers": UPGRADE_FIELDS,
         "body_len": 0, "missed_bytes": 0, "body_truncated": False},
        resp2(200, {"content-length": str(body)}, body, [{"status": 101, "reason": "Switching Protocols"}]),
        duration, 1, 1, anomalies=anomalies)


def test_upgrade_with_the_clients_preface_in_the_request_segment(tmp_path):
    """The client sends the preface and a second request right behind the upgrade
    request, in one segment (RFC 7540 section 3.2 says to wait for the 101, some
    clients do not); the server's SETTINGS and stream 1's response come in the
    101's segment.  Nothing is lost: stream 1 is the HTTP/1.1 request, answered
    in HTTP/2, stream 3 the next one."""
    c, s = ("10.0.0.1", 41030), ("10.0.0.2", 80)
    t = TcpConversation(c, s)
    client = [(1, UPGRADE_REQUEST + CLIENT_START + headers(3, req_block("GET", "/next"), end_stream=True))]
    server = [(5, SWITCHING + SERVER_START + headers(1, resp_block(200, ("content-length", "2")))
               + data(1, b"up", end_stream=True) + headers(3, resp_block(204), end_stream=True) + CLIENT_ACK)]
    pcap = tmp_path / "upgrade.pcap"
    craft.capture(pcap, exchange(t, client, server))
    records, stats = read(pcap)
    assert [
        _upgraded(c, s, 1, 4.0),
        h2_record(c, s, 1, req2("GET", "/next", ROOT), resp2(204, {}), 4.0, 2, 3),
    ] == records
    assert ({}, 0) == (stats["anomalies"], stats["memory_estimate_bytes"])


def test_upgrade_after_a_keep_alive_exchange_with_every_segment_cut_small(tmp_path):
    """An HTTP/1.1 exchange, then the upgrade; every segment of the connection is
    cut into 7-byte pieces (the 101's head ends inside one, with the server's
    first HTTP/2 bytes after it in the same piece): the records are those of
    the whole segments."""
    c, s = ("10.0.0.1", 41031), ("10.0.0.2", 80)
    t = TcpConversation(c, s)
    steps = [
        ("c", b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ("c", UPGRADE_REQUEST),
        ("s", SWITCHING + SERVER_START + headers(1, resp_block(200, ("content-length", "3")))
         + data(1, b"abc", end_stream=True)),
        ("c", CLIENT_START),
        ("c", headers(3, req_block("GET", "/b"), end_stream=True)),
        ("s", headers(3, resp_block(200), end_stream=True)),
    ]
    packets = [*zip([ms(0), ms(0.5), ms(0.7)], t.handshake())]
    for k, (side, payload) in enumerate(steps):
        segs = (t.client_data if side == "c" else t.server_data)(payload, [7] * ((len(payload) - 1) // 7))
        packets += [(ms(10 * (k + 1)), seg) for seg in segs]
    packets.append((ms(80), t.client_ack()))
    packets += list(zip([ms(90), ms(91), ms(92)], t.close()))
    pcap = tmp_path / "small.pcap"
    craft.capture(pcap, packets)
    records, stats = read(pcap)
    assert [
        {
            "kind": "http", "ts": stamp(10), **ends(c, s),
            "request": {"method": "GET", "uri": "/a", "version": "1.1", "host": "example.com",
                        "headers": {"host": "example.com"}, "body_len": 0, "missed_bytes": 0, "body_truncated": False},
            "response": {"status": 200, "reason": "OK", "version": "1.1", "headers": {"content-length": "2"},
                         "body_len": 2, "missed_bytes": 0, "body_truncated": False, "interim": []},
            "duration_ms": 10.0, "trans_depth": 1, "community_id": community_id(*c, *s), "end_reason": "complete",
            "anomalies": [],
        },
        {**_upgraded(c, s, 30, 10.0, body=3), "trans_depth": 2},
        h2_record(c, s, 60, req2("GET", "/b", ROOT), resp2(200, {}), 10.0, 3, 3),
    ] == records
    assert ({}, 0) == (stats["anomalies"], stats["memory_estimate_bytes"])


def test_http1_records_do_not_change_when_an_h2c_connection_is_beside_them(tmp_path):
    """The same HTTP/1 connection read alone and next to an h2c one: the same line, byte for byte."""
    h = TcpConversation(("10.0.0.1", 41040), ("10.0.0.2", 80))
    plain = exchange(h, [(1, b"GET /a?x=1 HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n")],
                     [(3, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")])
    t = TcpConversation(("10.0.0.1", 41041), ("10.0.0.2", 80), client_isn=9_000_000)
    h2 = exchange(t, [(1, CLIENT_START + headers(1, GET_ROOT, end_stream=True))], [(2, OK_RESPONSE)], start=100)
    alone, both = tmp_path / "alone.pcap", tmp_path / "both.pcap"
    craft.capture(alone, plain)
    craft.capture(both, sorted(plain + h2, key=lambda p: p[0]))
    run_sniffd("read", alone, "-o", tmp_path / "alone.jsonl")
    run_sniffd("read", both, "-o", tmp_path / "both.jsonl")
    # Byte for byte but the uid, drawn afresh each run (pcapcheck.RUN_FIELDS).
    uid = re.compile(r'"uid":"C[0-9A-Za-z]{17}"')
    lines = [uid.sub('"uid":"U"', line) for line in (tmp_path / "both.jsonl").read_text().splitlines()]
    assert 2 == len(lines)
    assert [uid.sub('"uid":"U"', line) for line in (tmp_path / "alone.jsonl").read_text().splitlines()] == lines[:1]
    assert PREFACE == CLIENT_START[:24]
