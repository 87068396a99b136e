"""Bounded memo tables for values that are pure functions of their key (pure, per process).

One job: remember a few results of an expensive pure function (a hello's
fingerprints, a certificate's summary), so that the thousandth connection
from the same client stack or to the same server costs a dictionary look-up.
Real traffic has few distinct client stacks and server certificates; a
memo never changes a result, only how long it takes: a miss computes, a hit
gives what the same computation gave before.

Bounds: at most ``size`` entries, each admitted only if the caller says it is
small (the caller knows what its keys and values weigh); when full, the
oldest entry is dropped (first in, first out: no clock, no counters).

Admission: a key is stored on its second sighting, not its first.  Keys
that never come back would otherwise push out the ones that do: a stack
that sends GREASE (RFC 8701: Chrome, Safari, Android) picks new GREASE
values at every connection, and Chrome shuffles its extension order too,
so each of their hellos is a new key; a server seen once is another.  The keys seen once are
remembered by their ``hash()`` only, in a table of the same bounded kind;
two keys with the same hash only admit one of them a sighting early.

A memo is module state of a pure stage: it is per process (a forked worker
starts with a copy), used by the one thread that runs the stage, and what
it holds never shows in a result.
"""

from __future__ import annotations

from collections.abc import Hashable

_ABSENT = object()


class Memo:
    """A bounded memo; see the module docstring.  Use::

        value = memo.get(key)
        if value is None:
            value = compute(...)
            memo.put(key, value)     # only when key and value are small

    Values are never None."""

    __slots__ = ("size", "_values", "_seen", "hits", "misses")

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"Memo size must be >= 0, got {size}")
        self.size = size
        self._values: dict = {}
        self._seen: dict[int, None] = {}  # hashes of keys seen once, oldest first
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: Hashable):
        """The remembered value for ``key``, or None."""
        value = self._values.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: Hashable, value: object) -> None:
        """``value`` was computed for ``key``: remember it if this is the key's
        second sighting (the first is only noted), dropping the oldest entry
        when full."""
        size = self.size
        if not size:
            return
        seen = self._seen
        h = hash(key)
        if seen.pop(h, _ABSENT) is _ABSENT:  # a first sighting: note it
            if len(seen) >= 4 * size:
                del seen[next(iter(seen))]
            seen[h] = None
            return
        values = self._values
        if len(values) >= size:
            del values[next(iter(values))]
        values[key] = value
