"""TLS that does not start the connection: STARTTLS, CONNECT tunnels, upgrades.

``TlsWatch`` is the flow table's session for a connection that is not HTTP
(or no longer is): a protocol whose server speaks first (SMTP, IMAP, POP3,
FTP, MySQL), a client whose first bytes are another protocol's (PostgreSQL,
RDP, LDAP, XMPP, IRC), or an HTTP connection the HTTP session gave up (a
CONNECT tunnel, a 101 switch, a stream that stopped looking like HTTP:
``sniffd.http.session.Handover``).  It answers the calls the flow table
makes of every session (those of ``sniffd.http.HttpSession``) and watches
the client's stream for a TLS ClientHello; from the hello on, a
``sniffd.tls.TlsFlow`` takes the connection, and its one ``kind: "tls"``
record says in ``tls.starttls`` which cleartext protocol came before
(``protocol_name``).  Pure state, like the sessions: fed values and times,
it returns values.

Where a hello may begin (the README, "TLS after a cleartext start"): at
the start of a client segment (a client sends its hello in a write of its
own, after the server's go-ahead: ``220 Ready``, ``+OK``, ``S``, a CONNECT's
``200``), or within a segment right after an upgrade command line
(``STARTTLS``, ``STLS``, ``AUTH TLS``, XMPP's ``<starttls/>``) or a MySQL
SSLRequest packet (a MySQL client sends its hello without waiting for an
answer).  A hello is never looked for in the middle of other data: bytes
that happen to look like one inside a mail body or a query are data.  The
client's first ``SCAN_BYTES`` are watched; after them, and for a connection
that turned out not to carry TLS, the bytes are only counted.

Nothing before the hello is parsed beyond its first ``HEAD_BYTES`` each way
(what ``protocol_name`` reads); anomalies noted on the cleartext part are
counted by the flow table, not put on the TLS record (they did not touch it).
"""

from __future__ import annotations

import re

from sniffd.budget import Meter
from sniffd.tls.detect import looks_like_tls_client_hello
from sniffd.tls.flow import TlsFlow

# How far into the client's stream a hello is looked for.  STARTTLS comes
# in the first exchanges of every protocol that has it (RFC 3207 section 4:
# after EHLO; RFC 2595: before LOGIN); 64 KiB covers a long EHLO/CAPABILITY
# dialogue and a CONNECT's headers many times over, and bounds what a
# connection that never switches costs (one check per segment, then nothing).
SCAN_BYTES = 64 * 1024

# The cleartext kept from the start of each direction, to name the protocol.
HEAD_BYTES = 256

# A hello's first bytes that fail to decide (looks_like_tls_client_hello gives
# None: fewer than 11 bytes, or a hello cut into tiny records) are kept until
# this many; more than that and it was not a hello.
PENDING_BYTES = 64

# Client bytes kept after a loss, until the server's next segment says
# whether the loss held the hello's start (``TlsWatch._server``): the rest of
# a hello (a post-quantum one is ~1.8 KB, the largest real ones a few KB).
# Charged to the memory budget while held.
AFTER_GAP_BYTES = 16 * 1024

# An upgrade command line after which the client's next byte may be its
# hello in the same segment (a client that does not wait for the answer):
# SMTP/IMAP/IRC STARTTLS (RFC 3207, RFC 3501 section 6.2.1, IRCv3), POP3
# STLS (RFC 2595 section 4), FTP AUTH TLS/SSL (RFC 4217 section 4), XMPP
# <starttls/> (RFC 6120 section 5.4.2.1).
# Anchored at line starts, with an optional tag (IMAP's) that has no space:
# linear in the segment (an unanchored "[^\r\n]* " before the command made a
# 64 KiB line cost 24 s: tests/unit/test_tls_starttls.py).
_UPGRADE_LINE = re.compile(rb"^(?:[^\r\n ]+ )?(?:STARTTLS|STLS|AUTH +(?:TLS|SSL|TLS-C|TLS-P))[ \t]*\r?\n"
                           rb"|<starttls[^>]{0,256}/>", re.IGNORECASE | re.MULTILINE)

# PostgreSQL SSLRequest (and GSSENCRequest): length 8, code 80877103 (80877104),
# protocol "Message Formats".
_PG_SSL_REQUEST = (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", b"\x00\x00\x00\x08\x04\xd2\x16\x30")

# MySQL: the server's Initial Handshake packet (protocol version 10), and the
# client's SSLRequest: a 32-byte packet, sequence 1, capability CLIENT_SSL.
_MYSQL_CLIENT_SSL = 0x0800


def _mysql_ssl_request(data: bytes) -> int:
    """The length of a MySQL SSLRequest packet at the start of ``data``, else 0."""
    if len(data) >= 8 and data[0] == 32 and data[1] == 0 and data[2] == 0 and data[3] == 1 \
            and data[4] | (data[5] << 8) & _MYSQL_CLIENT_SSL:
        return 36
    return 0


def protocol_name(client: bytes, server: bytes) -> str:
    """The cleartext protocol spoken before TLS, from the first bytes each way:
    ``"smtp"``, ``"imap"``, ``"pop3"``, ``"ftp"``, ``"xmpp"``, ``"ldap"``,
    ``"irc"``, ``"postgresql"``, ``"mysql"``, ``"rdp"``, or ``"unknown"``."""
    if client.startswith(_PG_SSL_REQUEST):
        return "postgresql"
    if client[:2] == b"\x03\x00" and len(client) >= 6 and client[5] == 0xE0:
        return "rdp"  # TPKT (RFC 1006) carrying an X.224 Connection Request (MS-RDPBCGR 2.2.1.1)
    if client[:1] == b"\x30" and b"1.3.6.1.4.1.1466.20037" in client:
        return "ldap"  # an LDAPMessage carrying the StartTLS extended request (RFC 4511 section 4.14.1)
    if len(server) >= 5 and server[3] == 0 and server[4] == 10 and (server[0] | server[1] << 8 | server[2] << 16) + 4 <= 4096:
        return "mysql"  # Initial Handshake, protocol version 10
    c, s = client.upper(), server.upper()
    if b"<STREAM:STREAM" in c or b"<STARTTLS" in c or c.startswith(b"<?XML"):
        return "xmpp"
    if re.search(rb"(?:^|\n)AUTH +(?:TLS|SSL)", c):
        return "ftp"
    if re.search(rb"(?:^|\n)STLS\b", c) or s.startswith(b"+OK"):
        return "pop3"
    if s.startswith(b"* OK") or s.startswith(b"* PREAUTH") or re.search(rb"(?:^|\n)[^ \r\n]+ STARTTLS\b", c):
        return "imap"
    if s.startswith(b"220") or re.search(rb"(?:^|\n)(?:EHLO|HELO) ", c):
        return "smtp"
    if re.search(rb"(?:^|\n)(?:CAP LS|NICK |USER |PASS )", c) or s.startswith(b":") or b" 670 " in s:
        return "irc"
    return "unknown"


def looks_like_other_protocol(data: bytes, from_client: bool) -> bool:
    """Do a connection's first delivered bytes say it is not HTTP?  The server
    speaking first (HTTP servers answer; SMTP, IMAP, POP3, FTP and MySQL
    greet), unless with a status line (a response whose request was lost);
    or a client opening with another protocol's first message: PostgreSQL's
    SSLRequest, an RDP connection request, an LDAP message (BER), XMPP
    (``<``), IRC registration.  The caller asks only at the start of a
    connection whose start was seen (not a mid-stream pickup)."""
    if not data:
        return False
    if not from_client:
        return not data[:5].upper().startswith(b"HTTP/"[:len(data[:5])])
    first = data[0]
    if first == 0x00:
        return data.startswith(_PG_SSL_REQUEST)
    if first == 0x03:
        return data[1:2] == b"\x00" and len(data) >= 6 and data[5] == 0xE0
    if first == 0x3C:  # "<": XMPP's stream header (RFC 6120 section 4.2)
        return True
    if first == 0x30 and len(data) >= 3:
        # LDAPMessage ::= SEQUENCE { messageID INTEGER, ... } (RFC 4511
        # section 4.1.1), BER: 0x30, a length, then the INTEGER tag 0x02.
        at = 2 if data[1] < 0x80 else 2 + (data[1] & 0x7F)
        return at < len(data) and data[at] == 0x02
    return data.startswith((b"CAP LS", b"NICK ", b"USER ", b"PASS ")) and b"HTTP/" not in data[:256]


class TlsWatch:
    """The flow table's session for a connection that is not HTTP; see the module docstring."""

    __slots__ = ("meter", "pairing", "loose", "protocol", "heads", "tls", "scanned", "pending", "pending_ts",
                 "sticky", "given_up", "count_non_http", "turn", "upgrade", "lost", "after_gap", "held", "gap_names", "cleartext")

    # Never hands the connection over (sniffd.handover; the flow table asks every session).
    successor = None

    def __init__(self, meter: Meter | None = None, protocol: str | None = None, sticky=(),
                 count_non_http: bool = True, cleartext: bool = False) -> None:
        self.meter = meter if meter is not None else Meter()
        self.tls: TlsFlow | None = None
        self.pairing = _Done()  # shared with the TlsFlow once there is one
        self.loose: list[str] = []
        # The protocol when the one who made the watch knows it ("http": a
        # CONNECT tunnel, a 101 switch); else named from the heads at the hello.
        self.protocol = protocol
        self.heads = [b"", b""]  # [client, server]: first HEAD_BYTES of cleartext
        self.scanned = 0  # client bytes looked at
        self.pending = b""  # a hello's first bytes, too few to decide
        self.pending_ts = 0.0
        self.sticky = frozenset(sticky)  # anomalies every record of the connection carries
        self.given_up = False  # SCAN_BYTES passed with no hello
        # Bytes came before this watch began (an HTTP session read them).
        self.cleartext = cleartext
        # Count the connection non_http at its end when no TLS came.
        self.count_non_http = count_non_http
        # The server sent bytes since the client's last segment (it answered:
        # the client's next segment may be its hello); the client's last
        # segment ended with an upgrade command or a MySQL SSLRequest.
        self.turn = True
        self.upgrade = False
        # Client bytes lost since the server last spoke, the client bytes that
        # came after them ((bytes, ts), at most SCAN_BYTES) and the anomalies
        # noted on them: if the server's next segment is a ServerHello, the
        # lost bytes held the hello's start (see ``_server``).
        self.lost = 0
        self.after_gap: list[tuple[bytes, float]] = []
        self.held = 0  # bytes in after_gap, charged to the meter
        self.gap_names: set[str] = set()

    # --- what the flow table calls -----------------------------------------------

    @property
    def open_transactions(self) -> int:
        return self.tls.open_transactions if self.tls is not None else 0

    @property
    def written(self) -> bool:
        """No record will come from ``tick``: the TLS record was written, or
        no TLS will be looked for (the flow table stops ticking it)."""
        return self.tls.written if self.tls is not None else self.given_up

    def feed(self, from_client: bool, chunks, now: float, ack: int | None = None) -> None:
        for c in chunks:
            cls = c.__class__
            if cls is int:
                self.gap(from_client, c)
            elif cls is tuple:
                self.feed_data(from_client, c[0], c[1])
            else:
                self.feed_data(from_client, c, now)

    def feed_data(self, from_client: bool, data: bytes, now: float, ack: int | None = None) -> None:
        t = self.tls
        if t is not None:
            t.feed_data(from_client, data, now)
            return
        if not from_client:
            self._server(data, now)
            return
        if self.given_up or not data:
            return
        if self.lost and self.held + len(data) <= AFTER_GAP_BYTES:
            self.after_gap.append((data, now))
            self.held += len(data)
            self.meter.add(len(data))
        if self.pending:
            data = self.pending + data
            now = self.pending_ts
            self.pending = b""
            self.turn = True  # the pending start is looked at again
        else:
            self._head(0, data)
        self.scanned += len(data)
        at = self._find(data, now)
        if at is not None:
            self._start(data[at:], now)
        elif self.scanned >= SCAN_BYTES:
            self.given_up = True

    def gap(self, from_client: bool, nbytes: int) -> None:
        t = self.tls
        if t is not None:
            t.feed(from_client, (nbytes,), t.last_ts or 0.0)
        elif from_client:
            self.pending = b""
            self.upgrade = False
            self.turn = False  # what follows a loss is not known to start anything
            self.scanned += nbytes
            self.lost += nbytes
            self._drop_after_gap()

    def note(self, from_client: bool, names) -> None:
        if self.tls is not None:
            self.tls.note(from_client, names)
        elif from_client and "tcp_gap" in names:
            self.gap_names.update(names)

    def note_at(self, from_client: bool, offset: int, names) -> None:
        if self.tls is not None:
            self.tls.note_at(from_client, offset, names)

    def end(self, from_client: bool, now: float, why: str = "fin") -> None:
        """One direction ended (FIN)."""

    def close(self, reason: str | None, now: float, why: str = "end_of_input") -> None:
        self._drop_after_gap()
        if self.tls is not None:
            self.tls.close(reason, now, why)
        elif self.count_non_http:
            self.count_non_http = False
            self.loose.append("non_http")  # neither HTTP nor TLS: counted, no record
        self.given_up = True

    def tick(self, now: float) -> None:
        if self.tls is not None:
            self.tls.tick(now)

    def take(self) -> list:
        done = self.pairing.done
        if done:
            self.pairing.done = []
        return done

    # --- internals ----------------------------------------------------------------

    def _head(self, side: int, data: bytes) -> None:
        h = self.heads[side]
        if len(h) < HEAD_BYTES:
            self.heads[side] = h + data[:HEAD_BYTES - len(h)]

    def _server(self, data: bytes, now: float) -> None:
        """Server bytes before TLS: the client may speak next.  A ServerHello
        at the start of a segment after client bytes were lost: the lost
        bytes held the client's hello (its start at least), so TLS begins
        there, flagged by the loss (the hello's fields stay unknown)."""
        self._head(1, data)
        if self.lost and len(data) >= 6 and data[0] == 22 and data[1] == 3 and data[5] == 2:
            t = self._begin(self.after_gap[0][1] if self.after_gap else now, self.gap_names)
            t.feed(True, (self.lost,), now)
            for d, ts in self.after_gap:
                t.feed_data(True, d, ts)
            t.feed_data(False, data, now)
            self._drop_after_gap()
            return
        self.turn = True
        self.lost = 0
        self._drop_after_gap()
        self.gap_names = set()

    def _drop_after_gap(self) -> None:
        if self.held:
            self.meter.http_bytes -= self.held
            self.held = 0
        self.after_gap = []

    def _find(self, data: bytes, now: float) -> int | None:
        """Where in this client segment a hello begins (see the module
        docstring), or None; a start too short to decide is kept pending."""
        starts = [0] if self.turn or self.upgrade else []
        self.turn = False
        n = _mysql_ssl_request(data)
        if n:
            starts.append(n)
        starts += [m.end() for m in _UPGRADE_LINE.finditer(data)]
        self.upgrade = bool(starts) and starts[-1] == len(data) and starts[-1] > 0
        for at in starts:
            if at >= len(data) or data[at] != 0x16:
                continue
            verdict = looks_like_tls_client_hello(data[at:at + PENDING_BYTES * 2])
            if verdict:
                return at
            if verdict is None and len(data) - at < PENDING_BYTES:
                self.pending = data[at:]
                self.pending_ts = now
                self.scanned -= len(self.pending)  # looked at again with what follows
                return None
        return None

    def _start(self, data: bytes, now: float) -> None:
        self._begin(now, (), whole=len(data) == self.scanned).feed_data(True, data, now)

    def _begin(self, now: float, names, whole: bool = False) -> TlsFlow:
        """``whole``: the hello is the client's first byte; with no server
        byte before it either, nothing came before TLS (``starttls`` null)."""
        if whole and not self.cleartext and self.protocol is None and not self.heads[1]:
            proto = None
        else:
            proto = self.protocol or protocol_name(self.heads[0], self.heads[1])
        t = self.tls = TlsFlow(self.meter, self.sticky.union(names), starttls=proto)
        t.pairing = self.pairing
        return t


class _Done:
    """``pairing.done``: where the flow table looks for finished records."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done: list = []
