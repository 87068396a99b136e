"""TLS that begins after a cleartext exchange (STARTTLS, RDP's upgrade, a CONNECT
tunnel), through the real ``sniffd read`` (issue 12).

The contract: a connection whose ClientHello comes after cleartext gets exactly
one ``kind:"tls"`` record (a CONNECT tunnel also keeps its CONNECT transaction's
http record), with ``tls.starttls`` naming the cleartext protocol ("smtp",
"imap", "pop3", "ftp", "xmpp", "ldap", "irc", "postgresql", "mysql", "rdp",
"http", or "unknown"), ``ts`` the time of the packet carrying the hello's first
byte, and ``client_bytes`` / ``server_bytes`` counted from the hello / the
server's first TLS byte on.

Two kinds of input:

- captures/tls/starttls.pcap: real loopback traffic, one connection per
  protocol, made by tests/make_starttls_capture.py; its answer key
  (starttls.json) was written from what the two ends negotiated and the
  capture read with dpkt, never from sniffd.
- crafted captures (tests/craft.py, tests/tlscraft.py): an SMTP session whose
  hello arrives in three segments out of order, one whose hello's first
  segment was lost, a plain SMTP session, and one whose DATA carries bytes that
  look like a ClientHello.  Expected values written by hand.
"""

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import craft
import pytest
from craft import TcpConversation
from pcapcheck import T0, community_id, load_jsonl, read_records, run_sniffd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests import starttls  # noqa: E402
from tests import tlscraft as T  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TLS_CAPTURES = REPO / "captures" / "tls"

PROTOCOLS = ["smtp", "imap", "pop3", "ftp", "xmpp", "ldap", "irc", "postgresql", "mysql", "rdp", "http"]


def ms(n):
    return T0 + n / 1000


def ends(client, server):
    return {"client": {"ip": client[0], "port": client[1]}, "server": {"ip": server[0], "port": server[1]}}


def read_with_stats(pcap: Path) -> tuple[list[dict], dict]:
    out = pcap.with_name(pcap.name + ".out.jsonl")
    proc = run_sniffd("read", pcap, "-o", out, "--stats")
    assert proc.returncode == 0, proc.stderr  # SNIFFD_STRICT=1 (tests/conftest.py): an internal error exits non-zero
    return load_jsonl(out), json.loads(proc.stderr.strip().splitlines()[-1])["anomalies"]


# --- the real capture: every protocol once ---------------------------------------------------


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    """(answer key rows by protocol, sniffd's records by connection)."""
    key = json.loads((TLS_CAPTURES / "starttls.json").read_text())
    pcap = tmp_path_factory.mktemp("starttls") / "starttls.pcap"
    shutil.copyfile(TLS_CAPTURES / "starttls.pcap", pcap)
    rows = {row["protocol"]: row for row in key["connections"]}
    return rows, starttls.records_by_connection(read_records(pcap))


def conn_key(row):
    return (row["client"]["port"], row["server"]["port"])


def test_answer_key_has_every_protocol_once_and_one_pipelined_hello(loopback):
    """The fixture is what it claims: 11 connections, TLS 1.2 and 1.3, SNI and ALPN
    on and off, and MySQL's hello in the segment that carries its SSLRequest."""
    rows, _ = loopback
    assert PROTOCOLS == list(rows)
    assert {"TLSv1.2", "TLSv1.3"} == {r["tls"]["version"] for r in rows.values()}
    assert {True, False} == {r["tls"]["sni"] is None for r in rows.values()}
    assert {True, False} == {r["tls"]["alpn_offered"] == [] for r in rows.values()}
    assert {"mysql": True} == {p: True for p, r in rows.items() if r["ends"]["hello_in_segment_with_cleartext"]}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_starttls_connection_gets_one_tls_record_equal_to_the_answer_key(loopback, protocol):
    """tls.starttls, version, cipher, sni, alpn_offered, alpn, established, the byte
    counts from the hello on, ts (the hello's packet), end_reason, and no anomaly."""
    rows, by_conn = loopback
    row = rows[protocol]
    got = [starttls.tls_view(r, row["tls"]) for r in by_conn.get(conn_key(row), []) if r["kind"] == "tls"]
    assert [starttls.expected_tls_view(row)] == got


def test_connect_tunnel_keeps_its_connect_record(loopback):
    rows, by_conn = loopback
    row = rows["http"]
    got = [starttls.http_view(r) for r in by_conn.get(conn_key(row), []) if r["kind"] == "http"]
    assert [starttls.expected_connect_view(row)] == got


def test_starttls_connections_write_nothing_else(loopback):
    """Each connection's records are its tls record (and the CONNECT record for the
    tunnel): no http record made of SMTP or IRC lines read as HTTP/0.9, and no
    record for a connection the key does not have."""
    rows, by_conn = loopback
    expected = {conn_key(r): (["http", "tls"] if p == "http" else ["tls"]) for p, r in rows.items()}
    assert expected == {k: sorted(r["kind"] for r in recs) for k, recs in by_conn.items()}


# --- crafted: a TLS 1.3 handshake after SMTP's STARTTLS ----------------------------------------

# Port 2525: not SMTP's (25) nor submission's (587); the cleartext names the protocol, not the port.
CLIENT, SERVER = ("10.0.0.1", 40025), ("10.0.0.2", 2525)

SMTP_OPENING = [  # RFC 5321 / RFC 3207 section 4: the server advertises STARTTLS and answers it 220
    (False, b"220 mail.test ESMTP\r\n"),
    (True, b"EHLO client.test\r\n"),
    (False, b"250-mail.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"),
]
STARTTLS = [(True, b"STARTTLS\r\n"), (False, b"220 2.0.0 Ready to start TLS\r\n")]

SID = bytes(range(32))
CH13 = T.client_hello(
    [0x1301, 0x1302, 0x1303],
    [T.ext_sni("mail.test"), T.ext_supported_versions([0x0304, 0x0303]), T.ext_groups([0x001D]), T.ext_sigalgs([0x0804]),
     T.ext_key_share([(0x001D, 32)]), (0x002D, b"\x01\x01")],
    session_id=SID,
)  # fmt: skip
SH13 = T.server_hello(0x1302, [(0x002B, b"\x03\x04"), (0x0033, b"\x00\x1d" + T.vec16(os.urandom(32)))], session_id=SID)
CLIENT_HELLO = T.record(22, CH13, version=0x0301)
SERVER_FLIGHT = T.record(22, SH13) + T.CCS + T.app_data(900) + T.app_data(60)
CLIENT_FINISH = T.CCS + T.app_data(60)
APP = 200  # one application record each way: 205 bytes with its header
CLIENT_TLS_BYTES = len(CLIENT_HELLO) + len(CLIENT_FINISH) + APP + 5
SERVER_TLS_BYTES = len(SERVER_FLIGHT) + APP + 5

# JA3 (ciphers, extensions in order, groups, point formats) and JA4/JA4S written by
# hand from the hello above, as in tests/pcap/test_crafted_tls.py.
TLS13_AFTER_SMTP = {
    "starttls": "smtp",
    "version": "TLSv1.3",
    "negotiated": True,
    "cipher": "TLS_AES_256_GCM_SHA384",
    "sni": "mail.test",
    "alpn_offered": [],
    "alpn": None,
    "resumed": False,
    "established": True,
    "hello_retry": False,
    "alerts": [],
    "ja3": hashlib.md5(b"771,4865-4866-4867,0-43-10-13-51-45,29,").hexdigest(),
    "ja3s": hashlib.md5(b"771,4866,43-51").hexdigest(),
    "ja4": "t13d030600_" + hashlib.sha256(b"1301,1302,1303").hexdigest()[:12]
    + "_" + hashlib.sha256(b"000a,000d,002b,002d,0033_0804").hexdigest()[:12],
    "ja4s": "t130200_1302_" + hashlib.sha256(b"002b,0033").hexdigest()[:12],
    "server_cert": None,
    "client_bytes": CLIENT_TLS_BYTES,
    "server_bytes": SERVER_TLS_BYTES,
}


def cleartext(c: TcpConversation, exchange, t0: float, step: float = 1.0) -> list:
    """Each (from_client, bytes) of ``exchange`` as one segment, ``step`` ms apart from ``t0``."""
    packets = []
    for i, (from_client, data) in enumerate(exchange):
        seg = (c.client_data if from_client else c.server_data)(data)[0]
        packets.append((ms(t0 + i * step), seg))
    return packets


def test_hello_after_smtp_starttls_in_three_segments_out_of_order_gives_one_tls_record(tmp_path):
    """The hello's 3 segments arrive 2nd, 3rd, 1st (the first is 20 bytes): one record;
    its ts is the packet that carried the hello's first byte (the last to arrive), and
    the cleartext before the hello counts in neither byte count."""
    c = TcpConversation(CLIENT, SERVER)
    packets = [*zip([ms(0), ms(0.5), ms(0.7)], c.handshake()), *cleartext(c, SMTP_OPENING + STARTTLS, 1)]
    first, second, third = c.client_data(CLIENT_HELLO, [20, 80])
    assert [20, 80, len(CLIENT_HELLO) - 100] == [len(s.payload) for s in (first, second, third)]
    packets += [(ms(6), second), (ms(6.2), third), (ms(6.4), first)]
    packets += [
        (ms(7), c.server_data(SERVER_FLIGHT)[0]),
        (ms(8), c.client_data(CLIENT_FINISH)[0]),
        (ms(9), c.client_data(T.record(23, bytes(APP)))[0]),
        (ms(10), c.server_data(T.record(23, bytes(APP)))[0]),
        *zip([ms(15), ms(16), ms(17)], c.close()),
    ]
    pcap = tmp_path / "smtp_ooo.pcap"
    craft.capture(pcap, packets)
    assert [
        {
            "kind": "tls",
            "ts": "2026-11-21T10:42:05.006400Z",
            **ends(CLIENT, SERVER),
            "tls": TLS13_AFTER_SMTP,
            "duration_ms": 9.6,  # from the hello's first byte (6.4) to the FIN that closed the connection (16)
            "community_id": community_id(*CLIENT, *SERVER),
            "end_reason": "fin",
            "anomalies": [],
        }
    ] == read_records(pcap)


def test_hello_after_smtp_starttls_with_its_first_segment_lost_still_gives_a_tls_record(tmp_path):
    """The first 100 bytes of the hello never reached the capture (the server's flight
    acknowledges them, so the gap is certain at once).

    What a careful operator wants: the record, marked.  The cleartext already said TLS
    follows (STARTTLS answered 220), the server's side of the handshake is intact, and
    a connection that silently vanishes from the log because one packet was lost is
    worse than one logged with what could be read.  So: one tls record with starttls
    "smtp"; everything the ServerHello says (version, cipher, ja3s, ja4s); nothing that
    only the lost hello could say (sni, alpn_offered, ja3, ja4 null or empty); not
    established, since the client's switch to encrypted records lies past the gap and
    was never seen (README: a direction is not parsed past a tls_gap); the client's
    byte count includes the lost bytes (README: "lost bytes included"); and the
    anomalies name the loss: tcp_gap and tls_gap at least (sniffd may add the
    consequence, tls_truncated_handshake, so the list is checked to contain both, not to
    equal them).  Its ts cannot be the lost packet's: any time from the server's 220 to
    the ServerHello is right (the first surviving hello segment's, 6 ms, is the natural
    choice)."""
    c = TcpConversation(CLIENT, SERVER)
    packets = [*zip([ms(0), ms(0.5), ms(0.7)], c.handshake()), *cleartext(c, SMTP_OPENING + STARTTLS, 1)]
    lost, rest = c.client_data(CLIENT_HELLO, [100])
    packets += [
        (ms(6), rest),
        (ms(7), c.server_data(SERVER_FLIGHT)[0]),
        (ms(8), c.client_data(CLIENT_FINISH)[0]),
        (ms(9), c.client_data(T.record(23, bytes(APP)))[0]),
        (ms(10), c.server_data(T.record(23, bytes(APP)))[0]),
        *zip([ms(15), ms(16), ms(17)], c.close()),
    ]
    assert lost.payload == CLIENT_HELLO[:100]
    pcap = tmp_path / "smtp_hello_gap.pcap"
    craft.capture(pcap, packets)
    records = read_records(pcap)
    assert ["tls"] == [r["kind"] for r in records]
    rec = records[0]
    assert {**ends(CLIENT, SERVER), "end_reason": "fin", "community_id": community_id(*CLIENT, *SERVER)} == {
        k: rec[k] for k in ("client", "server", "end_reason", "community_id")}  # fmt: skip
    from_server = ["version", "negotiated", "cipher", "resumed", "hello_retry", "ja3s", "ja4s", "server_cert", "server_bytes"]
    from_client = ["starttls", "sni", "alpn_offered", "ja3", "ja4", "established", "alerts", "client_bytes"]
    assert {
        **{k: TLS13_AFTER_SMTP[k] for k in from_server},
        "starttls": "smtp",
        "sni": None,
        "alpn_offered": [],
        "ja3": None,
        "ja4": None,
        "established": False,
        "alerts": [],
        "client_bytes": CLIENT_TLS_BYTES,
    } == {k: rec["tls"].get(k, starttls.MISSING) for k in from_server + from_client}
    assert {"tcp_gap", "tls_gap"} <= set(rec["anomalies"]), rec["anomalies"]
    assert "2026-11-21T10:42:05.005000Z" < rec["ts"] <= "2026-11-21T10:42:05.007000Z"


def test_tls_after_a_cleartext_exchange_sniffd_cannot_name_has_starttls_unknown(tmp_path):
    """A made-up line protocol ("HELLO" / "+GO TLS") before the same hello: starttls "unknown"."""
    c = TcpConversation(CLIENT, SERVER)
    packets = [*zip([ms(0), ms(0.5), ms(0.7)], c.handshake()),
               *cleartext(c, [(True, b"HELLO sniffd\r\n"), (False, b"+GO TLS\r\n")], 1)]  # fmt: skip
    packets += [
        (ms(3), c.client_data(CLIENT_HELLO)[0]),
        (ms(4), c.server_data(SERVER_FLIGHT)[0]),
        (ms(5), c.client_data(CLIENT_FINISH)[0]),
        (ms(6), c.client_data(T.record(23, bytes(APP)))[0]),
        (ms(7), c.server_data(T.record(23, bytes(APP)))[0]),
        *zip([ms(10), ms(11), ms(12)], c.close()),
    ]
    pcap = tmp_path / "unknown.pcap"
    craft.capture(pcap, packets)
    assert [
        {
            "kind": "tls",
            "ts": "2026-11-21T10:42:05.003000Z",
            **ends(CLIENT, SERVER),
            "tls": {**TLS13_AFTER_SMTP, "starttls": "unknown"},
            "duration_ms": 8.0,
            "community_id": community_id(*CLIENT, *SERVER),
            "end_reason": "fin",
            "anomalies": [],
        }
    ] == read_records(pcap)


def test_tls_from_the_first_byte_has_starttls_null(tmp_path):
    """The same handshake with no cleartext before it: starttls null."""
    c = TcpConversation(CLIENT, ("10.0.0.2", 443))
    packets = [
        *zip([ms(0), ms(0.5), ms(0.7)], c.handshake()),
        (ms(1), c.client_data(CLIENT_HELLO)[0]),
        (ms(2), c.server_data(SERVER_FLIGHT)[0]),
        (ms(3), c.client_data(CLIENT_FINISH)[0]),
        *zip([ms(10), ms(11), ms(12)], c.close()),
    ]
    pcap = tmp_path / "plain_tls.pcap"
    craft.capture(pcap, packets)
    assert [(None, len(CLIENT_HELLO) + len(CLIENT_FINISH), len(SERVER_FLIGHT))] == [
        (r["tls"].get("starttls", starttls.MISSING), r["tls"]["client_bytes"], r["tls"]["server_bytes"]) for r in read_records(pcap)]  # fmt: skip


# --- crafted: SMTP that never upgrades -----------------------------------------------------------

MAIL = [
    (True, b"MAIL FROM:<a@client.test>\r\n"),
    (False, b"250 2.1.0 Ok\r\n"),
    (True, b"RCPT TO:<b@mail.test>\r\n"),
    (False, b"250 2.1.5 Ok\r\n"),
    (True, b"DATA\r\n"),
    (False, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
]
MAIL_END = [(False, b"250 2.0.0 Ok: queued\r\n"), (True, b"QUIT\r\n"), (False, b"221 2.0.0 Bye\r\n")]


def smtp_session(c: TcpConversation, body_segments: list[bytes]) -> list:
    """SMTP with STARTTLS advertised but never used: a mail whose DATA is ``body_segments``
    (one TCP segment each, ending with the "." line), then QUIT."""
    packets = [*zip([ms(0), ms(0.5), ms(0.7)], c.handshake()), *cleartext(c, SMTP_OPENING + MAIL, 1)]
    packets += [(ms(10 + i), c.client_data(seg)[0]) for i, seg in enumerate(body_segments)]
    packets += cleartext(c, MAIL_END, 20)
    packets += zip([ms(30), ms(31), ms(32)], c.close())
    return packets


def test_plain_smtp_without_starttls_gives_no_tls_record(tmp_path):
    c = TcpConversation(CLIENT, SERVER)
    pcap = tmp_path / "smtp_plain.pcap"
    craft.capture(pcap, smtp_session(c, [b"Subject: hi\r\n\r\nHello.\r\n.\r\n"]))
    records, stats = read_with_stats(pcap)
    assert [] == [r for r in records if r["kind"] == "tls"]
    assert "internal_error" not in stats


def test_smtp_data_holding_client_hello_bytes_gives_no_tls_record(tmp_path):
    """A mail body holding 0x16 0x03 0x01 mid-line, one holding a whole well-formed
    ClientHello record mid-line in a TCP segment of its own (a segment boundary is not
    a message boundary), and a line that begins with 0x16 0x03 0x01 but holds no hello.
    None of it follows a STARTTLS answered positively, and the hello-shaped bytes do not
    begin a message: no tls record."""
    c = TcpConversation(CLIENT, SERVER)
    body = [
        b"Subject: binary\r\n\r\nattached: \x00\xff\x16\x03\x01\x02\x00garbage\r\nnext: ",
        CLIENT_HELLO + b" trailing words\r\n",
        b"\x16\x03\x01\x00\x30 not a hello at all, just bytes\r\n.\r\n",
    ]
    pcap = tmp_path / "smtp_data_hello_bytes.pcap"
    craft.capture(pcap, smtp_session(c, body))
    records, stats = read_with_stats(pcap)
    assert [] == [r for r in records if r["kind"] == "tls"]
    assert "internal_error" not in stats
