"""Which request each response answers (pure, no I/O).

HTTP/1.1 answers requests in order (RFC 9112 section 9.3.2), so pairing is a
queue: a response answers the oldest request still waiting.  That is all
there is to it while the capture is whole.  When bytes were lost, the queue
alone mispairs every later transaction (a lost request makes each response
answer the request after its own), so the pairing also reads the TCP
acknowledgements every message carries (``Message.ack``):

* a request's first segment acknowledges the server bytes the client had
  received when it sent it: a response that *starts* before that point was
  (at least partly) received before the request was sent, so it answers an
  earlier request;
* a response's first segment acknowledges the client bytes the server had
  received before it answered: a response whose ack does not reach past a
  request's first byte cannot answer that request.

Lost stretches of the client's stream that may hold requests are queued as
``Lost`` markers between the known requests; lost stretches of the server's
stream are kept in ``server_lost``.  A response whose request the marks pin
down is paired at once; one whose request was provably lost is written with
``request: null``; where the marks allow two answers (requests pipelined
together and lost in part), the response is *held* and the window resolved at
the next *checkpoint*: a request sent right after the client received a
complete response (its ack is that response's end) that the server sent
after receiving everything before the request.  At a checkpoint every
request before it has been answered by the responses before it, so counting
the held responses against the known requests places the lost ones exactly.
A window that never reaches a checkpoint is written unpaired, flagged
``pairing_uncertain``: sniffd does not guess.

The one assumption: a client does not send a request after receiving a
complete response while an older request of its own is still unanswered
("rolling" pipelining); pipelining in batches, as clients that pipeline do,
is fine.

Call order (the session's): ``request(msg)`` when a request's start line
is read; ``lost_requests`` / ``lost_responses`` when a gap broke framing in
that direction; ``response(msg)`` when a status line is read, then
``response_done(txn)`` (or ``interim_done``) when the response is over;
``close(...)`` at the end; ``done`` collects finished transactions in the
connection's order.
"""

from __future__ import annotations

from sniffd.budget import RESP_END_COST
from sniffd.http.message import Message, Transaction

# How many recent response ends (and stretches of lost server bytes) are
# remembered for the checkpoints: a few dozen responses back is far more
# than any client pipelines.
_RECENT = 64


def expects_continue(req: Message) -> bool:
    """Did the request ask for a 100 Continue (``Expect: 100-continue``)?"""
    return "100-continue" in str((req.headers or {}).get("expect", "")).lower()


class Lost:
    """Client bytes [start, end) lost where requests may have been, and the
    transport anomalies of that loss (for the responses to those requests).
    ``whole``: the stretch began where a message ended and the next request
    line began right where it ended, so it held at least one request;
    ``junk``: the rest of a request (a body) was skipped after the lost
    bytes; ``answered``: how many responses were paired to it."""

    __slots__ = ("start", "end", "anomalies", "whole", "junk", "answered")

    def __init__(self, start: int, end: int, anomalies=(), whole: bool = False, junk: bool = False) -> None:
        self.start = start
        self.end = end
        self.anomalies = set(anomalies)
        self.whole = whole
        self.junk = junk
        self.answered = 0

    def __repr__(self) -> str:  # for test failure messages
        return f"Lost({self.start}, {self.end})"


class Pairing:
    def __init__(self, max_pending: int = 100, midstream: bool = False, meter=None) -> None:
        self.max_pending = max_pending
        self.midstream = midstream
        # The memory budget's sniffd.budget.Meter (None: not counted).
        self.meter = meter
        # Requests awaiting their response (Transactions) and Lost markers,
        # oldest first.  A transaction whose response is being read stays
        # here until the response is over.
        self.pending: list = []
        self.lost_count = 0  # Lost markers in pending
        # Finished transactions, in the connection's order, until taken.
        self.done: list[Transaction] = []
        self.finished = 0  # transactions finished: the next trans_depth - 1
        # Complete responses: end offset -> the ack of their first segment.
        # The _RECENT last; each entry past the first is charged to the
        # meter (RESP_END_COST): a keep-alive connection's grow to 64, ~6 KiB
        # more than one that made a single exchange.
        self.resp_ends: dict[int, int | None] = {0: None}
        # Lost stretches of the server's stream [start, end).
        self.server_lost: list[tuple[int, int]] = []
        # Starts of those that began where a response ended (a response
        # began in each) -> whether no response has come after it yet (see
        # response()); _split_plan reads them too.
        self.server_whole: dict[int, bool] = {}
        # Responses whose request is not decided yet (finished, not written).
        self.held: list[Transaction] = []
        # Interim responses (1xx) seen before their final response when the
        # request is not known: they go on the next response's transaction.
        self.orphan_interim: list[tuple[int | None, str | None]] = []
        self.orphan_from = 0  # where the first of them began
        self.interim_end = -1  # where the last 1xx response ended
        # Whether the rest of a message was skipped after the last stretch
        # of lost server bytes, before the status line that ended it.
        self.resp_junk = False
        # Anomalies for the session's stats that touch no transaction.
        self.loose: list[str] = []

    # ------------------------------------------------------------ requests

    def request(self, msg: Message) -> Transaction:
        txn = Transaction()
        txn.request = msg
        msg.txn = txn
        if (self.held or self.server_lost or self.lost_count) and self._closes(msg, self._earlier_ack(len(self.pending))):
            self._checkpoint(msg, len(self.pending))
        if self._known() >= self.max_pending:
            # Pipelining deeper than the bound: the oldest unanswered request
            # is written now rather than held without limit (not one whose
            # response is being read: that one finishes by itself).
            for i, e in enumerate(self.pending):
                if e.__class__ is Transaction and e.response is None:
                    self.pending.pop(i)
                    e.anomalies.update(("response_missing", "pending_overflow"))
                    self.finish(e, "pending_overflow")
                    break
        self.pending.append(txn)
        return txn

    def lost_requests(self, start: int, end: int, anomalies=(), whole: bool = False, junk: bool = False) -> None:
        """The client's bytes [start, end) were lost between or inside
        requests: requests may have been there (``whole``, ``junk``: see Lost)."""
        if end <= start:
            return
        last = self.pending[-1] if self.pending else None
        if last is not None and last.__class__ is Lost and last.end >= start:
            last.end = max(last.end, end)
            last.anomalies.update(anomalies)
            last.whole = whole
            last.junk = junk
        else:
            self.pending.append(Lost(start, end, anomalies, whole, junk))
            self.lost_count += 1

    def lost_junk(self) -> None:
        """The client's reader is skipping the rest of a message after the
        last lost stretch (see Lost.junk)."""
        last = self.pending[-1] if self.pending else None
        if last is not None and last.__class__ is Lost:
            last.junk = True

    def _dropped(self, items, covered: int = 0) -> int:
        """Lost markers leave the queue with no response paired to them: one
        that surely held a request still counts one in trans_depth (the
        requests after it keep their numbers; more than one it may have held
        cannot be known), unless one of ``covered`` records written unpaired
        for the same window already took its number.  Returns what is left
        of ``covered``."""
        for e in items:
            if e.__class__ is Lost and e.whole and not e.answered:
                if covered:
                    covered -= 1
                else:
                    self.finished += 1
        return covered

    def lost_responses(self, start: int, end: int, whole: bool = False, junk: bool = False) -> None:
        """The server's bytes [start, end) were lost (``whole``: from a
        response's end, so at least one response began in them; ``junk``:
        the rest of a message was skipped after them, up to ``end``)."""
        if end > start:
            self.resp_junk = junk
            self.server_lost.append((start, end))
            if len(self.server_lost) > _RECENT:
                del self.server_lost[0]
            if whole:
                self.server_whole[start] = True
                if len(self.server_whole) > _RECENT:
                    del self.server_whole[next(iter(self.server_whole))]

    # ----------------------------------------------------------- responses

    def response(self, msg: Message) -> tuple[Transaction, bool]:
        """Pair a response whose status line was just read.  Returns its
        transaction and whether its request is known for certain (if not,
        the caller frames the body without knowing the method)."""
        fresh = [s for s, new in self.server_whole.items() if new and s < msg.start_off] if self.server_whole else ()
        for s in fresh:
            self.server_whole[s] = False
        if fresh and self.orphan_interim and (self.resp_junk or self._sent_after(self.orphan_from)):
            # 1xx responses to a lost request, then server bytes lost from
            # their end, and this response is not their request's: the rest
            # of a message was skipped after the lost bytes, or the request
            # waiting first was sent once the client had those 1xx.  Their
            # final response began in the lost bytes: it takes its number
            # (no record: neither its request nor its final response was
            # seen), and its 1xx are not this response's.
            self.orphan_interim = []
            self.finished += 1
            del self.server_whole[fresh[0]]  # counted: not again by _split_plan
            fresh = fresh[1:]
        if fresh and self.pending and not self.held:
            first = self.pending[0]
            if first.__class__ is Transaction and first.response is None and (
                    self.resp_junk or not expects_continue(first.request)):
                # Server bytes lost from a response's end, and a request
                # waits first, no answer held undecided: its answer began
                # in those bytes (a final one: the rest of a message was
                # skipped after them, or it asked for no 100 Continue), so
                # this is not it.
                self.pending.pop(0)
                first.anomalies.add("response_missing")
                self.finish(first, "gap")
                del self.server_whole[fresh[0]]  # counted: not again by _split_plan
                fresh = fresh[1:]
        self._retire_answered_in_lost(msg)
        if self.held or self.server_lost or self.lost_count:
            self._settle_before(msg)
        lost = None
        cand = None
        for e in self.pending:
            if e.__class__ is Lost:
                if msg.ack is not None and msg.ack <= e.start:
                    break  # the server had not received those bytes yet
                lost = e
                continue
            if e.response is not None:
                continue
            if self._can_answer(e.request, msg):
                cand = e
            break
        if cand is not None:
            if msg.ack is None or cand.request.ack is None:
                # No acknowledgements to go by (segments without ACK, or a
                # caller that has none): the queue's order is all there is.
                i = self.pending.index(cand)
                self._dropped(self.pending[:i])
                self.pending[:i] = [e for e in self.pending[:i] if e.__class__ is not Lost]
                self._recount()
                return self._pair(cand, msg), True
            if lost is None and not self._server_loss_before(cand, msg):
                return self._pair(cand, msg), True
            if self._closes(cand.request, self._earlier_ack(self.pending.index(cand))):
                # A checkpoint (its response ends what came before): settle
                # what is before it, then this response is its answer.
                self._checkpoint(cand.request, self.pending.index(cand))
                # What was before it is settled; its own answer may still be
                # in lost server bytes.
                if self.pending and self.pending[0] is cand and not self._server_loss_before(cand, msg):
                    return self._pair(cand, msg), True
            txn = self._orphan(msg, "pairing_uncertain")
            txn.held = True
            return txn, False
        # No known request can be the one: it was lost (or there was none).
        txn = self._orphan(msg, None)
        if lost is not None:
            txn.anomalies |= lost.anomalies
            lost.answered += 1
            # Responses began in server bytes lost just before this one, and
            # no known request waits for them: each answered a request in
            # the lost client bytes (no record: neither head was seen, but
            # each takes its number in trans_depth).  Not the last, when
            # the lost requests went on with the rest of a body and nothing
            # was skipped between the lost server bytes and this response:
            # those bytes may be this response's own 100 Continue.
            n = len(fresh) - (1 if fresh and lost.junk and not self.resp_junk else 0)
            self.finished += n
            lost.answered += n
            for s in fresh:
                del self.server_whole[s]  # counted (or not to be): not by _split_plan
        return txn, False

    def response_done(self, txn: Transaction, why: str = "complete") -> None:
        """A final response is over: finish its transaction, or hold it
        while its request is undecided."""
        msg = txn.response
        if msg is not None and msg.end_off is not None and msg.complete:
            ends = self.resp_ends
            if msg.end_off not in ends:
                if len(ends) >= _RECENT:
                    del ends[next(iter(ends))]
                elif self.meter is not None:
                    self.meter.add(RESP_END_COST)
            ends[msg.end_off] = msg.ack
        if txn.held:
            self.held.append(txn)
            if len(self.held) > self.max_pending:
                self._unresolved(None)
            return
        if txn.request is not None:
            try:
                self.pending.remove(txn)
            except ValueError:
                pass
        self.finish(txn, why)

    def interim_done(self, txn: Transaction) -> None:
        """An interim (1xx) response is over: it does not consume the request."""
        msg = txn.response
        txn.response = None
        item = (msg.status, msg.reason)
        if msg.end_off is not None:
            self.interim_end = msg.end_off
        if txn.request is not None:
            txn.interim.append(item)
        else:
            if not self.orphan_interim:
                self.orphan_from = msg.start_off
            self.orphan_interim.append(item)

    def abandon_response(self, txn: Transaction) -> None:
        """A response was cut before it amounted to anything (no status
        line): forget it; its request waits on."""
        txn.response = None

    # ------------------------------------------------------------ endings

    def finish(self, txn: Transaction, why: str | None) -> None:
        self.finished += 1
        txn.depth = self.finished
        if self.midstream and txn.depth == 1:
            txn.anomalies.add("midstream_pickup")
        if txn.end_reason is None:
            txn.end_reason = why or "complete"
        self.done.append(txn)

    def close(self, reason: str | None, why: str) -> None:
        """The connection is over: write what is held unresolved, and every
        request still waiting (response_missing)."""
        if self.held:
            # The held responses may be the answers of the requests still
            # waiting: those say so too.
            for e in self.pending:
                if e.__class__ is Transaction and e.response is None:
                    e.anomalies.add("pairing_uncertain")
            self._unresolved(None)
        for e in self.pending:
            if e.__class__ is Lost:
                continue
            if e.response is None:
                e.anomalies.add("response_missing")
                if reason:
                    e.anomalies.add(reason)
            self.finish(e, why)
        self.pending = []
        self.lost_count = 0
        # No response comes any more: the ends leave the meter (the first,
        # {0: None}, is part of SESSION_COST).
        if self.meter is not None:
            self.meter.http_bytes -= (len(self.resp_ends) - 1) * RESP_END_COST
        self.resp_ends = {0: None}

    # ------------------------------------------------------------ the rules

    @staticmethod
    def _can_answer(req: Message, resp: Message) -> bool:
        """Could ``resp`` answer ``req``, by the acknowledgements?"""
        if resp.ack is not None and req.start_off >= resp.ack:
            return False  # the server had not received the request
        if req.ack is not None and req.ack > resp.start_off:
            return False  # the client had this response before sending it
        return True

    def _pair(self, txn: Transaction, msg: Message) -> Transaction:
        txn.response = msg
        msg.txn = txn
        if self.orphan_interim:
            txn.interim.extend(self.orphan_interim)
            self.orphan_interim = []
        return txn

    def _orphan(self, msg: Message, anomaly: str | None) -> Transaction:
        txn = Transaction()
        txn.response = msg
        msg.txn = txn
        txn.anomalies.add(anomaly or "request_missing")
        if self.orphan_interim:
            txn.interim.extend(self.orphan_interim)
            self.orphan_interim = []
        return txn

    def _sent_after(self, offset: int) -> bool:
        """Was the first request waiting for a response sent once the client
        had the server's bytes past ``offset``?"""
        for e in self.pending:
            if e.__class__ is Transaction and e.response is None:
                return e.request.ack is not None and e.request.ack > offset
        return False

    def _known(self) -> int:
        return len(self.pending) - self.lost_count

    def _has_lost(self) -> bool:
        return bool(self.server_lost) or self.lost_count > 0

    def _recount(self) -> None:
        self.lost_count = sum(1 for e in self.pending if e.__class__ is Lost)

    def _server_loss_before(self, txn: Transaction, msg: Message) -> bool:
        """Did server bytes that may hold ``txn``'s response get lost before
        ``msg``?"""
        q = txn.request
        for start, end in self.server_lost:
            if start < msg.start_off and (q.ack is None or end > q.ack):
                return True
        return False

    def _closes(self, req: Message, earlier: int | None = None) -> bool:
        """Is ``req`` a checkpoint?  Either sent right after a complete
        response that the server sent once it had everything before ``req``;
        or the first request sent right after a stretch of lost server bytes
        that began where a response ended (``earlier``: the highest ack of
        the requests queued before it, which must be lower: sent before
        those bytes came)."""
        ack = req.ack
        if ack is None:
            return False
        ack_of_resp = self.resp_ends.get(ack, -1)
        if ack_of_resp is not None and ack_of_resp != -1:
            return ack_of_resp >= req.start_off
        if earlier is not None and earlier >= ack:
            return False
        # (A 1xx response's end is a message's end too.)
        return any(end == ack and (start in self.resp_ends or start == self.interim_end) for start, end in self.server_lost)

    def _earlier_ack(self, upto: int) -> int | None:
        acks = [e.request.ack for e in self.pending[:upto] if e.__class__ is Transaction]
        return max((a for a in acks if a is not None), default=None)

    def _settle_before(self, msg: Message) -> None:
        """Before pairing ``msg``: the latest waiting request that is a
        checkpoint and was sent before ``msg`` began settles everything
        queued before it (see _checkpoint)."""
        pending = self.pending
        best = None
        earlier = None
        for i, e in enumerate(pending):
            if e.__class__ is not Transaction:
                continue
            req = e.request
            if (i and e.response is None and req.ack is not None and req.ack <= msg.start_off
                    and self._closes(req, earlier)):
                best = i
            if req.ack is not None and (earlier is None or req.ack > earlier):
                earlier = req.ack
        if best is not None:
            self._checkpoint(pending[best].request, best)


    def _forget_server_lost(self, req: Message) -> None:
        """Lost server bytes that ended before ``req`` was sent cannot hold
        the answer to it or to anything after it."""
        if req.ack is not None:
            self.server_lost = [s for s in self.server_lost if s[1] > req.ack]
            if self.server_whole:
                kept = {start for start, _end in self.server_lost}
                self.server_whole = {s: new for s, new in self.server_whole.items() if new or s in kept}

    def _retire_answered_in_lost(self, msg: Message) -> None:
        """Requests whose response was lost, by the marks: the client sent a
        later request after receiving lost server bytes that came after this
        request was sent (at a response boundary)."""
        if not self.server_lost:
            return
        while True:
            known = [e for e in self.pending if e.__class__ is Transaction and e.response is None]
            if len(known) < 2 or (self.pending and self.pending[0] is not known[0]):
                return
            q, nxt = known[0].request, known[1].request
            if q.ack is None or nxt.ack is None or q.ack not in self.resp_ends or nxt.ack > msg.start_off:
                return
            stretches = [(start, end) for start, end in self.server_lost if q.ack <= start < nxt.ack]
            if not stretches:
                return
            txn = known[0]
            self.pending.remove(txn)
            txn.anomalies.add("response_missing")
            self.finish(txn, "gap")
            if nxt.ack >= max(end for _start, end in stretches):
                # The client sent the next request once it had everything up
                # to the end of those lost bytes: whatever else was asked
                # before it (in lost client bytes) was answered in them too.
                i = self.pending.index(known[1])
                if any(e.__class__ is Lost for e in self.pending[:i]):
                    self._dropped(self.pending[:i])
                    self.pending[:i] = [e for e in self.pending[:i] if e.__class__ is not Lost]
                    self._recount()
            self._forget_server_lost(nxt)

    def _checkpoint(self, msg: Message, upto: int) -> None:
        """``msg`` is a checkpoint request and ``pending[:upto]`` what was
        queued before it: every one of those was answered by the responses
        that ended before ``msg`` was sent.  Resolve the held window."""
        before = self.pending[:upto]
        after = self.pending[upto:]
        known = [e for e in before if e.__class__ is Transaction]
        losts = [e for e in before if e.__class__ is Lost]
        held = list(self.held)
        first_ack = known[0].request.ack if known and known[0].request.ack is not None else -1
        sl = [s for s in self.server_lost if s[0] < msg.ack and s[1] > first_ack]
        if any(t.response is not None for t in known):
            return  # a response is being read: not at a boundary after all
        held = [t for t in held if t.response.start_off < msg.ack]
        plan = None
        if not losts and not sl:
            if len(held) == len(known):
                plan = list(zip(known, held))
        elif len(losts) == 1 and not sl:
            k = len(held) - len(known)
            if k >= 0:
                # The lost requests stand where the marker stands.
                pos = before.index(losts[0])
                n_before = sum(1 for e in before[:pos] if e.__class__ is Transaction)
                reqs = known[:n_before] + [None] * k + known[n_before:]
                plan = list(zip(reqs, held))
        elif len(sl) == 1 and not losts:
            k = len(known) - len(held)
            if k >= 0:
                start = sl[0][0]
                n_before = sum(1 for t in held if t.response.start_off < start)
                resps = held[:n_before] + [None] * k + held[n_before:]
                plan = list(zip(known, resps))
        elif len(losts) == 1 and before[-1] is losts[0]:
            plan = self._split_plan(known, losts[0], held, sl)
        if plan is None:
            self._unresolved(msg, upto)
            return
        self.pending = after
        self._recount()
        self.held = [t for t in self.held if t not in held]
        for req_txn, resp_txn in plan:
            if req_txn is None and resp_txn is None:
                self.finished += 1
                for marker in losts:
                    marker.answered += 1
            elif req_txn is None:
                # A response to a lost request: written as it is.
                resp_txn.anomalies.discard("pairing_uncertain")
                resp_txn.anomalies.add("request_missing")
                for marker in losts:
                    resp_txn.anomalies |= marker.anomalies
                    marker.answered += 1
                resp_txn.held = False
                self.finish(resp_txn, resp_txn.end_reason)
            elif resp_txn is None:
                req_txn.anomalies.add("response_missing")
                self.finish(req_txn, "gap")
            else:
                req_txn.response = resp_txn.response
                req_txn.response.txn = req_txn
                req_txn.interim = resp_txn.interim
                req_txn.anomalies |= resp_txn.anomalies - {"pairing_uncertain", "request_missing"}
                self.finish(req_txn, resp_txn.end_reason)
        self._dropped(losts)
        self._forget_server_lost(msg)

    def _split_plan(self, known: list, lost: Lost, held: list, sl: list) -> list | None:
        """The checkpoint's window: requests ``known``, then client bytes
        ``lost``; responses ``held`` and server stretches ``sl`` lost.
        A response acknowledging no lost client byte (``first``) answers a
        known request.  In server order, known requests take the first
        responses: where stretches lie among the ``first`` responses, the
        count must come out exact (a stretch lost from a response's end held
        one response start, any other none); after the last of them, each
        remaining known request's answer was in a stretch lost from a
        response's end.  The ``later`` responses answer lost requests.
        Returns the plan (see _checkpoint; ``(None, None)``: a lost request
        answered in lost bytes, a number without a record), or None when
        the marks do not settle it."""
        n = 0
        for t in held:
            ack = t.response.ack
            if ack is None or ack > lost.start:
                break
            n += 1
        first, later = held[:n], held[n:]
        if later and any(end > later[0].response.start_off for _start, end in sl):
            return None  # server bytes lost among the later responses
        if sl and any(expects_continue(t.request) for t in known):
            return None  # a stretch may have held only a 100 Continue
        edge = first[-1].response.start_off if first else -1
        among = [start for start, _end in sl if start < edge]
        after = sum(1 for start, _end in sl if start > edge and start in self.server_whole)
        k = len(known)
        if among:
            whole = [start for start in among if start in self.server_whole]
            if len(first) + len(whole) != k:
                return None
            order = sorted([(t.response.start_off, t) for t in first] + [(start, None) for start in whole],
                           key=lambda x: x[0])
            answers = [t for _o, t in order]
        elif len(first) <= k:
            answers = first
        else:
            return None
        rest = k - len(answers)
        if rest > after:
            return None  # a later response may answer a known request
        plan = list(zip(known, answers + [None] * rest))
        return plan + [(None, None)] * (after - rest) + [(None, t) for t in later]

    def _unresolved(self, msg: Message | None, upto: int = 0) -> None:
        """The window cannot be decided: write its held responses unpaired,
        flagged, and (at a checkpoint ``msg``) the requests before it, which
        were answered by some of them."""
        # Each held response is written as a record of its own: its number
        # may be the one of a lost request of this window.
        covered = len(self.held)
        for t in self.held:
            t.held = False
            self.finish(t, t.end_reason)
        self.held = []
        rest = []
        for i, e in enumerate(self.pending):
            if e.__class__ is Lost:
                if i >= upto:
                    rest.append(e)
                else:
                    covered = self._dropped((e,), covered)
                continue
            if i < upto and msg is not None and e.response is None:
                e.anomalies.update(("response_missing", "pairing_uncertain"))
                self.finish(e, "gap")
            else:
                rest.append(e)
        self.pending = rest
        self._recount()
        if msg is not None:
            self._forget_server_lost(msg)
