"""sniffd.tls.starttls: naming the cleartext protocol, telling a non-HTTP start, and
TlsWatch finding the hello where a client may send it (and nowhere else).  Pure, no time."""

from __future__ import annotations

import pytest

from sniffd.budget import Meter
from sniffd.http import HttpSession
from sniffd.tls.starttls import AFTER_GAP_BYTES, SCAN_BYTES, TlsWatch, looks_like_other_protocol, protocol_name

import tlscraft as T

HELLO = T.record(22, T.client_hello([0x1301], [T.ext_sni("a.test"), T.ext_supported_versions([0x0304]),
                                               T.ext_key_share([(0x11EC, 1216)])]), version=0x0301)  # fmt: skip
SERVER_HELLO = T.record(22, T.server_hello(0x1301, [(0x002B, b"\x03\x04")]))
PG_SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
MYSQL_GREETING = b"\x4a\x00\x00\x00\x0a8.0.36\x00" + bytes(61)
MYSQL_SSL_REQUEST = b"\x20\x00\x00\x01" + (0x0800 | 0x0200).to_bytes(4, "little") + bytes(28)
RDP_CR = b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x01\x00\x00\x00"
LDAP_STARTTLS = b"\x30\x1d\x02\x01\x01\x77\x18\x80\x16" + b"1.3.6.1.4.1.1466.20037"


@pytest.mark.parametrize("client, server, expected", [
    (b"EHLO c.test\r\nSTARTTLS\r\n", b"220 mx.test ESMTP\r\n", "smtp"),
    (b"a1 CAPABILITY\r\na2 STARTTLS\r\n", b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n", "imap"),
    (b"CAPA\r\nSTLS\r\n", b"+OK POP3 ready\r\n", "pop3"),
    (b"AUTH TLS\r\n", b"220 ftp.test FTP ready\r\n", "ftp"),
    (b"<?xml version='1.0'?><stream:stream to='x.test'>", b"<?xml version='1.0'?><stream:stream>", "xmpp"),
    (LDAP_STARTTLS, b"\x30\x0c\x02\x01\x01\x78\x07\x0a\x01\x00\x04\x00\x04\x00", "ldap"),
    (b"CAP LS 302\r\nSTARTTLS\r\n", b":irc.test 670 * :STARTTLS successful\r\n", "irc"),
    (PG_SSL_REQUEST, b"S", "postgresql"),
    (MYSQL_SSL_REQUEST, MYSQL_GREETING, "mysql"),
    (RDP_CR, b"\x03\x00\x00\x13\x0e\xd0", "rdp"),
    (b"HELLO sniffd\r\n", b"+GO TLS\r\n", "unknown"),
])  # fmt: skip
def test_protocol_name_from_the_first_bytes_each_way(client, server, expected):
    assert expected == protocol_name(client, server)


@pytest.mark.parametrize("data, from_client, expected", [
    (b"220 mx.test ESMTP\r\n", False, True),
    (MYSQL_GREETING, False, True),
    (b"HTTP/1.1 200 OK\r\n", False, False),  # a response whose request was lost
    (b"HTT", False, False),  # too short to tell: a status line may start so
    (PG_SSL_REQUEST, True, True),
    (RDP_CR, True, True),
    (LDAP_STARTTLS, True, True),
    (b"<?xml version='1.0'?>", True, True),
    (b"NICK alice\r\nUSER alice 0 * :A\r\n", True, True),
    (b"GET / HTTP/1.1\r\n", True, False),
    (b"0\r\n\r\n", True, False),  # "0": no LDAP message (no INTEGER tag after the length)
    (b"PUT /x HTTP/1.1\r\n", True, False),
])  # fmt: skip
def test_a_non_http_start_is_told_by_its_first_bytes(data, from_client, expected):
    assert expected == looks_like_other_protocol(data, from_client)


def smtp_watch() -> TlsWatch:
    w = TlsWatch(Meter())
    w.feed_data(False, b"220 mx.test ESMTP\r\n", 1.0)
    w.feed_data(True, b"EHLO c.test\r\n", 1.1)
    w.feed_data(False, b"250 STARTTLS\r\n", 1.2)
    return w


def test_hello_after_the_servers_go_ahead_starts_tls_from_its_first_byte():
    w = smtp_watch()
    w.feed_data(True, b"STARTTLS\r\n", 1.3)
    assert w.tls is None
    w.feed_data(False, b"220 go ahead\r\n", 1.4)
    w.feed_data(True, HELLO, 2.0)
    w.close(None, 3.0, "fin")
    (rec,) = w.take()
    assert (2.0, "smtp", len(HELLO), "a.test") == (rec.ts, rec.tls["starttls"], rec.tls["client_bytes"], rec.tls["sni"])


def test_hello_in_one_write_with_the_starttls_command_is_found_after_it():
    w = smtp_watch()
    w.feed_data(True, b"STARTTLS\r\n" + HELLO, 2.0)
    assert w.tls is not None and len(HELLO) == w.tls.session.client_bytes


def test_a_hello_shaped_segment_in_the_middle_of_mail_data_is_data():
    w = smtp_watch()
    w.feed_data(True, b"DATA\r\n", 1.3)
    w.feed_data(False, b"354 go on\r\n", 1.4)
    w.feed_data(True, b"Subject: x\r\n\r\nsome text then", 1.5)
    w.feed_data(True, HELLO, 1.6)  # its own segment, but mid-line, no answer in between
    w.feed_data(True, b"\r\n.\r\n", 1.7)
    w.close(None, 3.0, "fin")
    assert (None, [], ["non_http"]) == (w.tls, w.take(), w.loose)


def test_a_hello_start_too_short_to_decide_waits_for_the_next_segment():
    w = smtp_watch()
    w.feed_data(True, b"STARTTLS\r\n", 1.3)
    w.feed_data(False, b"220 go ahead\r\n", 1.4)
    w.feed_data(True, HELLO[:4], 2.0)
    assert w.tls is None
    w.feed_data(True, HELLO[4:], 2.1)
    assert (len(HELLO), 2.0) == (w.tls.session.client_bytes, w.tls.session.first_ts)


def test_mysql_hello_right_behind_the_ssl_request_in_one_segment():
    w = TlsWatch(Meter())
    w.feed_data(False, MYSQL_GREETING, 1.0)
    w.feed_data(True, MYSQL_SSL_REQUEST + HELLO, 1.1)
    assert ("mysql", len(HELLO)) == (w.tls.starttls, w.tls.session.client_bytes)


def test_lost_hello_start_then_a_server_hello_begins_tls_at_the_loss_and_memory_returns():
    meter = Meter()
    w = TlsWatch(meter)
    w.feed_data(False, b"220 mx.test ESMTP\r\n", 1.0)
    w.feed_data(True, b"STARTTLS\r\n", 1.1)
    w.feed_data(False, b"220 go ahead\r\n", 1.2)
    w.gap(True, 100)
    w.note(True, ("tcp_gap",))
    w.feed_data(True, HELLO[100:], 2.0)
    assert len(HELLO) - 100 == meter.http_bytes  # held until the server says
    w.feed_data(False, SERVER_HELLO, 2.1)
    w.close(None, 3.0, "fin")
    (rec,) = w.take()
    assert ("smtp", len(HELLO), None, 0) == (rec.tls["starttls"], rec.tls["client_bytes"], rec.tls["sni"], meter.http_bytes)
    assert {"tcp_gap", "tls_gap"} <= rec.anomalies


def test_bytes_kept_after_a_loss_are_bounded():
    meter = Meter()
    w = smtp_watch()
    w.meter = meter
    w.gap(True, 10)
    for _ in range(40):
        w.feed_data(True, b"x" * 1000, 2.0)
    assert AFTER_GAP_BYTES >= meter.http_bytes > AFTER_GAP_BYTES - 1000
    w.close(None, 3.0)
    assert 0 == meter.http_bytes


def test_no_hello_is_looked_for_past_the_scan_bound():
    w = TlsWatch(Meter())
    w.feed_data(False, b"+OK\r\n", 1.0)
    w.feed_data(True, b"x" * SCAN_BYTES, 1.1)
    w.feed_data(False, b"+OK\r\n", 1.2)
    w.feed_data(True, HELLO, 1.3)
    assert (None, True) == (w.tls, w.written)  # written: nothing for the housekeeping pass to wait for


def handover_after(client_lines: list[bytes], server_lines: list[bytes]) -> HttpSession:
    s = HttpSession()
    for c, r in zip(client_lines, server_lines):
        s.feed(True, [c], 1.0)
        s.feed(False, [r], 1.1)
    s.feed(True, [HELLO], 2.0)
    return s


def test_tls_after_http09_guesses_hands_over_and_drops_the_guesses():
    s = handover_after([b"HELLO sniffd\r\n"], [b"+GO TLS\r\n"])
    assert "tls" == s.successor
    ho = s.hand_over()
    assert ([], "tls", None, [("feed", (True, [(HELLO, 2.0, None)], 2.0))], 0) == (
        s.take(), ho.protocol, ho.starttls, ho.calls, s.meter.http_bytes)


def test_tls_shaped_bytes_after_real_http11_stay_http():
    s = handover_after([b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"], [b"HTTP/1.1 204 No Content\r\n\r\n"])
    assert None is s.successor
    assert ["GET"] == [t.request.method for t in s.take()]
