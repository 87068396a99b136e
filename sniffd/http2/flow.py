"""An HTTP/2 connection in the flow table: ``H2Connection`` behind the calls the flow table makes of a session.

The flow table (``sniffd.flows``) drives every connection's session with the
calls of ``sniffd.http.HttpSession``: ``feed`` / ``feed_data`` (bytes, gaps),
``note`` / ``note_at`` (transport anomalies), ``end`` (one direction's FIN),
``close`` (the connection ended), ``take`` (finished transactions), and reads
``pairing.done``, ``loose``, ``open_transactions`` and ``successor``
(``sniffd.handover``).  ``H2Flow`` answers them for HTTP/2 in clear, as
``sniffd.tls.TlsFlow`` does for TLS, so the flow table needs no second copy
of its rules.  Pure state: fed values and times, it returns values.

Two ways in:

* prior knowledge (``H2Flow(...)``, chosen by ``FlowTable._choose``): the
  client's stream begins with the connection preface (RFC 9113 section
  3.4).  When its first segment holds only the start of the preface
  (``looks_like_h2_preface`` says "more bytes"), or the server spoke first
  with a SETTINGS frame (``looks_like_h2_server_preface``: HTTP/2 servers
  may send theirs at once), the flow *decides*: it
  keeps every call (bytes with their times and acks, gaps, notes, FINs)
  until the client's first 24 bytes are in.  The preface: the calls are
  made on the connection, in order.  Anything else (other bytes, a gap, the
  client's FIN, the close, the server sending more than ``DECIDE_BYTES``
  first): the connection was not HTTP/2, and the flow hands the calls over
  to an HTTP/1 session (``successor = "http1"``): it reads them as if it had
  had them from the start.
* upgrade (``H2Flow.after_upgrade``): an HTTP/1.1 request with ``Upgrade:
  h2c`` answered 101 (``sniffd.http.HttpSession`` hands over): the request
  is stream 1's, the 101 goes to its interim responses, its response comes
  in HTTP/2.

Memory: what the connection holds (``H2Connection.mem``: frame and header
block buffers, HPACK tables, streams, finished transactions not taken yet)
and, while deciding, the calls kept, are charged to the shared ``Meter`` as
HTTP state is, after every call that changes them, and given back as they
go; the session itself counts as one session (``Meter.open_session``, made
by the flow table).  With bodies dropped by the budget (``keep_bodies``
false), the connection stops keeping them (``H2Connection.drop_bodies``).
"""

from __future__ import annotations

from sniffd.budget import SEGMENT_COST, Meter
from sniffd.handover import SWITCH, Handover, Upgrade, unmark, whole_chunk
from sniffd.http.message import Transaction
from sniffd.http2.connection import H2Connection
from sniffd.http2.frames import PREFACE, looks_like_h2_preface
from sniffd.http2.streams import DONE

# While the preface is not complete, the server's bytes are kept too: an
# HTTP/2 server may send its SETTINGS at once (tens of bytes), an HTTP/1
# server says nothing before a request.  Past this many, the client's
# stream is not waiting for its 24th byte but talking to a server that
# talks: not HTTP/2.  The HTTP/1 reader's hold bound (reader.HOLD_BYTES).
DECIDE_BYTES = 64 * 1024


class H2Flow:
    """The flow table's session for an HTTP/2 connection; see the module
    docstring.  ``anomalies``: names for the connection's first stream (noted
    before the session was chosen); ``sticky``: names every record gets (data
    after an accepted RST); ``connect``: the CONNECT tunnel it is carried in
    (``Transaction.connect``); the rest are ``H2Connection``'s arguments."""

    __slots__ = ("conn", "pairing", "meter", "charged", "successor", "deciding", "calls", "head", "held", "sticky",
                 "connect", "pos", "closed")

    def __init__(self, meter: Meter | None = None, *, deciding: bool = False, anomalies=(), sticky=frozenset(),
                 connect: tuple[str | None, int] | None = None, conn: H2Connection | None = None, **kwargs) -> None:
        self.conn = conn if conn is not None else H2Connection(**kwargs)
        # Where the flow table looks for finished transactions
        # (``pairing.done``): the connection's ``done``.
        self.pairing = self.conn
        if anomalies:
            self.conn.carry.update(anomalies)
        self.meter = meter if meter is not None else Meter()
        self.charged = 0  # bytes charged to the meter
        self.successor: str | None = None
        # While deciding: the calls kept, the client's first bytes (up to
        # the preface's length) and the bytes kept (for the meter and the
        # DECIDE_BYTES bound).
        self.deciding = deciding
        self.calls: list[tuple[str, tuple]] = []
        self.head = b""
        self.held = 0
        self.sticky = frozenset(sticky)
        self.connect = connect
        # Each direction's stream offset of the next byte (for note_at).
        self.pos = [0, 0]
        self.closed = False
        self._charge()

    @classmethod
    def after_upgrade(cls, upgrade: Upgrade, meter: Meter | None = None, **kwargs) -> H2Flow:
        """The session for a connection that switched by ``Upgrade: h2c``
        (``sniffd.http.HttpSession.hand_over``).  Feed each direction from
        its first byte after the switch (the handed-over calls)."""
        conn = H2Connection.after_upgrade(upgrade.request, upgrade.switching, first_depth=upgrade.depth, **kwargs)
        if upgrade.anomalies:
            conn.streams[1].txn.anomalies.update(upgrade.anomalies)
        flow = cls(meter, sticky=upgrade.sticky, connect=upgrade.connect, conn=conn)
        flow.pos = [upgrade.request.end_off, upgrade.switching.end_off]
        return flow

    # --- what the flow table calls -----------------------------------------------

    @property
    def open_transactions(self) -> int:
        return len(self.conn.streams) + (1 if self.deciding and self.head else 0)

    @property
    def loose(self) -> list[str]:
        """Anomalies for the stats that touched no stream (one name per time)."""
        return [name for name, n in self.conn.loose.items() for _ in range(n)]

    @loose.setter
    def loose(self, value: list[str]) -> None:
        self.conn.loose = {}
        for name in value:
            self.conn.loose[name] = self.conn.loose.get(name, 0) + 1

    def feed(self, from_client: bool, chunks, now: float, ack: int | None = None) -> None:
        """``HttpSession.feed``'s chunks: bytes (captured at ``now``),
        ``(bytes, ts)`` or ``(bytes, ts, ack)``, or an int (bytes lost)."""
        if self.deciding:
            for k, c in enumerate(chunks):
                self._decide(from_client, c, now, ack)
                if not self.deciding:  # the preface: the rest goes to the connection
                    chunks = chunks[k + 1:]
                    break
            else:
                return
        conn = self.conn
        if conn.keep_bodies and not self.meter.keep_bodies:
            conn.drop_bodies()  # memory budget, step 2 (the streams say so)
        d = 0 if from_client else 1
        for c in chunks:
            cls = c.__class__
            if cls is int:
                conn.gap(from_client, c)
                self.pos[d] += c
            elif cls is tuple:
                conn.feed(from_client, c[0], c[1])
                self.pos[d] += len(c[0])
            else:
                conn.feed(from_client, c, now)
                self.pos[d] += len(c)
        self._charge()

    def feed_data(self, from_client: bool, data: bytes, now: float, ack: int | None = None) -> None:
        """``feed`` for one in-order data chunk (the flow table's fast path)."""
        if self.deciding:
            self._decide(from_client, data, now, ack)
            return
        conn = self.conn
        if conn.keep_bodies and not self.meter.keep_bodies:
            conn.drop_bodies()
        conn.feed(from_client, data, now)
        self.pos[0 if from_client else 1] += len(data)
        self._charge()

    def note(self, from_client: bool, names) -> None:
        if self.deciding:
            self.calls.append(("note", (from_client, names)))
            return
        self.conn.note(from_client, names)

    def note_at(self, from_client: bool, offset: int, names) -> None:
        """Anomalies for the message holding the byte at stream ``offset``:
        bytes not delivered yet go to what comes next (``note``); bytes
        already delivered touched the streams of that direction still in
        progress, or (all finished) no record: counted only."""
        if self.deciding:
            self.calls.append(("note_at", (from_client, offset, names)))
            return
        d = 0 if from_client else 1
        if offset >= self.pos[d]:
            self.conn.note(from_client, names)
            return
        for st in self.conn.streams.values():
            if st.sides[d] is not DONE:
                st.txn.anomalies.update(names)

    def end(self, from_client: bool, now: float, why: str = "fin") -> None:
        if self.deciding:
            self.calls.append(("end", (from_client, now, why)))
            if from_client:
                self._not_h2()  # the client's stream ended short of the preface
            return
        self.conn.end(from_client, now, why)
        self._charge()

    def close(self, reason: str | None, now: float, why: str = "end_of_input") -> None:
        """The connection ended: every open stream is written (``reason``: the
        anomaly for what the close cut; ``why``: their end_reason).  While
        deciding, it was not HTTP/2: handed over (the flow table closes the
        successor itself, FlowTable._close)."""
        if self.deciding:
            self._not_h2()
            return
        self.conn.close(reason, now, why)
        self.closed = True
        self._charge()

    def take(self) -> list[Transaction]:
        if self.successor is not None:
            unmark(self.conn.done)  # the flow table's marker (sniffd.handover), never a record
        done = self.conn.take()
        if done:
            if self.sticky or self.connect is not None:
                for txn in done:
                    txn.anomalies |= self.sticky
                    if self.connect is not None and txn.connect is None:
                        txn.connect = self.connect
            self._charge()
        return done

    def hand_over(self) -> Handover:
        """Not HTTP/2 after all (``successor`` is ``"http1"``): every call
        kept, for the HTTP/1 session to get instead, in order."""
        unmark(self.conn.done)
        calls, self.calls = self.calls, []
        self.held = 0
        self.closed = True
        self._charge()
        return Handover(self.successor, calls)

    # --- internals ----------------------------------------------------------------

    def _decide(self, from_client: bool, chunk, now: float, ack: int | None) -> None:
        """One chunk while the preface is not complete: kept; the client's
        bytes decide as soon as they can (once decided against, everything
        is kept for the successor)."""
        whole = whole_chunk(chunk, now, ack)
        self.calls.append(("feed", (from_client, [whole], now)))
        if self.successor is not None:
            return
        if whole.__class__ is int:
            if from_client:
                self._not_h2()  # the preface's bytes were lost: no telling
            return
        data = whole[0]
        self.held += len(data) + SEGMENT_COST
        if not from_client:
            if self.held > DECIDE_BYTES:
                self._not_h2()
            else:
                self._charge()
            return
        self.head += data[: len(PREFACE) - len(self.head)]
        verdict = looks_like_h2_preface(self.head)
        if verdict is None:
            self._charge()
        elif verdict:
            self._h2()
        else:
            self._not_h2()

    def _h2(self) -> None:
        """The preface is whole: make the kept calls on the connection."""
        self.deciding = False
        calls, self.calls = self.calls, []
        self.held = 0
        for name, args in calls:
            getattr(self, name)(*args)
        self._charge()

    def _not_h2(self) -> None:
        """Not the preface: every call from here on is kept too, for the
        HTTP/1 session the flow table makes at once (``hand_over``)."""
        if self.successor is None:
            self.successor = "http1"
            self.conn.done.append(SWITCH)  # where the flow table looks (sniffd.handover)

    def _charge(self) -> None:
        conn = self.conn
        # Once closed, only the transactions not taken yet are held: the
        # buffers and HPACK tables go with the session.
        mem = (conn.stream_mem if self.closed else conn.mem) + self.held
        if mem != self.charged:
            self.meter.add(mem - self.charged)
            self.charged = mem
