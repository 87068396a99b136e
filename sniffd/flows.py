"""Flow table (stateful, sans-I/O): TCP segments in, finished transactions out.

All per-connection state lives in one ``Connection``: two ``HalfStream``s
and the ``HttpSession``.  One thread owns the table; nothing here locks.

Call order: ``feed(segment, now)`` per decoded segment, ``expire(now)`` as
time advances (at least once a second of packet time), ``close_all(reason,
now)`` at the end.  Each returns ``[(connection, transaction), ...]`` for the
records stage, plus anomalies counted in ``self.counts``.

Causal order between the two directions: a segment that acknowledges bytes
of the other direction that have not been delivered yet (because they are
still out of order, or were never captured) is held until those bytes are
delivered, or declared lost after ``gap_timeout_s``.  So the HTTP session
always sees a request before the response that answers it, whatever order
the capture put the packets in, and knows, for example, that a response
answers HEAD.  Real captures are almost always causal already; the check
costs a comparison per segment.
"""

from __future__ import annotations

from collections import OrderedDict

from sniffd.budget import CONN_COST, SEGMENT_COST, SESSION_COST, Meter
from sniffd.decode import TH_ACK, TH_FIN, TH_RST, TH_SYN, Segment, ctx_key, ctx_reversed
from sniffd.http import HttpSession, Transaction
from sniffd.reassembly import HalfStream
from sniffd.settings import Settings

# A closed connection stays in the table this long to absorb the last ACK
# and retransmitted FINs (they come within a few RTOs), so they do not look
# like a new mid-stream connection.
CLOSED_LINGER_S = 10.0
# An acknowledgement further ahead than this is bogus (a broken or hostile
# stack); it must not make sniffd hold or skip data.
MAX_ACK_AHEAD = 1 << 30
_NOTHING: tuple = ()

# Ports that are a server's, for guessing roles of a connection picked up
# mid-stream (no SYN seen).
HTTP_PORTS = frozenset((80, 8000, 8008, 8080, 8081, 8088, 8888, 3128, 443, 8443))


class Connection:
    __slots__ = (
        "client", "server", "c2s", "s2c", "last_seen", "touched",
        "closed", "held", "held_bytes", "held_since", "keys", "cid",
        "client_rec", "server_rec", "rst", "syn_isn", "releasing", "_http", "_settings", "midstream", "meter",
        "bodies", "accounted", "began", "_order", "ctx", "encap_rec",
    )

    def __init__(self, client: tuple[bytes, int], server: tuple[bytes, int], s: Settings, midstream: bool, now: float,
                 meter: Meter, bodies=None) -> None:
        self.client = client
        self.server = server
        self.c2s = HalfStream(s.gap_timeout_s, s.max_conn_buffer_bytes)
        self.s2c = HalfStream(s.gap_timeout_s, s.max_conn_buffer_bytes)
        # The HTTP session (two llhttp parsers, ~4 KiB) is made when the first
        # payload byte arrives: a SYN flood's half-open connections cost
        # about a quarter of a connection that carries data.
        self._http: HttpSession | None = None
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
        self.rst = False
        # Segments held for causal order, per direction (index: from_client).
        self.held: tuple[list, list] = ([], [])
        self.held_bytes = 0
        self.held_since: float | None = None
        self.keys: tuple = ()
        self.cid: str | None = None
        self.client_rec: dict | None = None
        self.server_rec: dict | None = None
        self.syn_isn: int | None = None
        self.releasing = False
        # The encapsulation (decode.Segment.ctx) as the client's packets
        # carry it, and its record fields (set by the pipeline).
        self.ctx: tuple | None = None
        self.encap_rec: dict | None = None

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
    def http(self) -> HttpSession:
        h = self._http
        if h is None:
            s = self._settings
            h = self._http = HttpSession(s.max_pending_requests, s.max_header_bytes, s.max_header_count,
                                         self.midstream, s.max_uri_bytes, self.meter, self.bodies)
            self.meter.sessions += 1
        return h

    @property
    def open_transactions(self) -> bool:
        h = self._http
        return h is not None and h.open_transactions > 0

    @property
    def buffered(self) -> int:
        """Bytes held for reassembly, with each segment's object overhead."""
        c2s, s2c, held = self.c2s, self.s2c, self.held
        n = len(c2s.pending) + len(s2c.pending) + len(held[0]) + len(held[1])
        return c2s.pending_bytes + s2c.pending_bytes + self.held_bytes + n * SEGMENT_COST

    @property
    def waiting(self) -> bool:
        return bool(self.c2s.pending or self.s2c.pending or self.held_bytes or self.held[0] or self.held[1])


class FlowTable:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.conns: dict[tuple, Connection] = {}
        self.lru: OrderedDict[Connection, None] = OrderedDict()  # open, least recent first
        self.closing: OrderedDict[Connection, float] = OrderedDict()  # closed, lingering
        self.waiting: set[Connection] = set()
        self.buffered = 0
        self.counts: dict[str, int] = {}
        self.out: list[tuple[Connection, Transaction]] = []
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

    def __len__(self) -> int:
        return len(self.lru)

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    # -------------------------------------------------------------- feed

    def feed(self, seg: Segment, now: float) -> list[tuple[Connection, Transaction]]:
        src, dst, sport, dport, seq, ack, flags, payload, lost, _ttl, _csum, ctx = seg
        # The same 4-tuple in two VLANs or tunnels is two connections; a
        # plain frame's key stays the 4-tuple (cheaper to hash).
        key = (src, sport, dst, dport) if ctx is None else (src, sport, dst, dport, ctx_key(ctx))
        entry = self.conns.get(key)
        if entry is not None and not payload and flags == TH_ACK and not lost:
            # A pure ACK on a known connection: it carries nothing to deliver
            # and (no data) never waits for causal order; it only shows life.
            conn = entry[0]
            if not conn.closed and conn.c2s.base is not None and conn.s2c.base is not None:
                conn.last_seen = now
                if now - conn.touched >= 1.0:
                    conn.touched = now
                    self.lru.move_to_end(conn)
                return _NOTHING
        if entry is not None and payload and not (flags & 0x07) and not lost:
            # Fast path: data, in order, on an open connection with nothing
            # buffered or held, acknowledging only what was delivered: the
            # bytes go straight to the HTTP session (no chunk list, no
            # reassembly buffer).  Anything else takes the general path.
            conn, from_client = entry
            hs = conn.c2s if from_client else conn.s2c
            base = hs.base
            if (base is not None and not conn.closed and not conn.accounted and not hs.pending
                    and seq == ((base + hs.next) & 0xFFFFFFFF) and not conn.held[from_client]):
                opp = conn.s2c if from_client else conn.c2s
                if (not flags & TH_ACK or opp.base is None
                        or ((ack - opp.base - opp.next) & 0xFFFFFFFF) == 0 or not self._ahead(opp, flags, ack)):
                    conn.last_seen = now
                    if now - conn.touched >= 1.0:
                        conn.touched = now
                        self.lru.move_to_end(conn)
                    hs.recent_start = hs.next
                    hs.next += len(payload)
                    hs.recent = payload
                    h = conn._http
                    if h is None:
                        h = conn.http
                    h.feed_data(from_client, payload, now)
                    if h.done:
                        for txn in h.take():
                            self.out.append((conn, txn))
                    if conn.held[not from_client]:
                        self._release(conn, now)
                    if self.meter.over:
                        self.enforce(now)
                    if self.out:
                        return self._take()
                    return _NOTHING
        conn = entry[0] if entry is not None else None
        if conn is not None and conn.closed:
            if flags & TH_SYN and not flags & TH_ACK and seq != conn.syn_isn:
                self._remove(conn)  # port reuse: a new connection
                conn = None
            else:
                conn.last_seen = now
                return self._take()
        if conn is None:
            if flags & TH_RST:
                return self._take()  # RST for a connection we never saw
            conn = self._new(seg, now)
            entry = self.conns[key]
        elif flags & TH_SYN and not flags & TH_ACK and conn.syn_isn is not None and seq != conn.syn_isn:
            # A new SYN with a new ISN on a 4-tuple still open: the old
            # connection was abandoned (the client reused the port).
            self._close(conn, None, now, "reused")
            self._remove(conn)
            conn = self._new(seg, now)
            entry = self.conns[key]
        from_client = entry[1]
        conn.last_seen = now
        if now - conn.touched >= 1.0:
            conn.touched = now
            self.lru.move_to_end(conn)
        if self.meter.over:
            self.enforce(now)
        self._segment(conn, from_client, seq, ack, flags, payload, lost, now)
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
            midstream = False
            client, server = (a, b) if not flags & TH_ACK else (b, a)
        else:
            midstream = True
            # No handshake seen: the side on a well-known (or lower) port is
            # the server.
            if sport in HTTP_PORTS and dport not in HTTP_PORTS:
                client, server = b, a
            elif dport in HTTP_PORTS or dport <= sport:
                client, server = a, b
            else:
                client, server = b, a
            self._count("midstream_pickup")
        conn = Connection(client, server, self.s, midstream, now, self.meter, self.bodies)
        conn.ctx = ctx if client == a else ctx_reversed(ctx)
        conn.keys = ((client[0], client[1], server[0], server[1]), (server[0], server[1], client[0], client[1]))
        if ctx is not None:
            kctx = ctx_key(ctx)
            conn.keys = tuple(k + (kctx,) for k in conn.keys)
        # Each key maps to (connection, is this key the client's direction),
        # so one dict lookup per packet answers both.
        self.conns[conn.keys[0]] = (conn, True)
        self.conns[conn.keys[1]] = (conn, False)
        self.lru[conn] = None
        return conn

    def _segment(self, conn: Connection, from_client: bool, seq: int, ack: int, flags: int,
                 payload: bytes, lost: int, now: float) -> None:
        hs = conn.c2s if from_client else conn.s2c
        opp = conn.s2c if from_client else conn.c2s
        if flags & TH_SYN:
            if hs.base is None:
                hs.start(seq + 1)
                if from_client:
                    conn.syn_isn = seq
            seq = (seq + 1) & 0xFFFFFFFF
        if hs.base is None:
            hs.start(seq)
        if flags & TH_RST:
            conn.rst = True
            self._close(conn, None, now, "rst")
            return
        if payload or lost:
            # Only a segment that itself acknowledges undelivered data waits;
            # one that does not goes to the half-stream even if earlier ones
            # wait (the half-stream orders by sequence number anyway), else a
            # response held behind a later one could deadlock the pair.
            if self._ahead(opp, flags, ack):
                held = conn.held[from_client]
                held.append((seq, ack, flags, payload, lost, now))
                conn.held_bytes += len(payload)
                if conn.held_since is None:
                    conn.held_since = now
                self.waiting.add(conn)
                if conn.held_bytes > self.s.max_conn_buffer_bytes:
                    self._count("tcp_buffer_overflow")
                    self._release(conn, now, force=True)
                return
            self._deliver(conn, from_client, hs.feed(seq, payload, now), now)
            if lost:
                # The snaplen cut the end of this segment: those bytes are a
                # gap now, not a hole to wait for.
                conn.http.note(from_client, ("snaplen_truncated",))
                self._count("snaplen_truncated")
                end = hs.rel((seq + len(payload) + lost) & 0xFFFFFFFF)
                self._deliver(conn, from_client, hs.skip_to(end), now)
            if hs.pending:
                self.waiting.add(conn)
        if flags & TH_FIN:
            hs.feed_fin((seq + len(payload) + lost) & 0xFFFFFFFF)
            self._check_finished(conn, from_client, now)

    @staticmethod
    def _ahead(opp: HalfStream, flags: int, ack: int) -> bool:
        """Does this segment acknowledge bytes of ``opp`` not yet delivered?"""
        if not flags & TH_ACK or opp.base is None or opp.closed:
            return False
        if (ack - opp.base - opp.next) & 0xFFFFFFFF == 0:
            return False  # the common case: acknowledges exactly what we have
        d = opp.rel(ack) - opp.consumed
        return 0 < d < MAX_ACK_AHEAD

    def _deliver(self, conn: Connection, from_client: bool, chunks: list, now: float) -> None:
        hs = conn.c2s if from_client else conn.s2c
        if hs.anomalies:
            names = hs.anomalies
            hs.anomalies = []
            for n in names:
                self._count(n)
            conn.http.note(from_client, names)
        if chunks:
            conn.http.feed(from_client, chunks, now)
            other = conn.held[not from_client]
            if other:
                self._release(conn, now)
        h = conn._http
        if h is not None and h.done:
            for txn in h.take():
                self.out.append((conn, txn))

    def _release(self, conn: Connection, now: float, force: bool = False) -> None:
        """Deliver held segments whose acknowledged data has now arrived.

        ``force``: the wait is over: release everything, declaring lost
        what the segments acknowledge and nobody delivered.  One segment is
        forced at a time, then whatever that unblocks is delivered: the
        segment forced is one whose missing data is not itself waiting in
        the other direction's hold queue (so a request that acknowledges a
        held response never declares that response lost), oldest first.
        ``conn.releasing`` stops the re-entry that delivery would cause."""
        if conn.releasing:
            return
        conn.releasing = True
        try:
            while True:
                self._release_ready(conn)
                if not force or not (conn.held[True] or conn.held[False]):
                    break
                self._force_one(conn)
        finally:
            conn.releasing = False
        if not (conn.held[0] or conn.held[1]):
            conn.held_since = None
            conn.held_bytes = 0

    def _release_ready(self, conn: Connection) -> None:
        """Deliver every held segment that no longer waits for anything.
        Not only the queue's head: the half-stream orders data by sequence
        number, so a ready segment need not wait behind a blocked one."""
        moved = True
        while moved:
            moved = False
            for fc in (True, False):
                held = conn.held[fc]
                opp = conn.s2c if fc else conn.c2s
                i = 0
                while i < len(held):
                    if self._ahead(opp, held[i][2], held[i][1]):
                        i += 1
                    else:
                        self._pop_held(conn, fc, i)
                        moved = True

    def _force_one(self, conn: Connection) -> None:
        best = None
        for fc in (True, False):
            opp = conn.s2c if fc else conn.c2s
            waiting_there = {opp.rel(h[0]) for h in conn.held[not fc]}
            for i, (seq, ack, flags, payload, lost, ts) in enumerate(conn.held[fc]):
                key = (opp.next in waiting_there, ts, i)
                if best is None or key < best[0]:
                    best = (key, fc, i)
        _, fc, i = best
        seq, ack, flags, payload, lost, ts = conn.held[fc][i]
        opp = conn.s2c if fc else conn.c2s
        if self._ahead(opp, flags, ack):
            # Never captured: the peer saw bytes we did not.
            target = opp.rel(ack)
            if opp.fin_at is not None and target > opp.fin_at:
                target = opp.fin_at
            self._deliver(conn, not fc, opp.skip_to(target), ts)
        self._pop_held(conn, fc, i)

    def _pop_held(self, conn: Connection, from_client: bool, i: int = 0) -> None:
        held = conn.held[from_client]
        hs = conn.c2s if from_client else conn.s2c
        seq, ack, flags, payload, lost, ts = held.pop(i)
        conn.held_bytes -= len(payload)
        # Delivered at its capture time: records say when bytes were on the
        # wire, not when they were released.
        self._deliver(conn, from_client, hs.feed(seq, payload, ts), ts)
        if lost:
            end = hs.rel((seq + len(payload) + lost) & 0xFFFFFFFF)
            self._deliver(conn, from_client, hs.skip_to(end), ts)
        if not held and hs.fin_at is not None:
            self._check_finished(conn, from_client, ts)

    def _check_finished(self, conn: Connection, from_client: bool, now: float) -> None:
        hs = conn.c2s if from_client else conn.s2c
        if hs.finished and not conn.held[from_client]:
            if conn._http is not None:
                conn._http.end(from_client, now)
                self._deliver(conn, from_client, [], now)
            if conn.c2s.finished and conn.s2c.finished and not conn.closed:
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
            for fc in (True, False):
                hs = conn.c2s if fc else conn.s2c
                if hs.pending:
                    conn.http.note(fc, ("memory_ooo_dropped",))
                    self._deliver(conn, fc, hs.close_hole(), now)
            if conn.held[0] or conn.held[1]:
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
        """Finish a connection: skip every hole, deliver everything held,
        end the HTTP session.  ``reason``: anomaly for what it cuts; ``why``:
        their end_reason.  The entry stays (closed) until it lingers out."""
        if conn.closed:
            return
        if conn._http is None and not conn.waiting:
            # Nothing delivered, nothing buffered (a SYN flood's half-open
            # connections): nothing to flush.
            conn.closed = conn.c2s.closed = conn.s2c.closed = True
            self.waiting.discard(conn)
            if self.lru.pop(conn, 0) is None:
                self.closing[conn] = now
            return
        self._release(conn, now, force=True)
        for fc in (True, False):
            hs = conn.c2s if fc else conn.s2c
            self._deliver(conn, fc, hs.close(), now)
        h = conn._http
        if h is not None:
            h.close(reason, now, why)
            self._deliver(conn, True, [], now)
            for name in h.loose:
                self._count(name)
            h.loose = []
        conn.closed = True
        self.waiting.discard(conn)
        self._reaccount(conn)
        if self.lru.pop(conn, 0) is None:
            self.closing[conn] = now

    def _remove(self, conn: Connection) -> None:
        if conn._http is not None and (conn in self.lru or conn in self.closing):
            self.meter.sessions -= 1
        for k in conn.keys:
            entry = self.conns.get(k)
            if entry is not None and entry[0] is conn:
                del self.conns[k]
        self.lru.pop(conn, None)
        self.closing.pop(conn, None)
        self.waiting.discard(conn)

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
        # Holes and held segments that waited long enough.
        for conn in list(self.waiting):
            for fc in (True, False):
                hs = conn.c2s if fc else conn.s2c
                if hs.pending:
                    self._deliver(conn, fc, hs.expire(now), now)
                    if hs.fin_at is not None:
                        self._check_finished(conn, fc, now)
            if conn.held_since is not None and now - conn.held_since >= self.s.gap_timeout_s:
                self._release(conn, now, force=True)
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
        # Bodies are kept again once memory is well under the budget.
        if not self.meter.keep_bodies and self.estimate() < self.budget // 2:
            self.meter.keep_bodies = True
        self._set_http_limit()
        return _in_order(self._take())

    def close_all(self, reason: str | None, now: float) -> list[tuple[Connection, Transaction]]:
        why = "shutdown" if reason == "cut_by_shutdown" else "end_of_input"
        for conn in list(self.lru):
            if reason and conn.open_transactions:
                self._count(reason)
            self._close(conn, reason, now, why)
        for conn in list(self.closing):
            self._remove(conn)
        return _in_order(self._take())


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
