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

``client_fingerprints`` / ``server_fingerprints`` give the pairs a record
carries, remembered per distinct hello shape (``sniffd.tls.memo``): a client
stack sends the same lists connection after connection, and the four
strings cost more than the rest of a handshake's parse.
"""

from __future__ import annotations

import hashlib
import struct
from itertools import filterfalse

from sniffd.tls.hello import (
    EXT_ALPN,
    EXT_SERVER_NAME,
    EXT_SUPPORTED_VERSIONS,
    GREASE,
    ClientHello,
    ServerHello,
)
from sniffd.tls.memo import Memo

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


# The lists are walked by C (filterfalse, map, join), not by comprehensions:
# a hello from a stack that sends GREASE (Chrome, Safari, Android) differs in
# its GREASE values at every connection, so its fingerprints are computed
# every time (the memo below cannot help it).
_is_grease = GREASE.__contains__
_SNI_OR_ALPN = frozenset((EXT_SERVER_NAME, EXT_ALPN)).__contains__


def _hex4s(values: list[int]) -> str:
    """``values`` as 4-digit lower-case hex, joined by "," (JA4's lists): packed as
    16-bit numbers and hexed with a separator, one C call for the whole list."""
    try:
        return struct.pack(f">{len(values)}H", *values).hex(",", 2)
    except struct.error:  # a value over 16 bits: not from a parsed hello
        return ",".join([f"{v:04x}" for v in values])


def _dash(values) -> str:
    return "-".join(map(str, values))


def ja3_string(hello: ClientHello) -> str | None:
    if hello.sslv2:
        return None
    return ",".join(
        (
            str(hello.legacy_version),
            _dash(filterfalse(_is_grease, hello.cipher_suites)),
            _dash(filterfalse(_is_grease, hello.extensions)),
            _dash(filterfalse(_is_grease, hello.supported_groups)),
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
    ciphers = list(filterfalse(_is_grease, hello.cipher_suites))
    exts = list(filterfalse(_is_grease, hello.extensions))
    if EXT_SUPPORTED_VERSIONS in exts:
        offered = list(filterfalse(_is_grease, hello.supported_versions))
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
    b = _hex4s(sorted(ciphers))
    c = _hex4s(list(filterfalse(_SNI_OR_ALPN, sorted(exts))))
    sigs = _hex4s(list(filterfalse(_is_grease, hello.signature_algorithms)))
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
    return f"{a}_{hello.cipher_suite:04x}_" + _hex4s(hello.extensions)


def ja4s(hello: ServerHello) -> str:
    a, cipher, exts = ja4s_raw(hello).split("_", 2)
    return f"{a}_{cipher}_{_hash12(exts)}"


# --- remembered per hello shape ------------------------------------------------------
#
# The key is every field the four functions above read, nothing else (a key
# that missed one would give one stack's fingerprint to another): for the
# client legacy_version, cipher_suites, extensions, supported_groups,
# ec_point_formats, supported_versions, signature_algorithms (packed as
# 16-bit values, after their counts so no two lists run together) and the
# first ALPN name; for the server legacy_version, selected_version,
# cipher_suite, alpn and extensions.  SSL 2.0-format hellos have no
# fingerprint and no key.

# Distinct client stacks a sensor sees at once: browsers (each in a few
# shapes: with or without a PSK, SNI, ALPN), OS libraries, a few agents.
# Sixty-four shapes hold them; a stack that drops out costs one computation
# when it comes back.
CLIENT_MEMO_SIZE = 64
SERVER_MEMO_SIZE = 64

# Hellos with more list values than this are fingerprinted but not
# remembered, so an entry weighs at most ~1.5 KB (a packed key of 2 bytes a
# value; the four strings ~100 bytes each) and the two memos ~200 KB.  Real
# hellos have 40-100 (OpenSSL's full list: ~60 suites, 20 sigalgs).
MAX_MEMO_VALUES = 512

CLIENT_MEMO = Memo(CLIENT_MEMO_SIZE)
SERVER_MEMO = Memo(SERVER_MEMO_SIZE)


def _packed(values: list[int]) -> bytes | None:
    """``values`` as 16-bit numbers, or None when too many to remember or one
    is outside 0..65535 (not from a parsed hello)."""
    if len(values) > MAX_MEMO_VALUES:
        return None
    try:
        return struct.pack(f">{len(values)}H", *values)
    except struct.error:
        return None


def _client_key(hello: ClientHello) -> tuple | None:
    suites, exts, groups = hello.cipher_suites, hello.extensions, hello.supported_groups
    formats, versions, sigs = hello.ec_point_formats, hello.supported_versions, hello.signature_algorithms
    packed = _packed(suites + exts + groups + formats + versions + sigs)
    if packed is None:
        return None
    counts = (len(suites), len(exts), len(groups), len(formats), len(versions))
    return (hello.legacy_version, counts, packed, hello.alpn[0] if hello.alpn else None)


# client_fingerprints' / server_fingerprints' key not given: computed here.
_UNSET = object()


def client_fingerprints(hello: ClientHello, key=_UNSET) -> tuple[str | None, str | None]:
    """``(ja3(hello), ja4(hello))``, remembered per hello shape.  ``key``:
    ``_client_key(hello)`` when the caller has it already (the C session
    builds it while parsing the hello, tests/unit/test_tls_session_c.py holds
    the two equal)."""
    if hello.sslv2:
        return None, None
    if key is _UNSET:
        key = _client_key(hello)
    if key is None:
        return ja3(hello), ja4(hello)
    fps = CLIENT_MEMO.get(key)
    if fps is None:
        fps = (ja3(hello), ja4(hello))
        CLIENT_MEMO.put(key, fps)
    return fps


def _server_key(hello: ServerHello) -> tuple | None:
    packed = _packed(hello.extensions)
    if packed is None:
        return None
    return (hello.legacy_version, hello.selected_version, hello.cipher_suite, hello.alpn, packed)


def server_fingerprints(hello: ServerHello, key=_UNSET) -> tuple[str, str]:
    """``(ja3s(hello), ja4s(hello))``, remembered per hello shape; ``key`` as client_fingerprints'."""
    if key is _UNSET:
        key = _server_key(hello)
    if key is None:
        return ja3s(hello), ja4s(hello)
    fps = SERVER_MEMO.get(key)
    if fps is None:
        fps = (ja3s(hello), ja4s(hello))
        SERVER_MEMO.put(key, fps)
    return fps
