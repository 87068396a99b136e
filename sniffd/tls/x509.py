"""The server certificate's summary for the ``tls`` record (pure; X.509 parsed by ``cryptography``).

One job: ``first_certificate(body)`` cuts the first certificate out of a TLS
<= 1.2 Certificate message (RFC 5246 section 7.4.2), and ``certificate_summary(der)``
turns it into the record's ``server_cert`` object.  X.509 is never parsed by
hand: ``cryptography`` (pyca, backed by Rust's asn1 parser) does it.

Summaries are remembered per certificate (``sniffd.tls.memo``, keyed by the
DER's SHA-256, which the summary carries anyway): a server sends the same
leaf to every client, and parsing it costs more than all the rest of a
TLS 1.2 handshake.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from datetime import datetime, timezone

from sniffd.tls.memo import Memo

# Distinct server certificates remembered: the busy servers of a network
# (most connections go to a few); a one-off server is never stored (the
# memo admits a key on its second sighting).
CERT_MEMO_SIZE = 32

# Summaries whose strings of variable size (subject, issuer, DNS names)
# weigh more than this (as Python objects) are not remembered, so an entry
# weighs at most ~10 KB and the memo ~300 KB.  A typical leaf's weigh
# 300-1,000 bytes; a CDN certificate with 60 SANs ~4,500.
MAX_MEMO_BYTES = 8192

CERT_MEMO = Memo(CERT_MEMO_SIZE)


# A self-signed certificate (EC P-256, a subjectAltName, a subject with a
# comma to escape) that ``warm_up`` summarises once.
_WARM_UP_DER = base64.b64decode(
    "MIIBdzCCARygAwIBAgICEjQwCgYIKoZIzj0EAwIwNDEYMBYGA1UEAwwPd2FybS11cC5pbnZhbGlk"
    "MRgwFgYDVQQKDA9zbmlmZmQsIHByZWxvYWQwHhcNMjYwMTAxMDAwMDAwWhcNMzYwMTAxMDAwMDAw"
    "WjA0MRgwFgYDVQQDDA93YXJtLXVwLmludmFsaWQxGDAWBgNVBAoMD3NuaWZmZCwgcHJlbG9hZDBZ"
    "MBMGByqGSM49AgEGCCqGSM49AwEHA0IABOT64lzhvAF4R69lwAiMcvYiXPDKMrTahHjnnQqGSNg/"
    "7qnxDnKpbhc2LH+FOqqOLzVpxvlbFj8Mb+s1J7U2i9ujHjAcMBoGA1UdEQQTMBGCD3dhcm0tdXAu"
    "aW52YWxpZDAKBggqhkjOPQQDAgNJADBGAiEAt3TxLtuXndjuonmLtWBU2p1aUuPn5SBPx5XepfMr"
    "RJ8CIQDnrjLc8fdobpgF3UsHItb8DzBxmnLTtLF1G9YRgDUi9g=="
)


def warm_up() -> None:
    """Load ``cryptography`` and every module a certificate summary reaches, now.

    ``summarise`` imports cryptography at the first certificate, and
    cryptography imports more of the standard library on the way (email.utils,
    ipaddress, ...).  The daemon calls this before it drops privileges
    (sniffd.privileges.preload): after the drop the Python installation may be
    unreadable, and a first import then fails, which would cost every TLS 1.2
    connection with a certificate its record."""
    summary, parsed = summarise(_WARM_UP_DER, hashlib.sha256(_WARM_UP_DER).hexdigest())
    if not parsed or summary["dns_names"] != ["warm-up.invalid"]:
        raise RuntimeError(f"the built-in certificate did not parse: {summary}")


def first_certificate(body: bytes) -> tuple[bytes | None, bool]:
    """(DER of the first certificate, complete) from a Certificate message body::

        opaque ASN.1Cert<1..2^24-1>;
        struct { ASN.1Cert certificate_list<0..2^24-1>; } Certificate;

    ``body`` may be only the first bytes of a message that was too long to keep;
    ``complete`` is False when the first certificate is not all in it, or the
    message framing is broken.  An empty list gives (None, True).
    """
    if len(body) < 3:
        return None, False
    list_len = int.from_bytes(body[0:3], "big")
    if list_len == 0:
        return None, len(body) == 3
    if len(body) < 6:
        return None, False
    cert_len = int.from_bytes(body[3:6], "big")
    if cert_len == 0 or cert_len + 3 > list_len or 6 + cert_len > len(body):
        return None, False
    return body[6 : 6 + cert_len], True


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def serial_hex(n: int) -> str:
    """A serial number as upper-case hex with an even number of digits, the way
    ``openssl x509 -serial`` prints it (a negative one, which RFC 5280 section
    4.1.2.2 forbids but some CAs issued, with a leading "-")."""
    sign = "-" if n < 0 else ""
    digits = f"{abs(n):X}"
    if len(digits) % 2:
        digits = "0" + digits
    return sign + digits


def certificate_summary(der: bytes) -> tuple[dict, bool]:
    """(``server_cert`` object, parsed) for one DER certificate (a new dict each
    call, remembered or not: see ``summarise``)."""
    digest = hashlib.sha256(der)
    key = digest.digest()
    got = CERT_MEMO.get(key)
    if got is None:
        got = summarise(der, digest.hexdigest())
        summary = got[0]
        strings = [summary["subject"], summary["issuer"], *summary["dns_names"]]
        if sum(map(sys.getsizeof, strings)) <= MAX_MEMO_BYTES:
            CERT_MEMO.put(key, got)
    summary, parsed = got
    return dict(summary, dns_names=list(summary["dns_names"])), parsed


def summarise(der: bytes, sha256_hex: str) -> tuple[dict, bool]:
    """(``server_cert`` object, parsed) for one DER certificate whose SHA-256 is ``sha256_hex``.

    Keys: ``subject``, ``issuer`` (RFC 4514 strings), ``serial`` (``serial_hex``),
    ``not_before``, ``not_after`` (RFC 3339 UTC, seconds), ``dns_names`` (the
    subjectAltName dNSName entries, in order; [] without the extension),
    ``sha256`` (lower-case hex of the DER, as a certificate's fingerprint).
    When ``cryptography`` cannot parse the certificate (or its SAN extension),
    the fields it could not read are None (``dns_names`` []) and ``parsed`` is
    False; ``sha256`` is always there.
    """
    summary: dict = {
        "subject": None,
        "issuer": None,
        "serial": None,
        "not_before": None,
        "not_after": None,
        "dns_names": [],
        "sha256": sha256_hex,
    }
    # Imported at the first certificate, not with the module: the flow table
    # imports sniffd.tls, and loading cryptography (~60 ms, ~6,500 objects the
    # cyclic GC then walks) would slow every run that sees no TLS 1.2
    # certificate (the HTTP bench by ~5%).
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
        summary["subject"] = cert.subject.rfc4514_string()
        summary["issuer"] = cert.issuer.rfc4514_string()
        summary["serial"] = serial_hex(cert.serial_number)
        summary["not_before"] = _rfc3339(cert.not_valid_before_utc)
        summary["not_after"] = _rfc3339(cert.not_valid_after_utc)
    except Exception:  # noqa: BLE001 - any parse failure of wire bytes is an anomaly, not a crash
        return summary, False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return summary, True
    except Exception:  # noqa: BLE001 - a malformed extension (or a duplicate one)
        return summary, False
    summary["dns_names"] = san.value.get_values_for_type(x509.DNSName)
    return summary, True
