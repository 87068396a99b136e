"""What sniffd holds in memory, as one number the flow table can bound.

The flow table owns the budget (``memory_budget_mb``) and the decisions;
this module only holds the shared counters and the per-object costs, which
were measured with tracemalloc on CPython 3.11 (4,000-20,000 connections
each, tests/flood/floodgen.py's shapes):

* a connection with no data yet (half-open, SYN flood): ~1.6 KiB;
* its HTTP session, made on the first payload byte (two message readers,
  the pairing, and the record fields cached on the connection once it has
  a record): ~2.9 KiB, idle after an exchange;
* a response end remembered by the pairing (the last 64 of a keep-alive
  connection, see sniffd.http.pairing): ~103 bytes;
* a header field kept in an open message: its bytes plus ~150 bytes of
  str/dict overhead;
* bytes a message reader holds (an unfinished head or trailer section, a
  chunk-size line, the tail kept while resynchronising, bytes held at an
  upgrade): their length, charged as they are held;
* buffered segment bytes (out-of-order, held, fragments): their length plus
  ~120 bytes of tuple/bytes overhead each.

Costs are rounded up: the budget must hold when sniffd's estimate does.  It
also holds only if what leaves the table is freed at once: sniffd runs the
cyclic GC rarely (sniffd/cli.py), so sessions must not be reference cycles
(sniffd.http.session: the readers call back through a weak proxy;
tests/unit/test_flows.py test_connections_closed_evicted_or_expired_leave_no_cycle).
"""

from __future__ import annotations

CONN_COST = 2048
SESSION_COST = 3072
HEADER_COST = 160
RESP_END_COST = 112
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

    def open_session(self) -> None:
        """An HTTP session was made: it is HTTP state too, so it takes its
        cost off what ``http_bytes`` may still grow to.  (Counted in
        ``sessions`` alone, 5,000 sessions made between two looks at the
        budget passed it by 15 MB before ``over`` was raised.)"""
        self.sessions += 1
        self.limit -= SESSION_COST
        if self.http_bytes > self.limit:
            self.over = True
