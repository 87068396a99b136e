"""Flow table, reassembly and HTTP together, through sniffd.pipeline.Pipeline
fed with Ethernet frames built by tests/craft.py (dpkt).

The property: however the capture reorders and duplicates the data segments
of a connection, sniffd writes exactly the records it writes for the capture
in order.  Every packet carries the same time stamp, so no gap timeout can
fire and clock clamping plays no part: the records can be compared whole.
"""

from __future__ import annotations

import craft
import h2craft
from craft import TcpConversation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sniffd import records
from sniffd.pipeline import Pipeline
from sniffd.settings import Settings

T0 = 1795257725.0  # 2026-11-21T10:42:05Z
CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 80)
CID = records.community_id(bytes([10, 0, 0, 1]), 40000, bytes([10, 0, 0, 2]), 80)
ENDS = {"client": {"ip": "10.0.0.1", "port": 40000}, "server": {"ip": "10.0.0.2", "port": 80}}
KINDS = ("GET", "POST", "HEAD", "CHUNKED")
# What the request line of transaction n of each kind says (see exchange).
URIS = {"GET": "GET /get/%d", "POST": "POST /post/%d", "HEAD": "HEAD /head/%d", "CHUNKED": "GET /chunked/%d"}


# One uid salt and sensor for every pipeline here: runs compared give the
# same uids, and whole expected records can name them.
UID_SALT = 0
SETTINGS = Settings(sensor="test")
RUN = {"sensor": "test", "interface": None}


def run(packets: list[tuple[float, craft.Segment]]) -> list[dict]:
    p = Pipeline(SETTINGS, uid_salt=UID_SALT)
    out: list[dict] = []
    for frame in craft.frames(packets):
        out += p.feed(frame.ts, 1, frame.data, len(frame.data))
    out += p.flush("end_of_input")
    return out


def exchange(kind: str, n: int, body: bytes) -> tuple[bytes, bytes]:
    """(request, response) bytes of transaction ``n`` of the given kind."""
    host = b"Host: example.test\r\n"
    if kind == "POST":
        req = b"POST /post/%d HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (n, host, len(body), body)
        return req, b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    if kind == "HEAD":
        req = b"HEAD /head/%d HTTP/1.1\r\n%s\r\n" % (n, host)
        return req, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    if kind == "CHUNKED":
        req = b"GET /chunked/%d HTTP/1.1\r\n%s\r\n" % (n, host)
        half = len(body) // 2
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:half], body[half:]) if c)
        return req, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    req = b"GET /get/%d HTTP/1.1\r\n%s\r\n" % (n, host)
    return req, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def cuts(data: st.DataObject, length: int) -> list[int]:
    """Random segment sizes adding up to at most ``length`` (split_bytes
    puts the rest in a last segment)."""
    if length < 2:
        return []
    points = sorted(data.draw(st.lists(st.integers(1, length - 1), unique=True, max_size=5)))
    return [b - a for a, b in zip([0, *points], points)]


def conversation(data: st.DataObject):
    """(handshake, data segments, closing segments, expected "METHOD uri"s)
    of one keep-alive connection with 2-4 transactions, one of them a POST."""
    count = data.draw(st.integers(2, 4), label="transactions")
    kinds = data.draw(st.lists(st.sampled_from(KINDS), min_size=count, max_size=count), label="kinds")
    kinds[data.draw(st.integers(0, count - 1), label="post_at")] = "POST"
    c = TcpConversation(
        CLIENT,
        SERVER,
        client_isn=data.draw(st.integers(0, 2**32 - 1), label="client_isn"),
        server_isn=data.draw(st.integers(0, 2**32 - 1), label="server_isn"),
    )
    handshake = c.handshake()
    segments: list[craft.Segment] = []
    for n, kind in enumerate(kinds):
        body = bytes(data.draw(st.binary(min_size=1, max_size=200), label=f"body{n}"))
        request, response = exchange(kind, n, body)
        segments += c.client_data(request, cuts(data, len(request)))
        segments += c.server_data(response, cuts(data, len(response)))
        segments.append(c.client_ack())
    return handshake, segments, c.close(), [URIS[kind] % n for n, kind in enumerate(kinds)]


def shuffled(data: st.DataObject, segments: list[craft.Segment]) -> list[craft.Segment]:
    """``segments`` in any order, some of them (or part of them) twice."""
    order = data.draw(st.permutations(range(len(segments))), label="order")
    out = [segments[i] for i in order]
    for i in data.draw(st.lists(st.integers(0, len(segments) - 1), max_size=6), label="duplicates"):
        seg = segments[i]
        lo = data.draw(st.integers(0, len(seg.payload)), label="dup_from")
        hi = data.draw(st.integers(lo, len(seg.payload)), label="dup_to")
        copy = seg.sub(lo, hi) if seg.payload else seg
        out.insert(data.draw(st.integers(0, len(out)), label="dup_at"), copy)
    return out


def logged(records: list[dict]) -> list[tuple]:
    return [(r["trans_depth"], r["request"]["method"] + " " + r["request"]["uri"], r["anomalies"]) for r in records]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_flows_reordered_and_duplicated_segments_give_the_same_records(data: st.DataObject) -> None:
    handshake, segments, closing, uris = conversation(data)
    expected = run([(T0, s) for s in handshake + segments + closing])
    # The in-order capture is logged as it should be (the property is not vacuous).
    assert [(n + 1, uri, []) for n, uri in enumerate(uris)] == logged(expected)
    assert expected == run([(T0, s) for s in handshake + shuffled(data, segments) + closing])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_flows_fins_arriving_before_the_data_they_follow_give_the_same_records(data: st.DataObject) -> None:
    """Like the test above, with both FINs and the last ACK shuffled in with
    the data: a FIN seen early must wait for the bytes before it."""
    handshake, segments, closing, uris = conversation(data)
    expected = run([(T0, s) for s in handshake + segments + closing])
    assert [(n + 1, uri, []) for n, uri in enumerate(uris)] == logged(expected)
    assert expected == run([(T0, s) for s in handshake + shuffled(data, segments + closing)])


H2_UPGRADE = (b"GET /h2/0 HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
              b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")


def h2c_conversation(data: st.DataObject):
    """Like ``conversation``, for HTTP/2 in clear: prior knowledge or an
    upgrade (stream 1 the HTTP/1.1 request), then 1-3 streams whose requests
    and responses carry random bodies, every direction's bytes cut at random.
    Returns the segments and the expected (stream id, "METHOD uri")s."""
    upgrade = data.draw(st.booleans(), label="upgrade")
    count = data.draw(st.integers(1, 3), label="streams")
    c = TcpConversation(CLIENT, SERVER, client_isn=data.draw(st.integers(0, 2**32 - 1), label="client_isn"),
                        server_isn=data.draw(st.integers(0, 2**32 - 1), label="server_isn"))
    handshake = c.handshake()
    steps: list[tuple[bool, bytes]] = []
    expect = []
    first = 1
    if upgrade:
        body = bytes(data.draw(st.binary(max_size=100), label="body_up"))
        steps += [(True, H2_UPGRADE),
                  (False, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + h2craft.SERVER_START
                   + h2craft.headers(1, h2craft.resp_block(200)) + h2craft.data(1, body, end_stream=True))]
        expect.append((1, "GET /h2/0"))
        first = 3
    client = h2craft.CLIENT_START
    server = b"" if upgrade else h2craft.SERVER_START
    for k in range(count):
        sid = first + 2 * k
        body = bytes(data.draw(st.binary(max_size=300), label=f"req{k}"))
        client += h2craft.headers(sid, h2craft.req_block("POST", f"/h2/{sid}")) + h2craft.data(sid, body, end_stream=True)
        body = bytes(data.draw(st.binary(max_size=300), label=f"resp{k}"))
        server += h2craft.headers(sid, h2craft.resp_block(200)) + h2craft.data(sid, body, end_stream=True)
        expect.append((sid, f"POST /h2/{sid}"))
    steps += [(True, client), (False, server)]
    segments: list[craft.Segment] = []
    for from_client, payload in steps:
        segments += (c.client_data if from_client else c.server_data)(payload, cuts(data, len(payload)))
    segments.append(c.client_ack())
    return handshake, segments, c.close(), expect


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_h2c_reordered_and_duplicated_segments_give_the_same_records(data: st.DataObject) -> None:
    """The property for HTTP/2 in clear: the preface, the upgrade's hand-over
    and the frames may be cut and reordered anywhere."""
    handshake, segments, closing, expect = h2c_conversation(data)
    expected = run([(T0, s) for s in handshake + segments + closing])
    assert [(sid, line, []) for sid, line in expect] == [
        (r["stream_id"], r["request"]["method"] + " " + r["request"]["uri"], r["anomalies"]) for r in expected]
    assert expected == run([(T0, s) for s in handshake + shuffled(data, segments) + closing])


def ms(n: float) -> float:
    return T0 + n / 1000


def test_flows_flush_at_end_of_input_writes_the_open_transaction() -> None:
    """No FIN: the response is 4 of 10 body bytes when the file ends."""
    c = TcpConversation(CLIENT, SERVER)
    packets = [
        *zip([ms(0), ms(1), ms(2)], c.handshake()),
        (ms(3), c.client_data(b"GET /open HTTP/1.1\r\nHost: example.test\r\n\r\n")[0]),
        (ms(10), c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd")[0]),
    ]
    p = Pipeline(SETTINGS, uid_salt=UID_SALT)
    fed = [r for frame in craft.frames(packets) for r in p.feed(frame.ts, 1, frame.data, len(frame.data))]
    flushed = p.flush("end_of_input")
    assert (
        [],
        [
            {
                "kind": "http",
                "ts": "2026-11-21T10:42:05.003000Z",
                "uid": "C00000000000000000",
                **ENDS,
                "request": {
                    "method": "GET",
                    "uri": "/open",
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
                    "headers": {"content-length": "10"},
                    "body_len": 4,
                    "missed_bytes": 0,
                    "body_truncated": False,
                    "interim": [],
                },
                "duration_ms": 7.0,
                "trans_depth": 1,
                "community_id": CID,
                "end_reason": "end_of_input",
                "anomalies": ["message_incomplete"],
                **RUN,
            }
        ],
        0,
    ) == (fed, flushed, p.stats["open_connections"])


def test_flows_flush_at_shutdown_marks_open_transactions_cut_by_shutdown() -> None:
    c = TcpConversation(CLIENT, SERVER)
    packets = [
        *zip([ms(0), ms(1), ms(2)], c.handshake()),
        (ms(3), c.client_data(b"GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n")[0]),
        (ms(5), c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")[0]),
        (ms(6), c.client_data(b"GET /b HTTP/1.1\r\nHost: example.test\r\n\r\n")[0]),
    ]
    p = Pipeline(SETTINGS, uid_salt=UID_SALT)
    fed = [r for frame in craft.frames(packets) for r in p.feed(frame.ts, 1, frame.data, len(frame.data))]
    flushed = p.flush("shutdown")
    assert (
        [("/a", [])],
        [
            {
                "kind": "http",
                "ts": "2026-11-21T10:42:05.006000Z",
                "uid": "C00000000000000000",
                **ENDS,
                "request": {
                    "method": "GET",
                    "uri": "/b",
                    "version": "1.1",
                    "host": "example.test",
                    "headers": {"host": "example.test"},
                    "body_len": 0,
                    "missed_bytes": 0,
                    "body_truncated": False,
                },
                "response": None,
                "duration_ms": None,
                "trans_depth": 2,
                "community_id": CID,
                "end_reason": "shutdown",
                "anomalies": ["cut_by_shutdown", "response_missing"],
                **RUN,
            }
        ],
    ) == ([(r["request"]["uri"], r["anomalies"]) for r in fed], flushed)


def test_flows_response_overtaken_by_the_next_request_and_response_is_not_lost() -> None:
    """The smallest reordering the property test found to lose data: the
    capture has request 1, request 2, response 2, then response 1.  Every
    byte was captured, so both transactions must be logged whole."""
    c = TcpConversation(CLIENT, SERVER)
    handshake = c.handshake()
    req1 = c.client_data(b"GET /1 HTTP/1.1\r\nHost: example.test\r\n\r\n")[0]
    resp1 = c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")[0]
    req2 = c.client_data(b"GET /2 HTTP/1.1\r\nHost: example.test\r\n\r\n")[0]
    resp2 = c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")[0]
    closing = c.close()
    in_order = run([(T0, s) for s in handshake + [req1, resp1, req2, resp2] + closing])
    reordered = run([(T0, s) for s in handshake + [req1, req2, resp2, resp1] + closing])
    assert (["/1", "/2"], in_order) == ([r["request"]["uri"] for r in in_order], reordered)
