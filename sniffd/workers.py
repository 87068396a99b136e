"""Fan-out workers: ``sniffd run`` with ``[capture] workers = N`` (N > 1).

The parent (``Supervisor``) owns the output; each worker is the one live
runner (sniffd.live.LiveRunner) on its member of the fanout group, writing
to a pipe (``PipeSink``) and reporting to the parent (``ParentReport``)::

    parent (1 thread)  opens N captures in one PACKET_FANOUT_HASH group,
                       drops privileges, opens the output, forks; then
                       reads every worker's pipe and writes whole lines to
                       the one file (rotation, SIGHUP), sums the stats,
                       forwards SIGTERM/SIGINT
    worker k           owns capture k: capture thread + processing (its
                       main thread) with its own Pipeline, as one process
                       does; its records go to the parent over its own pipe
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import select
import selectors
import signal
import struct
import sys
import time
from collections.abc import Iterable
from typing import Any

from sniffd import oplog
from sniffd.capture import LiveCapture
from sniffd.config import Config
from sniffd.live import (
    EXIT_FAILURE,
    EXIT_OK,
    SHUTDOWN_DRAIN_TIMEOUTS,
    SHUTDOWN_PROCESS_BUDGET_S,
    LiveRunner,
    Opened,
    Signals,
    service_report,
    start_up,
)
from sniffd.metrics import RecordMeter, merge_meters
from sniffd.oplog import configure_logging, log
from sniffd.pipeline import Pipeline
from sniffd.settings import Settings
from sniffd.sink import OUTPUT_STATS, JsonLinesSink

# Worker -> parent frames: kind (1 byte), payload length (4 bytes), payload.
#   R  record lines, "\n"-joined (records are ASCII JSON: no raw newline inside)
#   S  the worker's stats, JSON (every WORKER_STATS_INTERVAL_S)
#   F  the last frame: {"stats": ..., "exit_status": n}; then the pipe closes
FRAME = struct.Struct(">cI")
FRAME_RECORDS, FRAME_STATS, FRAME_FINAL = b"R", b"S", b"F"

# A worker reports its counters this often, whatever [stats] interval_s is:
# the parent's stats event is at most this stale, and a worker whose parent
# died without a signal finds out (its write fails) within it.
WORKER_STATS_INTERVAL_S = 1.0

# Each worker's pipe holds this much (F_SETPIPE_SZ; 1 MiB is the default
# /proc/sys/fs/pipe-max-size): a burst of records while the parent writes
# waits in the kernel instead of stalling the worker.
PIPE_BYTES = 1 << 20

# The parent reads at most this much from one pipe per turn, so a busy worker
# cannot starve the others.
READ_CHUNK_BYTES = 1 << 20

# After forwarding SIGTERM the parent waits this long for every worker's last
# frame: a worker drains the capture (SHUTDOWN_DRAIN_TIMEOUTS read timeouts)
# and processes what is queued (SHUTDOWN_PROCESS_BUDGET_S); the rest is slack.
# Whoever is still running then is killed.  Below systemd's TimeoutStopSec (15 s).
WORKER_STOP_SLACK_S = 3.0

# A worker that has sent its last frame waits at most this long for the parent
# to let it go (see Supervisor._worker_main); then it exits anyway.
WORKER_RELEASE_TIMEOUT_S = 15.0

# Once let go, a worker exits at once; one still there after this is killed.
WORKER_EXIT_TIMEOUT_S = 3.0

# A worker whose last stats frame is older than this is not making progress
# (its processing loop sends one every WORKER_STATS_INTERVAL_S): the parent
# stops feeding systemd's watchdog.
WORKER_PROGRESS_TIMEOUT_S = 5 * WORKER_STATS_INTERVAL_S

# Counters a worker reports for itself in the parent's stats (per_worker).
_PER_WORKER_FIELDS = ("packets", "kernel_received", "kernel_drops", "queue_drops", "open_connections", "records")

# prctl(2)
_PR_SET_PDEATHSIG = 1


def worker_settings(settings: Settings, workers: int) -> Settings:
    """One worker's share of the bounds that are for the whole daemon.

    The budget and the table sizes are the daemon's (the unit's MemoryMax is
    sized on them); the hash spreads connections evenly, so each worker gets
    1/N.  Per-connection bounds (buffers, headers, pipelining) stay as they are.
    """
    if workers == 1:
        return settings
    return dataclasses.replace(
        settings,
        memory_budget_mb=settings.memory_budget_mb / workers,
        max_connections=max(1, settings.max_connections // workers),
        max_total_buffer_bytes=max(1, settings.max_total_buffer_bytes // workers),
        max_frag_datagrams=max(1, settings.max_frag_datagrams // workers),
    )


def _write_all(fd: int, data: bytes) -> None:
    # A write to a pipe larger than PIPE_BUF may be cut short by a signal.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class PipeSink:
    """A worker's output (a sink.Sink): its records go to the parent over a pipe, as frames.

    Whatever was added is sent at the end of the batch that made it
    (maybe_flush sends anything pending), so a record waits in the parent's
    sink only and the flush_interval_s promise holds across the two hops.
    One thread writes (the processing loop): frames never interleave.  A full
    pipe blocks that thread; the capture queue then fills and frames are
    dropped and counted, as with a slow disk.  The pipe is the worker's: it
    closes it once its runner has returned, after the last frame
    (ParentReport.shutdown).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending: list[str] = []
        self.records_written = 0  # lines handed to the parent

    def add(self, lines: Iterable[str]) -> None:
        self._pending.extend(lines)

    def maybe_flush(self, now: float | None = None) -> None:
        if self._pending:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        self.send(FRAME_RECORDS, "\n".join(lines).encode("utf-8"))
        self.records_written += len(lines)

    def close(self) -> None:
        self.flush()

    def request_reopen(self) -> None:
        pass  # the parent owns the file

    def stats(self) -> dict[str, Any]:
        # Only the lines handed over are the worker's to count: the parent's
        # sink has the real output counters.
        return dict.fromkeys(OUTPUT_STATS, 0) | {"records_written": self.records_written, "output_state": "ok"}

    def send(self, kind: bytes, payload: bytes) -> None:
        _write_all(self.fd, FRAME.pack(kind, len(payload)) + payload)


class ParentReport:
    """A worker's own events go to its parent, which logs them summed (live.Report)."""

    # Whatever [stats] interval_s is: the parent's stats event is at most this
    # stale, and a worker whose parent died without a signal finds out.
    interval_s = WORKER_STATS_INTERVAL_S
    # The parent's metrics need the memory estimate and the RecordMeter too.
    health_fields = True

    def __init__(self, pipe: PipeSink) -> None:
        self.pipe = pipe

    def ready(self, source: Any) -> None:
        # A first stats frame at once: the parent tells systemd READY=1 when
        # every worker has sent one.
        self.stats(source())

    def beat(self, now: float) -> None:
        pass  # the parent feeds the watchdog, while every worker's frames come

    def stats(self, fields: dict[str, Any]) -> None:
        self.pipe.send(FRAME_STATS, json.dumps(fields).encode("ascii"))

    def stopping(self, signum: int) -> None:
        pass  # the parent forwarded the signal, and logged it

    def shutdown(self, fields: dict[str, Any], exit_status: int) -> None:
        payload = {"stats": fields, "exit_status": exit_status}
        self.pipe.send(FRAME_FINAL, json.dumps(payload).encode("ascii"))


@dataclasses.dataclass(slots=True)
class WorkerProcess:
    """The parent's view of one worker."""

    index: int
    pid: int
    fd: int  # read end of its pipe
    buf: bytearray = dataclasses.field(default_factory=bytearray)
    stats: dict = dataclasses.field(default_factory=dict)
    stats_at: float = 0.0  # time.monotonic() of its last stats frame (0: none yet)
    final: bool = False  # its last frame came
    eof: bool = False  # its pipe closed
    exit_status: int | None = None  # from the last frame, else from waitpid
    reaped: bool = False


class Supervisor:
    """``sniffd run`` with ``workers = N > 1``: the parent process.

    prepare() opens N captures in one PACKET_FANOUT_HASH group (capture.
    open_fanout), drops privileges (live.start_up, as with one process, once,
    before any fork, so no process ever handles a packet with privileges), and
    opens the output file.  run() forks one worker per capture (a
    live.LiveRunner writing to a PipeSink) and then owns the output: one
    thread reads every worker's pipe and hands whole record lines to the one
    JsonLinesSink, so lines are never torn or interleaved and rotation and
    SIGHUP work as with one process.

    Stopping: SIGTERM/SIGINT is forwarded to every worker; each drains its
    capture, writes its open transactions (cut_by_shutdown), sends its last
    frame and closes its pipe; the parent writes everything, lets the workers
    go, reaps them, closes the file, logs the summed ``shutdown`` and exits 0.
    A worker that ends on its own (crash, capture failure, OOM kill) is
    logged (``worker_failed``), the others are stopped the same way and the
    parent exits 1 so that systemd restarts sniffd: with one member fewer the
    group hashes flows differently, and half connections would follow.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.count: int = cfg.capture["workers"]
        self.read_timeout_s = cfg.capture["read_timeout_ms"] / 1000.0
        self.signals = Signals()
        self.report = oplog.LogReport(cfg.get("stats", "interval_s"))  # a ServiceReport once prepared
        self.opened: Opened | None = None
        self._ready_sent = False
        # Until the fork: the captures and pipelines the workers will own.
        self.captures: list[LiveCapture] = []
        self.pipelines: list[Pipeline] = []
        self.sink: JsonLinesSink | None = None
        self.workers: list[WorkerProcess] = []
        self._stop_sent = False
        self._failed = False
        self._output_gone = False
        self.exit_status = EXIT_OK

    # -- start (privileged) --

    def prepare(self) -> None:
        self.signals.install()  # first: see live.Daemon.prepare
        self.opened = start_up(self.cfg, worker_settings(self.cfg.settings(), self.count), self.count)
        self.captures, self.pipelines, self.sink = self.opened.captures, self.opened.pipelines, self.opened.sink
        self.signals.sink = self.sink
        self.report = service_report(self.cfg, self.opened, self._workers_progress)

    def _close_captures(self) -> None:
        for capture in self.captures:
            capture.close()
        self.captures = []

    # -- run --

    def run(self) -> int:
        assert self.opened is not None and self.sink is not None
        release_r, release_w = os.pipe()
        # Signals wait while forking: a child must have its own handlers before
        # a SIGTERM reaches it (the inherited ones set a flag it never reads);
        # the parent gets whatever arrived meanwhile when it unblocks.
        blocked = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            for index in range(self.count):
                try:
                    self._fork(index, release_r, release_w, mask)
                except OSError as e:  # EAGAIN: a task limit (TasksMax) reached
                    log.error("worker_start_failed", worker=index, error=e.strerror, workers_started=index)
                    self._failed = True
                    self.exit_status = EXIT_FAILURE
                    break
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            self._close_captures()  # the workers hold the sockets now (or nobody does)
            self.pipelines = []
        os.close(release_r)
        opened = self.opened
        if not self._failed:
            oplog.start(self.cfg, opened.linktype, opened.uid, opened.gid, opened.versions, workers=self.count,
                        worker_pids=[w.pid for w in self.workers], fanout_group=opened.group)
        if opened.metrics is not None:
            opened.metrics.start()  # after the forks: no child inherits the thread
        try:
            self._loop()
        finally:
            os.close(release_w)  # EOF: every worker may leave the group now
            self._reap_all()
        self._close_sink()
        self.report.shutdown(self.stats(), self.exit_status)
        if opened.metrics is not None:
            opened.metrics.close()
        opened.notifier.close()
        return self.exit_status

    def _fork(self, index: int, release_r: int, release_w: int, mask: set) -> None:
        r, w = os.pipe()
        try:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # a smaller pipe only means more, shorter waits
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            raise
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            os.close(r)  # else a dead parent would leave a reader, and no EPIPE
            self._worker_main(index, w, release_r, release_w, mask, parent)
        os.close(w)
        self.captures[index].close()  # the worker's copy keeps the socket open
        self.workers.append(WorkerProcess(index, pid, r))

    def _worker_main(self, index: int, out_fd: int, release_r: int, release_w: int, mask: set, parent: int) -> None:
        """The child: become worker ``index`` and never return (os._exit).

        A worker is a live.LiveRunner on capture ``index`` of the fanout
        group, writing to its pipe, with privileges already dropped by the
        parent.  Its main thread runs the processing loop, so a worker is
        two tasks.
        """
        status = EXIT_FAILURE
        try:
            signals = Signals()
            signals.install()
            # SIGHUP is the parent's business (it owns the file).
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            configure_logging(self.cfg.get("log", "level"), self.cfg.get("log", "format"), {"worker": index, "pid": os.getpid()})
            _die_with_parent()
            if os.getppid() != parent:
                signals.stop = signal.SIGTERM  # orphaned before the line above
            # What the child inherited and must not keep: the other workers'
            # captures (their sockets would stay in the group), the pipes of
            # the workers before it (their EOF would never come), the release
            # pipe's write end, and the output file (logrotate's old file
            # would stay allocated after the parent reopened).
            capture, pipeline = self.captures[index], self.pipelines[index]
            for i, other_capture in enumerate(self.captures):
                if i != index:
                    other_capture.close()
            for other in self.workers:
                os.close(other.fd)
            os.close(release_w)
            if self.sink is not None:
                self.sink.close()
                self.sink = None
            assert self.opened is not None
            if self.opened.metrics is not None:
                self.opened.metrics.forget()  # the parent's listening socket
            self.opened.notifier.close()  # the parent talks to systemd
            self.pipelines = []
            pipe = PipeSink(out_fd)
            meter = RecordMeter() if self.opened.metrics is not None else None
            try:
                status = LiveRunner(self.cfg.capture, capture, pipeline, pipe, ParentReport(pipe), signals, meter).run()
            finally:
                os.close(out_fd)  # EOF: the parent has all this worker will send
            # Stay in the fanout group until the parent has every worker's last
            # frame: a socket leaving the group changes the hash, and a flow of
            # ours moved to a worker still reading would turn up there as a
            # half connection.  The parent closes the release pipe (EOF) then.
            try:
                select.select([release_r], [], [], WORKER_RELEASE_TIMEOUT_S)
            except OSError:
                pass
            capture.close()
        except BaseException:
            try:
                log.exception("worker_crashed", worker=index)
            except BaseException:
                pass
        finally:
            try:
                sys.stderr.flush()
            finally:
                os._exit(status)

    def _loop(self) -> None:
        """Read the workers' pipes until every one is closed; write, log stats, stop."""
        assert self.sink is not None
        sink = self.sink
        selector = selectors.DefaultSelector()
        for w in self.workers:
            os.set_blocking(w.fd, False)
            selector.register(w.fd, selectors.EVENT_READ, w)
        stats_interval = self.report.interval_s
        next_stats = time.monotonic() + stats_interval if stats_interval else float("inf")
        stop_deadline: float | None = None
        wait_s = min(0.2, self.cfg.output["flush_interval_s"])
        while any(not w.eof for w in self.workers):
            if (self.signals.stop is not None or self._failed or self._output_gone) and not self._stop_sent:
                if self.signals.stop is not None:
                    self.report.stopping(self.signals.stop)
                self._signal_workers(signal.SIGTERM)
                self._stop_sent = True
                stop_deadline = time.monotonic() + SHUTDOWN_DRAIN_TIMEOUTS * self.read_timeout_s + SHUTDOWN_PROCESS_BUDGET_S + WORKER_STOP_SLACK_S
            for key, _ in selector.select(wait_s):
                w = key.data
                if self._read(w):
                    continue
                selector.unregister(w.fd)
                os.close(w.fd)
                w.eof = True
                self._check_ended(w)
            mono = time.monotonic()
            try:
                sink.maybe_flush(mono)
            except BrokenPipeError:
                self._output_lost()
            if mono >= next_stats:
                self.report.stats(self.stats())
                next_stats = mono + stats_interval
            if not self._ready_sent and self.workers and all(w.stats_at for w in self.workers):
                # Every worker is capturing: systemd may call the service started.
                self._ready_sent = True
                self.report.ready(self.health_fields)
            self.report.beat(mono)
            if stop_deadline is not None and mono > stop_deadline:
                for w in self.workers:
                    if not w.eof:
                        log.error("worker_killed", worker=w.index, pid=w.pid, reason="did not stop in time")
                        self._kill(w)
                        selector.unregister(w.fd)
                        os.close(w.fd)
                        w.eof = True
                self.exit_status = EXIT_FAILURE
        selector.close()

    def _read(self, w: WorkerProcess) -> bool:
        """Take what worker ``w`` sent; False at end of file."""
        try:
            data = os.read(w.fd, READ_CHUNK_BYTES)
        except BlockingIOError:
            return True
        if not data:
            return False
        buf = w.buf
        buf += data
        off, size, head = 0, len(buf), FRAME.size
        while size - off >= head:
            kind, n = FRAME.unpack_from(buf, off)
            end = off + head + n
            if end > size:
                break
            payload = bytes(buf[off + head : end])
            off = end
            if kind == FRAME_RECORDS:
                if not self._output_gone:
                    try:
                        self.sink.add(payload.decode("utf-8").split("\n"))  # type: ignore[union-attr]
                    except BrokenPipeError:
                        self._output_lost()
            elif kind == FRAME_STATS:
                w.stats = json.loads(payload)
                w.stats_at = time.monotonic()
            elif kind == FRAME_FINAL:
                last = json.loads(payload)
                w.stats, w.exit_status, w.final = last["stats"], last["exit_status"], True
        del buf[:off]
        return True

    def _output_lost(self) -> None:
        # `sniffd run -o - | head`: the reader went away; stop (exit 0), as one process does.
        self._output_gone = True

    def _check_ended(self, w: WorkerProcess) -> None:
        """Worker ``w`` closed its pipe: fine after a stop request with a clean last frame."""
        if not w.final:
            # Killed, crashed, or its processing failed: no last frame.
            reason, status = "died", self._reap(w, wait_s=0.5)
        elif w.exit_status != EXIT_OK:
            reason, status = "failed", {"exit_status": w.exit_status}  # e.g. capture_failed
        elif not self._stop_sent and self.signals.stop is None and not self._output_gone:
            reason, status = "stopped_alone", {"exit_status": w.exit_status}  # a signal to it only
        else:
            return
        log.error("worker_failed", worker=w.index, pid=w.pid, reason=reason, **status, partial_frame_bytes=len(w.buf))
        self._failed = True
        self.exit_status = EXIT_FAILURE

    def _signal_workers(self, sig: int) -> None:
        for w in self.workers:
            if not w.reaped:
                try:
                    os.kill(w.pid, sig)
                except ProcessLookupError:
                    pass

    def _kill(self, w: WorkerProcess) -> None:
        try:
            os.kill(w.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _reap(self, w: WorkerProcess, wait_s: float) -> dict[str, Any]:
        """waitpid ``w`` for up to ``wait_s``; its exit status or signal, or {} if still running."""
        deadline = time.monotonic() + wait_s
        while not w.reaped:
            pid, status = os.waitpid(w.pid, os.WNOHANG)
            if pid:
                w.reaped = True
                if os.WIFSIGNALED(status):
                    w.exit_status = -os.WTERMSIG(status)
                    return {"signal": signal.Signals(os.WTERMSIG(status)).name}
                w.exit_status = os.waitstatus_to_exitcode(status)
                return {"exit_status": w.exit_status}
            if time.monotonic() >= deadline:
                return {}
            time.sleep(0.01)
        return {"exit_status": w.exit_status} if w.exit_status is not None and w.exit_status >= 0 else {}

    def _reap_all(self) -> None:
        deadline = time.monotonic() + WORKER_EXIT_TIMEOUT_S
        for w in self.workers:
            if not w.reaped and not self._reap(w, max(0.0, deadline - time.monotonic())):
                log.error("worker_killed", worker=w.index, pid=w.pid, reason="did not exit")
                self._kill(w)
                self._reap(w, WORKER_EXIT_TIMEOUT_S)
            if w.reaped and w.exit_status != EXIT_OK:
                self.exit_status = EXIT_FAILURE

    def _close_sink(self) -> None:
        assert self.sink is not None
        try:
            self.sink.close()
        except BrokenPipeError:
            pass

    # -- stats --

    def _workers_progress(self) -> bool:
        """Every worker sent stats lately: their processing loops turn (the watchdog's condition)."""
        now = time.monotonic()
        return all(not w.eof and now - w.stats_at < WORKER_PROGRESS_TIMEOUT_S for w in self.workers)

    def health_fields(self) -> dict[str, Any]:
        """stats() and what the metrics add: memory estimate and budget, the RecordMeters, summed."""
        out = self.stats()
        for key in ("memory_estimate_bytes", "memory_budget_bytes"):
            out[key] = sum(w.stats.get(key, 0) for w in self.workers)
        out["record_meter"] = merge_meters(w.stats.get("record_meter") for w in self.workers)
        return out

    def stats(self) -> dict[str, Any]:
        """The workers' counters summed (anomalies by name), the output's, and each worker's own."""
        total: dict[str, Any] = {}
        anomalies: dict[str, int] = {}
        for w in self.workers:
            for key, value in w.stats.items():
                if key == "anomalies":
                    for name, n in value.items():
                        anomalies[name] = anomalies.get(name, 0) + n
                elif type(value) is int and key != "workers":
                    # Counters only: a worker's output fields (output_state)
                    # are its pipe's; the parent's sink has the real ones.
                    total[key] = total.get(key, 0) + value
        assert self.sink is not None
        out = oplog.stats_fields(total, self.sink.stats(), anomalies, self.count)
        out["per_worker"] = [
            {"worker": w.index, "pid": w.pid, **{key: w.stats.get(key, 0) for key in _PER_WORKER_FIELDS}}
            for w in self.workers
        ]
        return out


def _die_with_parent() -> None:
    """Have the kernel send SIGTERM to this process when its parent dies.

    A worker whose parent was killed (SIGKILL, OOM) stops as on SIGTERM; its
    next write to the pipe fails and it exits.  Best effort: a seccomp
    filter may refuse prctl, and the periodic stats frame finds out anyway.
    """
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
