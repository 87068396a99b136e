"""TCP control segments and decoys (issue 10), end to end: the real ``sniffd read``
on crafted captures, records written by hand from the rules in the module
docstring of sniffd/flows.py and the README's *Anomalies*.

One case per behaviour (``CASES``), each one connection: ``build(k)`` sends its
packets through ``k`` (a ``Conn``: the conversation, its packet list, its own
client port) and returns the records expected, in order.  The cases that need
nothing else share one capture, read once; a case that states the run's whole
stats (``stats``: the exact ``anomalies`` counters) or a ``[tcp]`` section
(``config``) is read alone.

Conventions: the handshake is at 0-2 ms; exchange n (a GET of ``/name`` and its
2-byte answer) sends the request at 10n ms, the answer at 10n+5 and the client's
ACK at 10n+6, so a clean record has ``duration_ms`` 5.0.  Requests that a decoy
copies have the same length ("/admin" and "/index").

Where tshark's view of a capture should be the receiver's, and sniffd's too, the
request URIs tshark dissects are compared with sniffd's (``tshark``: why they must
agree); the other cases say in ``NOT_COMPARED`` why tshark is not asked.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace

import craft
import pytest
from craft import ACK, FIN, RST, SYN, URG, TcpConversation
from pcapcheck import T0, anomalies, community_id, load_jsonl, run_sniffd, without_run_fields

SERVER = ("10.0.0.2", 80)
FIRST_PORT = 42000
# A blind attacker's sequence number: nowhere near either side's window.
RANDOM_SEQ = 0x9E3779B9
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
ANSWER = {
    "status": 200,
    "reason": "OK",
    "version": "1.1",
    "headers": {"content-length": "2"},
    "body_len": 2,
    "missed_bytes": 0,
    "body_truncated": False,
    "interim": [],
}


def request(path: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: example.test\r\n\r\n" % path


def ms(t: float) -> float:
    return T0 + t / 1000


def ts(t: float) -> str:
    """The record's ``ts`` for a packet at ``t`` ms after T0 (10:42:05.000000Z)."""
    sec, usec = divmod(round(t * 1000), 1_000_000)
    return f"2026-11-21T10:42:{5 + sec:02d}.{usec:06d}Z"


class Conn:
    """One crafted connection: its TcpConversation ``c``, the packets sent so far
    (``at``), and the fixed fields of its records (``record``)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client = ("10.0.0.1", port)
        self.c = TcpConversation(self.client, SERVER)
        self.packets: list[tuple[float, craft.Item]] = []

    def at(self, t: float, *items: craft.Item) -> None:
        self.packets += [(t, item) for item in items]

    def handshake(self, t: float = 0) -> None:
        syn, syn_ack, ack = self.c.handshake()
        self.at(t, syn)
        self.at(t + 1, syn_ack)
        self.at(t + 2, ack)

    def exchange(self, t: float, path: bytes) -> None:
        self.at(t, *self.c.client_data(request(path)))
        self.at(t + 5, *self.c.server_data(RESPONSE))
        self.at(t + 6, self.c.client_ack())

    def close(self, t: float) -> None:
        for i, seg in enumerate(self.c.close()):
            self.at(t + i, seg)

    def forged(self, side: str, flags: int, seq: int) -> craft.Segment:
        """A segment without data from ``side`` with ``flags`` and sequence number
        ``seq``; its ACK acknowledges what the peer sent (it changes nothing in
        the conversation's numbers)."""
        seg = self.c.client_ack() if side == "client" else self.c.server_ack()
        return replace(seg, flags=flags, seq=seq % craft.SEQ_MOD)

    def next_seq(self, side: str) -> int:
        """The sequence number ``side`` sends next."""
        return (self.c.client_ack() if side == "client" else self.c.server_ack()).seq

    def record(self, t, uri, depth, *names, duration=5.0, answer=ANSWER, end_reason="complete", t_answer=None):
        """The record of a GET of ``uri`` sent at ``t`` ms (``uri`` None: no
        request, the answer came at ``t_answer``), answered by ``answer`` (None:
        no response)."""
        return {
            "kind": "http",
            "ts": ts(t if uri is not None else t_answer),
            "client": {"ip": "10.0.0.1", "port": self.port},
            "server": {"ip": "10.0.0.2", "port": 80},
            "request": None
            if uri is None
            else {
                "method": "GET",
                "uri": uri,
                "version": "1.1",
                "host": "example.test",
                "headers": {"host": "example.test"},
                "body_len": 0,
                "missed_bytes": 0,
                "body_truncated": False,
            },
            "response": answer,
            "duration_ms": duration if uri is not None and answer is not None else None,
            "trans_depth": depth,
            "community_id": community_id("10.0.0.1", self.port, "10.0.0.2", 80),
            "end_reason": end_reason,
            "anomalies": anomalies(*names),
        }


@dataclass(frozen=True)
class Case:
    build: Callable[[Conn], list[dict]]  # sends the packets through a Conn, returns the records
    stats: dict | None = None  # the run's exact stats "anomalies": read alone
    config: str | None = None  # a [tcp] section: read alone, with -c
    tshark: str | None = None  # why sniffd's requests are the receiver's, so tshark's (None: NOT_COMPARED says why not)

    @property
    def name(self) -> str:
        return self.build.__name__


# --------------------------------------------------------------------- RST


def rst_with_a_random_sequence_number_toward_the_client_is_ignored(k: Conn):
    """While /two waits for its answer, a blind attacker resets "from the server":
    the client would not accept it (RFC 5961), so the connection goes on; the
    anomaly is on the transaction the server's direction carries (/two)."""
    k.handshake()
    k.exchange(10, b"/one")
    k.at(20, *k.c.client_data(request(b"/two")))
    k.at(22, k.forged("server", RST | ACK, RANDOM_SEQ))
    k.at(25, *k.c.server_data(RESPONSE))
    k.at(26, k.c.client_ack())
    k.exchange(30, b"/three")
    k.close(40)
    return [k.record(10, "/one", 1), k.record(20, "/two", 2, "tcp_rst_ignored"), k.record(30, "/three", 3)]


def rst_with_a_random_sequence_number_inside_a_request_is_ignored(k: Conn):
    """A random RST "from the client" between the two segments of /three: on /three."""
    k.handshake()
    k.exchange(10, b"/one")
    k.exchange(20, b"/two")
    head, tail = k.c.client_data(request(b"/three"), [20])
    k.at(30, head)
    k.at(31, k.forged("client", RST | ACK, RANDOM_SEQ))
    k.at(32, tail)
    k.at(35, *k.c.server_data(RESPONSE))
    k.at(36, k.c.client_ack())
    k.close(40)
    return [k.record(10, "/one", 1), k.record(20, "/two", 2), k.record(30, "/three", 3, "tcp_rst_ignored")]


def rst_after_a_forged_ack_of_unsent_bytes_is_ignored(k: Conn):
    """Two blind packets: an ACK "from the client" of server bytes 2**30 past
    anything sent, then an RST "from the server" at that number.  The client
    drops such an ACK (RFC 9293), so it widens no window: the RST is ignored."""
    k.handshake()
    k.exchange(10, b"/one")
    k.at(20, *k.c.client_data(request(b"/two")))
    far = k.next_seq("server") + (1 << 30)
    k.at(21, replace(k.c.client_ack(), ack=far % craft.SEQ_MOD))
    k.at(22, k.forged("server", RST | ACK, far))
    k.at(25, *k.c.server_data(RESPONSE))
    k.at(26, k.c.client_ack())
    k.exchange(30, b"/three")
    k.close(40)
    return [k.record(10, "/one", 1), k.record(20, "/two", 2, "tcp_rst_ignored"), k.record(30, "/three", 3)]


def rst_at_the_next_byte_from_the_server_ends_the_connection(k: Conn):
    """An RST at exactly the server's next sequence number: accepted, /two is
    written unanswered with end_reason rst."""
    k.handshake()
    k.exchange(10, b"/one")
    k.at(20, *k.c.client_data(request(b"/two")))
    k.at(22, k.c.server_rst())
    return [k.record(10, "/one", 1), k.record(20, "/two", 2, "response_missing", answer=None, end_reason="rst")]


def rst_at_the_next_byte_from_the_client_ends_the_connection(k: Conn):
    k.handshake()
    k.exchange(10, b"/one")
    k.at(20, *k.c.client_data(request(b"/two")))
    k.at(22, k.c.client_rst())
    return [k.record(10, "/one", 1), k.record(20, "/two", 2, "response_missing", answer=None, end_reason="rst")]


def requests_after_an_accepted_rst_are_logged_and_flagged(k: Conn):
    """The client resets between exchanges (nothing open), then sends more: each
    later exchange is logged, every one with tcp_data_after_rst.  They are the
    records of "a connection that goes on where the reset one stopped" (README):
    trans_depth counts on that connection, from 1."""
    k.handshake()
    k.exchange(10, b"/one")
    k.at(18, k.c.client_rst())
    k.exchange(20, b"/two")
    k.exchange(30, b"/three")
    k.close(40)
    return [
        k.record(10, "/one", 1),
        k.record(20, "/two", 1, "tcp_data_after_rst"),
        k.record(30, "/three", 2, "tcp_data_after_rst"),
    ]


def answer_after_an_accepted_rst_is_logged_and_flagged(k: Conn):
    """An RST at the server's next byte while /two waits (accepted: /two is written
    with end_reason rst), then the server answers after all: that answer has no
    request on the connection that goes on (request_missing), and it and /three
    carry tcp_data_after_rst."""
    k.handshake()
    k.exchange(10, b"/one")
    k.at(20, *k.c.client_data(request(b"/two")))
    k.at(22, k.c.server_rst())
    k.at(25, *k.c.server_data(RESPONSE))
    k.at(26, k.c.client_ack())
    k.exchange(30, b"/three")
    k.close(40)
    return [
        k.record(10, "/one", 1),
        k.record(20, "/two", 2, "response_missing", answer=None, end_reason="rst"),
        k.record(None, None, 1, "request_missing", "tcp_data_after_rst", t_answer=25),
        k.record(30, "/three", 2, "tcp_data_after_rst"),
    ]


def _refused(k: Conn, retry_at: float):
    """SYN, RST|ACK acknowledging it (port closed); ``retry_at`` ms later the client
    connects again from the same port with another ISN, and that one works."""
    syn = k.c.syn()
    k.at(0, syn)
    k.at(1, craft.Segment(SERVER[0], SERVER[1], *k.client, 0, syn.next_seq, RST | ACK))
    k.c = TcpConversation(k.client, SERVER, client_isn=5_000_000, server_isn=7_000_000)
    k.handshake(retry_at)
    k.exchange(retry_at + 10, b"/one")
    k.close(retry_at + 20)
    return [k.record(retry_at + 10, "/one", 1)]


def rst_ack_refusing_a_syn_gives_no_record_then_a_retry_two_seconds_later_is_logged(k: Conn):
    return _refused(k, 2000)


def rst_ack_refusing_a_syn_gives_no_record_then_an_immediate_retry_is_logged(k: Conn):
    """The retry comes while the refused connection is still young (its server
    side never sent a SYN-ACK): the refusal still ended it, so the new SYN is a new
    connection, not a SYN ignored on an open one."""
    return _refused(k, 3)


# --------------------------------------------------------------------- SYN


def syn_with_another_isn_on_an_open_connection_is_ignored(k: Conn):
    """Between exchanges, a SYN with a new ISN; the server answers with a challenge
    ACK (RFC 5961 section 4).  The anomaly goes on the next request (the client's
    direction carries nothing when it comes)."""
    k.handshake()
    k.exchange(10, b"/one")
    k.at(17, craft.Segment(*k.client, *SERVER, 0x12345678, 0, SYN))
    k.at(18, k.c.server_ack())
    k.exchange(20, b"/two")
    k.exchange(30, b"/three")
    k.close(40)
    return [k.record(10, "/one", 1), k.record(20, "/two", 2, "tcp_syn_ignored"), k.record(30, "/three", 3)]


def syn_answered_by_a_syn_ack_ends_the_old_connection_as_reused(k: Conn):
    """/two is never answered (the server forgot the connection); the client
    reuses the port with a new ISN and the server SYN-ACKs it: the old connection
    is written (end_reason reused), the new one starts at trans_depth 1.  The SYN
    was not ignored after all: no record says tcp_syn_ignored."""
    k.handshake()
    k.exchange(10, b"/one")
    k.at(20, *k.c.client_data(request(b"/two")))
    k.c = TcpConversation(k.client, SERVER, client_isn=0x12345678, server_isn=0x23456789)
    k.handshake(500)
    k.exchange(510, b"/again")
    k.close(520)
    return [
        k.record(10, "/one", 1),
        k.record(20, "/two", 2, "response_missing", answer=None, end_reason="reused"),
        k.record(510, "/again", 1),
    ]


def syn_and_syn_ack_forged_by_a_blind_attacker_do_not_end_the_connection(k: Conn):
    """Between exchanges, a SYN "from the client" with a new ISN X and a SYN-ACK
    "from the server" acknowledging X + 1: two blind packets.  The client, whose
    connection is open, answers the SYN-ACK with a challenge ACK and goes on with
    its own numbers (RFC 5961 section 4), as the capture shows: no segment of the
    new incarnation ever comes.  One SYN-ACK must not decide the connection's
    fate (STYLE.md, "Trust the wire"): /two and /three are logged, the forged
    pair flagged on /two (both directions carry nothing when it comes)."""
    k.handshake()
    k.exchange(10, b"/one")
    k.at(15, craft.Segment(*k.client, *SERVER, 0x5EED0000, 0, SYN))
    k.at(16, craft.Segment(*SERVER, *k.client, 0x77777777, 0x5EED0001, SYN | ACK))
    k.at(17, k.c.client_ack())  # the challenge ACK
    k.exchange(20, b"/two")
    k.exchange(30, b"/three")
    k.close(40)
    return [k.record(10, "/one", 1), k.record(20, "/two", 2, "tcp_syn_ignored"), k.record(30, "/three", 3)]


def syn_answered_by_a_syn_ack_is_counted_nowhere_as_ignored(k: Conn):
    """The same capture, read alone: the run's counters have no tcp_syn_ignored
    either, since the SYN was not ignored ("ignored ... unless the server answers
    it", flows.py)."""
    return syn_answered_by_a_syn_ack_ends_the_old_connection_as_reused(k)


def syn_ack_with_another_isn_on_an_open_connection_is_ignored(k: Conn):
    """While /two waits, a SYN-ACK with another ISN "from the server": on /two."""
    k.handshake()
    k.exchange(10, b"/one")
    k.at(20, *k.c.client_data(request(b"/two")))
    k.at(22, k.forged("server", SYN | ACK, 0x55555555))
    k.at(25, *k.c.server_data(RESPONSE))
    k.at(26, k.c.client_ack())
    k.close(40)
    return [k.record(10, "/one", 1), k.record(20, "/two", 2, "tcp_syn_ignored")]


# --------------------------------------------------------------------- FIN


def _ignored_fin(k: Conn, side: str, offset: int):
    """A FIN from ``side`` at the sequence number after its delivered bytes +
    ``offset``, outside the window: the server's while /two waits (on /two), the client's between the two
    segments of /three (on /three).  Then /four is answered by the server's
    real FIN: a FIN in the window still ends the connection."""
    k.handshake()
    k.exchange(10, b"/one")
    k.at(20, *k.c.client_data(request(b"/two")))
    if side == "server":
        k.at(22, k.forged("server", FIN | ACK, k.next_seq("server") + offset))
    k.at(25, *k.c.server_data(RESPONSE))
    k.at(26, k.c.client_ack())
    head, tail = k.c.client_data(request(b"/three"), [20])
    k.at(30, head)
    if side == "client":
        k.at(31, k.forged("client", FIN | ACK, head.next_seq + offset))
    k.at(32, tail)
    k.at(35, *k.c.server_data(RESPONSE))
    k.at(36, k.c.client_ack())
    k.at(40, *k.c.client_data(request(b"/four")))
    k.at(45, k.c.server_fin())
    k.at(46, k.c.client_fin())
    k.at(47, k.c.server_ack())
    return [
        k.record(10, "/one", 1),
        k.record(20, "/two", 2, *(["tcp_fin_ignored"] if side == "server" else [])),
        k.record(30, "/three", 3, *(["tcp_fin_ignored"] if side == "client" else [])),
        k.record(40, "/four", 4, "response_missing", answer=None, end_reason="fin"),
    ]


def fin_from_the_server_before_its_delivered_bytes_is_ignored(k: Conn):
    return _ignored_fin(k, "server", -10)


def fin_from_the_server_far_ahead_is_ignored(k: Conn):
    return _ignored_fin(k, "server", 1 << 30)


def fin_from_the_client_before_its_delivered_bytes_is_ignored(k: Conn):
    return _ignored_fin(k, "client", -10)


def fin_from_the_client_far_ahead_is_ignored(k: Conn):
    return _ignored_fin(k, "client", 1 << 30)


# ---------------------------------------------------------------- SYN data


def data_in_a_syn_the_syn_ack_does_not_acknowledge_is_dropped(k: Conn):
    """The SYN carries a decoy request line; the SYN-ACK acknowledges only the ISN
    (no TCP Fast Open), so the server dropped it; the client's real request, sent
    at ISN+1, is the one logged."""
    syn, syn_ack, ack = k.c.handshake()
    k.at(0, replace(syn, payload=request(b"/decoy")))
    k.at(1, syn_ack)
    k.at(2, ack)
    k.at(3, *k.c.client_data(request(b"/real")))
    k.at(10, *k.c.server_data(RESPONSE))
    k.at(11, k.c.client_ack())
    k.close(20)
    return [k.record(3, "/real", 1, "tcp_syn_data", duration=7.0)]


def data_in_a_syn_the_syn_ack_acknowledges_is_the_request(k: Conn):
    """TCP Fast Open: the SYN-ACK acknowledges ISN+1+len, the SYN's bytes are the
    request (its ts is the SYN's)."""
    k.at(0, k.c.syn(request(b"/tfo")))
    k.at(1, k.c.syn_ack())
    k.at(2, k.c.client_ack())
    k.at(10, *k.c.server_data(RESPONSE))
    k.at(11, k.c.client_ack())
    k.close(20)
    return [k.record(0, "/tfo", 1, duration=10.0)]


def data_in_a_syn_ack_is_dropped(k: Conn):
    """The SYN-ACK carries a decoy answer that the conversation does not count:
    dropped, flagged on the next response (the server's direction carries nothing
    yet)."""
    syn = k.c.syn()
    syn_ack = k.c.syn_ack()
    k.at(0, syn)
    k.at(1, replace(syn_ack, payload=b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"))
    k.at(2, k.c.client_ack())
    k.exchange(10, b"/one")
    k.close(20)
    return [k.record(10, "/one", 1, "tcp_syn_data")]


# -------------------------------------------------------------- TTL decoys


def _ttl_decoy(k: Conn, decoy_first: bool):
    k.handshake()
    k.exchange(10, b"/one")
    (real,) = k.c.client_data(request(b"/admin"))
    decoy = replace(real.with_payload(request(b"/index")), ttl=1)
    k.at(20, decoy if decoy_first else real)
    k.at(21, real if decoy_first else decoy)
    k.at(25, *k.c.server_data(RESPONSE))
    k.at(26, k.c.client_ack())
    k.exchange(30, b"/three")
    k.close(40)


def ttl_1_decoy_before_a_request_is_kept_as_the_first_copy_and_flagged(k: Conn):
    """A copy of /admin's sequence range with other bytes ("/index") and TTL 1
    comes first: the first copy wins, so the record says /index (what the server
    never got), with ip_ttl_changed and tcp_overlap_conflict; /three is clean."""
    _ttl_decoy(k, decoy_first=True)
    return [
        k.record(10, "/one", 1),
        k.record(20, "/index", 2, "ip_ttl_changed", "tcp_overlap_conflict"),
        k.record(30, "/three", 3),
    ]


def ttl_1_decoy_after_a_request_is_flagged_on_that_request(k: Conn):
    """The same decoy after the real bytes: /admin is logged, and the decoy's two
    anomalies go on /admin, whose bytes it copies, never on /three."""
    _ttl_decoy(k, decoy_first=False)
    return [
        k.record(10, "/one", 1),
        k.record(20, "/admin", 2, "ip_ttl_changed", "tcp_overlap_conflict"),
        k.record(30, "/three", 3),
    ]


def ttl_1_decoy_as_the_first_data_segment_sets_the_reference(k: Conn):
    """The decoy is the direction's first data segment, so its TTL (1) is the
    reference (flows.py: "the direction's first data segment"): the real copy
    (TTL 64) is flagged on /index, whose bytes it copies, and so is /two, whose TTL
    is 63 from that reference.  (A decoy that opens the connection makes every
    later record carry ip_ttl_changed: the rule as written.)"""
    k.handshake()
    (real,) = k.c.client_data(request(b"/admin"))
    k.at(10, replace(real.with_payload(request(b"/index")), ttl=1))
    k.at(11, real)
    k.at(15, *k.c.server_data(RESPONSE))
    k.at(16, k.c.client_ack())
    k.exchange(20, b"/two")
    k.close(40)
    return [
        k.record(10, "/index", 1, "ip_ttl_changed", "tcp_overlap_conflict"),
        k.record(20, "/two", 2, "ip_ttl_changed"),
    ]


# --------------------------------------------------------- bad checksums


def _chaff(k: Conn, chaff_first: bool):
    """/first with valid checksums (as long as the chaff: auto checks it), then a
    copy of /admin's range with other bytes and a wrong checksum, before or after
    the real /admin; then /three."""
    k.handshake()
    k.exchange(10, b"/first")
    (real,) = k.c.client_data(request(b"/admin"))
    chaff = replace(real.with_payload(request(b"/index")), bad_checksum=True)
    k.at(20, chaff if chaff_first else real)
    k.at(21, real if chaff_first else chaff)
    k.at(25, *k.c.server_data(RESPONSE))
    k.at(26, k.c.client_ack())
    k.exchange(30, b"/three")
    k.close(40)


def bad_checksum_chaff_before_a_request_is_dropped(k: Conn):
    """verify_checksums auto, the client's data already showed a valid checksum:
    the receiver drops the chaff, so does sniffd; /admin's first byte came with the
    real copy, at 21 ms."""
    _chaff(k, chaff_first=True)
    return [
        k.record(10, "/first", 1),
        k.record(21, "/admin", 2, "tcp_bad_checksum", duration=4.0),
        k.record(30, "/three", 3),
    ]


def bad_checksum_chaff_after_a_request_is_flagged_on_that_request(k: Conn):
    _chaff(k, chaff_first=False)
    return [k.record(10, "/first", 1), k.record(20, "/admin", 2, "tcp_bad_checksum"), k.record(30, "/three", 3)]


def bad_checksum_chaff_with_checks_off_is_the_first_copy(k: Conn):
    """verify_checksums off: the chaff is data like any other, and first: /index,
    and the real copy disagrees with it (tcp_overlap_conflict)."""
    _chaff(k, chaff_first=True)
    return [k.record(10, "/first", 1), k.record(20, "/index", 2, "tcp_overlap_conflict"), k.record(30, "/three", 3)]


def bad_checksum_chaff_with_checks_on_is_dropped(k: Conn):
    _chaff(k, chaff_first=True)
    return [
        k.record(10, "/first", 1),
        k.record(21, "/admin", 2, "tcp_bad_checksum", duration=4.0),
        k.record(30, "/three", 3),
    ]


def bad_checksums_on_every_client_packet_are_offload_and_taken(k: Conn):
    """Captured on the client, which offloads checksums: every packet it sends has
    a wrong one.  auto never saw a valid one from it, so nothing is checked."""
    k.handshake()
    k.exchange(10, b"/one")
    k.exchange(20, b"/two")
    k.exchange(30, b"/three")
    k.close(40)
    k.packets = [(t, replace(s, bad_checksum=True) if s.src == k.client[0] else s) for t, s in k.packets]
    return [k.record(10, "/one", 1), k.record(20, "/two", 2), k.record(30, "/three", 3)]


def bad_checksum_on_a_segment_the_server_acknowledged_is_used_and_flagged(k: Conn):
    """/one comes in two valid segments (16 and 25 bytes); /two in one 41-byte
    segment with a wrong checksum, and no other copy ever comes.  Checked (auto
    saw valid ones, and it is no larger than a full segment), kept aside; the
    server's answer acknowledges those bytes, so it got them: /two is logged,
    flagged."""
    k.handshake()
    k.at(10, *k.c.client_data(request(b"/one"), [16]))
    k.at(15, *k.c.server_data(RESPONSE))
    k.at(16, k.c.client_ack())
    (two,) = k.c.client_data(request(b"/two"))
    k.at(20, replace(two, bad_checksum=True))
    k.at(25, *k.c.server_data(RESPONSE))
    k.at(26, k.c.client_ack())
    k.close(40)
    return [k.record(10, "/one", 1), k.record(20, "/two", 2, "tcp_bad_checksum")]


SUPER = b"/two" + b"o" * 1500


def bad_checksum_on_a_super_segment_is_taken(k: Conn):
    """/one in valid segments; /two in one segment larger than a full one
    (1,460 bytes) with a wrong checksum: a GRO/TSO super-segment the capture
    host's NIC cuts and sums, not checked under auto, nothing flagged."""
    k.handshake()
    k.at(10, *k.c.client_data(request(b"/one"), [16]))
    k.at(15, *k.c.server_data(RESPONSE))
    k.at(16, k.c.client_ack())
    (two,) = k.c.client_data(request(SUPER))
    assert len(two.payload) > 1460
    k.at(20, replace(two, bad_checksum=True))
    k.at(25, *k.c.server_data(RESPONSE))
    k.at(26, k.c.client_ack())
    k.close(40)
    return [k.record(10, "/one", 1), k.record(20, SUPER.decode(), 2)]


# ------------------------------------------------------------ IP fragments


def overlapping_ip_fragments_drop_the_datagram_and_the_retransmission_is_logged(k: Conn):
    """/two's datagram comes in 3 fragments, and before the second one a copy of it
    with other bytes ("/etc" for "/two"): the whole datagram is dropped (a receiver
    sees neither version); the client retransmits /two unfragmented 200 ms later
    and that is what is logged, with ip_fragment_overlap."""
    k.handshake()
    k.exchange(10, b"/one")
    (two,) = k.c.client_data(request(b"/two"))
    frags = craft.ipv4_fragments(craft.ip_packet(two, ip_id=0x7777), 3)
    evil = craft.ipv4_fragments(craft.ip_packet(two.with_payload(request(b"/etc")), ip_id=0x7777), 3)
    assert frags[1] != evil[1] and frags[0][20:] != evil[0][20:]  # the overlap differs; so does the TCP checksum
    k.at(20, frags[0], evil[1], frags[1], frags[2])
    k.at(220, two)
    k.at(225, *k.c.server_data(RESPONSE))
    k.at(226, k.c.client_ack())
    k.exchange(230, b"/three")
    k.close(240)
    return [k.record(10, "/one", 1), k.record(220, "/two", 2, "ip_fragment_overlap"), k.record(230, "/three", 3)]


# ------------------------------------------------------------- urgent data


def urgent_data_in_a_request_is_flagged(k: Conn):
    k.handshake()
    k.exchange(10, b"/one")
    (two,) = k.c.client_data(request(b"/two"))
    k.at(20, replace(two, flags=two.flags | URG, urgent=1))
    k.at(25, *k.c.server_data(RESPONSE))
    k.at(26, k.c.client_ack())
    k.exchange(30, b"/three")
    k.close(40)
    return [k.record(10, "/one", 1), k.record(20, "/two", 2, "tcp_urgent_data"), k.record(30, "/three", 3)]


# ------------------------------------------- conflicting retransmissions

LONG = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
LONG_ANSWER = {**ANSWER, "headers": {"content-length": "10"}, "body_len": 10}


def conflicting_copy_of_an_answered_request_not_yet_written_goes_on_it(k: Conn):
    """/one's answer has begun (head and 4 of 10 body bytes) when a copy of /one's
    bytes with others comes: /one is not written yet, the anomaly goes on it."""
    k.handshake()
    (one,) = k.c.client_data(request(b"/one"))
    head, tail = k.c.server_data(LONG, [len(LONG) - 6])
    k.at(10, one)
    k.at(15, head)
    k.at(16, one.with_payload(request(b"/uno")))
    k.at(17, tail)
    k.at(18, k.c.client_ack())
    k.exchange(20, b"/two")
    k.close(40)
    return [k.record(10, "/one", 1, "tcp_overlap_conflict", duration=7.0, answer=LONG_ANSWER), k.record(20, "/two", 2)]


def conflicting_copy_of_a_written_request_goes_on_no_record(k: Conn):
    """/one is answered (written) when a copy of its bytes with others comes: the
    anomaly is counted, and put on no record (not on /two, which it did not touch)."""
    k.handshake()
    (one,) = k.c.client_data(request(b"/one"))
    k.at(10, one)
    k.at(15, *k.c.server_data(RESPONSE))
    k.at(16, k.c.client_ack())
    k.at(17, one.with_payload(request(b"/uno")))
    k.exchange(20, b"/two")
    k.close(40)
    return [k.record(10, "/one", 1), k.record(20, "/two", 2)]


def conflicting_copy_of_a_response_in_progress_goes_on_it(k: Conn):
    k.handshake()
    k.at(10, *k.c.client_data(request(b"/one")))
    head, tail = k.c.server_data(LONG, [len(LONG) - 6])
    k.at(15, head)
    k.at(16, head.with_payload(head.payload.replace(b"0123", b"4567")))
    k.at(17, tail)
    k.at(18, k.c.client_ack())
    k.exchange(20, b"/two")
    k.close(40)
    return [k.record(10, "/one", 1, "tcp_overlap_conflict", duration=7.0, answer=LONG_ANSWER), k.record(20, "/two", 2)]


def conflicting_copy_of_a_written_response_goes_on_no_record(k: Conn):
    k.handshake()
    k.at(10, *k.c.client_data(request(b"/one")))
    (answer,) = k.c.server_data(RESPONSE)
    k.at(15, answer)
    k.at(16, k.c.client_ack())
    k.at(17, answer.with_payload(RESPONSE.replace(b"ok", b"KO")))
    k.exchange(20, b"/two")
    k.close(40)
    return [k.record(10, "/one", 1), k.record(20, "/two", 2)]


# ------------------------------------------------- handshake out of order


def _reordered(k: Conn, order: list[str]):
    """The handshake and the request in ``order`` at 0, 1, 2, 3 ms; the answer at
    10 ms.  The request's ts is its packet's, wherever it came."""
    syn, syn_ack, ack = k.c.handshake()
    (req,) = k.c.client_data(request(b"/one"))
    named = {"syn": syn, "syn_ack": syn_ack, "ack": ack, "request": req}
    for t, name in enumerate(order):
        k.at(t, named[name])
    k.at(10, *k.c.server_data(RESPONSE))
    k.at(11, k.c.client_ack())
    k.close(20)
    t = order.index("request")
    return [k.record(t, "/one", 1, duration=10.0 - t)]


def request_before_the_syn(k: Conn):
    return _reordered(k, ["request", "syn", "syn_ack", "ack"])


def syn_ack_before_the_syn(k: Conn):
    return _reordered(k, ["syn_ack", "syn", "ack", "request"])


def request_before_the_syn_ack(k: Conn):
    return _reordered(k, ["syn", "request", "syn_ack", "ack"])


def handshake_backwards_after_the_request(k: Conn):
    return _reordered(k, ["request", "ack", "syn_ack", "syn"])


def no_handshake_at_all_is_a_midstream_pickup(k: Conn):
    k.c.handshake()  # sent before the capture began
    k.at(0, *k.c.client_data(request(b"/one")))
    k.at(10, *k.c.server_data(RESPONSE))
    k.at(11, k.c.client_ack())
    k.close(20)
    return [k.record(0, "/one", 1, "midstream_pickup", duration=10.0)]


# ------------------------------------------------------------------- table

CASES = [
    Case(rst_with_a_random_sequence_number_toward_the_client_is_ignored,
         tshark="the client ignores the RST; the server got the three requests"),
    Case(rst_with_a_random_sequence_number_inside_a_request_is_ignored,
         tshark="the server ignores the RST and gets the three requests"),
    Case(rst_after_a_forged_ack_of_unsent_bytes_is_ignored,
         tshark="the client drops the ACK and ignores the RST; the server got the three requests"),
    Case(rst_at_the_next_byte_from_the_server_ends_the_connection, stats={"response_missing": 1},
         tshark="the server got /one and /two, then reset"),
    Case(rst_at_the_next_byte_from_the_client_ends_the_connection, tshark="the server got /one and /two"),
    Case(requests_after_an_accepted_rst_are_logged_and_flagged,
         tshark="the server answered /two and /three: it got them"),
    Case(answer_after_an_accepted_rst_is_logged_and_flagged, tshark="the server got and answered the three requests"),
    Case(rst_ack_refusing_a_syn_gives_no_record_then_a_retry_two_seconds_later_is_logged, stats={},
         tshark="the server got only the retry's /one"),
    Case(rst_ack_refusing_a_syn_gives_no_record_then_an_immediate_retry_is_logged, stats={},
         tshark="the server got only the retry's /one"),
    Case(syn_with_another_isn_on_an_open_connection_is_ignored),
    Case(syn_answered_by_a_syn_ack_ends_the_old_connection_as_reused,
         tshark="the server got /one and /two, then /again on the new connection"),
    Case(syn_answered_by_a_syn_ack_is_counted_nowhere_as_ignored, stats={"response_missing": 1},
         tshark="the server got /one and /two, then /again on the new connection"),
    Case(syn_and_syn_ack_forged_by_a_blind_attacker_do_not_end_the_connection),
    Case(syn_ack_with_another_isn_on_an_open_connection_is_ignored,
         tshark="the client ignores the SYN-ACK; the server got both requests"),
    Case(fin_from_the_server_before_its_delivered_bytes_is_ignored, tshark="the server got the four requests"),
    Case(fin_from_the_server_far_ahead_is_ignored, tshark="the server got the four requests"),
    Case(fin_from_the_client_before_its_delivered_bytes_is_ignored,
         tshark="the server ignores the FIN and gets the four requests"),
    Case(fin_from_the_client_far_ahead_is_ignored),
    Case(data_in_a_syn_the_syn_ack_does_not_acknowledge_is_dropped),
    Case(data_in_a_syn_the_syn_ack_acknowledges_is_the_request, tshark="the server took the SYN's data: /tfo"),
    Case(data_in_a_syn_ack_is_dropped, tshark="the server got /one (the SYN-ACK's data was an answer)"),
    Case(ttl_1_decoy_before_a_request_is_kept_as_the_first_copy_and_flagged),
    Case(ttl_1_decoy_after_a_request_is_flagged_on_that_request,
         tshark="the server got /admin; the decoy expired on the way"),
    Case(ttl_1_decoy_as_the_first_data_segment_sets_the_reference),
    Case(bad_checksum_chaff_before_a_request_is_dropped),
    Case(bad_checksum_chaff_after_a_request_is_flagged_on_that_request,
         tshark="the server got /admin and dropped the chaff"),
    Case(bad_checksum_chaff_with_checks_off_is_the_first_copy, config='verify_checksums = "off"'),
    Case(bad_checksum_chaff_with_checks_on_is_dropped, config='verify_checksums = "on"'),
    Case(bad_checksums_on_every_client_packet_are_offload_and_taken, stats={},
         tshark="the client's NIC computed the checksums on the wire: the server got the three requests"),
    Case(bad_checksum_on_a_segment_the_server_acknowledged_is_used_and_flagged, stats={"tcp_bad_checksum": 1},
         tshark="the server acknowledged /two: it got both requests"),
    Case(bad_checksum_on_a_super_segment_is_taken, stats={},
         tshark="the client's NIC cut and summed the super-segment: the server got both requests"),
    Case(overlapping_ip_fragments_drop_the_datagram_and_the_retransmission_is_logged,
         stats={"ip_fragment_overlap": 1}),
    Case(urgent_data_in_a_request_is_flagged),
    Case(conflicting_copy_of_an_answered_request_not_yet_written_goes_on_it,
         tshark="the server keeps the bytes it has (the first copy): /one"),
    Case(conflicting_copy_of_a_written_request_goes_on_no_record, stats={"tcp_overlap_conflict": 1},
         tshark="the server keeps the bytes it has (the first copy): /one"),
    Case(conflicting_copy_of_a_response_in_progress_goes_on_it, tshark="the requests are untouched"),
    Case(conflicting_copy_of_a_written_response_goes_on_no_record, stats={"tcp_overlap_conflict": 1},
         tshark="the requests are untouched"),
    Case(request_before_the_syn, tshark="only the capture reordered the packets"),
    Case(syn_ack_before_the_syn, tshark="only the capture reordered the packets"),
    Case(request_before_the_syn_ack, tshark="only the capture reordered the packets"),
    Case(handshake_backwards_after_the_request, tshark="only the capture reordered the packets"),
    Case(no_handshake_at_all_is_a_midstream_pickup, tshark="the server got /one"),
]
# Cases whose requests tshark is not asked about, and why.
NOT_COMPARED = {
    "syn_with_another_isn_on_an_open_connection_is_ignored":
        "the server ignores the SYN and gets the three requests, but tshark takes the SYN for a new connection "
        "and dissects nothing after it (it lists /one only)",
    "syn_and_syn_ack_forged_by_a_blind_attacker_do_not_end_the_connection":
        "as for a SYN with another ISN: tshark takes it for a new connection",
    "fin_from_the_client_far_ahead_is_ignored":
        "the server ignores the FIN and gets the four requests, but tshark ends the client's stream at a FIN "
        "wherever its sequence number (it lists /one and /two only)",
    "data_in_a_syn_the_syn_ack_does_not_acknowledge_is_dropped":
        "the server dropped the SYN's data and got /real, but tshark dissects a SYN's data whatever the SYN-ACK "
        "acknowledges (it lists /decoy)",
    "ttl_1_decoy_before_a_request_is_kept_as_the_first_copy_and_flagged":
        "sniffd keeps the first copy, /index, which expired before the server (flagged): not the receiver's view",
    "ttl_1_decoy_as_the_first_data_segment_sets_the_reference":
        "sniffd keeps the first copy, /index, which expired before the server (flagged): not the receiver's view",
    "bad_checksum_chaff_before_a_request_is_dropped":
        "the server dropped the chaff and got /admin, so does sniffd, but tshark dissects a segment whatever its "
        "checksum, even with tcp.check_checksum on (it lists /index)",
    "bad_checksum_chaff_with_checks_on_is_dropped":
        "as with auto: tshark does not drop a segment for its checksum",
    "bad_checksum_chaff_with_checks_off_is_the_first_copy":
        "verify_checksums off takes the chaff, /index: not the receiver's view, by configuration",
    "overlapping_ip_fragments_drop_the_datagram_and_the_retransmission_is_logged":
        "the server dropped the datagram and got /two from the retransmission, but tshark reassembles the "
        "datagram with the overlapping fragment (it lists /etc)",
    "urgent_data_in_a_request_is_flagged":
        "a server without SO_OOBINLINE takes the urgent byte (the G) out of the stream and reads 'ET /two ...'; "
        "sniffd logs the bytes in line and flags them: not the receiver's view",
}
PORTS = {case.name: FIRST_PORT + i for i, case in enumerate(CASES)}
ALONE = [c for c in CASES if c.stats is not None or c.config is not None]
SHARED = [c for c in CASES if c not in ALONE]


def built(case: Case) -> tuple[list[tuple[float, craft.Item]], list[dict]]:
    """(packets, expected records) of ``case`` on its own client port."""
    k = Conn(PORTS[case.name])
    expected = case.build(k)
    return k.packets, expected


def write(path, packets: list[tuple[float, craft.Item]]) -> None:
    """Packets in time order (sorted stably: those at one time keep their order)."""
    craft.capture(path, [(ms(t), item) for t, item in sorted(packets, key=lambda p: p[0])])


def read(pcap, *extra) -> tuple[list[dict], dict]:
    """``sniffd read --stats``: (records, stats["anomalies"])."""
    out = pcap.with_name(pcap.name + ".out.jsonl")
    proc = run_sniffd("read", pcap, "-o", out, "--stats", *extra)
    assert proc.returncode == 0, proc.stderr
    return without_run_fields(load_jsonl(out)), json.loads(proc.stderr.strip().splitlines()[-1])["anomalies"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The cases without stats or config, all in one capture: records by client port."""
    pcap = tmp_path_factory.mktemp("tcp_control") / "shared.pcap"
    write(pcap, [p for case in SHARED for p in built(case)[0]])
    records, _stats = read(pcap)
    by_port: dict[int, list[dict]] = {}
    for r in records:
        by_port.setdefault(r["client"]["port"], []).append(r)
    return pcap, by_port


@pytest.mark.parametrize("case", SHARED, ids=[c.name for c in SHARED])
def test_shared_capture(case, shared):
    _pcap, by_port = shared
    assert built(case)[1] == by_port.get(PORTS[case.name], [])


@pytest.mark.parametrize("case", ALONE, ids=[c.name for c in ALONE])
def test_alone(case, tmp_path):
    packets, expected = built(case)
    pcap = tmp_path / f"{case.name}.pcap"
    write(pcap, packets)
    extra = []
    if case.config is not None:
        conf = tmp_path / "sniffd.toml"
        conf.write_text(f"[tcp]\n{case.config}\n")
        extra = ["-c", conf]
    records, stats = read(pcap, *extra)
    if case.stats is None:
        assert expected == records
    else:
        assert (expected, case.stats) == (records, stats)


# ------------------------------------------------------------------ tshark



def tshark_uris(pcap) -> dict[int, list[str]]:
    """{client port: request URIs tshark dissects, in order}."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-Y", "http.request", "-T", "fields", "-E", "occurrence=a",
         "-E", "aggregator=\x1f", "-e", "tcp.srcport", "-e", "http.request.uri"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    found: dict[int, list[str]] = {}
    for line in out.splitlines():
        port, uris = line.split("\t")
        found.setdefault(int(port), []).extend(uris.split("\x1f"))
    return found


COMPARED = [c for c in CASES if c.tshark is not None]


def test_every_case_is_compared_with_tshark_or_says_why_not():
    assert ([], sorted(NOT_COMPARED)) == (
        [c.name for c in COMPARED if c.name in NOT_COMPARED], sorted(c.name for c in CASES if c.tshark is None))


@pytest.fixture(scope="module")
def tshark_view(tmp_path_factory):
    """The request URIs tshark dissects in one capture of every compared case, by client port."""
    pcap = tmp_path_factory.mktemp("tcp_control_tshark") / "compared.pcap"
    write(pcap, [p for case in COMPARED for p in built(case)[0]])
    return tshark_uris(pcap)


@pytest.mark.parametrize("case", COMPARED, ids=[c.name for c in COMPARED])
def test_tshark_dissects_the_requests_sniffd_logs(case, tshark_view):
    uris = [r["request"]["uri"] for r in built(case)[1] if r["request"] is not None]
    assert uris == tshark_view.get(PORTS[case.name], [])

