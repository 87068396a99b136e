"""JA3, JA3S, JA4 and JA4S held to their specifications' published vectors.

Sources of the expected values (none comes from sniffd):

- JA4 / JA4S: FoxIO-LLC/ja4, technical_details/JA4.md ("Cipher hash", "Extension
  hash", "Example", "Raw Output", "ALPN Extension Value") and
  technical_details/JA4S.md (its example); the same vectors are in FoxIO's Rust
  implementation's tests (rust/ja4/src/tls.rs, test_client_stats_into_out and
  test_server_stats_into_out).
- JA3: salesforce/ja3 README.md, "How it works" (its two example strings and MD5s).

The hellos are built byte by byte by tests/tlscraft.py and parsed by
sniffd.tls.hello, so each vector checks the parse and the formula together.
"""

from __future__ import annotations

import hashlib

import pytest
import tlscraft as T

from sniffd.tls.fingerprint import ja3, ja3_string, ja4, ja4_alpn, ja4_raw, ja4s, ja4s_raw
from sniffd.tls.hello import parse_client_hello, parse_server_hello

# JA4.md "Example": the ClientHello's values in the order it sent them
# (the "JA4_ro" line), and the signature algorithms.
SPEC_CIPHERS = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
SPEC_EXTENSIONS = [0x001B, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002D, 0x000D, 0x0005, 0x0023, 0x0012, 0x002B, 0xFF01, 0x000B, 0x000A, 0x0015]
SPEC_SIGALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]


def spec_client_hello(grease: bool = False, sigalgs: list[int] = SPEC_SIGALGS) -> bytes:
    """The JA4.md example hello: TLS 1.3 in supported_versions, SNI, ALPN h2 first.
    ``grease`` adds GREASE values (RFC 8701) to every list the spec says to ignore them in."""
    bodies = {
        0x0000: T.ext_sni("example.com")[1],
        0x0010: T.ext_alpn([b"h2", b"http/1.1"])[1],
        0x002B: T.ext_supported_versions(([0x3A3A] if grease else []) + [0x0304, 0x0303])[1],
        0x000D: T.ext_sigalgs(([0x8A8A] if grease else []) + sigalgs)[1],
        0x000A: T.ext_groups([0x001D, 0x0017])[1],
        0x000B: T.ext_point_formats([0])[1],
    }
    exts = [(e, bodies.get(e, b"")) for e in SPEC_EXTENSIONS]
    ciphers = list(SPEC_CIPHERS)
    if grease:
        exts = [(0x0A0A, b"")] + exts + [(0xFAFA, b"\x00")]
        ciphers = [0xDADA] + ciphers
    return T.client_hello(ciphers, exts)


def body(message: bytes) -> bytes:
    return message[4:]


def test_ja4_is_the_specification_example():
    hello = parse_client_hello(body(spec_client_hello()))
    assert "t13d1516h2_8daaf6152771_e5627efa2ab1" == ja4(hello)


def test_ja4_raw_is_the_specification_raw_output():
    hello = parse_client_hello(body(spec_client_hello()))
    assert (
        "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"
        "_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01"
        "_0403,0804,0401,0503,0805,0501,0806,0601"
    ) == ja4_raw(hello)


def test_ja4_ignores_grease_everywhere():
    """JA4.md: "The program needs to ignore GREASE values anywhere it sees them"."""
    hello = parse_client_hello(body(spec_client_hello(grease=True)))
    assert "t13d1516h2_8daaf6152771_e5627efa2ab1" == ja4(hello)


def test_ja4_without_signature_algorithms_has_no_trailing_underscore():
    """JA4.md: the extension list "0005,...,ff01" with no signature algorithms hashes to 6d807ffa2a79."""
    hello = parse_client_hello(body(spec_client_hello(sigalgs=[])))
    assert "t13d1516h2_8daaf6152771_6d807ffa2a79" == ja4(hello)
    assert ja4_raw(hello).endswith("_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01")


def test_ja4_cipher_hash_is_the_specification_value():
    """JA4.md "Cipher hash": the sorted list hashes to 8daaf6152771 (checked against hashlib too)."""
    sorted_list = "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"
    assert "8daaf6152771" == hashlib.sha256(sorted_list.encode()).hexdigest()[:12]
    assert "e5627efa2ab1" == hashlib.sha256(
        b"0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
    ).hexdigest()[:12]


def test_ja4_empty_lists_are_twelve_zeros():
    """JA4.md: no ciphers -> JA4_b 000000000000; no extensions -> JA4_c 000000000000.
    A TLS 1.0 hello with no extensions block: version from legacy_version, no SNI (i)."""
    hello = parse_client_hello(body(T.client_hello([0x1A1A], None, version=0x0301)))
    assert "t10i000000_000000000000_000000000000" == ja4(hello)


def test_ja4_sni_and_alpn_are_counted_but_not_hashed():
    hello = parse_client_hello(body(T.client_hello([0x002F], [T.ext_sni("a.test"), T.ext_alpn([b"http/1.1"])])))
    assert "t12d0102h1_" + hashlib.sha256(b"002f").hexdigest()[:12] + "_000000000000" == ja4(hello)


@pytest.mark.parametrize(
    "value, expected",
    [
        # JA4.md "ALPN Extension Value", each example as written there.
        (b"h2", "h2"),
        (b"http/1.1", "h1"),
        (b"\xab", "ab"),
        (b"\xab\xcd", "ad"),
        (b"\x30\xab", "3b"),
        (b"\x30\x31\xab\xcd", "3d"),
        (b"\x30\xab\xcd\x31", "01"),
        # "If the first ALPN value is only a single character, then that character
        # is treated as both the first and last character."
        (b"x", "xx"),
        # "no ALPN extension, no ALPN values, or the first ALPN value is empty" -> "00".
        (b"", "00"),
        (None, "00"),
    ],
)
def test_ja4_alpn_characters_follow_the_specification(value, expected):
    assert expected == ja4_alpn(value)


def test_ja4_counts_stop_at_99():
    ciphers = list(range(0x0100, 0x0100 + 120))
    exts = [(0x0100 + i, b"") for i in range(105)]
    hello = parse_client_hello(body(T.client_hello(ciphers, exts)))
    assert ja4(hello).startswith("t12i9999")


def test_ja4_version_is_the_highest_supported_version_not_legacy():
    """JA4.md: with supported_versions, the highest value in it (GREASE ignored);
    the handshake's legacy version is then ignored."""
    hello = parse_client_hello(body(T.client_hello([0x1301], [T.ext_supported_versions([0x7A7A, 0x0303, 0x0304, 0x0302])], version=0x0301)))
    assert ja4(hello).startswith("t13i0101")


def test_ja4s_is_the_specification_example():
    """JA4S.md: TLS 1.2 (no supported_versions), cipher c030, extensions 0005,0017,ff01,0000 in that order, no ALPN."""
    sh = parse_server_hello(body(T.server_hello(0xC030, [(0x0005, b""), (0x0017, b""), (0xFF01, b"\x00"), (0x0000, b"")])))
    assert "t120400_c030_0005,0017,ff01,0000" == ja4s_raw(sh)
    assert "t120400_c030_4e8089b08790" == ja4s(sh)


def test_ja4s_of_a_tls13_server_hello_uses_supported_versions_and_alpn():
    sh = parse_server_hello(
        body(T.server_hello(0x1301, [(0x002B, b"\x03\x04"), (0x0033, b"\x00\x1d\x00\x00"), T.ext_alpn([b"h2"])]))
    )
    assert "t1303h2_1301_" + hashlib.sha256(b"002b,0033,0010").hexdigest()[:12] == ja4s(sh)


def test_ja3_is_the_readme_example_with_extensions():
    """salesforce/ja3 README: 769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0 -> ada70206e40642a3e4461f35503241d5."""
    ciphers = [47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4]
    hello = parse_client_hello(
        body(T.client_hello(ciphers, [T.ext_sni("a.test"), T.ext_groups([23, 24, 25]), T.ext_point_formats([0])], version=0x0301))
    )
    assert "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0" == ja3_string(hello)
    assert "ada70206e40642a3e4461f35503241d5" == ja3(hello)


def test_ja3_is_the_readme_example_without_extensions():
    """salesforce/ja3 README: "If there are no SSL Extensions in the Client Hello, the fields are left empty":
    769,4-5-10-9-100-98-3-6-19-18-99,,, -> de350869b8c85de67a350c8d186f11e6."""
    hello = parse_client_hello(body(T.client_hello([4, 5, 10, 9, 100, 98, 3, 6, 19, 18, 99], None, version=0x0301)))
    assert "769,4-5-10-9-100-98-3-6-19-18-99,,," == ja3_string(hello)
    assert "de350869b8c85de67a350c8d186f11e6" == ja3(hello)


def test_ja3_drops_grease_from_ciphers_extensions_and_groups():
    """salesforce/ja3 README: "JA3 ignores these values completely"."""
    hello = parse_client_hello(
        body(T.client_hello([0x2A2A, 47], [(0x4A4A, b""), T.ext_groups([0x9A9A, 23]), T.ext_point_formats([0])], version=0x0303))
    )
    assert "771,47,10-11,23,0" == ja3_string(hello)


def test_sslv2_format_hello_has_no_fingerprint():
    from sniffd.tls.hello import parse_sslv2_client_hello

    hello = parse_sslv2_client_hello(T.sslv2_client_hello(0x0301, [0x010080, 0x00002F]))
    assert (None, None) == (ja3(hello), ja4(hello))
