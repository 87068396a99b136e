"""Flow table (stateful, sans-I/O): TCP segments in, finished transactions out.

All per-connection state lives in one ``Connection``: two ``HalfStream``s,
the causal-order hold and the session: an ``HttpSession``, a
``sniffd.tls.TlsFlow`` when the client's stream begins with a TLS ClientHello,
or a ``sniffd.http2.H2Flow`` when it begins with the HTTP/2 preface, on any
port (``FlowTable._choose``; all take the same calls, so no rule here is
written twice).  A session may hand the connection over to another
(``sniffd.handover``: HTTP/1 to HTTP/2 after ``Upgrade: h2c``; a preface
that was not one back to HTTP/1): the table checks ``successor`` where it
looks for finished transactions after each call (the session put
``sniffd.handover.SWITCH`` there) and makes the successor
(``FlowTable._succeed``).  One
thread owns the table; nothing here locks.

Call order: ``feed(segment, now)`` per decoded segment, ``expire(now)`` as
time advances (at least once a second of packet time), ``close_all(reason,
now)`` at the end; ``note_flow(...)`` for what an earlier stage saw about a
connection (an IP fragment overlap).  Each returns ``[(connection,
transaction), ...]`` (a ``sniffd.tls.TlsRecord`` in place of the transaction
for a TLS connection) for the records stage, plus anomalies counted in
``self.counts``.

What a receiving stack would accept decides, never the first packet alone
(RFC 9293, RFC 5961):

* **The first moments.**  A direction whose initial sequence number is not
  known yet (no SYN or SYN-ACK seen for it) keeps its segments aside while
  the connection is young (``BIRTH_PACKETS``, ``BIRTH_BYTES``,
  ``BIRTH_S``): a SYN that the capture put after the first data still sets
  the base, and the roles.  When the wait ends without one, each direction
  starts at the lowest sequence number seen for it (or the lowest the peer
  acknowledged), and only then is the connection mid-stream.  A SYN-ACK
  alone gives both bases (its ack is the client's ISN + 1).  An RST
  answering a SYN that nothing followed is judged at once, by its ACK, as
  the SYN's sender judges it (a refused connection ends there).
* **Control segments.**  An RST ends the connection only when its sequence
  number lies where the receiver would accept it (between what was
  delivered and what the sender was seen to send or the receiver
  acknowledged, at most ``FIN_WINDOW`` past what it sent;
  ``tcp_rst_ignored`` otherwise); data after an accepted RST
  is logged, flagged ``tcp_data_after_rst``.  A SYN with another ISN on an
  open connection is ignored (``tcp_syn_ignored``) unless the server answers
  it with a SYN-ACK (then the old connection was gone: ``reused``).  A FIN
  outside the window does not end a direction (``tcp_fin_ignored``).  Data
  in a SYN counts only when the SYN-ACK acknowledges it (TCP Fast Open);
  otherwise it is dropped as Linux drops it (``tcp_syn_data``).
* **Decoys** are flagged on the record whose bytes they touch: overlapping
  copies that disagree (``tcp_overlap_conflict``), a hop limit far from the
  direction's (``ip_ttl_changed``), urgent data (``tcp_urgent_data``), a
  bad checksum (``tcp_bad_checksum``; with ``verify_checksums = "auto"`` a
  direction is checked only once two of its packets in a row showed valid
  checksums, and never a segment larger than a full one, so captures from
  hosts that offload checksums or merge segments (GRO/TSO) stay whole).
* **Causal order** between the directions: ``sniffd.causal``.

The HTTP stage gets, with every chunk, the acknowledgement its segment
carried as an offset into the other direction's stream: the pairing reads
them where bytes were lost (see ``sniffd.http.pairing``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from sniffd import causal
from sniffd.budget import CONN_COST, SEGMENT_COST, SESSION_COST, Meter
from sniffd.causal import CausalHold
from sniffd.decode import TH_ACK, TH_FIN, TH_RST, TH_SYN, Segment, ctx_key, ctx_reversed
from sniffd.http import HttpSession, Transaction
from sniffd.http2 import looks_like_h2_preface, looks_like_h2_server_preface
from sniffd.reassembly import FIN_WINDOW, MASK32, HalfStream
from sniffd.settings import Settings
from sniffd.tls import TlsFlow, looks_like_sslv2_client_hello, looks_like_tls_client_hello
from sniffd.tls.starttls import TlsWatch, looks_like_other_protocol

if TYPE_CHECKING:  # annotations only: the stage is loaded by the first HTTP/2 connection
    from sniffd.http2.flow import H2Flow

TH_URG = 0x20

# A closed connection stays in the table this long to absorb the last ACK
# and retransmitted FINs (they come within a few RTOs), so they do not look
# like a new mid-stream connection.
CLOSED_LINGER_S = 10.0
# How long a young connection keeps the segments of a direction whose ISN is
# not known yet, waiting for a SYN the capture put late.  Captures reorder a
# handful of packets at most (a tap merging two links, a multi-queue NIC):
# 16 packets or 64 KiB of a connection, or one second of packet time, is far
# more than that and short enough that a connection really picked up
# mid-stream is logged at once.
BIRTH_PACKETS = 16
BIRTH_BYTES = 64 * 1024
BIRTH_S = 1.0
# A data segment whose hop limit is this far from the one its direction's
# data started with is flagged (ip_ttl_changed): routes change a TTL by a
# hop or two; a decoy sent to expire before the server (TTL 1 or 2)
# differs by dozens.
TTL_SLACK = 8
# verify_checksums = "auto": valid checksums in a row that make a direction
# checked, and the payload of a full segment on an Ethernet path (a GRO or
# TSO super-segment on the capture host is larger).
CSUM_RUN = 2
FULL_SEGMENT = 1460
_NOTHING: tuple = ()

# Ports that are a server's, for guessing roles of a connection picked up
# mid-stream (no SYN seen).
HTTP_PORTS = frozenset((80, 8000, 8008, 8080, 8081, 8088, 8888, 3128, 443, 8443))


class Connection:
    __slots__ = (
        "client", "server", "c2s", "s2c", "last_seen", "touched", "closed", "hold", "keys", "cid",
        "client_rec", "server_rec", "rst", "syn_isn", "server_isn", "releasing", "_http", "_settings", "midstream",
        "meter", "bodies", "accounted", "began", "_order", "ctx", "encap_rec", "early", "early_bytes",
        "born_packets", "new_syn", "doubt", "syn_data", "after_rst", "chosen", "uid",
    )

    def __init__(self, client: tuple[bytes, int], server: tuple[bytes, int], s: Settings, midstream: bool, now: float,
                 meter: Meter, bodies=None) -> None:
        self.client = client
        self.server = server
        self.c2s = HalfStream(s.gap_timeout_s, s.max_conn_buffer_bytes)
        self.s2c = HalfStream(s.gap_timeout_s, s.max_conn_buffer_bytes)
        # The session is made when the first payload byte is delivered (its
        # protocol chosen from those bytes, FlowTable._choose): a SYN
        # flood's half-open connections cost about a quarter of a
        # connection that carries data.
        self._http: HttpSession | TlsFlow | H2Flow | None = None
        # Whether the session's protocol was chosen from the first payload
        # (FlowTable._choose); a session made before that (a note on a
        # connection that carried nothing yet) is HTTP until then.
        self.chosen = False
        self._settings = s
        self.midstream = midstream
        self.meter = meter
        self.bodies = bodies
        self.accounted = 0  # this connection's share of FlowTable.buffered
        self.last_seen = now
        self.touched = now
        self.began = now
        self._order: tuple | None = None
        self.closed = False
        self.rst = False  # an accepted RST closed it
        self.after_rst = False  # it carries data sent after an accepted RST
        # Segments held for causal order (sniffd.causal), None while none is.
        self.hold: CausalHold | None = None
        self.keys: tuple = ()
        self.cid: str | None = None
        # The connection's uid (records.Uids), set by the pipeline with its
        # first record; kept by the connection that goes on after an RST.
        self.uid: str | None = None
        self.client_rec: dict | None = None
        self.server_rec: dict | None = None
        self.syn_isn: int | None = None
        self.server_isn: int | None = None
        self.releasing = False
        # The encapsulation (decode.Segment.ctx) as the client's packets
        # carry it, and its record fields (set by the pipeline).
        self.ctx: tuple | None = None
        self.encap_rec: dict | None = None
        # While young: segments kept aside for a direction whose ISN is not
        # known yet, in arrival order ((from_client, segment fields)); None
        # once the connection is settled.  An empty tuple until the first
        # (most connections settle on their SYN-ACK with none).
        self.early: list | tuple | None = ()
        self.early_bytes = 0
        self.born_packets = 0
        # A SYN with another ISN while the connection is open: (isn, time).
        self.new_syn: tuple[int, float] | None = None
        # Whether that SYN was ignored is not decided yet: True until the
        # next segment (unless it is the SYN-ACK that takes it); after such
        # a SYN-ACK, (its ISN,) until a segment shows which incarnation
        # goes on.  Segments take the general path meanwhile.
        self.doubt: bool | tuple[int] | None = None
        # The payload of the client's SYN, until the SYN-ACK says whether
        # the server took it (TCP Fast Open): (payload, time).
        self.syn_data: tuple[bytes, float] | None = None

    @property
    def order(self) -> tuple:
        """Where this connection stands among those that began: when it
        began, then its endpoints, then its encapsulation.  The same in
        every process reading the same capture; records finished together
        are written in this order."""
        order = self._order
        if order is None:
            (cip, cport), (sip, sport) = self.client, self.server
            order = self._order = (round(self.began * 1_000_000), int.from_bytes(cip, "big"), cport,
                                   int.from_bytes(sip, "big"), sport, "" if self.ctx is None else repr(self.ctx))
        return order

    @property
    def http(self) -> HttpSession | TlsFlow | H2Flow:
        """The session, made (HTTP/1) if there is none yet."""
        h = self._http
        if h is None:
            h = self._http = self.new_http()
            self.meter.open_session()
        return h

    def new_http(self) -> HttpSession:
        """An HTTP/1 session for this connection (not counted in the meter's
        sessions: the caller does, or it replaces one that was)."""
        s = self._settings
        h = HttpSession(s.max_pending_requests, s.max_header_bytes, s.max_header_count,
                        self.midstream or self.after_rst, s.max_uri_bytes, self.meter, self.bodies)
        if self.after_rst:
            # Parsing resumes at the next start line, but this is no
            # pickup: every record says what it is instead.
            h.pairing.midstream = False
            h.sticky = h.sticky | {"tcp_data_after_rst"}
        return h

    @property
    def open_transactions(self) -> bool:
        h = self._http
        return h is not None and h.open_transactions > 0

    @property
    def buffered(self) -> int:
        """Bytes held for reassembly, with each segment's object overhead."""
        c2s, s2c, hold = self.c2s, self.s2c, self.hold
        n = (len(c2s.pending) + len(s2c.pending)) * SEGMENT_COST + c2s.pending_bytes + s2c.pending_bytes
        if c2s.aside or s2c.aside:
            n += c2s.aside_bytes + s2c.aside_bytes + (len(c2s.aside) + len(s2c.aside)) * SEGMENT_COST
        if hold is not None:
            n += hold.cost
        if self.early:
            n += self.early_bytes + len(self.early) * SEGMENT_COST
        return n

    @property
    def waiting(self) -> bool:
        return bool(self.c2s.pending or self.s2c.pending or self.hold is not None or self.early
                    or self.c2s.aside or self.s2c.aside)


class FlowTable:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.verify = settings.verify_checksums  # "auto", "on" or "off"
        self.conns: dict[tuple, tuple[Connection, bool]] = {}
        self.lru: OrderedDict[Connection, None] = OrderedDict()  # open, least recent first
        self.closing: OrderedDict[Connection, float] = OrderedDict()  # closed, lingering
        self.waiting: set[Connection] = set()
        self.young: set[Connection] = set()  # connections not settled yet
        self.buffered = 0
        self.counts: dict[str, int] = {}
        self.out: list[tuple[Connection, Transaction]] = []
        # TLS connections whose record is not written yet (expire() gives
        # them their early record: sniffd.tls.flow).
        self.tls_open: set[Connection] = set()
        self.meter = Meter()
        self.budget = int(settings.memory_budget_mb * 1024 * 1024)
        # Until the first estimate, HTTP state alone may not pass the budget.
        self.meter.limit = self.budget
        # sniffd.bodies.BodyCapture when bodies are captured (set by Pipeline).
        self.bodies = None
        # Memory held outside the table that the budget covers too (the IP
        # defragmenter): a callable giving its bytes, and one that drops it.
        self.external_bytes = lambda: 0
        self.shed_external = lambda: 0
        # A list the table appends every connection it forgets to, for
        # whoever keeps something per connection beside it (the pipeline's
        # flow pcaps, sniffd.flowpcap); None: nobody does.
        self.gone: list | None = None

    def __len__(self) -> int:
        return len(self.lru)

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def _choose(self, conn: Connection, from_client: bool, data) -> HttpSession | TlsFlow | H2Flow:
        """The session for ``conn``, chosen from its first payload bytes
        (``data``, which the caller is about to deliver): a TLS session when
        the client's stream begins with a ClientHello (TLS records or the
        SSL 2.0 format), an HTTP/2 one when it begins with the HTTP/2
        preface (RFC 9113 section 3.4: prior knowledge), on any port; HTTP
        otherwise.  Decided once, by what the first delivered bytes say: the
        server speaking first, a gap at the start, or a first client segment
        too short to tell a hello (fewer than the 11 bytes a hello's record
        header and start take; real stacks send the hello's first record in
        one segment) mean HTTP, as before.  A first segment that is only
        the start of the preface (``PRI * HT``) gives an HTTP/2 session that
        decides once the 24 bytes are in, and hands what it got to an HTTP/1
        one if they are not the preface (``sniffd.http2.flow``); so does a
        server whose first bytes are a SETTINGS frame (an HTTP/2 server may
        send its preface before the client's has come).  A session made
        earlier by a note, that has seen no byte, gives its anomalies to the
        TLS or HTTP/2 session."""
        conn.chosen = True
        h = conn._http
        # The first byte rules most streams out at once: a TLS record starts
        # with 22 (handshake), an SSL 2.0 hello with its high bit set, the
        # HTTP/2 preface with "P" (as POST, PUT and PATCH do: their first
        # segment is a whole request line, and one comparison tells).
        first = data[0] if from_client and data else 0
        tls = (first == 22 and looks_like_tls_client_hello(data)) or (first & 0x80 and looks_like_sslv2_client_hello(data))
        preface = looks_like_h2_preface(data) if first == 80 else False
        if not from_client and data and looks_like_h2_server_preface(data):
            preface = None  # the client's first bytes will tell
        watch = (not tls and preface is False and data and not conn.midstream and not conn.after_rst
                 and (looks_like_other_protocol(data, from_client)
                      or (first == 22 and looks_like_tls_client_hello(data) is None)))
        # ``watch``: not HTTP from its first byte (the server greets, or the
        # client opens with another protocol's message), or a first segment
        # too short to tell a hello (a record header alone): watched for TLS
        # (sniffd.tls.starttls), the next segments decide.
        if tls or watch or preface is not False:
            names: set[str] = set()
            if h is not None:
                if h.req.pos or h.resp.pos:
                    return h  # bytes were delivered before: not the start of the stream
                names.update(*h.carry, h.lost_names, h.resp_lost_names, h.sticky)
            elif conn.after_rst:
                names.add("tcp_data_after_rst")
            if tls:
                t = conn._http = TlsFlow(self.meter, names)
                self.tls_open.add(conn)
            elif watch:
                t = conn._http = TlsWatch(self.meter, None, names)
                self.tls_open.add(conn)
            else:
                t = conn._http = self._h2_flow(deciding=preface is None, anomalies=names,
                                               sticky={"tcp_data_after_rst"} if conn.after_rst else ())
            if h is None:
                self.meter.open_session()
            return t
        return conn.http if h is None else h

    def _h2_flow(self, upgrade=None, **kwargs) -> H2Flow:
        """An HTTP/2 session with this table's settings (``upgrade``: the
        ``sniffd.handover.Upgrade`` it continues).  The stage is loaded by
        the first HTTP/2 connection (see sniffd.http2)."""
        from sniffd.http2.flow import H2Flow

        s = self.s
        limits = dict(max_header_bytes=s.max_header_bytes, max_header_count=s.max_header_count, bodies=self.bodies)
        if upgrade is not None:
            return H2Flow.after_upgrade(upgrade, self.meter, **limits)
        return H2Flow(self.meter, **kwargs, **limits)

    def _succeed(self, conn: Connection, old) -> HttpSession | TlsFlow | H2Flow:
        """``old``, the connection's session, found that the connection is
        another's to read from here (``old.successor``, sniffd.handover):
        write what it finished, make the successor, and make on it the
        calls ``old`` kept for it, in order.  Returns the new session (which
        may hand over in turn: an HTTP/1 session given back what looked
        like a preface may meet an ``Upgrade: h2c`` in it).  The meter's
        session count stays: one session replaces another."""
        ho = old.hand_over()
        for txn in old.take():
            self.out.append((conn, txn))
        # A connection given to the TLS watch as not HTTP is counted non_http
        # by the watch, at its end, only if no TLS came (it is neither).
        non_http = ho.protocol == "tls" and "non_http" in old.loose
        for name in old.loose:
            if not (non_http and name == "non_http"):
                self._count(name)
        old.loose = []
        if ho.protocol == "h2c":
            new = self._h2_flow(ho.upgrade)
        elif ho.protocol == "http1":
            new = conn.new_http()
        elif ho.protocol == "tls":
            new = TlsWatch(self.meter, ho.starttls, old.sticky, count_non_http=non_http, cleartext=True)
            self.tls_open.add(conn)
        else:
            raise AssertionError(f"flow table: no session for protocol {ho.protocol!r}")
        conn._http = new
        for name, args in ho.calls:
            getattr(new, name)(*args)
        if new.successor is not None:
            return self._succeed(conn, new)
        return new

    # -------------------------------------------------------------- feed

    def feed(self, seg: Segment, now: float) -> list[tuple[Connection, Transaction]]:
        src, dst, sport, dport, seq, ack, flags, payload, lost, ttl, csum, ctx = seg
        # The same 4-tuple in two VLANs or tunnels is two connections; a
        # plain frame's key stays the 4-tuple (cheaper to hash).
        key = (src, sport, dst, dport) if ctx is None else (src, sport, dst, dport, ctx_key(ctx))
        entry = self.conns.get(key)
        if entry is not None:
            conn, from_client = entry
            if not payload and flags == TH_ACK and not lost:
                # A pure ACK on a settled connection: nothing to deliver, it
                # never waits for causal order; it shows life, and says how
                # far the peer's stream was received (RST checks).
                if not conn.closed and conn.early is None and conn.doubt is None:
                    (conn.s2c if from_client else conn.c2s).acked = ack
                    if csum > 0:
                        hs = conn.c2s if from_client else conn.s2c
                        if hs.csum_run < CSUM_RUN:
                            hs.csum_run += 1
                    conn.last_seen = now
                    if now - conn.touched >= 1.0:
                        conn.touched = now
                        self.lru.move_to_end(conn)
                    return _NOTHING
            elif payload and not flags & 0x27 and not lost and conn.early is None and conn.doubt is None:
                # Fast path: data, in order, on an open connection with
                # nothing buffered or held, acknowledging only what was
                # delivered, its checksum and hop limit as usual: the bytes
                # go straight to the HTTP session.  Anything else (FIN, SYN,
                # RST, URG, a hole, a hold...) takes the general path.
                hs = conn.c2s if from_client else conn.s2c
                base = hs.base
                # Its hop limit the direction's, its checksum not checked or
                # valid after valid ones: nothing for _segment to note.
                steady = ttl == hs.ttl and (csum < 0 or (csum and hs.csum_run >= CSUM_RUN))
                if (base is not None and not conn.closed and not conn.accounted and not hs.pending
                        and seq == ((base + hs.next) & 0xFFFFFFFF) and conn.hold is None and hs.fin_at is None
                        # A direction's first data segment (it sets the hop
                        # limit's reference) or first valid checksums too,
                        # unless the general path would do more first: act
                        # on the memory budget, or look at the table's
                        # buffers (_account).  (csum 0: a wrong checksum.)
                        and (steady or (csum and (ttl == hs.ttl or hs.ttl is None) and not self.meter.over
                                        and conn not in self.waiting))):
                    opp = conn.s2c if from_client else conn.c2s
                    obase = opp.base
                    if not flags & TH_ACK or obase is None:
                        mark = None
                    elif ((ack - obase - opp.next) & 0xFFFFFFFF) == 0:
                        mark = opp.next
                    elif not causal.waits(opp, flags, ack):
                        mark = opp.rel(ack)
                    else:
                        mark = -1
                    if mark != -1:
                        if not steady:
                            # What _segment notes of such a segment: the hop
                            # limit's reference, the valid checksums in a
                            # row, the largest payload with a valid one.
                            hs.ttl = ttl
                            if csum > 0:
                                if hs.csum_run < CSUM_RUN:
                                    hs.csum_run += 1
                                if len(payload) > hs.csum_max:
                                    hs.csum_max = len(payload)
                        elif len(payload) > FULL_SEGMENT and csum > 0 and len(payload) > hs.csum_max:
                            # A valid segment larger than a 1,500-byte link's
                            # full one (a jumbo-frame link): "auto" checks
                            # segments up to its size from now on (_segment).
                            hs.csum_max = len(payload)
                        conn.last_seen = now
                        if now - conn.touched >= 1.0:
                            conn.touched = now
                            self.lru.move_to_end(conn)
                        hs.advance(payload)
                        h = conn._http
                        if h is None or not conn.chosen:
                            h = self._choose(conn, from_client, payload)
                        h.feed_data(from_client, payload, now, mark)
                        if h.pairing.done:  # (_collect, inline)
                            if h.successor is not None:
                                h = self._succeed(conn, h)
                            for txn in h.take():
                                self.out.append((conn, txn))
                        if self.meter.over and steady:
                            # (Raised by a segment the general path takes as
                            # well, it waits for the next packet, as there.)
                            self.enforce(now)
                        if self.out:
                            return self._take()
                        return _NOTHING
        conn = entry[0] if entry is not None else None
        if conn is not None and conn.closed:
            if flags & TH_SYN and not flags & TH_ACK and seq != conn.syn_isn:
                self._remove(conn)  # port reuse: a new connection
                conn = None
            elif conn.rst and payload and not flags & (TH_SYN | TH_RST):
                conn = self._after_rst(conn, now)
                entry = self.conns[key]
            else:
                conn.last_seen = now
                return self._take() if self.out else _NOTHING
        if conn is None:
            if flags & TH_RST:
                return self._take()  # RST for a connection we never saw
            conn = self._new(seg, now)
            entry = self.conns[key]
        from_client = entry[1]
        conn.last_seen = now
        if now - conn.touched >= 1.0:
            conn.touched = now
            self.lru.move_to_end(conn)
        if self.meter.over:
            self.enforce(now)
        self._segment(conn, from_client, seq, ack, flags, payload, lost, ttl, csum, now)
        if conn.accounted or conn in self.waiting:
            self._account(conn)
        if self.out:
            return self._take()
        return _NOTHING

    def _new(self, seg: Segment, now: float) -> Connection:
        src, dst, sport, dport, seq, ack, flags, payload, lost, _ttl, _csum, ctx = seg
        if len(self.lru) >= self.s.max_connections:
            victim = self._lru_victim()
            self._count("conn_evicted")
            self._close(victim, "conn_evicted", now, "evicted")
            self._remove(victim)
        est = self.estimate() + CONN_COST
        if est > self.budget:
            self.enforce(now)
            est = self.estimate() + CONN_COST
        # What HTTP state may grow to before the next look (see Meter).
        self.meter.limit = self.budget - (est - self.meter.http_bytes)
        a, b = (src, sport), (dst, dport)
        if flags & TH_SYN:
            client, server = (a, b) if not flags & TH_ACK else (b, a)
        elif sport in HTTP_PORTS and dport not in HTTP_PORTS:
            # No handshake seen (yet): the side on a well-known (or lower)
            # port is the server, until a SYN says otherwise.
            client, server = b, a
        elif dport in HTTP_PORTS or dport <= sport:
            client, server = a, b
        else:
            client, server = b, a
        conn = Connection(client, server, self.s, not flags & TH_SYN, now, self.meter, self.bodies)
        conn.ctx = ctx if client == a else ctx_reversed(ctx)
        self._key(conn)
        self.lru[conn] = None
        self.young.add(conn)
        return conn

    def _key(self, conn: Connection) -> None:
        """Each key maps to (connection, is this key the client's
        direction), so one dict lookup per packet answers both."""
        client, server = conn.client, conn.server
        conn.keys = ((client[0], client[1], server[0], server[1]), (server[0], server[1], client[0], client[1]))
        if conn.ctx is not None:
            kctx = ctx_key(conn.ctx)
            conn.keys = tuple(k + (kctx,) for k in conn.keys)
        self.conns[conn.keys[0]] = (conn, True)
        self.conns[conn.keys[1]] = (conn, False)

    def _swap_roles(self, conn: Connection) -> None:
        """A SYN says the roles guessed from the ports were the wrong way
        round (nothing was delivered yet)."""
        conn.client, conn.server = conn.server, conn.client
        conn.c2s, conn.s2c = conn.s2c, conn.c2s
        conn.ctx = ctx_reversed(conn.ctx)
        conn._order = None
        if conn.early:
            conn.early = [(not fc, item) for fc, item in conn.early]
        self._key(conn)

    # ----------------------------------------------------------- segments

    def _segment(self, conn: Connection, from_client: bool, seq: int, ack: int, flags: int,
                 payload: bytes, lost: int, ttl: int, csum: int, now: float) -> None:
        if conn.doubt is not None:
            conn = self._judge(conn, from_client, seq, ack, flags, now)
        hs = conn.c2s if from_client else conn.s2c
        opp = conn.s2c if from_client else conn.c2s
        if (conn.early is not None and not flags & TH_SYN and (hs.base is None or (flags & TH_ACK and opp.base is None))
                and not self._refusal(conn, from_client, flags)):
            # Young, and this direction's ISN is not known yet, or the
            # other's (which its ACK must be read against): aside.
            if not conn.early:
                conn.early = []
            conn.early.append((from_client, (seq, ack, flags, payload, lost, ttl, csum, now)))
            conn.early_bytes += len(payload)
            conn.born_packets += 1
            self.waiting.add(conn)
            if conn.born_packets >= BIRTH_PACKETS or conn.early_bytes >= BIRTH_BYTES:
                self._settle(conn, now)
            return
        if conn.early is not None:
            conn.born_packets += 1
        # Checksum (a segment the receiver would drop is no data) and hop
        # limit (a decoy sent to expire before the server).
        if csum > 0:
            if hs.csum_run < CSUM_RUN:
                hs.csum_run += 1
            if len(payload) > hs.csum_max:
                hs.csum_max = len(payload)
        elif csum == 0:
            verify = self.verify
            # "auto": only once the direction showed valid checksums (twice
            # in a row: one in 65,536 wrong ones is right by chance), and
            # not a segment larger than a full one (a capture host's GRO/TSO
            # super-segment, whose checksum the NIC had).
            if payload and (verify == "on" or (verify == "auto" and hs.csum_run >= CSUM_RUN
                                               and len(payload) <= max(hs.csum_max, FULL_SEGMENT))):
                # A receiver drops it: aside, until a valid copy replaces it
                # or the bytes must be given up (see HalfStream.aside).
                if hs.base is None:
                    hs.start(seq)
                if hs.rel(seq) + len(payload) <= hs.next:
                    # A copy of bytes delivered: nothing to keep, but a decoy
                    # (or a damaged copy) of the message that holds them.
                    self._flag_at(conn, from_client, seq, "tcp_bad_checksum")
                    return
                hs.put_aside(seq, payload, now, ack if flags & TH_ACK else None)
                self.waiting.add(conn)
                return
            if hs.csum_run < CSUM_RUN:
                hs.csum_run = 0
        if payload:
            # The reference is the direction's first data segment, not its
            # handshake: a SYN proxy or a load balancer often answers the
            # SYN with another initial TTL than the server's.
            ref = hs.ttl
            if ref is None:
                hs.ttl = ttl
            elif ttl != ref and (ttl - ref > TTL_SLACK or ref - ttl > TTL_SLACK):
                self._flag_at(conn, from_client, seq, "ip_ttl_changed")
        if flags & TH_SYN:
            self._syn(conn, from_client, seq, ack, flags, payload, now)
            return
        if flags & TH_ACK:
            opp.acked = ack
        if flags & TH_RST:
            if self._rst_acceptable(hs, opp, seq, ack, flags):
                conn.rst = True
                self._close(conn, None, now, "rst")
            else:
                self._flag(conn, from_client, "tcp_rst_ignored")
            return
        if hs.base is None:
            hs.start(seq)  # settled without a base for it: its first segment
        if flags & TH_URG and payload:
            self._flag_at(conn, from_client, seq, "tcp_urgent_data")
        if payload or lost:
            # Only a segment that itself acknowledges undelivered data waits;
            # one that does not goes to the half-stream even if earlier ones
            # wait (the half-stream orders by sequence number anyway), else a
            # response held behind a later one could deadlock the pair.
            if causal.waits(opp, flags, ack):
                hold = conn.hold
                if hold is None:
                    hold = conn.hold = CausalHold()
                hold.add(from_client, (seq, ack, flags, payload, lost, now), now)
                self.waiting.add(conn)
                if hold.bytes > self.s.max_conn_buffer_bytes:
                    self._count("tcp_buffer_overflow")
                    self._release(conn, now, force=True, keep=self.s.max_conn_buffer_bytes // 2)
                return
            self._data(conn, from_client, seq, ack, flags, payload, lost, now)
            return
        if flags & TH_FIN:
            self._fin(conn, from_client, seq, 0, now)

    def _data(self, conn: Connection, from_client: bool, seq: int, ack: int, flags: int, payload: bytes,
              lost: int, ts: float) -> None:
        """Deliver a data segment (captured at ``ts``) that waits for
        nothing, then its FIN."""
        hs = conn.c2s if from_client else conn.s2c
        # The segment's acknowledgement as an offset in the other
        # direction's stream (None: no ACK, or that stream has no base).
        mark = None
        if flags & TH_ACK:
            opp = conn.s2c if from_client else conn.c2s
            if opp.base is not None:
                mark = opp.rel(ack)
        self._deliver(conn, from_client, hs.feed(seq, payload, ts, ack if flags & TH_ACK else None), ts, mark)
        if lost:
            # The snaplen cut the end of this segment: those bytes are a
            # gap now, not a hole to wait for.
            conn.http.note(from_client, ("snaplen_truncated",))
            self._count("snaplen_truncated")
            end = hs.rel((seq + len(payload) + lost) & 0xFFFFFFFF)
            self._deliver(conn, from_client, hs.skip_to(end), ts)
        if hs.pending:
            self.waiting.add(conn)
        if flags & TH_FIN:
            self._fin(conn, from_client, seq, len(payload) + lost, ts)
        elif hs.fin_at is not None:
            # The FIN came before these bytes (reordered, or a hole they
            # fill): the direction may be finished only now.
            self._check_finished(conn, from_client, ts)

    def _fin(self, conn: Connection, from_client: bool, seq: int, length: int, now: float) -> None:
        hs = conn.c2s if from_client else conn.s2c
        if hs.feed_fin((seq + length) & 0xFFFFFFFF):
            self._check_finished(conn, from_client, now)
        else:
            self._flag(conn, from_client, "tcp_fin_ignored")

    @staticmethod
    def _refusal(conn: Connection, from_client: bool, flags: int) -> bool:
        """Is this an RST from a side whose ISN is not known, answering a SYN
        its sender sent nothing after?  The SYN's sender (in SYN-SENT) judges
        it at once, by its ACK alone (RFC 9293 section 3.10.7.3): it need not
        wait aside, so a refused connection ends at once (a retry on the same
        port is a new connection) and one that is not refused stays."""
        if not flags & TH_RST:
            return False
        hs, opp = (conn.c2s, conn.s2c) if from_client else (conn.s2c, conn.c2s)
        return hs.base is None and opp.base is not None and all(fc == from_client for fc, _item in conn.early)

    @staticmethod
    def _rst_acceptable(hs: HalfStream, opp: HalfStream, seq: int, ack: int, flags: int) -> bool:
        """Would the receiver accept this RST (RFC 5961 section 3)?  Its
        sequence number must lie between what the receiver has and what the
        sender was seen to send (or the receiver acknowledged): a blind
        attacker's random number almost never does.  An RST from a side
        that sent nothing yet (a refused SYN) must acknowledge the SYN."""
        if hs.base is None:
            return bool(flags & TH_ACK) and opp.base is not None and 0 <= opp.rel(ack) <= opp.high + 1
        r = hs.rel(seq)
        top = hs.high
        if hs.acked is not None:
            # Bytes the capture lost may have been acknowledged, but not more
            # than a window past what the sender was seen to send: a receiver
            # drops an ACK of bytes never sent (RFC 9293 section 3.10.7.4), so
            # a blind attacker's ACK must not open the window for its RST.
            top = max(top, min(hs.rel(hs.acked), hs.high + FIN_WINDOW))
        if hs.fin_at is not None:
            top = max(top, hs.fin_at + 1)
        return min(hs.next, top) <= r <= top

    # ---------------------------------------------------------- handshake

    def _syn(self, conn: Connection, from_client: bool, seq: int, ack: int, flags: int, payload: bytes,
             now: float) -> None:
        synack = bool(flags & TH_ACK)
        if synack == from_client:
            # The SYN's sender is not the side the ports suggested.
            if conn._http is None and conn.c2s.next == 0 and conn.s2c.next == 0:
                self._swap_roles(conn)
                from_client = not from_client
            else:
                self._flag(conn, from_client, "tcp_syn_ignored")
                return
        if not synack:
            if conn.syn_isn is None:
                conn.syn_isn = seq
                if conn.c2s.base is None:  # (the common case of _base, inline)
                    conn.c2s.start((seq + 1) & MASK32)
                else:
                    self._base(conn, conn.c2s, (seq + 1) & MASK32)
                conn.midstream = False
                if payload:
                    conn.syn_data = (payload, now)
            elif seq != conn.syn_isn:
                # Another ISN on an open connection: a receiver answers with
                # a challenge ACK, not a new connection (RFC 5961 section 4),
                # unless the old one was gone (the client reused the port).
                # The next segment decides (see _judge).
                if conn.new_syn is None or conn.new_syn[0] != seq:
                    conn.new_syn = (seq, now)
                if conn.doubt is None:
                    conn.doubt = True
        else:
            new = conn.new_syn
            if new is not None and ack == (new[0] + 1) & MASK32 and seq != conn.server_isn:
                # The server took the new SYN: the old connection was gone,
                # unless the next segments go on with its numbers (a blind
                # attacker's SYN and SYN-ACK).
                conn.doubt = (seq,)
                return
            if conn.server_isn is None:
                conn.server_isn = seq
                if conn.s2c.base is None:  # (the common case of _base, inline)
                    conn.s2c.start((seq + 1) & MASK32)
                else:
                    self._base(conn, conn.s2c, (seq + 1) & MASK32)
                if conn.c2s.base is None:
                    self._base(conn, conn.c2s, ack)  # the client's ISN + 1
                conn.midstream = False
                if conn.syn_data is not None:
                    data, ts = conn.syn_data
                    conn.syn_data = None
                    if conn.syn_isn is not None and ack == (conn.syn_isn + 1 + len(data)) & MASK32:
                        # TCP Fast Open: the server took the SYN's data.
                        self._deliver(conn, True, conn.c2s.feed((conn.syn_isn + 1) & MASK32, data, ts, None), ts)
                    else:
                        self._flag(conn, True, "tcp_syn_data")
                if payload:
                    self._flag(conn, False, "tcp_syn_data")
            elif seq != conn.server_isn:
                self._flag(conn, False, "tcp_syn_ignored")
        if conn.early is not None and conn.c2s.base is not None and conn.s2c.base is not None:
            self._settle(conn, now)

    def _base(self, conn: Connection, hs: HalfStream, seq: int) -> None:
        """Set (or, while nothing was delivered, correct) a direction's base."""
        if hs.base is None:
            hs.start(seq)
        elif hs.base != seq and hs.next == 0:
            hs.rebase(seq)

    def _settle(self, conn: Connection, now: float) -> None:
        """The young connection's wait is over: give each direction whose ISN
        is still unknown the lowest sequence number seen for it (or the
        lowest the peer acknowledged), decide whether it was picked up
        mid-stream, and process what was kept aside, in arrival order."""
        early = conn.early
        conn.early = None
        conn.early_bytes = 0
        self.young.discard(conn)
        if conn.syn_data is not None:
            self._flag(conn, True, "tcp_syn_data")  # no SYN-ACK took it
            conn.syn_data = None
        for fc in (True, False) if early else ():
            hs = conn.c2s if fc else conn.s2c
            if hs.base is not None:
                continue
            seqs = [item[0] for f, item in early if f == fc]
            seqs += [item[1] for f, item in early if f != fc and item[2] & TH_ACK]
            if seqs:
                ref = seqs[0]
                hs.start(min(seqs, key=lambda s: (s - ref + 0x80000000) & MASK32))
        if conn.midstream and conn.syn_isn is None and conn.server_isn is None:
            self._count("midstream_pickup")
        else:
            conn.midstream = False
        for fc, (seq, ack, flags, payload, lost, ttl, csum, ts) in early:
            if conn.closed:
                break
            self._segment(conn, fc, seq, ack, flags, payload, lost, ttl, csum, ts)
        if conn in self.waiting and not conn.waiting:
            self.waiting.discard(conn)

    def _judge(self, conn: Connection, from_client: bool, seq: int, ack: int, flags: int,
               now: float) -> Connection:
        """Decide the doubt a SYN with another ISN left, by the segment that
        follows it; return the connection that segment belongs to."""
        doubt = conn.doubt
        isn = conn.new_syn[0]
        if flags & TH_SYN:
            if flags & TH_ACK:
                if ack == (isn + 1) & MASK32 and (doubt is True or seq == doubt[0]):
                    return conn  # the SYN-ACK taking it, or its copy
            elif seq == isn:
                return conn  # the SYN's copy
        elif doubt is not True:
            hs = conn.c2s if from_client else conn.s2c
            fresh_base = (isn + 1) if from_client else (doubt[0] + 1)
            if _near(seq, fresh_base) or not (hs.base is not None and _near(seq, hs.base + hs.next)):
                # The new incarnation's numbers (or not the old one's):
                # the server did take the SYN.
                return self._reused(conn, conn.new_syn, doubt[0], now)
        # The old connection goes on: the SYN (and the SYN-ACK that took it,
        # sent by the same blind hand) were ignored.
        conn.doubt = None
        self._flag(conn, True, "tcp_syn_ignored")
        if doubt is not True:
            self._flag(conn, False, "tcp_syn_ignored")
        return conn

    def _reused(self, conn: Connection, new: tuple[int, float], seq: int, now: float) -> Connection:
        """A SYN-ACK answered the SYN that came on the open connection: the
        client reused the port, the server had forgotten the old one."""
        client, server, ctx = conn.client, conn.server, conn.ctx
        self._close(conn, None, now, "reused")
        self._remove(conn)
        isn, ts = new
        fresh = Connection(client, server, self.s, False, ts, self.meter, self.bodies)
        fresh.ctx = ctx
        self._key(fresh)
        self.lru[fresh] = None
        self.young.add(fresh)
        fresh.syn_isn = isn
        fresh.c2s.start((isn + 1) & MASK32)
        fresh.server_isn = seq
        fresh.s2c.start((seq + 1) & MASK32)
        self._settle(fresh, now)
        return fresh

    def _after_rst(self, conn: Connection, now: float) -> Connection:
        """Data after an accepted RST: the receiver may not have accepted it
        after all (or an attacker sent it).  Log what follows, flagged, on
        a connection that goes on where the old one stopped."""
        self._remove(conn)
        fresh = Connection(conn.client, conn.server, self.s, True, now, self.meter, self.bodies)
        fresh.ctx = conn.ctx
        fresh.after_rst = True
        fresh.uid = conn.uid  # the same TCP connection, as a receiver that did not take the RST sees it
        fresh.syn_isn, fresh.server_isn = conn.syn_isn, conn.server_isn
        for old, hs in ((conn.c2s, fresh.c2s), (conn.s2c, fresh.s2c)):
            if old.base is not None:
                hs.start((old.base + old.next) & MASK32)
            hs.ttl, hs.csum_max, hs.csum_run = old.ttl, old.csum_max, old.csum_run
        fresh.early = None
        self._key(fresh)
        self.lru[fresh] = None
        return fresh

    def _flag(self, conn: Connection, from_client: bool, name: str) -> None:
        """A segment-level anomaly: counted, and put on the transaction that
        direction carries (or its next one)."""
        self._count(name)
        conn.http.note(from_client, (name,))

    def _flag_at(self, conn: Connection, from_client: bool, seq: int, name: str) -> None:
        """A decoy's anomaly (a data segment at ``seq``): on the message whose
        bytes it carries.  A copy of bytes already delivered goes on the message
        that holds them, or on no record when that one was written (counted
        only), never on the next one, which it did not touch."""
        hs = conn.c2s if from_client else conn.s2c
        if hs.base is None or hs.rel(seq) >= hs.next:
            self._flag(conn, from_client, name)  # new bytes: the message they go to
            return
        self._count(name)
        conn.http.note_at(from_client, hs.rel(seq), (name,))

    def note_flow(self, src: bytes, dst: bytes, sport: int, dport: int, ctx, names) -> None:
        """An earlier stage saw something about this connection (an IP
        fragment overlap): counted there; put on its current transaction."""
        key = (src, sport, dst, dport)
        entry = self.conns.get(key if ctx is None else key + (ctx_key(ctx),))
        if entry is not None and not entry[0].closed:
            entry[0].http.note(entry[1], names)

    # ----------------------------------------------------------- delivery

    def _deliver(self, conn: Connection, from_client: bool, chunks: list, now: float,
                 mark: int | None = None) -> None:
        hs = conn.c2s if from_client else conn.s2c
        if hs.anomalies:
            names = hs.anomalies
            hs.anomalies = ()
            for n in names:
                self._count(n)
            rest = [n for n in names if n != "tcp_overlap_conflict"]
            if rest:
                conn.http.note(from_client, rest)
        if hs.conflicts:
            # On the message whose bytes had two different copies.
            for lo, _hi in hs.conflicts:
                conn.http.note_at(from_client, lo, ("tcp_overlap_conflict",))
            hs.conflicts = ()
        if chunks:
            opp = conn.s2c if from_client else conn.c2s
            for i, c in enumerate(chunks):
                if c.__class__ is tuple:
                    raw = c[2]
                    chunks[i] = (c[0], c[1], None if raw is None or opp.base is None else opp.rel(raw))
            h = conn._http
            if h is None or not conn.chosen:
                first = chunks[0]
                h = self._choose(conn, from_client, first[0] if first.__class__ is tuple else
                                 (b"" if first.__class__ is int else first))
            h.feed(from_client, chunks, now, mark)
            if conn.hold is not None:
                # Handed over or not, the session keeps what it is given for
                # its successor (sniffd.handover), so delivery goes on first.
                self._release(conn, now)
        h = conn._http
        if h is not None and h.pairing.done:
            self._collect(conn, h)

    def _collect(self, conn: Connection, h) -> None:
        """Take the transactions ``h``, the connection's session, finished
        (``h.pairing.done``), after its hand-over when it found one (feed,
        end or close)."""
        if h.successor is not None:
            h = self._succeed(conn, h)
        for txn in h.take():
            self.out.append((conn, txn))

    def _release(self, conn: Connection, now: float, force: bool = False, keep: int = 0,
                 before: float | None = None) -> None:
        """Deliver held segments whose acknowledged data has now arrived;
        with ``force``, give the waits up one at a time (sniffd.causal):
        all of them, or only until at most ``keep`` bytes are held, or until
        no held segment was captured before ``before``.  ``conn.releasing``
        stops the re-entry that delivery would cause."""
        hold = conn.hold
        if hold is None or conn.releasing:
            return
        conn.releasing = True
        try:
            while True:
                ready = hold.ready(conn.c2s, conn.s2c)
                for fc, item in ready:
                    self._pop_held(conn, fc, item)
                if ready:
                    continue
                if not force or not hold or (keep and hold.bytes <= keep):
                    break
                if before is not None and hold.oldest() >= before:
                    break
                fc, item, skip = hold.force(conn.c2s, conn.s2c)
                if skip is not None:
                    opp = conn.s2c if fc else conn.c2s
                    self._deliver(conn, not fc, opp.skip_to(skip), now if item is None else item[5])
                if item is not None:
                    self._pop_held(conn, fc, item)
        finally:
            conn.releasing = False
        if not hold:
            conn.hold = None
        elif force:
            hold.settle()

    def _pop_held(self, conn: Connection, from_client: bool, item: tuple) -> None:
        seq, ack, flags, payload, lost, ts = item
        # Delivered at its capture time: records say when bytes were on the
        # wire, not when they were released.
        self._data(conn, from_client, seq, ack, flags, payload, lost, ts)
        hs = conn.c2s if from_client else conn.s2c
        if hs.fin_at is not None:
            self._check_finished(conn, from_client, ts)

    def _check_finished(self, conn: Connection, from_client: bool, now: float) -> None:
        hs = conn.c2s if from_client else conn.s2c
        hold = conn.hold
        if hs.is_finished() and (hold is None or not hold.held[from_client]):
            h = conn._http
            if h is not None:
                h.end(from_client, now)
                if hs.anomalies or hs.conflicts:
                    self._deliver(conn, from_client, _NOTHING, now)
                elif h.pairing.done:  # all a delivery of nothing would do
                    self._collect(conn, h)
            # (``hs`` is still finished: the session changes no stream.)
            if not conn.closed and (conn.s2c if from_client else conn.c2s).is_finished():
                self._close(conn, None, now, "fin")

    def _reaccount(self, conn: Connection) -> int:
        """Bring FlowTable.buffered up to date with ``conn``; idempotent, so
        every path that may have changed its buffers can call it (an RST
        closing a connection inside feed was once subtracted twice)."""
        b = conn.buffered
        grown = b - conn.accounted
        if grown:
            self.buffered += grown
            conn.accounted = b
        return grown

    def _account(self, conn: Connection) -> None:
        grown = self._reaccount(conn)
        if self.buffered > self.s.max_total_buffer_bytes:
            # Total bound reached: the connection holding most gives up its
            # wait first (it is the one most likely hostile or broken).
            victim = max(self.waiting, key=lambda c: c.buffered, default=None)
            if victim is not None:
                now = victim.last_seen
                self._count("tcp_buffer_overflow")
                if victim.early is not None:
                    self._settle(victim, now)
                for fc in (True, False):
                    hs = victim.c2s if fc else victim.s2c
                    self._deliver(victim, fc, hs.forced_skip(), now)
                self._release(victim, now, force=True)
                self._reaccount(victim)
        if grown > 0 and self.estimate() > self.budget:
            self.enforce(conn.last_seen)

    # ------------------------------------------------------- memory budget

    def estimate(self) -> int:
        """Bytes sniffd holds for the traffic (see sniffd/budget.py)."""
        m = self.meter
        return ((len(self.lru) + len(self.closing)) * CONN_COST + m.sessions * SESSION_COST
                + m.http_bytes + self.buffered + self.external_bytes())

    def _lru_victim(self) -> Connection:
        """The least recently active open connection.  The LRU order is
        refreshed at most once a second per connection (to keep it cheap),
        so a head that has seen packets since goes to the back first: an
        active connection is never evicted for a stale position."""
        lru = self.lru
        while True:
            conn = next(iter(lru))
            if conn.last_seen > conn.touched:
                conn.touched = conn.last_seen
                lru.move_to_end(conn)
                continue
            return conn

    def _set_http_limit(self) -> None:
        m = self.meter
        m.limit = self.budget - (self.estimate() - m.http_bytes)
        m.over = m.http_bytes > m.limit

    def enforce(self, now: float) -> None:
        """Bring memory back under the budget, in a fixed order, each step
        only as far as needed (to 90% of the budget, so it does not run on
        every packet at the edge):

        1. drop buffered out-of-order data (and held segments) of the
           connections idle longest, and partial IP datagrams
           (memory_ooo_dropped): the holes become gaps now, not later;
        2. stop keeping captured bodies (memory_bodies_dropped) until
           memory is under half the budget;
        3. evict the least recently active connections, writing their
           open transactions (memory_evicted, end_reason "evicted").
        """
        if self.estimate() <= self.budget:
            self._set_http_limit()
            return
        target = self.budget * 9 // 10
        for conn in sorted(self.waiting, key=lambda c: c.last_seen):
            if conn.early is not None:
                self._settle(conn, now)
            for fc in (True, False):
                hs = conn.c2s if fc else conn.s2c
                if hs.pending:
                    conn.http.note(fc, ("memory_ooo_dropped",))
                    self._deliver(conn, fc, hs.close_hole(), now)
            if conn.hold is not None:
                conn.http.note(True, ("memory_ooo_dropped",))
                self._release(conn, now, force=True)
            self.waiting.discard(conn)
            self._reaccount(conn)
            self._count("memory_ooo_dropped")
            if self.estimate() <= target:
                break
        if self.estimate() > target and self.external_bytes():
            self._count("memory_ooo_dropped", self.shed_external())
        if self.estimate() > target and self.meter.keep_bodies:
            self.meter.keep_bodies = False
            self._count("memory_bodies_dropped")
        while self.estimate() > target and self.lru:
            victim = self._lru_victim()
            self._count("memory_evicted")
            self._close(victim, "memory_evicted", now, "evicted")
            self._remove(victim)
        while self.estimate() > target and self.closing:
            self._remove(next(iter(self.closing)))
        self._set_http_limit()

    # ------------------------------------------------------------ endings

    def _close(self, conn: Connection, reason: str | None, now: float, why: str = "end_of_input") -> None:
        """Finish a connection: settle it, skip every hole, deliver
        everything held, end the HTTP session.  ``reason``: anomaly for what
        it cuts; ``why``: their end_reason.  The entry stays (closed) until
        it lingers out."""
        if conn.closed:
            return
        if conn.doubt is not None:
            if conn.doubt is True:
                self._flag(conn, True, "tcp_syn_ignored")  # nothing answered it
            else:
                why = "reused"  # the SYN-ACK that took the new SYN stands
            conn.doubt = None
        if conn.early is not None:
            self._settle(conn, now)
            if conn.closed:
                return
        if conn._http is None and not conn.waiting:
            # Nothing delivered, nothing buffered (a SYN flood's half-open
            # connections): nothing to flush.
            conn.closed = conn.c2s.closed = conn.s2c.closed = True
            self.waiting.discard(conn)
            self._reaccount(conn)
            if self.lru.pop(conn, 0) is None:
                self.closing[conn] = now
            return
        if conn.hold is not None:
            self._release(conn, now, force=True)
        for fc in (True, False):
            hs = conn.c2s if fc else conn.s2c
            chunks = hs.close()
            # A delivery of nothing, with no anomaly to pass on, would only
            # collect (below).
            if chunks or hs.anomalies or hs.conflicts:
                self._deliver(conn, fc, chunks, now)
        h = conn._http
        if h is not None:
            if h.pairing.done:
                self._collect(conn, h)
                h = conn._http
            h.close(reason, now, why)
            if h.pairing.done:
                self._collect(conn, h)
            if conn._http is not h:
                # Handed over as it closed (a stream found not to be HTTP at
                # its end): close its successor too.
                h = conn._http
                h.close(reason, now, why)
                if h.pairing.done:
                    self._collect(conn, h)
            for name in h.loose:
                self._count(name)
            h.loose = []
        conn.closed = True
        if conn.accounted or conn in self.waiting:  # else it never buffered anything (see feed)
            self.waiting.discard(conn)
            self._reaccount(conn)
        if self.lru.pop(conn, 0) is None:
            self.closing[conn] = now

    def _remove(self, conn: Connection) -> None:
        # Still in the table (open: in lru, whose values are None; or
        # lingering: in closing, whose values are times)?
        listed = self.lru.pop(conn, 0) is None
        if self.closing.pop(conn, None) is not None:
            listed = True
        if conn._http is not None and listed:
            self.meter.sessions -= 1
        if conn.accounted:
            self.buffered -= conn.accounted
            conn.accounted = 0
        for k in conn.keys:
            entry = self.conns.get(k)
            if entry is not None and entry[0] is conn:
                del self.conns[k]
        self.waiting.discard(conn)
        self.young.discard(conn)
        self.tls_open.discard(conn)
        if self.gone is not None:
            self.gone.append(conn)

    def discard(self, seg: Segment) -> None:
        """Forget the connection of ``seg`` without flushing it (its state
        is suspect after an internal error)."""
        key = (seg[0], seg[2], seg[1], seg[3])
        entry = self.conns.get(key if seg[11] is None else key + (ctx_key(seg[11]),))
        conn = entry[0] if entry is not None else None
        if conn is not None:
            self.buffered -= conn.accounted
            conn.accounted = 0
            self._remove(conn)
        self.out = []

    def _take(self) -> list[tuple[Connection, Transaction]]:
        if not self.out:
            return []
        out, self.out = self.out, []
        return out

    def expire(self, now: float) -> list[tuple[Connection, Transaction]]:
        # Young connections whose wait for a handshake is over.
        if self.young:
            for conn in [c for c in self.young if now - c.began >= BIRTH_S]:
                self._settle(conn, now)
                self._reaccount(conn)
        # Holes and held segments that waited long enough.
        for conn in list(self.waiting):
            for fc in (True, False):
                hs = conn.c2s if fc else conn.s2c
                if hs.pending:
                    self._deliver(conn, fc, hs.expire(now), now)
                    if hs.fin_at is not None:
                        self._check_finished(conn, fc, now)
            hold = conn.hold
            if hold is not None and hold.since is not None and now - hold.since >= self.s.gap_timeout_s:
                self._release(conn, now, force=True, before=now - self.s.gap_timeout_s + 1e-9)
            if not conn.waiting:
                self.waiting.discard(conn)
            self._reaccount(conn)
        # Closed connections that lingered long enough.
        linger_before = now - CLOSED_LINGER_S
        closing = self.closing
        while closing:
            conn, closed_at = next(iter(closing.items()))
            if closed_at > linger_before:
                break
            self._remove(conn)
        # Idle connections, least recently active first.
        idle_before = now - self.s.idle_timeout_s
        lru = self.lru
        while lru:
            conn = next(iter(lru))
            if conn.touched > idle_before:
                break
            if conn.last_seen > idle_before:
                conn.touched = conn.last_seen
                lru.move_to_end(conn)
                continue
            reason = "idle_timeout" if conn.open_transactions else None
            if reason:
                self._count(reason)
            self._close(conn, reason, now, "idle")
            self._remove(conn)
        # Long-lived TLS connections get their record once their handshake
        # is well over (sniffd.tls.flow: EARLY_RECORD_S).
        if self.tls_open:
            for conn in list(self.tls_open):
                t = conn._http
                t.tick(now)
                if t.written:
                    self.tls_open.discard(conn)
                    for rec in t.take():
                        self.out.append((conn, rec))
        # Bodies are kept again once memory is well under the budget.
        if not self.meter.keep_bodies and self.estimate() < self.budget // 2:
            self.meter.keep_bodies = True
        self._set_http_limit()
        return _in_order(self._take())

    def close_all(self, reason: str | None, now: float) -> list[tuple[Connection, Transaction]]:
        why = "shutdown" if reason == "cut_by_shutdown" else "end_of_input"
        for conn in list(self.lru):
            if conn.early is not None:
                self._settle(conn, now)
            if reason and conn.open_transactions:
                self._count(reason)
            self._close(conn, reason, now, why)
        for conn in list(self.closing):
            self._remove(conn)
        return _in_order(self._take())


def _near(seq: int, ref: int) -> bool:
    """Is ``seq`` within a window (either way) of ``ref``?"""
    d = (seq - ref) & MASK32
    return d <= FIN_WINDOW or d >= (1 << 32) - FIN_WINDOW


def _in_order(done: list[tuple[Connection, Transaction]]) -> list[tuple[Connection, Transaction]]:
    """Transactions finished together (by one housekeeping pass, or at the
    end) in the order their connections began, each connection's in its own
    order: an order that does not depend on which connections share a
    process (sniffd read --workers) or on how the table was walked."""
    if len(done) > 1:
        done.sort(key=_order)
    return done


def _order(item: tuple[Connection, Transaction]) -> tuple:
    return item[0].order
