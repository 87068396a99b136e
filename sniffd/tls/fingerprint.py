"""JA3, JA3S, JA4 and JA4S fingerprints of parsed hellos (pure).

One job: the four strings, exactly as their published specifications define them.

JA3 / JA3S (salesforce/ja3 README and its reference python/ja3.py, ja3s.py):
``md5("SSLVersion,Cipher,SSLExtension,EllipticCurve,EllipticCurvePointFormat")``
for the ClientHello, ``md5("SSLVersion,Cipher,SSLExtension")`` for the
ServerHello; values in decimal, joined by "-" within a field; SSLVersion is the
hello's legacy (record body) version; GREASE values (RFC 8701) are dropped
from the client's ciphers, extensions and curves.  The reference JA3S does not
drop GREASE (a server never sends it in a ServerHello), and neither does this.

JA4 / JA4S (FoxIO-LLC/ja4, technical_details/JA4.md and JA4S.md; tests quote
their vectors): see ``ja4_raw`` and ``ja4s_raw``.  Only TLS over TCP ("t")
reaches this package.

A ClientHello in the SSL 2.0 format has no fingerprint here (None): neither
specification says how to read its 3-byte cipher specs.
"""

from __future__ import annotations

import hashlib

from sniffd.tls.hello import (
    EXT_ALPN,
    EXT_SERVER_NAME,
    EXT_SUPPORTED_VERSIONS,
    GREASE,
    ClientHello,
    ServerHello,
)

# JA4.md "TLS and DTLS Version"; any other value is "00".
_JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}

# JA4.md: "If there are no ciphers in the sorted cipher list, then the value of
# JA4_b is set to 000000000000" (and the same for JA4_c with no extensions).
_EMPTY_HASH = "000000000000"


def _dash(values) -> str:
    return "-".join(map(str, values))


def ja3_string(hello: ClientHello) -> str | None:
    if hello.sslv2:
        return None
    return ",".join(
        (
            str(hello.legacy_version),
            _dash([c for c in hello.cipher_suites if c not in GREASE]),
            _dash([e for e in hello.extensions if e not in GREASE]),
            _dash([g for g in hello.supported_groups if g not in GREASE]),
            _dash(hello.ec_point_formats),
        )
    )


def ja3(hello: ClientHello) -> str | None:
    s = ja3_string(hello)
    return None if s is None else hashlib.md5(s.encode("ascii"), usedforsecurity=False).hexdigest()


def ja3s_string(hello: ServerHello) -> str:
    return f"{hello.legacy_version},{hello.cipher_suite},{_dash(hello.extensions)}"


def ja3s(hello: ServerHello) -> str:
    return hashlib.md5(ja3s_string(hello).encode("ascii"), usedforsecurity=False).hexdigest()


def _hash12(s: str) -> str:
    return hashlib.sha256(s.encode("ascii")).hexdigest()[:12] if s else _EMPTY_HASH


def _alnum(b: int) -> bool:
    return 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A


def ja4_alpn(value: bytes | None) -> str:
    """JA4.md "ALPN Extension Value": the first and last characters of the (first)
    ALPN value; "00" when there is none or it is empty; a one-character value is
    both first and last; if its first or last byte is not ASCII alphanumeric, the
    first and last characters of its hex form instead."""
    if not value:
        return "00"
    first, last = value[0], value[-1]
    if _alnum(first) and _alnum(last):
        return chr(first) + chr(last)
    h = value.hex()
    return h[0] + h[-1]


def _ja4_version(code: int) -> str:
    return _JA4_VERSIONS.get(code, "00")


def _two_digits(n: int) -> str:
    return f"{min(n, 99):02d}"


def ja4_raw(hello: ClientHello) -> str | None:
    """JA4_r: the fingerprint before hashing,
    ``{t}{version}{d|i}{ciphers:02}{extensions:02}{alpn}_{sorted ciphers}_{sorted extensions}[_{signature algorithms}]``.

    - version: the highest non-GREASE value of supported_versions when the
      extension is there, else the hello's legacy_version;
    - d when server_name is present, i when not;
    - counts of ciphers and extensions without GREASE, at most 99 (SNI and ALPN counted);
    - cipher list: 4-digit lower-case hex, GREASE dropped, sorted;
    - extension list: the same, without SNI (0000) and ALPN (0010);
    - signature algorithms: in the order sent, GREASE dropped; when there are
      none the string ends after the extensions, with no underscore.
    """
    if hello.sslv2:
        return None
    ciphers = [c for c in hello.cipher_suites if c not in GREASE]
    exts = [e for e in hello.extensions if e not in GREASE]
    if EXT_SUPPORTED_VERSIONS in exts:
        offered = [v for v in hello.supported_versions if v not in GREASE]
        version = _ja4_version(max(offered)) if offered else "00"
    else:
        version = _ja4_version(hello.legacy_version)
    a = (
        "t"
        + version
        + ("d" if EXT_SERVER_NAME in exts else "i")
        + _two_digits(len(ciphers))
        + _two_digits(len(exts))
        + ja4_alpn(hello.alpn[0] if hello.alpn else None)
    )
    b = ",".join([f"{c:04x}" for c in sorted(ciphers)])
    c = ",".join([f"{e:04x}" for e in sorted(exts) if e != EXT_SERVER_NAME and e != EXT_ALPN])
    sigs = ",".join([f"{s:04x}" for s in hello.signature_algorithms if s not in GREASE])
    return f"{a}_{b}_{c}_{sigs}" if sigs else f"{a}_{b}_{c}"


def ja4(hello: ClientHello) -> str | None:
    """JA4: ``ja4_raw`` with the cipher list and the extensions(+signature algorithms)
    part each replaced by the first 12 hex digits of its SHA-256 (12 zeros when the
    cipher list, or the extension list, is empty)."""
    if hello.sslv2:
        return None
    raw = ja4_raw(hello)
    assert raw is not None
    a, b, c = raw.split("_", 2)
    # JA4_c is zeros when the extension list is empty, signature algorithms or not.
    c_hash = _EMPTY_HASH if c.startswith("_") or not c else _hash12(c)
    return f"{a}_{_hash12(b)}_{c_hash}"


def ja4s_raw(hello: ServerHello) -> str:
    """JA4S_r: ``{t}{version}{extensions:02}{alpn}_{cipher}_{extensions in order}``;
    version from supported_versions when sent, else legacy_version; ALPN as JA4's."""
    a = "t" + _ja4_version(hello.version) + _two_digits(len(hello.extensions)) + ja4_alpn(hello.alpn)
    return f"{a}_{hello.cipher_suite:04x}_" + ",".join(f"{e:04x}" for e in hello.extensions)


def ja4s(hello: ServerHello) -> str:
    a, cipher, exts = ja4s_raw(hello).split("_", 2)
    return f"{a}_{cipher}_{_hash12(exts)}"
