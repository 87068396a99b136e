"""The IANA cipher-suite table agrees with OpenSSL's standard names for every suite OpenSSL knows."""

from __future__ import annotations

import re
import subprocess

from sniffd.tls.ciphers import CIPHER_SUITES, cipher_name


def openssl_suites() -> dict[int, str]:
    """code -> IANA name, from ``openssl ciphers -V -stdname`` (every TLS <= 1.2 suite
    of this OpenSSL, security level 0 so none is left out, and all five TLS 1.3 suites)."""
    argv = [
        "openssl", "ciphers", "-V", "-stdname",
        "-ciphersuites", "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256",
        "ALL:COMPLEMENTOFALL:@SECLEVEL=0",
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    suites = {}
    for line in out.splitlines():
        # "0xC0,0x2F - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 - ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 ..."
        m = re.match(r"\s*0x([0-9A-F]{2}),0x([0-9A-F]{2}) - (\S+) ", line)
        assert m, line
        suites[int(m[1] + m[2], 16)] = m[3]
    return suites


def test_every_openssl_suite_has_openssls_standard_name():
    known = openssl_suites()
    assert len(known) > 100  # the whole list, not an empty parse
    assert known == {code: CIPHER_SUITES.get(code) for code in known}


def test_names_are_iana_shaped_and_codes_unique():
    assert all(re.fullmatch(r"TLS_[A-Za-z0-9_]+", name) for name in CIPHER_SUITES.values())
    assert len(CIPHER_SUITES) == 351


def test_unnamed_codes_are_written_in_hex():
    assert ("TLS_AES_128_GCM_SHA256", "0x0a0a", "0xff85", "TLS_FALLBACK_SCSV") == (
        cipher_name(0x1301),
        cipher_name(0x0A0A),
        cipher_name(0xFF85),
        cipher_name(0x5600),
    )
