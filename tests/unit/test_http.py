"""HTTP/1.x session of one connection (sniffd.http.HttpSession): each
direction's reassembled chunks in, paired transactions out.

A case is a list of steps, replayed on a fresh session and then closed with
``close(None, now)``:

* ``C(b"...")`` / ``S(b"...")``: bytes from the client / the server;
* ``*gap(side, n)``: ``n`` bytes of that direction never arrived, preceded,
  as the flow table does it, by ``note(side, ["tcp_gap"])``;
* ``END_C`` / ``END_S``: that direction ended (FIN).

The outcome is a normalised summary of every transaction ``take()`` returned
(in order of completion) and the session's loose anomalies.  Every case is
also replayed with each data step split in two at every byte offset, and
byte-at-a-time, and must give the same outcome: TCP segment boundaries carry
no meaning in HTTP.  Time is the step's index, the same for the pieces of a
split step.

Rules the expected values follow (as tests/pcap/test_crafted_gaps.py does):
``body_len`` counts body bytes seen, ``missed_bytes`` the bytes a gap took
from that message (the whole gap for a message it interrupted); an anomaly
goes on the transaction it touched (the next one if that makes no record),
and ``http_resync`` on the next one only when bytes were skipped to find it.
"""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass

import pytest
from httpdiff import python_reference

from sniffd.budget import RESP_END_COST, Meter
from sniffd.http import HttpSession, Message, Transaction
from sniffd.http.reader import HEAD, MessageReader

HOST = {"host": "example.test"}


# ------------------------------------------------------------------ steps


def C(data: bytes) -> tuple:
    return ("data", True, data)


def S(data: bytes) -> tuple:
    return ("data", False, data)


def gap(from_client: bool, n: int) -> list[tuple]:
    return [("note", from_client, ("tcp_gap",)), ("gap", from_client, n)]


END_C = ("end", True)
END_S = ("end", False)
CLIENT, SERVER = True, False


def run(steps: list[tuple]) -> dict:
    return run_pieces([[step] for step in steps])


def run_pieces(steps: list[list[tuple]]) -> dict:
    """Each step is a list of pieces, fed one call each, all at the step's time."""
    s, done = play(steps)
    return {"transactions": [summary(t) for t in done if summary(t) is not None], "loose": sorted(s.loose)}


def play(steps: list[list[tuple]], s: HttpSession | None = None) -> tuple[HttpSession, list[Transaction]]:
    """``run_pieces``'s replay: the session, closed, and every transaction taken."""
    s = HttpSession() if s is None else s
    done: list[Transaction] = []
    now = 0.0
    for i, pieces in enumerate(steps):
        now = float(i)
        for step in pieces:
            kind = step[0]
            if kind in ("data", "gap"):
                s.feed(step[1], [step[2]], now)
            elif kind == "note":
                s.note(step[1], step[2])
            elif kind == "end":
                s.end(step[1], now)
            else:
                raise AssertionError(f"unknown step {step!r}")
            done += s.take()
    s.close(None, now + 1)
    done += s.take()
    return s, done


def summary(t: Transaction) -> dict | None:
    """The transaction's fields that records are made of.  As in
    ``records.build``, a request abandoned before its method was known, or a
    response before its status, counts as absent."""
    req = t.request if t.request is not None and t.request.method is not None else None
    resp = t.response if t.response is not None and t.response.status is not None else None
    if req is None and resp is None:
        return None
    return {
        "depth": t.depth,
        "request": None if req is None else message(req, "method", "uri"),
        "response": None if resp is None else message(resp, "status", "reason"),
        "interim": list(t.interim),
        "anomalies": sorted(t.anomalies),
    }


def message(m: Message, first: str, second: str) -> dict:
    return {
        first: getattr(m, first),
        second: getattr(m, second),
        "version": m.version,
        "headers": m.headers,
        "body_len": m.body_len,
        "missed_bytes": m.missed_bytes,
    }


# --------------------------------------------------------- expected values


def req(method, uri, headers=None, body_len=0, missed_bytes=0, version="1.1") -> dict:
    return {
        "method": method,
        "uri": uri,
        "version": version,
        "headers": dict(HOST) if headers is None else headers,
        "body_len": body_len,
        "missed_bytes": missed_bytes,
    }


def resp(status, reason, headers=None, body_len=0, missed_bytes=0, version="1.1") -> dict:
    return {
        "status": status,
        "reason": reason,
        "version": version,
        "headers": {} if headers is None else headers,
        "body_len": body_len,
        "missed_bytes": missed_bytes,
    }


def txn(depth, request, response, interim=(), anomalies=()) -> dict:
    return {
        "depth": depth,
        "request": request,
        "response": response,
        "interim": list(interim),
        "anomalies": sorted(anomalies),
    }


def outcome(*transactions, loose=()) -> dict:
    return {"transactions": list(transactions), "loose": sorted(loose)}


def get(uri: str, extra: bytes = b"") -> bytes:
    return b"GET " + uri.encode() + b" HTTP/1.1\r\nHost: example.test\r\n" + extra + b"\r\n"


def ok(body: bytes, status: bytes = b"200 OK") -> bytes:
    return b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def ok_resp(body_len: int, status=200, reason="OK") -> dict:
    return resp(status, reason, {"content-length": str(body_len)}, body_len=body_len)


# ------------------------------------------------------------------ cases


@dataclass(frozen=True)
class Case:
    name: str
    steps: list
    expected: dict


TLS_HELLO = b"\x16\x03\x01\x00\x45\x01\x00\x00\x41\x03\x03" + bytes(range(32)) + b"\x00\x02\x13\x01\x01\x00"
WS_UPGRADE = (
    b"GET /chat HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
WS_SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)
# A server WebSocket frame whose payload looks like an HTTP response.
WS_LOOKALIKE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
WS_FRAME = b"\x82" + bytes([len(WS_LOOKALIKE)]) + WS_LOOKALIKE
CONNECT = b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n"
CONNECT_REQ = req("CONNECT", "example.test:443", {"host": "example.test:443"})
PROXY_AUTH = (
    b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"proxy\"\r\n"
    b"Content-Length: 4\r\n\r\nauth"
)
PROXY_AUTH_RESP = resp(
    407,
    "Proxy Authentication Required",
    {"proxy-authenticate": 'Basic realm="proxy"', "content-length": "4"},
    body_len=4,
)
HEAD_REST = b"Agent: craft/1.0\r\n\r\n"  # what a header gap below loses

CASES = [
    Case(
        "get_answered_200_with_content_length",
        [
            C(b"GET /index.html HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n"),
            S(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"),
        ],
        outcome(
            txn(
                1,
                req("GET", "/index.html", {"host": "example.test", "accept": "*/*"}),
                resp(200, "OK", {"content-type": "text/plain", "content-length": "5"}, body_len=5),
            )
        ),
    ),
    Case(
        "post_body_is_measured",
        [
            C(
                b"POST /form HTTP/1.1\r\nHost: example.test\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\na=1&b=hello"
            ),
            S(b"HTTP/1.1 201 Created\r\nLocation: /form/1\r\nContent-Length: 0\r\n\r\n"),
        ],
        outcome(
            txn(
                1,
                req(
                    "POST",
                    "/form",
                    {
                        "host": "example.test",
                        "content-type": "application/x-www-form-urlencoded",
                        "content-length": "11",
                    },
                    body_len=11,
                ),
                resp(201, "Created", {"location": "/form/1", "content-length": "0"}),
            )
        ),
    ),
    Case(
        "chunked_request_and_response_bodies_are_measured_dechunked",
        [
            C(
                b"POST /upload HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6;name=value\r\n world\r\n0\r\n\r\n"
            ),
            S(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"1a\r\nabcdefghijklmnopqrstuvwxyz\r\nA\r\n0123456789\r\n0\r\n\r\n"
            ),
        ],
        outcome(
            txn(
                1,
                req("POST", "/upload", {"host": "example.test", "transfer-encoding": "chunked"}, body_len=11),
                resp(200, "OK", {"transfer-encoding": "chunked"}, body_len=36),
            )
        ),
    ),
    Case(
        "keep_alive_connection_gives_three_transactions_in_order",
        [
            C(get("/1")),
            S(ok(b"a")),
            C(get("/2")),
            S(ok(b"not found", b"404 Not Found")),
            C(b"POST /3 HTTP/1.1\r\nHost: example.test\r\nContent-Length: 3\r\n\r\nxyz"),
            S(ok(b"ok")),
        ],
        outcome(
            txn(1, req("GET", "/1"), ok_resp(1)),
            txn(2, req("GET", "/2"), ok_resp(9, 404, "Not Found")),
            txn(3, req("POST", "/3", {"host": "example.test", "content-length": "3"}, body_len=3), ok_resp(2)),
        ),
    ),
    Case(
        "pipelined_head_response_has_no_body_whatever_its_content_length",
        [
            C(get("/a") + b"HEAD /b HTTP/1.1\r\nHost: example.test\r\n\r\n" + get("/c")),
            S(ok(b"alpha") + b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + ok(b"gamma")),
        ],
        outcome(
            txn(1, req("GET", "/a"), ok_resp(5)),
            txn(2, req("HEAD", "/b"), resp(200, "OK", {"content-length": "1000"})),
            txn(3, req("GET", "/c"), ok_resp(5)),
        ),
    ),
    Case(
        "head_response_has_no_body_whatever_its_transfer_encoding",
        [
            C(b"HEAD /h HTTP/1.1\r\nHost: example.test\r\n\r\n" + get("/g")),
            S(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + ok(b"x")),
        ],
        outcome(
            txn(1, req("HEAD", "/h"), resp(200, "OK", {"transfer-encoding": "chunked"})),
            txn(2, req("GET", "/g"), ok_resp(1)),
        ),
    ),
    Case(
        "100_continue_is_interim_and_the_final_response_pairs_with_the_request",
        [
            C(b"POST /upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: 13\r\nExpect: 100-continue\r\n\r\n"),
            S(b"HTTP/1.1 100 Continue\r\n\r\n"),
            C(b'{"a":"hello"}'),
            S(ok(b"ok")),
        ],
        outcome(
            txn(
                1,
                req(
                    "POST",
                    "/upload",
                    {"host": "example.test", "content-length": "13", "expect": "100-continue"},
                    body_len=13,
                ),
                ok_resp(2),
                interim=[(100, "Continue")],
            )
        ),
    ),
    Case(
        "interim_responses_in_the_same_segment_as_the_final_one_are_kept_in_order",
        [
            C(get("/page")),
            S(
                b"HTTP/1.1 102 Processing\r\n\r\n"
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + ok(b"page")
            ),
        ],
        outcome(txn(1, req("GET", "/page"), ok_resp(4), interim=[(102, "Processing"), (103, "Early Hints")])),
    ),
    Case(
        "304_and_204_responses_have_no_body",
        [
            C(get("/a", b'If-None-Match: "v1"\r\n')),
            S(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1000\r\n\r\n'),
            C(b"DELETE /b HTTP/1.1\r\nHost: example.test\r\n\r\n"),
            S(b"HTTP/1.1 204 No Content\r\n\r\n"),
            C(get("/c")),
            S(ok(b"ok")),
        ],
        outcome(
            txn(
                1,
                req("GET", "/a", {"host": "example.test", "if-none-match": '"v1"'}),
                resp(304, "Not Modified", {"etag": '"v1"', "content-length": "1000"}),
            ),
            txn(2, req("DELETE", "/b"), resp(204, "No Content")),
            txn(3, req("GET", "/c"), ok_resp(2)),
        ),
    ),
    Case(
        "connect_answered_200_carrying_plain_http_is_parsed_inside_the_tunnel",
        [
            C(CONNECT),
            S(b"HTTP/1.1 200 Connection Established\r\n\r\n"),
            C(get("/inside")),
            S(ok(b"", b"404 Not Found")),
        ],
        outcome(
            txn(1, CONNECT_REQ, resp(200, "Connection Established")),
            txn(2, req("GET", "/inside"), ok_resp(0, 404, "Not Found")),
        ),
    ),
    Case(
        "connect_answered_200_ignores_tunnel_bytes_in_the_same_segments",
        [
            C(CONNECT + TLS_HELLO),
            S(b"HTTP/1.1 200 Connection Established\r\n\r\n" + b"\x16\x03\x03\x00\x02hi" + ok(b"x")),
            C(get("/inside")),
        ],
        outcome(
            txn(1, CONNECT_REQ, resp(200, "Connection Established"), anomalies=["http_upgrade"]),
            loose=["http_upgrade"],
        ),
    ),
    Case(
        "connect_answered_407_keeps_parsing_the_connection_as_http",
        [
            C(CONNECT),
            S(PROXY_AUTH),
            C(get("/x")),
            S(ok(b"ok")),
        ],
        outcome(txn(1, CONNECT_REQ, PROXY_AUTH_RESP), txn(2, req("GET", "/x"), ok_resp(2))),
    ),
    Case(
        "request_sent_right_behind_connect_is_parsed_once_connect_is_refused",
        [
            C(CONNECT + get("/x")),
            S(PROXY_AUTH + ok(b"ok")),
        ],
        outcome(txn(1, CONNECT_REQ, PROXY_AUTH_RESP), txn(2, req("GET", "/x"), ok_resp(2))),
    ),
    Case(
        "connect_request_has_no_body_whatever_its_content_length",
        [
            C(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\nContent-Length: 5\r\n\r\n" + get("/x")),
            S(PROXY_AUTH + ok(b"ok")),
        ],
        outcome(
            txn(1, req("CONNECT", "example.test:443", {"host": "example.test:443", "content-length": "5"}),
                PROXY_AUTH_RESP),
            txn(2, req("GET", "/x"), ok_resp(2)),
        ),
    ),
    Case(
        "websocket_upgrade_answered_101_logs_one_transaction_and_ignores_frames",
        [
            C(WS_UPGRADE),
            S(WS_SWITCHING + WS_FRAME),
            C(b"\x82\x84\x01\x02\x03\x04\x01\xfd\x13\x24"),
            S(WS_FRAME),
        ],
        outcome(
            txn(
                1,
                req(
                    "GET",
                    "/chat",
                    {
                        "host": "example.test",
                        "upgrade": "websocket",
                        "connection": "Upgrade",
                        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
                        "sec-websocket-version": "13",
                    },
                ),
                resp(
                    101,
                    "Switching Protocols",
                    {
                        "upgrade": "websocket",
                        "connection": "Upgrade",
                        "sec-websocket-accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                    },
                ),
                anomalies=["http_upgrade"],
            ),
            loose=["http_upgrade"],
        ),
    ),
    Case(
        "close_delimited_response_body_ends_with_the_server_direction",
        [
            C(get("/stream", b"Connection: close\r\n")),
            S(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nabc"),
            S(b"\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"),  # body bytes that look like a response
            END_S,
        ],
        outcome(
            txn(
                1,
                req("GET", "/stream", {"host": "example.test", "connection": "close"}),
                resp(200, "OK", {"content-type": "text/plain", "connection": "close"}, body_len=26),
            )
        ),
    ),
    Case(
        "client_half_close_after_its_request_still_gets_the_response",
        [C(get("/a", b"Connection: close\r\n")), END_C, S(ok(b"ok"))],
        outcome(txn(1, req("GET", "/a", {"host": "example.test", "connection": "close"}), ok_resp(2))),
    ),
    Case(
        "request_body_cut_short_by_client_fin_is_message_incomplete",
        [C(b"POST /x HTTP/1.1\r\nHost: example.test\r\nContent-Length: 10\r\n\r\nabc"), END_C, S(ok(b"", b"400 Bad Request"))],
        outcome(
            txn(
                1,
                req("POST", "/x", {"host": "example.test", "content-length": "10"}, body_len=3),
                ok_resp(0, 400, "Bad Request"),
                anomalies=["message_incomplete"],
            )
        ),
    ),
    # A server may answer before the request is over (413, 401, an early
    # error): the record waits for the rest of the request, which is its own.
    Case(
        "early_response_then_client_fin_mid_body_is_message_incomplete",
        [C(b"POST /x HTTP/1.1\r\nHost: example.test\r\nContent-Length: 10\r\n\r\nabc"), S(ok(b"", b"400 Bad Request")),
         END_C],
        outcome(
            txn(
                1,
                req("POST", "/x", {"host": "example.test", "content-length": "10"}, body_len=3),
                ok_resp(0, 400, "Bad Request"),
                anomalies=["message_incomplete"],
            )
        ),
    ),
    Case(
        "early_response_then_gap_in_the_request_body_is_counted_on_its_record",
        [C(b"POST /x HTTP/1.1\r\nHost: example.test\r\nContent-Length: 10\r\n\r\nabc"),
         S(ok(b"", b"413 Content Too Large")), *gap(CLIENT, 4), C(b"xyz")],
        outcome(
            txn(
                1,
                req("POST", "/x", {"host": "example.test", "content-length": "10"}, body_len=6, missed_bytes=4),
                ok_resp(0, 413, "Content Too Large"),
                anomalies=["body_gap", "tcp_gap"],
            )
        ),
    ),
    Case(
        "early_response_waits_for_the_chunked_request_body_and_trailers",
        [C(b"POST /up HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"),
         S(ok(b"", b"413 Content Too Large")), C(b"2\r\nde\r\n0\r\nX-Early-Trailer: t\r\nX-Other: \xff\r\n\r\n"),
         C(get("/next")), S(ok(b"b"))],
        outcome(
            txn(
                1,
                req("POST", "/up", {"host": "example.test", "transfer-encoding": "chunked", "x-early-trailer": "t",
                                    "x-other": "\udcff"}, body_len=5),
                ok_resp(0, 413, "Content Too Large"),
            ),
            txn(2, req("GET", "/next"), ok_resp(1)),
        ),
    ),
    # HTTP/0.9 (README, *What sniffd accepts*): a request line without a
    # version ends with its line when the next line is not a field; that
    # next line may arrive in a later segment than the request line.
    Case(
        "http09_request_ends_with_its_line_when_the_next_line_is_not_a_field",
        [C(b"GET /a\r\nfoo bar\r\n"), S(b"HTTP/1.0 200 OK\r\n\r\nA")],
        outcome(
            txn(1, req("GET", "/a", {}, version="0.9"), resp(200, "OK", {}, body_len=1, version="1.0")),
            txn(2, req("foo", "bar", {}, version="0.9"), None, anomalies=["response_missing"]),
        ),
    ),
    Case(
        "chunk_sizes_may_have_any_number_of_leading_zeros",
        [C(get("/z")),
         S(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * 20 + b"3\r\nabc\r\n" + b"0" * 20
           + b"\r\n\r\n")],
        outcome(txn(1, req("GET", "/z"), resp(200, "OK", {"transfer-encoding": "chunked"}, body_len=3))),
    ),
    Case(
        "reason_phrase_keeps_leading_whitespace_whatever_the_version",
        [C(get("/a") + get("/b")),
         S(b"HTTP/1.1 200  OK\r\nContent-Length: 0\r\n\r\nHTTP/2.0 200 \tOK\r\nContent-Length: 0\r\n\r\n")],
        outcome(
            txn(1, req("GET", "/a"), resp(200, " OK", {"content-length": "0"})),
            txn(2, req("GET", "/b"), resp(200, "\tOK", {"content-length": "0"}, version="2.0")),
        ),
    ),
    Case(
        "response_chunked_twice_is_flagged_and_read_as_chunked",
        [C(get("/a") + get("/b")),
         S(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n0\r\n\r\n" + ok(b"b"))],
        outcome(
            txn(1, req("GET", "/a"), resp(200, "OK", {"transfer-encoding": "chunked, chunked"}, body_len=3),
                anomalies=["http_ambiguous_framing", "http_te_invalid"]),
            txn(2, req("GET", "/b"), ok_resp(1)),
        ),
    ),
    Case(
        "chunked_request_cut_in_its_trailers_keeps_the_complete_trailer_lines",
        [C(b"POST /t HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
           b"X-Sum: 1\r\nX-Cut: 2"), END_C, S(ok(b""))],
        outcome(
            txn(
                1,
                req("POST", "/t", {"host": "example.test", "transfer-encoding": "chunked", "x-sum": "1"}, body_len=3),
                ok_resp(0),
                anomalies=["message_incomplete"],
            )
        ),
    ),
    Case(
        "request_without_response_at_close_is_response_missing",
        [C(get("/a") + get("/b")), S(ok(b"a"))],
        outcome(
            txn(1, req("GET", "/a"), ok_resp(1)),
            txn(2, req("GET", "/b"), None, anomalies=["response_missing"]),
        ),
    ),
    Case(
        "response_without_request_is_request_missing",
        [S(ok(b"ok"))],
        outcome(txn(1, None, ok_resp(2), anomalies=["request_missing"])),
    ),
    Case(
        "connection_starting_with_garbage_is_non_http",
        [C(TLS_HELLO), S(b"\x15\x03\x03\x00\x02\x02\x46")],
        outcome(loose=["non_http"]),
    ),
    Case(
        "garbage_between_keep_alive_requests_is_skipped_to_the_next_request_line",
        [
            C(get("/1")),
            S(ok(b"")),
            C(b"\x00\x01\x02junk\r\n" + get("/3")),
            S(ok(b"ok")),
        ],
        outcome(
            txn(1, req("GET", "/1"), ok_resp(0)),
            # Junk that is no message (no header section after it) is
            # skipped: the request found after it says so.
            txn(2, req("GET", "/3"), ok_resp(2), anomalies=["http_resync"]),
        ),
    ),
    Case(
        "invalid_content_length_means_no_request_body_and_the_next_request_follows",
        [
            C(get("/1")),
            S(ok(b"")),
            C(b"GET /2 HTTP/1.1\r\nHost: example.test\r\nContent-Length: nope\r\n\r\n" + get("/3")),
            S(ok(b"", b"400 Bad Request")),
            S(ok(b"ok")),
        ],
        outcome(
            txn(1, req("GET", "/1"), ok_resp(0)),
            # A Content-Length that is no number: the request has no body
            # (a server refuses it), flagged as a smuggling shape; the next
            # request follows at once.
            txn(2, req("GET", "/2", {"host": "example.test", "content-length": "nope"}), ok_resp(0, 400, "Bad Request"),
                anomalies=["http_ambiguous_framing", "http_cl_invalid"]),
            txn(3, req("GET", "/3"), ok_resp(2)),
        ),
    ),
    Case(
        "gap_inside_a_content_length_body_is_counted_and_the_transaction_continues",
        [
            C(get("/big")),
            S(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\naaaa"),
            *gap(SERVER, 4),
            S(b"cccc"),
            C(get("/small")),
            S(ok(b"ok")),
        ],
        outcome(
            txn(
                1,
                req("GET", "/big"),
                resp(200, "OK", {"content-length": "12"}, body_len=8, missed_bytes=4),
                anomalies=["body_gap", "tcp_gap"],
            ),
            txn(2, req("GET", "/small"), ok_resp(2)),
        ),
    ),
    Case(
        "gap_in_request_headers_interrupts_only_that_request",
        [
            C(get("/one", b"User-Agent: craft/1.0\r\n")),
            S(ok(b"one")),
            C(b"GET /two HTTP/1.1\r\nHost: example.test\r\nUser-"),
            *gap(CLIENT, len(HEAD_REST)),
            S(ok(b"two")),
            C(get("/three", b"User-Agent: craft/1.0\r\n")),
            S(ok(b"three")),
        ],
        outcome(
            txn(1, req("GET", "/one", {"host": "example.test", "user-agent": "craft/1.0"}), ok_resp(3)),
            txn(
                2,
                req("GET", "/two", missed_bytes=20),
                ok_resp(3),
                anomalies=["message_interrupted", "tcp_gap"],
            ),
            txn(3, req("GET", "/three", {"host": "example.test", "user-agent": "craft/1.0"}), ok_resp(5)),
        ),
    ),
    Case(
        "gap_in_response_headers_interrupts_only_that_response",
        [
            C(get("/a") + get("/b")),
            S(b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-"),
            *gap(SERVER, len(b"Length: 5\r\n\r\nhello")),
            S(ok(b"ok")),
        ],
        outcome(
            txn(
                1,
                req("GET", "/a"),
                resp(200, "OK", {"server": "t"}, missed_bytes=18),
                anomalies=["message_interrupted", "tcp_gap"],
            ),
            txn(2, req("GET", "/b"), ok_resp(2)),
        ),
    ),
    Case(
        "repeated_headers_are_joined_with_comma_space",
        [
            C(
                b"GET / HTTP/1.1\r\nHost: example.test\r\nAccept: text/html\r\nX-Forwarded-For: 192.0.2.1\r\n"
                b"Accept: application/json\r\nx-forwarded-for: 192.0.2.2\r\n\r\n"
            ),
            S(b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n"),
        ],
        outcome(
            txn(
                1,
                req(
                    "GET",
                    "/",
                    {
                        "host": "example.test",
                        "accept": "text/html, application/json",
                        "x-forwarded-for": "192.0.2.1, 192.0.2.2",
                    },
                ),
                resp(200, "OK", {"set-cookie": "a=1, b=2", "content-length": "0"}),
            )
        ),
    ),
    Case(
        "header_names_are_lowercased_and_values_kept_as_sent",
        [
            C(b"GET / HTTP/1.1\r\nHOST: Example.TEST\r\nX-MiXeD-CaSe: VaLuE\r\n\r\n"),
            S(b"HTTP/1.1 200 OK\r\nCONTENT-type: Text/HTML; Charset=UTF-8\r\ncontent-LENGTH: 0\r\n\r\n"),
        ],
        outcome(
            txn(
                1,
                req("GET", "/", {"host": "Example.TEST", "x-mixed-case": "VaLuE"}),
                resp(200, "OK", {"content-type": "Text/HTML; Charset=UTF-8", "content-length": "0"}),
            )
        ),
    ),
    Case(
        "invalid_utf8_in_uri_and_header_values_is_kept_as_surrogate_escapes",
        [
            C(b"GET /caf\xc3\xa9/\xe9?q=\xff HTTP/1.1\r\nHost: example.test\r\nX-Raw: \xff\xfe ok\r\n\r\n"),
            S(ok(b"")),
        ],
        outcome(
            txn(
                1,
                req("GET", "/caf\u00e9/\udce9?q=\udcff", {"host": "example.test", "x-raw": "\udcff\udcfe ok"}),
                ok_resp(0),
            )
        ),
    ),
]
IDS = [c.name for c in CASES]


def split_variants(steps: list[tuple]):
    """(description, steps as lists of pieces): each data step cut in two at
    every offset, the other steps whole."""
    whole = [[s] for s in steps]
    for i, step in enumerate(steps):
        if step[0] != "data":
            continue
        data = step[2]
        for k in range(1, len(data)):
            pieces = list(whole)
            pieces[i] = [("data", step[1], data[:k]), ("data", step[1], data[k:])]
            yield f"step {i} split at byte {k}: {data[:k]!r} | {data[k:]!r}", pieces


def byte_at_a_time(steps: list[tuple]) -> list[list[tuple]]:
    out = []
    for step in steps:
        if step[0] == "data":
            out.append([("data", step[1], step[2][j : j + 1]) for j in range(len(step[2]))])
        else:
            out.append([step])
    return out


@pytest.fixture(params=["c", "python"])
def head_parser(request):
    """Heads parsed by _fields.c's fast path (as installed), or by the Python
    reference alone, which must stay exercised (test_http_fields.py holds
    the two equal)."""
    with python_reference(request.param == "python"):
        yield request.param


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_http_session_gives_the_expected_transactions(case: Case, head_parser: str) -> None:
    assert case.expected == run(case.steps)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_http_session_gives_the_same_transactions_split_at_every_byte_offset(case: Case) -> None:
    for description, pieces in split_variants(case.steps):
        assert case.expected == run_pieces(pieces), description


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_http_session_gives_the_same_transactions_fed_byte_at_a_time(case: Case) -> None:
    assert case.expected == run_pieces(byte_at_a_time(case.steps))


def test_http_message_times_are_first_and_last_byte() -> None:
    """A request starts at its first byte and a response ends at its last
    byte (duration_ms runs between them), whatever else arrives between."""
    s = HttpSession()
    s.feed(True, [b"GET /t HTTP/1.1\r\nHo"], 10.0)
    s.feed(True, [b"st: example.test\r\n\r\n"], 10.5)
    s.feed(False, [b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"], 11.0)
    s.feed(False, [b"cd"], 12.25)
    (t,) = s.take()
    assert (10.0, 10.5, 11.0, 12.25) == (t.request.start_ts, t.request.end_ts, t.response.start_ts, t.response.end_ts)


# ------------------------------------------------------------------ memory


@pytest.fixture
def gc_off():
    """The cyclic GC off for the test: what it would free is counted instead."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_session_leaves_no_cycle(gc_off) -> None:
    """Every case's session, closed and its transactions taken, is freed by
    reference counting alone the moment the last reference goes: no
    session <-> reader, message <-> transaction or other cycle is left for
    the cyclic GC (which sniffd runs rarely: a flood of evicted sessions
    waiting for it once peaked at 977 MB)."""
    alive = []
    for case in CASES:
        s, done = play([[step] for step in case.steps])
        ref = weakref.ref(s)
        del s, done
        if ref() is not None:
            alive.append(case.name)
    assert ([], 0) == (alive, gc.collect())


def test_session_cut_while_reading_leaves_no_cycle(gc_off) -> None:
    """The same for sessions closed in the middle of things, as an eviction
    closes them: a head half read, a body half read, requests pipelined and
    unanswered, a response without its request."""
    cuts = [
        [C(b"GET /a HTTP/1.1\r\nHost: example.test\r\nX-Long: aaaa")],
        [C(b"POST /b HTTP/1.1\r\nContent-Length: 100\r\n\r\nhalf"), S(b"HTTP/1.1 100 Continue\r\n\r\n")],
        [C(get("/c") + get("/d") + get("/e")), S(ok(b"cc") + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")],
        [S(ok(b"orphan"))],
        [C(b"CONNECT example.test:443 HTTP/1.1\r\n\r\n"), S(b"HTTP/1.1 200 OK\r\n\r\n"), C(TLS_HELLO)],
    ]
    refs = []
    for steps in cuts:
        s = HttpSession()
        for _kind, from_client, data in steps:
            s.feed(from_client, [data], 1.0)
        s.close("memory_evicted", 2.0, "evicted")
        done = s.take()
        assert done, steps
        refs.append(weakref.ref(s))
        del s, done
    assert ([None] * len(cuts), 0) == ([r() for r in refs], gc.collect())


@pytest.mark.parametrize("chunk", [1, 1448, 4097, 256 * 1024])
def test_unfinished_head_is_charged_and_cut_before_more_is_held(monkeypatch, chunk: int) -> None:
    """A header line that never ends, fed in segments or as one 256 KiB chunk
    (a reassembled run, a GRO super-segment): the bytes its unfinished head
    holds are charged to the memory budget's meter as they are held, and
    the head is cut (header_limit) when it passes max_header_bytes, before
    it holds more than one byte past the bound (the whole chunk used to be
    held first).  What follows the line is found again, and nothing stays
    charged once the session is closed."""
    limit = 4096
    held: list[int] = []
    charge = MessageReader._charge

    def watched(self) -> None:
        if self.state is HEAD:
            held.append(len(self.buf))
        charge(self)

    monkeypatch.setattr(MessageReader, "_charge", watched)
    meter = Meter()
    s = HttpSession(max_header_bytes=limit, meter=meter)
    head = b"GET /big HTTP/1.1\r\nHost: example.test\r\nX-Big: "
    s.feed(True, [head], 0.0)
    assert (len(head), len(head)) == (meter.http_bytes, len(s.req.buf))
    line = b"b" * (64 * 1024)
    for k in range(0, len(line), chunk):
        s.feed(True, [line[k : k + chunk]], 1.0)
    s.feed(True, [b"\r\n\r\n" + get("/next")], 2.0)
    s.feed(False, [b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n" + ok(b"hi")], 3.0)
    s.close(None, 4.0)
    done = [summary(t) for t in s.take()]
    assert limit + 1 == max(held)
    assert [("GET", "/big", 431, ["header_limit"]), ("GET", "/next", 200, ["http_resumed", "http_resync"])] == [
        (t["request"]["method"], t["request"]["uri"], t["response"]["status"], t["anomalies"]) for t in done]
    assert 0 == meter.http_bytes


def test_response_ends_the_pairing_remembers_are_charged_until_the_close() -> None:
    """A keep-alive connection's pairing remembers the ends of its last 64
    responses (~100 bytes each): charged to the meter as they are added,
    no more once 64 are kept, and all released at the close (a flood of
    long keep-alive connections held ~6 KiB each the budget did not see)."""
    meter = Meter()
    s = HttpSession(meter=meter)
    charged = []
    for i in range(100):
        s.feed(True, [get(f"/{i}")], float(i))
        s.feed(False, [ok(b"x")], float(i))
        s.take()
        charged.append(meter.http_bytes)
    s.close(None, 100.0)
    s.take()
    assert ([RESP_END_COST * min(i + 1, 63) for i in range(100)], 0) == (charged, meter.http_bytes)
