"""STARTTLS on loopback: real kernel TCP connections that speak a cleartext protocol, then upgrade to TLS.

Issue 12 asks sniffd to follow TLS that begins after a cleartext exchange,
recognised by the ClientHello wherever it begins in the client's stream (not
by port).  This module makes that traffic, with an answer key from the two
ends, never from sniffd:

- ``PROTOCOLS``: for each cleartext protocol, a scripted server side (the
  greeting, the capability reply, the positive answer to the upgrade command)
  and a client.  The client is the standard library's where it has one
  (``smtplib.SMTP.starttls``, ``imaplib.IMAP4.starttls``, ``poplib.POP3.stls``,
  ``ftplib.FTP_TLS.auth``); the others are written byte by byte from their
  specifications (cited on each class).  After the handshake the client sends
  one short application message, reads the server's answer and closes.
- ``Variant``: which protocol, TLS 1.2 or 1.3, SNI or none, ALPN offered or
  not, and (MySQL only, the one protocol here where the client does not wait
  for an answer) the ClientHello written in the same ``send`` as the last
  cleartext message.
- ``capture_variants``: every variant against its server under one tcpdump on
  ``lo``; ``ground_truth``: one dict per connection, from what the two ends
  know (``SSLSocket.version()``, ``.cipher()``, ``.selected_alpn_protocol()``,
  the SNI the server's callback received, the cleartext bytes each end
  exchanged before the handshake) and, for the byte counts and the hello's
  timestamp, from the capture itself read with dpkt (``tests/tlscraft.py``).

Everything is bounded: every socket has a timeout, one connection per variant.
Only 127.0.0.1 is ever used.
"""

from __future__ import annotations

import datetime as dt
import queue
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import dpkt

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests import tlscraft  # noqa: E402
from tests.live.conftest import CAPTURE_SETTLE_S, TcpdumpCapture  # noqa: E402
from tests.live.test_tls_loopback import make_certificate, openssl_iana_names  # noqa: E402

HOST = "127.0.0.1"

# Every socket operation: a loopback peer answers in microseconds, so this
# only bounds a hung script.
TIMEOUT_S = 10.0

# What every server offers; each client offers the registered ALPN id of its
# own protocol (IANA "TLS Application-Layer Protocol Negotiation (ALPN)
# Protocol IDs": imap, pop3, ftp, xmpp-client, irc, postgresql; none is
# registered for SMTP, LDAP, MySQL or RDP).
SERVER_ALPN = ["h2", "http/1.1", "imap", "pop3", "ftp", "xmpp-client", "irc", "postgresql"]

V12, V13 = "TLSv1.2", "TLSv1.3"


# --- what one connection is ----------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One connection to make: ``protocol`` is the record's ``tls.starttls`` value."""

    protocol: str
    tls: str  # "TLSv1.2" or "TLSv1.3": the client's highest version
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    # The ClientHello in the same send() as the last cleartext message.  Only
    # legal where the client waits for no answer before its hello: MySQL's
    # SSLRequest has none (the server reads the hello next).
    pipelined: bool = False


@dataclass
class ClientSide:
    port: int
    version: str
    cipher: str
    alpn: str | None


@dataclass
class ServerSide:
    client_port: int
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    sni: str | None = None
    clear_in: int = 0  # cleartext bytes received before the handshake
    clear_out: int = 0  # cleartext bytes sent before the handshake
    error: str | None = None


@dataclass
class Run:
    variant: Variant
    server_port: int
    client: ClientSide
    server: ServerSide


# --- cleartext I/O ---------------------------------------------------------------------


class Clear:
    """Cleartext reads and writes on a plain socket, counted.

    A read never takes a byte past the message asked for: the bytes after it
    may be the peer's TLS handshake, which belongs to ``ssl`` (MSG_PEEK
    first, then recv exactly up to the terminator)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent = 0
        self.received = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"peer closed after {len(buf)} of {n} bytes")
            buf += chunk
        self.received += n
        return buf

    def until(self, terminator: bytes) -> bytes:
        """Bytes up to and including ``terminator``."""
        buf = b""
        while True:
            peek = self.sock.recv(4096, socket.MSG_PEEK)
            if not peek:
                raise ConnectionError(f"peer closed before {terminator!r}; got {buf!r}")
            at = (buf + peek).find(terminator)
            take = len(peek) if at < 0 else at + len(terminator) - len(buf)
            buf += self.exact(take)
            if at >= 0:
                return buf

    def line(self) -> bytes:
        return self.until(b"\r\n")


def tls_until(tls, terminator: bytes) -> bytes:
    """Read a TLS socket (or ``BioTls``) until ``terminator``; nothing follows it on these connections."""
    buf = b""
    while terminator not in buf:
        chunk = tls.recv(4096)
        if not chunk:
            raise ConnectionError(f"peer closed before {terminator!r}; got {buf!r}")
        buf += chunk
    return buf


def tls_exact(tls, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = tls.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"peer closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


# --- TLS ends --------------------------------------------------------------------------


class SniContext(ssl.SSLContext):
    """A client context that sends ``sni`` (or no SNI) whatever host name the
    caller passes: smtplib, imaplib, poplib and ftplib pass the address they
    connected to, and python sends no SNI for an IP address."""

    sni: str | None = None

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, suppress_ragged_eofs=True, server_hostname=None, session=None):
        return super().wrap_socket(sock, server_side=server_side, do_handshake_on_connect=do_handshake_on_connect,
                                   suppress_ragged_eofs=suppress_ragged_eofs, server_hostname=self.sni, session=session)  # fmt: skip


def client_context(v: Variant) -> SniContext:
    ctx = SniContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2 if v.tls == V12 else ssl.TLSVersion.TLSv1_3
    if v.alpn:
        ctx.set_alpn_protocols(list(v.alpn))
    ctx.sni = v.sni
    return ctx


class BioTls:
    """A TLS client driven through ``ssl.MemoryBIO``, so that its first flight
    (the ClientHello) can go out in one ``send`` with the cleartext ``prefix``.
    Offers what the clients use of an ``SSLSocket``."""

    def __init__(self, sock: socket.socket, ctx: SniContext, prefix: bytes) -> None:
        self.sock = sock
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(self._in, self._out, server_hostname=ctx.sni)
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(prefix + self._out.read())
                prefix = b""
                self._pull()
        self._flush()

    def _pull(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self.sock.sendall(data)

    def sendall(self, data: bytes) -> None:
        self._tls.write(data)
        self._flush()

    def recv(self, n: int) -> bytes:
        while True:
            try:
                return self._tls.read(n)
            except ssl.SSLWantReadError:
                if not self._pull():
                    return b""
            except ssl.SSLEOFError:
                return b""

    def version(self) -> str | None:
        return self._tls.version()

    def cipher(self):
        return self._tls.cipher()

    def selected_alpn_protocol(self) -> str | None:
        return self._tls.selected_alpn_protocol()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> BioTls:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def client_knows(port: int, tls) -> ClientSide:
    return ClientSide(port, tls.version(), tls.cipher()[0], tls.selected_alpn_protocol())


def connect(port: int) -> tuple[socket.socket, Clear]:
    """A hand-scripted client's socket.  TCP_NODELAY: each message goes out
    when written, so each write is its own segment on loopback."""
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, Clear(sock)


def start_tls(sock: socket.socket, clear: Clear, ctx: SniContext, last: bytes, pipelined: bool):
    """Send the last cleartext message ``last`` and begin the handshake: in one
    write with the ClientHello when ``pipelined``, else in a write of its own."""
    if pipelined:
        clear.sent += len(last)
        return BioTls(sock, ctx, last)
    clear.send(last)
    return ctx.wrap_socket(sock)


# --- the protocols ---------------------------------------------------------------------


class Smtp:
    """SMTP STARTTLS, RFC 3207: EHLO, the 250 reply lists STARTTLS, ``STARTTLS``
    answered 220, handshake; then QUIT / 221 (smtplib)."""

    name = "smtp"

    @staticmethod
    def server_clear(c: Clear) -> None:
        c.send(b"220 mail.test ESMTP sniffd-test\r\n")
        line = c.line()
        assert line.upper().startswith(b"EHLO "), line
        c.send(b"250-mail.test greets client.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
        assert c.line().upper() == b"STARTTLS\r\n"
        c.send(b"220 2.0.0 Ready to start TLS\r\n")

    @staticmethod
    def server_app(t) -> None:
        assert tls_until(t, b"\r\n").upper() == b"QUIT\r\n"
        t.sendall(b"221 2.0.0 Bye\r\n")

    @staticmethod
    def client(port: int, ctx: SniContext, pipelined: bool) -> ClientSide:
        import smtplib

        assert not pipelined, "RFC 3207 section 4: the client waits for the 220 before its hello"
        # local_hostname: smtplib would otherwise ask the resolver for this host's FQDN.
        s = smtplib.SMTP(HOST, port, local_hostname="client.test", timeout=TIMEOUT_S)
        cport = s.sock.getsockname()[1]
        s.starttls(context=ctx)
        known = client_knows(cport, s.sock)
        s.quit()
        return known


class Imap:
    """IMAP STARTTLS, RFC 3501 section 6.2.1 (imaplib): greeting, CAPABILITY
    lists STARTTLS, ``STARTTLS`` answered OK, handshake; then CAPABILITY again
    and LOGOUT."""

    name = "imap"

    @staticmethod
    def server_clear(c: Clear) -> None:
        c.send(b"* OK imap.test IMAP4rev1 ready\r\n")
        while True:
            tag, command = c.line().rstrip(b"\r\n").split(b" ", 1)
            if command.upper() == b"CAPABILITY":
                c.send(b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n" + tag + b" OK CAPABILITY completed\r\n")
            else:
                assert command.upper() == b"STARTTLS", command
                c.send(tag + b" OK Begin TLS negotiation now\r\n")
                return

    @staticmethod
    def server_app(t) -> None:
        while True:
            tag, command = tls_until(t, b"\r\n").rstrip(b"\r\n").split(b" ", 1)
            if command.upper() == b"CAPABILITY":
                t.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK CAPABILITY completed\r\n")
            else:
                assert command.upper() == b"LOGOUT", command
                t.sendall(b"* BYE imap.test logging out\r\n" + tag + b" OK LOGOUT completed\r\n")
                return

    @staticmethod
    def client(port: int, ctx: SniContext, pipelined: bool) -> ClientSide:
        import imaplib

        assert not pipelined, "RFC 3501 section 6.2.1: the client waits for the tagged OK"
        m = imaplib.IMAP4(HOST, port, timeout=TIMEOUT_S)
        cport = m.sock.getsockname()[1]
        m.starttls(ssl_context=ctx)
        known = client_knows(cport, m.sock)
        m.logout()
        return known


class Pop3:
    """POP3 STLS, RFC 2595 section 4 (poplib): greeting, CAPA lists STLS,
    ``STLS`` answered +OK, handshake; then QUIT."""

    name = "pop3"

    @staticmethod
    def server_clear(c: Clear) -> None:
        c.send(b"+OK pop3.test ready\r\n")
        while True:
            command = c.line().rstrip(b"\r\n").upper()
            if command == b"CAPA":
                c.send(b"+OK Capability list follows\r\nSTLS\r\nUSER\r\n.\r\n")
            else:
                assert command == b"STLS", command
                c.send(b"+OK Begin TLS negotiation\r\n")
                return

    @staticmethod
    def server_app(t) -> None:
        assert tls_until(t, b"\r\n").upper() == b"QUIT\r\n"
        t.sendall(b"+OK bye\r\n")

    @staticmethod
    def client(port: int, ctx: SniContext, pipelined: bool) -> ClientSide:
        import poplib

        assert not pipelined, "RFC 2595 section 4: the client waits for the +OK"
        p = poplib.POP3(HOST, port, timeout=TIMEOUT_S)
        cport = p.sock.getsockname()[1]
        p.stls(context=ctx)
        known = client_knows(cport, p.sock)
        p.quit()
        return known


class Ftp:
    """FTP AUTH TLS, RFC 4217 section 4 (ftplib.FTP_TLS.auth): 220 greeting,
    ``AUTH TLS`` answered 234, handshake; then QUIT / 221."""

    name = "ftp"

    @staticmethod
    def server_clear(c: Clear) -> None:
        c.send(b"220 ftp.test FTP server ready\r\n")
        assert c.line().upper() == b"AUTH TLS\r\n"
        c.send(b"234 AUTH TLS successful\r\n")

    @staticmethod
    def server_app(t) -> None:
        assert tls_until(t, b"\r\n").upper() == b"QUIT\r\n"
        t.sendall(b"221 Goodbye.\r\n")

    @staticmethod
    def client(port: int, ctx: SniContext, pipelined: bool) -> ClientSide:
        import ftplib

        assert not pipelined, "RFC 4217 section 4: the client waits for the 234"
        f = ftplib.FTP_TLS(context=ctx, timeout=TIMEOUT_S)
        f.connect(HOST, port)
        cport = f.sock.getsockname()[1]
        f.auth()
        known = client_knows(cport, f.sock)
        f.quit()
        return known


XMPP_STREAMS = b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
XMPP_TLS_NS = b"urn:ietf:params:xml:ns:xmpp-tls"


class Xmpp:
    """XMPP STARTTLS, RFC 6120 section 5.4: stream headers, features with
    <starttls/>, <starttls/> answered <proceed/>, handshake; then a new stream
    header (section 5.4.3.3), answered by the server's header, features and
    the stream's close."""

    name = "xmpp"

    @staticmethod
    def server_clear(c: Clear) -> None:
        c.until(b"<stream:stream")
        c.until(b">")
        c.send(b"<?xml version='1.0'?><stream:stream from='xmpp.test' id='c2s-1' version='1.0' " + XMPP_STREAMS + b">"
               b"<stream:features><starttls xmlns='" + XMPP_TLS_NS + b"'><required/></starttls></stream:features>")  # fmt: skip
        assert c.until(b"/>") == b"<starttls xmlns='" + XMPP_TLS_NS + b"'/>"
        c.send(b"<proceed xmlns='" + XMPP_TLS_NS + b"'/>")

    @staticmethod
    def server_app(t) -> None:
        tls_until(t, XMPP_STREAMS + b">")
        t.sendall(b"<?xml version='1.0'?><stream:stream from='xmpp.test' id='c2s-2' version='1.0' " + XMPP_STREAMS + b">"
                  b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
                  b"</mechanisms></stream:features></stream:stream>")  # fmt: skip

    @staticmethod
    def client(port: int, ctx: SniContext, pipelined: bool) -> ClientSide:
        assert not pipelined, "RFC 6120 section 5.4.2.3: the client waits for <proceed/>"
        header = b"<?xml version='1.0'?><stream:stream to='xmpp.test' version='1.0' " + XMPP_STREAMS + b">"
        sock, c = connect(port)
        with sock:
            cport = sock.getsockname()[1]
            c.send(header)
            features = c.until(b"</stream:features>")
            assert b"<starttls xmlns='" + XMPP_TLS_NS + b"'>" in features, features
            c.send(b"<starttls xmlns='" + XMPP_TLS_NS + b"'/>")
            assert c.until(b"/>") == b"<proceed xmlns='" + XMPP_TLS_NS + b"'/>"
            with ctx.wrap_socket(sock) as t:
                t.sendall(header)
                tls_until(t, b"</stream:stream>")
                return client_knows(cport, t)


def ber(tag: int, content: bytes) -> bytes:
    """One BER TLV (X.690 section 8.1), definite length (short or long form)."""
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def ber_int(n: int) -> bytes:
    return ber(0x02, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"  # RFC 4511 section 4.14.1
LDAP_WHOAMI_OID = b"1.3.6.1.4.1.4203.1.11.3"  # RFC 4532 section 2


def ldap_extended_request(message_id: int, oid: bytes) -> bytes:
    """LDAPMessage { messageID, ExtendedRequest ::= [APPLICATION 23] SEQUENCE { requestName [0] LDAPOID } } (RFC 4511 section 4.12)."""
    return ber(0x30, ber_int(message_id) + ber(0x77, ber(0x80, oid)))


def ldap_extended_response(message_id: int, oid: bytes | None) -> bytes:
    """LDAPMessage { messageID, ExtendedResponse ::= [APPLICATION 24] SEQUENCE { resultCode success,
    matchedDN "", diagnosticMessage "", responseName [10] } } (RFC 4511 sections 4.1.9, 4.12)."""
    result = ber(0x0A, b"\x00") + ber(0x04, b"") + ber(0x04, b"")
    return ber(0x30, ber_int(message_id) + ber(0x78, result + (ber(0x8A, oid) if oid else b"")))


def ldap_read(read) -> bytes:
    """One LDAPMessage, its length in the short or the long form (X.690 section 8.1.3)."""
    head = read(2)
    if head[1] & 0x80:
        size = read(head[1] & 0x7F)
        return head + size + read(int.from_bytes(size, "big"))
    return head + read(head[1])


class Ldap:
    """LDAP StartTLS, RFC 4511 section 4.14: the StartTLS ExtendedRequest
    (OID 1.3.6.1.4.1.1466.20037) answered by an ExtendedResponse with
    resultCode success, handshake; then a Who am I? ExtendedRequest (RFC 4532)
    and its response."""

    name = "ldap"

    @staticmethod
    def server_clear(c: Clear) -> None:
        assert ldap_read(c.exact) == ldap_extended_request(1, LDAP_STARTTLS_OID)
        c.send(ldap_extended_response(1, LDAP_STARTTLS_OID))

    @staticmethod
    def server_app(t) -> None:
        assert ldap_read(lambda n: tls_exact(t, n)) == ldap_extended_request(2, LDAP_WHOAMI_OID)
        t.sendall(ldap_extended_response(2, None))

    @staticmethod
    def client(port: int, ctx: SniContext, pipelined: bool) -> ClientSide:
        assert not pipelined, "RFC 4511 section 4.14.1: the client waits for the ExtendedResponse"
        sock, c = connect(port)
        with sock:
            cport = sock.getsockname()[1]
            c.send(ldap_extended_request(1, LDAP_STARTTLS_OID))
            assert ldap_read(c.exact) == ldap_extended_response(1, LDAP_STARTTLS_OID)
            with ctx.wrap_socket(sock) as t:
                t.sendall(ldap_extended_request(2, LDAP_WHOAMI_OID))
                assert ldap_read(lambda n: tls_exact(t, n)) == ldap_extended_response(2, None)
                return client_knows(cport, t)


class Irc:
    """IRC STARTTLS (IRCv3 ``tls`` capability, https://ircv3.net/specs/deprecated/tls):
    ``CAP LS`` lists tls, ``STARTTLS`` answered with numeric 670, handshake;
    then PING / PONG."""

    name = "irc"

    @staticmethod
    def server_clear(c: Clear) -> None:
        assert c.line() == b"CAP LS 302\r\n"
        c.send(b":irc.test CAP * LS :tls multi-prefix\r\n")
        assert c.line() == b"STARTTLS\r\n"
        c.send(b":irc.test 670 * :STARTTLS successful, proceed with TLS handshake\r\n")

    @staticmethod
    def server_app(t) -> None:
        assert tls_until(t, b"\r\n") == b"PING :sniffd\r\n"
        t.sendall(b":irc.test PONG irc.test :sniffd\r\n")

    @staticmethod
    def client(port: int, ctx: SniContext, pipelined: bool) -> ClientSide:
        assert not pipelined, "the client waits for 670 before its hello"
        sock, c = connect(port)
        with sock:
            cport = sock.getsockname()[1]
            c.send(b"CAP LS 302\r\n")
            assert b"tls" in c.line().rstrip(b"\r\n").split(b" :", 1)[1].split(b" "), "no tls capability"
            c.send(b"STARTTLS\r\n")
            assert c.line().split(b" ")[1] == b"670"
            with ctx.wrap_socket(sock) as t:
                t.sendall(b"PING :sniffd\r\n")
                tls_until(t, b"\r\n")
                return client_knows(cport, t)


PG_SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # PostgreSQL protocol 3.0, "SSLRequest"


class Postgresql:
    """PostgreSQL SSLRequest (protocol docs, "SSL Session Encryption"): int32 8,
    int32 80877103, answered with the single byte 'S', handshake; then the
    StartupMessage (protocol 3.0) and AuthenticationOk."""

    name = "postgresql"

    STARTUP = b"\x00\x03\x00\x00" + b"user\x00sniffd\x00database\x00test\x00\x00"
    AUTH_OK = b"R" + struct.pack("!ii", 8, 0)

    @staticmethod
    def server_clear(c: Clear) -> None:
        assert c.exact(8) == PG_SSL_REQUEST
        c.send(b"S")

    @staticmethod
    def server_app(t) -> None:
        (length,) = struct.unpack("!i", tls_exact(t, 4))
        assert tls_exact(t, length - 4) == Postgresql.STARTUP
        t.sendall(Postgresql.AUTH_OK)

    @staticmethod
    def client(port: int, ctx: SniContext, pipelined: bool) -> ClientSide:
        assert not pipelined, "the client waits for 'S' before its hello"
        sock, c = connect(port)
        with sock:
            cport = sock.getsockname()[1]
            c.send(PG_SSL_REQUEST)
            assert c.exact(1) == b"S"
            with ctx.wrap_socket(sock) as t:
                t.sendall(struct.pack("!i", 4 + len(Postgresql.STARTUP)) + Postgresql.STARTUP)
                assert tls_exact(t, 9) == Postgresql.AUTH_OK
                return client_knows(cport, t)


# MySQL capability flags (MySQL source, include/mysql_com.h).
CLIENT_LONG_PASSWORD = 0x1
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000
MYSQL_CAPS = CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH
MYSQL_UTF8MB4 = 255


def mysql_packet(seq: int, payload: bytes) -> bytes:
    """int<3> payload length, int<1> sequence id, payload (MySQL client/server protocol)."""
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def mysql_read(read) -> tuple[int, bytes]:
    head = read(4)
    return head[3], read(int.from_bytes(head[:3], "little"))


class Mysql:
    """MySQL TLS (protocol docs, "Protocol::SSLRequest"): the server's
    HandshakeV10 greeting advertises CLIENT_SSL; the client answers with the
    32-byte SSLRequest (capabilities with CLIENT_SSL, max packet size,
    charset, 23 zero bytes) and starts the handshake without waiting (the
    server sends nothing in between); then HandshakeResponse41 and OK."""

    name = "mysql"

    GREETING = (
        b"\x0a" + b"8.0.36-sniffd\x00" + struct.pack("<I", 7) + b"abcdefgh" + b"\x00"
        + struct.pack("<H", MYSQL_CAPS & 0xFFFF) + bytes([MYSQL_UTF8MB4]) + struct.pack("<H", 0x0002)
        + struct.pack("<H", MYSQL_CAPS >> 16) + bytes([21]) + bytes(10) + b"ijklmnopqrst\x00"
        + b"caching_sha2_password\x00"
    )  # fmt: skip
    SSL_REQUEST = struct.pack("<IIB", MYSQL_CAPS, 16 * 1024 * 1024, MYSQL_UTF8MB4) + bytes(23)
    RESPONSE = SSL_REQUEST + b"sniffd\x00" + b"\x00" + b"caching_sha2_password\x00"
    OK = b"\x00\x00\x00\x02\x00\x00\x00"

    @staticmethod
    def server_clear(c: Clear) -> None:
        c.send(mysql_packet(0, Mysql.GREETING))
        seq, payload = mysql_read(c.exact)
        assert (1, Mysql.SSL_REQUEST) == (seq, payload)

    @staticmethod
    def server_app(t) -> None:
        assert (2, Mysql.RESPONSE) == mysql_read(lambda n: tls_exact(t, n))
        t.sendall(mysql_packet(3, Mysql.OK))

    @staticmethod
    def client(port: int, ctx: SniContext, pipelined: bool) -> ClientSide:
        sock, c = connect(port)
        with sock:
            cport = sock.getsockname()[1]
            seq, greeting = mysql_read(c.exact)
            end = greeting.index(b"\x00", 1)  # the server version string's NUL
            caps = struct.unpack("<H", greeting[end + 14 : end + 16])[0]  # after connection id 4, salt 8, filler 1
            assert (0, CLIENT_SSL) == (seq, caps & CLIENT_SSL), greeting
            with start_tls(sock, c, ctx, mysql_packet(1, Mysql.SSL_REQUEST), pipelined) as t:
                t.sendall(mysql_packet(2, Mysql.RESPONSE))
                assert (3, Mysql.OK) == mysql_read(lambda n: tls_exact(t, n))
                return client_knows(cport, t)


def tpkt(payload: bytes) -> bytes:
    """TPKT (RFC 1006 section 6): version 3, reserved, 16-bit length of the whole packet."""
    return b"\x03\x00" + struct.pack("!H", 4 + len(payload)) + payload


PROTOCOL_SSL = 0x00000001  # MS-RDPBCGR 2.2.1.1.1 requestedProtocols


class Rdp:
    """RDP's TLS upgrade (MS-RDPBCGR 2.2.1.1 and 2.2.1.2): an X.224 Connection
    Request TPDU (ISO 8073 code 0xE0) with a routing cookie and RDP_NEG_REQ
    asking for PROTOCOL_SSL, answered by a Connection Confirm (0xD0) with
    RDP_NEG_RSP selecting PROTOCOL_SSL, handshake (section 5.4.5.1); then one
    X.224 Data TPDU each way."""

    name = "rdp"

    COOKIE = b"Cookie: mstshash=sniffd\r\n"
    NEG_REQ = bytes([0x01, 0x00]) + struct.pack("<HI", 8, PROTOCOL_SSL)  # TYPE_RDP_NEG_REQ
    NEG_RSP = bytes([0x02, 0x00]) + struct.pack("<HI", 8, PROTOCOL_SSL)  # TYPE_RDP_NEG_RSP
    # LI counts the TPDU header after itself (code, DST-REF, SRC-REF, class: 6) and the variable part.
    CONNECTION_REQUEST = tpkt(bytes([6 + len(COOKIE) + len(NEG_REQ), 0xE0, 0, 0, 0, 0, 0]) + COOKIE + NEG_REQ)
    CONNECTION_CONFIRM = tpkt(bytes([6 + len(NEG_RSP), 0xD0, 0, 0, 0x12, 0x34, 0]) + NEG_RSP)
    DATA_IN = tpkt(b"\x02\xf0\x80" + b"hello")  # X.224 Data TPDU, EOT
    DATA_OUT = tpkt(b"\x02\xf0\x80" + b"world")

    @staticmethod
    def read(read) -> bytes:
        head = read(4)
        return head + read(struct.unpack("!H", head[2:])[0] - 4)

    @staticmethod
    def server_clear(c: Clear) -> None:
        assert Rdp.read(c.exact) == Rdp.CONNECTION_REQUEST
        c.send(Rdp.CONNECTION_CONFIRM)

    @staticmethod
    def server_app(t) -> None:
        assert Rdp.read(lambda n: tls_exact(t, n)) == Rdp.DATA_IN
        t.sendall(Rdp.DATA_OUT)

    @staticmethod
    def client(port: int, ctx: SniContext, pipelined: bool) -> ClientSide:
        assert not pipelined, "MS-RDPBCGR 5.4.5.1: the client waits for the Connection Confirm"
        sock, c = connect(port)
        with sock:
            cport = sock.getsockname()[1]
            c.send(Rdp.CONNECTION_REQUEST)
            confirm = Rdp.read(c.exact)
            assert confirm[-4:] == struct.pack("<I", PROTOCOL_SSL), confirm
            with ctx.wrap_socket(sock) as t:
                t.sendall(Rdp.DATA_IN)
                assert Rdp.read(lambda n: tls_exact(t, n)) == Rdp.DATA_OUT
                return client_knows(cport, t)


class HttpConnect:
    """A forward proxy's CONNECT (RFC 9110 section 9.3.6) answered 200; the
    proxy is then the TLS server itself; one HTTP/1.1 request and response
    inside the tunnel."""

    name = "http"

    TARGET = b"tunnel.test:443"
    CONNECT = b"CONNECT " + TARGET + b" HTTP/1.1\r\nHost: " + TARGET + b"\r\nUser-Agent: sniffd-test\r\n\r\n"
    ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
    GET = b"GET / HTTP/1.1\r\nHost: tunnel.test\r\nConnection: close\r\n\r\n"
    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    @staticmethod
    def server_clear(c: Clear) -> None:
        assert c.until(b"\r\n\r\n") == HttpConnect.CONNECT
        c.send(HttpConnect.ESTABLISHED)

    @staticmethod
    def server_app(t) -> None:
        assert tls_until(t, b"\r\n\r\n") == HttpConnect.GET
        t.sendall(HttpConnect.OK)

    @staticmethod
    def client(port: int, ctx: SniContext, pipelined: bool) -> ClientSide:
        assert not pipelined, "a proxy may refuse the CONNECT: the client waits for the 200"
        sock, c = connect(port)
        with sock:
            cport = sock.getsockname()[1]
            c.send(HttpConnect.CONNECT)
            assert c.until(b"\r\n\r\n") == HttpConnect.ESTABLISHED
            with ctx.wrap_socket(sock) as t:
                t.sendall(HttpConnect.GET)
                assert tls_until(t, b"\r\n\r\nok").endswith(b"\r\n\r\nok")
                return client_knows(cport, t)


PROTOCOLS = {p.name: p for p in (Smtp, Imap, Pop3, Ftp, Xmpp, Ldap, Irc, Postgresql, Mysql, Rdp, HttpConnect)}


# --- the server ------------------------------------------------------------------------


class ScriptedServer:
    """One protocol's server on an ephemeral 127.0.0.1 port, one connection at
    a time in its own thread: the cleartext script, then ``ssl`` on the same
    socket, then the protocol's answer to the client's one message; then it
    closes.  Each connection's view goes into ``conns``."""

    def __init__(self, protocol, cert: Path, key: Path) -> None:
        self.protocol = protocol
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.set_alpn_protocols(SERVER_ALPN)
        self.ctx.sni_callback = self._note_sni
        self._sni: str | None = None
        self.conns: queue.Queue[ServerSide] = queue.Queue()
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"starttls-{protocol.name}", daemon=True)
        self._thread.start()

    def _note_sni(self, _sslobj, server_name, _ctx) -> None:
        self._sni = server_name

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                raw, peer = self._listener.accept()
            except TimeoutError:
                continue
            info = ServerSide(peer[1])
            try:
                raw.settimeout(TIMEOUT_S)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                clear = Clear(raw)
                self.protocol.server_clear(clear)
                info.clear_in, info.clear_out = clear.received, clear.sent
                self._sni = None
                with self.ctx.wrap_socket(raw, server_side=True) as t:
                    info.version, info.cipher, info.alpn, info.sni = t.version(), t.cipher()[0], t.selected_alpn_protocol(), self._sni
                    self.protocol.server_app(t)
            except Exception as exc:  # reported with the connection, asserted by the runner
                info.error = f"{type(exc).__name__}: {exc}"
                raw.close()
            self.conns.put(info)

    def next_conn(self) -> ServerSide:
        return self.conns.get(timeout=TIMEOUT_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT_S)
        self._listener.close()


# --- running variants, capturing them, and the answer key -------------------------------


def run_variants(variants: Iterable[Variant], servers: dict[str, ScriptedServer]) -> list[Run]:
    """Each variant once, in order, against its protocol's server; both ends must agree."""
    runs = []
    for v in variants:
        server = servers[v.protocol]
        client = PROTOCOLS[v.protocol].client(server.port, client_context(v), v.pipelined)
        seen = server.next_conn()
        assert seen.error is None, f"{v}: server: {seen.error}"
        assert (client.port, client.version, client.cipher, client.alpn, v.sni) == (
            seen.client_port, seen.version, seen.cipher, seen.alpn, seen.sni), (v, client, seen)  # fmt: skip
        assert v.tls == client.version, (v, client)
        runs.append(Run(v, server.port, client, seen))
    return runs


def capture_variants(variants: Sequence[Variant], pcap: Path, workdir: Path) -> list[Run]:
    """Every variant under one tcpdump on lo (filter: the servers' ports); the
    capture must be complete (nothing dropped, both FINs of every connection)."""
    cert, key = make_certificate(workdir)
    servers = {name: ScriptedServer(PROTOCOLS[name], cert, key) for name in dict.fromkeys(v.protocol for v in variants)}
    try:
        capture = TcpdumpCapture(pcap, " or ".join(f"tcp port {s.port}" for s in servers.values())).start()
        try:
            runs = run_variants(variants, servers)
            time.sleep(CAPTURE_SETTLE_S)
        finally:
            counters = capture.stop()
    finally:
        for s in servers.values():
            s.stop()
    assert 0 == counters.get("dropped", 0), capture.stderr_text()
    ends = {(r.client.port, r.server_port) for r in runs}
    assert set() == (ends | {(b, a) for a, b in ends}) - capture.fin_pairs(), "the capture lacks the end of some connection"
    return runs


def rfc3339(ts: float) -> str:
    """The record's ``ts`` form, from a pcap timestamp (microsecond resolution: exact after rounding)."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tcp_flags(pcap: Path, client_ports: set[int]) -> dict[int, set[str]]:
    """Client port -> {"fin", "rst"} flags seen on that connection, either way."""
    seen: dict[int, set[str]] = {p: set() for p in client_ports}
    with open(pcap, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            tcp = dpkt.ethernet.Ethernet(buf).data.data
            if not isinstance(tcp, dpkt.tcp.TCP):
                continue
            for port in (tcp.sport, tcp.dport):
                if port in seen:
                    if tcp.flags & dpkt.tcp.TH_FIN:
                        seen[port].add("fin")
                    if tcp.flags & dpkt.tcp.TH_RST:
                        seen[port].add("rst")
    return seen


def ground_truth(pcap: Path, runs: Sequence[Run]) -> list[dict]:
    """One answer-key row per connection, in the order they ran.

    ``tls`` holds what the connection's ``kind:"tls"`` record must say, from
    the ends' own knowledge: the protocol spoken before the hello, the version
    and cipher both ends report (the OpenSSL cipher name turned into its IANA
    name by ``openssl ciphers -stdname``), the SNI the server received, the
    ALPN list offered and the protocol both ends selected (``null`` in TLS 1.3,
    where the record cannot see it), and ``established``.  The client's hello
    starts at stream offset ``clear_in`` (the cleartext bytes the server read
    before it handed the socket to ``ssl``), the server's first TLS byte at
    ``clear_out``; ``ts``, ``client_bytes`` and ``server_bytes`` are read from
    the capture at those offsets (dpkt, tests/tlscraft.py).  ``ends`` keeps the
    raw knowledge of both ends; ``http`` the CONNECT transaction's record
    fields for the tunnel.
    """
    iana = openssl_iana_names()
    conns = tlscraft.connections(pcap, {r.server_port for r in runs})
    flags = tcp_flags(pcap, {r.client.port for r in runs})
    rows = []
    for r in runs:
        conn = conns[r.client.port]
        cstream, sstream = conn.stream(True), conn.stream(False)
        assert cstream[r.server.clear_in] == 0x16 and sstream[r.server.clear_out] == 0x16, f"{r.variant}: no TLS record where the ends say the handshake began"
        offset, hello_seg = 0, None
        for from_client, data, ts in conn.segments:
            if from_client:
                if offset <= r.server.clear_in < offset + len(data):
                    hello_seg = (ts, r.server.clear_in > offset)
                    break
                offset += len(data)
        assert hello_seg is not None
        hello_ts, with_cleartext = hello_seg
        assert with_cleartext == r.variant.pipelined, f"{r.variant}: the hello's segment {'does not carry' if r.variant.pipelined else 'carries'} cleartext"
        assert "fin" in flags[r.client.port] and "rst" not in flags[r.client.port], f"{r.variant}: not closed by FINs alone: {flags[r.client.port]}"
        row = {
            "protocol": r.variant.protocol,
            "client": {"ip": HOST, "port": r.client.port},
            "server": {"ip": HOST, "port": r.server_port},
            "ts": rfc3339(hello_ts),
            "end_reason": "fin",
            "tls": {
                "starttls": r.variant.protocol,
                "version": r.client.version,
                "negotiated": True,
                "cipher": iana.get(r.client.cipher, r.client.cipher),
                "sni": r.server.sni,
                "alpn_offered": list(r.variant.alpn),
                "alpn": r.client.alpn if r.client.version != V13 else None,
                "established": True,
                "client_bytes": len(cstream) - r.server.clear_in,
                "server_bytes": len(sstream) - r.server.clear_out,
            },
            "ends": {
                "variant": asdict(r.variant),
                "client": asdict(r.client),
                "server": asdict(r.server),
                "hello_in_segment_with_cleartext": with_cleartext,
            },
            "http": None,
        }
        if r.variant.protocol == "http":
            row["http"] = {"method": "CONNECT", "uri": HttpConnect.TARGET.decode(), "host": HttpConnect.TARGET.decode(),
                           "status": 200, "ts": rfc3339(conn.segments[0][2])}  # fmt: skip
            assert conn.segments[0][0] and conn.segments[0][1] == HttpConnect.CONNECT
        rows.append(row)
    return rows


# --- the variants the fixture and the live test run ------------------------------------

# captures/tls/starttls.pcap: every protocol once; TLS 1.2 and 1.3, SNI and ALPN on and off
# spread over them; MySQL's hello in the same write as its SSLRequest.
FIXTURE_VARIANTS = [
    Variant("smtp", V13, sni="mail.test"),
    Variant("imap", V12, sni="imap.test", alpn=("imap",)),
    Variant("pop3", V12),
    Variant("ftp", V13, sni="ftp.test", alpn=("ftp",)),
    Variant("xmpp", V12, sni="xmpp.test", alpn=("xmpp-client",)),
    Variant("ldap", V13),
    Variant("irc", V13, sni="irc.test", alpn=("irc",)),
    Variant("postgresql", V13, sni="db.test", alpn=("postgresql",)),
    Variant("mysql", V12, sni="mysql.test", pipelined=True),
    Variant("rdp", V12),
    Variant("http", V13, sni="tunnel.test", alpn=("h2", "http/1.1")),
]

# The live test: the other TLS version for each protocol, SNI/ALPN mostly the
# other way round, MySQL's hello in a write of its own.
LIVE_VARIANTS = [
    Variant("smtp", V12),
    Variant("imap", V13, sni="imap.test", alpn=("imap",)),
    Variant("pop3", V13, sni="pop.test", alpn=("pop3",)),
    Variant("ftp", V12),
    Variant("xmpp", V13, alpn=("xmpp-client",)),
    Variant("ldap", V12, sni="ldap.test"),
    Variant("irc", V12, sni="irc.test"),
    Variant("postgresql", V12, alpn=("postgresql",)),
    Variant("mysql", V13, sni="mysql.test"),
    Variant("rdp", V13, sni="rdp.test"),
    Variant("http", V12, sni="tunnel.test", alpn=("http/1.1",)),
]


# --- reading sniffd's records against the key (the pcap and the live tests) -------------

# A field the record lacks (sniffd without STARTTLS support writes no "starttls").
MISSING = "<missing>"


def tls_view(record: dict, fields: Iterable[str]) -> dict:
    """The compared part of a ``kind:"tls"`` record: its ends, ``ts``, ``end_reason``,
    ``anomalies`` and the key's ``tls`` fields."""
    return {
        "client": record["client"],
        "server": record["server"],
        "ts": record["ts"],
        "end_reason": record["end_reason"],
        "anomalies": record["anomalies"],
        "tls": {k: record["tls"].get(k, MISSING) for k in fields},
    }


def expected_tls_view(row: dict) -> dict:
    """``tls_view`` of the record a key row asks for: a clean one (no anomaly)."""
    return {"client": row["client"], "server": row["server"], "ts": row["ts"], "end_reason": row["end_reason"], "anomalies": [], "tls": row["tls"]}


def http_view(record: dict) -> dict:
    req, resp = record.get("request") or {}, record.get("response") or {}
    return {"client": record["client"], "server": record["server"], "ts": record["ts"], "method": req.get("method"),
            "uri": req.get("uri"), "host": req.get("host"), "status": resp.get("status"), "anomalies": record["anomalies"]}  # fmt: skip


def expected_connect_view(row: dict) -> dict:
    """``http_view`` of the CONNECT transaction's record, as sniffd writes it before
    issue 12's STARTTLS work: README "CONNECT tunnels": a tunnel that does not
    carry plain HTTP (here a ClientHello) gets ``http_upgrade``."""
    return {"client": row["client"], "server": row["server"], **row["http"], "anomalies": ["http_upgrade"]}


def records_by_connection(records: Iterable[dict]) -> dict[tuple[int, int], list[dict]]:
    """(client port, server port) -> that connection's records, in output order."""
    out: dict[tuple[int, int], list[dict]] = {}
    for rec in records:
        out.setdefault((rec["client"]["port"], rec["server"]["port"]), []).append(rec)
    return out
