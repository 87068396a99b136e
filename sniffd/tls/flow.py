"""A TLS connection in the flow table: ``TlsSession`` behind the calls the flow table makes of a session.

The flow table (``sniffd.flows``) drives every connection's session with the
same few calls (those of ``sniffd.http.HttpSession``): ``feed`` / ``feed_data``
(bytes, gaps), ``note`` / ``note_at`` (transport anomalies), ``end`` (one
direction's FIN), ``close`` (the connection ended), ``take`` (finished records),
and reads ``pairing.done``, ``loose``, ``open_transactions`` and ``successor``.  ``TlsFlow``
answers them for a connection whose client began with a ClientHello, so that
the flow table needs no second copy of its rules for TLS.  Pure state, like
the session it wraps: fed values and times, it returns values.

One ``TlsRecord`` per connection leaves by ``take()``, written once (the
write-timing rule, README "The TLS record"):

* when the connection ends (FIN, RST, idle timeout, eviction, shutdown, end
  of input): full byte counts and duration, ``end_reason`` as for HTTP;
* or earlier, for a long-lived connection: at the first housekeeping pass
  (``tick``) at least ``EARLY_RECORD_S`` after the handshake was over
  (``TlsSession.done``: both directions encrypted, or given up), with the
  bytes and duration so far and ``end_reason: "open"``.  Nothing more is
  written for that connection (anomalies that come later are counted in the
  stats only).

Memory: what the session buffers (``TlsSession.mem``, a hello or certificate
in progress) is charged to the shared ``Meter`` as HTTP state is, and given
back when the connection ends; the session itself counts as one session
(``Meter.open_session``, made by the flow table).
"""

from __future__ import annotations

from sniffd.budget import Meter
from sniffd.tls.session import TlsSessionC, TlsSessionPy

# A connection still open this long after its handshake was over gets its
# record now, so an operator tailing the log sees a long-lived connection
# (a websocket, a database pool, an h2 connection kept for minutes) within
# seconds, while a short one (most HTTPS exchanges end within a few seconds)
# is written once, at its end, with its full byte counts.
EARLY_RECORD_S = 10.0

# end_reason of a record written while the connection is still open.
OPEN = "open"
# end_reasons for which the closing time is a packet of this connection
# (FIN, RST, a SYN that reused the 4-tuple); otherwise (idle, evicted,
# shutdown, end_of_input) the duration ends at its last byte.
_ENDED_BY_PACKET = frozenset(("fin", "rst", "reused"))


class TlsRecord:
    """One TLS connection's record, as the records stage reads it
    (``sniffd.records.build_tls``)."""

    __slots__ = ("ts", "tls", "duration_ms", "end_reason", "anomalies")

    def __init__(self, ts: float, tls: dict, duration_ms: float, end_reason: str, anomalies: set[str]) -> None:
        self.ts = ts
        self.tls = tls
        self.duration_ms = duration_ms
        self.end_reason = end_reason
        self.anomalies = anomalies


class _Done:
    """``pairing.done``: where the flow table looks for finished records."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done: list[TlsRecord] = []


class _FlowRules:
    """What both TlsFlow classes do the same way, in Python: the flow table's rare
    calls.  Reads and writes ``written``, ``done_at``, ``anomalies`` and calls ``_write``."""

    __slots__ = ()

    # A TLS connection is never handed over to another session (sniffd.handover).
    successor = None

    @property
    def open_transactions(self) -> int:
        """1 while the handshake is in progress: cutting the connection then
        (idle timeout, shutdown, eviction) cuts something worth flagging."""
        return 0 if self.written or self.done_at is not None else 1

    def note(self, from_client: bool, names) -> None:
        if not self.written:
            self.anomalies.update(names)

    def note_at(self, from_client: bool, offset: int, names) -> None:
        if not self.written:
            self.anomalies.update(names)

    def end(self, from_client: bool, now: float, why: str = "fin") -> None:
        """One direction ended (FIN): the record waits for the connection's close."""

    def tick(self, now: float) -> None:
        """A housekeeping pass: write the record of a connection whose
        handshake was over ``EARLY_RECORD_S`` ago (see the module docstring)."""
        if not self.written and self.done_at is not None and now - self.done_at >= EARLY_RECORD_S:
            self._write(OPEN, now)


class TlsFlowPy(_FlowRules):
    """The flow table's session for a TLS connection; see the module docstring.

    The reference implementation, with ``TlsSessionPy``: ``TlsFlow`` does the
    per-segment and per-connection work (``__init__``, ``feed_data``, ``feed``,
    ``close``, ``_write``, ``take``) in C (sniffd/tls/_session.c, type ``Flow``),
    held equal to this by tests/unit/test_tls_session_c.py."""

    __slots__ = ("session", "pairing", "loose", "anomalies", "meter", "charged", "last_ts", "done_at", "written", "starttls")

    session_type = TlsSessionPy

    def __init__(self, meter: Meter | None = None, anomalies=(), starttls: str | None = None) -> None:
        self.session = self.session_type()
        self.pairing = _Done()
        self.loose: list[str] = []  # for the stats only (HttpSession's contract): none here
        # Transport anomalies noted on the connection (and carried from before
        # the ClientHello was recognised); the session's own are added at the end.
        self.anomalies: set[str] = set(anomalies)
        self.meter = meter if meter is not None else Meter()
        self.charged = 0  # bytes of session.mem charged to the meter
        self.last_ts: float | None = None  # time of the last byte either way
        self.done_at: float | None = None  # when the handshake was over (session.done)
        self.written = False
        # The cleartext protocol before the hello (sniffd.tls.starttls), None
        # when the client's stream began with it.
        self.starttls = starttls

    # --- what the flow table calls -----------------------------------------------

    def feed(self, from_client: bool, chunks, now: float, ack: int | None = None) -> None:
        """``HttpSession.feed``'s chunks: bytes (captured at ``now``),
        ``(bytes, ts)`` or ``(bytes, ts, ack)``, or an int (bytes lost)."""
        s = self.session
        for c in chunks:
            cls = c.__class__
            if cls is int:
                s.gap(from_client, c)
            elif cls is tuple:
                s.feed(from_client, c[0], c[1])
                self.last_ts = c[1]
            else:
                s.feed(from_client, c, now)
                self.last_ts = now
        if self.done_at is None:  # after it, nothing is held or charged (TlsSession.mem is 0)
            self._after_feed(now)

    def feed_data(self, from_client: bool, data: bytes, now: float, ack: int | None = None) -> None:
        """``feed`` for one in-order data chunk (the flow table's fast path)."""
        self.session.feed(from_client, data, now)
        self.last_ts = now
        if self.done_at is None:
            self._after_feed(now)

    def close(self, reason: str | None, now: float, why: str = "end_of_input") -> None:
        """The connection ended: write the record unless it was written early.
        ``reason``: the anomaly for what the close cut (idle_timeout,
        cut_by_shutdown, memory_evicted, conn_evicted), put on the record only
        when it cut the handshake; ``why``: the end_reason."""
        if self.written:
            return
        if reason and self.done_at is None:
            self.anomalies.add(reason)
        s = self.session
        end = now if why in _ENDED_BY_PACKET or self.last_ts is None else self.last_ts
        s.close(end)
        self._write(why, end)

    def take(self) -> list[TlsRecord]:
        done = self.pairing.done
        if done:
            self.pairing.done = []
        return done

    # --- internals ----------------------------------------------------------------

    def _after_feed(self, now: float) -> None:
        s = self.session
        mem = s.mem
        if mem != self.charged:
            self.meter.add(mem - self.charged)
            self.charged = mem
        if self.done_at is None and s.done:
            self.done_at = now

    def _write(self, end_reason: str, end: float) -> None:
        s = self.session
        self.written = True
        if self.charged:
            self.meter.http_bytes -= self.charged
            self.charged = 0
        first = s.first_ts if s.first_ts is not None else end
        duration = round(max(0.0, end - first) * 1000.0, 3)
        tls = s.result()
        tls["starttls"] = self.starttls
        self.pairing.done.append(TlsRecord(first, tls, duration, end_reason, self.anomalies | s.anomalies))


if TlsSessionC is None:  # built without a compiler: the reference does it all, slower
    TlsFlow = TlsFlowPy
else:
    from sniffd.tls._session import Flow as _CFlow
    from sniffd.tls._session import flow_setup as _flow_setup

    _flow_setup(TlsSessionC, TlsRecord, _Done, Meter, _ENDED_BY_PACKET)

    class TlsFlow(_CFlow, _FlowRules):  # type: ignore[no-redef]
        """The flow table's session for a TLS connection (see the module docstring):
        ``TlsFlowPy``'s work in C with a ``TlsSessionC`` (~12k CPU instructions
        less per short connection); the rare calls are ``_FlowRules``'."""

        __slots__ = ()
