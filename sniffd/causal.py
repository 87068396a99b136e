"""Causal order between the two directions of a connection (stateful, sans-I/O).

A segment that acknowledges bytes of the other direction that have not been
delivered yet (still out of order, or never captured) is held until those
bytes are delivered, or declared lost when the wait is given up.  So the HTTP
stage always sees a request before the response that answers it, whatever
order the capture put the packets in, and knows, for example, that a
response answers HEAD.  Real captures are almost always causal already; the
check costs a comparison per segment.

One ``CausalHold`` per connection that ever had to hold a segment (made on
first need: most connections never do).  It decides, the flow table
delivers.  Call order (the flow table's):

1. ``waits(opp, flags, ack)`` for a data segment: must it wait?  If so,
   ``add(from_client, item, now)``; ``item`` is the flow table's own tuple
   ``(seq, ack, flags, payload, lost, ts, ...)``.
2. After anything was delivered: ``ready(c2s, s2c)`` gives the held items
   that no longer wait, in an order that delivers them correctly; deliver
   each.
3. When waits are given up: ``force(c2s, s2c)`` gives one item and how far
   the direction it waits for must skip (its relative offset, or None): skip
   that direction there (a gap), deliver the item (None: it still waits for
   bytes held in that direction, which come first), then ``ready`` again.
   The flow table forces one wait at a time, only as far as the reason
   needs: at ``gap_timeout_s``, until no held segment is that old; over the
   buffer bound, until half of it is held; at the end of the connection,
   all.  A segment that waits for bytes still on their way is not given up
   because an older wait was.
4. ``settle()`` after a partial release: ``since`` becomes the oldest
   remaining wait's time.

The rules behind ``force``: give up first on a segment whose missing data
is not itself held in the other direction (a request that acknowledges a
held response must not declare that response lost), then the one that
declares the fewest bytes lost, then the oldest.
"""

from __future__ import annotations

from sniffd.budget import SEGMENT_COST
from sniffd.decode import TH_ACK

# An acknowledgement further ahead than this is bogus (a broken or hostile
# stack); it must not make sniffd hold or skip data.
MAX_ACK_AHEAD = 1 << 30


def waits(opp, flags: int, ack: int) -> bool:
    """Does a segment with this ACK acknowledge bytes of ``opp`` (the other
    direction's HalfStream) that were not delivered yet?"""
    if not flags & TH_ACK or opp.base is None or opp.closed:
        return False
    if (ack - opp.base - opp.next) & 0xFFFFFFFF == 0:
        return False  # the common case: acknowledges exactly what we have
    d = opp.rel(ack) - opp.consumed
    return 0 < d < MAX_ACK_AHEAD


class CausalHold:
    __slots__ = ("held", "bytes", "since")

    def __init__(self) -> None:
        # Held items per direction (index: from_client), in arrival order.
        self.held: tuple[list, list] = ([], [])
        self.bytes = 0  # payload bytes held
        self.since: float | None = None  # when the oldest wait began

    def __bool__(self) -> bool:
        return bool(self.held[0] or self.held[1])

    @property
    def cost(self) -> int:
        """Memory held, with each segment's object overhead."""
        return self.bytes + (len(self.held[0]) + len(self.held[1])) * SEGMENT_COST

    def add(self, from_client: bool, item: tuple, now: float) -> None:
        self.held[from_client].append(item)
        self.bytes += len(item[3])
        if self.since is None:
            self.since = now

    def ready(self, c2s, s2c) -> list[tuple[bool, tuple]]:
        """Every held item that no longer waits, taken out.  Not only the
        queues' heads: the half-stream orders data by sequence number, so a
        ready segment need not wait behind a blocked one."""
        out = []
        for fc in (True, False):
            held = self.held[fc]
            if not held:
                continue
            opp = s2c if fc else c2s
            keep = []
            for item in held:
                if waits(opp, item[2], item[1]):
                    keep.append(item)
                else:
                    out.append((fc, item))
                    self.bytes -= len(item[3])
            self.held[fc][:] = keep
        if not self:
            self.since = None
            self.bytes = 0
        return out

    def oldest(self) -> float | None:
        """The capture time of the oldest held segment."""
        times = [item[5] for held in self.held for item in held]
        return min(times) if times else None

    def settle(self) -> None:
        """After a partial release: the wait began with the oldest remaining segment."""
        self.since = self.oldest()

    def force(self, c2s, s2c) -> tuple[bool, tuple | None, int | None]:
        """Give up one wait (see the module docstring): the item to deliver
        now, and the relative offset the direction it waited for must skip
        to (None: it waits for nothing any more).  When bytes held in that
        direction begin before what the item acknowledges, the skip stops
        there and the item (None) stays held: it still waits for them."""
        best = None
        for fc in (True, False):
            opp = s2c if fc else c2s
            waiting_there = {opp.rel(h[0]) for h in self.held[not fc]}
            for i, item in enumerate(self.held[fc]):
                # The wait that declares the fewest bytes lost goes first: a
                # segment that acknowledges less (a reordering tap can put a
                # later request, acknowledging later responses, first).
                lost = opp.rel(item[1]) - opp.next if item[2] & TH_ACK else 0
                key = (opp.next in waiting_there, lost, item[5], i)
                if best is None or key < best[0]:
                    best = (key, fc, i)
        _, fc, i = best
        item = self.held[fc][i]
        opp = s2c if fc else c2s
        skip = None
        if waits(opp, item[2], item[1]):
            # Never captured: the peer saw bytes we did not; but only up to
            # what is held in the other direction (those bytes did come).
            skip = opp.rel(item[1])
            if opp.fin_at is not None and skip > opp.fin_at:
                skip = opp.fin_at
            full = skip
            for h in self.held[not fc]:
                start = opp.rel(h[0])
                if opp.next <= start < skip:
                    skip = start
            if opp.next < skip < full:
                return fc, None, skip
        del self.held[fc][i]
        self.bytes -= len(item[3])
        if not self:
            self.since = None
            self.bytes = 0
        return fc, item, skip
