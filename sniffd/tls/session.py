"""One TLS connection seen from the wire: the handshake in clear, then bytes counted (pure state).

``TlsSession`` is fed each direction's reassembled TCP bytes and gives the
record's ``tls`` object.  It reads no clock, opens nothing, starts nothing,
and never raises because of what came off the wire: odd traffic becomes an
anomaly name (``sniffd.tls.anomalies``).

Call order (the flow table's job)::

    s = TlsSession()
    s.feed(from_client, data, now)   # each direction's bytes in stream order, both
                                     # directions interleaved in capture order
    s.gap(from_client, nbytes)       # bytes that direction lost (capture loss)
    s.close(now)                     # the connection ended (FIN/RST/idle/end of input)
    s.result()                       # the record's "tls" object; callable at any time
    s.anomalies, s.first_ts, s.last_ts, s.mem, s.done

The client's stream should start where the ClientHello starts
(``looks_like_tls_client_hello`` / ``looks_like_sslv2_client_hello`` find that
place), and the server's at its first byte after that.  Interleaving the two
directions in capture order matters once: TLS 1.2's ChangeCipherSpec is told
from TLS 1.3's middlebox-compatibility one by the ServerHello, which a real
exchange always puts on the wire first.

What is parsed (RFC 8446, RFC 5246): TLS records (``records``), handshake
messages across records and segments (``handshake``), the ClientHello, the
ServerHello and HelloRetryRequest (``hello``), the server's Certificate in
TLS <= 1.2 (``x509``), plaintext alerts and ChangeCipherSpec.  Once a
direction switches to encrypted records it is only counted: ``feed`` is then
O(1) whatever the size of ``data``, and nothing is buffered.
"""

from __future__ import annotations

import enum

from sniffd.http.syntax import text as wire_text  # wire bytes -> str, lossless (surrogateescape)
from sniffd.tls import anomalies as A
from sniffd.tls.alerts import FATAL, alert
from sniffd.tls.ciphers import CIPHER_SUITES, cipher_name
from sniffd.tls.detect import looks_like_sslv2_client_hello
from sniffd.tls.fingerprint import _client_key, _server_key, client_fingerprints, server_fingerprints
from sniffd.tls.handshake import (
    CERTIFICATE,
    CLIENT_HELLO,
    SERVER_HELLO,
    SERVER_HELLO_DONE,
    START,
    HandshakeReader,
)
from sniffd.tls.hello import (
    TLS13,
    VERSION_NAMES,
    ClientHello,
    ServerHello,
    parse_client_hello,
    parse_server_hello,
    parse_sslv2_client_hello,
    version_name,
)
from sniffd.tls.records import (
    ALERT,
    APPLICATION_DATA,
    BAD,
    BAD_LENGTH,
    CHANGE_CIPHER_SPEC,
    HANDSHAKE,
    RecordReader,
)
from sniffd.tls.x509 import certificate_summary, first_certificate

# The most bytes of a ClientHello or ServerHello kept while it arrives.  A
# browser's ClientHello with an X25519MLKEM768 key share (1216 bytes of it) is
# about 1.8 KiB, one with several post-quantum shares about 5 KiB; the format
# allows ~130 KiB (two 2^16 vectors) but nothing sends that.  64 KiB keeps ten
# times the largest real hello and bounds what one connection can make us hold.
MAX_HELLO_BYTES = 64 * 1024

# The most bytes of the server's Certificate message (TLS <= 1.2) kept: only its
# first certificate is read.  Real chains are 3-20 KiB (a leaf with a long SAN
# list ~10 KiB); a longer message keeps its first 256 KiB, which still holds
# any real leaf.
MAX_CERTIFICATE_BYTES = 256 * 1024

# Alerts listed on a record.  A handshake has at most one or two; a peer that
# sends more in clear is misbehaving, and the list must not grow with it.
MAX_ALERTS = 16

_SSLV2_FIRST_BIT = 0x80
_NOTHING: dict[int, int] = {}


class Mode(enum.Enum):
    """What one direction's next bytes are."""

    START = "start"  # nothing read yet: is this TLS at all?
    RECORDS = "records"  # plaintext TLS records, parsed
    ENCRYPTED = "encrypted"  # switched to encrypted records: counted only
    STOPPED = "stopped"  # given up (not TLS, gap, broken framing, SSL 2.0): counted only

    # Members are singletons compared by identity: hash them so too (Enum's
    # own __hash__ hashes the name in Python, at every transition look-up).
    __hash__ = object.__hash__


class Event(enum.Enum):
    TLS = "tls"  # the first bytes are a TLS record
    SSLV2_COMPATIBLE = "sslv2_compatible"  # an SSL 2.0-format hello offering TLS: TLS records follow
    SSLV2 = "sslv2"  # an SSL 2.0 hello offering only SSL 2.0: not followed
    NOT_TLS = "not_tls"
    SWITCH = "switch"  # TLS <= 1.2: its ChangeCipherSpec; TLS 1.3: its first encrypted record
    GAP = "gap"
    BAD_FRAMING = "bad_framing"
    CLOSE = "close"

    __hash__ = object.__hash__  # as Mode's


# A direction's modes as one table (h11's _state.py is the model).  Rules:
# - START decides from the first bytes: TLS records, an SSL 2.0 hello (the
#   compatible kind is followed by TLS records, RFC 5246 appendix E.2), or not TLS.
# - RECORDS ends in ENCRYPTED when the direction switches to protected records
#   (RFC 5246 section 7.1: after ChangeCipherSpec; RFC 8446 section 5: a TLS 1.3
#   peer's records after the ServerHello are application_data), or in STOPPED
#   when its framing cannot be followed (a gap, a bad header) or it was not TLS.
# - ENCRYPTED and STOPPED only count bytes: a gap there costs nothing but bytes.
# - CLOSE stops whatever was still being parsed.
# A (mode, event) pair not listed leaves the mode as it is.
_TRANSITIONS: dict[tuple[Mode, Event], Mode] = {
    (Mode.START, Event.TLS): Mode.RECORDS,
    (Mode.START, Event.SSLV2_COMPATIBLE): Mode.RECORDS,
    (Mode.START, Event.SSLV2): Mode.STOPPED,
    (Mode.START, Event.NOT_TLS): Mode.STOPPED,
    (Mode.START, Event.GAP): Mode.STOPPED,
    (Mode.START, Event.CLOSE): Mode.STOPPED,
    (Mode.RECORDS, Event.SWITCH): Mode.ENCRYPTED,
    (Mode.RECORDS, Event.NOT_TLS): Mode.STOPPED,
    (Mode.RECORDS, Event.SSLV2): Mode.STOPPED,
    (Mode.RECORDS, Event.GAP): Mode.STOPPED,
    (Mode.RECORDS, Event.BAD_FRAMING): Mode.STOPPED,
    (Mode.RECORDS, Event.CLOSE): Mode.STOPPED,
}


class _Half:
    """One direction's parsing state."""

    __slots__ = ("mode", "parsing", "reader", "hs", "start_buf", "alert_buf", "bytes", "sent_ccs", "saw_hello_done")

    def __init__(self, keep: dict[int, int]) -> None:
        self.mode = Mode.START
        self.parsing = True  # mode is START or RECORDS (kept by ``to``, the one place modes change)
        self.reader = RecordReader()
        self.hs = HandshakeReader(keep)
        self.start_buf = b""  # the first bytes, while START cannot decide (an SSL 2.0 hello)
        self.alert_buf = b""  # an alert cut in two
        self.bytes = 0
        self.sent_ccs = False
        self.saw_hello_done = False

    @property
    def mem(self) -> int:
        return self.reader.mem + self.hs.mem + len(self.start_buf) + len(self.alert_buf)

    def to(self, event: Event) -> None:
        if not self.parsing:
            return  # ENCRYPTED and STOPPED are final, and hold nothing
        mode = self.mode = _TRANSITIONS.get((self.mode, event), self.mode)
        if mode is not Mode.START and mode is not Mode.RECORDS:
            self.parsing = False
            # Nothing will be parsed again: let go of every buffer.
            self.hs.release()
            self.reader = _DEAD_READER
            self.start_buf = self.alert_buf = b""


_DEAD_READER = RecordReader()
_DEAD_READER.dead = True

# What each direction's handshake reader keeps (HandshakeReader.keep; the
# session swaps in _NOTHING once a direction has nothing left to keep, and
# never changes these).
_CLIENT_KEEP = {CLIENT_HELLO: MAX_HELLO_BYTES}
_SERVER_KEEP = {SERVER_HELLO: MAX_HELLO_BYTES, CERTIFICATE: MAX_CERTIFICATE_BYTES}


# (ja3, ja4) / (ja3s, ja4s) without a hello.
_NO_FINGERPRINTS = (None, None)


class _Result:
    """What a TlsSession gives from its state, once per connection: the record's
    ``tls`` object (TlsSessionPy's; TlsSessionC's is this in C, held equal by
    tests/unit/test_tls_session_c.py).  Reads ``client_hello``, ``server_hello``,
    ``first_server_hello``, ``server_cert``, ``alerts``, ``established``,
    ``client_bytes``, ``server_bytes``, ``server_saw_hello_done``,
    ``server_sent_ccs``, ``_client_memo_key``, ``_server_memo_key``, and caches the fingerprints in ``_client_fp`` /
    ``_server_fp``."""

    __slots__ = ()

    def result(self) -> dict:
        """The record's ``tls`` object.  Example (a TLS 1.2 handshake)::

            {"version": "TLSv1.2", "negotiated": True,
             "cipher": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
             "sni": "example.com", "alpn_offered": ["h2", "http/1.1"], "alpn": "h2",
             "resumed": False, "established": True, "hello_retry": False,
             "alerts": [],
             "ja3": "...", "ja3s": "...", "ja4": "t12d...", "ja4s": "t12...",
             "server_cert": {"subject": "CN=example.com", "issuer": "...", "serial": "0A1B",
                             "not_before": "2025-01-01T00:00:00Z", "not_after": "...",
                             "dns_names": ["example.com"], "sha256": "..."},
             "client_bytes": 1234, "server_bytes": 5678}

        - ``version``: from the ServerHello (TLS 1.3 only in its supported_versions);
          with no ServerHello, the highest version the ClientHello offers, and then
          ``negotiated`` is false (and ``cipher``, ``alpn``, ``resumed``, ``ja3s``,
          ``ja4s`` are null).  "SSLv2", "SSLv3", "TLSv1.0" .. "TLSv1.3", else "0x" + hex.
        - ``cipher``: the IANA name (``ciphers``), or "0x" + hex for a code without one.
        - ``sni``: the first host_name of server_name, null without one.
        - ``alpn_offered``: the client's list ([] without the extension, or without a
          ClientHello); ``alpn`` the
          server's choice: visible in TLS <= 1.2 only (TLS 1.3 sends it encrypted,
          in EncryptedExtensions), else null.
        - ``resumed``: TLS 1.3: the ServerHello accepted a PSK (pre_shared_key);
          TLS <= 1.2: an abbreviated handshake (the server's ChangeCipherSpec came
          with no ServerHelloDone before it, or the ServerHello echoed the client's
          session id); null without a ServerHello.
        - ``established``: both directions switched to encrypted records (TLS <= 1.2:
          each sent ChangeCipherSpec; TLS 1.3: each sent an encrypted record after the
          ServerHello; a TLS 1.3 client that rejects the certificate says so in an
          encrypted alert, which counts).
        - ``alerts``: the plaintext alerts in order, at most 16.
        - ``ja3``/``ja4``: the first ClientHello's; ``ja3s``/``ja4s``: the first
          ServerHello's (a HelloRetryRequest when there was one, as FoxIO's reference
          takes it); null for an SSL 2.0-format hello.
        - ``server_cert``: the first certificate of the server's Certificate (TLS <= 1.2);
          null in TLS 1.3 (encrypted), in a resumed session and without one.
        - ``client_bytes``/``server_bytes``: TCP payload bytes each way, lost bytes included.
        """
        # Once per connection, but a short connection's record costs little
        # else: written out flat (no property or helper calls on the way).
        ch = self.client_hello
        final = self.server_hello
        first = self.first_server_hello
        sh = final if final is not None else first
        # The hellos never change once parsed: fingerprint them once.
        if ch is None:
            cfp = _NO_FINGERPRINTS
            sni = None
            alpn_offered = []
        else:
            cfp = self._client_fp
            if cfp is None:
                cfp = self._client_fp = client_fingerprints(ch, self._client_memo_key)
            sni = ch.sni
            alpn_offered = [wire_text(p) for p in ch.alpn] if ch.alpn else []
        if first is None:
            sfp = _NO_FINGERPRINTS
        else:
            sfp = self._server_fp
            if sfp is None:
                sfp = self._server_fp = server_fingerprints(first, self._server_memo_key)
        if sh is not None:
            v = sh.selected_version  # ServerHello.version, inlined
            if v is None:
                v = sh.legacy_version
            version: str | None = VERSION_NAMES.get(v) or version_name(v)
            cipher = CIPHER_SUITES.get(sh.cipher_suite) or cipher_name(sh.cipher_suite)
        else:
            version = version_name(ch.highest_version()) if ch is not None else None
            cipher = None
        cert = self.server_cert
        return {
            "version": version,
            "negotiated": sh is not None,
            "cipher": cipher,
            "sni": sni,
            "alpn_offered": alpn_offered,
            "alpn": wire_text(final.alpn) if final is not None and final.alpn is not None else None,
            "resumed": self._resumed() if final is not None else None,
            "established": self.established,
            "hello_retry": first is not None and first.hello_retry,
            "alerts": list(self.alerts),
            "ja3": cfp[0],
            "ja3s": sfp[0],
            "ja4": cfp[1],
            "ja4s": sfp[1],
            "server_cert": dict(cert, dns_names=list(cert["dns_names"])) if cert is not None else None,
            "client_bytes": self.client_bytes,
            "server_bytes": self.server_bytes,
        }

    def _resumed(self) -> bool | None:
        sh = self.server_hello
        if sh is None:
            return None
        if sh.version >= TLS13:
            return sh.pre_shared_key
        if self.server_saw_hello_done:
            return False  # a full handshake: ServerHelloDone ends the server's first flight
        if self.server_sent_ccs:
            return True  # RFC 5246 section 7.3: abbreviated, ChangeCipherSpec right after ServerHello
        ch = self.client_hello
        return bool(sh.session_id) and ch is not None and sh.session_id == ch.session_id


class TlsSessionPy(_Result):
    """One TLS connection's handshake, seen passively; see the module docstring for the call order.

    The reference implementation: ``TlsSessionC`` (sniffd/tls/_session.c) does the same in C,
    held equal to this by tests/unit/test_tls_session_c.py."""

    def __init__(self) -> None:
        self._client = _Half(_CLIENT_KEEP)
        self._server = _Half(_SERVER_KEEP)
        self.client_hello: ClientHello | None = None
        self.first_server_hello: ServerHello | None = None  # a HelloRetryRequest when there was one
        self.server_hello: ServerHello | None = None  # the ServerHello that is not a HelloRetryRequest
        self.server_cert: dict | None = None
        self.alerts: list[dict] = []
        self.anomalies: set[str] = set()
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.established_ts: float | None = None  # when the second direction switched to encrypted records
        self.missed_bytes = 0
        self.closed = False
        self._fatal_alert = False
        self._sslv2_only = False
        self._client_fp: tuple | None = None  # (ja3, ja4) of client_hello, once asked for
        self._server_fp: tuple | None = None  # (ja3s, ja4s) of first_server_hello

    # --- what the flow table reads -------------------------------------------------

    @property
    def established(self) -> bool:
        """Both directions switched to encrypted records (see ``result``)."""
        return self._client.mode is Mode.ENCRYPTED and self._server.mode is Mode.ENCRYPTED

    @property
    def done(self) -> bool:
        """Nothing more will be parsed: the ``tls`` object changes only in its byte counts.

        The moment to write a record early for a long-lived connection."""
        return self.closed or (not self._client.parsing and not self._server.parsing)

    @property
    def mem(self) -> int:
        """Bytes this session holds in buffers (partial headers, a hello or certificate
        in progress); 0 once both directions are encrypted or stopped."""
        c, s = self._client, self._server
        # A direction that stopped parsing let go of every buffer (_Half.to).
        return (c.mem if c.parsing else 0) + (s.mem if s.parsing else 0)

    @property
    def client_bytes(self) -> int:
        return self._client.bytes

    @property
    def server_bytes(self) -> int:
        return self._server.bytes

    @property
    def server_saw_hello_done(self) -> bool:
        """The server sent ServerHelloDone (its first flight of a full TLS <= 1.2 handshake)."""
        return self._server.saw_hello_done

    @property
    def server_sent_ccs(self) -> bool:
        return self._server.sent_ccs

    @property
    def _client_memo_key(self) -> tuple | None:
        """The fingerprint memo's key of client_hello (the C session keeps it from the parse)."""
        return _client_key(self.client_hello) if self.client_hello is not None else None

    @property
    def _server_memo_key(self) -> tuple | None:
        """The fingerprint memo's key of first_server_hello."""
        return _server_key(self.first_server_hello) if self.first_server_hello is not None else None

    # --- input ------------------------------------------------------------------------

    def feed(self, from_client: bool, data: bytes, now: float) -> None:
        """The next bytes of one direction's stream, captured at ``now``."""
        if self.first_ts is None:
            self.first_ts = self.last_ts = now
        elif now > self.last_ts:  # time never goes back
            self.last_ts = now
        half = self._client if from_client else self._server
        half.bytes += len(data)
        if not half.parsing or not data:
            return  # encrypted or given up: only counted
        if half.mode is Mode.START:
            data = self._start(half, from_client, data)
            if not data:  # None: undecided or not TLS; or nothing after an SSL 2.0 hello
                return
        self._records(half, from_client, data)

    def gap(self, from_client: bool, nbytes: int) -> None:
        """``nbytes`` of one direction's stream were lost."""
        if nbytes <= 0:
            return
        half = self._client if from_client else self._server
        half.bytes += nbytes
        self.missed_bytes += nbytes
        if half.parsing:
            self.anomalies.add(A.GAP)
            half.to(Event.GAP)

    def close(self, now: float) -> None:
        """The connection ended; flags a handshake that did not finish."""
        if self.first_ts is None:
            self.first_ts = self.last_ts = now
        elif now > self.last_ts:
            self.last_ts = now
        if self.closed:
            return
        self.closed = True
        if (
            not self.established
            and self._client.bytes > 0
            and not self._fatal_alert
            and not self._sslv2_only
            and A.NOT_TLS not in self.anomalies
            and A.SERVER_NOT_TLS not in self.anomalies
        ):
            self.anomalies.add(A.TRUNCATED_HANDSHAKE)
        self._client.to(Event.CLOSE)
        self._server.to(Event.CLOSE)

    # --- parsing ----------------------------------------------------------------------

    def _start(self, half: _Half, from_client: bool, data: bytes) -> bytes | memoryview | None:
        """The first bytes of a direction: the bytes to parse as records, or None."""
        buf = half.start_buf + data if half.start_buf else data
        first = buf[0]
        if not from_client:
            # A server answers a ClientHello with a handshake record, or an alert
            # (protocol_version, handshake_failure) when it refuses it.
            if first == HANDSHAKE or first == ALERT or first == CHANGE_CIPHER_SPEC:
                half.to(Event.TLS)
                return buf
            self.anomalies.add(A.SERVER_NOT_TLS)
            half.to(Event.NOT_TLS)
            return None
        if first == HANDSHAKE:
            half.to(Event.TLS)
            return buf
        if first & _SSLV2_FIRST_BIT:
            verdict = looks_like_sslv2_client_hello(buf)
            if verdict is None:
                half.start_buf = bytes(buf)
                return None
            if verdict:
                total = (((buf[0] & 0x7F) << 8) | buf[1]) + 2  # at most 2^15 + 1: bounded by the format
                if len(buf) < total:
                    half.start_buf = bytes(buf)
                    return None
                half.start_buf = b""
                hello = parse_sslv2_client_hello(bytes(buf[:total]))
                if hello is not None:
                    self.client_hello = hello
                    self.anomalies.add(A.SSLV2_HELLO)
                    if (hello.legacy_version >> 8) == 3:
                        half.to(Event.SSLV2_COMPATIBLE)
                        return memoryview(buf)[total:]
                    # SSL 2.0 itself (RFC 6176 prohibits it): its server hello and
                    # everything after are not TLS records; count both sides.
                    self._sslv2_only = True
                    half.to(Event.SSLV2)
                    self._server.to(Event.SSLV2)
                    return None
        self._not_tls()
        return None

    def _not_tls(self) -> None:
        self.anomalies.add(A.NOT_TLS)
        self._client.to(Event.NOT_TLS)
        # Whatever the server says to a client that is not speaking TLS is not parsed either.
        self._server.to(Event.NOT_TLS)

    def _records(self, half: _Half, from_client: bool, data) -> None:
        for ctype, chunk, first in half.reader.feed(data):
            if ctype == HANDSHAKE:
                if chunk and not self._handshake(half, from_client, chunk):
                    return
            elif ctype == ALERT:
                self._alert_bytes(half, from_client, chunk)
            elif ctype == CHANGE_CIPHER_SPEC:
                if first:  # its header
                    half.sent_ccs = True
                    if self._ccs_switches():
                        self._switch(half)
                        return
            elif ctype == APPLICATION_DATA:
                if first:
                    sh = self.server_hello
                    if sh is not None and sh.version >= TLS13:
                        self._switch(half)
                        return
                    # Before a TLS 1.3 ServerHello: 0-RTT early data (RFC 8446
                    # section 4.2.10), or records a stack would refuse; skipped.
            elif ctype == BAD:
                reason = chunk
                if reason == BAD_LENGTH:
                    self.anomalies.add(A.RECORD_OVERSIZED)
                elif half.reader.records == 0:
                    if from_client:
                        self._not_tls()
                        return
                    self.anomalies.add(A.SERVER_NOT_TLS)
                else:
                    self.anomalies.add(A.BAD_RECORD)
                half.to(Event.BAD_FRAMING)
                return
            # Heartbeat records (RFC 6520), and the bodies of ChangeCipherSpec
            # and application data: skipped.

    def _ccs_switches(self) -> bool:
        """Whether a ChangeCipherSpec means "my next records are encrypted".

        In TLS <= 1.2 it does (RFC 5246 section 7.1).  In TLS 1.3 it is the
        middlebox-compatibility dummy (RFC 8446 appendix D.4), sent by a client
        possibly before the ServerHello: then the ClientHello decides (a client
        that does not offer 1.3 cannot be sending the dummy)."""
        sh = self.server_hello if self.server_hello is not None else self.first_server_hello
        if sh is not None:
            return sh.version < TLS13
        ch = self.client_hello
        return ch is None or ch.highest_version() < TLS13

    def _switch(self, half: _Half) -> None:
        half.to(Event.SWITCH)
        if self.established and self.established_ts is None:
            self.established_ts = self.last_ts

    def _handshake(self, half: _Half, from_client: bool, chunk) -> bool:
        """Handshake record body bytes; False when the direction stopped being parsed."""
        for kind, mtype, length, body in half.hs.feed(chunk):
            if kind == START:
                if from_client and self.client_hello is None and half.hs.messages == 1 and mtype != CLIENT_HELLO:
                    # A client's first handshake message is its ClientHello (RFC 8446 section 4.1.2).
                    self._not_tls()
                    return False
                bound = half.hs.keep.get(mtype)
                if bound is not None and length > bound:
                    self.anomalies.add(A.HANDSHAKE_TOO_LARGE)
            elif from_client:
                self._client_message(mtype, length, body)
            else:
                self._server_message(mtype, length, body)
        return True

    def _client_message(self, mtype: int, length: int, body: bytes | None) -> None:
        if mtype != CLIENT_HELLO or body is None:
            return
        # Only the first ClientHello is kept: the one after a HelloRetryRequest
        # repeats it (RFC 8446 section 4.1.2), and fingerprints use the first.
        self._client.hs.keep = _NOTHING
        if length > MAX_HELLO_BYTES:
            return
        hello = parse_client_hello(body)
        if hello is None or hello.malformed:
            self.anomalies.add(A.BAD_HELLO)
        self.client_hello = hello

    def _server_message(self, mtype: int, length: int, body: bytes | None) -> None:
        if mtype == SERVER_HELLO:
            if body is None or length > MAX_HELLO_BYTES:
                return
            hello = parse_server_hello(body)
            if hello is None or hello.malformed:
                self.anomalies.add(A.BAD_HELLO)
            if hello is None:
                return
            if self.first_server_hello is None:
                self.first_server_hello = hello
            if not hello.hello_retry and self.server_hello is None:
                self.server_hello = hello
                if hello.version >= TLS13:
                    # The rest of a TLS 1.3 server's handshake is encrypted.
                    self._server.hs.keep = _NOTHING
        elif mtype == CERTIFICATE:
            sh = self.server_hello
            if body is None or self.server_cert is not None or sh is None or sh.version >= TLS13:
                return
            self._server.hs.keep = _NOTHING
            der, complete = first_certificate(body)
            if der is None:
                if not complete:
                    self.anomalies.add(A.BAD_CERTIFICATE)
                return
            summary, parsed = certificate_summary(der)
            if not parsed:
                self.anomalies.add(A.BAD_CERTIFICATE)
            self.server_cert = summary
        elif mtype == SERVER_HELLO_DONE:
            self._server.saw_hello_done = True

    def _alert_bytes(self, half: _Half, from_client: bool, chunk) -> None:
        buf = half.alert_buf + bytes(chunk) if half.alert_buf else chunk
        i = 0
        while i + 2 <= len(buf):
            level, description = buf[i], buf[i + 1]
            i += 2
            if level == FATAL:
                self._fatal_alert = True
            if len(self.alerts) < MAX_ALERTS:
                self.alerts.append(alert(level, description, from_client))
            else:
                self.anomalies.add(A.TOO_MANY_ALERTS)
        half.alert_buf = bytes(buf[i:])


try:
    from sniffd.tls._session import Session as _CSession
except ImportError:  # built without a compiler: the reference does it all, slower
    TlsSessionC = None
    TlsSession = TlsSessionPy
else:

    class TlsSessionC(_CSession, _Result):
        """``TlsSessionPy`` with the per-byte machinery in C (sniffd/tls/_session.c), ~10x
        cheaper per packet; ``result()`` too is the C one (``_CSession.result``, first in
        the MRO): ``_Result.result`` is its reference, and tests call it on this class's
        state as well."""

        __slots__ = ()

    TlsSession = TlsSessionC
