"""`sniffd read`'s progress bar on stderr (I/O; tqdm draws it).

Shown only when stderr is a terminal and --quiet is not given, so CI logs,
pipes and files never get one; and only once a read has taken DELAY_S, so
a short read never flashes a bar.  It shows the input's bytes read (of
their total when every input's size is known: plain and compressed files,
not pipes; for a compressed file, its compressed bytes), the rate, and
the packets read.  It is cleared at the end: what stays on the terminal is
what sniffd says (warnings, --stats), not the bar.
"""

from __future__ import annotations

import sys

# A read shorter than this gets no bar at all (tqdm's ``delay``).
DELAY_S = 1.0
# Redraw at most this often: drawing costs, the eye needs no more.
REFRESH_S = 0.25


def wanted(quiet: bool) -> bool:
    """Whether a read shows a bar: not --quiet, and stderr a terminal."""
    if quiet:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """One bar for a whole run (all its inputs in turn).

    Call ``update(packets, position)`` after each batch, with the packets
    it held and the current input's position (bytes read of it); ``next_input()``
    when an input is done; ``write(line)`` to put a line on stderr above the
    bar; ``close()`` at the end."""

    def __init__(self, total_bytes: int | None) -> None:
        from tqdm import tqdm  # here: a run without a bar never imports it

        self._tqdm = tqdm
        self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                         delay=DELAY_S, mininterval=REFRESH_S, leave=False, dynamic_ncols=True,
                         desc="reading", smoothing=0.1)
        self._packets = 0
        self._done_bytes = 0  # of the inputs before this one
        self._shown = 0  # bytes the bar counts so far

    def update(self, packets: int, position: int) -> None:
        self._packets += packets
        now = self._done_bytes + position
        bar = self._bar
        bar.set_postfix_str(f"{self._packets:,} packets", refresh=False)
        # update(0) too: tqdm redraws on time, and the packets move on.
        bar.update(max(now - self._shown, 0))
        self._shown = max(now, self._shown)

    def next_input(self, position: int) -> None:
        self._done_bytes += position

    def write(self, line: str) -> None:
        self._tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()
