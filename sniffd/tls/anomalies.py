"""Every anomaly name the TLS stage can put on a record, with its meaning.

Same contract as ``sniffd.anomalies.ANOMALIES`` (stable snake_case names,
never renamed once shipped); these entries are meant to be merged into it.
"""

NOT_TLS = "tls_not_tls"
SERVER_NOT_TLS = "tls_server_not_tls"
SSLV2_HELLO = "tls_sslv2_hello"
BAD_RECORD = "tls_bad_record"
RECORD_OVERSIZED = "tls_record_oversized"
HANDSHAKE_TOO_LARGE = "tls_handshake_too_large"
BAD_HELLO = "tls_bad_hello"
BAD_CERTIFICATE = "tls_bad_certificate"
GAP = "tls_gap"
TRUNCATED_HANDSHAKE = "tls_truncated_handshake"
TOO_MANY_ALERTS = "tls_too_many_alerts"

TLS_ANOMALIES: dict[str, str] = {
    NOT_TLS: "The client's bytes where a TLS connection was expected do not start with a TLS handshake record holding a ClientHello, nor with an SSL 2.0 ClientHello (HTTP, another protocol, random bytes); the connection's bytes are counted, not parsed.",
    SERVER_NOT_TLS: "The server answered with bytes that are not TLS records (an HTTP error page, a banner); its bytes are counted, not parsed.",
    SSLV2_HELLO: "The client's hello is in the SSL 2.0 format (an SSL 2.0 client, or an old TLS client staying compatible with SSL 2.0 servers); it has no ja3/ja4, and an SSL 2.0 session is not followed further.",
    BAD_RECORD: "A TLS record header broke the framing rules (content type not 20-24, version not 3.x) after the stream had started as TLS; a receiver closes the connection there, and that direction is not parsed further.",
    RECORD_OVERSIZED: "A TLS record header claimed more than 2^14+2048 bytes (RFC 5246 section 6.2.3), which a receiver rejects with record_overflow; that direction is not parsed further.",
    HANDSHAKE_TOO_LARGE: "A ClientHello or ServerHello longer than 64 KiB, or a Certificate message longer than 256 KiB: only its first bytes were kept (a hello that long is not parsed; the certificate is read if it lies in the first 256 KiB).",
    BAD_HELLO: "A ClientHello or ServerHello could not be parsed (lengths that do not add up), or has a malformed or repeated extension, which a receiver rejects with decode_error; what could be read is kept.",
    BAD_CERTIFICATE: "The server's certificate (TLS 1.2 and earlier) could not be parsed as X.509, or the Certificate message's framing is broken; server_cert keeps the sha256 of what was there when a certificate was cut out.",
    GAP: "Bytes were lost in one direction before it switched to encrypted records; that direction's handshake is not parsed past the gap.",
    TRUNCATED_HANDSHAKE: "The connection ended before both sides switched to encrypted records, with no fatal alert to explain it: the handshake was cut by the close, a gap, or a framing error (or the server never answered).",
    TOO_MANY_ALERTS: "More than 16 plaintext alerts were sent; the first 16 are listed.",
}
