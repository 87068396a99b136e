"""TLS in the flow table (sniffd.flows with sniffd.tls.flow.TlsFlow): the client's
ClientHello makes a connection TLS, one TlsRecord per connection, its memory in the
budget, and the write-timing rule.  Simulated time, plain floats."""

from __future__ import annotations

import ipaddress
import os

import craft
from craft import ACK, TcpConversation

from sniffd.decode import Segment
from sniffd.flows import FlowTable
from sniffd.http import HttpSession
from sniffd.settings import Settings
from sniffd.tls import TlsFlow, TlsRecord
from sniffd.tls.flow import EARLY_RECORD_S
from sniffd.tls.starttls import TlsWatch

import tlscraft as T

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 8443)

CH = T.record(22, T.client_hello([0x1301], [T.ext_sni("a.test"), T.ext_supported_versions([0x0304]),
                                            T.ext_key_share([(0x11EC, 1216)])]), version=0x0301)  # fmt: skip
SH = T.record(22, T.server_hello(0x1301, [(0x002B, b"\x03\x04"), (0x0033, b"\x00\x1d" + T.vec16(os.urandom(32)))]))
SERVER_FLIGHT = SH + T.CCS + T.app_data(500)
CLIENT_FINISH = T.CCS + T.app_data(60)


def wire(s: craft.Segment) -> Segment:
    return Segment(
        ipaddress.ip_address(s.src).packed, ipaddress.ip_address(s.dst).packed, s.sport, s.dport, s.seq,
        s.ack if s.flags & ACK else 0, s.flags, s.payload, 0, s.ttl, 1, None,
    )  # fmt: skip


def feed(table: FlowTable, segs, now: float) -> list:
    out = []
    for s in segs:
        out += table.feed(wire(s), now)
    return out


def session(table: FlowTable):
    (conn,) = table.lru
    return conn._http


def test_client_hello_first_makes_a_tls_session_and_its_partial_hello_is_in_the_budget():
    table = FlowTable(Settings())
    c = TcpConversation(CLIENT, SERVER)
    feed(table, c.handshake(), 0.0)
    first, rest = c.client_data(CH, [100])
    assert [] == feed(table, [first], 1.0)
    t = session(table)
    # The hello is not whole yet: what the session holds is charged, one session counted.
    assert (TlsFlow, 1) == (type(t), table.meter.sessions)
    assert t.session.mem == table.meter.http_bytes > 0
    feed(table, [rest], 1.5)
    feed(table, c.server_data(SERVER_FLIGHT), 2.0)
    feed(table, c.client_data(CLIENT_FINISH), 3.0)
    assert (0, 0, 2.0 + 1.0) == (t.session.mem, table.meter.http_bytes, t.done_at)
    (item,) = table.close_all(None, 10.0)
    rec = item[1]
    assert (TlsRecord, 1.0, "end_of_input", set(), True) == (
        type(rec), rec.ts, rec.end_reason, rec.anomalies, rec.tls["established"])
    assert (len(CH) + len(CLIENT_FINISH), len(SERVER_FLIGHT)) == (rec.tls["client_bytes"], rec.tls["server_bytes"])
    assert 2000.0 == rec.duration_ms  # to its last byte: the end of input is not the connection's


def test_a_client_opening_with_bytes_that_are_not_a_hello_keeps_http():
    table = FlowTable(Settings())
    c = TcpConversation(CLIENT, SERVER)
    feed(table, c.handshake(), 0.0)
    feed(table, c.client_data(b"\x16\x03\x01\x00\x05hello"), 1.0)  # a record too short for a hello
    assert HttpSession is type(session(table))


def test_server_speaking_first_is_watched_and_a_later_hello_gets_a_starttls_record():
    """SMTP: the server greets (no HTTP server speaks first), the client asks for
    STARTTLS, then sends its hello: one TLS record, from the hello on, naming smtp."""
    table = FlowTable(Settings())
    c = TcpConversation(CLIENT, SERVER)
    feed(table, c.handshake(), 0.0)
    greeting, go = b"220 smtp ready\r\n", b"220 2.0.0 go ahead\r\n"
    feed(table, c.server_data(greeting), 1.0)
    assert TlsWatch is type(session(table))
    feed(table, c.client_data(b"STARTTLS\r\n"), 1.1)
    feed(table, c.server_data(go), 1.2)
    assert [] == feed(table, c.client_data(CH), 2.0)
    feed(table, c.server_data(SERVER_FLIGHT), 2.5)
    feed(table, c.client_data(CLIENT_FINISH), 3.0)
    (item,) = table.close_all(None, 10.0)
    rec = item[1]
    assert (TlsRecord, 2.0, "smtp", True, set()) == (
        type(rec), rec.ts, rec.tls["starttls"], rec.tls["established"], rec.anomalies)
    assert (len(CH) + len(CLIENT_FINISH), len(SERVER_FLIGHT)) == (rec.tls["client_bytes"], rec.tls["server_bytes"])
    assert 0 == table.counts.get("non_http", 0)


def test_server_speaking_first_without_tls_is_counted_non_http_and_gives_no_record():
    table = FlowTable(Settings())
    c = TcpConversation(CLIENT, SERVER)
    feed(table, c.handshake(), 0.0)
    feed(table, c.server_data(b"+OK POP3 ready\r\n"), 1.0)
    feed(table, c.client_data(b"USER a\r\n"), 1.1)
    feed(table, c.server_data(b"+OK\r\n"), 1.2)
    assert [] == table.close_all(None, 10.0)
    assert 1 == table.counts.get("non_http", 0)


def test_a_server_whose_first_bytes_are_a_status_line_keeps_http():
    """The request was lost whole: its response still starts with HTTP/."""
    table = FlowTable(Settings())
    c = TcpConversation(CLIENT, SERVER)
    feed(table, c.handshake(), 0.0)
    feed(table, c.server_data(b"HTTP/1.1 204 No Content\r\n\r\n"), 1.0)
    assert HttpSession is type(session(table))


def test_handshake_cut_by_eviction_is_written_evicted():
    table = FlowTable(Settings(max_connections=1))
    c = TcpConversation(CLIENT, SERVER)
    feed(table, c.handshake(), 0.0)
    feed(table, c.client_data(CH), 1.0)
    other = TcpConversation(("10.0.0.1", 40001), SERVER)
    ((_conn, rec),) = feed(table, [other.syn()], 2.0)
    assert ("evicted", {"conn_evicted", "tls_truncated_handshake"}, 0) == (
        rec.end_reason, rec.anomalies, table.meter.http_bytes)


def test_long_lived_connection_is_written_once_early_then_not_at_its_end():
    table = FlowTable(Settings())
    c = TcpConversation(CLIENT, SERVER)
    feed(table, c.handshake(), 0.0)
    feed(table, c.client_data(CH), 1.0)
    feed(table, c.server_data(SERVER_FLIGHT), 2.0)
    feed(table, c.client_data(CLIENT_FINISH), 3.0)
    assert [] == table.expire(3.0 + EARLY_RECORD_S - 0.5)
    ((_conn, rec),) = table.expire(3.0 + EARLY_RECORD_S)
    assert ("open", 1.0, EARLY_RECORD_S * 1000 + 2000.0) == (rec.end_reason, rec.ts, rec.duration_ms)
    feed(table, c.client_data(T.app_data(100)), 20.0)
    feed(table, c.close(), 21.0)
    assert ([], set()) == (table.close_all(None, 30.0), table.tls_open)


def test_tls_flow_takes_every_chunk_shape_the_flow_table_sends():
    """bytes at ``now``, (bytes, ts), (bytes, ts, ack), and int gaps (HttpSession.feed's chunks)."""
    t = TlsFlow()
    t.feed(True, [(CH[:50], 1.0, None), (CH[50:], 1.5)], 9.0)
    t.feed(False, [SERVER_FLIGHT], 2.0)
    t.feed(True, [CLIENT_FINISH, 1000], 3.0)
    t.note(True, ("tcp_gap",))
    t.close(None, 4.0, "fin")
    (rec,) = t.take()
    assert (1.0, 3000.0, "fin", {"tcp_gap"}, len(CH) + len(CLIENT_FINISH) + 1000) == (
        rec.ts, rec.duration_ms, rec.end_reason, rec.anomalies, rec.tls["client_bytes"])
    assert ([], 0) == (t.take(), t.open_transactions)


def test_a_hello_whose_first_segment_is_only_its_record_header_is_still_tls_from_the_start():
    """A client that writes the 5-byte record header alone (too short to tell a hello):
    the connection is watched, and the next segment decides; nothing came before the
    hello, so starttls is null."""
    table = FlowTable(Settings())
    c = TcpConversation(CLIENT, SERVER)
    feed(table, c.handshake(), 0.0)
    feed(table, c.client_data(CH[:5]), 1.0)
    feed(table, c.client_data(CH[5:]), 1.1)
    feed(table, c.server_data(SERVER_FLIGHT), 2.0)
    feed(table, c.client_data(CLIENT_FINISH), 3.0)
    (item,) = table.close_all(None, 10.0)
    rec = item[1]
    assert (TlsRecord, 1.0, None, True, "a.test", len(CH) + len(CLIENT_FINISH)) == (
        type(rec), rec.ts, rec.tls["starttls"], rec.tls["established"], rec.tls["sni"], rec.tls["client_bytes"])


def test_a_fin_that_overtakes_the_last_data_ends_the_connection_when_the_data_comes():
    """The server's FIN is captured before its last data segment (reordered): the
    connection ends with that segment, not at the end of the input (end_reason fin; the
    FIN's check used to wait for a FIN-carrying segment and never came)."""
    table = FlowTable(Settings())
    c = TcpConversation(CLIENT, SERVER)
    feed(table, c.handshake(), 0.0)
    feed(table, c.client_data(CH), 1.0)
    first, last = c.server_data(SERVER_FLIGHT, [200])
    feed(table, c.client_data(CLIENT_FINISH), 1.5)
    fin_c = c.client_fin()
    fin_s = c.server_fin()
    out = feed(table, [first, fin_c, fin_s], 2.0)
    assert [] == out
    ((_conn, rec),) = feed(table, [last], 2.1)
    assert ("fin", True) == (rec.end_reason, rec.tls["established"])
