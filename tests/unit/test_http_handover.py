"""HttpSession handing the connection over (sniffd.handover): an HTTP/1.1
request with ``Upgrade: h2c`` answered ``101`` makes ``successor`` "h2c", and
``hand_over()`` gives the request, the 101 and every byte after the two heads,
in order, none lost, however the segments were cut.

A case is a list of steps (``C``/``S``: bytes from the client/server, ``gap``:
bytes lost) fed as the flow table feeds a session; as soon as ``successor`` is
set after a step, ``hand_over()`` is called and that step's rest and every
later step go to a recorder standing for the successor.  Every case is replayed
with each data step cut in two at every offset, and byte at a time.  Expected
values are the bytes the test wrote.
"""

from __future__ import annotations

import pytest

from sniffd.budget import Meter
from sniffd.http import HttpSession
from sniffd.http.reader import HOLD_BYTES

UPGRADE_REQ = (b"GET /x HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
# Stand-ins for the HTTP/2 bytes: the session never reads them, so any bytes
# do; these would break an HTTP/1 reader that did.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CLIENT_H2 = PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SERVER_H2 = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + b"\x00\x00\x03\x01\x05\x00\x00\x00\x01\x88\x0f\x10"
MORE_SERVER = b"\x00\x00\x02\x00\x01\x00\x00\x00\x01hi"


def C(data: bytes) -> tuple:
    return ("data", True, data)


def S(data: bytes) -> tuple:
    return ("data", False, data)


def gap(from_client: bool, n: int) -> tuple:
    return ("gap", from_client, n)


class Successor:
    """Stands for the session the flow table would make: records what it is fed."""

    def __init__(self) -> None:
        self.got = {True: [], False: []}  # bytes (joined runs) and ints (gaps), in order
        self.ts = {True: [], False: []}  # the time of each bytes run

    def feed(self, from_client: bool, chunks, now: float, ack=None) -> None:
        out = self.got[from_client]
        for c in chunks:
            if c.__class__ is int:
                out.append(c)
                continue
            data, ts = (c, now) if c.__class__ is bytes else (c[0], c[1])
            if out and out[-1].__class__ is bytes:
                out[-1] += data
            else:
                out.append(bytes(data))
                self.ts[from_client].append(ts)

    def note(self, from_client: bool, names) -> None:
        self.got[from_client].append(("note", tuple(sorted(names))))


def replay(steps, meter: Meter | None = None):
    """Feed the steps (time = step index); returns (session, handover or None,
    the successor's recorder, the transactions taken, in order)."""
    session = HttpSession(meter=meter)
    succ = Successor()
    handover = None
    taken = []
    for t, (kind, side, value) in enumerate(steps):
        target = session if handover is None else succ
        if kind == "data":
            target.feed(side, [value], float(t))
        else:
            target.feed(side, [value], float(t))
        if handover is None and session.successor is not None:
            handover = session.hand_over()
            for name, args in handover.calls:
                getattr(succ, name)(*args)
        taken += session.take()
    if handover is None:
        session.close(None, float(len(steps)))
        taken += session.take()
    return session, handover, succ, taken


def variants(steps):
    """The steps as given, each data step cut in two at every offset, and every
    data step byte at a time."""
    yield steps
    for i, (kind, side, value) in enumerate(steps):
        if kind != "data":
            continue
        for k in range(1, len(value)):
            yield steps[:i] + [("data", side, value[:k]), ("data", side, value[k:])] + steps[i + 1:]
    one = []
    for kind, side, value in steps:
        one += [("data", side, value[k:k + 1]) for k in range(len(value))] if kind == "data" else [(kind, side, value)]
    yield one


def outcome(steps):
    session, ho, succ, taken = replay(steps)
    up = None if ho is None else ho.upgrade
    return {
        "successor": session.successor,
        "upgrade": None if up is None else (up.request.method, up.request.uri, up.request.headers.get("upgrade"),
                                            up.switching.status, up.switching.reason, up.depth),
        "client": succ.got[True],
        "server": succ.got[False],
        "records": [(t.depth, t.request.uri if t.request else None, t.response.status if t.response else None,
                     sorted(t.anomalies)) for t in taken],
    }


def check_every_cut(steps, expected):
    for v in variants(steps):
        assert expected == outcome(v), [len(s[2]) if s[0] == "data" else s for s in v]


# ------------------------------------------------------------------ cases


def test_h2c_upgrade_hands_over_every_byte_after_both_heads():
    steps = [C(UPGRADE_REQ), S(SWITCHING + SERVER_H2), C(CLIENT_H2), S(MORE_SERVER)]
    check_every_cut(steps, {
        "successor": "h2c",
        "upgrade": ("GET", "/x", "h2c", 101, "Switching Protocols", 1),
        "client": [CLIENT_H2],
        "server": [SERVER_H2 + MORE_SERVER],
        "records": [],  # the request is stream 1's: the HTTP/2 session writes it
    })


def test_client_preface_in_the_request_segment_is_handed_over_too():
    """A client that does not wait for the 101 (RFC 7540 section 3.2 says it
    must): its HTTP/2 bytes were held after the request, and are not lost."""
    steps = [C(UPGRADE_REQ + CLIENT_H2), S(SWITCHING + SERVER_H2)]
    check_every_cut(steps, {
        "successor": "h2c",
        "upgrade": ("GET", "/x", "h2c", 101, "Switching Protocols", 1),
        "client": [CLIENT_H2],
        "server": [SERVER_H2],
        "records": [],
    })


def test_earlier_exchange_is_written_and_the_upgrade_takes_the_next_depth():
    steps = [C(b"GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n"), S(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
             C(UPGRADE_REQ), S(SWITCHING + SERVER_H2)]
    check_every_cut(steps, {
        "successor": "h2c",
        "upgrade": ("GET", "/x", "h2c", 101, "Switching Protocols", 2),
        "client": [],
        "server": [SERVER_H2],
        "records": [(1, "/a", 200, [])],
    })


def test_a_declined_h2c_upgrade_stays_http1():
    steps = [C(UPGRADE_REQ), S(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
             C(b"GET /b HTTP/1.1\r\nHost: example.test\r\n\r\n"), S(b"HTTP/1.1 204 No Content\r\n\r\n")]
    check_every_cut(steps, {
        "successor": None, "upgrade": None, "client": [], "server": [],
        "records": [(1, "/x", 200, []), (2, "/b", 204, [])],
    })


@pytest.mark.parametrize("asked, answered, successor", [
    (b"h2c", b"Upgrade: H2C\r\n", "h2c"),  # tokens are case-insensitive (RFC 9110 section 7.8)
    (b"websocket, h2c", b"Upgrade: h2c\r\n", "h2c"),
    (b"h2c", b"", "h2c"),  # no Upgrade in the 101 (servers must send one): what was asked, if only h2c
    # ... and not when two were: which one is unknown.  Every other switch goes
    # to the TLS watch (sniffd.tls.starttls: a TLS hello may follow), not to HTTP/2.
    (b"websocket, h2c", b"", "tls"),
    (b"websocket", b"Upgrade: websocket\r\n", "tls"),
    (b"h2c", b"Upgrade: websocket\r\n", "tls"),  # not what was asked: not read as HTTP/2
])
def test_only_a_101_switching_to_h2c_hands_over_to_http2(asked, answered, successor):
    req = b"GET /x HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: " + asked + b"\r\n\r\n"
    _, ho, _, taken = replay([C(req), S(b"HTTP/1.1 101 Switching Protocols\r\n" + answered + b"\r\n" + SERVER_H2)])
    # Not to HTTP/2, the 101 is logged as any other switch (http_upgrade), as before.
    want_taken = [] if successor == "h2c" else [("/x", 101, ["http_upgrade"])]
    assert (successor, want_taken) == (None if ho is None else ho.protocol,
                                       [(t.request.uri, t.response.status, sorted(t.anomalies)) for t in taken])


def test_a_101_without_an_upgrade_request_goes_to_the_tls_watch_not_http2():
    _, ho, _, taken = replay([C(b"GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n"), S(SWITCHING + SERVER_H2)])
    assert ("tls", "http", [("/x", 101, ["http_upgrade"])]) == (
        ho.protocol, ho.starttls, [(t.request.uri, t.response.status, sorted(t.anomalies)) for t in taken])


def test_a_gap_after_the_switch_is_handed_over_in_its_place():
    steps = [C(UPGRADE_REQ), S(SWITCHING + SERVER_H2), gap(False, 7), S(MORE_SERVER), C(CLIENT_H2)]
    _, ho, succ, _ = replay(steps)
    assert ("h2c", [SERVER_H2, 7, MORE_SERVER], [CLIENT_H2]) == (ho.protocol, succ.got[False], succ.got[True])


def test_server_bytes_after_the_101_are_not_bounded_by_the_hold():
    """A reassembled run can hold the 101 and far more than the 64 KiB an
    HTTP/1 hold keeps: all of it is the successor's, none counted lost."""
    big = bytes(range(256)) * (HOLD_BYTES // 256 + 40)
    _, ho, succ, _ = replay([C(UPGRADE_REQ), S(SWITCHING + big)])
    assert [big] == succ.got[False]


def test_client_bytes_held_past_the_hold_bound_are_handed_over_as_lost():
    """The client's bytes waiting for the answer are held at most HOLD_BYTES
    (the memory bound of a hold); the rest is a gap for the successor."""
    early = b"x" * (HOLD_BYTES + 100)
    _, ho, succ, _ = replay([C(UPGRADE_REQ + early), S(SWITCHING)])
    assert [early[:HOLD_BYTES], 100] == succ.got[True]


def test_a_gap_in_the_held_client_bytes_loses_what_was_held_before_it():
    """A gap while the client's bytes are held starts the hold again (what an
    HTTP/1 release needs); the successor gets the bytes before it as lost, so
    the offsets stay exact.  (Real clients send nothing before the 101.)"""
    steps = [C(UPGRADE_REQ + b"abc"), gap(True, 5), C(b"def"), S(SWITCHING)]
    _, ho, succ, _ = replay(steps)
    assert [8, b"def"] == succ.got[True]


def test_handed_over_bytes_keep_their_time():
    steps = [C(UPGRADE_REQ), S(SWITCHING + SERVER_H2), S(MORE_SERVER)]
    _, _, succ, _ = replay(steps)
    assert [1.0] == succ.ts[False]  # the run began with the 101's segment (step 1)
    _, _, succ, _ = replay([C(UPGRADE_REQ), C(CLIENT_H2), S(SWITCHING)])
    assert [1.0] == succ.ts[True]


def test_anomalies_waiting_for_the_next_message_go_to_the_successor():
    session = HttpSession()
    session.feed(True, [UPGRADE_REQ], 0.0)
    session.note(True, ("tcp_overlap_conflict",))  # no request in progress: for the next one
    session.feed(False, [SWITCHING + SERVER_H2], 1.0)
    ho = session.hand_over()
    assert ("note", (True, frozenset({"tcp_overlap_conflict"}))) == ho.calls[0]


def test_hand_over_leaves_the_meter_as_it_was_before_the_session():
    meter = Meter()
    session, ho, _, taken = replay([C(UPGRADE_REQ + b"early"), S(SWITCHING + SERVER_H2)], meter)
    assert (0, "h2c") == (meter.http_bytes, ho.protocol)


def test_bytes_after_any_101_in_a_chunk_longer_than_a_head_are_all_handed_over():
    """The same for a 101 to websocket (to the TLS watch): a chunk longer than
    max_header_bytes is parsed in parts, and every part after the switch is
    the successor's (with readers switched off, the parts after the first were
    once dropped)."""
    big = bytes(range(256)) * (HOLD_BYTES // 256 + 40)
    req = b"GET /ws HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    _, ho, succ, _ = replay([C(req), S(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n" + big)])
    assert ("tls", [big]) == (ho.protocol, succ.got[False])


def test_the_switch_marker_waits_in_pairing_done_and_is_never_taken():
    """sniffd.handover: with successor set, SWITCH is in pairing.done (where the
    flow table looks after every call); take() gives the transactions without
    it, hand_over() takes it out."""
    from sniffd.handover import SWITCH

    session = HttpSession()
    session.feed(True, [b"GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n" + UPGRADE_REQ], 0.0)
    session.feed(False, [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" + SWITCHING + SERVER_H2], 1.0)
    assert ("h2c", True) == (session.successor, SWITCH in session.pairing.done)
    assert ["/a"] == [t.request.uri for t in session.take()]
    assert [] == session.take()
    session.hand_over()
    assert [] == session.pairing.done
