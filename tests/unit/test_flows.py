"""The flow table (sniffd.flows.FlowTable): decoded segments in, transactions
out, simulated time; the rules are those of sniffd/flows.py's module docstring.

Each case is a list of steps, each an operation and the transactions it returns:
``Feed`` (``FlowTable.feed`` of one segment at ``now``), ``Expire``
(``FlowTable.expire``) or ``CloseAll`` (``FlowTable.close_all(None, now)``).  A
transaction is compared as a ``T``: its request line, response status, trans_depth,
end_reason, anomalies and time (its first byte's capture time).  ``counts`` is the
table's whole ``counts`` after the last step.

Segments are built with tests/craft.py's TcpConversation (sequence and
acknowledgement numbers kept right) and turned into ``sniffd.decode.Segment``
tuples with their checksum verdict (1 valid, 0 wrong) and TTL.  Times are plain
floats from 0.
"""

from __future__ import annotations

import gc
import ipaddress
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import craft
import h2craft
import pytest
from craft import ACK, FIN, PSH, RST, SYN, URG, TcpConversation

from sniffd import flows
from sniffd.causal import CausalHold
from sniffd.decode import Segment
from sniffd.flows import FlowTable
from sniffd.http import HttpSession
from sniffd.reassembly import FIN_WINDOW, HalfStream
from sniffd.settings import Settings

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 80)
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def request(path: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: example.test\r\n\r\n" % path.encode()


class T(NamedTuple):
    """A transaction as compared: ``line`` "METHOD uri" (None: no request),
    ``status`` (None: no response)."""

    line: str | None
    status: int | None
    depth: int
    ts: float
    anomalies: tuple = ()
    end: str = "complete"


def view(txn) -> T:
    req, resp = txn.request, txn.response
    return T(
        None if req is None else f"{req.method} {req.uri}",
        None if resp is None else resp.status,
        txn.depth,
        txn.ts,
        tuple(sorted(txn.anomalies)),
        txn.end_reason or "complete",
    )


@dataclass(frozen=True)
class Feed:
    seg: Segment
    now: float


@dataclass(frozen=True)
class Expire:
    now: float


@dataclass(frozen=True)
class CloseAll:
    now: float


def wire(s: craft.Segment, *, csum: int | None = None, lost: int = 0) -> Segment:
    """The decoded form of a crafted segment: its TTL, its checksum verdict (1,
    or 0 for ``bad_checksum``, unless ``csum`` says), no encapsulation."""
    return Segment(
        ipaddress.ip_address(s.src).packed, ipaddress.ip_address(s.dst).packed, s.sport, s.dport, s.seq,
        s.ack if s.flags & ACK else 0, s.flags, s.payload, lost, s.ttl,
        (0 if s.bad_checksum else 1) if csum is None else csum, None,
    )  # fmt: skip


class Steps:
    """A case's steps, written as they happen: ``at(now, *segments)`` feeds them
    (each returns nothing unless ``out`` is given for the last one)."""

    def __init__(self, client=CLIENT, server=SERVER) -> None:
        self.c = TcpConversation(client, server)
        self.steps: list[tuple[object, list[T]]] = []

    def at(self, now: float, *segs: craft.Segment | Segment, out: list[T] | None = None) -> None:
        for i, s in enumerate(segs):
            seg = wire(s) if isinstance(s, craft.Segment) else s
            self.steps.append((Feed(seg, now), (out or []) if i == len(segs) - 1 else []))

    def expire(self, now: float, out: list[T] | None = None) -> None:
        self.steps.append((Expire(now), out or []))

    def close_all(self, now: float, out: list[T] | None = None) -> None:
        self.steps.append((CloseAll(now), out or []))

    def handshake(self, now: float = 0.0) -> None:
        self.at(now, *self.c.handshake())

    def exchange(self, now: float, path: str, out: list[T]) -> None:
        """A GET of ``path`` at ``now``, its answer 5 ms later (returning ``out``),
        the client's ACK."""
        self.at(now, *self.c.client_data(request(path)))
        self.at(now + 0.005, *self.c.server_data(ANSWER), out=out)
        self.at(now + 0.006, self.c.client_ack())

    def forged(self, side: str, flags: int, seq: int) -> craft.Segment:
        """A segment without data from ``side`` at ``seq``, acknowledging what the
        peer sent; the conversation's numbers do not move."""
        seg = self.c.client_ack() if side == "client" else self.c.server_ack()
        return replace(seg, flags=flags, seq=seq % craft.SEQ_MOD)

    def next_seq(self, side: str) -> int:
        return (self.c.client_ack() if side == "client" else self.c.server_ack()).seq


@dataclass(frozen=True)
class Case:
    build: Callable[[], tuple[Steps, dict]]  # -> (steps, the table's counts at the end)
    settings: Settings = field(default_factory=Settings)

    @property
    def name(self) -> str:
        return self.build.__name__


# ------------------------------------------------------------ the first moments


def _midstream_exchange(s: Steps) -> None:
    """The conversation after its handshake (not captured): /a and its answer."""
    s.c.handshake()
    s.at(0.0, *s.c.client_data(request("/a")))
    s.at(0.01, *s.c.server_data(ANSWER))


PICKED_UP = T("GET /a", 200, 1, 0.0, ("midstream_pickup",))


def birth_hold_settles_at_the_sixteenth_packet():
    """No handshake: segments wait aside (a late SYN could still set the base)
    until the connection's 16th packet, which settles it as picked up mid-stream."""
    s = Steps()
    _midstream_exchange(s)
    for i in range(13):
        s.at(0.02 + i / 1000, s.c.client_ack())  # packets 3 to 15
    s.at(0.1, s.c.client_ack(), out=[PICKED_UP])  # packet 16
    return s, {"midstream_pickup": 1}


def answer_of(size: int) -> bytes:
    """A 200 answer of ``size`` bytes in all (head and Content-Length body)."""
    for digits in range(1, 7):
        body = size - len(b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n") - digits
        if len(str(body)) == digits:
            return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % body + b"x" * body
    raise AssertionError(size)


def birth_hold_settles_at_64_kib():
    """The 64 KiB kept aside are reached by the answer's last byte."""
    s = Steps()
    s.c.handshake()
    s.at(0.0, *s.c.client_data(request("/a")))
    s.at(0.5, *s.c.server_data(answer_of(flows.BIRTH_BYTES - len(request("/a")))), out=[PICKED_UP])
    return s, {"midstream_pickup": 1}


def birth_hold_below_64_kib_settles_after_one_second():
    s = Steps()
    s.c.handshake()
    s.at(0.0, *s.c.client_data(request("/a")))
    s.at(0.5, *s.c.server_data(answer_of(flows.BIRTH_BYTES - 1 - len(request("/a")))))
    s.expire(0.999)
    s.expire(1.0, out=[PICKED_UP])
    return s, {"midstream_pickup": 1}


def birth_hold_base_is_the_lowest_sequence_number():
    """The request's second segment is captured first: the stream starts at the
    lowest sequence number seen, so the first segment is not lost.  (The first
    segment holds the whole request line: mid-stream, a line that a later
    segment completes takes that segment's time, an HTTP-stage matter.)"""
    s = Steps()
    s.c.handshake()
    head, tail = s.c.client_data(request("/a"), [20])
    s.at(0.0, tail)
    s.at(0.001, head)
    s.at(0.01, *s.c.server_data(ANSWER))
    s.expire(1.0, out=[T("GET /a", 200, 1, 0.001, ("midstream_pickup",))])
    return s, {"midstream_pickup": 1}


def late_handshake_sets_the_bases():
    """The request and its answer are captured before the handshake: the SYN sets
    the client's base, the SYN-ACK the server's; what was kept aside is then
    delivered, and nothing is mid-stream."""
    s = Steps()
    syn, syn_ack, ack = s.c.handshake()
    s.at(0.0, *s.c.client_data(request("/a")))
    s.at(0.001, *s.c.server_data(ANSWER))
    s.at(0.002, syn)
    s.at(0.003, syn_ack, out=[T("GET /a", 200, 1, 0.0)])
    s.at(0.004, ack)
    return s, {}


def late_syn_sets_the_roles():
    """The client's port is 8080, the server's 50000: the ports say the wrong
    side is the server, until the SYN (captured after the request) says otherwise."""
    s = Steps(client=("10.0.0.1", 8080), server=("10.0.0.2", 50000))
    syn, syn_ack, ack = s.c.handshake()
    s.at(0.0, *s.c.client_data(request("/a")))
    s.at(0.001, syn)
    s.at(0.002, syn_ack, ack)
    s.at(0.005, *s.c.server_data(ANSWER), out=[T("GET /a", 200, 1, 0.0)])
    return s, {}


def syn_ack_alone_gives_both_bases():
    """The SYN was not captured: the SYN-ACK's ack is the client's ISN + 1, so the
    connection is settled at once (the answer gives its transaction then)."""
    s = Steps()
    _syn, syn_ack, ack = s.c.handshake()
    s.at(0.0, syn_ack, ack)
    s.at(0.002, *s.c.client_data(request("/a")))
    s.at(0.003, *s.c.server_data(ANSWER), out=[T("GET /a", 200, 1, 0.002)])
    return s, {}


# ------------------------------------------------------------------------ RST

BODY20 = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n"  # + 20 body bytes


def _rst_window(rel: int, accepted: bool):
    """/a is answered by a 20-byte body: the head (39 bytes, delivered: next = 39),
    body bytes 5..10 out of order (high = 49), then an RST from the server at
    stream offset ``rel``.  Accepted: /a is written at once, its answer cut
    (5 bytes lost, 5 seen).  Ignored: on /a, whose answer then completes."""
    s = Steps()
    s.handshake()
    s.at(0.01, *s.c.client_data(request("/a")))
    head, lost, held, rest = s.c.server_data(BODY20 + b"0123456789abcdefghij", [39, 5, 5])
    s.at(0.02, head)
    s.at(0.021, held)
    base = head.seq  # the answer's stream offset 0 (the server's ISN + 1)
    cut = T("GET /a", 200, 1, 0.01, ("body_gap", "message_incomplete", "tcp_gap"), "rst")
    s.at(0.03, s.forged("server", RST | ACK, base + rel), out=[cut] if accepted else [])
    if not accepted:
        s.at(0.04, lost)
        s.at(0.041, rest, out=[T("GET /a", 200, 1, 0.01, ("tcp_rst_ignored",))])
    return s, {"tcp_gap": 1} if accepted else {"tcp_rst_ignored": 1}


def rst_one_before_the_next_byte_is_ignored():
    return _rst_window(38, accepted=False)


def rst_at_exactly_the_next_byte_is_accepted():
    return _rst_window(39, accepted=True)


def rst_at_exactly_the_furthest_byte_sent_is_accepted():
    return _rst_window(49, accepted=True)


def rst_one_past_the_furthest_byte_sent_is_ignored():
    return _rst_window(50, accepted=False)


def rst_far_ahead_is_ignored():
    return _rst_window(1 << 30, accepted=False)


def _rst_acked(unseen: int, extra: int, accepted: bool):
    """The server's answer head (39 bytes) is captured; the client acknowledges
    ``unseen`` bytes more, never captured; then an RST from the server at 39 +
    ``extra``.  What the receiver acknowledged widens the window, but only as far
    as a sender could have sent unseen (FIN_WINDOW past what it was seen to
    send): further is no acknowledgement a receiver sends (RFC 9293: an ACK of
    bytes not yet sent is dropped), and two blind packets (an ACK and an RST at
    the same random number) must not end the connection."""
    s = Steps()
    s.handshake()
    s.at(0.01, *s.c.client_data(request("/a")))
    head, _lost = s.c.server_data(BODY20 + b"0123456789", [39])
    s.at(0.02, head)
    s.at(0.021, replace(s.c.client_ack(), ack=(head.next_seq + unseen) % craft.SEQ_MOD))
    rst = s.forged("server", RST | ACK, head.next_seq + extra)
    if accepted:
        s.at(0.03, rst, out=[T("GET /a", 200, 1, 0.01, ("message_incomplete",), "rst")])
        return s, {}
    s.at(0.03, rst)
    s.close_all(0.04, out=[T("GET /a", 200, 1, 0.01, ("message_incomplete", "tcp_rst_ignored"), "end_of_input")])
    return s, {"tcp_rst_ignored": 1}


def rst_at_exactly_what_the_peer_acknowledged_is_accepted():
    return _rst_acked(10, 10, accepted=True)


def rst_one_past_what_the_peer_acknowledged_is_ignored():
    return _rst_acked(10, 11, accepted=False)


def rst_at_an_acknowledgement_a_window_past_what_was_sent_is_accepted():
    return _rst_acked(FIN_WINDOW, FIN_WINDOW, accepted=True)


def rst_at_an_acknowledgement_further_than_a_window_is_ignored():
    return _rst_acked(FIN_WINDOW + 1, FIN_WINDOW + 1, accepted=False)


def rst_at_a_random_acknowledgement_is_ignored():
    return _rst_acked(0x40000000, 0x40000000, accepted=False)


def _refused(ack_extra: int, accepted: bool):
    """A SYN, then an RST|ACK from the server, which never sent a SYN-ACK: it must
    acknowledge the SYN (RFC 9293, SYN-SENT: the client drops any other)."""
    s = Steps()
    syn = s.c.syn()
    s.at(0.0, syn)
    s.at(0.001, craft.Segment(*SERVER, *CLIENT, 0, (syn.next_seq + ack_extra) % craft.SEQ_MOD, RST | ACK))
    s.close_all(0.002)
    return s, {} if accepted else {"tcp_rst_ignored": 1}


def rst_ack_acknowledging_the_syn_refuses_the_connection():
    return _refused(0, accepted=True)


def rst_ack_not_acknowledging_the_syn_is_ignored():
    return _refused(1000, accepted=False)


def refused_connection_retried_at_once_is_a_new_connection():
    """The refusal ends the young connection at once: a SYN with another ISN a
    millisecond later starts a new one (no tcp_syn_ignored)."""
    s = Steps()
    syn = s.c.syn()
    s.at(0.0, syn)
    s.at(0.001, craft.Segment(*SERVER, *CLIENT, 0, syn.next_seq, RST | ACK))
    s.c = TcpConversation(CLIENT, SERVER, client_isn=5_000_000, server_isn=7_000_000)
    s.handshake(0.002)
    s.exchange(0.01, "/a", out=[T("GET /a", 200, 1, 0.01)])
    return s, {}


def data_after_an_accepted_rst_is_logged_and_flagged():
    s = Steps()
    s.handshake()
    s.exchange(0.01, "/a", out=[T("GET /a", 200, 1, 0.01)])
    s.at(0.02, s.c.client_rst())
    s.exchange(0.03, "/b", out=[T("GET /b", 200, 1, 0.03, ("tcp_data_after_rst",))])
    s.exchange(0.04, "/c", out=[T("GET /c", 200, 2, 0.04, ("tcp_data_after_rst",))])
    return s, {}


# ------------------------------------------------------------------------ FIN


def _server_fin(rel: int, accepted_at_next: bool, ignored: bool):
    """/a waits for its answer (the server sent nothing: next = high = 0); a FIN
    from the server at stream offset ``rel``; then the client's FIN.  A FIN at the
    next byte finishes the server's direction, so the client's FIN ends the
    connection; a FIN further ahead (inside the window) is accepted but waits for
    the bytes before it; an ignored one changes nothing (on /a)."""
    s = Steps()
    s.handshake()
    s.at(0.01, *s.c.client_data(request("/a")))
    s.at(0.02, s.forged("server", FIN | ACK, s.next_seq("server") + rel))
    if accepted_at_next:
        s.at(0.03, s.c.client_fin(), out=[T("GET /a", None, 1, 0.01, ("response_missing",), "fin")])
        return s, {}
    s.at(0.03, s.c.client_fin())
    names = ("response_missing", "tcp_fin_ignored") if ignored else ("response_missing",)
    s.close_all(0.04, out=[T("GET /a", None, 1, 0.01, names, "end_of_input")])
    return s, {"tcp_fin_ignored": 1} if ignored else {}


def fin_one_before_the_next_byte_is_ignored():
    return _server_fin(-1, accepted_at_next=False, ignored=True)


def fin_at_the_next_byte_ends_the_direction():
    return _server_fin(0, accepted_at_next=True, ignored=False)


def fin_at_the_edge_of_the_window_is_accepted():
    return _server_fin(FIN_WINDOW, accepted_at_next=False, ignored=False)


def fin_one_past_the_window_is_ignored():
    return _server_fin(FIN_WINDOW + 1, accepted_at_next=False, ignored=True)


# ------------------------------------------------------------------------ SYN


def syn_with_another_isn_is_ignored():
    s = Steps()
    s.handshake()
    s.exchange(0.01, "/a", out=[T("GET /a", 200, 1, 0.01)])
    s.at(0.02, craft.Segment(*CLIENT, *SERVER, 0x12345678, 0, SYN))
    s.at(0.021, s.c.server_ack())  # the challenge ACK
    s.exchange(0.03, "/b", out=[T("GET /b", 200, 2, 0.03, ("tcp_syn_ignored",))])
    return s, {"tcp_syn_ignored": 1}


def syn_retransmitted_with_the_same_isn_is_nothing():
    s = Steps()
    syn, syn_ack, ack = s.c.handshake()
    s.at(0.0, syn, syn_ack, ack)
    s.exchange(0.01, "/a", out=[T("GET /a", 200, 1, 0.01)])
    s.at(0.02, syn)
    s.exchange(0.03, "/b", out=[T("GET /b", 200, 2, 0.03)])
    return s, {}


def syn_answered_by_a_syn_ack_means_reused():
    """/a waits; a SYN with another ISN, and the server's SYN-ACK acknowledges it:
    once the client's ACK goes on with the new numbers, the old connection is
    written (reused) and the new one is logged from trans_depth 1.  One SYN-ACK
    alone does not decide it (a blind attacker can send one).  The SYN was not
    ignored: nothing counts it."""
    s = Steps()
    s.handshake()
    s.at(0.01, *s.c.client_data(request("/a")))
    s.c = TcpConversation(CLIENT, SERVER, client_isn=0x12345678, server_isn=0x23456789)
    syn, syn_ack, ack = s.c.handshake()
    s.at(0.5, syn)
    s.at(0.501, syn_ack)
    s.at(0.502, ack, out=[T("GET /a", None, 1, 0.01, ("response_missing",), "reused")])
    s.exchange(0.51, "/b", out=[T("GET /b", 200, 1, 0.51)])
    return s, {}


def syn_ack_not_acknowledging_the_new_syn_is_ignored():
    """After the SYN with another ISN, a SYN-ACK with another ISN that does not
    acknowledge it: ignored too (on /a, which waits for its answer)."""
    s = Steps()
    s.handshake()
    s.at(0.01, *s.c.client_data(request("/a")))
    s.at(0.02, craft.Segment(*CLIENT, *SERVER, 0x12345678, 0, SYN))
    s.at(0.021, craft.Segment(*SERVER, *CLIENT, 0x23456789, 0x12345678, SYN | ACK))
    s.at(0.03, *s.c.server_data(ANSWER), out=[T("GET /a", 200, 1, 0.01, ("tcp_syn_ignored",))])
    return s, {"tcp_syn_ignored": 2}


# ------------------------------------------------------------------- SYN data


def syn_data_without_fast_open_is_dropped():
    s = Steps()
    syn, syn_ack, ack = s.c.handshake()
    s.at(0.0, replace(syn, payload=request("/decoy")), syn_ack, ack)
    s.exchange(0.01, "/a", out=[T("GET /a", 200, 1, 0.01, ("tcp_syn_data",))])
    return s, {"tcp_syn_data": 1}


def syn_data_with_fast_open_is_the_request():
    s = Steps()
    s.at(0.0, s.c.syn(request("/tfo")), s.c.syn_ack(), s.c.client_ack())
    s.at(0.005, *s.c.server_data(ANSWER), out=[T("GET /tfo", 200, 1, 0.0)])
    return s, {}


def syn_data_without_a_syn_ack_is_dropped_when_the_connection_settles():
    """The SYN-ACK was not captured: after the birth wait, nothing took the SYN's
    data; the client's request at ISN + 1 is the one logged."""
    s = Steps()
    syn, _syn_ack, ack = s.c.handshake()
    s.at(0.0, replace(syn, payload=request("/decoy")), ack)
    s.at(0.01, *s.c.client_data(request("/a")))
    s.at(0.015, *s.c.server_data(ANSWER))
    s.expire(1.0, out=[T("GET /a", 200, 1, 0.01, ("tcp_syn_data",))])
    return s, {"tcp_syn_data": 1}


# --------------------------------------------------------------------- decoys


def _ttl(ttl: int, flagged: bool):
    """/a at TTL 64 (the reference), /b at ``ttl``."""
    s = Steps()
    s.handshake()
    s.exchange(0.01, "/a", out=[T("GET /a", 200, 1, 0.01)])
    (b,) = s.c.client_data(request("/b"))
    s.at(0.02, replace(b, ttl=ttl))
    s.at(0.025, *s.c.server_data(ANSWER), out=[T("GET /b", 200, 2, 0.02, ("ip_ttl_changed",) if flagged else ())])
    return s, {"ip_ttl_changed": 1} if flagged else {}


def ttl_8_below_the_reference_is_not_flagged():
    return _ttl(56, flagged=False)


def ttl_9_below_the_reference_is_flagged():
    return _ttl(55, flagged=True)


def ttl_9_above_the_reference_is_flagged():
    return _ttl(73, flagged=True)


def ttl_reference_is_the_first_data_segment_not_the_handshake():
    """A SYN proxy answered the handshake with TTL 128; the data then comes with
    TTL 64 both ways: nothing is flagged."""
    s = Steps()
    syn, syn_ack, ack = s.c.handshake()
    s.at(0.0, replace(syn, ttl=128), replace(syn_ack, ttl=128), ack)
    s.exchange(0.01, "/a", out=[T("GET /a", 200, 1, 0.01)])
    return s, {}


def ttl_decoy_copying_a_request_is_flagged_on_it():
    """The real /b, then a TTL-1 copy of its bytes with others: both anomalies on
    /b, none on /c."""
    s = Steps()
    s.handshake()
    s.exchange(0.01, "/a", out=[T("GET /a", 200, 1, 0.01)])
    (b,) = s.c.client_data(request("/b"))
    s.at(0.02, b, replace(b.with_payload(request("/x")), ttl=1))
    s.at(0.025, *s.c.server_data(ANSWER),
         out=[T("GET /b", 200, 2, 0.02, ("ip_ttl_changed", "tcp_overlap_conflict"))])  # fmt: skip
    s.at(0.026, s.c.client_ack())
    s.exchange(0.03, "/c", out=[T("GET /c", 200, 3, 0.03)])
    return s, {"ip_ttl_changed": 1, "tcp_overlap_conflict": 1}


def urgent_data_is_flagged():
    s = Steps()
    s.handshake()
    (a,) = s.c.client_data(request("/a"))
    s.at(0.01, replace(a, flags=a.flags | URG, urgent=1))
    s.at(0.015, *s.c.server_data(ANSWER), out=[T("GET /a", 200, 1, 0.01, ("tcp_urgent_data",))])
    return s, {"tcp_urgent_data": 1}


A_LEN = len(request("/a"))  # 39


def _chaff(valid_before: bool, chaff_len: int = 0):
    """Optionally /a with a valid checksum (39 bytes); then a copy of /b's range
    with other bytes and a wrong checksum (``chaff_len`` bytes of it, all by
    default), then the real /b."""
    s = Steps()
    s.handshake()
    if valid_before:
        s.exchange(0.01, "/a", out=[T("GET /a", 200, 1, 0.01)])
    (b,) = s.c.client_data(request("/bbbb"))
    chaff = replace(b.with_payload(request("/xxxx")), bad_checksum=True)
    if chaff_len:
        chaff = chaff.sub(0, chaff_len)
    s.at(0.02, chaff)
    s.at(0.021, b)
    return s, b


def bad_checksum_after_a_valid_one_is_dropped_under_auto():
    """/a showed a valid checksum on 39 bytes; the 39-byte chaff is checked."""
    s, _b = _chaff(valid_before=True, chaff_len=A_LEN)
    s.at(0.025, *s.c.server_data(ANSWER), out=[T("GET /bbbb", 200, 2, 0.021, ("tcp_bad_checksum",))])
    return s, {"tcp_bad_checksum": 1}


def bad_checksum_larger_than_the_valid_ones_is_still_checked_under_auto():
    """The 42-byte chaff is larger than the 39 bytes that showed a valid
    checksum, but not than a full segment (1,460 bytes): checked, kept aside,
    and the real /bbbb replaces it."""
    s, _b = _chaff(valid_before=True)
    s.at(0.025, *s.c.server_data(ANSWER), out=[T("GET /bbbb", 200, 2, 0.021, ("tcp_bad_checksum",))])
    return s, {"tcp_bad_checksum": 1}


LONG = "/" + "b" * 1500


def bad_checksum_on_a_super_segment_is_taken_under_auto():
    """A wrong checksum on a segment larger than a full one: a capture host's
    GRO/TSO super-segment, whose checksum its NIC fills in.  auto does not
    check it, even after valid ones: taken, the first copy."""
    s = Steps()
    s.handshake()
    s.exchange(0.01, "/a", out=[T("GET /a", 200, 1, 0.01)])
    (b,) = s.c.client_data(request(LONG))
    chaff_path = "/" + "x" * 1500
    s.at(0.02, replace(b.with_payload(request(chaff_path)), bad_checksum=True))
    s.at(0.021, b)
    s.at(0.025, *s.c.server_data(ANSWER), out=[T("GET " + chaff_path, 200, 2, 0.02, ("tcp_overlap_conflict",))])
    return s, {"tcp_overlap_conflict": 1}


JUMBO = "/" + "j" * 2960  # a 2,999-byte request: one segment on a 9000-byte MTU link


def bad_checksum_no_larger_than_a_valid_jumbo_segment_is_checked_under_auto():
    """A jumbo-frame link: /a, then a valid 2,999-byte segment (on the data
    fast path); a 1,539-byte copy of the next request's range with other
    bytes and a wrong checksum is larger than a 1,500-byte link's full
    segment but no larger than one this direction showed valid: checked,
    kept aside, and the real request replaces it.  (The fast path did not
    note the valid segment's size, so the chaff was taken as a super-segment.)"""
    s = Steps()
    s.handshake()
    s.exchange(0.01, "/a", out=[T("GET /a", 200, 1, 0.01)])
    s.exchange(0.02, JUMBO, out=[T("GET " + JUMBO, 200, 2, 0.02)])
    (b,) = s.c.client_data(request(LONG))
    s.at(0.03, replace(b.with_payload(request("/" + "x" * 1500)), bad_checksum=True))
    s.at(0.031, b)
    s.at(0.035, *s.c.server_data(ANSWER), out=[T("GET " + LONG, 200, 3, 0.031, ("tcp_bad_checksum",))])
    return s, {"tcp_bad_checksum": 1}


def bad_checksum_when_no_valid_one_came_from_that_side_is_taken_under_auto():
    """Every client packet has a wrong checksum, the handshake's too (the capture
    host offloads them): auto checks nothing from that side, and the chaff is
    the first copy."""
    s = Steps()
    syn, syn_ack, ack = s.c.handshake()
    s.at(0.0, replace(syn, bad_checksum=True), syn_ack, replace(ack, bad_checksum=True))
    (b,) = s.c.client_data(request("/bbbb"))
    s.at(0.02, replace(b.with_payload(request("/xxxx")), bad_checksum=True))
    s.at(0.021, replace(b, bad_checksum=True))
    s.at(0.025, *s.c.server_data(ANSWER), out=[T("GET /xxxx", 200, 1, 0.02, ("tcp_overlap_conflict",))])
    return s, {"tcp_overlap_conflict": 1}


def bad_checksum_is_dropped_under_on():
    s, _b = _chaff(valid_before=False)
    s.at(0.025, *s.c.server_data(ANSWER), out=[T("GET /bbbb", 200, 1, 0.021, ("tcp_bad_checksum",))])
    return s, {"tcp_bad_checksum": 1}


def bad_checksum_is_taken_under_off():
    s, _b = _chaff(valid_before=True, chaff_len=A_LEN)
    s.at(0.025, *s.c.server_data(ANSWER), out=[T("GET /xxxx", 200, 2, 0.02, ("tcp_overlap_conflict",))])
    return s, {"tcp_overlap_conflict": 1}


def bad_checksum_copy_of_a_written_request_goes_on_no_record():
    """/a is answered and written; then a copy of its bytes with others and a
    wrong checksum: dropped and counted, on no record (not on /b)."""
    s = Steps()
    s.handshake()
    (a,) = s.c.client_data(request("/a"))
    s.at(0.01, a)
    s.at(0.015, *s.c.server_data(ANSWER), out=[T("GET /a", 200, 1, 0.01)])
    s.at(0.016, replace(a.with_payload(request("/x")), bad_checksum=True))
    s.exchange(0.02, "/b", out=[T("GET /b", 200, 2, 0.02)])
    return s, {"tcp_bad_checksum": 1}


def fragment_overlap_noted_by_the_ip_stage_goes_on_the_next_request():
    """note_flow (the defragmenter dropped a datagram of this connection): on the
    request the client's direction carries next, /b (the retransmission)."""
    s = Steps()
    s.handshake()
    s.exchange(0.01, "/a", out=[T("GET /a", 200, 1, 0.01)])
    s.steps.append(("note_flow", []))
    s.exchange(0.2, "/b", out=[T("GET /b", 200, 2, 0.2, ("ip_fragment_overlap",))])
    return s, {}


# ------------------------------------------------------------- causal order


def answer_captured_before_its_request_waits_for_it():
    s = Steps()
    s.handshake()
    (a,) = s.c.client_data(request("/a"))
    s.at(0.01, *s.c.server_data(ANSWER))
    s.at(0.011, a, out=[T("GET /a", 200, 1, 0.011)])
    return s, {}


def answer_to_a_lost_request_waits_gap_timeout_then_the_request_is_lost():
    s = Steps()
    s.handshake()
    s.c.client_data(request("/a"))  # never captured
    s.at(0.5, *s.c.server_data(ANSWER))
    s.expire(10.499)
    s.expire(10.5, out=[T(None, 200, 1, 0.5, ("request_missing", "tcp_gap"))])
    return s, {"tcp_gap": 1}


def force_gives_up_first_the_wait_that_no_held_segment_can_end():
    """/1's answer is lost.  /2 (acknowledging that answer) waits for it; /2's
    answer (acknowledging /2) waits for /2.  Giving up /2's wait declares /1's
    answer lost; giving up the answer's would declare /2 lost although it is held.
    So /2 goes first, then its answer: /1 unanswered, /2 answered."""
    s = Steps()
    s.handshake()
    s.at(0.01, *s.c.client_data(request("/1")))
    s.c.server_data(ANSWER)  # never captured
    (two,) = s.c.client_data(request("/2"))
    s.at(0.5, *s.c.server_data(ANSWER))
    s.at(0.625, two)
    s.expire(10.499)
    s.expire(10.5, out=[T("GET /1", None, 1, 0.01, ("response_missing", "tcp_gap"), "gap"), T("GET /2", 200, 2, 0.625)])
    return s, {"tcp_gap": 1}


def gap_timeout_gives_up_only_the_waits_that_old():
    """/1's answer is lost; /2 (acknowledging it) waits from 0.02.  /3's
    answer is captured at 9.0, long before /3 (a slow tap): at 10.02 the
    gap timeout gives up /2's wait only; the answer's, 9 s young, waits on
    and /3 is paired with it when it comes."""
    s = Steps()
    s.handshake()
    s.at(0.01, *s.c.client_data(request("/1")))
    s.c.server_data(ANSWER)  # never captured
    (two,) = s.c.client_data(request("/2"))
    (a2,) = s.c.server_data(ANSWER)
    (three,) = s.c.client_data(request("/3"))
    (a3,) = s.c.server_data(ANSWER)
    s.at(0.02, two)
    s.at(0.03, a2)
    s.at(9.0, a3)
    s.expire(10.019)
    s.expire(10.02, out=[T("GET /1", None, 1, 0.01, ("response_missing", "tcp_gap"), "gap"), T("GET /2", 200, 2, 0.02)])
    s.at(10.5, three, out=[T("GET /3", 200, 3, 10.5)])
    return s, {"tcp_gap": 1}


def buffer_overflow_gives_up_waits_only_until_half_the_bound_is_held():
    """/1's answer is lost; /2, a 6,000-byte POST acknowledging it, is held
    until the connection's bound (4 KiB) is passed.  Giving up its wait
    frees enough; the wait of /3's answer (captured before /3) is kept, and
    /3 is paired with it when it comes."""
    s = Steps()
    s.handshake()
    s.at(0.01, *s.c.client_data(request("/1")))
    s.c.server_data(ANSWER)  # never captured
    post = s.c.client_data(b"POST /2 HTTP/1.1\r\nHost: example.test\r\nContent-Length: 6000\r\n\r\n" + b"p" * 6000, [1000] * 6)
    (a2,) = s.c.server_data(ANSWER)
    (three,) = s.c.client_data(request("/3"))
    (a3,) = s.c.server_data(ANSWER)
    s.at(0.02, a3)
    s.at(0.03, *post)
    s.at(0.04, a2, out=[T("GET /1", None, 1, 0.01, ("response_missing", "tcp_gap"), "gap"), T("POST /2", 200, 2, 0.03)])
    s.at(0.05, three, out=[T("GET /3", 200, 3, 0.05)])
    return s, {"tcp_gap": 1, "tcp_buffer_overflow": 1}


def exchange_lost_both_ways_keeps_its_number():
    """/2 and its answer are both lost, each exactly between messages: the
    client's next request line begins where the lost bytes end, so a request
    was there.  /3 keeps number 3 and carries nothing of the loss."""
    s = Steps()
    s.handshake()
    s.exchange(0.01, "/1", [T("GET /1", 200, 1, 0.01)])
    s.c.client_data(request("/2"))  # never captured
    s.c.server_data(ANSWER)  # never captured
    s.exchange(0.1, "/3", [])
    s.expire(10.2, out=[T("GET /3", 200, 3, 0.1)])  # the hold gives up the lost bytes
    return s, {"tcp_gap": 2}


def _pipelined_pair_lost_in_part() -> Steps:
    """/1 answered; /2 and /3 pipelined; /2 and its answer lost, /3's answer captured."""
    s = Steps()
    s.handshake()
    s.exchange(0.01, "/1", [T("GET /1", 200, 1, 0.01)])
    s.c.client_data(request("/2"))  # never captured
    s.at(0.1, *s.c.client_data(request("/3")))
    s.c.server_data(ANSWER)  # never captured
    s.at(0.105, *s.c.server_data(ANSWER))
    s.at(0.106, s.c.client_ack())
    return s


def pipelined_pair_lost_in_part_is_numbered_once():
    """/2 and /3 are pipelined; /2 and its answer are lost.  Which request
    the one answer seen belongs to is not decided (a 38-byte loss could hold
    two answers): both are written flagged.  /4 still gets number 4: the
    answer written alone took the lost request's number."""
    s = _pipelined_pair_lost_in_part()
    s.at(0.2, *s.c.client_data(request("/4")))
    s.at(0.205, *s.c.server_data(ANSWER), out=[])
    s.at(0.206, s.c.client_ack())
    s.expire(10.2, out=[
        T(None, 200, 2, 0.105, ("pairing_uncertain",)),
        T("GET /3", None, 3, 0.1, ("pairing_uncertain", "response_missing"), "gap"),
        T("GET /4", 200, 4, 0.2),
    ])
    return s, {"tcp_gap": 2}


def _batch_lost_with_the_first_answer(answer_two: bytes, sizes: list[int] | None, kept: slice):
    """/1 answered; /2, /3, /4 sent in one segment that is lost; the start of
    /2's answer is lost (``kept``: which of its segments were captured); the
    answers to /3 and /4 are captured, then /5 and its answer."""
    s = Steps()
    s.handshake()
    s.exchange(0.01, "/1", [T("GET /1", 200, 1, 0.01)])
    s.c.client_data(request("/2") + request("/3") + request("/4"))  # never captured
    two = s.c.server_data(answer_two, sizes)
    s.at(0.1, *two[kept])
    s.at(0.11, *s.c.server_data(ANSWER))
    s.at(0.12, *s.c.server_data(ANSWER))
    s.at(0.13, s.c.client_ack())
    s.exchange(0.2, "/5", [])
    lost = ("request_missing", "tcp_gap")
    s.expire(10.2, out=[T(None, 200, 3, 0.11, lost), T(None, 200, 4, 0.12, lost), T("GET /5", 200, 5, 0.2)])
    return s


def answers_to_lost_requests_keep_their_numbers_after_a_lost_answer():
    """The server bytes lost begin where /1's answer ended: an answer began
    in them (to /2, whose request is lost too): it takes number 2 without a
    record, so the two answers seen are 3 and 4, and /5 is 5."""
    return _batch_lost_with_the_first_answer(ANSWER, None, slice(0, 0)), {"tcp_gap": 2}


def an_answer_whose_head_alone_was_lost_still_takes_its_number():
    """The same with /2's answer 3,000 bytes long and only its first segment
    lost: the rest of its body is skipped up to the next status line."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"b" * 3000
    return _batch_lost_with_the_first_answer(answer, [1000, 1000], slice(1, None)), {"tcp_gap": 2}


def a_wait_stopped_by_bytes_held_opposite_does_not_deliver_early():
    """/2 and its 2,000-byte answer are lost.  /3 waits for that answer;
    /3's answer waits for /2 and /3.  Giving up the answer's wait (it
    declares fewer bytes lost) may only skip the client's stream to where /3
    is held; the answer must still wait for /3, which goes first once its
    own wait is given up.  (Delivered at once, the answer was written
    request_missing and every later answer paired one request late.)"""
    s = Steps()
    s.handshake()
    s.exchange(0.01, "/1", [T("GET /1", 200, 1, 0.01)])
    s.c.client_data(request("/2"))  # never captured
    s.c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1962\r\n\r\n" + b"a" * 1962)  # never captured
    (three,) = s.c.client_data(request("/3"))
    (a3,) = s.c.server_data(ANSWER)
    s.at(0.1, three)
    s.at(0.105, a3)
    s.expire(10.2, out=[T("GET /3", 200, 3, 0.1)])
    s.exchange(10.3, "/4", [T("GET /4", 200, 4, 10.3)])
    return s, {"tcp_gap": 2}


def pipelined_answers_before_a_lost_batch_are_paired_by_their_acks():
    """/a /b /c pipelined, /a's answer lost; then /d /e pipelined and lost,
    their answers captured.  The answers to /b and /c acknowledge no lost
    client byte, so with the one answer lost (from the start of the server's
    stream) they are exactly the answers to /a /b /c: paired; the two
    answers acknowledging the lost batch answer its requests."""
    s = Steps()
    s.handshake()
    s.at(0.01, *s.c.client_data(request("/a") + request("/b") + request("/c")))
    s.c.server_data(ANSWER)  # never captured
    s.at(0.02, *s.c.server_data(ANSWER))
    s.at(0.03, *s.c.server_data(ANSWER))
    s.c.client_data(request("/d") + request("/e"))  # never captured
    s.at(0.05, *s.c.server_data(ANSWER))
    s.at(0.06, *s.c.server_data(ANSWER))
    s.exchange(0.1, "/f", [])
    lost = ("request_missing", "tcp_gap")
    s.expire(10.2, out=[
        T("GET /a", None, 1, 0.01, ("response_missing", "tcp_gap"), "gap"),
        T("GET /b", 200, 2, 0.01),
        T("GET /c", 200, 3, 0.01),
        T(None, 200, 4, 0.05, lost),
        T(None, 200, 5, 0.06, lost),
        T("GET /f", 200, 6, 0.1),
    ])
    return s, {"tcp_gap": 2}


def window_left_undecided_at_the_close_flags_its_requests_too():
    """As pipelined_pair_lost_in_part_is_numbered_once, but the connection
    ends before a later request settles the window: the answer is written
    unpaired, and /3, which it may answer, says so too."""
    s = _pipelined_pair_lost_in_part()
    s.close_all(1.0, out=[
        T(None, 200, 2, 0.105, ("pairing_uncertain",)),
        T("GET /3", None, 3, 0.1, ("pairing_uncertain", "response_missing"), "end_of_input"),
    ])
    return s, {"tcp_gap": 2}


UPLOAD = b"POST /up HTTP/1.1\r\nHost: example.test\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CREATED = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"


def server_bytes_lost_before_a_request_was_sent_are_not_its_loss():
    """/1's request is lost, its answer captured; /2 and its answer are lost
    whole; /3 is sent once the client had all of that (its ack).  The lost
    answer is /2's: /3 carries nothing of the loss and keeps number 3 (a
    response began where /1's ended).  (The gap went on /3, the first request
    without a response, when the loss was seen.)"""
    s = Steps()
    s.handshake()
    s.c.client_data(request("/1"))  # never captured
    s.at(0.01, *s.c.server_data(ANSWER))
    s.at(0.011, s.c.client_ack())
    s.c.client_data(request("/2"))  # never captured
    s.c.server_data(ANSWER)  # never captured
    s.exchange(0.1, "/3", [])
    s.expire(10.2, out=[T(None, 200, 1, 0.01, ("request_missing", "tcp_gap")), T("GET /3", 200, 3, 0.1)])
    return s, {"tcp_gap": 3}


def lost_upload_head_and_its_100_continue_count_once():
    """A POST with Expect: 100-continue: its head and the 100 Continue are
    lost, its body and the 201 captured.  The lost server bytes may be that
    201's own 100 Continue (the rest of a body follows the lost client
    bytes): the 201 is number 1, not 2, and /2 is number 2."""
    s = Steps()
    s.handshake()
    s.c.client_data(UPLOAD)  # never captured
    s.c.server_data(CONTINUE)  # never captured
    s.at(0.01, *s.c.client_data(b"u" * 1000))
    s.at(0.02, *s.c.server_data(CREATED))
    s.at(0.021, s.c.client_ack())
    s.exchange(0.1, "/2", [])
    s.expire(10.2, out=[T(None, 201, 1, 0.02, ("request_missing", "tcp_gap")), T("GET /2", 200, 2, 0.1)])
    return s, {"tcp_gap": 2}


def a_100_continue_whose_final_answer_was_lost_is_not_the_next_answers():
    """A POST with Expect: 100-continue whose head is lost; its 100 Continue
    is captured, its 201 lost; then /2.  The 100 Continue came before /2 was
    sent: it is not /2's answer's, and the POST still takes number 1 (no
    record: neither its request line nor its final answer was seen)."""
    s = Steps()
    s.handshake()
    s.c.client_data(UPLOAD)  # never captured
    s.at(0.01, *s.c.server_data(CONTINUE))
    s.at(0.011, *s.c.client_data(b"u" * 1000))
    s.c.server_data(CREATED)  # never captured
    s.exchange(0.1, "/2", [])
    s.expire(10.2, out=[T("GET /2", 200, 2, 0.1)])
    return s, {"tcp_gap": 2}


def a_100_continue_lost_with_the_answer_before_it_is_flagged():
    """/2's answer and the 100 Continue of the POST sent after it are lost
    together; the POST's body and its 201 are captured.  /2 has no answer,
    and the POST's record says bytes of its exchange were lost."""
    s = Steps()
    s.handshake()
    s.exchange(0.01, "/1", [T("GET /1", 200, 1, 0.01)])
    s.at(0.1, *s.c.client_data(request("/2")))
    s.c.server_data(ANSWER)  # never captured
    s.at(0.2, *s.c.client_data(UPLOAD))
    s.c.server_data(CONTINUE)  # never captured
    s.at(0.21, *s.c.client_data(b"u" * 1000))
    s.at(0.22, *s.c.server_data(CREATED))
    s.at(0.221, s.c.client_ack())
    s.exchange(0.3, "/4", [])
    s.expire(10.3, out=[
        T("GET /2", None, 2, 0.1, ("response_missing", "tcp_gap"), "gap"),
        T("POST /up", 201, 3, 0.2, ("tcp_gap",)),
        T("GET /4", 200, 4, 0.3),
    ])
    return s, {"tcp_gap": 2}


def _cut_answer_then_cut_upload(s: Steps, now: float) -> None:
    """At ``now`` the last two segments of a 3,000-byte answer (its first is
    lost), then a POST without Expect whose head and first 100 body bytes are
    lost: the rest of its body 10 ms later, its 201 10 ms after that."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"b" * 3000
    s.at(now, *s.c.server_data(answer, [1000, 1000])[1:])
    s.at(now + 0.001, s.c.client_ack())
    s.c.client_data(b"POST /up HTTP/1.1\r\nHost: example.test\r\nContent-Length: 1000\r\n\r\n" + b"u" * 100)  # never captured
    s.at(now + 0.01, *s.c.client_data(b"u" * 900))
    s.at(now + 0.02, *s.c.server_data(CREATED))
    s.at(now + 0.021, s.c.client_ack())


def an_answer_cut_by_loss_before_an_upload_still_takes_its_number():
    """/1's request and the first segment of its 3,000-byte answer are lost
    (the rest of it is skipped); so are the head and first bytes of the POST
    /2 after it (the rest of its body is skipped), without Expect.  The
    skipped bytes show an answer began in the lost ones: the 201 is number 2."""
    s = Steps()
    s.handshake()
    s.c.client_data(request("/1"))  # never captured
    _cut_answer_then_cut_upload(s, 0.01)
    s.exchange(0.1, "/3", [])
    s.expire(10.2, out=[T(None, 201, 2, 0.03, ("request_missing", "tcp_gap")), T("GET /3", 200, 3, 0.1)])
    return s, {"tcp_gap": 3}


def an_answer_begun_in_lost_bytes_is_not_the_next_one():
    """/1 is captured, the first segment of its 3,000-byte answer lost (the
    rest is skipped); the head of the POST /2 after it is lost (the rest of
    its body skipped), its 201 captured; /3 and its answer are lost whole,
    /4 captured.  An answer began where the lost server bytes began, with
    the rest of a message after them: /1's.  So /1 has no answer, the 201 is
    a lost request's (number 2), and /4 is 4.  (The 201 was held undecided
    between /1 and the lost request, and written unpaired after /4, which
    was numbered 3.)"""
    s = Steps()
    s.handshake()
    s.at(0.01, *s.c.client_data(request("/1")))
    _cut_answer_then_cut_upload(s, 0.02)
    _third_lost_whole_then_fourth(s, T(None, 201, 2, 0.04, ("request_missing", "tcp_gap")))
    return s, {"tcp_gap": 4}


def _third_lost_whole_then_fourth(s: Steps, second: T) -> None:
    """/3 and its answer lost whole, /4 captured; once the lost bytes' wait
    is given up: /1 without its answer, ``second``, and /4 numbered 4."""
    s.c.client_data(request("/3"))  # never captured
    s.c.server_data(ANSWER)  # never captured
    s.exchange(0.1, "/4", [])
    s.expire(10.2, out=[T("GET /1", None, 1, 0.01, ("response_missing", "tcp_gap"), "gap"), second, T("GET /4", 200, 4, 0.1)])


def an_answer_lost_whole_is_the_first_waiting_requests():
    """/1 is captured, its answer lost whole; /2's request is lost, its answer
    captured; /3 and its answer are lost whole, /4 captured.  The lost server
    bytes began where a response ended, while /1 (no Expect) waited first:
    /1's answer began in them.  So /1 has no answer, the next one is a lost
    request's (number 2), and /4 is 4.  (That answer was held undecided
    between /1 and the lost request, and /4 numbered 3.)"""
    s = Steps()
    s.handshake()
    s.at(0.01, *s.c.client_data(request("/1")))
    s.c.server_data(ANSWER)  # never captured
    s.c.client_data(request("/2"))  # never captured
    s.at(0.02, *s.c.server_data(ANSWER))
    s.at(0.021, s.c.client_ack())
    _third_lost_whole_then_fourth(s, T(None, 200, 2, 0.02, ("request_missing", "tcp_gap")))
    return s, {"tcp_gap": 3}


def an_answer_held_undecided_keeps_its_request_waiting():
    """/1 /2 /3 pipelined and captured; the end of /1's answer and most of
    /2's (a HEAD's) are lost, /3's captured: it may answer /2 or /3, so it is
    held.  Then /4 /5 /6, pipelined, are lost, and the head of /4's answer;
    /5's and /6's answers are captured, then /7.  While /3's answer is held,
    the answer cut in the lost bytes is not taken for /3's: /3 keeps waiting,
    and /7, a checkpoint, pairs /3 with its answer; the lost head is not
    /3's loss either.  (/3 was written response_missing, its answer
    unpaired; before that, the lost head's tcp_gap went on /3.)"""
    s = Steps()
    s.handshake()
    s.at(0.01, *s.c.client_data(request("/1") + request("/2") + request("/3")))
    a1 = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"a" * 3000
    a2 = b"HTTP/1.1 200 OK\r\nContent-Length: 600\r\n\r\n"  # to a HEAD
    a3 = b"HTTP/1.1 200 OK\r\nContent-Length: 600\r\n\r\n" + b"c" * 600
    one, two, three, four = s.c.server_data(a1 + a2 + a3, [2000, len(a1) - 2000 + len(a2) - 10, 10])
    s.at(0.02, one)
    s.at(0.021, three, four)
    s.at(0.022, s.c.client_ack())
    s.c.client_data(request("/4") + request("/5") + request("/6"))  # never captured
    a4 = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"d" * 3000
    (_lost, *rest) = s.c.server_data(a4, [1000])
    s.at(0.03, *rest)
    s.at(0.031, *s.c.server_data(ANSWER))
    s.at(0.032, *s.c.server_data(ANSWER))
    s.at(0.033, s.c.client_ack())
    s.exchange(0.1, "/7", [])
    s.expire(10.2, out=[  # the lost bytes' wait given up
        T("GET /1", 200, 1, 0.01, ("body_gap", "tcp_gap")),
        T("GET /2", None, 2, 0.01, ("response_missing",), "gap"),
        T("GET /3", 200, 3, 0.01),
        T(None, 200, 5, 0.031, ("request_missing", "tcp_gap")),
        T(None, 200, 6, 0.032, ("request_missing", "tcp_gap")),
        T("GET /7", 200, 7, 0.1),
    ])
    return s, {"tcp_gap": 3}


# ------------------------------------------------------------------- the table

CASES = [
    Case(birth_hold_settles_at_the_sixteenth_packet),
    Case(birth_hold_settles_at_64_kib),
    Case(birth_hold_below_64_kib_settles_after_one_second),
    Case(birth_hold_base_is_the_lowest_sequence_number),
    Case(late_handshake_sets_the_bases),
    Case(late_syn_sets_the_roles),
    Case(syn_ack_alone_gives_both_bases),
    Case(rst_one_before_the_next_byte_is_ignored),
    Case(rst_at_exactly_the_next_byte_is_accepted),
    Case(rst_at_exactly_the_furthest_byte_sent_is_accepted),
    Case(rst_one_past_the_furthest_byte_sent_is_ignored),
    Case(rst_far_ahead_is_ignored),
    Case(rst_at_exactly_what_the_peer_acknowledged_is_accepted),
    Case(rst_one_past_what_the_peer_acknowledged_is_ignored),
    Case(rst_at_an_acknowledgement_a_window_past_what_was_sent_is_accepted),
    Case(rst_at_an_acknowledgement_further_than_a_window_is_ignored),
    Case(rst_at_a_random_acknowledgement_is_ignored),
    Case(rst_ack_acknowledging_the_syn_refuses_the_connection),
    Case(rst_ack_not_acknowledging_the_syn_is_ignored),
    Case(refused_connection_retried_at_once_is_a_new_connection),
    Case(data_after_an_accepted_rst_is_logged_and_flagged),
    Case(fin_one_before_the_next_byte_is_ignored),
    Case(fin_at_the_next_byte_ends_the_direction),
    Case(fin_at_the_edge_of_the_window_is_accepted),
    Case(fin_one_past_the_window_is_ignored),
    Case(syn_with_another_isn_is_ignored),
    Case(syn_retransmitted_with_the_same_isn_is_nothing),
    Case(syn_answered_by_a_syn_ack_means_reused),
    Case(syn_ack_not_acknowledging_the_new_syn_is_ignored),
    Case(syn_data_without_fast_open_is_dropped),
    Case(syn_data_with_fast_open_is_the_request),
    Case(syn_data_without_a_syn_ack_is_dropped_when_the_connection_settles),
    Case(ttl_8_below_the_reference_is_not_flagged),
    Case(ttl_9_below_the_reference_is_flagged),
    Case(ttl_9_above_the_reference_is_flagged),
    Case(ttl_reference_is_the_first_data_segment_not_the_handshake),
    Case(ttl_decoy_copying_a_request_is_flagged_on_it),
    Case(urgent_data_is_flagged),
    Case(bad_checksum_after_a_valid_one_is_dropped_under_auto),
    Case(bad_checksum_larger_than_the_valid_ones_is_still_checked_under_auto),
    Case(bad_checksum_on_a_super_segment_is_taken_under_auto),
    Case(bad_checksum_no_larger_than_a_valid_jumbo_segment_is_checked_under_auto),
    Case(bad_checksum_when_no_valid_one_came_from_that_side_is_taken_under_auto),
    Case(bad_checksum_is_dropped_under_on, Settings(verify_checksums="on")),
    Case(bad_checksum_is_taken_under_off, Settings(verify_checksums="off")),
    Case(bad_checksum_copy_of_a_written_request_goes_on_no_record),
    Case(fragment_overlap_noted_by_the_ip_stage_goes_on_the_next_request),
    Case(answer_captured_before_its_request_waits_for_it),
    Case(answer_to_a_lost_request_waits_gap_timeout_then_the_request_is_lost),
    Case(force_gives_up_first_the_wait_that_no_held_segment_can_end),
    Case(gap_timeout_gives_up_only_the_waits_that_old),
    Case(buffer_overflow_gives_up_waits_only_until_half_the_bound_is_held, Settings(max_conn_buffer_bytes=4096)),
    Case(exchange_lost_both_ways_keeps_its_number),
    Case(pipelined_pair_lost_in_part_is_numbered_once),
    Case(answers_to_lost_requests_keep_their_numbers_after_a_lost_answer),
    Case(an_answer_whose_head_alone_was_lost_still_takes_its_number),
    Case(a_wait_stopped_by_bytes_held_opposite_does_not_deliver_early),
    Case(pipelined_answers_before_a_lost_batch_are_paired_by_their_acks),
    Case(window_left_undecided_at_the_close_flags_its_requests_too),
    Case(server_bytes_lost_before_a_request_was_sent_are_not_its_loss),
    Case(lost_upload_head_and_its_100_continue_count_once),
    Case(a_100_continue_whose_final_answer_was_lost_is_not_the_next_answers),
    Case(a_100_continue_lost_with_the_answer_before_it_is_flagged),
    Case(an_answer_cut_by_loss_before_an_upload_still_takes_its_number),
    Case(an_answer_begun_in_lost_bytes_is_not_the_next_one),
    Case(an_answer_lost_whole_is_the_first_waiting_requests),
    Case(an_answer_held_undecided_keeps_its_request_waiting),
]


def play(steps: list, settings: Settings) -> tuple[list[list[T]], dict]:
    """Each step's transactions, and the table's counts at the end."""
    table = FlowTable(settings)
    outs = []
    for op, _expected in steps:
        if op == "note_flow":
            done = []
            table.note_flow(*(ipaddress.ip_address(a).packed for a in (CLIENT[0], SERVER[0])), CLIENT[1], SERVER[1],
                            None, ("ip_fragment_overlap",))
        elif isinstance(op, Feed):
            done = table.feed(op.seg, op.now)
        elif isinstance(op, Expire):
            done = table.expire(op.now)
        else:
            done = table.close_all(None, op.now)
        outs.append([view(txn) for _conn, txn in done])
    return outs, table.counts


def execute(case: Case) -> tuple[tuple, tuple]:
    """(expected, actual): each a pair (each step's transactions, counts)."""
    s, counts = case.build()
    return ([expected for _op, expected in s.steps], counts), play(s.steps, case.settings)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_flow_table(case: Case) -> None:
    expected, actual = execute(case)
    assert expected == actual


# ------------------------------------------------------ fast path, general path

POST = b"POST /2 HTTP/1.1\r\nHost: example.test\r\nContent-Length: 50\r\n\r\n" + b"p" * 50
BIG = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"b" * 100
CREATED = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"


def keep_alive() -> list:
    """GET /1 answered with 100 bytes in 3 segments, a POST in 3 segments, GET /3
    and GET /4 pipelined in one segment and answered in one, then the close."""
    s = Steps()
    s.handshake()
    s.at(0.01, *s.c.client_data(request("/1")))
    s.at(0.015, *s.c.server_data(BIG, [30, 40]), out=[T("GET /1", 200, 1, 0.01)])
    s.at(0.016, s.c.client_ack())
    s.at(0.02, *s.c.client_data(POST, [30, 40]))
    s.at(0.025, *s.c.server_data(CREATED), out=[T("POST /2", 201, 2, 0.02)])
    s.at(0.03, *s.c.client_data(request("/3") + request("/4")))
    s.at(0.035, *s.c.server_data(ANSWER + ANSWER), out=[T("GET /3", 200, 3, 0.03), T("GET /4", 200, 4, 0.03)])
    for i, seg in enumerate(s.c.close()):
        s.at(0.04 + i / 1000, seg)
    return s.steps


def rerouted(steps: list, ttl: int) -> list:
    """The same steps, every data segment after each direction's first with
    ``ttl`` (one below: a route one hop longer, not flagged)."""
    seen, out = set(), []
    for op, expected in steps:
        if isinstance(op, Feed) and op.seg.payload:
            if op.seg.src in seen:
                op = Feed(op.seg._replace(ttl=ttl), op.now)
            seen.add(op.seg.src)
        out.append((op, expected))
    return out


def test_fast_path_and_general_path_give_the_same_transactions(monkeypatch):
    """In-order data on a settled connection goes straight to the HTTP session
    (FlowTable.feed's fast path); a TTL other than the direction's first sends
    every later data segment through the general path.  Both give the
    transactions written by hand; the fast path's own call into the session
    (HttpSession.feed_data) shows which path each run took."""
    calls = []
    original = HttpSession.feed_data

    def feed_data(self, *args):
        calls.append(args[0])
        return original(self, *args)

    monkeypatch.setattr(HttpSession, "feed_data", feed_data)
    steps = keep_alive()
    expected = ([out for _op, out in steps], {})
    fast = play(steps, Settings())
    fast_calls, calls[:] = len(calls), []
    general = play(rerouted(steps, 63), Settings())
    # The fast path takes every data segment (5 each way); rerouted, only
    # each direction's first (it sets the direction's TTL).
    assert (expected, expected, 10, 2) == (fast, general, fast_calls, len(calls))


# ------------------------------------------------ causal hold: which wait goes

C0, S0 = 1_000_000, 3_000_000  # stream offset 0 of each direction


def stream(base: int, delivered: int) -> HalfStream:
    hs = HalfStream(10.0, 1 << 20)
    hs.start(base)
    if delivered:
        hs.advance(b"x" * delivered)
    return hs


def held(seq: int, ack: int, size: int, ts: float) -> tuple:
    """A held data segment, as the flow table keeps it: (seq, ack, flags,
    payload, lost, ts)."""
    return (seq, ack, ACK | PSH, b"h" * size, 0, ts)


@dataclass(frozen=True)
class Force:
    name: str
    client: list  # held client segments, in arrival order
    server: list
    delivered: tuple = (0, 0)  # bytes delivered (client, server)
    # (from_client, item, skip) in the order the items leave the hold: ``skip``
    # as force gives it, or READY for an item that no longer waited.
    expected: list = field(default_factory=list)


READY = "ready"

FORCES = [
    Force(
        "the_wait_that_declares_the_fewest_bytes_lost_goes_first",
        # Two requests captured out of order, acknowledging 100 and 50 server bytes never seen.
        client=[held(C0 + 40, S0 + 100, 40, 1.0), held(C0, S0 + 50, 40, 2.0)],
        server=[],
        expected=[(True, held(C0, S0 + 50, 40, 2.0), 50), (True, held(C0 + 40, S0 + 100, 40, 1.0), 100)],
    ),
    Force(
        "a_wait_for_bytes_held_in_the_other_direction_goes_last",
        # /2 (client offset 40) waits for /1's answer (server 0..30, lost); /2's
        # answer (server 30) waits for /2.  The answer is older, and declares
        # fewer bytes lost, but its missing bytes are held: /2 goes first.
        client=[held(C0 + 40, S0 + 30, 40, 2.0)],
        server=[held(S0 + 30, C0 + 80, 2, 1.0)],
        delivered=(40, 0),
        expected=[(True, held(C0 + 40, S0 + 30, 40, 2.0), 30), (False, held(S0 + 30, C0 + 80, 2, 1.0), READY)],
    ),
    Force(
        "a_skip_stops_where_bytes_held_in_the_other_direction_begin",
        # The answer (server 600) acknowledges client bytes up to 100; client
        # bytes from 60 are held, waiting for server bytes 0..500 never seen:
        # the answer's wait declares only 0..60 lost and the answer stays
        # held (it still waits for 60..100); then the held client bytes' wait
        # goes, and the answer follows them.
        client=[held(C0 + 60, S0 + 500, 40, 2.0)],
        server=[held(S0 + 600, C0 + 100, 10, 1.0)],
        expected=[(False, None, 60), (True, held(C0 + 60, S0 + 500, 40, 2.0), 500), (False, held(S0 + 600, C0 + 100, 10, 1.0), READY)],
    ),
    Force(
        "marks_that_contradict_each_other_deliver_the_smaller_wait_first",
        # As above with the answer at server 0, inside the bytes the held
        # client bytes acknowledge: each waits for the other (marks no real
        # capture gives).  The skip stops at 60; then nothing can be skipped
        # for the answer, which goes, and the client bytes after it.
        client=[held(C0 + 60, S0 + 500, 40, 2.0)],
        server=[held(S0, C0 + 100, 10, 1.0)],
        expected=[(False, None, 60), (False, held(S0, C0 + 100, 10, 1.0), 60), (True, held(C0 + 60, S0 + 500, 40, 2.0), 500)],
    ),
    Force(
        "bytes_lost_are_counted_from_what_each_direction_delivered",
        # The request acknowledges server bytes to 100 with 95 delivered (5
        # lost); the answer acknowledges client bytes to 60 with none
        # delivered (60 lost), though its acknowledgement number is lower.
        client=[held(C0 + 70, S0 + 100, 10, 2.0)],
        server=[held(S0 + 200, C0 + 60, 10, 1.0)],
        delivered=(0, 95),
        expected=[(True, held(C0 + 70, S0 + 100, 10, 2.0), 100), (False, held(S0 + 200, C0 + 60, 10, 1.0), 60)],
    ),
]


@pytest.mark.parametrize("case", FORCES, ids=[f.name for f in FORCES])
def test_causal_force_order(case: Force) -> None:
    """CausalHold as FlowTable._release drives it: deliver what is ready, else
    force one wait (the direction it names skips there, then the item, if
    one is given, is delivered), until nothing is held."""
    c2s, s2c = stream(C0, case.delivered[0]), stream(S0, case.delivered[1])
    hold = CausalHold()
    for fc, items in ((True, case.client), (False, case.server)):
        for item in items:
            hold.add(fc, item, item[5])
    got = []
    while hold:
        ready = hold.ready(c2s, s2c)
        gone = [(fc, item, READY) for fc, item in ready] if ready else [hold.force(c2s, s2c)]
        for fc, item, skip in gone:
            got.append((fc, item, skip))
            mine, other = (c2s, s2c) if fc else (s2c, c2s)
            if skip not in (None, READY):
                other.skip_to(skip)
            if item is not None:
                mine.feed(item[0], item[3], item[5])
    assert case.expected == got


# ------------------------------------------------- pairing: the split window


def _txn(start: int, ack: int, *, request: bool, headers: dict | None = None):
    from sniffd.http.message import Message, Transaction

    msg = Message(0.0, start, ack)
    msg.headers = headers or {}
    txn = Transaction()
    if request:
        txn.request = msg
    else:
        txn.response = msg
    return txn


@pytest.mark.parametrize("expect", [None, "100-continue"])
def test_split_plan_does_not_count_a_lost_stretch_that_may_be_a_100_continue(expect):
    """A PUT, then lost client bytes; the server's bytes from the end of the
    last response were lost (one start at least), then a 201 acknowledging
    the lost client bytes.  Without Expect the stretch answered the PUT and
    the 201 a lost request; with Expect: 100-continue the stretch may have
    held only the 100 Continue, so the window is not settled."""
    from sniffd.http.pairing import Lost, Pairing

    p = Pairing()
    put = _txn(1000, 600, request=True, headers={"expect": expect} if expect else {})
    lost = Lost(2000, 3000, whole=False)
    answer = _txn(625, 3700, request=False)
    p.lost_responses(600, 625, whole=True)
    plan = p._split_plan([put], lost, [answer], [(600, 625)])
    assert ([(put, None), (None, answer)] if expect is None else None) == plan


def test_a_100_continue_of_an_exchange_lost_is_on_no_other_answer():
    """a_100_continue_whose_final_answer_was_lost_is_not_the_next_answers:
    /2's record carries no 1xx (the 100 Continue was written on it)."""
    s, _counts = a_100_continue_whose_final_answer_was_lost_is_not_the_next_answers()
    table = FlowTable(Settings())
    done = []
    for op, _expected in s.steps:
        done += table.feed(op.seg, op.now) if isinstance(op, Feed) else table.expire(op.now)
    assert [("/2", 200, [])] == [(t.request.uri, t.response.status, t.interim) for _conn, t in done]


# ------------------------------------------------ memory: nothing left behind

WS_UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


# What a connection may hold when it is evicted, expired or closed: its
# segments after the handshake.
SHAPES: list[Callable[[TcpConversation], list[craft.Segment]]] = [
    # an exchange, then idle (keep-alive)
    lambda c: c.client_data(request("/idle")) + c.server_data(ANSWER),
    # a request never answered
    lambda c: c.client_data(request("/unanswered")),
    # a head half read
    lambda c: c.client_data(b"GET /half HTTP/1.1\r\nHost: example.test\r\nX-Long: " + b"x" * 3000),
    # a body half read, and an answer before its end
    lambda c: c.client_data(b"POST /up HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + b"u" * 2000)
    + c.server_data(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"),
    # an exchange closed by FIN both ways (lingers, then leaves)
    lambda c: c.client_data(request("/fin")) + c.server_data(ANSWER) + c.close(),
    # a chunked answer cut inside a chunk
    lambda c: c.client_data(request("/chunked"))
    + c.server_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"c" * 100),
    # a WebSocket upgrade, then a frame
    lambda c: c.client_data(WS_UPGRADE)
    + c.server_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi"),
    # a segment after a hole (buffered for reassembly)
    lambda c: c.client_data(request("/a") + request("/b"), [40])[1:],
    # reset by the server after a request
    lambda c: c.client_data(request("/rst")) + [c.server_rst()],
]


def test_connections_closed_evicted_or_expired_leave_no_cycle(monkeypatch) -> None:
    """300 connections in nine shapes (idle, request unanswered, head or body
    half read, FIN, chunked, upgraded, out of order, reset) through a flow
    table whose budget and max_connections hold a few dozen: evicted by the budget and by
    max_connections, expired idle, closed at the end.  With the cyclic GC
    off, each HTTP session is freed the moment its connection leaves the
    table, and nothing is left for the GC to collect.  (Sessions were
    session <-> reader cycles: 200,000 idle connections evicted at the
    default budget peaked at 977 MB, the GC run too rarely to free them.)"""
    made: list[weakref.ref] = []

    class Tracked(HttpSession):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    monkeypatch.setattr(flows, "HttpSession", Tracked)
    settings = replace(Settings(), memory_budget_mb=0.2, max_connections=25, idle_timeout_s=5.0)
    gc.collect()
    gc.disable()
    try:
        table = FlowTable(settings)
        written = 0
        now = 0.0
        for i in range(300):
            c = TcpConversation(("10.0.0.1", 20000 + i), SERVER, client_isn=i * 7919, server_isn=i * 104729)
            segs = c.handshake() + SHAPES[i % len(SHAPES)](c)
            for seg in segs:
                now += 0.001
                written += len(table.feed(wire(seg), now))
            if i == 200:
                written += len(table.expire(now + settings.idle_timeout_s + 1))  # all idle so far
                now += settings.idle_timeout_s + 1

        def live() -> set:
            return {c._http for c in list(table.lru) + list(table.closing) if c._http is not None}

        # Sessions alive are exactly those of connections still in the table.
        assert (len(live()), 0) == (sum(r() is not None for r in made), gc.collect())
        written += len(table.close_all(None, now + 1))
        alive = sum(r() is not None for r in made)
        counts = dict(table.counts)
        leftover = gc.collect()
    finally:
        gc.enable()
    assert (0, 0) == (alive, leftover)
    # Every way out was taken.
    assert {"conn_evicted", "memory_evicted", "idle_timeout"} <= set(counts), counts
    assert len(made) >= 300 and written > 100


# h2c (sniffd.http2): what an HTTP/2 connection may hold when it leaves.
H2_UPGRADE = (b"GET /up HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
              b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
H2_SHAPES: list[Callable[[TcpConversation], list[craft.Segment]]] = [
    # prior knowledge: one exchange, then idle
    lambda c: c.client_data(h2craft.CLIENT_START + h2craft.headers(1, h2craft.GET_ROOT, end_stream=True))
    + c.server_data(h2craft.SERVER_START + h2craft.headers(1, h2craft.resp_block(200), end_stream=True)),
    # prior knowledge: a stream never answered, and one half sent
    lambda c: c.client_data(h2craft.CLIENT_START + h2craft.headers(1, h2craft.GET_ROOT, end_stream=True)
                            + h2craft.headers(3, h2craft.req_block("POST", "/up")) + h2craft.data(3, b"x" * 500)),
    # the preface's first bytes alone (deciding)
    lambda c: c.client_data(b"PRI * HTTP/2"),
    # "PRI" then not the preface: back to HTTP/1, a request unanswered
    lambda c: c.client_data(b"PRI", [3]) + c.client_data(b" /x HTTP/1.1\r\nHost: example.test\r\n\r\n"),
    # upgraded: stream 1 answered, a stream 3 unanswered
    lambda c: c.client_data(H2_UPGRADE)
    + c.server_data(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                    + h2craft.SERVER_START + h2craft.headers(1, h2craft.resp_block(200), end_stream=True))
    + c.client_data(h2craft.CLIENT_START + h2craft.headers(3, h2craft.GET_ROOT, end_stream=True)),
    # upgraded, then closed by FIN both ways
    lambda c: c.client_data(H2_UPGRADE)
    + c.server_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + h2craft.SERVER_START)
    + c.client_data(h2craft.CLIENT_START) + c.close(),
]


def test_h2c_connections_leave_no_cycle_and_give_their_memory_back(monkeypatch) -> None:
    """As above, for HTTP/2 connections (prior knowledge, deciding, handed back
    to HTTP/1, upgraded): every session (HTTP/1 and HTTP/2, the ones handed
    over included) is freed when its connection leaves, nothing is left for
    the GC, and the memory estimate's HTTP part and session count are back
    at zero."""
    made: list[weakref.ref] = []

    class TrackedHttp(HttpSession):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    import sniffd.http2.flow

    class TrackedH2(sniffd.http2.flow.H2Flow):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    monkeypatch.setattr(flows, "HttpSession", TrackedHttp)
    monkeypatch.setattr(sniffd.http2.flow, "H2Flow", TrackedH2)  # the flow table loads it from there
    settings = replace(Settings(), memory_budget_mb=0.2, max_connections=25, idle_timeout_s=5.0)
    gc.collect()
    gc.disable()
    try:
        table = FlowTable(settings)
        now = 0.0
        for i in range(120):
            c = TcpConversation(("10.0.0.1", 20000 + i), SERVER, client_isn=i * 7919, server_isn=i * 104729)
            for seg in c.handshake() + H2_SHAPES[i % len(H2_SHAPES)](c):
                now += 0.001
                table.feed(wire(seg), now)
            if i == 80:
                table.expire(now + settings.idle_timeout_s + 1)
                now += settings.idle_timeout_s + 1
        kinds = {type(r()).__name__ for r in made if r() is not None}
        table.close_all(None, now + 1)
        alive = sum(r() is not None for r in made)
        leftover = gc.collect()
    finally:
        gc.enable()
    assert {"TrackedHttp", "TrackedH2"} == kinds  # both kinds were alive in the table
    assert (0, 0, 0, 0) == (alive, leftover, table.meter.http_bytes, table.meter.sessions)


def _h2_open_stream(table: FlowTable, port: int, now: float) -> None:
    """An h2c connection with stream 1 answered and stream 3 waiting for its answer."""
    c = TcpConversation(("10.0.0.1", port), SERVER, client_isn=port * 7919)
    segs = c.handshake() + c.client_data(h2craft.CLIENT_START + h2craft.headers(1, h2craft.GET_ROOT, end_stream=True)
                                         + h2craft.headers(3, h2craft.req_block("GET", "/wait"), end_stream=True))
    segs += c.server_data(h2craft.SERVER_START + h2craft.headers(1, h2craft.resp_block(200), end_stream=True))
    out = []
    for seg in segs:
        out += table.feed(wire(seg), now)
    assert [(1, "complete")] == [(t.stream_id, t.end_reason) for _, t in out]


@pytest.mark.parametrize("how, end, anomaly", [
    ("idle", "idle", "idle_timeout"),
    ("shutdown", "shutdown", "cut_by_shutdown"),
    ("end_of_input", "end_of_input", None),
    ("evicted", "evicted", "conn_evicted"),
])
def test_an_open_http2_stream_is_written_when_its_connection_is_cut(how, end, anomaly):
    """Idle timeout, shutdown, the end of the file and eviction write an HTTP/2
    stream still open as they write an HTTP/1 transaction: end_reason, and the
    anomaly for what cut it; the counts say so once per connection."""
    table = FlowTable(replace(Settings(), idle_timeout_s=5.0, max_connections=1))
    _h2_open_stream(table, 30000, 1.0)
    if how == "idle":
        out = table.expire(10.0)
    elif how == "shutdown":
        out = table.close_all("cut_by_shutdown", 2.0)
    elif how == "end_of_input":
        out = table.close_all(None, 2.0)
    else:
        out = table.feed(wire(TcpConversation(("10.0.0.1", 30001), SERVER).syn()), 2.0)
    assert [(3, "GET /wait", None, end, sorted({"response_missing"} | ({anomaly} if anomaly else set())))] == [
        (t.stream_id, f"{t.request.method} {t.request.uri}", t.response, t.end_reason, sorted(t.anomalies))
        for _, t in out]
    assert ({anomaly: 1} if anomaly else {}) == {k: v for k, v in table.counts.items() if k == anomaly}


@pytest.mark.parametrize("shape", ["websocket", "connect_tls"])
def test_a_session_handed_to_the_tls_watch_gives_its_memory_back(shape):
    """The HTTP session a TLS watch replaces is never closed: what its pairing
    charged (a second response's end: 112 bytes) must leave the meter at the
    hand-over (it once stayed there for good)."""
    table = FlowTable(Settings())
    c = TcpConversation(CLIENT, SERVER)
    segs = c.handshake() + c.client_data(request("/first")) + c.server_data(ANSWER)
    if shape == "websocket":
        segs += c.client_data(WS_UPGRADE) + c.server_data(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi")
    else:
        segs += c.client_data(b"CONNECT origin.example:443 HTTP/1.1\r\nHost: origin.example:443\r\n\r\n")
        segs += c.server_data(b"HTTP/1.1 200 Connection established\r\n\r\n")
        segs += c.client_data(bytes.fromhex("16030100310100002d0303") + bytes(32) + bytes.fromhex("000002130101000000"))
    written = []
    for k, seg in enumerate(segs + c.close()):
        written += table.feed(wire(seg), k * 0.001)
    written += table.close_all(None, 1.0)
    http = [t for _, t in written if t.__class__.__name__ == "Transaction"]
    assert (2, 0, 0) == (len(http), table.meter.http_bytes, table.meter.sessions)
