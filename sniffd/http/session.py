"""The HTTP/1.x session of one connection (stateful, sans-I/O): two byte
streams in, paired transactions out.  This is the HTTP stage's whole
interface to the flow table.

Call order:

1. ``feed(from_client, chunks, now, ack)`` with each direction's reassembled
   chunks as they become available: ``bytes`` (arrived with the segment
   whose acknowledgement, as an offset in the other direction's stream, is
   ``ack``, or None), ``(bytes, ts, ack)`` for data that waited in the
   reassembly buffer, ``int`` for a gap of that many bytes.
   ``feed_data(from_client, data, now, ack)`` is the same for one chunk.
2. ``note(from_client, names)`` puts transport anomalies on the transaction
   that direction is carrying (or the next one).
3. ``end(from_client, now, why)`` when a direction is finished (FIN/RST).
4. ``close(reason, now, why)`` when the connection is over.
5. ``take()`` returns the finished transactions, in the connection's order.

Two ``MessageReader``s frame the directions, a ``Pairing`` pairs them; this
class holds the connection's mode and moves it along ``TRANSITIONS``.

Hand-over (``sniffd.handover``).  When the connection turns out to be
another session's from some point on, the session sets ``successor`` (the
protocol, e.g. ``"h2c"``) during the ``feed`` that found it, keeps every
byte that follows unparsed, and gives it all with ``hand_over()``, which
the flow table calls as soon as that ``feed`` returns.  Today one switch
hands over: an HTTP/1.1 request with ``Upgrade: h2c`` answered ``101``
(``Mode.HANDOVER``; RFC 7540 section 3.2): the request and the 101 go to
the HTTP/2 session as stream 1, the client's bytes after the request (the
preface) and the server's after the 101's head to its reader.  Every other
switch (websocket, a CONNECT tunnel that is not HTTP) is ``Mode.TUNNEL``:
nothing more is parsed.
"""

from __future__ import annotations

import enum
import re
import weakref

from sniffd.budget import Meter
from sniffd.handover import SWITCH, Handover, Upgrade, unmark
from sniffd.http import syntax
from sniffd.http.message import Message, Transaction
from sniffd.http.pairing import Pairing, expects_continue
from sniffd.http.reader import GIVEN, HELD, OFF, PEEK, MessageReader
from sniffd.http.syntax import CLOSE, LENGTH, NONE


class Mode(enum.Enum):
    HTTP = "http"  # both directions are parsed as HTTP
    UPGRADING = "upgrading"  # a request asked to switch (Upgrade, CONNECT): its client bytes wait for the answer
    PROBING = "probing"  # CONNECT was answered 2xx: the tunnel's first bytes decide what it carries
    TUNNEL = "tunnel"  # another protocol: nothing more is parsed
    HANDOVER = "handover"  # another session reads the connection from here (h2c): what follows is kept for it
    NON_HTTP = "non_http"  # neither direction ever looked like HTTP


class Event(enum.Enum):
    ASK_UPGRADE = "a request asked to switch protocols (Upgrade, CONNECT)"
    DECLINED = "the answer was not 101 / a 2xx to CONNECT"
    SWITCHED = "101 Switching Protocols"
    SWITCHED_H2C = "101 Switching Protocols to a request with Upgrade: h2c"
    CONNECTED = "CONNECT answered 2xx"
    TUNNEL_HTTP = "the client's first tunnel bytes are an HTTP request"
    TUNNEL_OPAQUE = "the tunnel carries something else (TLS, or the server spoke first)"
    NOT_HTTP = "neither direction looks like HTTP"


M, E = Mode, Event
# The connection's mode machine (h11's _state.py is the model): every
# allowed move, and nothing else.  A 101 may come without an Upgrade
# request (a broken client): HTTP --SWITCHED--> TUNNEL as well.  Only a
# 101 that answers the request asking for h2c hands over (HANDOVER is final:
# the session is replaced, sniffd.handover); stream 1 needs that request.
TRANSITIONS: dict[tuple[Mode, Event], Mode] = {
    (M.HTTP, E.ASK_UPGRADE): M.UPGRADING,
    (M.UPGRADING, E.DECLINED): M.HTTP,
    (M.UPGRADING, E.SWITCHED): M.TUNNEL,
    (M.UPGRADING, E.SWITCHED_H2C): M.HANDOVER,
    (M.HTTP, E.SWITCHED): M.TUNNEL,
    (M.UPGRADING, E.CONNECTED): M.PROBING,
    (M.PROBING, E.TUNNEL_HTTP): M.HTTP,
    (M.PROBING, E.TUNNEL_OPAQUE): M.TUNNEL,
    (M.HTTP, E.NOT_HTTP): M.NON_HTTP,
    (M.UPGRADING, E.NOT_HTTP): M.NON_HTTP,
}

# The first bytes of an HTTP request (in a tunnel): empty lines, a token, a
# space or tab.
_NO_BODY = (NONE, 0, False)
# How a message ended (reader) -> the end_reason of the record it ends.
_END_REASONS = {"complete": "complete", "close": "complete", "gap": "gap", "error": "parse_error",
                "limit": "header_limit"}
# The anomaly-name sets below are rarely filled (gaps, pickups, RST):
# each starts as this shared empty frozenset and is replaced, never
# mutated, when names arrive.  Five empty sets were 1 KiB of every idle
# session (tracemalloc, CPython 3.11), a fifth of an idle connection.
_NO_NAMES: frozenset[str] = frozenset()


def _tokens(value: str | None) -> list[str]:
    """An Upgrade field's protocols, lower-cased (RFC 9110 section 7.8)."""
    return [t.strip().lower() for t in value.split(",")] if value else []


def _to_h2c(request: Message, switching: Message) -> bool:
    """Did this 101 switch to HTTP/2 in clear?  The 101's Upgrade field
    names the protocol switched to; a 101 without one (servers must send
    it) switched to what was asked if only h2c was."""
    answered = _tokens(switching.headers.get("upgrade"))
    if answered:
        return "h2c" in answered and "h2c" in _tokens(request.headers.get("upgrade"))
    return _tokens(request.headers.get("upgrade")) == ["h2c"]


_REQUEST_START = re.compile(rb"[\r\n]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]")
_TOKEN_PREFIX = re.compile(rb"[\r\n]*[!#$%&'*+\-.^_`|~0-9A-Za-z]*\Z")


class HttpSession:
    def __init__(self, max_pending_requests: int = 100, max_header_bytes: int = 65536,
                 max_header_count: int = 256, midstream: bool = False, max_uri_bytes: int = 8192,
                 meter: Meter | None = None, bodies=None) -> None:
        self.meter = meter if meter is not None else Meter()
        # sniffd.bodies.BodyCapture when bodies are captured, else None.
        self.bodies = bodies
        self.midstream = midstream
        limits = dict(max_header_bytes=max_header_bytes, max_header_count=max_header_count,
                      max_uri_bytes=max_uri_bytes, meter=self.meter, bodies=bodies, midstream=midstream)
        # The readers call back through a weak proxy: a strong reference
        # would make session <-> reader cycles, which only the cyclic GC
        # frees, and sniffd drops sessions by the hundred thousand (floods,
        # evictions).  Without the cycle a session, its readers and their
        # buffers are freed the moment the connection leaves the table
        # (tests/unit/test_http.py test_session_leaves_no_cycle).
        me = weakref.proxy(self)
        self.req = MessageReader(True, me, **limits)
        self.resp = MessageReader(False, me, **limits)
        self.pairing = Pairing(max_pending_requests, midstream, self.meter)
        self.mode = Mode.HTTP
        self.now = 0.0
        # Why messages finished by the operation in progress end (end(),
        # close()): becomes a transaction's end_reason.
        self.ending: str | None = None
        # Anomalies waiting for the next transaction of each direction, and
        # for the next stretch of client bytes lost between requests.
        self.carry: list[frozenset[str]] = [_NO_NAMES, _NO_NAMES]
        self.lost_names: frozenset[str] = _NO_NAMES
        # The same for server bytes lost between responses while nothing
        # waited for one: whose they were is known at the next status line.
        self.resp_lost_names: frozenset[str] = _NO_NAMES
        # Bytes were skipped before the next message of that direction:
        # 0 no, 1 at a mid-stream pickup, 2 junk (later records say resumed).
        self.resync_pending = [0, 0]
        # A parse error or junk was seen: every transaction begun from now on
        # says so (http_resumed; see ``_resume`` for those already queued).
        self.resumed = False
        self.non_http = False
        # The CONNECT transaction whose tunnel is being probed, and once the
        # tunnel carries HTTP, (target, trans_depth) for the records in it.
        self.connect_txn: Transaction | None = None
        self.tunnel: tuple[str | None, int] | None = None
        # The request that asked to switch protocols.
        self.upgrade_txn: Transaction | None = None
        # Anomalies every transaction of this session carries (the flow
        # table's: data sent after an accepted RST).
        self.sticky: frozenset[str] = _NO_NAMES
        # Hand-over (module docstring): the protocol of the session that
        # reads the connection from here, None while it is this one's, and
        # the transaction that switched.
        self.successor: str | None = None
        self.switched: Transaction | None = None
        # For successor "tls": the protocol spoken so far ("http" after a
        # CONNECT or a 101, None when it was not HTTP).
        self.cleartext: str | None = None

    # ---------------------------------------------------------- public

    @property
    def done(self) -> list[Transaction]:
        return self.pairing.done

    @property
    def loose(self) -> list[str]:
        """Anomalies for the stats that touch no transaction."""
        return self.pairing.loose

    @loose.setter
    def loose(self, value: list[str]) -> None:
        self.pairing.loose = value

    @property
    def open_transactions(self) -> int:
        p = self.pairing
        return len(p.pending) + len(p.held) + (self.req.msg is not None) + (self.resp.msg is not None)

    def feed(self, from_client: bool, chunks, now: float, ack: int | None = None) -> None:
        reader = self.req if from_client else self.resp
        for c in chunks:
            if reader.state is OFF:
                return
            cls = c.__class__
            if cls is int:
                reader.gap(c)
            elif cls is tuple:
                if len(c) == 3:
                    data, ts, a = c
                else:
                    (data, ts), a = c, ack
                self.now = ts
                reader.feed(data, ts, a)
            else:
                self.now = now
                reader.feed(c, now, ack)

    def feed_data(self, from_client: bool, data: bytes, now: float, ack: int | None = None) -> None:
        """``feed`` for one in-order data chunk (the flow table's fast path)."""
        self.now = now
        (self.req if from_client else self.resp).feed(data, now, ack)

    def note(self, from_client: bool, names) -> None:
        reader = self.req if from_client else self.resp
        msg = reader.msg
        txn = msg.txn if msg is not None else None
        if txn is None and not from_client:
            if "tcp_gap" in names:
                # Which waiting request the lost bytes may answer is known
                # once the reader finds where they end (lost()).
                self.resp_lost_names = self.resp_lost_names.union(names)
                return
            if self._to_unanswered(names):
                return
        if txn is not None:
            txn.anomalies.update(names)
        elif from_client and "tcp_gap" in names:
            # Client bytes lost between requests: the gap belongs to the
            # requests it may have held (the pairing's Lost marker), not to
            # the next request, which came whole.
            self.lost_names = self.lost_names.union(names)
        else:
            self._carry(0 if from_client else 1, names)

    def _carry(self, side: int, names) -> None:
        """Anomalies for the next transaction of that direction."""
        self.carry[side] = self.carry[side].union(names)

    def _to_unanswered(self, names, before: int | None = None) -> bool:
        """Server bytes answer the queue in order: put ``names`` on the first
        request without a response, or on a lost stretch of requests none
        of whose answers came yet (its responses carry its anomalies).
        ``before``: the server bytes concerned end there; a request sent
        once the client had them all (its ack) is answered after them.
        Answers held undecided answer the first requests waiting, or their
        requests were lost (which those will say): those are passed."""
        pending = self.pairing.pending
        held = len(self.pairing.held)
        for i, e in enumerate(pending):
            if e.__class__ is Transaction:
                if e.response is None:
                    if before is not None and e.request.ack is not None and e.request.ack >= before:
                        return False
                    if held:
                        held -= 1
                        continue
                    e.anomalies.update(names)
                    if before is not None:
                        self._to_continues(pending[i + 1:], names, before)
                    return True
            elif not e.answered:
                e.anomalies.update(names)
                return True
        return False

    @staticmethod
    def _to_continues(waiting, names, before: int) -> None:
        """Requests queued behind the one the lost server bytes answer,
        sent before those bytes all came, that asked for a 100 Continue:
        theirs may have been lost in them too."""
        for e in waiting:
            if e.__class__ is not Transaction or e.response is not None:
                continue
            q = e.request
            if q.ack is not None and q.ack >= before:
                return
            if expects_continue(q):
                e.anomalies.update(names)

    def note_at(self, from_client: bool, offset: int, names) -> None:
        """Put anomalies on the transaction whose message of that direction
        holds the byte at stream ``offset`` (a copy of it disagreed with the
        one delivered).  A message already written is left as it is: the
        anomaly is counted, never put on a transaction it did not touch."""
        reader = self.req if from_client else self.resp
        msg = reader.msg
        if msg is not None and msg.start_off <= offset:
            msg.txn.anomalies.update(names)
            return
        if offset >= reader.pos:
            self._carry(0 if from_client else 1, names)  # not delivered yet
            return
        p = self.pairing
        for t in list(p.pending) + p.held:
            m = (t.request if from_client else t.response) if t.__class__ is Transaction else None
            if m is not None and m.start_off <= offset and (m.end_off is None or offset < m.end_off):
                t.anomalies.update(names)
                return

    def end(self, from_client: bool, now: float, why: str = "fin") -> None:
        """That direction will carry no more data (FIN or RST); ``why`` is
        the end_reason of a transaction this finishes."""
        self.now = now
        self.ending = why
        reader = self.req if from_client else self.resp
        if not from_client:
            self.req.finish_09()
        reader.end()
        if self.mode is Mode.PROBING and self.connect_txn is not None:
            self._probe()
        self._check_non_http()
        self.ending = None

    def close(self, reason: str | None, now: float, why: str = "end_of_input") -> None:
        """Finish every open transaction; ``reason`` is an anomaly name for
        transactions cut by it (idle_timeout, cut_by_shutdown, conn_evicted,
        memory_evicted) or None for a normal end; ``why`` their end_reason."""
        self.now = now
        for reader in (self.req, self.resp):
            if reader.msg is not None and reason:
                reader.msg.txn.anomalies.add(reason)
        self.end(True, now, why)
        self.end(False, now, why)
        if self.resp_lost_names:
            # Server bytes lost up to the end: the first request waiting.
            names, self.resp_lost_names = self.resp_lost_names, _NO_NAMES
            self._to_unanswered(names)
        if self.connect_txn is not None:
            txn, self.connect_txn = self.connect_txn, None
            self.pairing.finish(txn, "complete")
        self.pairing.close(reason, why)

    def hand_over(self) -> Handover:
        """What the successor needs (module docstring; call once, when
        ``successor`` is set): the upgrade request and its 101, and in order
        the anomalies waiting for the next message of each direction and
        each direction's bytes from the switch on (``MessageReader.hand_off``:
        the client's held since the request, the server's since the 101's
        head, whole).  Parses nothing more; transactions finished before the
        switch are still taken (``take``), the upgrade request's excepted:
        it is the successor's."""
        unmark(self.pairing.done)
        if self.successor == "tls":
            return self._hand_over_tls()
        txn, self.switched = self.switched, None
        request, switching = txn.request, txn.response
        calls: list[tuple[str, tuple]] = []
        for side, names in ((True, self.carry[0] | self.lost_names), (False, self.carry[1] | self.resp_lost_names)):
            if names:
                calls.append(("note", (side, names)))
        self.carry = [_NO_NAMES, _NO_NAMES]
        self.lost_names = self.resp_lost_names = _NO_NAMES
        for side, reader, start in ((True, self.req, request.end_off), (False, self.resp, switching.end_off)):
            chunks = reader.hand_off(start)
            if chunks:
                calls.append(("feed", (side, chunks, reader.now)))
        # The two messages leave this session: their memory leaves the meter
        # here (the successor counts what it keeps), their link to the
        # transaction goes (no cycle).
        for msg in (request, switching):
            msg.txn = None
            if not msg.released:
                self.meter.http_bytes -= msg.mem
                msg.released = True
        # Nothing else can wait for an answer (the client held its bytes
        # from the upgrade request on): write what the pairing still holds.
        self.pairing.close(None, "complete")
        upgrade = Upgrade(request, switching, self.pairing.finished + 1, frozenset(txn.anomalies), self.tunnel,
                          self.sticky)
        return Handover(self.successor, calls, upgrade)

    def take(self) -> list[Transaction]:
        """Finished transactions, oldest first; their memory leaves the
        meter here, the one place every transaction leaves the session.

        A transaction whose response is over while its request is still
        being read (a server that answers before the upload ends: 413, 401,
        an early 200) stays here, and every later one behind it, until the
        request ends: the rest of the request (its body, trailers, the
        anomalies a gap or the end of the connection put on it) belongs to
        that record, and the reader still needs the message's link to its
        transaction."""
        done = self.pairing.done
        if not done:
            return done
        if self.successor is not None:
            unmark(done)  # the flow table's marker (sniffd.handover), never a record
            if not done:
                return done
        reading = self.req.msg
        if reading is not None and reading.txn is not None and reading.txn.depth:
            # Finished (depth given) while its request is being read.
            k = done.index(reading.txn)
            if k == 0:
                return []
            done, self.pairing.done = done[:k], done[k:]
        else:
            self.pairing.done = []
        freed = 0
        busy = (self.req.msg, self.resp.msg)
        for txn in done:
            for msg in (txn.request, txn.response):
                if msg is not None:
                    # Break the message <-> transaction cycle: the records
                    # stage needs neither link, and a cycle would wait for
                    # the garbage collector.  A message still being read (a
                    # request whose response came first) keeps its link
                    # until it ends (end_message).
                    if msg is not busy[0] and msg is not busy[1]:
                        msg.txn = None
                    if not msg.released:
                        freed += msg.mem
                        msg.released = True
        if freed:
            self.meter.http_bytes -= freed
        return done

    # ------------------------------------------------------- the mode

    def _to(self, event: Event) -> None:
        try:
            self.mode = TRANSITIONS[(self.mode, event)]
        except KeyError:
            raise AssertionError(f"HTTP session: no move from {self.mode} on {event}") from None

    # ------------------------------------ reader callbacks (see reader.py)

    def begin(self, reader: MessageReader, msg: Message) -> None:
        side = 0 if reader.is_request else 1
        if reader.is_request:
            # The client's next request says how much of the response it
            # had: that may settle a response peeked at (a lost HEAD).
            if self.resp.state is PEEK and msg.ack is not None:
                self.resp.peek_evidence(msg.ack)
            txn = self.pairing.request(msg)
        else:
            self.req.finish_09()
            if self.req.lost_from is not None and self.req.skipping_after_gap():
                self.pairing.lost_junk()  # the lost requests' stretch goes on with the rest of a body
            txn, _certain = self.pairing.response(msg)
        carry = self.carry[side]
        if carry:
            txn.anomalies |= carry
            self.carry[side] = _NO_NAMES
        if self.resumed and (reader.is_request or txn.request is None):
            # A transaction begun after the resumption.  A response paired
            # with a queued request is not: that transaction's place is its
            # request's, and ``_resume`` flagged it if it is a later one.
            txn.anomalies.add("http_resumed")
        skipped = self.resync_pending[side]
        if skipped:
            self.resync_pending[side] = 0
            txn.anomalies.add("http_resync")
            if skipped == 2:
                self._resume(txn)
        if self.tunnel is not None and txn.connect is None:
            txn.connect = self.tunnel
        if self.sticky:
            txn.anomalies |= self.sticky

    def framing(self, reader: MessageReader, msg: Message) -> tuple[int, int, bool]:
        txn = msg.txn
        headers = msg.headers
        if reader.is_request and msg.method == "CONNECT":
            # A CONNECT request has no content (RFC 9110 section 9.3.6),
            # whatever framing fields it carries: what follows its head is
            # the tunnel's, or the next request's if it is refused.
            return _NO_BODY
        if "transfer-encoding" not in headers and msg.odd is None:
            # The common message: no Transfer-Encoding, no Content-Length or
            # a plain one.  Everything else takes syntax's full rules below.
            cl = headers.get("content-length")
            if reader.is_request:
                if cl is None:
                    return _NO_BODY
                if cl.isascii() and cl.isdigit() and (cl[0] != "0" or cl == "0") and len(cl) < 19:
                    n = int(cl)
                    return (LENGTH, n, False) if n else _NO_BODY
            elif cl is not None and not txn.held and txn.request is not None:
                status = msg.status
                method = txn.request.method
                if (status is not None and 200 <= status and status != 204 and status != 304 and method != "HEAD"
                        and method != "CONNECT" and cl.isascii() and cl.isdigit() and (cl[0] != "0" or cl == "0")
                        and len(cl) < 19):
                    n = int(cl)
                    return (LENGTH, n, False) if n else _NO_BODY
        if reader.is_request:
            kind, length, flags = syntax.request_framing(msg.headers, msg.odd)
            if flags:
                txn.anomalies.update(flags)
            return kind, length, False
        if msg.version == "0.9" and msg.status is None and not msg.headers:
            return CLOSE, 0, False  # an HTTP/0.9 response: to the close
        status = msg.status
        req = txn.request
        if status == 101:
            return NONE, 0, False
        if req is None or txn.held:
            kind, length, flags = syntax.response_framing(msg.headers, msg.odd, status, False)
            if flags:
                txn.anomalies.update(flags)
            # The request is not known: a body only if no status line follows.
            return kind, length, kind != NONE
        if req.method == "CONNECT" and status is not None and 200 <= status < 300:
            return NONE, 0, False  # a tunnel (RFC 9110 section 9.3.6)
        kind, length, flags = syntax.response_framing(msg.headers, msg.odd, status, req.method == "HEAD")
        if flags:
            txn.anomalies.update(flags)
        return kind, length, False

    def end_message(self, reader: MessageReader, msg: Message, how: str) -> None:
        txn = msg.txn
        if txn.depth:
            msg.txn = None  # its transaction was already written (see take)
            return
        if reader.is_request:
            if how == "complete" and (msg.method == "CONNECT" or "upgrade" in msg.headers):
                if self.mode is Mode.HTTP:
                    self.upgrade_txn = txn
                    self._to(Event.ASK_UPGRADE)
                    reader.hold()
            return
        status = msg.status
        if how == "complete" and status is not None and 100 <= status < 200 and status != 101:
            self.meter.http_bytes -= msg.mem
            msg.mem = 0
            self.pairing.interim_done(txn)
            return
        why = _END_REASONS.get(how) or self.ending or "end_of_input"
        if txn.end_reason is None:
            txn.end_reason = why
        req = txn.request if not txn.held else None
        if how == "complete" and status == 101:
            if self.mode is Mode.UPGRADING and req is not None and txn is self.upgrade_txn and _to_h2c(req, msg):
                self._hand_over_h2c(txn)
                return
            txn.anomalies.add("http_upgrade")
            self.pairing.response_done(txn, why)
            self._switch(Event.SWITCHED)
            return
        if how == "complete" and req is not None and req.method == "CONNECT" and status is not None \
                and 200 <= status < 300 and self.mode is Mode.UPGRADING:
            # Written once the tunnel's first bytes say what it carries.
            if txn in self.pairing.pending:
                self.pairing.pending.remove(txn)
            self.connect_txn = txn
            self._to(Event.CONNECTED)
            self.resp.hold()
            self._probe()
            return
        self.pairing.response_done(txn, why)
        if self.mode is Mode.UPGRADING and req is not None and req is (self.upgrade_txn.request
                                                                     if self.upgrade_txn else None):
            self.upgrade_txn = None
            self._to(Event.DECLINED)
            self.req.release()

    def lost(self, reader: MessageReader, start: int, end: int, whole: bool = False, junk: bool = False) -> None:
        """Bytes [start, end) of ``reader``'s direction were lost (``whole``:
        from a message's end; ``junk``: the rest of a message was skipped
        after them, up to ``end``)."""
        if reader.is_request:
            names, self.lost_names = self.lost_names, _NO_NAMES
            self.pairing.lost_requests(start, end, names, whole, junk)
        else:
            self.pairing.lost_responses(start, end, whole, junk)
            names, self.resp_lost_names = self.resp_lost_names, _NO_NAMES
            if names:
                if whole:
                    # Lost from a message's end to the next status line:
                    # whole responses were lost, answering what waits first
                    # among the requests sent before those bytes all came
                    # (none: they answered requests lost too, no record).
                    self._to_unanswered(names, end)
                elif not self._to_unanswered(names):
                    self._carry(1, names)  # the next response lost its start

    def junk(self, reader: MessageReader, n: int, resumed: bool) -> None:
        side = 0 if reader.is_request else 1
        self.resync_pending[side] = max(self.resync_pending[side], 2 if resumed else 1)

    def desync(self, reader: MessageReader, msg: Message) -> None:
        """``msg`` could not be parsed (to its end): every later record says so."""
        self._resume(msg.txn)

    def _resume(self, txn: Transaction) -> None:
        """``txn`` had a parse error, a broken body or junk before it: every
        record after it on the connection says parsing resumed.  Those are
        the transactions begun from now on (``begin``) and the requests
        already queued behind it (pipelined), not the ones queued before it,
        whose responses may well begin later: they are earlier records."""
        self.resumed = True
        pending = self.pairing.pending
        try:
            later = pending[pending.index(txn) + 1 :]
        except ValueError:
            later = pending  # it is finished: all that still waits comes after it
        for e in later:
            if e.__class__ is Transaction:
                e.anomalies.add("http_resumed")

    def not_http(self, reader: MessageReader) -> None:
        self._check_non_http()

    def expects_09(self, reader: MessageReader) -> bool:
        """Is the next response an answer to an HTTP/0.9 request?"""
        for e in self.pairing.pending:
            if e.__class__ is Transaction and e.response is None:
                req = e.request
                return req is not None and req.version == "0.9"
        return False

    def keep_body(self, reader: MessageReader, msg: Message, data: bytes) -> None:
        buf = msg.body
        before = buf.held_bytes
        meter = self.meter
        if not meter.keep_bodies:
            # Memory budget step 2: stop keeping bodies, free this one now.
            msg.body = None
            msg.body_truncated = True
            msg.txn.anomalies.add("memory_bodies_dropped")
            msg.mem -= before
            meter.http_bytes -= before
            return
        buf.feed(data)
        grown = buf.held_bytes - before
        if grown and not msg.released:
            msg.mem += grown
            meter.add(grown)

    def held_data(self, reader: MessageReader) -> None:
        if self.mode is Mode.PROBING:
            self._probe()

    def held_gap(self, reader: MessageReader) -> None:
        if self.mode is Mode.PROBING:
            self._open_tunnel(False)
        else:
            reader.hold()  # what was held is cut: start again after the gap

    # ------------------------------------------------------------ tunnels

    def _probe(self) -> None:
        """CONNECT was answered 2xx: decide from the first tunnel bytes."""
        first = self.req.held()
        if not first:
            if self.resp.held():
                self._open_tunnel(False)  # the server spoke first
            return  # nothing yet (a tunnel that carried nothing is no upgrade)
        if _REQUEST_START.match(first):
            self._open_tunnel(True)
        elif len(first) < 64 and _TOKEN_PREFIX.match(first) and self.req.state is HELD:
            return  # maybe a method, not complete yet
        else:
            self._open_tunnel(False)

    def _open_tunnel(self, http: bool) -> None:
        txn, self.connect_txn = self.connect_txn, None
        self.upgrade_txn = None
        if not http:
            if txn is not None:
                txn.anomalies.add("http_upgrade")
                self.pairing.finish(txn, txn.end_reason)
            self._switch(Event.TUNNEL_OPAQUE)
            return
        self._to(Event.TUNNEL_HTTP)
        if txn is not None:
            self.pairing.finish(txn, txn.end_reason)
            req = txn.request
            self.tunnel = (req.uri if req is not None else None, txn.depth)
        self.resp.release()
        self.req.release()

    def _hand_over_h2c(self, txn: Transaction) -> None:
        """The 101 answered ``Upgrade: h2c``: HTTP/2 from the next byte on
        in both directions (RFC 7540 section 3.2), read by the successor.
        Both readers keep what follows whole (``give``: the client's held
        bytes since the request, the server's from the rest of this
        segment on) until the flow table calls ``hand_over``, right after
        this feed.  The transaction is the successor's stream 1: it leaves
        the pairing unwritten."""
        if txn in self.pairing.pending:
            self.pairing.pending.remove(txn)
        self.upgrade_txn = None
        self.switched = txn
        self._to(Event.SWITCHED_H2C)
        self.successor = "h2c"
        self.pairing.done.append(SWITCH)
        self.req.give()
        self.resp.give()

    def _switch(self, event: Event) -> None:
        """Another protocol from here on: parse nothing more; what follows
        goes to the TLS watch (``_give_to_tls``)."""
        self._to(event)
        self._give_to_tls("http")
        self.loose.append("http_upgrade")

    def _give_to_tls(self, cleartext: str | None) -> None:
        """The connection is not HTTP from here: hand it over to
        ``sniffd.tls.starttls.TlsWatch`` (successor ``"tls"``), which looks
        for a TLS ClientHello in what follows (a CONNECT tunnel's, STARTTLS,
        ...).  Both readers keep what comes, whole (``give``), from the held
        bytes on, until the flow table calls ``hand_over``."""
        self.successor = "tls"
        self.pairing.done.append(SWITCH)
        self.cleartext = cleartext
        self.req.give()
        self.resp.give()

    def _hand_over_tls(self) -> Handover:
        """``hand_over`` for successor ``"tls"``: each direction's bytes from
        the switch on; what the pairing still holds is written now (this
        session will not be closed: its successor will)."""
        calls: list[tuple[str, tuple]] = []
        for side, reader in ((True, self.req), (False, self.resp)):
            given = reader.given if reader.state is GIVEN and reader.given else []
            chunks = reader.hand_off(reader.pos - sum(c if c.__class__ is int else len(c[0]) for c in given))
            if chunks:
                calls.append(("feed", (side, chunks, reader.now)))
        self.pairing.close(None, "complete")
        return Handover("tls", calls, None, self.cleartext)

    def tls_after_09(self, reader: MessageReader) -> bool:
        """The client's next message starts like a TLS record, and nothing on
        the connection was HTTP/1.x: what looked like HTTP/0.9 was another
        protocol's cleartext before STARTTLS (an HTTP/0.9 connection carries
        one request, and the server closes it after the answer: RFC 1945
        section 1.3), so those guesses are dropped, not written, and the
        connection goes to the TLS watch."""
        if self.resp.v1 or self.mode is not Mode.HTTP:
            return False
        p = self.pairing
        freed = 0
        for txn in p.pending + p.held + p.done:
            if txn.__class__ is Transaction:
                for msg in (txn.request, txn.response):
                    if msg is not None and not msg.released:
                        freed += msg.mem
                        msg.released = True
        self.meter.http_bytes -= freed
        p.pending, p.held, p.done = [], [], []
        self.non_http = True
        self.loose.append("non_http")
        self._to(Event.NOT_HTTP)
        self._give_to_tls(None)
        return True

    def _check_non_http(self) -> None:
        """Neither direction ever looked like HTTP: give the connection up."""
        if self.non_http or self.req.good or self.resp.good:
            return
        verdicts = (self.req.verdict, self.resp.verdict)
        if False not in verdicts:
            return
        other_open = any(v is None and r.state is not OFF and r.seen == 0 for v, r in
                         zip(verdicts, (self.req, self.resp)))
        if None in verdicts and other_open:
            return  # the other direction has said nothing yet
        if None in verdicts and any(r.seen and r.state is not OFF for r in (self.req, self.resp)
                                    if r.verdict is None):
            return
        self.non_http = True
        self.loose.append("non_http")
        if self.mode in (Mode.HTTP, Mode.UPGRADING):
            self._to(Event.NOT_HTTP)
        self._give_to_tls(None)
