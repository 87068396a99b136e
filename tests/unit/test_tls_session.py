"""TlsSession fed crafted byte streams: hellos cut anywhere, odd and hostile traffic, bounds.

Each case is a list of steps in capture order: ("c", bytes) / ("s", bytes) are
client / server bytes, ("gap", from_client, n) lost bytes.  The bytes are built
by tests/tlscraft.py from the RFCs' structures; expected values are written by
hand (the JA4 raw strings spelled out and hashed here with hashlib).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time

import pytest
import tlscraft as T
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sniffd.tls import MAX_CERTIFICATE_BYTES, MAX_HELLO_BYTES, TlsSession

SID = bytes(range(32))


def make_der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Unit"), x509.NameAttribute(NameOID.COMMON_NAME, "unit.test")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Unit CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(0xABCDEF)
        .not_valid_before(dt.datetime(2024, 2, 29, 12, 0, 0, tzinfo=dt.timezone.utc))
        .not_valid_after(dt.datetime(2026, 3, 1, 0, 0, 1, tzinfo=dt.timezone.utc))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("unit.test"), x509.DNSName("*.unit.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


DER = make_der()
CERT_SUMMARY = {
    "subject": "CN=unit.test,O=Unit",
    "issuer": "CN=Unit CA",
    "serial": "ABCDEF",
    "not_before": "2024-02-29T12:00:00Z",
    "not_after": "2026-03-01T00:00:01Z",
    "dns_names": ["unit.test", "*.unit.test"],
    "sha256": hashlib.sha256(DER).hexdigest(),
}

# --- a TLS 1.2 full handshake (RFC 5246 section 7.3) --------------------------------

CH12 = T.client_hello(
    [0xC02F, 0xC030, 0x009C, 0x002F, 0x00FF],
    [T.ext_sni("www.example.test"), T.ext_groups([0x001D, 0x0017]), T.ext_point_formats([0]), T.ext_sigalgs([0x0403, 0x0804]),
     T.ext_alpn([b"h2", b"http/1.1"]), (0x0023, b""), (0x0017, b"")],
)  # fmt: skip
SH12 = T.server_hello(0xC02F, [(0xFF01, b"\x00"), T.ext_alpn([b"h2"]), (0x0017, b"")], session_id=SID)
SERVER_FLIGHT12 = T.record(22, SH12 + T.certificate([DER, DER]) + T.handshake(12, os.urandom(100)) + T.SERVER_HELLO_DONE)
CLIENT_FINISH12 = T.record(22, T.handshake(16, os.urandom(33))) + T.CCS + T.record(22, os.urandom(40))
SERVER_FINISH12 = T.CCS + T.record(22, os.urandom(40))
TLS12 = [
    ("c", T.record(22, CH12, version=0x0301)),
    ("s", SERVER_FLIGHT12),
    ("c", CLIENT_FINISH12),
    ("s", SERVER_FINISH12),
    ("c", T.app_data(200)),
    ("s", T.app_data(1000)),
]
TLS12_RESULT = {
    "version": "TLSv1.2",
    "negotiated": True,
    "cipher": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "sni": "www.example.test",
    "alpn_offered": ["h2", "http/1.1"],
    "alpn": "h2",
    "resumed": False,
    "established": True,
    "hello_retry": False,
    "alerts": [],
    "ja3": hashlib.md5(b"771,49199-49200-156-47-255,0-10-11-13-16-35-23,29-23,0").hexdigest(),
    "ja3s": hashlib.md5(b"771,49199,65281-16-23").hexdigest(),
    "ja4": "t12d0507h2_" + hashlib.sha256(b"002f,009c,00ff,c02f,c030").hexdigest()[:12]
    + "_" + hashlib.sha256(b"000a,000b,000d,0017,0023_0403,0804").hexdigest()[:12],
    "ja4s": "t1203h2_c02f_" + hashlib.sha256(b"ff01,0010,0017").hexdigest()[:12],
    "server_cert": CERT_SUMMARY,
    "client_bytes": sum(len(d) for who, d in TLS12 if who == "c"),
    "server_bytes": sum(len(d) for who, d in TLS12 if who == "s"),
}

# --- a TLS 1.3 handshake, with middlebox-compatibility ChangeCipherSpecs (RFC 8446 D.4)

CH13 = T.client_hello(
    [0x1301, 0x1302, 0x1303],
    [T.ext_sni("tls13.test"), T.ext_supported_versions([0x0304, 0x0303]), T.ext_groups([0x001D]), T.ext_sigalgs([0x0804]),
     T.ext_key_share([(0x001D, 32)]), (0x002D, b"\x01\x01")],
    session_id=SID,
)  # fmt: skip
SH13 = T.server_hello(0x1302, [(0x002B, b"\x03\x04"), (0x0033, b"\x00\x1d" + T.vec16(os.urandom(32)))], session_id=SID)
TLS13 = [
    ("c", T.record(22, CH13, version=0x0301)),
    ("s", T.record(22, SH13) + T.CCS + T.app_data(30) + T.app_data(900) + T.app_data(300) + T.app_data(60)),
    ("c", T.CCS + T.app_data(60)),
    ("s", T.app_data(250)),
    ("c", T.app_data(500)),
]


def run(steps, *, piece: int | None = None, close: bool = True, t0: float = 100.0) -> TlsSession:
    """Feed ``steps`` (step i at time t0 + i), each cut into ``piece``-byte calls when given."""
    s = TlsSession()
    for i, step in enumerate(steps):
        if step[0] == "gap":
            s.gap(step[1], step[2])
            continue
        who, data = step
        size = piece or max(len(data), 1)
        for j in range(0, len(data), size):
            s.feed(who == "c", data[j : j + size], t0 + i)
    if close:
        s.close(t0 + len(steps))
    return s


def test_tls12_full_handshake():
    s = run(TLS12)
    assert TLS12_RESULT == s.result()
    assert (set(), 0, 100.0, 106.0, 103.0) == (s.anomalies, s.mem, s.first_ts, s.last_ts, s.established_ts)


def test_tls12_byte_at_a_time_gives_the_same_result():
    s = run(TLS12, piece=1)
    assert (TLS12_RESULT, set()) == (s.result(), s.anomalies)


@pytest.mark.parametrize("step", [0, 1])
def test_tls12_hello_flights_split_at_every_offset(step):
    """The ClientHello (step 0) or the server's hello-to-done flight (step 1) in two TCP segments, cut at every byte."""
    data = TLS12[step][1]
    for cut in range(1, len(data)):
        steps = TLS12[:step] + [(TLS12[step][0], data[:cut]), (TLS12[step][0], data[cut:])] + TLS12[step + 1 :]
        s = run(steps)
        got = s.result()
        assert (TLS12_RESULT, set()) == (got, s.anomalies), cut


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 300])
def test_hellos_spread_over_many_records(size):
    """RFC 5246 section 6.2.1: a handshake message may span records; each record here holds ``size`` bytes."""
    flight = SH12 + T.certificate([DER, DER]) + T.handshake(12, os.urandom(100)) + T.SERVER_HELLO_DONE
    steps = [("c", T.records(22, CH12, size, version=0x0301)), ("s", T.records(22, flight, size))] + TLS12[2:]
    s = run(steps)
    expect = dict(TLS12_RESULT, client_bytes=s.client_bytes, server_bytes=s.server_bytes)
    assert (expect, set()) == (s.result(), s.anomalies)


def test_tls13_handshake():
    s = run(TLS13)
    assert {
        "version": "TLSv1.3",
        "negotiated": True,
        "cipher": "TLS_AES_256_GCM_SHA384",
        "sni": "tls13.test",
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
        "client_bytes": sum(len(d) for who, d in TLS13 if who == "c"),
        "server_bytes": sum(len(d) for who, d in TLS13 if who == "s"),
    } == s.result()
    # Established when the client's first encrypted record came (step 2), not at its compatibility CCS.
    assert (set(), 102.0) == (s.anomalies, s.established_ts)


def test_tls13_client_ccs_before_server_hello_is_the_compatibility_dummy():
    """RFC 8446 appendix D.4: a client offering 1.3 may send its dummy CCS right after the ClientHello."""
    steps = [("c", T.record(22, CH13) + T.CCS)] + TLS13[1:]
    s = run(steps, close=False)
    assert (True, 102.0) == (s.established, s.established_ts)


def test_tls13_early_data_before_server_hello_does_not_end_parsing():
    """0-RTT application data (RFC 8446 section 4.2.10) comes before the ServerHello."""
    s = TlsSession()
    s.feed(True, T.record(22, CH13) + T.app_data(100), 1.0)
    assert (False, False) == (s.done, s.established)
    for i, (who, data) in enumerate(TLS13[1:]):
        s.feed(who == "c", data, 2.0 + i)
    assert (True, 3.0, set()) == (s.established, s.established_ts, s.anomalies)


# A post-quantum hybrid key share (X25519MLKEM768, group 0x11ec: 1184-byte ML-KEM
# encapsulation key + 32-byte X25519 share = 1216 bytes) as browsers send since 2024.
CH_PQ = T.client_hello(
    [0x1A1A, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F],
    [(0x0A0A, b""), T.ext_sni("pq.test"), (0x0017, b""), (0xFF01, b"\x00"), T.ext_groups([0x2A2A, 0x11EC, 0x001D, 0x0017]),
     T.ext_point_formats([0]), (0x0023, b""), T.ext_alpn([b"h2", b"http/1.1"]), T.ext_sigalgs([0x0403, 0x0804, 0x0401]),
     T.ext_key_share([(0x2A2A, 1), (0x11EC, 1216), (0x001D, 32)]), (0x002D, b"\x01\x01"),
     T.ext_supported_versions([0x3A3A, 0x0304, 0x0303]), (0x001B, b"\x02\x00\x02"), (0xFE0D, os.urandom(250)), (0xBABA, b"\x00")],
)  # fmt: skip


def test_post_quantum_client_hello_over_several_segments_and_records():
    assert len(CH_PQ) > 1500
    expect_ja4 = (
        "t13d0513h2_" + hashlib.sha256(b"1301,1302,1303,c02b,c02f").hexdigest()[:12]
        + "_" + hashlib.sha256(b"000a,000b,000d,0017,001b,0023,002b,002d,0033,fe0d,ff01_0403,0804,0401").hexdigest()[:12]
    )  # fmt: skip
    for stream in (T.record(22, CH_PQ, version=0x0301), T.records(22, CH_PQ, 512, version=0x0301)):
        # 1448-byte TCP segments (a 1500-byte MTU with timestamps).
        s = run([("c", stream)] + TLS13[1:], piece=1448)
        got = s.result()
        assert (expect_ja4, "pq.test", "TLSv1.3", True, set()) == (got["ja4"], got["sni"], got["version"], got["established"], s.anomalies)


def test_sslv2_compatible_hello_then_tls():
    """RFC 5246 appendix E.2: an SSL 2.0-format ClientHello offering TLS 1.0; the rest is TLS."""
    sh = T.server_hello(0x002F, None, version=0x0301)
    steps = [
        ("c", T.sslv2_client_hello(0x0301, [0x010080, 0x000039, 0x00002F])),
        ("s", T.record(22, sh + T.certificate([DER]) + T.SERVER_HELLO_DONE, version=0x0301)),
        ("c", T.record(22, T.handshake(16, os.urandom(130)), version=0x0301) + T.CCS + T.record(22, os.urandom(40))),
        ("s", T.CCS + T.record(22, os.urandom(40))),
    ]
    s = run(steps, piece=5)
    got = s.result()
    assert {"tls_sslv2_hello"} == s.anomalies
    assert ("TLSv1.0", "TLS_RSA_WITH_AES_128_CBC_SHA", True, None, None, hashlib.md5(b"769,47,").hexdigest(), CERT_SUMMARY) == (
        got["version"], got["cipher"], got["established"], got["ja3"], got["ja4"], got["ja3s"], got["server_cert"])  # fmt: skip


def test_sslv2_only_hello_is_counted_not_followed():
    steps = [("c", T.sslv2_client_hello(0x0002, [0x010080, 0x020080])), ("s", b"\x80\x30\x04" + os.urandom(47)), ("c", os.urandom(80))]
    s = run(steps)
    got = s.result()
    assert ({"tls_sslv2_hello"}, "SSLv2", False, False, 0) == (s.anomalies, got["version"], got["negotiated"], got["established"], s.mem)


@pytest.mark.parametrize(
    "client_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        bytes([0x42]) + os.urandom(300),
        b"\x16\x07\x07" + os.urandom(40),  # a handshake type byte, then no TLS version
        b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",  # a ServerHello from the client
        b"\x81\x00\x01\x03\x01" + os.urandom(300),  # high bit set, not an SSL 2.0 hello
    ],
)
def test_not_tls_on_the_client_side(client_bytes):
    s = run([("c", client_bytes), ("s", b"HTTP/1.1 400 Bad Request\r\n\r\n")])
    got = s.result()
    assert ({"tls_not_tls"}, None, False, 0) == (s.anomalies, got["version"], got["established"], s.mem)
    assert (len(client_bytes), 28) == (got["client_bytes"], got["server_bytes"])


def test_server_answering_in_clear_text():
    s = run([("c", T.record(22, CH12)), ("s", b"HTTP/1.1 400 Bad Request\r\n\r\nThe plain HTTP request was sent to HTTPS port")])
    got = s.result()
    assert ({"tls_server_not_tls"}, "TLSv1.2", False) == (s.anomalies, got["version"], got["negotiated"])


def test_gap_in_the_client_hello_stops_parsing_and_truncates():
    ch = T.record(22, CH12)
    s = run([("c", ch[:100]), ("gap", True, len(ch) - 100), ("s", SERVER_FLIGHT12)] + TLS12[2:])
    got = s.result()
    assert ({"tls_gap", "tls_truncated_handshake"}, None, False, len(ch) - 100) == (s.anomalies, got["sni"], got["established"], s.missed_bytes)
    assert ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", CERT_SUMMARY, 0) == (got["cipher"], got["server_cert"], s.mem)


def test_gap_in_the_server_certificate():
    s = run([TLS12[0], ("s", SERVER_FLIGHT12[:200]), ("gap", False, 500)])
    got = s.result()
    assert ({"tls_gap", "tls_truncated_handshake"}, "TLSv1.2", None) == (s.anomalies, got["version"], got["server_cert"])
    assert len(SERVER_FLIGHT12[:200]) + 500 == got["server_bytes"]


def test_gap_after_the_handshake_is_only_counted():
    s = run(TLS12 + [("gap", True, 5000), ("c", b"\x17" * 10)])
    got = s.result()
    assert (set(), True, 5000, TLS12_RESULT["client_bytes"] + 5010) == (s.anomalies, got["established"], s.missed_bytes, got["client_bytes"])


@pytest.mark.parametrize("cut", [0, 3, 5, 60])
def test_handshake_cut_by_the_close(cut):
    """The client hello alone (cut=0), or cut short, then the connection ends."""
    ch = T.record(22, CH12)
    s = run([("c", ch[: len(ch) - cut])])
    got = s.result()
    assert ({"tls_truncated_handshake"}, False, 0) == (s.anomalies, got["established"], s.mem)
    assert ("www.example.test" if cut == 0 else None) == got["sni"]


def test_server_that_never_finishes():
    s = run(TLS12[:3])
    assert ({"tls_truncated_handshake"}, False, "TLSv1.2") == (s.anomalies, s.established, s.result()["version"])


def test_fatal_alert_in_clear_explains_the_end():
    alert = T.alert(2, 40)
    for cut in range(0, len(alert) + 1):
        s = run([TLS12[0], ("s", alert[:cut]), ("s", alert[cut:])])
        got = s.result()
        assert ([{"from": "server", "level": "fatal", "description": "handshake_failure"}], set(), False) == (
            got["alerts"], s.anomalies, got["established"]), cut  # fmt: skip


def test_alerts_in_order_with_sides_and_unknown_codes():
    s = run([TLS12[0], ("c", T.alert(1, 0) + T.alert(7, 250)), ("s", T.alert(2, 70))])
    assert [
        {"from": "client", "level": "warning", "description": "close_notify"},
        {"from": "client", "level": "unknown_7", "description": "unknown_250"},
        {"from": "server", "level": "fatal", "description": "protocol_version"},
    ] == s.result()["alerts"]


def test_alerts_are_bounded():
    s = run([TLS12[0], ("s", T.alert(1, 90) * 40 + T.alert(2, 40))])
    assert (16, {"tls_too_many_alerts"}) == (len(s.result()["alerts"]), s.anomalies)


def test_hello_retry_request():
    """RFC 8446 section 4.1.4: the server asks for another key share; the client's
    dummy CCS comes before its second ClientHello (appendix D.4)."""
    hrr = T.server_hello(0x1301, [(0x002B, b"\x03\x04"), (0x0033, b"\x00\x17"), (0x002C, T.vec16(b"cookie"))], session_id=SID, random=T.HRR_RANDOM)
    ch2 = T.client_hello([0x1301], [T.ext_sni("second.test"), T.ext_supported_versions([0x0304]), T.ext_key_share([(0x0017, 65)])], session_id=SID)
    sh = T.server_hello(0x1301, [(0x002B, b"\x03\x04"), (0x0033, b"\x00\x17" + T.vec16(os.urandom(65)))], session_id=SID)
    steps = [
        ("c", T.record(22, CH13)),
        ("s", T.record(22, hrr) + T.CCS),
        ("c", T.CCS + T.record(22, ch2)),
        ("s", T.record(22, sh) + T.app_data(500)),
        ("c", T.app_data(60)),
    ]
    s = run(steps)
    got = s.result()
    # The first ClientHello and the first ServerHello (the HelloRetryRequest) are fingerprinted.
    assert (True, True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", "tls13.test", set()) == (
        got["hello_retry"], got["established"], got["version"], got["cipher"], got["sni"], s.anomalies)  # fmt: skip
    assert "t130300_1301_" + hashlib.sha256(b"002b,0033,002c").hexdigest()[:12] == got["ja4s"]
    assert 104.0 == s.established_ts


def test_tls12_abbreviated_handshake_is_resumed():
    """RFC 5246 section 7.3: the server echoes the session id and goes straight to ChangeCipherSpec."""
    ch = T.client_hello([0xC02F], [(0x0023, os.urandom(160))], session_id=SID)
    sh = T.server_hello(0xC02F, [(0x0023, b"")], session_id=SID)
    steps = [("c", T.record(22, ch)), ("s", T.record(22, sh + T.handshake(4, os.urandom(170))) + SERVER_FINISH12), ("c", T.CCS + T.record(22, os.urandom(40)))]
    got = run(steps).result()
    assert (True, True, None) == (got["resumed"], got["established"], got["server_cert"])


def test_tls12_ticket_resumption_without_session_id_is_resumed():
    """RFC 5077 section 3.1: the structure says it (no Certificate, no ServerHelloDone before the CCS)."""
    ch = T.client_hello([0xC02F], [(0x0023, os.urandom(160))])
    sh = T.server_hello(0xC02F, [(0x0023, b"")])
    got = run([("c", T.record(22, ch)), ("s", T.record(22, sh) + SERVER_FINISH12)]).result()
    assert (True, False) == (got["resumed"], got["established"])


def test_tls13_psk_accepted_is_resumed():
    sh = T.server_hello(0x1301, [(0x002B, b"\x03\x04"), (0x0029, b"\x00\x00")], session_id=SID)
    got = run([TLS13[0], ("s", T.record(22, sh) + T.app_data(100)), ("c", T.app_data(50))]).result()
    assert (True, True) == (got["resumed"], got["established"])


def test_oversized_record_header():
    """A length above 2^14+2048 (RFC 5246 section 6.2.3): no receiver accepts it."""
    s = run([TLS12[0], ("s", b"\x16\x03\x03\xff\xff" + os.urandom(1000))])
    assert ({"tls_record_oversized", "tls_truncated_handshake"}, 0) == (s.anomalies, s.mem)


def test_bad_record_after_the_start():
    s = run([TLS12[0], ("c", b"\x63\x03\x03\x00\x02ab")])
    assert {"tls_bad_record", "tls_truncated_handshake"} == s.anomalies


def test_huge_handshake_length_is_bounded():
    """A ClientHello claiming 16 MiB, then 1 MiB of it: at most MAX_HELLO_BYTES is ever held."""
    s = TlsSession()
    s.feed(True, T.record(22, b"\x01\xff\xff\xff" + bytes(1000)), 1.0)
    peak = 0
    for _ in range(64):
        s.feed(True, T.record(22, bytes(16384)), 1.0)
        peak = max(peak, s.mem)
    assert ({"tls_handshake_too_large"}, MAX_HELLO_BYTES, None) == (s.anomalies, peak, s.client_hello)


def test_huge_certificate_keeps_the_first_certificate():
    big = T.certificate([DER, os.urandom(400_000)])
    s = TlsSession()
    s.feed(True, T.record(22, CH12), 1.0)
    s.feed(False, T.record(22, SH12), 2.0)
    peak = 0
    for i in range(0, len(big), 16384):
        s.feed(False, T.record(22, big[i : i + 16384]), 2.0)
        peak = max(peak, s.mem)
    assert ({"tls_handshake_too_large"}, CERT_SUMMARY) == (s.anomalies, s.server_cert)
    assert MAX_CERTIFICATE_BYTES <= peak <= MAX_CERTIFICATE_BYTES + 16384


def test_malformed_client_hello():
    ch = bytearray(CH12)
    ch[4 + 2 + 32 + 1 + 1] = 0xFF  # cipher_suites length runs past the end
    s = run([("c", T.record(22, bytes(ch))), ("s", T.alert(2, 50))])
    got = s.result()
    assert ({"tls_bad_hello"}, None, None) == (s.anomalies, got["version"], got["ja4"])


def test_repeated_extension_is_flagged_but_fingerprinted():
    ch = T.client_hello([0x1301], [T.ext_sni("a.test"), T.ext_sni("b.test")])
    got = run([("c", T.record(22, ch))], close=False)
    assert ({"tls_bad_hello"}, "a.test") == (got.anomalies, got.result()["sni"])
    assert got.result()["ja4"].startswith("t12d0102")


def test_bad_certificate():
    junk = b"\x30\x03\x02\x01\x01"
    flight = T.record(22, SH12 + T.certificate([junk]) + T.SERVER_HELLO_DONE)
    s = run([TLS12[0], ("s", flight)] + TLS12[2:])
    assert {"tls_bad_certificate"} == s.anomalies
    assert {"subject": None, "issuer": None, "serial": None, "not_before": None, "not_after": None, "dns_names": [],
            "sha256": hashlib.sha256(junk).hexdigest()} == s.result()["server_cert"]  # fmt: skip


def test_memory_is_what_is_held():
    ch = T.record(22, CH12)
    s = TlsSession()
    s.feed(True, ch[:-20], 1.0)
    assert len(ch) - 20 - 5 - 4 == s.mem  # the hello's body so far; record and handshake headers are consumed
    s.feed(True, ch[-20:], 1.0)
    assert 0 == s.mem


def test_time_never_goes_back():
    s = TlsSession()
    s.feed(True, T.record(22, CH12), 10.0)
    s.feed(False, SERVER_FLIGHT12, 9.0)
    s.close(12.0)
    assert (10.0, 12.0) == (s.first_ts, s.last_ts)


def test_after_the_handshake_feed_is_constant_time():
    """Once both sides are encrypted, feed only counts: 2000 calls of 16 MiB each
    would take minutes if the bytes were looked at."""
    s = run(TLS12, close=False)
    assert s.done and s.established
    chunk = bytes(16 * 1024 * 1024)
    start = time.perf_counter()
    for i in range(1000):
        s.feed(True, chunk, 200.0 + i)
        s.feed(False, chunk, 200.0 + i)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, elapsed
    assert (0, TLS12_RESULT["client_bytes"] + 1000 * len(chunk)) == (s.mem, s.client_bytes)


def test_one_full_handshake_parses_in_well_under_a_millisecond():
    """A loose guard against a slow path (measured ~0.1 ms on the reference machine)."""
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        s = run(TLS12)
        s.result()
    per = (time.perf_counter() - start) / n
    assert per < 0.005, per
