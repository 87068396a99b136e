"""The TLS stage's memos (sniffd.tls.memo): bounded, and never a result that differs from computing it.

Expected fingerprints are the hashes of JA3/JA4 strings written out by hand
here (as in test_tls_fingerprint.py and test_tls_session.py), expected
certificate fields are the values the certificate was built with.  Each
hello is asked for three times: the first sighting computes, the second
computes and is remembered, the third is a memo hit; every answer must be
the hand-written one.  The variants differ from one base hello in exactly
one field a fingerprint reads: a memo key that missed that field would
give the base hello's fingerprint back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys

import pytest
import tlscraft as T
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from sniffd.tls import fingerprint, x509
from sniffd.tls.fingerprint import client_fingerprints, server_fingerprints
from sniffd.tls.hello import ClientHello, parse_client_hello, parse_server_hello
from sniffd.tls.memo import Memo


def md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def h12(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()[:12]


def deep_size(obj, seen=None) -> int:
    """Bytes of ``obj`` and everything it holds (each object once)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (tuple, list)):
        size += sum(deep_size(v, seen) for v in obj)
    elif isinstance(obj, Memo):
        size += deep_size(obj._values, seen) + deep_size(obj._seen, seen)
    return size


# --- Memo itself --------------------------------------------------------------------


def test_memo_remembers_a_key_from_its_second_sighting():
    m = Memo(4)
    assert None is m.get("a")
    m.put("a", 1)  # first sighting: only noted
    assert (None, 0) == (m.get("a"), len(m))
    m.put("a", 1)  # second: stored
    assert (1, 1) == (m.get("a"), len(m))


def test_memo_holds_at_most_size_entries_and_drops_the_oldest():
    m = Memo(3)
    for k in "abcde":
        m.put(k, k.upper())
        m.put(k, k.upper())
    assert 3 == len(m)
    assert [None, None, "C", "D", "E"] == [m.get(k) for k in "abcde"]


def test_memo_table_of_keys_seen_once_is_bounded():
    m = Memo(2)
    for i in range(1000):
        m.put(i, i)
    assert (0, 8) == (len(m), len(m._seen))


def test_memo_of_size_zero_remembers_nothing():
    m = Memo(0)
    for _ in range(3):
        m.put("a", 1)
    assert (None, 0) == (m.get("a"), len(m))


def test_memo_size_must_not_be_negative():
    with pytest.raises(ValueError, match="Memo size"):
        Memo(-1)


# --- client fingerprints ------------------------------------------------------------

BASE_CIPHERS = [0x1301, 0xC02F]


def hello(ciphers=BASE_CIPHERS, *, version=0x0303, sni="a.test", groups=(0x001D, 0x0017), formats=(0,), sigalgs=(0x0403,),
          alpn=(b"h2",), versions=(0x0304, 0x0303), order=None) -> ClientHello:
    exts = {
        0x0000: T.ext_sni(sni) if sni else None,
        0x000A: T.ext_groups(list(groups)),
        0x000B: T.ext_point_formats(list(formats)),
        0x000D: T.ext_sigalgs(list(sigalgs)),
        0x0010: T.ext_alpn(list(alpn)),
        0x002B: T.ext_supported_versions(list(versions)),
    }
    order = order or [0x0000, 0x000A, 0x000B, 0x000D, 0x0010, 0x002B]
    h = parse_client_hello(T.client_hello(list(ciphers), [exts[e] for e in order if exts[e] is not None], version=version)[4:])
    assert h is not None and not h.malformed
    return h


BASE_C = "000a,000b,000d,002b_0403"
# (name, hello, JA3 string, JA4_a, JA4_b before hashing, JA4_c before hashing), all by hand.
CLIENT_CASES = [
    ("base", hello(), "771,4865-49199,0-10-11-13-16-43,29-23,0", "t13d0206h2", "1301,c02f", BASE_C),
    ("legacy version", hello(version=0x0301), "769,4865-49199,0-10-11-13-16-43,29-23,0", "t13d0206h2", "1301,c02f", BASE_C),
    ("cipher order", hello([0xC02F, 0x1301]), "771,49199-4865,0-10-11-13-16-43,29-23,0", "t13d0206h2", "1301,c02f", BASE_C),
    ("one more cipher", hello([0x1301, 0xC02F, 0x009C]), "771,4865-49199-156,0-10-11-13-16-43,29-23,0", "t13d0306h2", "009c,1301,c02f", BASE_C),
    ("extension order", hello(order=[0x000A, 0x0000, 0x000B, 0x000D, 0x0010, 0x002B]), "771,4865-49199,10-0-11-13-16-43,29-23,0",
     "t13d0206h2", "1301,c02f", BASE_C),
    ("no sni", hello(sni=None), "771,4865-49199,10-11-13-16-43,29-23,0", "t13i0205h2", "1301,c02f", BASE_C),
    ("groups", hello(groups=(0x001D,)), "771,4865-49199,0-10-11-13-16-43,29,0", "t13d0206h2", "1301,c02f", BASE_C),
    ("point formats", hello(formats=(0, 1)), "771,4865-49199,0-10-11-13-16-43,29-23,0-1", "t13d0206h2", "1301,c02f", BASE_C),
    ("signature algorithms", hello(sigalgs=(0x0804,)), "771,4865-49199,0-10-11-13-16-43,29-23,0", "t13d0206h2", "1301,c02f",
     "000a,000b,000d,002b_0804"),
    ("alpn", hello(alpn=(b"http/1.1",)), "771,4865-49199,0-10-11-13-16-43,29-23,0", "t13d0206h1", "1301,c02f", BASE_C),
    ("supported versions", hello(versions=(0x0303,)), "771,4865-49199,0-10-11-13-16-43,29-23,0", "t12d0206h2", "1301,c02f", BASE_C),
    ("sni name only", hello(sni="other.test"), "771,4865-49199,0-10-11-13-16-43,29-23,0", "t13d0206h2", "1301,c02f", BASE_C),
]


@pytest.mark.parametrize("name, h, ja3_string, a, b, c", CLIENT_CASES, ids=[c[0] for c in CLIENT_CASES])
def test_client_fingerprints_remembered_or_not_are_the_hand_written_ones(name, h, ja3_string, a, b, c):
    base = CLIENT_CASES[0][1]
    for _ in range(3):
        client_fingerprints(base)  # the base shape is remembered
    expected = (md5(ja3_string), f"{a}_{h12(b)}_{h12(c)}")
    assert [expected] * 3 == [client_fingerprints(h) for _ in range(3)]


def test_client_fingerprints_of_an_sslv2_hello_are_none():
    h = ClientHello(0x0301, b"", [0x002F], sslv2=True)
    assert (None, None) == client_fingerprints(h)


def test_client_memo_stays_within_its_size_and_weight():
    """64 distinct hellos of the most values a remembered one may have, each seen twice."""
    n = fingerprint.MAX_MEMO_VALUES // 4
    for i in range(fingerprint.CLIENT_MEMO_SIZE + 10):
        h = ClientHello(0x0303, b"", [0x0100 + i] + list(range(0x1000, 0x1000 + n - 1)), extensions=list(range(0x2000, 0x2000 + n)),
                        supported_groups=list(range(n)), signature_algorithms=list(range(0x0400, 0x0400 + n)), alpn=[b"x" * 255])
        client_fingerprints(h)
        client_fingerprints(h)
    assert fingerprint.CLIENT_MEMO_SIZE == len(fingerprint.CLIENT_MEMO)
    assert deep_size(fingerprint.CLIENT_MEMO) < 200_000


def test_a_hello_with_too_many_values_is_fingerprinted_but_not_remembered():
    n = fingerprint.MAX_MEMO_VALUES + 1
    h = ClientHello(0x0303, b"", list(range(0x1000, 0x1000 + n)))
    before = dict(fingerprint.CLIENT_MEMO._values)
    expected_ja3 = md5("771," + "-".join(str(c) for c in range(0x1000, 0x1000 + n)) + ",,,")
    assert [expected_ja3] * 3 == [client_fingerprints(h)[0] for _ in range(3)]
    assert before == fingerprint.CLIENT_MEMO._values


# --- server fingerprints ------------------------------------------------------------

SPEC_EXTS = [(0x0005, b""), (0x0017, b""), (0xFF01, b"\x00"), (0x0000, b"")]
# (name, ServerHello bytes, JA3S string, JA4S before hashing its extensions, JA4S extensions), by hand.
SERVER_CASES = [
    # JA4S.md's example: t120400_c030_4e8089b08790.
    ("spec", T.server_hello(0xC030, SPEC_EXTS), "771,49200,5-23-65281-0", "t120400_c030", "0005,0017,ff01,0000"),
    ("cipher", T.server_hello(0xC02F, SPEC_EXTS), "771,49199,5-23-65281-0", "t120400_c02f", "0005,0017,ff01,0000"),
    ("legacy version", T.server_hello(0xC030, SPEC_EXTS, version=0x0301), "769,49200,5-23-65281-0", "t100400_c030", "0005,0017,ff01,0000"),
    ("extension order", T.server_hello(0xC030, SPEC_EXTS[::-1]), "771,49200,0-65281-23-5", "t120400_c030", "0000,ff01,0017,0005"),
    ("selected 1.3", T.server_hello(0x1301, [(0x002B, b"\x03\x04")]), "771,4865,43", "t130100_1301", "002b"),
    ("selected 1.2", T.server_hello(0x1301, [(0x002B, b"\x03\x03")]), "771,4865,43", "t120100_1301", "002b"),
    ("alpn h2", T.server_hello(0x1301, [T.ext_alpn([b"h2"])]), "771,4865,16", "t1201h2_1301", "0010"),
    ("alpn h3", T.server_hello(0x1301, [T.ext_alpn([b"h3"])]), "771,4865,16", "t1201h3_1301", "0010"),
]


@pytest.mark.parametrize("name, message, ja3s_string, a, exts", SERVER_CASES, ids=[c[0] for c in SERVER_CASES])
def test_server_fingerprints_remembered_or_not_are_the_hand_written_ones(name, message, ja3s_string, a, exts):
    for _ in range(3):
        server_fingerprints(parse_server_hello(SERVER_CASES[0][1][4:]))
    expected = (md5(ja3s_string), f"{a}_{h12(exts)}")
    assert [expected] * 3 == [server_fingerprints(parse_server_hello(message[4:])) for _ in range(3)]


def test_server_fingerprints_of_the_specification_example():
    sh = parse_server_hello(SERVER_CASES[0][1][4:])
    assert [(md5("771,49200,5-23-65281-0"), "t120400_c030_4e8089b08790")] * 3 == [server_fingerprints(sh) for _ in range(3)]


# --- certificate summaries ------------------------------------------------------------

KEY = ec.generate_private_key(ec.SECP256R1())


def make_der(cn: str, names: list[str], serial: int = 0x0A0B0C) -> bytes:
    builder = (
        cx509.CertificateBuilder()
        .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "Memo CA")]))
        .public_key(KEY.public_key())
        .serial_number(serial)
        .not_valid_before(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
        .not_valid_after(dt.datetime(2027, 6, 7, 8, 9, 10, tzinfo=dt.timezone.utc))
    )
    if names:
        builder = builder.add_extension(cx509.SubjectAlternativeName([cx509.DNSName(n) for n in names]), critical=False)
    return builder.sign(KEY, hashes.SHA256()).public_bytes(Encoding.DER)


def expected_summary(der: bytes, cn: str, names: list[str], serial: str = "0A0B0C") -> dict:
    return {
        "subject": f"CN={cn}",
        "issuer": "CN=Memo CA",
        "serial": serial,
        "not_before": "2024-01-02T03:04:05Z",
        "not_after": "2027-06-07T08:09:10Z",
        "dns_names": names,
        "sha256": hashlib.sha256(der).hexdigest(),
    }


def test_certificate_summary_remembered_is_the_certificate_and_a_new_dict_each_time():
    der = make_der("memo.test", ["memo.test", "www.memo.test"])
    expected = (expected_summary(der, "memo.test", ["memo.test", "www.memo.test"]), True)
    got = [x509.certificate_summary(der) for _ in range(3)]
    assert [expected] * 3 == got
    got[2][0]["dns_names"].append("changed.test")
    got[2][0]["subject"] = "changed"
    assert expected == x509.certificate_summary(der)


def test_certificates_that_differ_get_their_own_summaries():
    ders = [make_der("a.test", ["a.test"], 1), make_der("a.test", ["a.test"], 2), make_der("b.test", [], 1)]
    expected = [
        (expected_summary(ders[0], "a.test", ["a.test"], "01"), True),
        (expected_summary(ders[1], "a.test", ["a.test"], "02"), True),
        (expected_summary(ders[2], "b.test", [], "01"), True),
    ]
    for _ in range(3):
        assert expected == [x509.certificate_summary(d) for d in ders]


def test_bytes_that_are_no_certificate_are_remembered_as_unparsed():
    junk = b"\x30\x03\x02\x01\x05"
    expected = ({"subject": None, "issuer": None, "serial": None, "not_before": None, "not_after": None, "dns_names": [],
                 "sha256": hashlib.sha256(junk).hexdigest()}, False)
    assert [expected] * 3 == [x509.certificate_summary(junk) for _ in range(3)]


def test_a_certificate_with_many_names_is_summarised_but_not_remembered():
    names = [f"host{i:04d}.many-names.test" for i in range(300)]
    der = make_der("many.test", names)
    before = dict(x509.CERT_MEMO._values)
    assert [(expected_summary(der, "many.test", names), True)] * 3 == [x509.certificate_summary(der) for _ in range(3)]
    assert before == x509.CERT_MEMO._values


def test_certificate_memo_stays_within_its_size_and_weight():
    """More distinct certificates than the memo holds, each with as many names as a remembered one may have."""
    for i in range(x509.CERT_MEMO_SIZE + 5):
        names = [f"h{j:03d}.c{i:03d}.weight.test" for j in range(90)]
        der = make_der(f"c{i:03d}.weight.test", names, i + 1)
        for _ in range(2):
            summary, _parsed = x509.certificate_summary(der)
        assert names == summary["dns_names"]
    assert x509.CERT_MEMO_SIZE == len(x509.CERT_MEMO)
    assert deep_size(x509.CERT_MEMO) < 400_000
