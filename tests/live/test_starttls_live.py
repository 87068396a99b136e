"""STARTTLS on real loopback traffic, made fresh each run, read by the real ``sniffd read`` (issue 12).

tests/starttls.py runs one connection per cleartext protocol
(``LIVE_VARIANTS``: SMTP through smtplib, IMAP through imaplib, POP3 through
poplib, FTP through ftplib, and XMPP, LDAP, IRC, PostgreSQL, MySQL, RDP and an
HTTP CONNECT tunnel scripted byte by byte), each with the TLS version, SNI and
ALPN the other way round from the committed capture
(tests/pcap/test_starttls.py), and MySQL's hello in a write of its own.
tcpdump captures them; the answer key comes from the two ends and the capture
(``tests.starttls.ground_truth``), never from sniffd; the installed ``sniffd``
reads the capture in its own process.
"""

from __future__ import annotations

import subprocess

import orjson
import pytest

from tests import starttls
from tests.live.conftest import SNIFFD_TIMEOUT_S

pytestmark = pytest.mark.live

PROTOCOLS = [v.protocol for v in starttls.LIVE_VARIANTS]


@pytest.fixture(scope="module")
def live(tmp_path_factory, sniffd_exe):
    """(answer key rows by protocol, sniffd's records by connection)."""
    tmp = tmp_path_factory.mktemp("starttls_live")
    pcap = tmp / "starttls.pcap"
    runs = starttls.capture_variants(starttls.LIVE_VARIANTS, pcap, tmp)
    truth = starttls.ground_truth(pcap, runs)
    out = tmp / "records.jsonl"
    proc = subprocess.run([str(sniffd_exe), "read", str(pcap), "-o", str(out)], capture_output=True, text=True, timeout=SNIFFD_TIMEOUT_S)
    assert 0 == proc.returncode, f"sniffd read exited {proc.returncode}\nstderr: {proc.stderr}"
    records = [orjson.loads(line) for line in out.read_bytes().splitlines() if line]
    return {row["protocol"]: row for row in truth}, starttls.records_by_connection(records)


def conn_key(row):
    return (row["client"]["port"], row["server"]["port"])


def test_every_protocol_ran_with_both_tls_versions_covered(live):
    rows, _ = live
    assert PROTOCOLS == list(rows)
    assert {"TLSv1.2", "TLSv1.3"} == {r["tls"]["version"] for r in rows.values()}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_starttls_connection_gets_one_tls_record_with_what_the_ends_negotiated(live, protocol):
    rows, by_conn = live
    row = rows[protocol]
    got = [starttls.tls_view(r, row["tls"]) for r in by_conn.get(conn_key(row), []) if r["kind"] == "tls"]
    assert [starttls.expected_tls_view(row)] == got


def test_connect_tunnel_keeps_its_connect_record(live):
    rows, by_conn = live
    row = rows["http"]
    got = [starttls.http_view(r) for r in by_conn.get(conn_key(row), []) if r["kind"] == "http"]
    assert [starttls.expected_connect_view(row)] == got


def test_starttls_connections_write_nothing_else(live):
    rows, by_conn = live
    expected = {conn_key(r): (["http", "tls"] if p == "http" else ["tls"]) for p, r in rows.items()}
    assert expected == {k: sorted(r["kind"] for r in recs) for k, recs in by_conn.items()}
