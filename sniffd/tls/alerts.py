"""Names of TLS alert levels and descriptions (pure).

One job: ``alert(level, description, sender)`` -> the record's alert object.
Names are the identifiers of the IANA "TLS Alerts" registry as the RFCs spell
them (RFC 8446 section 6, RFC 5246 section 7.2, RFC 6066 section 9, RFC 7301
section 3.2, RFC 7507, RFC 9146), without the registry's "_RESERVED" suffix on
the values TLS 1.3 retired (an operator wants to read what was meant).
"""

from __future__ import annotations

LEVELS = {1: "warning", 2: "fatal"}

DESCRIPTIONS = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    52: "too_many_cids_requested",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
    121: "ech_required",
}

FATAL = 2


def alert(level: int, description: int, from_client: bool) -> dict:
    """``{"from": "client"|"server", "level": name, "description": name}``; a code
    without a name is written as "unknown_" and its decimal value."""
    return {
        "from": "client" if from_client else "server",
        "level": LEVELS.get(level, f"unknown_{level}"),
        "description": DESCRIPTIONS.get(description, f"unknown_{description}"),
    }
