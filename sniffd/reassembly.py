"""TCP reassembly of one direction of one connection (stateful, sans-I/O).

A ``HalfStream`` turns segments, in any arrival order, into the ordered byte
stream the receiver's application saw, plus gap markers for bytes that never
arrived.  Its output is a list of *chunks*: ``bytes`` for data that arrived
with the segment just fed, ``(bytes, ts, ack)`` for data that waited in the
buffer (``ts``: when it was captured; ``ack``: the 32-bit acknowledgement
number its segment carried, or None without ACK), ``int`` for a gap of that
many bytes.  Keeping the capture time lets records say when a byte was on
the wire, not when the hole before it was filled; keeping the ack lets the
HTTP pairing know what the sender had received when it sent those bytes.

Call order (gopacket's Assembler is the model):

1. ``start(seq)`` once the initial sequence number is known (SYN: ISN+1; a
   connection picked up mid-stream: the first segment's seq).
2. ``feed(seq, payload, now, ack)`` per segment with data -> chunks;
   ``advance(payload)`` instead for the flow table's fast path (in order,
   nothing buffered: the caller checked).  ``feed_fin(seq_end)`` when a FIN
   is seen: it is refused (False) when the receiver would not accept it.
3. ``expire(now)`` when time advances -> chunks (a hole that waited
   ``gap_timeout_s`` is skipped).
4. ``skip_to(rel)`` when the peer acknowledged data we will never see.
5. ``close()`` at the end: every hole is skipped, everything buffered
   delivered.

Sequence numbers are unwrapped to 64-bit offsets relative to the stream's
start, so a stream crossing 2**32 is one stream (RFC 9293 section 3.4: the
space wraps; a segment belongs to the +-2**31 window around the next byte).

Overlaps: the first copy of a byte wins (delivered or buffered).  A later
copy with different content is counted (``tcp_overlap_conflict``) because it
is either a broken stack or an evasion attempt (Ptacek & Newsham 1998).
For bytes already delivered, only the most recent chunk is kept for that
comparison: retransmissions are almost always of the latest data, and
holding more would cost memory on every idle connection.
"""

from __future__ import annotations

from bisect import bisect_left, insort

from sniffd.budget import SEGMENT_COST

MASK32 = 0xFFFFFFFF
HALF32 = 0x80000000
# A FIN further than this past the furthest byte its sender was seen to send
# is outside any window a receiver offers (Linux's default tcp_rmem maximum
# is 6 MiB): refused, so a spoofed FIN with a random sequence number (1 in
# ~250 lands inside) cannot end a direction.
FIN_WINDOW = 16 * 1024 * 1024


def _start(entry: tuple) -> int:
    return entry[0]


class HalfStream:
    __slots__ = (
        "base", "next", "pending", "pending_bytes", "wait_since", "fin_at",
        "recent_start", "recent", "gap_timeout_s", "max_buffer_bytes",
        "anomalies", "missed_bytes", "closed", "high", "conflicts", "acked", "ttl", "csum_run", "csum_max",
        "aside", "aside_bytes",
    )

    def __init__(self, gap_timeout_s: float, max_buffer_bytes: int) -> None:
        self.base: int | None = None  # 32-bit seq of relative offset 0
        self.next = 0  # relative offset of the next byte to deliver
        self.high = 0  # relative offset just past the furthest byte seen
        # Sorted, non-overlapping; an empty tuple until the first segment is
        # buffered (most streams never buffer one: no list to make).
        self.pending: list[tuple[int, bytes, float, int | None]] | tuple = ()
        self.pending_bytes = 0
        self.wait_since: float | None = None  # when the current hole began blocking
        self.fin_at: int | None = None
        self.recent_start = 0
        self.recent = b""
        self.gap_timeout_s = gap_timeout_s
        self.max_buffer_bytes = max_buffer_bytes
        # Anomaly names raised since the owner last took them (drain_anomalies).
        # This and the next two are tuples until something goes in (most
        # streams never see any): an empty tuple is no object to make.
        self.anomalies: tuple[str, ...] = ()
        # Relative ranges [start, end) where a copy disagreed with the first
        # (tcp_overlap_conflict), since the owner last took them: the HTTP
        # stage puts the anomaly on the message those bytes belong to.
        self.conflicts: tuple[tuple[int, int], ...] = ()
        self.missed_bytes = 0
        self.closed = False
        # Kept here for the flow table's checks of this direction: the last
        # acknowledgement number the peer sent for it (32-bit), the hop
        # limit its data started with, the valid checksums seen in a row
        # (up to flows.CSUM_RUN) and the largest payload with a valid one.
        self.acked: int | None = None
        self.ttl: int | None = None
        self.csum_run = 0
        self.csum_max = 0
        # Data whose segment had a bad checksum ((start, bytes, ts, ack),
        # sorted): a receiver drops it, so it waits aside; a valid copy of
        # those bytes replaces it, and only if none comes before the bytes
        # must be given up (the receiver acknowledged them, the wait is
        # over) is it used instead of a gap (tcp_bad_checksum either way).
        self.aside: list[tuple[int, bytes, float, int | None]] | tuple = ()
        self.aside_bytes = 0

    def start(self, seq: int) -> None:
        self.base = seq & MASK32
        self.next = 0
        self.high = 0

    def rebase(self, seq: int) -> None:
        """A SYN came late with the ISN: nothing was delivered yet, so the
        stream starts at ``seq`` after all; buffered data keeps its place."""
        old = self.base
        kept = [((old + s) & MASK32, b, ts, ack) for s, b, ts, ack in self.pending]
        self.pending = []
        self.pending_bytes = 0
        self.start(seq)
        for s, b, ts, ack in kept:
            start = self.rel(s)
            if start < 0:
                b = b[-start:]
                start = 0
            if b:
                self._buffer(start, b, ts, ack)
                self.high = max(self.high, start + len(b))

    def rel(self, seq: int) -> int:
        """Unwrap a 32-bit sequence number to an offset near ``next``."""
        d = (seq - self.base - self.next) & MASK32
        if d >= HALF32:
            d -= 0x100000000
        return self.next + d

    def is_finished(self) -> bool:
        """Has this direction ended: closed, or its FIN reached with nothing
        buffered before it?"""
        return self.closed or (self.fin_at is not None and self.next >= self.fin_at and not self.pending)

    # The same as a property, for readers; the flow table calls the method
    # (CPython 3.11 runs a property's getter in a second interpreter frame).
    finished = property(is_finished)

    @property
    def consumed(self) -> int:
        """Offset the peer's ACK must reach for us to have seen all it saw
        (the FIN takes one sequence number, RFC 9293 section 3.4)."""
        if self.fin_at is not None and self.next >= self.fin_at:
            return self.next + 1
        return self.next

    def advance(self, payload: bytes) -> None:
        """The next in-order segment, with nothing buffered (the caller
        checked): it is delivered as it is."""
        start = self.next
        self.recent_start = start
        self.recent = payload
        self.next = end = start + len(payload)
        if end > self.high:
            self.high = end

    def put_aside(self, seq: int, payload: bytes, now: float, ack: int | None) -> None:
        """A data segment with a bad checksum (see ``aside``)."""
        start = self.rel(seq)
        if self.closed or not payload or start + len(payload) <= self.next:
            return
        if not self.aside:
            self.aside = []
        insort(self.aside, (start, payload, now, ack), key=_start)
        self.aside_bytes += len(payload)
        while self.aside_bytes > self.max_buffer_bytes:
            dropped = self.aside.pop(0)
            self.aside_bytes -= len(dropped[1])
        if start + len(payload) > self.high:
            self.high = start + len(payload)

    def feed(self, seq: int, payload: bytes, now: float, ack: int | None = None) -> list:
        if self.closed or not payload:
            return []
        if self.aside:
            self._replace_aside(self.rel(seq), len(payload))
        if not self.pending and seq == ((self.base + self.next) & MASK32):
            # The common case: in order, nothing buffered.  No allocation
            # beyond the one-element list.
            self.advance(payload)
            return [payload]
        start = self.rel(seq)
        end = start + len(payload)
        if end > self.high:
            self.high = end
        out: list = []
        if end <= self.next:
            self._check_delivered(start, payload)
            return out  # whole retransmission
        if start < self.next:
            # Partial retransmission: the front is old, the rest is new.
            self._check_delivered(start, payload[: self.next - start])
            payload = payload[self.next - start :]
            start = self.next
        if start == self.next and not self.pending:
            self.next = end
            self.recent_start, self.recent = start, payload
            return [payload]
        self._buffer(start, payload, now, ack)
        if self.pending[0][0] == self.next:
            self._drain(out)
        if self.pending:
            if self.wait_since is None:
                self.wait_since = now
            # Each buffered segment also costs ~128 bytes of objects: count
            # them, or a flood of 1-byte segments would slip under the bound.
            if self.pending_bytes + len(self.pending) * SEGMENT_COST > self.max_buffer_bytes:
                self.anomalies += ("tcp_buffer_overflow",)
                # As many holes as it takes to get back under the bound
                # (one per call let 1-byte pieces between holes grow it).
                while self.pending and self.pending_bytes + len(self.pending) * SEGMENT_COST > self.max_buffer_bytes:
                    self._skip_hole(out)
            elif now - self.wait_since >= self.gap_timeout_s:
                self._skip_hole(out)
        return out

    def feed_fin(self, seq_end: int) -> bool:
        """A FIN at ``seq_end`` (the sequence number after its data).  The
        receiver accepts it only inside its window (RFC 9293 section 3.10.7.4):
        not before bytes already delivered, nor further ahead than the sender
        could have sent (FIN_WINDOW past anything it sent).  A refused FIN
        does not end the direction (False)."""
        at = self.rel(seq_end)
        if at < self.next or at > self.high + FIN_WINDOW:
            return False
        if self.fin_at is None:
            self.fin_at = at
            if at > self.high:
                self.high = at
        return True

    def expire(self, now: float) -> list:
        out: list = []
        while self.pending and self.wait_since is not None and now - self.wait_since >= self.gap_timeout_s:
            self._skip_hole(out)
            if self.pending:
                self.wait_since = now
        if self.aside and not self.pending:
            # Data aside (a bad checksum) waits like a hole, then is used.
            if self.wait_since is None:
                self.wait_since = now
            elif now - self.wait_since >= self.gap_timeout_s:
                last = self.aside[-1]
                self._gap(out, last[0] + len(last[1]) - self.next)
                self.wait_since = None
        return out

    def skip_to(self, rel: int) -> list:
        """The peer acknowledged up to ``rel``: nothing before it will come."""
        out: list = []
        while self.next < rel:
            if self.pending and self.pending[0][0] <= rel:
                self._skip_hole(out)
            else:
                self._gap(out, rel - self.next)
                if self.pending and self.pending[0][0] == self.next:
                    self._drain(out)
        return out

    def close(self) -> list:
        out: list = []
        while self.pending:
            self._skip_hole(out)
        if self.aside:
            # Nothing valid came for what waited aside: it is all there is.
            last = self.aside[-1]
            self._gap(out, last[0] + len(last[1]) - self.next)
        self.closed = True
        return out

    def close_hole(self) -> list:
        """Deliver everything buffered now, its holes as gaps (memory
        pressure); the stream stays open for what comes next."""
        out: list = []
        while self.pending:
            self._skip_hole(out)
        return out

    def forced_skip(self) -> list:
        """Skip the current hole now (memory pressure elsewhere)."""
        out: list = []
        if self.pending:
            self.anomalies += ("tcp_buffer_overflow",)
            self._skip_hole(out)
        return out

    # ------------------------------------------------------------ internals

    def _check_delivered(self, start: int, data: bytes) -> None:
        rs, r = self.recent_start, self.recent
        lo, hi = max(start, rs), min(start + len(data), rs + len(r))
        if lo < hi and data[lo - start : hi - start] != r[lo - rs : hi - rs]:
            self.anomalies += ("tcp_overlap_conflict",)
            self.conflicts += ((lo, hi),)

    def _buffer(self, start: int, data: bytes, now: float, ack: int | None = None) -> None:
        """Insert the parts of [start, start+len) not already buffered.
        Only the buffered segments around ``start`` are looked at (bisect),
        so a flood of tiny out-of-order segments costs O(log n) each."""
        end = start + len(data)
        pieces = [(start, end)]
        pending = self.pending
        if pending.__class__ is tuple:
            pending = self.pending = []  # the first one (see __init__)
        i = bisect_left(pending, (start,))
        if i:
            i -= 1  # the one before may reach into [start, end)
        for s, b, _ts, _ack in pending[i : bisect_left(pending, (end,), i)]:
            e = s + len(b)
            if e <= start:
                continue
            lo, hi = max(s, start), min(e, end)
            if data[lo - start : hi - start] != b[lo - s : hi - s]:
                self.anomalies += ("tcp_overlap_conflict",)
                self.conflicts += ((lo, hi),)
            nxt = []
            for ps, pe in pieces:
                if pe <= s or ps >= e:
                    nxt.append((ps, pe))
                    continue
                if ps < s:
                    nxt.append((ps, s))
                if pe > e:
                    nxt.append((e, pe))
            pieces = nxt
        for ps, pe in pieces:
            if pe > ps:
                insort(pending, (ps, data[ps - start : pe - start], now, ack), key=_start)
                self.pending_bytes += pe - ps

    def _drain(self, out: list) -> None:
        """Deliver buffered data contiguous with ``next``."""
        pending = self.pending
        while pending and pending[0][0] <= self.next:
            s, b, ts, ack = pending.pop(0)
            self.pending_bytes -= len(b)
            e = s + len(b)
            if e <= self.next:
                continue
            if s < self.next:
                b = b[self.next - s :]
                s = self.next
            out.append((b, ts, ack))
            self.next = e
            self.recent_start, self.recent = s, b
        self.wait_since = None

    def _gap(self, out: list, n: int) -> None:
        """``n`` bytes from ``next`` will not come: what waits aside for them
        (a bad checksum) is used, the rest is a gap."""
        while n > 0 and self.aside:
            start, b, ts, ack = self.aside[0]
            end = start + len(b)
            if end <= self.next:
                self.aside.pop(0)
                self.aside_bytes -= len(b)
                continue
            if start > self.next:
                if start - self.next >= n:
                    break
                self._lost(out, start - self.next)
                n -= start - self.next
                continue
            take = b[self.next - start : self.next - start + n]
            out.append((take, ts, ack))
            self.recent_start, self.recent = self.next, take
            self.next += len(take)
            n -= len(take)
            if "tcp_bad_checksum" not in self.anomalies:
                self.anomalies += ("tcp_bad_checksum",)
            if self.next >= end:
                self.aside.pop(0)
                self.aside_bytes -= len(b)
        if n > 0:
            self._lost(out, n)

    def _lost(self, out: list, n: int) -> None:
        out.append(n)
        self.next += n
        self.missed_bytes += n
        if "tcp_gap" not in self.anomalies:
            self.anomalies += ("tcp_gap",)

    def _replace_aside(self, start: int, length: int) -> None:
        """A valid copy of [start, start+length) came: what waited aside for
        those bytes (a chaff segment, or a corrupted copy) is dropped."""
        end = start + length
        keep = []
        hit = False
        for s, b, ts, ack in self.aside:
            e = s + len(b)
            if e <= start or s >= end:
                keep.append((s, b, ts, ack))
                continue
            hit = True
            if s < start:
                keep.append((s, b[: start - s], ts, ack))
            if e > end:
                keep.append((end, b[end - s :], ts, ack))
        if hit:
            self.aside = keep
            self.aside_bytes = sum(len(x[1]) for x in keep)
            if "tcp_bad_checksum" not in self.anomalies:
                self.anomalies += ("tcp_bad_checksum",)

    def _skip_hole(self, out: list) -> None:
        """Declare the hole before the first buffered segment lost."""
        if not self.pending:
            return
        hole = self.pending[0][0] - self.next
        if hole > 0:
            self._gap(out, hole)
        self._drain(out)
