"""Metrics: sniffd's own counters for Prometheus, over HTTP and as a node_exporter textfile.

Nothing here is on the packet path.  The loop that owns the counters (the
live runner's processing loop, or the fan-out parent's loop) hands a copy of
them to ``Exporter.publish`` about once a second (sniffd.health); a scrape
reads the last copy (``SniffdCollector``), so the HTTP thread never touches
the flow table, which one thread owns (STYLE.md, *State*).  A scrape is at
most ``health.SNAPSHOT_INTERVAL_S`` stale; ``sniffd_snapshot_timestamp_seconds``
says how old.

The one per-record cost is ``RecordMeter.observe``: where records are handed
to the sink, each record's ``end_reason`` is counted and its ``duration_ms``
put in a fixed bucket (a bisect), only when metrics are on.  Fan-out workers
send their meter to the parent with their stats (sniffd.workers), and the
parent adds them up (``merge_meters``).

The listener is bound by ``Exporter.bind`` in live.start_up, before the
capture is opened and before privileges are dropped; its thread starts once
the daemon runs (after the fork, with workers, so no child inherits a thread).
Everything the thread will import is imported and exercised by ``bind``: after
the privilege drop the Python installation may not be readable.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import make_wsgi_app
from prometheus_client.registry import Collector, CollectorRegistry

from sniffd import __version__
from sniffd.oplog import log

# Upper bounds of the duration histogram's buckets, in milliseconds (exposed
# in seconds, Prometheus' base unit).  From a loopback exchange (well under
# 1 ms) to a long poll or a download (minutes): about two buckets per decade,
# as Prometheus' own defaults, widened at both ends.
DURATION_BUCKETS_MS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
                       10000.0, 30000.0, 60000.0, 300000.0)

# A scrape that has not sent its request within this many seconds is dropped:
# the listener serves one scrape at a time (one thread: TasksMax), so a
# client that connects and says nothing must not hold it.
REQUEST_TIMEOUT_S = 5.0

# The stats fields exposed as counters: (field, metric name without _total, help).
COUNTERS = (
    ("packets", "sniffd_packets", "Frames processed."),
    ("bytes", "sniffd_bytes", "Bytes of the frames processed."),
    ("kernel_received", "sniffd_kernel_received_packets", "Packets the kernel passed the filter (libpcap ps_recv)."),
    ("kernel_drops", "sniffd_kernel_drops", "Packets dropped because the kernel ring was full (libpcap ps_drop)."),
    ("interface_drops", "sniffd_interface_drops", "Packets dropped by the interface or driver (libpcap ps_ifdrop)."),
    ("queue_drops", "sniffd_queue_drops", "Frames dropped because the processing loop was behind (queue_batches full)."),
    ("non_tcp_packets", "sniffd_non_tcp_packets", "Frames that were not TCP (ignored)."),
    ("records_written", "sniffd_records_written", "Records that reached the output (whole lines)."),
    ("records_lost", "sniffd_records_lost", "Records that could not be written (backlog full while blocked, or held at exit)."),
    ("rotations", "sniffd_output_rotations", "Built-in rotations of the output file."),
    ("reopens", "sniffd_output_reopens", "Times the output file was opened again (SIGHUP, replaced, removed)."),
    ("write_errors", "sniffd_output_write_errors", "Writes and opens of the output the file system refused."),
)

# The stats fields exposed as gauges: (field, metric name, help).
GAUGES = (
    ("open_connections", "sniffd_open_connections", "Connections tracked now."),
    ("buffered_bytes", "sniffd_buffered_bytes", "Out-of-order TCP bytes held now."),
    ("fragments_held", "sniffd_fragments_held", "IP fragments held now."),
    ("records_held", "sniffd_records_held", "Records waiting in memory for the output now."),
    ("memory_estimate_bytes", "sniffd_memory_estimate_bytes", "What sniffd holds for the traffic, by its own estimate (see Memory budget)."),
    ("memory_budget_bytes", "sniffd_memory_budget_bytes", "The memory budget ([limits] memory_budget_mb), summed over workers."),
    ("workers", "sniffd_workers", "Capture processes ([capture] workers)."),
)

OUTPUT_STATES = ("ok", "blocked")


class RecordMeter:
    """Records counted by ``end_reason`` and their ``duration_ms`` in fixed buckets.

    ``buckets[i]`` counts durations <= DURATION_BUCKETS_MS[i] (and above the
    bound before it); the last slot counts those above every bound.  A record
    without a duration (no request or no response) is counted by end_reason
    only.  Owned by the thread that hands records to the sink.
    """

    __slots__ = ("by_end_reason", "buckets", "duration_sum_ms", "duration_count")

    def __init__(self) -> None:
        self.by_end_reason: dict[str, int] = {}
        self.buckets = [0] * (len(DURATION_BUCKETS_MS) + 1)
        self.duration_sum_ms = 0.0
        self.duration_count = 0

    def observe(self, records: Iterable[Mapping[str, Any]]) -> None:
        # Every record kind (records.build, build_tls) has both fields.
        by_reason = self.by_end_reason
        buckets = self.buckets
        bounds = DURATION_BUCKETS_MS
        total, n = 0.0, 0
        for r in records:
            reason = r["end_reason"]
            by_reason[reason] = by_reason.get(reason, 0) + 1
            d = r["duration_ms"]
            if d is not None:
                buckets[bisect_left(bounds, d)] += 1
                total += d
                n += 1
        self.duration_sum_ms += total
        self.duration_count += n

    def to_dict(self) -> dict[str, Any]:
        """A copy, as plain JSON values (a worker sends it to its parent)."""
        return {"by_end_reason": dict(self.by_end_reason), "buckets": list(self.buckets),
                "duration_sum_ms": self.duration_sum_ms, "duration_count": self.duration_count}


def merge_meters(meters: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """RecordMeter.to_dict() values added up (the fan-out parent's view)."""
    total = RecordMeter().to_dict()
    for m in meters:
        if not m:
            continue
        for reason, n in m["by_end_reason"].items():
            total["by_end_reason"][reason] = total["by_end_reason"].get(reason, 0) + n
        total["buckets"] = [a + b for a, b in zip(total["buckets"], m["buckets"], strict=True)]
        total["duration_sum_ms"] += m["duration_sum_ms"]
        total["duration_count"] += m["duration_count"]
    return total


class SniffdCollector(Collector):
    """Turns the last published snapshot into metric families at each scrape.

    ``publish`` swaps in a new snapshot (one reference assignment, safe
    across threads); ``collect`` reads whichever one is current.
    """

    def __init__(self) -> None:
        self._snapshot: tuple[dict[str, Any], float] | None = None

    def publish(self, fields: dict[str, Any], wall: float) -> None:
        self._snapshot = (fields, wall)

    def collect(self):
        info = GaugeMetricFamily("sniffd_build_info", "sniffd's version; always 1.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        snap = self._snapshot
        if snap is None:
            return
        fields, wall = snap
        yield GaugeMetricFamily("sniffd_snapshot_timestamp_seconds",
                                "When these numbers were taken (Unix time); they are refreshed about once a second.", value=wall)
        for key, name, help_text in COUNTERS:
            yield CounterMetricFamily(name, help_text, value=fields.get(key, 0))
        for key, name, help_text in GAUGES:
            yield GaugeMetricFamily(name, help_text, value=fields.get(key, 0))
        state = GaugeMetricFamily("sniffd_output_state", "1 for the output's current state (ok, or blocked: see Output).", labels=["state"])
        for s in OUTPUT_STATES:
            state.add_metric([s], 1 if fields.get("output_state") == s else 0)
        yield state
        anomalies = CounterMetricFamily("sniffd_anomalies", "Anomalies seen, by name (README, Anomalies).", labels=["name"])
        for name, n in sorted(fields.get("anomalies", {}).items()):
            anomalies.add_metric([name], n)
        yield anomalies
        meter = fields.get("record_meter") or RecordMeter().to_dict()
        records = CounterMetricFamily("sniffd_records", "Records made, by end_reason.", labels=["end_reason"])
        for reason, n in sorted(meter["by_end_reason"].items()):
            records.add_metric([reason], n)
        yield records
        cumulative, running = [], 0
        for bound, n in zip((*DURATION_BUCKETS_MS, float("inf")), meter["buckets"], strict=True):
            running += n
            cumulative.append((_le(bound), running))
        yield HistogramMetricFamily(
            "sniffd_record_duration_seconds",
            "Records' duration_ms (first request byte to last response byte), in seconds; records with both ends only.",
            buckets=cumulative, sum_value=meter["duration_sum_ms"] / 1000.0)


def _le(bound_ms: float) -> str:
    if bound_ms == float("inf"):
        return "+Inf"
    return repr(bound_ms / 1000.0)


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (that is the operational log's), and a bound on a silent client."""

    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(WSGIServer):
    # Bind with SO_REUSEADDR (a restart must not wait for TIME_WAIT); a port
    # another process listens on is still refused (EADDRINUSE).
    allow_reuse_address = True

    def server_bind(self) -> None:
        # http.server's own server_bind asks socket.getfqdn(address): a
        # reverse DNS lookup at start, which can hang for the resolver's
        # timeout on a gateway without DNS.  The name is only used in the
        # WSGI environ's SERVER_NAME, which no one reads here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback on stderr; the operational log is
        # JSON lines there, so one event instead (a client that went away
        # mid-answer is not reported at all: wsgiref ignores it).
        log.warning("metrics_request_failed", client=str(client_address[0]), error=repr(sys.exc_info()[1]))


class _Server6(_Server):
    address_family = socket.AF_INET6


class Exporter:
    """The ``[metrics]`` section at work: the listener (``listen``), the textfile, and the collector."""

    def __init__(self, host: str | None, port: int, textfile: str, textfile_interval_s: float) -> None:
        self.host, self.port = host, port
        self.textfile = textfile
        self.textfile_interval_s = textfile_interval_s
        self.collector = SniffdCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.server: WSGIServer | None = None
        self.thread: threading.Thread | None = None
        self._next_textfile = 0.0
        self.textfile_error: str | None = None

    def bind(self) -> None:
        """Listen (if configured) and load what a scrape will need; OSError when the address is refused."""
        app = make_wsgi_app(self.registry)
        # One scrape of each kind now, as the starting user: the text and
        # OpenMetrics encoders and gzip are imported here, not after the drop.
        self.collector.publish({}, time.time())
        for accept, encoding in (("", ""), ("application/openmetrics-text; version=1.0.0", "gzip")):
            env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": "",
                   "HTTP_ACCEPT": accept, "HTTP_ACCEPT_ENCODING": encoding}
            app(env, lambda status, headers: None)
        self.collector._snapshot = None
        if self.host is None:
            return
        server_class = _Server6 if ":" in self.host else _Server
        self.server = server_class((self.host, self.port), _QuietHandler)
        self.server.set_app(app)
        self.port = self.server.server_address[1]

    def start(self) -> None:
        """Serve scrapes from a thread of its own (one scrape at a time)."""
        if self.server is None or self.thread is not None:
            return
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.5},
                                       name="sniffd-metrics", daemon=True)
        self.thread.start()

    def publish(self, fields: dict[str, Any], mono: float, final: bool = False) -> None:
        """New numbers for the next scrape; the textfile is written when due (always when ``final``)."""
        self.collector.publish(fields, time.time())
        if self.textfile and (final or mono >= self._next_textfile):
            self._next_textfile = mono + self.textfile_interval_s
            self.write_textfile()

    def write_textfile(self) -> None:
        """Write the textfile (a temporary file in its directory, renamed over it);
        a failure is remembered in ``textfile_error`` (health logs it once)."""
        try:
            write_to_textfile(self.textfile, self.registry)
        except OSError as e:
            self.textfile_error = f"{self.textfile}: {e.strerror}"
        else:
            self.textfile_error = None

    def close(self) -> None:
        """Stop serving and close the listening socket (also in a forked worker, which must not keep it)."""
        server = self.server
        if server is None:
            return
        if self.thread is not None:
            server.shutdown()
            self.thread.join(2.0)
            self.thread = None
        server.server_close()
        self.server = None

    def forget(self) -> None:
        """In a forked child: close the inherited socket without touching the parent's thread."""
        if self.server is not None:
            self.server.socket.close()
            self.server = None
