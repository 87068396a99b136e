"""TLS seen passively: the handshake in clear, one ``tls`` object per connection.

A sans-I/O stage (docs: STYLE.md): fed bytes and times, it returns values.

- ``TlsSession`` (session.py): one connection; ``feed`` / ``gap`` / ``close``,
  then ``result()`` gives the record's ``tls`` object.
- ``looks_like_tls_client_hello`` / ``looks_like_sslv2_client_hello``
  (detect.py): does a ClientHello start here?  True, False, or None for "more bytes".
- ``TlsFlow`` (flow.py): a ``TlsSession`` behind the calls the flow table makes
  of a connection's session; one ``TlsRecord`` per connection.
- ``TLS_ANOMALIES`` (anomalies.py): the anomaly names this stage sets, with meanings.

Modules, in the order data flows: records (record framing), handshake
(messages across records), hello (ClientHello / ServerHello), x509 (the
server's certificate), alerts, ciphers (IANA names), fingerprint (JA3, JA3S,
JA4, JA4S), session (the state machine that uses them).
"""

from sniffd.tls.anomalies import TLS_ANOMALIES
from sniffd.tls.detect import looks_like_sslv2_client_hello, looks_like_tls_client_hello
from sniffd.tls.flow import TlsFlow, TlsRecord
from sniffd.tls.session import MAX_CERTIFICATE_BYTES, MAX_HELLO_BYTES, TlsSession

__all__ = [
    "TLS_ANOMALIES",
    "MAX_CERTIFICATE_BYTES",
    "MAX_HELLO_BYTES",
    "TlsFlow",
    "TlsRecord",
    "TlsSession",
    "looks_like_sslv2_client_hello",
    "looks_like_tls_client_hello",
]
