"""The live runner: one capture, one pipeline, one sink, until a signal.

``sniffd run`` with one worker is ``Daemon``: ``start_up``, then one
``LiveRunner`` writing to the records file.  With ``[capture] workers = N``
each worker process is the same ``LiveRunner`` on its share of a fanout group,
writing to its pipe to the parent (sniffd.workers).  The runner knows its
output only as a ``sink.Sink``, and where its own events go only as a
``Report``.

Threads of a runner, and who owns what::

    main thread        the signal handlers (they only set attributes, see
                       Signals), then the processing loop: owns the Pipeline
                       and the sink: feeds frames, expires on ticks, writes
                       records, reports stats, and at the end flushes every
                       open transaction ("shutdown")
    capture thread     owns the libpcap handle: reads batches, puts them on a
                       bounded queue (put_nowait: when full the batch is
                       dropped and its frames counted), puts a Tick when a
                       read times out so time advances on a quiet link

The queue is the only thing the two threads share; the counters each writes
are plain ints read by the other for the stats (a stale read is fine).

Order at start (``start_up``), like ``tcpdump -Z``: check the whole
configuration, open the capture with the privilege it needs, drop to the
configured user (and drop every capability), then open the output file as
that user, then start the threads.  Anything wrong before the threads start
is one line on stderr and exit status 2 (sniffd.cli).
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sniffd import oplog
from sniffd.capture import DEFAULT_BATCH_SIZE, Batch, LiveCapture, open_fanout
from sniffd.config import Config, ConfigError, parse_listen
from sniffd.health import ServiceReport
from sniffd.metrics import Exporter, RecordMeter
from sniffd.notify import Notifier
from sniffd.oplog import log

# Every stage is imported here, while the files are surely readable: after
# the privilege drop the venv might not be (and no import should happen on
# the packet path anyway).
from sniffd.pipeline import Pipeline
from sniffd.privileges import drop_privileges, preload
from sniffd.records import serializer
from sniffd.settings import Settings
from sniffd.sink import JsonLinesSink, Sink, open_sink

# Exit status of `sniffd run` (sniffd.cli has the usage error's, 2).
EXIT_OK = 0
EXIT_FAILURE = 1

# After SIGTERM the capture keeps reading for this many read timeouts: libpcap
# hands packets over a block at a time, and the current block is only handed
# over when its timer (the read timeout) fires.  Without this the last ~200 ms
# of traffic, e.g. the request that is in flight, would be lost at shutdown.
SHUTDOWN_DRAIN_TIMEOUTS = 2

# Upper bound on the time spent processing what is still queued at shutdown;
# what is left after it is counted as queue drops.  systemd's TimeoutStopSec in
# systemd/sniffd.service is 15 s, well above this.
SHUTDOWN_PROCESS_BUDGET_S = 5.0

# Quiet-link expiry runs at most this often (see _process).
TICK_EXPIRE_INTERVAL_S = 1.0

# How often the capture thread refreshes the kernel counters (pcap_stats).
KERNEL_STATS_INTERVAL_S = 1.0

# The capture thread takes a turn at least every read timeout (at most 1 s);
# one that has not for this long is stuck, and the watchdog stops (health).
CAPTURE_STALL_S = 10.0


@dataclass(slots=True, frozen=True)
class Tick:
    """A read timed out with no packet: time advances to ``wall`` (time.time())."""

    wall: float


_STOP = object()


class Report(Protocol):
    """Where a runner's own events go: the operational log (oplog.LogReport),
    or a worker's parent, which logs them summed (workers.ParentReport)."""

    # Seconds between stats() calls; 0 = never.
    interval_s: float
    # stats() and shutdown() also get the metrics' fields (memory estimate
    # and budget, the RecordMeter): a worker's parent exposes them.
    health_fields: bool

    def ready(self, source: Callable[[], dict[str, Any]]) -> None:
        """The runner is running (capture open, privileges dropped, output
        open, threads started); ``source()`` gives its counters from now on,
        in the processing loop's thread only."""

    def beat(self, now: float) -> None:
        """Called on every turn of the processing loop (``now``: time.monotonic())."""

    def stats(self, fields: dict[str, Any]) -> None:
        """The runner's counters now (oplog.stats_fields)."""

    def stopping(self, signum: int) -> None:
        """A stop signal was seen; the capture drains, then the runner ends."""

    def shutdown(self, fields: dict[str, Any], exit_status: int) -> None:
        """The last counters, once the sink is closed; nothing follows."""


class Signals:
    """What the signal handlers saw: SIGTERM/SIGINT set ``stop``; SIGHUP asks
    ``sink`` (once there is one) to reopen at its owner's next write or tick.

    Handlers only set plain attributes: taking a lock (an Event, the logger)
    inside a handler can deadlock against the code it interrupted.  Python
    runs them in the main thread, which then acts on them.
    """

    def __init__(self) -> None:
        self.stop: int | None = None
        self.sink: Sink | None = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stop = signum

    def _on_hup(self, signum: int, frame: object) -> None:
        if self.sink is not None:
            self.sink.request_reopen()


# --- start --------------------------------------------------------------------


@dataclass(slots=True)
class Opened:
    """What start_up opened, as the user it dropped to."""

    captures: list[LiveCapture]  # one, or the members of the fanout group
    group: int | None  # the fanout group's id; None with one capture
    pipelines: list[Pipeline]  # one per capture
    sink: JsonLinesSink  # or a natssink.NatsSink: a sink.Sink either way
    uid: int
    gid: int
    versions: dict[str, str]
    metrics: Exporter | None  # bound, not serving yet ([metrics])
    notifier: Notifier  # $NOTIFY_SOCKET (does nothing without it)

    @property
    def linktype(self) -> int:
        return self.captures[0].linktype


def start_up(cfg: Config, settings: Settings, workers: int) -> Opened:
    """Open ``workers`` captures (one, or a fanout group) and a pipeline for each,
    drop privileges, open the output: the order of the module docstring.

    Raises CaptureError, ConfigError, PrivilegeError or OSError, each naming
    the key or the file, with nothing left open.
    """
    cap = cfg.capture
    options = dict(
        bpf=cap["bpf_filter"],
        snaplen=cap["snaplen"],
        promiscuous=cap["promiscuous"],
        buffer_bytes=cap["buffer_bytes"],
        read_timeout_ms=cap["read_timeout_ms"],
    )
    # The metrics listener first: an address in use or not on this host is
    # a configuration error (exit 2), found before anything else is opened.
    metrics = open_metrics(cfg)
    try:
        if workers == 1:
            captures, group = [LiveCapture(cap["interface"], **options)], None
        else:
            captures, group = open_fanout(cap["interface"], workers, **options)
    except BaseException:
        if metrics is not None:
            metrics.close()
        raise
    try:
        # One token key for every pipeline, so a secret gets the same token
        # whichever worker saw it (a random one when none is configured).
        key = cfg.redact_key()
        if key is None and settings.redact:
            key = os.urandom(32)
        try:
            pipelines = [Pipeline(settings, snaplen=cap["snaplen"], redact_key=key, interface=cap["interface"]) for _ in captures]
        except ValueError as e:
            # A stage refused a setting the config checks let through.
            raise ConfigError(f"{cfg.path or 'configuration'}: {e}") from None
        if len(pipelines) > 1 and settings.flow_pcap_dir:
            # Each worker writes its own connections' flow pcaps into the
            # one directory, under its share of the total (sniffd.flowpcap).
            for k, p in enumerate(pipelines):
                p.tap.share(k, len(pipelines))
        versions = oplog.versions()
        preload()
        # The record writer too ([output] format; sniffd.ecs is imported only
        # for "ecs"): after the drop its module may be unreadable.
        serializer(settings.format)
        # The first rendered event also loads what the log renderer needs.
        fanout = {} if group is None else {"workers": workers, "fanout_group": group}
        oplog.capture_opened(cfg, captures[0].linktype, **fanout)
        notifier = Notifier()
        if "://" in cfg.output["path"]:
            # The NATS client (and what it imports) while the venv is surely readable.
            import nats  # noqa: F401

            import sniffd.natssink  # noqa: F401
        uid, gid = drop_privileges(cfg.get("privileges", "user"), cfg.get("privileges", "group"))
        if settings.flow_pcap_dir and not os.access(settings.flow_pcap_dir, os.W_OK | os.X_OK):
            # Flow pcaps are made as the user sniffd now runs as.
            raise ConfigError(f"{cfg.where('flow_pcaps', 'flow_pcap_dir')}: directory {settings.flow_pcap_dir} "
                              f"is not writable by uid {uid}")
        sink = open_sink(cfg, oplog.sink_event)
    except BaseException:
        for capture in captures:
            capture.close()
        if metrics is not None:
            metrics.close()
        raise
    return Opened(captures, group, pipelines, sink, uid, gid, versions, metrics, notifier)


def open_metrics(cfg: Config) -> Exporter | None:
    """The ``[metrics]`` exporter, its listener bound (None when ``enabled = false``);
    ConfigError naming ``listen`` when the address cannot be bound."""
    m = cfg.values["metrics"]
    if not m["enabled"]:
        return None
    host, port = parse_listen(m["listen"]) if m["listen"] else (None, 0)
    exporter = Exporter(host, port, m["textfile"], m["textfile_interval_s"])
    try:
        exporter.bind()
    except OSError as e:
        raise ConfigError(f"{cfg.where('metrics', 'listen')}: cannot listen on {m['listen']}: {e.strerror}") from None
    return exporter


def service_report(cfg: Config, opened: Opened, progress: Callable[[], bool] | None = None) -> ServiceReport:
    """The report of the process systemd started: the log, sd_notify, the metrics."""
    kwargs = {} if progress is None else {"progress": progress}
    return ServiceReport(cfg.get("stats", "interval_s"), opened.notifier, opened.metrics, cfg.capture["interface"], **kwargs)


class Daemon:
    """``sniffd run`` with one worker: prepare() opens everything, run() until a signal."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.signals = Signals()
        self.opened: Opened | None = None

    def prepare(self) -> None:
        # Handlers first: a SIGHUP from logrotate during start-up must not
        # kill the daemon (the default action), and a SIGTERM is honoured as
        # soon as the threads run.
        self.signals.install()
        self.opened = start_up(self.cfg, self.cfg.settings(), workers=1)
        self.signals.sink = self.opened.sink

    def run(self) -> int:
        opened = self.opened
        assert opened is not None
        oplog.start(self.cfg, opened.linktype, opened.uid, opened.gid, opened.versions, workers=1)
        capture = opened.captures[0]
        runner: LiveRunner | None = None

        def capturing() -> bool:
            # The watchdog's other half: the capture thread still hands over
            # batches or ticks (the processing loop's turns are the first).
            return runner is not None and runner.capture_alive()

        report = service_report(self.cfg, opened, capturing)
        meter = RecordMeter() if opened.metrics is not None else None
        runner = LiveRunner(self.cfg.capture, capture, opened.pipelines[0], opened.sink, report, self.signals, meter)
        if opened.metrics is not None:
            opened.metrics.start()
        try:
            return runner.run()
        finally:
            capture.close()
            if opened.metrics is not None:
                opened.metrics.close()
            opened.notifier.close()


# --- the runner -----------------------------------------------------------------


class LiveRunner:
    """The capture thread and the processing loop over one capture, pipeline and sink.

    ``cap``: the ``[capture]`` section (read_timeout_ms, batch_size,
    queue_batches).  run() ends after a stop signal (``signals.stop``), a
    capture failure, or the sink's reader going away, with every open
    transaction written; the capture stays open for its owner to close (a
    worker keeps its socket in the fanout group until it is let go).
    """

    def __init__(self, cap: Mapping[str, Any], capture: LiveCapture, pipeline: Pipeline, sink: Sink,
                 report: Report, signals: Signals, meter: RecordMeter | None = None) -> None:
        self.read_timeout_s = cap["read_timeout_ms"] / 1000.0
        self.batch_size = cap["batch_size"] or DEFAULT_BATCH_SIZE
        self.queue: queue.Queue = queue.Queue(maxsize=cap["queue_batches"])
        self.capture = capture
        self.pipeline = pipeline
        self.sink = sink
        self.report = report
        self.signals = signals
        # Records by end_reason and their durations, for the metrics (None: off).
        self.meter = meter
        self.stop_requested = threading.Event()
        self.exit_status = EXIT_OK
        # Written by the capture thread only.
        self.queue_drops = 0  # frames
        self.kernel_stats: tuple[int, int, int] = (0, 0, 0)
        self.capture_turn = time.monotonic()  # the capture loop's last turn
        # Written by the processing loop only: frames left unprocessed when
        # the shutdown budget ran out (reported as queue drops too).
        self.shutdown_drops = 0

    def run(self) -> int:
        capture_thread = threading.Thread(target=self._capture_loop, name="sniffd-capture", daemon=True)
        capture_thread.start()
        self.report.ready(self._health_fields)
        self._processing_loop()
        capture_thread.join()
        return self.exit_status

    def capture_alive(self) -> bool:
        """The capture thread took a turn lately (a read returns at least every read timeout)."""
        return time.monotonic() - self.capture_turn < CAPTURE_STALL_S

    # -- capture thread --

    def _capture_loop(self) -> None:
        capture = self.capture
        q = self.queue
        batch_size = self.batch_size
        next_stats = 0.0
        drain_until: float | None = None
        try:
            while True:
                now = self.capture_turn = time.monotonic()
                if self.stop_requested.is_set():
                    if drain_until is None:
                        drain_until = now + SHUTDOWN_DRAIN_TIMEOUTS * self.read_timeout_s
                    elif now >= drain_until:
                        break
                if now >= next_stats:
                    self.kernel_stats = capture.stats()
                    next_stats = now + KERNEL_STATS_INTERVAL_S
                batch = capture.next_batch(batch_size)
                if batch is None:
                    try:
                        q.put_nowait(Tick(time.time()))
                    except queue.Full:
                        # The processing loop is behind; it has packets to
                        # advance time with.
                        pass
                    continue
                try:
                    q.put_nowait(batch)
                except queue.Full:
                    # Memory stays flat under a burst: the frames are dropped
                    # here and counted, as the kernel does when its ring is full.
                    self.queue_drops += len(batch)
        except Exception as e:  # CaptureError, or pcapy's own from stats()
            self.exit_status = EXIT_FAILURE
            log.error("capture_failed", interface=capture.interface, error=str(e))
        finally:
            try:
                self.kernel_stats = capture.stats()
            except Exception:
                pass
            self.stop_requested.set()
            # The sentinel must get through: block (the processing loop is
            # draining the queue, so room appears).
            q.put(_STOP)

    # -- processing loop (the main thread) --

    def _processing_loop(self) -> None:
        sink = self.sink
        try:
            self._process(sink)
        except BrokenPipeError:
            # `sniffd run -o - | head`: the reader went away.
            self.exit_status = EXIT_OK
            self.stop_requested.set()
            self._discard_queue()
        except BaseException:
            log.exception("processing_failed")
            self.exit_status = EXIT_FAILURE
            self.stop_requested.set()
            try:
                sink.close()  # keep the records already made
            except OSError:
                pass
            self._discard_queue()

    def _discard_queue(self) -> None:
        # Keep taking items so the capture thread's final put() cannot block.
        while True:
            item = self.queue.get()
            if item is _STOP:
                return

    def _process(self, sink: Sink) -> None:
        pipeline = self.pipeline
        linktype = self.capture.linktype
        dumps = serializer(pipeline.settings.format)  # [output] format
        # The batch entry point does the per-frame loop with its state in
        # locals (the hot path); feed() per frame is the documented fallback.
        feed_batch = getattr(pipeline, "feed_batch", None)
        q = self.queue
        # Ticks are set back by this much: a packet can sit in libpcap's
        # current block for up to one read timeout before it is handed over,
        # so "nothing arrived" at wall time T only vouches for T minus that.
        tick_lag_s = 2 * self.read_timeout_s
        stats_interval = self.report.interval_s
        next_stats = time.monotonic() + stats_interval if stats_interval else float("inf")
        shutdown_deadline: float | None = None
        next_tick_expire = 0.0
        meter = self.meter
        report = self.report

        def write(out: list[dict]) -> None:
            """Records to the sink, and to the metrics' meter when there is one."""
            sink.add(dumps(r) for r in out)
            if meter is not None:
                meter.observe(out)

        while True:
            try:
                item = q.get(timeout=self.read_timeout_s)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if self.signals.stop is not None and not self.stop_requested.is_set():
                # The signal handler only set the attribute (see Signals).
                self.report.stopping(self.signals.stop)
                self.stop_requested.set()
            if self.stop_requested.is_set() and shutdown_deadline is None:
                shutdown_deadline = time.monotonic() + SHUTDOWN_PROCESS_BUDGET_S
            if shutdown_deadline is not None and type(item) is Batch and time.monotonic() > shutdown_deadline:
                self.shutdown_drops += len(item)
                continue
            if type(item) is Batch:
                if feed_batch is not None:
                    out = feed_batch(linktype, item)
                else:
                    out = []
                    for ts, frame in item.frames():
                        # pcapy-ng's batches carry caplen only; the pipeline
                        # tells snaplen cuts apart by the capture's snaplen.
                        out += pipeline.feed(ts, linktype, frame)
                if out:
                    write(out)
            elif type(item) is Tick and item.wall >= next_tick_expire:
                # At most once a second, as the pipeline does by packet time:
                # timeouts are in seconds, and a scan of a large flow table
                # five times a second would be waste.
                next_tick_expire = item.wall + TICK_EXPIRE_INTERVAL_S
                # The pipeline's clock never goes back: a tick older than the
                # last packet changes nothing.
                out = pipeline.expire(item.wall - tick_lag_s)
                if out:
                    write(out)
            mono = time.monotonic()
            sink.maybe_flush(mono)
            if mono >= next_stats:
                report.stats(self._report_fields())
                next_stats = mono + stats_interval
            report.beat(mono)
        # Shutdown: every open transaction becomes a record flagged cut_by_shutdown.
        out = pipeline.flush("shutdown")
        if out:
            write(out)
        sink.close()
        report.shutdown(self._report_fields(), self.exit_status)

    def _report_fields(self) -> dict[str, Any]:
        return self.stats(health=self.report.health_fields)

    def _health_fields(self) -> dict[str, Any]:
        return self.stats(health=True)

    def stats(self, health: bool = False) -> dict[str, Any]:
        """The stats event's fields; with ``health``, also the metrics' own
        (memory estimate and budget, ``record_meter``)."""
        p = self.pipeline.stats
        received, kernel_drops, if_drops = self.kernel_stats
        counters = {
            **p,
            "kernel_received": received,
            "kernel_drops": kernel_drops,
            "interface_drops": if_drops,
            "queue_drops": self.queue_drops + self.shutdown_drops,
        }
        out = oplog.stats_fields(counters, self.sink.stats(), p.get("anomalies", {}), workers=1)
        if health:
            out["memory_estimate_bytes"] = p.get("memory_estimate_bytes", 0)
            out["memory_budget_bytes"] = p.get("memory_budget_bytes", 0)
            if self.meter is not None:
                out["record_meter"] = self.meter.to_dict()
        return out
