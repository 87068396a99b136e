"""What sniffd holds in memory, as one number the flow table can bound.

The flow table owns the budget (``memory_budget_mb``) and the decisions;
this module only holds the shared counters and the per-object costs, which
were measured with tracemalloc on CPython 3.11 (5,000 connections each):

* a connection with no data yet (half-open, SYN flood): ~1.5 KiB;
* its HTTP session, made on the first payload byte: ~1.5 KiB, plus ~0.5 KiB
  for each direction's llhttp parser once that direction carries data;
* a header field kept in an open message: its bytes plus ~150 bytes of
  str/dict overhead;
* buffered segment bytes (out-of-order, held, fragments): their length plus
  ~120 bytes of tuple/bytes overhead each.

Costs are rounded up: the budget must hold when sniffd's estimate does.
"""

from __future__ import annotations

CONN_COST = 2048
SESSION_COST = 3072
HEADER_COST = 160
SEGMENT_COST = 128


class Meter:
    """Counters the HTTP sessions update and the flow table reads.
    ``over`` is raised when ``http_bytes`` passes ``limit`` (set by the flow
    table to what the rest of the budget leaves), so the table can act after
    the packet in progress without polling a sum on every packet."""

    __slots__ = ("http_bytes", "limit", "over", "keep_bodies", "sessions")

    def __init__(self) -> None:
        self.http_bytes = 0
        self.sessions = 0  # HTTP sessions alive (each SESSION_COST)
        self.limit = 1 << 62
        self.over = False
        # Lowered by the flow table under memory pressure (degradation step 2).
        self.keep_bodies = True

    def add(self, n: int) -> None:
        self.http_bytes += n
        if self.http_bytes > self.limit:
            self.over = True
