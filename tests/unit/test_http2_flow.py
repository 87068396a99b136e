"""sniffd.http2.H2Flow: the flow table's calls in, HTTP/2 transactions out; a
client stream that begins like the preface but is not one handed back to
HTTP/1 (``successor`` "http1") with every call it got, in order.

Frames come from tests/h2craft.py (written from RFC 9113 by hand); expected
values are written here.  Time is simulated.
"""

from __future__ import annotations

from h2craft import CLIENT_ACK, CLIENT_START, GET_ROOT, PREFACE, SERVER_START, data, headers, req_block, resp_block

from sniffd.budget import Meter
from sniffd.http2 import H2Flow

REQUEST_BYTES = CLIENT_START + headers(1, GET_ROOT, end_stream=True) + headers(3, req_block("POST", "/up")) \
    + data(3, b"12345", end_stream=True) + CLIENT_ACK
RESPONSE_BYTES = SERVER_START + headers(1, resp_block(200, ("content-length", "2"))) + data(1, b"ok", end_stream=True) \
    + headers(3, resp_block(201), end_stream=True)
# What the two streams are: (stream id, trans_depth, method, uri, status, request body, response body, end_reason)
EXPECTED = [(1, 1, "GET", "/", 200, 0, 2, "complete"), (3, 2, "POST", "/up", 201, 5, 0, "complete")]


def run(flow: H2Flow, steps) -> list:
    """Steps: (from_client, bytes) or ("end", from_client) or ("close",); time is the step's index."""
    out = []
    for t, step in enumerate(steps):
        if step[0] == "end":
            flow.end(step[1], float(t))
        elif step[0] == "close":
            flow.close(None, float(t))
        else:
            flow.feed(step[0], [step[1]], float(t), None)
        out += flow.take()
    return out


def summary(txns) -> list:
    return sorted((t.stream_id, t.depth, t.request.method, t.request.uri, t.response.status, t.request.body_len,
                   t.response.body_len, t.end_reason) for t in txns)


def test_a_preface_cut_anywhere_in_the_first_24_bytes_is_read_as_http2():
    for k in range(1, len(PREFACE) + 1):
        flow = H2Flow(deciding=True)
        got = run(flow, [(True, REQUEST_BYTES[:k]), (True, REQUEST_BYTES[k:]), (False, RESPONSE_BYTES), ("close",)])
        assert (None, EXPECTED) == (flow.successor, summary(got)), k


def test_server_bytes_before_the_preface_is_complete_are_read_after_it():
    """An HTTP/2 server may send its SETTINGS as soon as the connection opens."""
    flow = H2Flow(deciding=True)
    got = run(flow, [(True, REQUEST_BYTES[:10]), (False, SERVER_START), (True, REQUEST_BYTES[10:]),
                     (False, RESPONSE_BYTES[len(SERVER_START):]), ("close",)])
    assert (None, EXPECTED, {}) == (flow.successor, summary(got), flow.conn.loose)


def test_request_starting_like_the_preface_goes_back_to_http1_with_every_call():
    request = b"PRIX / HTTP/1.1\r\nHost: h\r\n\r\n"
    flow = H2Flow(deciding=True)
    flow.feed(True, [request[:3]], 1.0, 7)
    flow.note(True, ("tcp_urgent_data",))
    flow.feed(False, [(b"junk", 1.5)], 1.5, None)
    assert flow.successor is None  # "PRI" could still be the preface
    flow.feed(True, [(request[3:], 2.0, 9), 11], 2.0)
    assert "http1" == flow.successor
    ho = flow.hand_over()
    assert ("http1", [
        ("feed", (True, [(b"PRI", 1.0, 7)], 1.0)),
        ("note", (True, ("tcp_urgent_data",))),
        ("feed", (False, [(b"junk", 1.5, None)], 1.5)),
        ("feed", (True, [(request[3:], 2.0, 9)], 2.0)),
        ("feed", (True, [11], 2.0)),  # after the decision, the rest of the list, as it came
    ], None) == (ho.protocol, ho.calls, ho.upgrade)


def test_a_gap_or_the_clients_fin_before_24_bytes_means_http1():
    flow = H2Flow(deciding=True)
    flow.feed(True, [b"PRI * "], 1.0)
    flow.feed(True, [4], 1.0)
    assert "http1" == flow.successor
    flow = H2Flow(deciding=True)
    flow.feed(True, [b"PRI * "], 1.0)
    flow.end(False, 2.0)  # the server's FIN alone decides nothing
    assert flow.successor is None
    flow.end(True, 3.0)
    assert ("http1", [("feed", (True, [(b"PRI * ", 1.0, None)], 1.0)), ("end", (False, 2.0, "fin")),
                      ("end", (True, 3.0, "fin"))]) == (flow.successor, flow.hand_over().calls)


def test_a_close_while_deciding_hands_over_without_the_close():
    """The flow table closes the session that takes the connection
    (FlowTable._close); a close among the calls closed it twice."""
    flow = H2Flow(deciding=True)
    flow.feed(True, [b"P"], 1.0)
    flow.close("idle_timeout", 9.0, "idle")
    assert ("http1", [("feed", (True, [(b"P", 1.0, None)], 1.0))]) == (flow.successor, flow.hand_over().calls)


def test_a_server_that_talks_before_any_preface_is_not_waited_for_without_bound():
    flow = H2Flow(deciding=True)
    flow.feed(True, [b"PRI"], 1.0)
    flow.feed(False, [bytes(40_000)], 2.0)
    assert flow.successor is None
    flow.feed(False, [bytes(40_000)], 3.0)
    assert "http1" == flow.successor


def test_memory_is_charged_while_held_and_given_back_at_the_end():
    meter = Meter()
    flow = H2Flow(meter, deciding=True)
    flow.feed(True, [REQUEST_BYTES[:5]], 1.0)
    assert meter.http_bytes > 5
    flow.feed(True, [REQUEST_BYTES[5:]], 2.0)
    flow.feed(False, [RESPONSE_BYTES], 3.0)
    assert meter.http_bytes > 0  # HPACK tables, finished streams not taken
    flow.close(None, 4.0)
    assert EXPECTED == summary(flow.take())
    assert 0 == meter.http_bytes
    flow = H2Flow(meter, deciding=True)
    flow.feed(True, [b"PRI"], 1.0)
    flow.feed(True, [b"X"], 1.0)
    flow.hand_over()
    assert 0 == meter.http_bytes


def test_bodies_dropped_by_the_budget_stop_being_kept():
    from sniffd.bodies import BodyCapture

    meter = Meter()
    flow = H2Flow(meter, bodies=BodyCapture(1024, 4096, ("text/*",)))
    flow.feed(True, [CLIENT_START + headers(1, GET_ROOT, end_stream=True)], 1.0)
    flow.feed(False, [SERVER_START + headers(1, resp_block(200, ("content-type", "text/plain"))) + data(1, b"abc")],
              2.0)
    meter.keep_bodies = False
    flow.feed(False, [data(1, b"def", end_stream=True)], 3.0)
    (t,) = flow.take()
    assert (None, True, 6, ["memory_bodies_dropped"]) == (t.response.body, t.response.body_truncated,
                                                           t.response.body_len, sorted(t.anomalies))


def test_sticky_anomalies_and_the_connect_tunnel_go_on_every_record():
    flow = H2Flow(sticky={"tcp_data_after_rst"}, connect=("example.test:80", 1))
    got = run(flow, [(True, REQUEST_BYTES), (False, RESPONSE_BYTES), ("close",)])
    assert [(["tcp_data_after_rst"], ("example.test:80", 1))] * 2 == [(sorted(t.anomalies), t.connect) for t in got]


def test_note_at_a_byte_already_delivered_touches_only_streams_in_progress():
    flow = H2Flow()
    flow.feed(True, [CLIENT_START + headers(1, GET_ROOT, end_stream=True)], 1.0)
    flow.note_at(True, 3, ("tcp_overlap_conflict",))  # stream 1's request is over: counted only
    flow.feed(True, [headers(3, req_block("POST", "/up"))], 2.0)
    flow.note_at(True, 3, ("ip_ttl_changed",))  # stream 3's request is in progress
    flow.note_at(True, 10_000, ("tcp_bad_checksum",))  # not delivered yet: the next message
    flow.feed(True, [data(3, b"x", end_stream=True)], 3.0)
    flow.feed(False, [SERVER_START + headers(1, resp_block(200), end_stream=True)
                      + headers(3, resp_block(200), end_stream=True)], 4.0)
    got = {t.stream_id: sorted(t.anomalies) for t in flow.take()}
    assert {1: [], 3: ["ip_ttl_changed", "tcp_bad_checksum"]} == got
