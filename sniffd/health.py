"""Health: what the daemon tells systemd and Prometheus, from the loop that does the work.

``ServiceReport`` is the ``live.Report`` of the process systemd started (the
one-process daemon, or the fan-out parent): it logs as ``oplog.LogReport``
does and, besides,

- ``ready(source)``: the capture is open, privileges are dropped, the output
  is open and the threads run: ``READY=1`` and a first ``STATUS=``;
- ``beat(now)``, on every turn of the loop that owns the counters (at least
  every read timeout): about once a second a fresh snapshot for the metrics
  (``metrics.Exporter.publish``, which also writes the textfile when due),
  and ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` while ``progress()``
  holds.  The pings come from that loop and nowhere else, so a loop that
  is stuck (a write that never returns, a bug that spins elsewhere) stops
  them and systemd restarts sniffd after ``WatchdogSec=``;
- ``stats(fields)``: the ``stats`` event, and ``STATUS=`` with the packet
  and record rates since the previous one;
- ``stopping``: ``STOPPING=1``; ``shutdown``: a last snapshot and textfile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sniffd import oplog
from sniffd.metrics import Exporter
from sniffd.notify import Notifier

# Metrics are refreshed this often (a scrape is at most this stale).  One
# pipeline.stats() a second: a flow-table length and a few sums.
SNAPSHOT_INTERVAL_S = 1.0


def _no_progress_check() -> bool:
    return True


class ServiceReport(oplog.LogReport):
    """A ``live.Report`` that also notifies systemd and feeds the metrics (module docstring)."""

    def __init__(self, interval_s: float, notifier: Notifier, exporter: Exporter | None, interface: str,
                 progress: Callable[[], bool] = _no_progress_check) -> None:
        super().__init__(interval_s)
        self.notifier = notifier
        self.exporter = exporter
        self.interface = interface
        self.progress = progress
        self.source: Callable[[], dict[str, Any]] | None = None
        self._next_snapshot = 0.0
        self._next_ping = 0.0
        self._last: tuple[float, int, int] | None = None  # (monotonic, packets, records) at the last STATUS
        self._textfile_error_logged: str | None = None
        # What the watchdog did, for the operational log's stopping event.
        self.pings = 0

    # -- live.Report --

    def ready(self, source: Callable[[], dict[str, Any]]) -> None:
        """Running: remember where the counters come from, publish them, tell systemd."""
        self.source = source
        now = time.monotonic()
        fields = source()
        self._publish(fields, now)
        self._last = (now, fields.get("packets", 0), fields.get("records", 0))
        self.notifier.send("READY=1", f"STATUS=capturing on {self.interface}")
        self.beat(now)

    def beat(self, now: float) -> None:
        if self.source is None:
            return
        if now >= self._next_snapshot and self.exporter is not None:
            self._publish(self.source(), now)
        if self.notifier.watchdog_interval_s and now >= self._next_ping and self.progress():
            if self.notifier.send("WATCHDOG=1"):
                self.pings += 1
            self._next_ping = now + self.notifier.watchdog_interval_s

    def stats(self, fields: dict[str, Any]) -> None:
        super().stats(fields)
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            t0, packets0, records0 = self._last
            dt = now - t0
            pps = (fields.get("packets", 0) - packets0) / dt
            rps = (fields.get("records", 0) - records0) / dt
            drops = fields.get("kernel_drops", 0) + fields.get("queue_drops", 0)
            self.notifier.send(f"STATUS=capturing on {self.interface}: {pps:.1f} packets/s, {rps:.1f} records/s, "
                               f"{fields.get('open_connections', 0)} connections, {drops} drops, "
                               f"output {fields.get('output_state', 'ok')}")
        self._last = (now, fields.get("packets", 0), fields.get("records", 0))

    def stopping(self, signum: int) -> None:
        self.notifier.send("STOPPING=1", "STATUS=stopping: writing open transactions")
        super().stopping(signum)

    def shutdown(self, fields: dict[str, Any], exit_status: int) -> None:
        if self.exporter is not None and self.source is not None:
            self._publish(self.source(), time.monotonic(), final=True)
        super().shutdown(fields, exit_status)

    # -- internals --

    def _publish(self, fields: dict[str, Any], now: float, final: bool = False) -> None:
        self._next_snapshot = now + SNAPSHOT_INTERVAL_S
        if self.exporter is None:
            return
        self.exporter.publish(fields, now, final)
        error = self.exporter.textfile_error
        if error != self._textfile_error_logged:
            # Once per new problem, and once when it is over: not every write.
            if error is not None:
                oplog.log.error("metrics_textfile_failed", path=self.exporter.textfile, error=error)
            else:
                oplog.log.info("metrics_textfile_resumed", path=self.exporter.textfile)
            self._textfile_error_logged = error
