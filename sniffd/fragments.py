"""IP fragment reassembly stage (stateful, sans-I/O).

Call order: ``feed(fragment, now)`` for each ``decode.Fragment`` (any arrival
order), then ``expire(now)`` whenever time advances.  ``feed`` returns
``(datagram, anomalies)``: ``datagram`` is ``(version, src, dst, proto,
payload, lost, ttl, ctx, verify)`` once every byte from 0 to the end is
present, else None: ``decode.decode_transport``'s arguments, ``ttl`` and
``verify`` those of the first fragment (offset 0), ``ctx`` the one all the
fragments share (it is part of their key).

Overlapping fragments that carry the same bytes are duplicates (kept once).
Fragments that overlap with different bytes make the whole datagram be
dropped, as Linux and RFC 5722 (IPv6) do: a receiver never sees either
version, so neither may reach a record (``ip_fragment_overlap``; the
connection, when the first fragment says which, is in ``overlapped`` until
the caller takes it, so the flow table can put the anomaly on its record).
A datagram not complete within
``frag_timeout_s`` is dropped (``ip_fragment_timeout``); the table is capped
in datagrams and fragments (``ip_fragment_overflow``, oldest dropped first).
"""

from __future__ import annotations

from collections import OrderedDict

from sniffd.budget import SEGMENT_COST
from sniffd.decode import Fragment

# An IPv4 datagram is at most 65535 bytes; an IPv6 one (no jumbograms in
# fragments, RFC 2675 section 3) likewise.  Anything claiming more is bogus.
MAX_DATAGRAM = 65535


class _Datagram:
    __slots__ = ("first_seen", "pieces", "total", "proto", "held", "conflict", "ttl", "verify")

    def __init__(self, now: float) -> None:
        self.first_seen = now
        self.pieces: list[tuple[int, bytes, int]] = []
        self.total: int | None = None
        self.proto: int | None = None
        self.held = 0
        self.conflict = False
        self.ttl = 0
        self.verify = False


class Defragmenter:
    def __init__(self, frag_timeout_s: float, max_frag_datagrams: int, max_frags_per_datagram: int) -> None:
        self.frag_timeout_s = frag_timeout_s
        self.max_frag_datagrams = max_frag_datagrams
        self.max_frags_per_datagram = max_frags_per_datagram
        self._table: OrderedDict[tuple, _Datagram] = OrderedDict()
        self.held_bytes = 0
        self.held_pieces = 0
        # (src, dst, sport, dport, ctx) of TCP datagrams dropped for an
        # overlap since the caller last emptied it.
        self.overlapped: list[tuple] = []

    def __len__(self) -> int:
        return len(self._table)

    def feed(self, frag: Fragment, now: float):
        anomalies: list[str] = []
        d = self._table.get(frag.key)
        if d is None:
            if len(self._table) >= self.max_frag_datagrams:
                self._drop(next(iter(self._table)))
                anomalies.append("ip_fragment_overflow")
            d = self._table[frag.key] = _Datagram(now)
        start, data = frag.offset, frag.data
        end = start + len(data) + frag.lost
        if end > MAX_DATAGRAM or len(d.pieces) >= self.max_frags_per_datagram:
            self._drop(frag.key)
            anomalies.append("ip_fragment_overflow")
            return None, anomalies
        if not frag.more:
            d.total = end
        if frag.offset == 0:
            d.proto = frag.proto
            d.ttl = frag.ttl
            d.verify = frag.verify
        if frag.version == 4 and d.proto is None:
            d.proto = frag.proto  # IPv4 carries the protocol in every fragment
        for s, b, _lost in d.pieces:
            e = s + len(b)
            if e <= start or s >= start + len(data):
                continue
            lo, hi = max(s, start), min(e, start + len(data))
            if b[lo - s : hi - s] != data[lo - start : hi - start]:
                d.conflict = True
        d.pieces.append((start, data, frag.lost))
        d.held += len(data)
        self.held_bytes += len(data)
        self.held_pieces += 1
        if d.conflict:
            # Two versions of the same bytes: the datagram is dropped whole.
            anomalies.append("ip_fragment_overlap")
            flow = self._flow(frag, d)
            if flow is not None:
                self.overlapped.append(flow)
            self._drop(frag.key)
            return None, anomalies
        if d.total is None:
            return None, anomalies
        done = self._assemble(d)
        if done is None:
            return None, anomalies
        self._drop(frag.key)
        whole, lost = done
        return (frag.version, frag.src, frag.dst, d.proto, whole, lost, d.ttl, frag.ctx, d.verify), anomalies

    @staticmethod
    def _flow(frag: Fragment, d: _Datagram) -> tuple | None:
        """The TCP connection of a datagram, from its first fragment's
        ports, when it has one."""
        if d.proto != 6:
            return None
        for s, b, _lost in d.pieces:
            if s == 0 and len(b) >= 4:
                return frag.src, frag.dst, int.from_bytes(b[0:2], "big"), int.from_bytes(b[2:4], "big"), frag.ctx
        return None

    @staticmethod
    def _assemble(d: _Datagram) -> tuple[bytes, int] | None:
        """(payload, lost) once bytes 0..total are all accounted for, else None.

        Bytes the snaplen cut count as accounted for (they will not come
        again); the payload then stops at the first such hole and ``lost``
        says how much is missing after it.
        """
        total = d.total
        covered = captured = 0
        for s, b, lost in sorted(d.pieces, key=lambda p: p[0]):
            if s > covered:
                return None
            if s <= captured:
                captured = max(captured, s + len(b))
            covered = max(covered, s + len(b) + lost)
        if covered < total:
            return None
        buf = bytearray(total)
        # Write in reverse arrival order so the first copy is written last
        # and wins every overlap.
        for s, b, _lost in reversed(d.pieces):
            if s < total:
                buf[s : min(total, s + len(b))] = b[: total - s]
        captured = min(captured, total)
        return bytes(buf[:captured]), total - captured

    def _drop(self, key: tuple) -> None:
        d = self._table.pop(key)
        self.held_bytes -= d.held
        self.held_pieces -= len(d.pieces)

    @property
    def memory(self) -> int:
        """Bytes held, with each fragment's object overhead (for the budget)."""
        return self.held_bytes + self.held_pieces * SEGMENT_COST

    def drop_all(self) -> int:
        """Drop every partial datagram (memory pressure); how many."""
        n = len(self._table)
        while self._table:
            self._drop(next(iter(self._table)))
        return n

    def expire(self, now: float) -> list[str]:
        """Drop datagrams older than the timeout; one anomaly name each."""
        out = []
        limit = now - self.frag_timeout_s
        while self._table:
            key, d = next(iter(self._table.items()))
            if d.first_seen > limit:
                break
            self._drop(key)
            out.append("ip_fragment_timeout")
        return out
