"""sniffd.http2.H2Connection: HTTP/2 frames crafted by hand in, transactions out.

Frames are built with struct from RFC 9113 section 4.1 (``frame``) and
header blocks with a literal-only HPACK encoder written from RFC 7541 section
6.2.2 (``block``), both in tests/h2craft.py, or taken byte for byte from RFC
7541 Appendix C where the dynamic table is the point: the expected values are
the ones written in the test or in the RFC, never sniffd's output.  Time is
simulated.
"""

from __future__ import annotations

import struct

import pytest

from h2craft import (  # noqa: F401 (the builders, used below or by the RFC 7541 cases)
    ACK, CLIENT_ACK, CLIENT_START, CONTINUATION, DATA, END_HEADERS, END_STREAM, GET_ROOT, GOAWAY, HEADERS, PADDED,
    PING, PRIO, PRIORITY, PUSH_PROMISE, RST_STREAM, SERVER_START, SETTINGS, WINDOW_UPDATE, block, continuation, data,
    frame, goaway, headers, hpack_int, indexed_literal, literal, ping, push_promise, req_block, resp_block, rst,
    settings, window_update,
)

from sniffd.http.message import Message
from sniffd.http2 import H2_ANOMALIES, PREFACE, H2Connection, looks_like_h2_preface

def run(steps, conn: H2Connection | None = None, **kwargs) -> tuple[H2Connection, list]:
    """Feed ``(from_client, bytes)`` steps at t = 1, 2, 3 ...; a step
    ``("gap", from_client, n)`` is a capture gap; then close at the end."""
    conn = conn if conn is not None else H2Connection(**kwargs)
    t = 0.0
    for step in steps:
        t += 1.0
        if step[0] == "gap":
            conn.gap(step[1], step[2])
        else:
            conn.feed(step[0], step[1], t)
    conn.close(None, t + 1.0, "end_of_input")
    return conn, conn.take()


def msg_view(m: Message | None):
    if m is None:
        return None
    return {"method": m.method, "uri": m.uri, "status": m.status, "reason": m.reason, "version": m.version,
            "headers": m.headers, "body_len": m.body_len, "missed_bytes": m.missed_bytes,
            "complete": m.complete, "start_ts": m.start_ts, "end_ts": m.end_ts}


def view(txn):
    return {"stream_id": txn.stream_id, "depth": txn.depth, "request": msg_view(txn.request),
            "response": msg_view(txn.response), "interim": txn.interim, "end_reason": txn.end_reason,
            "anomalies": sorted(txn.anomalies), "h2_error": txn.h2_error, "pushed_by": txn.pushed_by,
            "grpc": txn.grpc}


def req(method, uri, headers, body_len=0, start=None, end=None, complete=True, missed=0):
    return {"method": method, "uri": uri, "status": None, "reason": None, "version": "2", "headers": headers,
            "body_len": body_len, "missed_bytes": missed, "complete": complete, "start_ts": start, "end_ts": end}


def resp(status, headers, body_len=0, start=None, end=None, complete=True, missed=0):
    return {"method": None, "uri": None, "status": status, "reason": None, "version": "2", "headers": headers,
            "body_len": body_len, "missed_bytes": missed, "complete": complete, "start_ts": start, "end_ts": end}


def txn(sid, depth, request, response, end_reason="complete", anomalies=(), interim=(), h2_error=None,
        pushed_by=None, grpc=None):
    return {"stream_id": sid, "depth": depth, "request": request, "response": response,
            "interim": list(interim), "end_reason": end_reason, "anomalies": sorted(anomalies),
            "h2_error": h2_error, "pushed_by": pushed_by, "grpc": grpc}


ROOT_HEADERS = {"host": "example.com", ":scheme": "http"}

# ------------------------------------------------------------------ tests


def test_preface_detection_needs_24_bytes_and_says_when_it_cannot_tell():
    assert looks_like_h2_preface(b"") is None
    assert looks_like_h2_preface(b"PRI * HTTP/2") is None
    assert looks_like_h2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") is True
    assert looks_like_h2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00") is True
    assert looks_like_h2_preface(b"GET / HTTP/1.1\r\n") is False
    assert looks_like_h2_preface(b"PRI * HTTP/1.1") is False


@pytest.mark.parametrize("data, verdict", [
    (SERVER_START, True),  # SETTINGS with one setting (6 bytes), then an ACK
    (settings(), True),  # an empty SETTINGS: a server with nothing to change
    (settings(ack=True), False),  # an ACK is no preface
    (settings((3, 100))[:8], False),  # fewer than 9 bytes: no frame header
    (frame(SETTINGS, 0, 1, bytes(6)), False),  # not on stream 0
    (frame(SETTINGS, 0, 0, bytes(5)), False),  # not a whole number of settings
    (headers(1, resp_block(200)), False),
    (b"HTTP/1.1 200 OK\r\n", False),
    (b"220 smtp.example ESMTP\r\n", False),
])
def test_a_servers_first_bytes_may_be_its_preface_only_as_a_settings_frame(data, verdict):
    from sniffd.http2 import looks_like_h2_server_preface

    assert verdict is looks_like_h2_server_preface(data)


def test_get_with_response_body_is_one_transaction_with_version_2():
    steps = [
        (True, CLIENT_START),                                                     # t=1
        (True, headers(1, req_block("GET", "/index.html", ("user-agent", "t/1")), end_stream=True)),  # t=2
        (False, SERVER_START),                                                    # t=3
        (True, CLIENT_ACK),                                                       # t=4
        (False, headers(1, resp_block(200, ("content-type", "text/plain")))),    # t=5
        (False, data(1, b"hello ")),                                              # t=6
        (False, data(1, b"world", end_stream=True)),                              # t=7
    ]
    conn, got = run(steps)
    assert [txn(1, 1,
                req("GET", "/index.html", {"host": "example.com", ":scheme": "http", "user-agent": "t/1"},
                    start=2.0, end=2.0),
                resp(200, {"content-type": "text/plain"}, body_len=11, start=5.0, end=7.0))] == [view(t) for t in got]
    assert {} == conn.loose


def test_post_body_padding_and_priority_are_not_content():
    steps = [
        (True, CLIENT_START + headers(1, req_block("POST", "/upload", ("content-length", "7")), pad=5, priority=True)
         + data(1, b"abc", pad=10) + data(1, b"defg", end_stream=True, pad=0)),
        (False, SERVER_START + headers(1, resp_block(201), end_stream=True, pad=3)),
    ]
    _, got = run(steps)
    assert [txn(1, 1,
                req("POST", "/upload", {"host": "example.com", ":scheme": "http", "content-length": "7"},
                    body_len=7, start=1.0, end=1.0),
                resp(201, {}, start=2.0, end=2.0))] == [view(t) for t in got]


def test_continuation_frames_complete_a_header_block():
    fields = req_block("GET", "/a", ("x-one", "1"), ("x-two", "2"))
    steps = [
        (True, CLIENT_START + headers(1, fields[:10], end_stream=True, end_headers=False)),  # t=1
        (True, continuation(1, fields[10:20], end_headers=False)),                           # t=2
        (True, continuation(1, fields[20:], end_headers=True)),                              # t=3
        (False, SERVER_START + headers(1, resp_block(204), end_stream=True)),                # t=4
    ]
    _, got = run(steps)
    assert [txn(1, 1, req("GET", "/a", {"host": "example.com", ":scheme": "http", "x-one": "1", "x-two": "2"},
                          start=1.0, end=3.0),
                resp(204, {}, start=4.0, end=4.0))] == [view(t) for t in got]


def test_repeated_fields_join_with_comma_and_cookie_crumbs_with_semicolon():
    fields = req_block("GET", "/", ("cookie", "a=1"), ("accept", "text/html"), ("cookie", "b=2"),
                       ("accept", "*/*"), ("cookie", "c=3"))
    steps = [(True, CLIENT_START + headers(1, fields, end_stream=True)),
             (False, SERVER_START + headers(1, resp_block(200, ("set-cookie", "x=1"), ("set-cookie", "y=2")),
                                            end_stream=True))]
    _, got = run(steps)
    assert {"host": "example.com", ":scheme": "http", "cookie": "a=1; b=2; c=3", "accept": "text/html, */*"} \
        == got[0].request.headers
    assert {"set-cookie": "x=1, y=2"} == got[0].response.headers
    assert 7 == got[0].request.header_count  # host, :scheme, 3 cookie crumbs, 2 accept


def test_host_field_wins_and_differing_authority_is_kept_and_flagged():
    same = block((":method", "GET"), (":scheme", "https"), (":authority", "a.example"), (":path", "/"),
                 ("host", "a.example"))
    other = block((":method", "GET"), (":scheme", "http"), (":authority", "a.example"), (":path", "/"),
                  ("host", "b.example"))
    steps = [(True, CLIENT_START + headers(1, same, end_stream=True) + headers(3, other, end_stream=True)),
             (False, SERVER_START + headers(1, resp_block(200), end_stream=True)
              + headers(3, resp_block(200), end_stream=True))]
    _, got = run(steps)
    assert {":scheme": "https", "host": "a.example"} == got[0].request.headers
    assert set() == got[0].anomalies
    assert {":scheme": "http", "host": "b.example", ":authority": "a.example"} == got[1].request.headers
    assert {"http2_malformed_headers"} == got[1].anomalies


def test_connect_request_takes_its_authority_as_uri():
    fields = block((":method", "CONNECT"), (":authority", "db.internal:5432"))
    steps = [(True, CLIENT_START + headers(1, fields)),
             (False, SERVER_START + headers(1, resp_block(200))),
             (True, rst(1, 8))]
    _, got = run(steps)
    assert ("CONNECT", "db.internal:5432", {"host": "db.internal:5432"}) == \
        (got[0].request.method, got[0].request.uri, got[0].request.headers)
    assert ("rst_stream", "CANCEL") == (got[0].end_reason, got[0].h2_error)


def test_interim_100_continue_goes_to_interim():
    steps = [
        (True, CLIENT_START + headers(1, req_block("PUT", "/f", ("expect", "100-continue")))),  # t=1
        (False, SERVER_START + headers(1, resp_block(100))),                                      # t=2
        (True, data(1, b"12345", end_stream=True)),                                               # t=3
        (False, headers(1, resp_block(200), end_stream=True)),                                    # t=4
    ]
    _, got = run(steps)
    assert [txn(1, 1, req("PUT", "/f", {"host": "example.com", ":scheme": "http", "expect": "100-continue"},
                          body_len=5, start=1.0, end=3.0),
                resp(200, {}, start=4.0, end=4.0), interim=[(100, None)])] == [view(t) for t in got]


def test_grpc_trailers_give_status_and_decoded_message():
    """A unary gRPC call as PROTOCOL-HTTP2.md lays it out: 5-byte message prefix, trailers."""
    request = block((":method", "POST"), (":scheme", "http"), (":path", "/pkg.Greeter/SayHello"),
                    (":authority", "grpc.local:50051"), ("te", "trailers"), ("content-type", "application/grpc"),
                    ("grpc-timeout", "1S"))
    message = b"\x00\x00\x00\x00\x07" + b"\x0a\x05world"
    steps = [
        (True, CLIENT_START + headers(1, request) + data(1, message, end_stream=True)),         # t=1
        (False, SERVER_START + headers(1, resp_block(200, ("content-type", "application/grpc")))),  # t=2
        (False, headers(1, block(("grpc-status", "3"), ("grpc-message", "bad%20name%3A%20%E2%9C%93")),
                        end_stream=True)),                                                       # t=3
    ]
    _, got = run(steps)
    assert [txn(1, 1,
                req("POST", "/pkg.Greeter/SayHello",
                    {"host": "grpc.local:50051", ":scheme": "http", "te": "trailers",
                     "content-type": "application/grpc", "grpc-timeout": "1S"}, body_len=12, start=1.0, end=1.0),
                resp(200, {"content-type": "application/grpc", "grpc-status": "3",
                           "grpc-message": "bad%20name%3A%20%E2%9C%93"}, start=2.0, end=3.0),
                grpc=(3, "bad name: \u2713"))] == [view(t) for t in got]


def test_grpc_trailers_only_response():
    request = req_block("POST", "/pkg.S/M", ("content-type", "application/grpc"))
    steps = [(True, CLIENT_START + headers(1, request) + data(1, b"\0\0\0\0\0", end_stream=True)),
             (False, SERVER_START + headers(1, resp_block(200, ("content-type", "application/grpc"),
                                                          ("grpc-status", "12")), end_stream=True))]
    _, got = run(steps)
    assert (12, None) == got[0].grpc
    assert "complete" == got[0].end_reason


def test_rst_stream_ends_the_stream_with_its_error_name():
    steps = [(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True)),
             (False, SERVER_START + rst(1, 7))]
    _, got = run(steps)
    assert [txn(1, 1, req("GET", "/", ROOT_HEADERS, start=1.0, end=1.0), None, end_reason="rst_stream",
                anomalies={"response_missing"}, h2_error="REFUSED_STREAM")] == [view(t) for t in got]


def test_client_cancel_mid_response_leaves_response_incomplete():
    steps = [(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True)),     # t=1
             (False, SERVER_START + headers(1, resp_block(200)) + data(1, b"x" * 100)),  # t=2
             (True, rst(1, 8)),                                                 # t=3
             (False, data(1, b"y" * 50, end_stream=True))]                      # t=4: in flight, ignored
    _, got = run(steps)
    assert [txn(1, 1, req("GET", "/", ROOT_HEADERS, start=1.0, end=1.0),
                resp(200, {}, body_len=100, start=2.0, end=2.0, complete=False), end_reason="rst_stream",
                anomalies={"message_incomplete"}, h2_error="CANCEL")] == [view(t) for t in got]


def test_unknown_error_code_is_named_in_hex():
    steps = [(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True)), (False, SERVER_START + rst(1, 0x1F))]
    _, got = run(steps)
    assert "0x1f" == got[0].h2_error


def test_goaway_ends_the_streams_above_its_last_stream_id():
    steps = [
        (True, CLIENT_START + headers(1, GET_ROOT, end_stream=True) + headers(3, GET_ROOT, end_stream=True)
         + headers(5, GET_ROOT, end_stream=True)),                                    # t=1
        (False, SERVER_START + goaway(3, 0, b"graceful")),                            # t=2
        (False, headers(3, resp_block(200), end_stream=True)),                        # t=3
        (False, headers(1, resp_block(200), end_stream=True)),                        # t=4
        (True, headers(7, GET_ROOT, end_stream=True)),                                # t=5: after GOAWAY
    ]
    _, got = run(steps)
    assert [(5, 3, "goaway", "NO_ERROR", {"response_missing"}),
            (3, 2, "complete", None, set()),
            (1, 1, "complete", None, set()),
            (7, 4, "goaway", None, {"response_missing"})] == \
        [(t.stream_id, t.depth, t.end_reason, t.h2_error, t.anomalies) for t in got]


def test_goaway_with_an_error_flags_the_open_streams():
    steps = [(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True) + headers(3, GET_ROOT, end_stream=True)),
             (False, SERVER_START + goaway(1, 11))]
    conn, got = run(steps)
    assert [(3, "goaway", "ENHANCE_YOUR_CALM", {"http2_goaway_error", "response_missing"}),
            (1, "end_of_input", "ENHANCE_YOUR_CALM", {"http2_goaway_error", "response_missing"})] == \
        [(t.stream_id, t.end_reason, t.h2_error, t.anomalies) for t in got]


def test_push_promise_makes_a_transaction_for_the_pushed_stream():
    pushed = block((":method", "GET"), (":scheme", "http"), (":path", "/style.css"), (":authority", "example.com"))
    steps = [
        (True, CLIENT_START + headers(1, GET_ROOT, end_stream=True)),                           # t=1
        (False, SERVER_START + push_promise(1, 2, pushed)),                                     # t=2
        (False, headers(1, resp_block(200, ("content-type", "text/html")))),                   # t=3
        (False, headers(2, resp_block(200, ("content-type", "text/css")))),                    # t=4
        (False, data(2, b"body{}", end_stream=True)),                                           # t=5
        (False, data(1, b"<html></html>", end_stream=True)),                                    # t=6
    ]
    _, got = run(steps)
    assert [txn(2, 2, req("GET", "/style.css", ROOT_HEADERS, start=2.0, end=2.0),
                resp(200, {"content-type": "text/css"}, body_len=6, start=4.0, end=5.0), pushed_by=1),
            txn(1, 1, req("GET", "/", ROOT_HEADERS, start=1.0, end=1.0),
                resp(200, {"content-type": "text/html"}, body_len=13, start=3.0, end=6.0))] == [view(t) for t in got]


def test_refused_push_ends_with_rst_stream():
    pushed = req_block("GET", "/a.js")
    steps = [(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True)),
             (False, SERVER_START + push_promise(1, 2, pushed) + headers(1, resp_block(200), end_stream=True)),
             (True, rst(2, 8))]
    _, got = run(steps)
    assert [(1, "complete", None, None), (2, "rst_stream", "CANCEL", 1)] == \
        [(t.stream_id, t.end_reason, t.h2_error, t.pushed_by) for t in got]
    assert {"response_missing"} == got[1].anomalies


def test_ping_window_update_priority_and_unknown_frames_change_nothing():
    plain = [(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True)),
             (False, SERVER_START + headers(1, resp_block(200)) + data(1, b"abc", end_stream=True))]
    noisy = [(True, CLIENT_START + ping() + frame(PRIORITY, 0, 1, struct.pack("!IB", 0, 15))
              + frame(0xFA, 0xFF, 0, b"an extension frame") + window_update(0, 1 << 20)
              + headers(1, GET_ROOT, end_stream=True) + frame(0x10, 0, 1, b"")),
             (False, SERVER_START + ping(ack=True) + window_update(1, 100) + headers(1, resp_block(200))
              + frame(0xFB, 0, 1, b"x" * 40) + data(1, b"abc", end_stream=True) + goaway(1, 0))]
    _, want = run(plain)
    conn, got = run(noisy)
    assert [view(t) for t in want] == [view(t) for t in got]
    assert {} == conn.loose


def test_frames_breaking_their_fixed_layouts_are_named():
    steps = [(True, CLIENT_START + frame(PING, 0, 0, b"short") + frame(WINDOW_UPDATE, 0, 0, b"12345")
              + frame(SETTINGS, 0, 0, b"12345") + frame(SETTINGS, ACK, 0, b"x")
              + headers(1, GET_ROOT, end_stream=True) + frame(PRIORITY, 0, 1, b"1234")),
             (False, SERVER_START + data(0, b"on stream zero") + data(9, b"never opened")
              + headers(1, resp_block(200), end_stream=True))]
    conn, got = run(steps)
    assert {"http2_protocol_error": 6} == conn.loose
    assert {"http2_protocol_error"} == got[0].anomalies


def test_data_padding_longer_than_the_frame_is_a_protocol_error():
    bad = frame(DATA, PADDED | END_STREAM, 1, bytes([9]) + b"abc")
    steps = [(True, CLIENT_START + headers(1, req_block("POST", "/")) + bad),
             (False, SERVER_START + headers(1, resp_block(200), end_stream=True))]
    _, got = run(steps)
    assert (0, True, {"http2_protocol_error"}) == \
        (got[0].request.body_len, got[0].request.complete, got[0].anomalies)


# RFC 7541 C.3: three requests on one connection, without Huffman coding; the
# second and third refer to entries the first added to the dynamic table.
C3 = [bytes.fromhex("828684410f7777772e6578616d706c652e636f6d"),
      bytes.fromhex("828684be58086e6f2d6361636865"),
      bytes.fromhex("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565")]
# RFC 7541 C.4: the same with Huffman coding.
C4 = [bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff"),
      bytes.fromhex("828684be5886a8eb10649cbf"),
      bytes.fromhex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf")]


@pytest.mark.parametrize("blocks", [C3, C4], ids=["C.3", "C.4"])
def test_dynamic_table_is_shared_by_the_streams_of_a_direction(blocks):
    steps = [(True, CLIENT_START + b"".join(headers(1 + 2 * k, b, end_stream=True) for k, b in enumerate(blocks))),
             (False, SERVER_START + b"".join(headers(sid, resp_block(204), end_stream=True) for sid in (1, 3, 5)))]
    _, got = run(steps)
    assert [("GET", "/", {"host": "www.example.com", ":scheme": "http"}),
            ("GET", "/", {"host": "www.example.com", ":scheme": "http", "cache-control": "no-cache"}),
            ("GET", "/index.html", {"host": "www.example.com", ":scheme": "https", "custom-key": "custom-value"})] \
        == [(t.request.method, t.request.uri, t.request.headers) for t in got]
    assert [set(), set(), set()] == [t.anomalies for t in got]


# RFC 7541 C.5: three responses with SETTINGS_HEADER_TABLE_SIZE = 256, the
# table evicting.  The encoder signals the new size (RFC 7541 section 4.2:
# 0x3f 0xe1 0x01 is a size update to 256) before its first block.
C5 = [bytes.fromhex("3fe101" "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a"
                    "323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d"),
      bytes.fromhex("4803333037c1c0bf"),
      bytes.fromhex("88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69"
                    "707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d6178"
                    "2d6167653d333630303b2076657273696f6e3d31")]


def test_settings_header_table_size_governs_the_other_directions_table():
    steps = [(True, PREFACE + settings((1, 256))
              + b"".join(headers(sid, GET_ROOT, end_stream=True) for sid in (1, 3, 5))),
             (False, SERVER_START + b"".join(headers(sid, b, end_stream=True) for sid, b in zip((1, 3, 5), C5)))]
    _, got = run(steps)
    assert [(302, {"cache-control": "private", "date": "Mon, 21 Oct 2013 20:13:21 GMT",
                   "location": "https://www.example.com"}),
            (307, {"cache-control": "private", "date": "Mon, 21 Oct 2013 20:13:21 GMT",
                   "location": "https://www.example.com"}),
            (200, {"cache-control": "private", "date": "Mon, 21 Oct 2013 20:13:22 GMT",
                   "location": "https://www.example.com", "content-encoding": "gzip",
                   "set-cookie": "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"})] \
        == [(t.response.status, t.response.headers) for t in got]
    assert [set(), set(), set()] == [t.anomalies for t in got]


def test_table_size_table_after_c5_is_215_bytes():
    """RFC 7541 C.5.3 ends with a 215-byte table: the size update was applied."""
    conn = H2Connection()
    conn.feed(True, PREFACE + settings((1, 256)) + b"".join(headers(s, GET_ROOT, end_stream=True) for s in (1, 3, 5)), 1.0)
    conn.feed(False, SERVER_START + b"".join(headers(s, b, end_stream=True) for s, b in zip((1, 3, 5), C5)), 2.0)
    assert 215 == conn.decoders[1].table_bytes


def test_encoder_growing_its_table_past_the_announced_size_is_flagged_and_decoded():
    grow = b"\x3f\xe1\x3f"  # size update to 31 + 0x61 + (0x3f << 7) = 8192
    steps = [(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True)),
             (False, SERVER_START + headers(1, grow + resp_block(200), end_stream=True))]
    _, got = run(steps)
    assert (200, {"http2_hpack_table_size"}) == (got[0].response.status, got[0].anomalies)


def test_encoder_table_past_sniffds_bound_stops_that_directions_decoding():
    grow = b"\x3f" + bytes([(100_000 - 31) % 128 + 128, ((100_000 - 31) >> 7) % 128 + 128, (100_000 - 31) >> 14])
    steps = [(True, PREFACE + settings((1, 1 << 20)) + headers(1, GET_ROOT, end_stream=True)
              + headers(3, GET_ROOT, end_stream=True)),
             (False, SERVER_START + headers(1, grow + resp_block(200), end_stream=True)
              + headers(3, resp_block(404), end_stream=True))]
    _, got = run(steps)
    assert [(1, None, {"http2_hpack_table_limit"}), (3, None, {"http2_hpack_desync"})] == \
        [(t.stream_id, t.response.status, t.anomalies) for t in got]
    # The client's blocks are decoded as before.
    assert ["/", "/"] == [t.request.uri for t in got]


def test_hpack_error_breaks_only_its_direction():
    steps = [(True, CLIENT_START + headers(1, b"\xbe", end_stream=True)  # index 62: empty dynamic table
              + headers(3, GET_ROOT, end_stream=True)),
             (False, SERVER_START + headers(1, resp_block(400), end_stream=True)
              + headers(3, resp_block(200), end_stream=True))]
    _, got = run(steps)
    assert [(1, None, {}, 400, {"http2_hpack_error"}), (3, None, {}, 200, {"http2_hpack_desync"})] == \
        [(t.stream_id, t.request.method, t.request.headers, t.response.status, t.anomalies) for t in got]


def test_gap_inside_data_costs_only_body_bytes():
    body = b"0123456789" * 10
    frame_bytes = data(1, body, end_stream=True)
    steps = [(True, CLIENT_START + headers(1, req_block("POST", "/up", ("content-length", "100")))
              + frame_bytes[:9 + 30]),
             ("gap", True, 40),
             (True, frame_bytes[9 + 70:] + headers(3, GET_ROOT, end_stream=True)),
             (False, SERVER_START + headers(1, resp_block(200), end_stream=True)
              + headers(3, resp_block(200), end_stream=True))]
    _, got = run(steps)
    assert [(60, 40, True, {"body_gap"}), (0, 0, True, set())] == \
        [(t.request.body_len, t.request.missed_bytes, t.request.complete, t.anomalies) for t in got]


def test_gap_inside_a_header_block_leaves_later_headers_undecoded():
    first = headers(1, req_block("GET", "/secret", ("x-a", "b")), end_stream=True)
    steps = [(True, CLIENT_START + first[:12]),                                  # t=1
             ("gap", True, 10),
             (True, first[22:] + headers(3, GET_ROOT, end_stream=True)),         # t=3
             (False, SERVER_START + headers(1, resp_block(200), end_stream=True)
              + headers(3, resp_block(404), end_stream=True))]                   # t=4
    _, got = run(steps)
    assert [txn(1, 1, req(None, None, {}, start=1.0, end=1.0), resp(200, {}, start=4.0, end=4.0),
                anomalies={"http2_gap"}),
            txn(3, 2, req(None, None, {}, start=3.0, end=3.0), resp(404, {}, start=4.0, end=4.0),
                anomalies={"http2_hpack_desync"})] == [view(t) for t in got]


def test_gap_losing_the_frame_boundaries_stops_reading_that_direction():
    steps = [(True, CLIENT_START + headers(1, req_block("POST", "/a"))),          # t=1: request 1 open
             ("gap", True, 5000),                                                 # frames lost whole
             (True, headers(3, GET_ROOT, end_stream=True)),                       # t=3: not readable
             (False, SERVER_START + headers(1, resp_block(200), end_stream=True)  # t=4
              + headers(3, resp_block(201), end_stream=True))]
    conn, got = run(steps)
    assert [txn(1, 1, req("POST", "/a", ROOT_HEADERS, start=1.0, end=1.0, complete=False),
                resp(200, {}, start=4.0, end=4.0), end_reason="gap", anomalies={"http2_gap", "message_incomplete"}),
            txn(3, 2, None, resp(201, {}, start=4.0, end=4.0), end_reason="gap",
                anomalies={"http2_gap", "request_missing"})] == [view(t) for t in got]


def test_server_gap_ends_the_streams_waiting_for_a_response():
    steps = [(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True)),
             (False, SERVER_START + headers(1, resp_block(200)) + data(1, b"partial")),
             ("gap", False, 3),  # between two frames: where the next one starts is lost
             (True, headers(3, GET_ROOT, end_stream=True))]
    _, got = run(steps)
    assert [(1, "gap", {"http2_gap", "message_incomplete"}), (3, "gap", {"http2_gap", "response_missing"})] == \
        [(t.stream_id, t.end_reason, t.anomalies) for t in got]


def test_close_cuts_open_streams_with_its_reason():
    conn = H2Connection()
    conn.feed(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True) + headers(3, req_block("POST", "/")), 1.0)
    conn.feed(False, SERVER_START + headers(1, resp_block(200)), 2.0)
    assert [] == conn.take()
    assert 2 == conn.open_transactions
    conn.close("idle_timeout", 100.0, "idle")
    got = conn.take()
    assert [(1, "idle", {"idle_timeout", "message_incomplete"}),
            (3, "idle", {"idle_timeout", "message_incomplete", "response_missing"})] == \
        [(t.stream_id, t.end_reason, t.anomalies) for t in got]


def test_fin_from_the_client_still_lets_the_server_answer():
    conn = H2Connection()
    conn.feed(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True), 1.0)
    conn.end(True, 2.0, "fin")
    assert [] == conn.take()
    conn.feed(False, SERVER_START + headers(1, resp_block(200), end_stream=True), 3.0)
    got = conn.take()
    assert [(1, "complete", set())] == [(t.stream_id, t.end_reason, t.anomalies) for t in got]


def test_a_client_that_does_not_send_the_preface_is_not_read():
    conn, got = run([(True, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), (False, b"HTTP/1.1 200 OK\r\n\r\n")])
    assert [] == got
    assert {"http2_bad_preface": 2} == conn.loose


def test_a_server_answering_in_http1_is_a_bad_preface():
    steps = [(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True)),
             (False, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")]
    conn, got = run(steps)
    assert [(1, "parse_error", {"http2_bad_preface", "response_missing"})] == \
        [(t.stream_id, t.end_reason, t.anomalies) for t in got]


def test_stream_limit_writes_the_oldest_open_stream():
    steps = [(True, CLIENT_START + b"".join(headers(sid, GET_ROOT, end_stream=True) for sid in (1, 3, 5, 7, 9)))]
    _, got = run(steps, max_open_streams=3)
    assert [(1, "stream_limit", {"http2_stream_limit", "response_missing"}),
            (3, "stream_limit", {"http2_stream_limit", "response_missing"}),
            (5, "end_of_input", {"response_missing"}),
            (7, "end_of_input", {"response_missing"}),
            (9, "end_of_input", {"response_missing"})] == [(t.stream_id, t.end_reason, t.anomalies) for t in got]


def test_header_count_and_bytes_limits_keep_the_first_fields():
    fields = req_block("GET", "/", *[(f"x-{k}", "v") for k in range(5)])
    steps = [(True, CLIENT_START + headers(1, fields, end_stream=True)),
             (False, SERVER_START + headers(1, resp_block(200), end_stream=True))]
    _, got = run(steps, max_header_count=4)
    assert {"host": "example.com", ":scheme": "http", "x-0": "v", "x-1": "v"} == got[0].request.headers
    assert {"header_limit"} == got[0].anomalies
    # host (4 + 11 + 4) + :scheme (7 + 4 + 4) = 34 bytes; x-0 (3 + 1 + 4) would make 42.
    _, got = run(steps, max_header_bytes=40)
    assert {"host": "example.com", ":scheme": "http"} == got[0].request.headers


def test_header_block_past_its_bound_is_not_decoded_and_breaks_the_direction():
    big = req_block("GET", "/", ("x-big", "z" * 300))
    steps = [(True, CLIENT_START + headers(1, big[:100], end_stream=True, end_headers=False)
              + continuation(1, big[100:], end_headers=True) + headers(3, GET_ROOT, end_stream=True)),
             (False, SERVER_START + headers(1, resp_block(431), end_stream=True)
              + headers(3, resp_block(200), end_stream=True))]
    _, got = run(steps, max_header_block_bytes=200)
    assert [(None, {"http2_header_block_limit"}, 431), (None, {"http2_hpack_desync"}, 200)] == \
        [(t.request.method, t.anomalies, t.response.status) for t in got]


def test_header_list_past_its_bound_is_not_decoded():
    # One field added to the table, then referred to 40 times: 40 * (5 + 200 + 32) bytes decoded.
    blk = req_block("GET", "/") + indexed_literal(b"x-rep", b"r" * 200) + b"\xbe" * 40
    steps = [(True, CLIENT_START + headers(1, blk, end_stream=True))]
    _, got = run(steps, max_header_list_bytes=4096)
    assert {"http2_header_list_limit", "response_missing"} == got[0].anomalies


def test_interrupted_header_block_is_named_and_breaks_the_direction():
    fields = req_block("GET", "/a")
    steps = [(True, CLIENT_START + headers(1, fields[:5], end_headers=False) + ping()
              + continuation(1, fields[5:], end_headers=True) + headers(3, GET_ROOT, end_stream=True))]
    _, got = run(steps)
    assert [(1, {"http2_bad_continuation", "response_missing", "message_incomplete"}),
            (3, {"http2_hpack_desync", "response_missing"})] == [(t.stream_id, t.anomalies) for t in got]


@pytest.mark.parametrize("fields,name", [
    (block((":method", "GET"), (":scheme", "http"), (":path", "/"), ("Host", "x")), "upper-case name"),
    (req_block("GET", "/", ("connection", "keep-alive")), "connection-specific field"),
    (req_block("GET", "/", ("te", "gzip")), "te other than trailers"),
    (block((":method", "GET"), (":scheme", "http"), (":authority", "x")), "no :path"),
    (block((":method", "GET"), ("accept", "*/*"), (":path", "/"), (":scheme", "http")), "pseudo after field"),
    (req_block("GET", "/", ("x-a", "1\r\nx-b: 2")), "CR LF in a value"),
    (req_block("GET", "/") + literal(b":path", b"/again"), "repeated pseudo-header"),
])
def test_malformed_header_sections_are_named_and_kept(fields, name):
    steps = [(True, CLIENT_START + headers(1, fields, end_stream=True)),
             (False, SERVER_START + headers(1, resp_block(400), end_stream=True))]
    _, got = run(steps)
    assert {"http2_malformed_headers"} == got[0].anomalies, name


def test_upper_case_names_are_kept_lower_cased():
    steps = [(True, CLIENT_START + headers(1, req_block("GET", "/", ("X-Trace", "7")), end_stream=True))]
    _, got = run(steps)
    assert "7" == got[0].request.headers["x-trace"]


def test_content_length_that_disagrees_with_data_is_named():
    steps = [(True, CLIENT_START + headers(1, req_block("POST", "/", ("content-length", "10")))
              + data(1, b"short", end_stream=True)),
             (False, SERVER_START + headers(1, resp_block(200, ("content-length", "3"))) + data(1, b"abc", end_stream=True))]
    _, got = run(steps)
    assert {"http2_content_length_mismatch"} == got[0].anomalies


def test_head_response_content_length_is_not_checked():
    steps = [(True, CLIENT_START + headers(1, req_block("HEAD", "/"), end_stream=True)),
             (False, SERVER_START + headers(1, resp_block(200, ("content-length", "1234")), end_stream=True))]
    _, got = run(steps)
    assert set() == got[0].anomalies


def test_invalid_status_is_null_and_named():
    steps = [(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True)),
             (False, SERVER_START + headers(1, block((":status", "2xx")), end_stream=True))]
    _, got = run(steps)
    assert (None, {"http_status_invalid"}) == (got[0].response.status, got[0].anomalies)


def test_bytes_that_are_not_utf8_are_kept_as_surrogates():
    fields = GET_ROOT + literal(b"x-raw", b"caf\xe9")
    steps = [(True, CLIENT_START + headers(1, fields, end_stream=True))]
    _, got = run(steps)
    assert "caf\udce9" == got[0].request.headers["x-raw"]


def test_frame_larger_than_the_receivers_max_frame_size_is_named():
    body = b"x" * 20000
    client = (True, CLIENT_START + headers(1, req_block("POST", "/")) + data(1, body, end_stream=True))
    answer = (False, headers(1, resp_block(200), end_stream=True))
    _, got = run([(False, SERVER_START), client, answer])
    assert (20000, {"http2_frame_too_large"}) == (got[0].request.body_len, got[0].anomalies)
    # Allowed once the server raised its SETTINGS_MAX_FRAME_SIZE (RFC 9113 section 6.5.2).
    _, got = run([(False, settings((5, 32768))), client, answer])
    assert (20000, set()) == (got[0].request.body_len, got[0].anomalies)


def test_take_gives_transactions_in_the_order_streams_finished():
    steps = [(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True) + headers(3, GET_ROOT, end_stream=True)),
             (False, SERVER_START + headers(3, resp_block(200), end_stream=True)),
             (False, headers(1, resp_block(200), end_stream=True))]
    _, got = run(steps)
    assert [(3, 2), (1, 1)] == [(t.stream_id, t.depth) for t in got]


def _http1_upgrade_request() -> tuple[Message, Message]:
    """What the HTTP/1 reader hands over: the request and the 101 (built by hand)."""
    request = Message(10.0, 0, None)
    request.method, request.uri, request.version = "GET", "/chat", "1.1"
    request.headers = {"host": "example.com", "connection": "Upgrade, HTTP2-Settings", "upgrade": "h2c",
                       # base64url of SETTINGS_HEADER_TABLE_SIZE=256 (0x0001 0x00000100), no padding
                       "http2-settings": "AAEAAAEA"}
    request.header_count = 4
    request.complete = True
    switching = Message(10.5, 0, None)
    switching.status, switching.reason, switching.version = 101, "Switching Protocols", "1.1"
    switching.complete = True
    return request, switching


def test_h2c_upgrade_makes_the_http1_request_stream_1():
    request, switching = _http1_upgrade_request()
    conn = H2Connection.after_upgrade(request, switching, first_depth=3)
    conn.feed(False, SERVER_START + headers(1, C5[0], end_stream=False), 11.0)  # table size 256 from HTTP2-Settings
    conn.feed(True, CLIENT_START + CLIENT_ACK, 11.5)
    conn.feed(False, data(1, b"hi", end_stream=True), 12.0)
    conn.feed(True, headers(3, GET_ROOT, end_stream=True), 13.0)
    conn.feed(False, headers(3, resp_block(200), end_stream=True), 14.0)
    conn.close(None, 20.0, "end_of_input")
    got = conn.take()
    assert got[0].request is request
    assert [txn(1, 3, msg_view(request), resp(302, {"cache-control": "private",
                                                     "date": "Mon, 21 Oct 2013 20:13:21 GMT",
                                                     "location": "https://www.example.com"},
                                              body_len=2, start=11.0, end=12.0),
                interim=[(101, "Switching Protocols")]),
            txn(3, 4, req("GET", "/", ROOT_HEADERS, start=13.0, end=13.0), resp(200, {}, start=14.0, end=14.0))] \
        == [view(t) for t in got]


def test_upgraded_stream_1_leaves_no_memory_counted_once_taken():
    """Stream 1's request (the HTTP/1.1 one) is counted in the streams' memory
    while the stream lives and leaves it with the transaction; it was never
    added, so taking it left stream_mem negative by its header cost."""
    request, switching = _http1_upgrade_request()
    request.header_bytes = 120
    conn = H2Connection.after_upgrade(request, switching)
    assert 1024 + 120 + 4 * 160 == conn.stream_mem  # STREAM_COST, the fields' bytes, FIELD_COST each
    conn.feed(True, CLIENT_START, 11.0)
    conn.feed(False, SERVER_START + headers(1, resp_block(200), end_stream=True), 12.0)
    (t,) = conn.take()
    assert (200, 0) == (t.response.status, conn.stream_mem)


def test_upgrade_with_undecodable_http2_settings_is_named():
    request, switching = _http1_upgrade_request()
    request.headers["http2-settings"] = "!!"
    conn = H2Connection.after_upgrade(request, switching)
    conn.close(None, 11.0)
    got = conn.take()
    assert {"http2_protocol_error", "response_missing"} == got[0].anomalies


def test_note_puts_transport_anomalies_on_streams_in_progress():
    conn = H2Connection()
    conn.feed(True, CLIENT_START + headers(1, req_block("POST", "/")), 1.0)
    conn.note(True, {"tcp_overlap_conflict"})
    conn.note(False, {"ip_ttl_changed"})
    conn.feed(True, data(1, b"", end_stream=True), 2.0)
    conn.note(True, {"tcp_syn_ignored"})  # no client message in progress: the next stream
    conn.feed(True, headers(3, GET_ROOT, end_stream=True), 3.0)
    conn.close(None, 4.0)
    got = conn.take()
    assert [{"tcp_overlap_conflict", "ip_ttl_changed", "response_missing"},
            {"tcp_syn_ignored", "response_missing"}] == [t.anomalies for t in got]


def test_every_anomaly_name_used_is_documented():
    """The names the stage can put on a record: H2_ANOMALIES plus the HTTP/1 ones it reuses."""
    import pathlib
    import re

    import sniffd.http2 as pkg
    from sniffd.anomalies import ANOMALIES

    src = "".join(p.read_text() for p in pathlib.Path(pkg.__file__).parent.glob("*.py") if p.name != "anomalies.py")
    used = set(re.findall(r'"(http2?_[a-z0-9_]+)"', src))
    used |= {"header_limit", "body_gap", "message_incomplete", "request_missing", "response_missing"}
    assert set() == used - set(H2_ANOMALIES) - set(ANOMALIES)
    # Once merged into sniffd.anomalies, a name keeps its meaning.
    assert {} == {k: v for k, v in H2_ANOMALIES.items() if ANOMALIES.get(k, v) != v}


def test_bodies_are_captured_as_for_http1_and_can_be_dropped():
    from sniffd.bodies import BodyCapture

    capture = BodyCapture(content_types=("application/json",))
    conn = H2Connection(bodies=capture)
    conn.feed(True, CLIENT_START + headers(1, req_block("POST", "/j", ("content-type", "application/json")))
              + data(1, b'{"a": ') + data(1, b"1}", end_stream=True), 1.0)
    conn.feed(False, SERVER_START + headers(1, resp_block(200, ("content-type", "text/plain")))
              + data(1, b"ok", end_stream=True), 2.0)
    conn.feed(True, headers(3, req_block("POST", "/k", ("content-type", "application/json"))) + data(3, b"[1,"), 3.0)
    got = conn.take()
    body = got[0].request.body.finish()
    assert ('{"a": 1}', "utf-8", 8) == (body["data"], body["encoding"], body["bytes"])
    assert got[0].response.body is None
    assert conn.mem > 3
    assert 3 == conn.drop_bodies()
    conn.feed(True, data(3, b"2]", end_stream=True), 4.0)
    conn.close(None, 5.0)
    got = conn.take()
    assert (None, True, {"memory_bodies_dropped", "response_missing"}) == \
        (got[0].request.body, got[0].request.body_truncated, got[0].anomalies)
    assert 0 == conn.mem


def test_reset_after_the_whole_content_length_leaves_the_message_complete():
    """curl resets a stream (STREAM_CLOSED) once Content-Length's worth of body came."""
    steps = [(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True)),
             (False, SERVER_START + headers(1, resp_block(200, ("content-length", "5"))) + data(1, b"hello")),
             (True, rst(1, 5)),
             (False, data(1, b"", end_stream=True))]
    _, got = run(steps)
    assert ("rst_stream", "STREAM_CLOSED", True, 5, set()) == \
        (got[0].end_reason, got[0].h2_error, got[0].response.complete, got[0].response.body_len, got[0].anomalies)


def test_undecoded_interim_then_final_response_is_not_a_protocol_error():
    steps = [(True, CLIENT_START + headers(1, GET_ROOT, end_stream=True)),
             (False, SERVER_START + headers(1, b"\xbe")  # index 62 of an empty table: broken from here
              + headers(1, resp_block(103)) + headers(1, resp_block(200)) + data(1, b"ok", end_stream=True))]
    _, got = run(steps)
    assert ("complete", {"http2_hpack_error", "http2_hpack_desync"}, None, 2, True) == \
        (got[0].end_reason, got[0].anomalies, got[0].response.status, got[0].response.body_len,
         got[0].response.complete)
