"""sniffd.http2.H2Connection as a whole: a conversation made by a real HTTP/2
stack (python-hyper h2, client and server in memory) compared with what that
stack sent and received; the same bytes split at every offset; random bytes
that must never raise; floods that must stay within the bounds.
"""

from __future__ import annotations

import random
import struct

import h2.config
import h2.connection
import h2.events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_http2 import (
    CLIENT_START,
    CONTINUATION,
    DATA,
    GET_ROOT,
    SERVER_START,
    frame,
    headers,
    req_block,
    resp_block,
    view,
)

from sniffd.anomalies import ANOMALIES
from sniffd.http2 import H2_ANOMALIES, PREFACE, H2Connection
from sniffd.http2.connection import MAX_HEADER_BLOCK_BYTES

KNOWN = set(ANOMALIES) | set(H2_ANOMALIES)


def record_view(fields):
    """The documented mapping (sniffd.http2.fields), written again from the
    h2 stack's field lists: the expected headers of a record."""
    out: dict[str, str] = {}
    pseudo = {}
    for name, value in fields:
        name, value = name.decode(), value.decode()
        if name.startswith(":"):
            pseudo[name] = value
            continue
        if name in out:
            out[name] += ("; " if name == "cookie" else ", ") + value
        else:
            out[name] = value
    if ":authority" in pseudo and "host" not in out:
        out["host"] = pseudo[":authority"]
    for name in (":scheme", ":protocol"):
        if name in pseudo:
            out[name] = pseudo[name]
    return pseudo, out


class Conversation:
    """Drive an h2 client and server against each other, keeping every byte
    each sent (in the order sent) and what each side knows."""

    def __init__(self) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.steps: list[tuple[bool, bytes]] = []
        self.server_events: list = []
        self.client_events: list = []

    def c2s(self) -> None:
        data = self.client.data_to_send()
        if data:
            self.steps.append((True, data))
            self.server_events += self.server.receive_data(data)

    def s2c(self) -> None:
        data = self.server.data_to_send()
        if data:
            self.steps.append((False, data))
            self.client_events += self.client.receive_data(data)


def make_conversation():
    """Five requests on one connection and a push; returns (steps, truth)
    where truth maps stream id -> what the stacks sent and received."""
    c = Conversation()
    c.client.initiate_connection()
    c.server.initiate_connection()  # a server's SETTINGS come first (RFC 9113 section 3.4)
    c.c2s()
    c.s2c()
    c.c2s()
    c.s2c()
    requests = {
        1: ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"example.com"),
             (b":path", b"/index.html"), (b"user-agent", b"gen/1"), (b"cookie", b"a=1"), (b"cookie", b"b=2")], b""),
        3: ([(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"example.com"),
             (b":path", b"/api/items?x=1"), (b"content-type", b"application/json"),
             (b"content-length", b"3000")], b"{" + b"a" * 2998 + b"}"),
        5: ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"example.com"),
             (b":path", b"/missing")], b""),
        7: ([(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"grpc.local"),
             (b":path", b"/pkg.Svc/Call"), (b"te", b"trailers"), (b"content-type", b"application/grpc")],
            b"\x00\x00\x00\x00\x03abc"),
        9: ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"example.com"),
             (b":path", b"/slow")], b""),
    }
    for sid, (fields, body) in requests.items():
        c.client.send_headers(sid, fields, end_stream=not body)
        if body:
            c.client.send_data(sid, body[:1000])
            c.client.send_data(sid, body[1000:], end_stream=True)
        c.c2s()
    c.s2c()
    pushed_request = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"example.com"),
                      (b":path", b"/style.css")]
    c.server.push_stream(1, 2, pushed_request)
    responses = {
        1: ([(b":status", b"200"), (b"content-type", b"text/html")], b"<html>" * 50, None),
        3: ([(b":status", b"201"), (b"content-type", b"application/json"), (b"location", b"/api/items/9")],
            b'{"id":9}', None),
        5: ([(b":status", b"404"), (b"content-type", b"text/plain")], b"not found", None),
        7: ([(b":status", b"200"), (b"content-type", b"application/grpc")], b"\x00\x00\x00\x00\x02ok",
            [(b"grpc-status", b"5"), (b"grpc-message", b"no%20such%20thing")]),
    }
    for sid, (fields, body, trailers) in responses.items():
        c.server.send_headers(sid, fields)
        c.server.send_data(sid, body, end_stream=trailers is None)
        if trailers:
            c.server.send_headers(sid, trailers, end_stream=True)
        c.s2c()
    c.server.send_headers(9, [(b":status", b"200")])
    c.server.send_data(9, b"x" * 100)
    c.s2c()
    c.client.reset_stream(9, 8)
    c.c2s()
    c.server.send_headers(2, [(b":status", b"200"), (b"content-type", b"text/css")])
    c.server.send_data(2, b"body{color:red}", end_stream=True)
    c.s2c()
    c.client.close_connection()
    c.c2s()

    # The truth, from what the stacks said happened.
    got = {}
    for e in c.server_events:
        if isinstance(e, h2.events.RequestReceived):
            got.setdefault(e.stream_id, {})["request"] = e.headers
        elif isinstance(e, h2.events.DataReceived):
            got[e.stream_id]["request_body"] = got[e.stream_id].get("request_body", 0) + len(e.data)
        elif isinstance(e, h2.events.StreamReset):
            got[e.stream_id]["reset"] = e.error_code
    for e in c.client_events:
        if isinstance(e, h2.events.PushedStreamReceived):
            got.setdefault(e.pushed_stream_id, {})["request"] = e.headers
            got[e.pushed_stream_id]["pushed_by"] = e.parent_stream_id
        elif isinstance(e, h2.events.ResponseReceived):
            got[e.stream_id]["response"] = list(e.headers)
        elif isinstance(e, h2.events.TrailersReceived):
            got[e.stream_id]["response"] = got[e.stream_id]["response"] + list(e.headers)
        elif isinstance(e, h2.events.DataReceived):
            got[e.stream_id]["response_body"] = got[e.stream_id].get("response_body", 0) + len(e.data)
    return c.steps, got


def feed(steps, chunking=None):
    """Feed steps at t = 1, 2, ...; ``chunking(i, data)`` splits step i."""
    conn = H2Connection()
    out = []
    for i, (from_client, data) in enumerate(steps):
        parts = chunking(i, data) if chunking else [data]
        for part in parts:
            conn.feed(from_client, part, float(i + 1))
        out += conn.take()
    conn.close(None, float(len(steps) + 1))
    return conn, out + conn.take()


def test_a_real_stacks_conversation_gives_what_it_sent_and_got():
    steps, truth = make_conversation()
    conn, got = feed(steps)
    assert {} == conn.loose
    by_id = {t.stream_id: t for t in got}
    assert [1, 2, 3, 5, 7, 9] == sorted(by_id)
    for sid, known in truth.items():
        t = by_id[sid]
        pseudo, want = record_view(known["request"])
        assert (pseudo[":method"], pseudo[":path"], want, known.get("request_body", 0)) == \
            (t.request.method, t.request.uri, t.request.headers, t.request.body_len), sid
        if "response" in known:
            pseudo, want = record_view(known["response"])
            assert (int(pseudo[":status"]), want, known.get("response_body", 0)) == \
                (t.response.status, t.response.headers, t.response.body_len), sid
    assert {"grpc-status": "5", "grpc-message": "no%20such%20thing"}.items() <= by_id[7].response.headers.items()
    assert (5, "no such thing") == by_id[7].grpc
    assert (1, "/style.css") == (by_id[2].pushed_by, by_id[2].request.uri)
    assert ("rst_stream", "CANCEL", truth[9]["reset"]) == (by_id[9].end_reason, by_id[9].h2_error, 8)
    assert {sid: ("complete", set()) for sid in (1, 2, 3, 5, 7)} == \
        {sid: (by_id[sid].end_reason, by_id[sid].anomalies) for sid in (1, 2, 3, 5, 7)}
    assert [1, 2, 3, 4, 5, 6] == sorted(t.depth for t in got)


def test_same_transactions_whatever_the_chunking():
    """Every step split at every offset, and every step fed a byte at a time."""
    steps, _ = make_conversation()
    _, want = feed(steps)
    want = [view(t) for t in want]
    _, got = feed(steps, lambda i, d: [d[k:k + 1] for k in range(len(d))])
    assert want == [view(t) for t in got]
    for target in range(len(steps)):
        size = len(steps[target][1])
        for cut in range(1, size, max(1, size // 300)):  # every offset of small steps, ~300 of large ones
            _, got = feed(steps, lambda i, d: [d[:cut], d[cut:]] if i == target else [d])
            assert want == [view(t) for t in got], (target, cut)


def test_crafted_exchange_split_at_every_offset():
    body = b"0123456789" * 3
    steps = [(True, CLIENT_START + headers(1, req_block("POST", "/a", ("content-length", "30")), pad=3)
              + frame(DATA, 0x8, 1, bytes([2]) + body[:10] + b"\0\0")
              + frame(DATA, 0x1, 1, body[10:])),
             (False, SERVER_START + headers(1, resp_block(100)) + headers(1, resp_block(200, ("x-y", "z")))
              + frame(DATA, 0, 1, b"abc") + headers(1, b"\x00\x0bgrpc-status\x010", end_stream=True))]
    _, want = feed(steps)
    want = [view(t) for t in want]
    assert 1 == len(want) and want[0]["grpc"] == (0, None)
    for target in (0, 1):
        for cut in range(1, len(steps[target][1])):
            _, got = feed(steps, lambda i, d: [d[:cut], d[cut:]] if i == target else [d])
            assert want == [view(t) for t in got], (target, cut)


def _check(conn: H2Connection, taken: list) -> None:
    assert conn.mem >= 0
    for t in taken:
        assert t.anomalies <= KNOWN, t.anomalies
        assert t.end_reason is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["c", "s", "gc", "gs", "ec", "es"]), st.binary(max_size=64),
                          st.integers(0, 40)), max_size=30),
       st.booleans())
def test_random_bytes_never_raise_and_leave_nothing_held(ops, with_preface):
    conn = H2Connection(max_open_streams=4, max_header_block_bytes=64)
    if with_preface:
        conn.feed(True, CLIENT_START, 0.0)
        conn.feed(False, SERVER_START, 0.0)
    taken = []
    for k, (op, data, n) in enumerate(ops):
        if op in ("c", "s"):
            conn.feed(op == "c", data, float(k))
        elif op in ("gc", "gs"):
            conn.gap(op == "gc", n)
        else:
            conn.end(op == "ec", float(k), "fin")
        taken += conn.take()
        _check(conn, taken)
    conn.close("idle_timeout", 1e6, "idle")
    taken += conn.take()
    _check(conn, taken)
    assert (0, 0) == (conn.open_transactions, conn.mem)


frame_types = st.integers(0, 12)


@st.composite
def frames(draw):
    t = draw(frame_types)
    flags = draw(st.integers(0, 255))
    sid = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 7, 0x7FFFFFFF]))
    payload = draw(st.one_of(st.binary(max_size=40), st.sampled_from([GET_ROOT, resp_block(200), b"\x00" * 8,
                                                                        struct.pack("!II", 3, 1)])))
    return frame(t, flags, sid, payload)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), frames(), st.integers(0, 3)), max_size=40))
def test_random_frame_sequences_never_raise(seq):
    """Well-formed frame headers with random types, flags, ids and payloads:
    every branch of the frame dispatch, none may raise."""
    conn = H2Connection(max_open_streams=3)
    conn.feed(True, PREFACE + CLIENT_START[len(PREFACE):], 0.0)
    conn.feed(False, SERVER_START, 0.0)
    taken = []
    for k, (from_client, f, gap) in enumerate(seq):
        if gap == 3:
            conn.gap(from_client, 5)
        conn.feed(from_client, f, float(k))
        taken += conn.take()
        _check(conn, taken)
    conn.close(None, 1e6)
    taken += conn.take()
    _check(conn, taken)
    assert (0, 0) == (conn.open_transactions, conn.mem)


# ----------------------------------------------------------------- bounds


def test_a_flood_of_streams_stays_within_the_stream_bound():
    conn = H2Connection()
    conn.feed(True, CLIENT_START, 0.0)
    peak = 0
    written = 0
    for k in range(10_000):
        conn.feed(True, headers(2 * k + 1, req_block("POST", f"/{k}", ("x-pad", "p" * 100))), float(k))
        written += len(conn.take())
        peak = max(peak, conn.mem)
    assert 1000 == conn.open_transactions
    assert 9000 == written
    # 1,000 streams of ~1.2 KiB (1 KiB + 3 fields): well under 2 MiB.
    assert peak < 2 * 1024 * 1024, peak


def test_a_header_block_that_never_ends_is_held_only_to_its_bound():
    conn = H2Connection()
    conn.feed(True, CLIENT_START + headers(1, GET_ROOT, end_headers=False), 0.0)
    peak = 0
    for k in range(1000):  # 16 MB of CONTINUATION
        conn.feed(True, frame(CONTINUATION, 0, 1, random.randbytes(16384)), float(k))
        peak = max(peak, conn.mem)
    assert peak <= MAX_HEADER_BLOCK_BYTES + 64 * 1024, peak
    conn.feed(True, frame(CONTINUATION, 0x4, 1, b""), 2000.0)
    conn.close(None, 3000.0)
    got = conn.take()
    assert {"http2_header_block_limit", "response_missing", "message_incomplete"} == got[0].anomalies


def test_a_huge_body_and_huge_frames_are_not_buffered():
    conn = H2Connection()
    conn.feed(True, CLIENT_START + headers(1, req_block("POST", "/big")), 0.0)
    conn.feed(True, struct.pack("!I", (1 << 24) - 1)[1:] + bytes([DATA, 0]) + struct.pack("!I", 1), 0.0)
    chunk = b"z" * 65536
    peak = 0
    for k in range(255):
        conn.feed(True, chunk, float(k))
        peak = max(peak, conn.mem)
    # An unknown frame type and a SETTINGS of 16 MiB - 1 from the server.
    conn.feed(False, SERVER_START + struct.pack("!I", (1 << 24) - 1)[1:] + bytes([0xEE, 0]) + b"\0\0\0\0", 0.0)
    for k in range(256):
        conn.feed(False, chunk, float(k))
        peak = max(peak, conn.mem)
    assert peak < 64 * 1024, peak
    assert 255 * 65536 == conn.streams[1].txn.request.body_len
