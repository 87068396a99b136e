"""The TLS stage on real TLS traffic: what sniffd.tls reads from the wire is what the two ends negotiated.

Servers (python ``ssl``, a certificate this module generates) on 127.0.0.1;
clients: python ``ssl`` (TLS 1.2 and 1.3, with and without SNI and ALPN,
resumed by session id / ticket and by TLS 1.3 PSK, a HelloRetryRequest, alerts),
``openssl s_client`` (1.2, and 1.3 resumed with -sess_out/-sess_in) and
``curl -k``.  tcpdump captures it all once; each connection's TCP payload is
read back with dpkt and fed to a ``TlsSession``; every result is compared with
what the client and the server say they negotiated, the certificate fields with
``openssl x509`` on the certificate file, and JA3/JA3S and the ClientHello's
lists with tshark's dissection of the same capture.  The JA4 formula itself is
held to FoxIO's published vectors in tests/unit/test_tls_fingerprint.py.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import queue
import re
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sniffd.tls import TlsSession, looks_like_tls_client_hello
from sniffd.tls.fingerprint import ja3_string
from tests import tlscraft
from tests.live.conftest import CAPTURE_SETTLE_S, TcpdumpCapture

pytestmark = pytest.mark.live

TIMEOUT_S = 10.0
SNI = "tls.test"
ALPN = ["h2", "http/1.1"]
# The names python's ssl / openssl print, as the record writes them.
VERSIONS = {"TLSv1.2": "TLSv1.2", "TLSv1.3": "TLSv1.3"}


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate with a multi-RDN subject, a large serial and SANs."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sniffd, test"),
            x509.NameAttribute(NameOID.COMMON_NAME, SNI),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
        .not_valid_after(dt.datetime(2035, 6, 7, 8, 9, 10, tzinfo=dt.timezone.utc))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(SNI), x509.DNSName("www.tls.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def openssl_certificate_fields(cert_path: Path) -> dict:
    """The record's server_cert, as ``openssl x509`` prints the certificate (independent of cryptography)."""

    def x509_out(*args: str) -> str:
        return subprocess.run(["openssl", "x509", "-in", str(cert_path), "-noout", *args], capture_output=True, text=True, check=True).stdout.strip()

    def date(line: str) -> str:
        value = line.split("=", 1)[1]  # "Jan  2 03:04:05 2025 GMT"
        return dt.datetime.strptime(value, "%b %d %H:%M:%S %Y %Z").strftime("%Y-%m-%dT%H:%M:%SZ")

    san = x509_out("-ext", "subjectAltName").splitlines()[1]
    return {
        "subject": x509_out("-subject", "-nameopt", "RFC2253").split("=", 1)[1],
        "issuer": x509_out("-issuer", "-nameopt", "RFC2253").split("=", 1)[1],
        "serial": x509_out("-serial").split("=", 1)[1],
        "not_before": date(x509_out("-startdate")),
        "not_after": date(x509_out("-enddate")),
        "dns_names": [item.strip()[4:] for item in san.split(",") if item.strip().startswith("DNS:")],
        "sha256": x509_out("-fingerprint", "-sha256").split("=", 1)[1].replace(":", "").lower(),
    }


def openssl_iana_names() -> dict[str, str]:
    """OpenSSL cipher name -> IANA name, from ``openssl ciphers -V -stdname``."""
    out = subprocess.run(["openssl", "ciphers", "-V", "-stdname", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"], capture_output=True, text=True, check=True).stdout
    names = {}
    for line in out.splitlines():
        # "0xC0,0x2F - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 - ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 ..."
        words = line.split()
        names[words[4]] = words[2]
    return names


@dataclass
class ServerConn:
    client_port: int
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    reused: bool | None = None
    error: str | None = None


class TlsServer:
    """python ``ssl`` server on an ephemeral port; one connection at a time.

    After the handshake it sends one byte and closes (``http=False``), or
    answers one HTTP/1.1 request (``http=True``, for curl).  Each
    connection's view of the handshake goes into ``conns``."""

    def __init__(self, ctx: ssl.SSLContext, http: bool = False) -> None:
        self.ctx = ctx
        self.http = http
        self.conns: queue.Queue[ServerConn] = queue.Queue()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                raw, peer = self._listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(TIMEOUT_S)
            info = ServerConn(peer[1])
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as s:
                    info.version, info.cipher = s.version(), s.cipher()[0]
                    info.alpn, info.reused = s.selected_alpn_protocol(), s.session_reused
                    if self.http:
                        request = b""
                        while b"\r\n\r\n" not in request:
                            chunk = s.recv(4096)
                            if not chunk:
                                break
                            request += chunk
                        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    else:
                        s.sendall(b"x")
            except (ssl.SSLError, OSError) as exc:
                info.error = str(exc)
                raw.close()
            self.conns.put(info)

    def next_conn(self) -> ServerConn:
        return self.conns.get(timeout=TIMEOUT_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT_S)
        self._listener.close()


def server_context(cert: Path, key: Path, *, max_version=None, alpn=True, groups=None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if max_version is not None:
        ctx.maximum_version = max_version
    if alpn:
        ctx.set_alpn_protocols(ALPN)
    if groups is not None:
        # OpenSSL 3 sets the supported groups to this one curve: a client whose
        # key share is for another group gets a HelloRetryRequest.
        ctx.set_ecdh_curve(groups)
    return ctx


@dataclass
class Case:
    """One connection: what its two ends know, and what the record must say."""

    name: str
    client_port: int
    expect: dict  # tls object fields, from the ends' own knowledge
    offered_alpn: list[str] = field(default_factory=list)


def python_client(port: int, *, ctx: ssl.SSLContext | None = None, max_version=None, min_version=None, sni=None, alpn=None, session=None, verify=False):
    """(what the client knows, its session, the error if the handshake failed)."""
    if ctx is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if max_version is not None:
            ctx.maximum_version = max_version
        if min_version is not None:
            ctx.minimum_version = min_version
        if alpn is not None:
            ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    try:
        with ctx.wrap_socket(raw, server_hostname=sni, session=session) as s:
            s.recv(1)  # after the TLS 1.3 tickets, which the session needs
            known = {"version": s.version(), "cipher": s.cipher()[0], "alpn": s.selected_alpn_protocol(), "reused": s.session_reused}
            return known, s.session, ctx, None
    except ssl.SSLError as exc:
        raw.close()
        return None, None, ctx, exc


@pytest.fixture(scope="module")
def tls_run(tmp_path_factory):
    """Runs every client against the servers under one tcpdump; returns (cases, sessions, tshark rows, cert fields)."""
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = make_certificate(tmp)
    iana = openssl_iana_names()
    main = TlsServer(server_context(cert, key))
    only12 = TlsServer(server_context(cert, key, max_version=ssl.TLSVersion.TLSv1_2))
    p256 = TlsServer(server_context(cert, key, groups="prime256v1"))
    web = TlsServer(server_context(cert, key, alpn=False), http=True)
    servers = [main, only12, p256, web]
    pcap = tmp / "tls.pcap"
    capture = TcpdumpCapture(pcap, " or ".join(f"tcp port {s.port}" for s in servers)).start()
    cases: list[Case] = []
    try:
        cases = run_clients(main, only12, p256, web, iana, tmp)
        time.sleep(CAPTURE_SETTLE_S)
    finally:
        counters = capture.stop()
        for s in servers:
            s.stop()
    assert 0 == counters.get("dropped", 0), capture.stderr_text()
    conns = tlscraft.connections(pcap, {s.port for s in servers})
    sessions = {}
    for port, conn in conns.items():
        session = TlsSession()
        for from_client, data, ts in conn.segments:
            session.feed(from_client, data, ts)
        session.close(conn.segments[-1][2] if conn.segments else 0.0)
        sessions[port] = (session, conn)
    return cases, sessions, tshark_rows(pcap, [s.port for s in servers]), openssl_certificate_fields(cert)


def run_clients(main: TlsServer, only12: TlsServer, p256: TlsServer, web: TlsServer, iana: dict[str, str], tmp: Path) -> list[Case]:
    cases = []

    def from_ends(name: str, known: dict | None, server: TlsServer, **expect) -> None:
        conn = server.next_conn()
        base = {}
        if known is not None:
            assert conn.error is None, conn.error
            assert (known["version"], known["cipher"], known["alpn"], known["reused"]) == (conn.version, conn.cipher, conn.alpn, conn.reused)
            base = {
                "version": VERSIONS[known["version"]],
                "negotiated": True,
                # TLS 1.3 suites are named by their IANA names already.
                "cipher": iana.get(known["cipher"], known["cipher"]),
                "alpn": known["alpn"] if known["version"] != "TLSv1.3" else None,  # TLS 1.3: encrypted
                "resumed": known["reused"],
                "established": True,
            }
        base.update(expect)
        cases.append(Case(name, conn.client_port, base, expect.get("alpn_offered", [])))

    v12, v13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3

    known, *_ = python_client(main.port, sni=SNI, alpn=ALPN)
    from_ends("python TLS 1.3, SNI and ALPN", known, main, sni=SNI, alpn_offered=ALPN, hello_retry=False, server_cert=None)
    known, *_ = python_client(main.port)
    from_ends("python TLS 1.3, no SNI, no ALPN", known, main, sni=None, alpn_offered=[], server_cert=None)
    known, *_ = python_client(main.port, max_version=v12, sni=SNI, alpn=ALPN)
    from_ends("python TLS 1.2, SNI and ALPN", known, main, sni=SNI, alpn_offered=ALPN, server_cert="cert")
    known, *_ = python_client(main.port, max_version=v12)
    from_ends("python TLS 1.2, no SNI, no ALPN", known, main, sni=None, alpn_offered=[], server_cert="cert")

    known, session, ctx, _ = python_client(main.port, max_version=v12, sni=SNI)
    from_ends("python TLS 1.2, first of a resumed pair", known, main, resumed=False, server_cert="cert")
    known, *_ = python_client(main.port, ctx=ctx, sni=SNI, session=session)
    assert known["reused"], "python did not resume the TLS 1.2 session"
    from_ends("python TLS 1.2 resumed (session ticket)", known, main, resumed=True, server_cert=None)

    known, session, ctx, _ = python_client(main.port, sni=SNI)
    from_ends("python TLS 1.3, first of a resumed pair", known, main, resumed=False)
    known, *_ = python_client(main.port, ctx=ctx, sni=SNI, session=session)
    assert known["reused"], "python did not resume the TLS 1.3 session"
    from_ends("python TLS 1.3 resumed (PSK)", known, main, resumed=True, server_cert=None)

    known, *_ = python_client(p256.port, sni=SNI)
    from_ends("python TLS 1.3 after a HelloRetryRequest", known, p256, hello_retry=True)

    # A client that rejects the self-signed certificate: in TLS 1.2 its alert is in clear.
    known, _, _, err = python_client(main.port, max_version=v12, sni=SNI, verify=True)
    assert known is None and "CERTIFICATE_VERIFY_FAILED" in str(err)
    conn = main.next_conn()
    # The server learns which alert: "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca".
    assert "alert unknown ca" in (conn.error or "")
    cases.append(Case("python TLS 1.2 rejecting the certificate", conn.client_port, {
        "version": "TLSv1.2", "negotiated": True, "established": False, "resumed": False,
        "alerts": [{"from": "client", "level": "fatal", "description": "unknown_ca"}], "server_cert": "cert"}))

    # A TLS 1.3-only client and a TLS 1.2-only server: the server refuses in clear.
    known, _, _, err = python_client(only12.port, min_version=v13, sni=SNI)
    assert known is None and "alert protocol version" in str(err)  # "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] ..."
    conn = only12.next_conn()
    cases.append(Case("python TLS 1.3-only client, TLS 1.2-only server", conn.client_port, {
        "version": "TLSv1.3", "negotiated": False, "cipher": None, "established": False, "resumed": None,
        "alerts": [{"from": "server", "level": "fatal", "description": "protocol_version"}], "server_cert": None}))

    def s_client(*args: str) -> str:
        proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{main.port}", "-ign_eof", *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT_S)
        return proc.stdout

    def s_client_known(out: str) -> dict:
        # "New, TLSv1.2, Cipher is ECDHE-ECDSA-AES256-GCM-SHA384" / "Reused, TLSv1.3, Cipher is ..."
        m = re.search(r"^(New|Reused), (TLSv1\.[23]), Cipher is (\S+)", out, re.M)
        alpn = re.search(r"^ALPN protocol: (\S+)", out, re.M)
        return {"version": m[2], "cipher": m[3], "alpn": alpn[1] if alpn else None, "reused": m[1] == "Reused"}

    out = s_client("-tls1_2", "-servername", "s12.test", "-alpn", "http/1.1")
    from_ends("openssl s_client TLS 1.2", s_client_known(out), main, sni="s12.test", alpn_offered=["http/1.1"], server_cert="cert")
    sess = tmp / "s_client.sess"
    out = s_client("-tls1_3", "-servername", "s13.test", "-sess_out", str(sess))
    from_ends("openssl s_client TLS 1.3", s_client_known(out), main, sni="s13.test", resumed=False)
    out = s_client("-tls1_3", "-servername", "s13.test", "-sess_in", str(sess))
    from_ends("openssl s_client TLS 1.3 resumed", s_client_known(out), main, sni="s13.test", resumed=True)

    proc = subprocess.run(["curl", "-k", "-sS", "-v", "--http1.1", "--resolve", f"curl.test:{web.port}:127.0.0.1", f"https://curl.test:{web.port}/"],
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert "ok" == proc.stdout, proc.stderr
    # "* SSL connection using TLSv1.3 / TLS_AES_256_GCM_SHA384"
    m = re.search(r"SSL connection using (TLSv1\.[23]) / (\S+)", proc.stderr)
    from_ends("curl -k", {"version": m[1], "cipher": m[2], "alpn": None, "reused": False}, web,
              sni="curl.test", alpn_offered=["http/1.1"])
    return cases


def tshark_rows(pcap: Path, ports: list[int]) -> dict[tuple[int, int], dict]:
    """tshark's dissection of every ClientHello and ServerHello: (client port, handshake type) -> fields."""
    fields = ["tcp.srcport", "tcp.dstport", "tls.handshake.type", "tls.handshake.ja3", "tls.handshake.ja3_full",
              "tls.handshake.ja3s", "tls.handshake.ja3s_full", "tls.handshake.ciphersuite", "tls.handshake.extension.type",
              "tls.handshake.extensions_server_name", "tls.handshake.extensions_alpn_str", "tls.handshake.random"]
    argv = ["tshark", "-r", str(pcap), "-n"]
    for p in ports:
        argv += ["-d", f"tcp.port=={p},tls"]
    argv += ["-Y", "tls.handshake.type == 1 || tls.handshake.type == 2", "-T", "fields", "-E", "separator=/t", "-E", "aggregator=;"]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    rows: dict[tuple[int, int], dict] = {}
    for line in out.splitlines():
        values = dict(zip(fields, line.split("\t")))
        types = values["tls.handshake.type"].split(";")
        src, dst = int(values["tcp.srcport"]), int(values["tcp.dstport"])
        htype = 1 if "1" in types else 2
        port = src if htype == 1 else dst
        rows.setdefault((port, htype), values)  # the first hello of each kind
    return rows


def test_every_connection_was_captured(tls_run):
    cases, sessions, _, _ = tls_run
    assert {c.client_port for c in cases} == set(sessions), "a connection is missing from the capture, or an extra one is in it"


def test_detector_recognises_every_client_hello(tls_run):
    _, sessions, _, _ = tls_run
    assert {port: True for port in sessions} == {port: looks_like_tls_client_hello(conn.stream(True)) for port, (_, conn) in sessions.items()}


CASES = [
    "python TLS 1.3, SNI and ALPN",
    "python TLS 1.3, no SNI, no ALPN",
    "python TLS 1.2, SNI and ALPN",
    "python TLS 1.2, no SNI, no ALPN",
    "python TLS 1.2, first of a resumed pair",
    "python TLS 1.2 resumed (session ticket)",
    "python TLS 1.3, first of a resumed pair",
    "python TLS 1.3 resumed (PSK)",
    "python TLS 1.3 after a HelloRetryRequest",
    "python TLS 1.2 rejecting the certificate",
    "python TLS 1.3-only client, TLS 1.2-only server",
    "openssl s_client TLS 1.2",
    "openssl s_client TLS 1.3",
    "openssl s_client TLS 1.3 resumed",
    "curl -k",
]


def test_every_scenario_ran(tls_run):
    assert CASES == [c.name for c in tls_run[0]]


@pytest.mark.parametrize("name", CASES)
def test_record_says_what_the_ends_negotiated(tls_run, name):
    cases, sessions, _, cert = tls_run
    case = next(c for c in cases if c.name == name)
    session, conn = sessions[case.client_port]
    got = session.result()
    expect = dict(case.expect)
    if expect.get("server_cert") == "cert":
        expect["server_cert"] = cert
    expect.setdefault("alerts", [])
    assert expect == {k: got[k] for k in expect}, case.name
    assert (len(conn.stream(True)), len(conn.stream(False))) == (got["client_bytes"], got["server_bytes"]), case.name
    assert set() == session.anomalies, case.name
    assert 0 == session.mem, case.name


def test_handshake_time_and_bytes_bounds(tls_run):
    _, sessions, _, _ = tls_run
    for session, conn in sessions.values():
        assert (conn.segments[0][2], conn.segments[-1][2]) == (session.first_ts, session.last_ts)
        if session.established:
            assert session.first_ts <= session.established_ts <= session.last_ts


def test_ja3_and_ja3s_match_tshark(tls_run):
    cases, sessions, rows, _ = tls_run
    seen = 0
    for case in cases:
        got = sessions[case.client_port][0].result()
        ch = rows[(case.client_port, 1)]
        assert (ch["tls.handshake.ja3_full"], ch["tls.handshake.ja3"]) == (ja3_string(sessions[case.client_port][0].client_hello), got["ja3"]), case.name
        sh = rows.get((case.client_port, 2))
        if sh is not None:
            assert sh["tls.handshake.ja3s"] == got["ja3s"], case.name
            seen += 1
        else:
            assert got["ja3s"] is None, case.name
    assert seen == 14  # every connection but the refused one


def test_client_hello_lists_match_tshark(tls_run):
    """The parse that the fingerprints rest on: ciphers, extension types, SNI and ALPN as tshark dissects them."""
    cases, sessions, rows, _ = tls_run
    for case in cases:
        hello = sessions[case.client_port][0].client_hello
        ch = rows[(case.client_port, 1)]
        assert [int(c, 0) for c in ch["tls.handshake.ciphersuite"].split(";")] == hello.cipher_suites, case.name
        assert [int(e, 0) for e in ch["tls.handshake.extension.type"].split(";")] == hello.extensions, case.name
        assert (ch["tls.handshake.extensions_server_name"] or None) == hello.sni, case.name
        assert [a for a in ch["tls.handshake.extensions_alpn_str"].split(";") if a] == [p.decode() for p in hello.alpn], case.name


def test_hello_retry_request_is_the_one_tshark_sees(tls_run):
    cases, sessions, rows, _ = tls_run
    hrr = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
    for case in cases:
        sh = rows.get((case.client_port, 2))
        if sh is not None:
            assert (sh["tls.handshake.random"] == hrr) == sessions[case.client_port][0].result()["hello_retry"], case.name

