"""The live daemon: ``sniffd run``, ``sniffd check``, ``sniffd interfaces``.

Threads and who owns what::

    main thread        config, opening the capture, dropping privileges,
                       signal handlers (they only set flags), waiting
    capture thread     owns the libpcap handle: reads batches, puts them on a
                       bounded queue (put_nowait: when full the batch is
                       dropped and its frames counted), puts a Tick when a
                       read times out so time advances on a quiet link
    processing thread  owns the Pipeline and the sink: feeds frames, expires
                       on ticks, writes records, logs stats, and at the end
                       flushes every open transaction ("shutdown")

The queue is the only thing the two working threads share; the counters each
writes are plain ints read by the other for the stats (a stale read is fine).

With ``[capture] workers = N`` (N > 1) the same two loops run in N worker
processes, and the parent owns the output (see ``Supervisor``)::

    parent (1 thread)  opens N captures in one PACKET_FANOUT_HASH group,
                       drops privileges, opens the output, forks; then
                       reads every worker's pipe and writes whole lines to
                       the one file (rotation, SIGHUP), sums the stats,
                       forwards SIGTERM/SIGINT
    worker k           owns capture k: capture thread + processing (its
                       main thread) with its own Pipeline, as above; its
                       records go to the parent over its own pipe

Order at start, like ``tcpdump -Z``: check the whole configuration, open the
capture with the privilege it needs, drop to the configured user (and drop
every capability), then open the output file as that user, then start the
threads.  Anything wrong before the threads start is one line on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import grp
import json
import os
import platform
import pwd
import queue
import select
import selectors
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import structlog

from sniffd import __version__
from sniffd import config as configmod
from sniffd.capture import DEFAULT_BATCH_SIZE, Batch, CaptureError, LiveCapture, list_interfaces, open_fanout
from sniffd.config import Config, ConfigError
from sniffd.settings import Settings
from sniffd.sink import JsonLinesSink

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

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

log = structlog.get_logger("sniffd")


class PrivilegeError(Exception):
    """The configured user or group cannot be switched to."""


@dataclass(slots=True, frozen=True)
class Tick:
    """A read timed out with no packet: time advances to ``wall`` (time.time())."""

    wall: float


_STOP = object()


# --- command line ------------------------------------------------------------

# Flags that override config keys: (section, key) -> flag name used in messages.
_OVERRIDES: dict[tuple[str, str], tuple[str, str]] = {
    ("capture", "interface"): ("interface", "--interface"),
    ("capture", "bpf_filter"): ("bpf_filter", "--filter"),
    ("capture", "snaplen"): ("snaplen", "--snaplen"),
    ("output", "path"): ("output", "--output"),
    ("privileges", "user"): ("user", "--user"),
    ("privileges", "group"): ("group", "--group"),
    ("log", "level"): ("log_level", "--log-level"),
    ("log", "format"): ("log_format", "--log-format"),
    ("stats", "interval_s"): ("stats_interval", "--stats-interval"),
    ("capture", "workers"): ("workers", "--workers"),
}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=None,
        help=f"TOML config file (default {configmod.DEFAULT_CONFIG_PATH}; built-in defaults if that does not exist)",
    )
    p.add_argument("-i", "--interface", metavar="IFACE", help="capture on this interface ([capture] interface)")
    p.add_argument("-f", "--filter", dest="bpf_filter", metavar="BPF", help="BPF expression ([capture] bpf_filter)")
    p.add_argument("-s", "--snaplen", type=int, metavar="BYTES", help="bytes kept per packet ([capture] snaplen)")
    p.add_argument("-o", "--output", metavar="PATH", help="JSON-lines file, '-' for stdout ([output] path)")
    p.add_argument("--user", metavar="USER", help="run as this user after opening the capture ([privileges] user); '' keeps the current one")
    p.add_argument("--group", metavar="GROUP", help="and this group ([privileges] group)")
    p.add_argument("--log-level", choices=configmod.LOG_LEVELS, help="operational log level ([log] level)")
    p.add_argument("--log-format", choices=configmod.LOG_FORMATS, help="operational log format ([log] format)")
    p.add_argument("--stats-interval", type=float, metavar="SECONDS", help="seconds between stats events, 0 = off ([stats] interval_s)")
    p.add_argument("-w", "--workers", type=int, metavar="N", help="capture processes sharing the interface by flow hash ([capture] workers)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``run``, ``check`` and ``interfaces`` to the ``sniffd`` command line."""
    run = subparsers.add_parser("run", help="capture live traffic and append one JSON line per HTTP transaction")
    _add_config_args(run)
    run.set_defaults(func=cmd_run)

    check = subparsers.add_parser("check", help="validate the config and compile the BPF filter, without capturing")
    _add_config_args(check)
    check.set_defaults(func=cmd_check)

    ifaces = subparsers.add_parser("interfaces", help="list the interfaces libpcap can capture on")
    ifaces.set_defaults(func=cmd_interfaces)


def _die(msg: str, status: int = EXIT_USAGE) -> int:
    print(f"sniffd: error: {msg}", file=sys.stderr)
    return status


def build_config(args: argparse.Namespace) -> Config:
    """The config file (or the defaults), the flags laid over it, checked against this machine."""
    path = args.config
    if path is None:
        path = configmod.DEFAULT_CONFIG_PATH if os.path.exists(configmod.DEFAULT_CONFIG_PATH) else None
    cfg = configmod.load(path) if path is not None else configmod.defaults()
    overrides = {(section, key): (flag, getattr(args, attr)) for (section, key), (attr, flag) in _OVERRIDES.items()}
    configmod.apply_overrides(cfg, overrides)
    configmod.check_environment(cfg)
    return cfg


def cmd_check(args: argparse.Namespace) -> int:
    try:
        cfg = build_config(args)
    except ConfigError as e:
        return _die(str(e))
    cap = cfg.capture
    where = cfg.path or "built-in defaults"
    workers = f", workers {cap['workers']}" if cap["workers"] > 1 else ""
    print(
        f"{where}: OK: interface {cap['interface']}, filter {cap['bpf_filter']!r}, "
        f"output {cfg.output['path']}, user {cfg.get('privileges', 'user') or '(unchanged)'}{workers}"
    )
    return EXIT_OK


def cmd_interfaces(args: argparse.Namespace) -> int:
    try:
        names = list_interfaces()
    except Exception as e:  # pcapy raises PcapError; keep the message
        return _die(f"cannot list interfaces: {e}", EXIT_FAILURE)
    for name in names:
        state = ""
        try:
            with open(f"/sys/class/net/{name}/operstate", encoding="ascii") as f:
                state = f.read().strip()
        except OSError:
            pass
        print(f"{name}\t{state}" if state else name)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    try:
        cfg = build_config(args)
    except ConfigError as e:
        return _die(str(e))
    configure_logging(cfg.get("log", "level"), cfg.get("log", "format"))
    daemon: Daemon | Supervisor = Supervisor(cfg) if cfg.capture["workers"] > 1 else Daemon(cfg)
    try:
        daemon.prepare()
    except (CaptureError, PrivilegeError, ConfigError, OSError) as e:
        daemon.abort()
        return _die(str(e))
    return daemon.run()


# --- logging -----------------------------------------------------------------


def configure_logging(level: str, fmt: str, context: dict[str, Any] | None = None) -> None:
    """structlog to stderr: one JSON object per line, or a readable console line.

    ``context``: fields added to every event (a worker process: its number).
    """
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False, timestamp_key="time", sort_keys=False)
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
            structlog.processors.format_exc_info,
            *([_AddContext(context)] if context else []),
            _time_level_event_first,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level.upper()),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


class _AddContext:
    """A structlog processor adding fixed fields (set in __init__, added in __call__)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = dict(fields)

    def __call__(self, logger: object, method: str, event_dict: dict) -> dict:
        for key, value in self.fields.items():
            event_dict.setdefault(key, value)
        return event_dict


def _time_level_event_first(logger: object, method: str, event_dict: dict) -> dict:
    """Put time, level and event first, so JSON lines read naturally."""
    head = {k: event_dict.pop(k) for k in ("time", "level", "event") if k in event_dict}
    head.update(event_dict)
    return head


def versions() -> dict[str, str]:
    out = {"sniffd": __version__, "python": platform.python_version(), "libpcap": _libpcap_version()}
    for dist in ("pcapy-ng", "dpkt", "httptools", "structlog", "orjson"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    # "python" when sniffd/_batch.c was not built (no compiler at install):
    # the same records, at a fraction of the speed; worth seeing in the log.
    from sniffd import decode

    out["batch_decoder"] = "python" if decode.decode_batch is decode.decode_batch_py else "c"
    return out


def _libpcap_version() -> str:
    """pcap_lib_version() of the libpcap pcapy-ng loaded (it may bundle its own)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split()[-1] for line in f if "libpcap" in line and "/" in line}
        if not paths:
            return "unknown"
        import ctypes

        lib = ctypes.CDLL(sorted(paths)[0])
        lib.pcap_lib_version.restype = ctypes.c_char_p
        return lib.pcap_lib_version().decode("ascii", "replace")
    except Exception:
        return "unknown"


# --- privileges --------------------------------------------------------------


def _preload() -> None:
    """Load now, as the starting user, what may be loaded lazily later.

    After the privilege drop the Python installation itself may be unreadable
    (an interpreter under /root, say); anything first imported after it would
    fail.  Codec lookups are cached by the registry, imports by sys.modules.
    """
    import codecs
    import ctypes  # noqa: F401  (drop_capabilities, _libpcap_version)
    import traceback  # noqa: F401  (log.exception)

    for name in ("ascii", "latin-1", "utf-8", "utf-16", "idna"):
        codecs.lookup(name)



def drop_privileges(user: str, group: str) -> tuple[int, int]:
    """Become ``user``:``group`` for good (no way back to root), then drop every capability.

    Started as root: supplementary groups cleared, then gid, then uid (real,
    effective and saved), which also empties the capability sets.  Started
    as the target user with capabilities (systemd's AmbientCapabilities):
    the capabilities are dropped.  ``user = ""`` keeps the current user.
    Returns the (uid, gid) now in force.
    """
    if user:
        pw = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
        if os.geteuid() == 0:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
            if pw.pw_uid != 0:
                try:
                    os.setuid(0)
                except PermissionError:
                    pass
                else:  # pragma: no cover - would be a kernel or libc bug
                    raise PrivilegeError("[privileges] user: could regain root after dropping it")
        elif os.geteuid() != pw.pw_uid:
            raise PrivilegeError(
                f"[privileges] user: cannot switch to {user!r} (uid {pw.pw_uid}): not started as root "
                f"(running as uid {os.geteuid()}); start as root, or set user to the current user or ''"
            )
        elif os.getegid() != gid and gid not in os.getgroups():
            raise PrivilegeError(f"[privileges] group: cannot switch to gid {gid}: not started as root")
    drop_capabilities()
    return os.geteuid(), os.getegid()


def _cap_sets() -> dict[str, int]:
    sets = {}
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(("CapPrm:", "CapEff:", "CapInh:", "CapAmb:")):
                name, value = line.split(":", 1)
                sets[name] = int(value, 16)
    return sets


def drop_capabilities() -> None:
    """Empty the permitted, effective and inheritable (hence ambient) capability sets.

    After the capture is open, CAP_NET_RAW is not needed any more; keeping it
    would let a bug in the packet parsers open new raw sockets.
    """
    caps = _cap_sets()
    if not any(caps.values()):
        return
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two Data structs
    data = (Data * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"cannot drop capabilities: {os.strerror(err)}")
    left = _cap_sets()
    if left.get("CapPrm") or left.get("CapEff") or left.get("CapAmb"):
        raise PrivilegeError(f"capabilities still held after dropping them: {left}")


# --- the output ----------------------------------------------------------------


def open_sink(cfg: Config) -> JsonLinesSink:
    """The records file of ``[output]``, opened as the user we run as now; OSError names the key."""
    out = cfg.output
    sink = JsonLinesSink(
        out["path"],
        rotate_bytes=out["rotate_bytes"],
        keep_files=out["keep_files"],
        flush_interval_s=out["flush_interval_s"],
        backlog_bytes=int(out["backlog_mb"] * 1024 * 1024),
        on_event=_sink_event,
    )
    try:
        sink.open()
    except OSError as e:
        raise OSError(f"{cfg.where('output', 'path')}: cannot open {out['path']}: {e.strerror} (as uid {os.geteuid()})") from None
    return sink


def _sink_event(event: str, **fields: object) -> None:
    # output_resumed ends a fault: news, not an error.
    if event.startswith("output_") and event != "output_resumed":
        log.error(event, **fields)
    else:
        log.info(event, **fields)


def _output_stats(sink: Any) -> dict[str, Any]:
    """The output's counters for the stats and shutdown events."""
    if sink is None:
        return {"records_written": 0, "records_lost": 0, "records_held": 0, "rotations": 0, "reopens": 0,
                "write_errors": 0, "output_state": "ok"}
    return {
        "records_written": sink.records_written,  # whole lines that reached the file
        "records_lost": sink.records_lost,  # could not be written (backlog full, or held at exit)
        "records_held": sink.records_held,  # waiting in memory (many only while blocked)
        "rotations": sink.rotations,
        "reopens": sink.reopens,
        "write_errors": sink.write_errors,
        "output_state": sink.state,
    }


# --- the daemon ----------------------------------------------------------------


class Daemon:
    """One ``sniffd run``: prepare() opens everything, run() until a signal."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        cap = cfg.capture
        self.read_timeout_s = cap["read_timeout_ms"] / 1000.0
        self.batch_size = cap["batch_size"] or DEFAULT_BATCH_SIZE
        self.queue: queue.Queue = queue.Queue(maxsize=cap["queue_batches"])
        self.capture: LiveCapture | None = None
        self.sink: JsonLinesSink | None = None
        self.pipeline: Any = None
        self.dumps: Callable[[dict], str] | None = None
        self.stop_requested = threading.Event()
        self._stop_signal: int | None = None
        self.started_at = time.monotonic()
        self.exit_status = EXIT_OK
        # Written by the capture thread only.
        self.queue_drops = 0  # frames
        # Written by the processing thread only: frames left unprocessed when
        # the shutdown budget ran out (reported as queue drops too).
        self.shutdown_drops = 0
        self.kernel_stats: tuple[int, int, int] = (0, 0, 0)
        # A worker process reports to its parent every second instead.
        self.stats_interval_s: float = cfg.get("stats", "interval_s")
        # A worker keeps its socket in the fanout group until the parent lets
        # it go (see Worker.run).
        self.close_capture = True

    # -- start --

    def prepare(self) -> None:
        """Open capture (privileged), drop privileges, build the pipeline, open the output."""
        cfg = self.cfg
        cap = cfg.capture
        # Handlers first: a SIGHUP from logrotate during start-up must not
        # kill the daemon (the default action), and a SIGTERM is honoured as
        # soon as the threads run.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        # Import every stage now, while the files are surely readable: after
        # the privilege drop the venv might not be (and no import should
        # happen on the packet path anyway).
        from sniffd import records
        from sniffd.pipeline import Pipeline

        self.capture = LiveCapture(
            cap["interface"],
            bpf=cap["bpf_filter"],
            snaplen=cap["snaplen"],
            promiscuous=cap["promiscuous"],
            buffer_bytes=cap["buffer_bytes"],
            read_timeout_ms=cap["read_timeout_ms"],
        )
        try:
            self.pipeline = Pipeline(cfg.settings(), snaplen=cap["snaplen"], redact_key=cfg.redact_key(),
                                     interface=cap["interface"])
        except ValueError as e:
            # A stage refused a setting the config checks let through.
            raise ConfigError(f"{cfg.path or 'configuration'}: {e}") from None
        self.versions = versions()
        _preload()
        # The first rendered event also loads what the log renderer needs.
        log.info("capture_opened", interface=cap["interface"], linktype=self.capture.linktype, dropping_to_user=cfg.get("privileges", "user") or None)
        self.uid, self.gid = drop_privileges(cfg.get("privileges", "user"), cfg.get("privileges", "group"))
        self.dumps = records.dumps
        self.sink = open_sink(cfg)

    def abort(self) -> None:
        if self.capture is not None:
            self.capture.close()
            self.capture = None

    # -- run --

    def run(self) -> int:
        assert self.capture is not None and self.sink is not None
        cfg = self.cfg
        cap = cfg.capture
        try:
            user = pwd.getpwuid(self.uid).pw_name
        except KeyError:
            user = str(self.uid)
        log.info(
            "start",
            interface=cap["interface"],
            filter=cap["bpf_filter"],
            linktype=self.capture.linktype,
            snaplen=cap["snaplen"],
            promiscuous=cap["promiscuous"],
            output=cfg.output["path"],
            config=cfg.path,
            user=user,
            uid=self.uid,
            gid=self.gid,
            pid=os.getpid(),
            workers=1,
            versions=self.versions,
        )
        capture_thread = threading.Thread(target=self._capture_loop, name="sniffd-capture", daemon=True)
        processing_thread = threading.Thread(target=self._processing_loop, name="sniffd-processing", daemon=True)
        processing_thread.start()
        capture_thread.start()
        # The main thread only waits: Python runs signal handlers here, and
        # the short sleep lets it notice a signal or a worker that died.
        # Handlers only set plain attributes: taking a lock (an Event, the
        # logger) inside a handler can deadlock against the code it interrupted.
        while self._stop_signal is None and not self.stop_requested.is_set():
            time.sleep(0.1)
            if not capture_thread.is_alive() or not processing_thread.is_alive():
                break
        if self._stop_signal is not None:
            log.info("stopping", signal=signal.Signals(self._stop_signal).name)
        self.stop_requested.set()
        capture_thread.join()
        processing_thread.join()
        return self.exit_status

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        self._stop_signal = signum

    def _on_hup(self, signum: int, frame: object) -> None:
        # The processing thread reopens at its next write or tick.
        if self.sink is not None:
            self.sink.request_reopen()

    # -- capture thread --

    def _capture_loop(self) -> None:
        capture = self.capture
        assert capture is not None
        q = self.queue
        batch_size = self.batch_size
        next_stats = 0.0
        drain_until: float | None = None
        try:
            while True:
                now = time.monotonic()
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
                        # The processing thread is behind; it has packets to
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
            if self.close_capture:
                capture.close()
            self.stop_requested.set()
            # The sentinel must get through: block (the processing thread is
            # draining the queue, so room appears).
            q.put(_STOP)

    # -- processing thread --

    def _processing_loop(self) -> None:
        sink = self.sink
        assert sink is not None
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

    def _process(self, sink: Any) -> None:
        pipeline = self.pipeline
        dumps = self.dumps
        assert dumps is not None and self.capture is not None
        linktype = self.capture.linktype
        # The batch entry point does the per-frame loop with its state in
        # locals (the hot path); feed() per frame is the documented fallback.
        feed_batch = getattr(pipeline, "feed_batch", None)
        q = self.queue
        # Ticks are set back by this much: a packet can sit in libpcap's
        # current block for up to one read timeout before it is handed over,
        # so "nothing arrived" at wall time T only vouches for T minus that.
        tick_lag_s = 2 * self.read_timeout_s
        stats_interval = self.stats_interval_s
        next_stats = time.monotonic() + stats_interval if stats_interval else float("inf")
        shutdown_deadline: float | None = None
        next_tick_expire = 0.0
        while True:
            try:
                item = q.get(timeout=self.read_timeout_s)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if self._stop_signal is not None and not self.stop_requested.is_set():
                # A worker's main thread is this loop: the signal handler
                # only set the attribute (see run()).
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
                    sink.add(dumps(r) for r in out)
            elif type(item) is Tick and item.wall >= next_tick_expire:
                # At most once a second, as the pipeline does by packet time:
                # timeouts are in seconds, and a scan of a large flow table
                # five times a second would be waste.
                next_tick_expire = item.wall + TICK_EXPIRE_INTERVAL_S
                # The pipeline's clock never goes back: a tick older than the
                # last packet changes nothing.
                out = pipeline.expire(item.wall - tick_lag_s)
                if out:
                    sink.add(dumps(r) for r in out)
            mono = time.monotonic()
            sink.maybe_flush(mono)
            if mono >= next_stats:
                self._log_stats("stats")
                next_stats = mono + stats_interval
        # Shutdown: every open transaction becomes a record flagged cut_by_shutdown.
        out = pipeline.flush("shutdown")
        if out:
            sink.add(dumps(r) for r in out)
        self._finish(sink)

    def _finish(self, sink: Any) -> None:
        sink.close()
        self._log_stats("shutdown", uptime_s=round(time.monotonic() - self.started_at, 3))

    def stats(self) -> dict[str, Any]:
        p = dict(self.pipeline.stats) if self.pipeline is not None else {}
        received, kernel_drops, if_drops = self.kernel_stats
        sink = self.sink
        return {
            "packets": p.get("packets", 0),
            "bytes": p.get("bytes", 0),
            "kernel_received": received,
            "kernel_drops": kernel_drops,
            "interface_drops": if_drops,
            "queue_drops": self.queue_drops + self.shutdown_drops,
            "open_connections": p.get("open_connections", 0),
            "buffered_bytes": p.get("buffered_bytes", 0),
            "fragments_held": p.get("fragments_held", 0),
            "non_tcp_packets": p.get("non_tcp_packets", 0),
            "records": p.get("records", 0),
            **_output_stats(sink),
            "anomalies": dict(sorted(p.get("anomalies", {}).items())),
            "workers": 1,
        }

    def _log_stats(self, event: str, **extra: Any) -> None:
        log.info(event, **self.stats(), **extra)


# --- several workers: one fanout group, one output ------------------------------

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
# to let it go (see Worker.run); then it exits anyway.
WORKER_RELEASE_TIMEOUT_S = 15.0

# Once let go, a worker exits at once; one still there after this is killed.
WORKER_EXIT_TIMEOUT_S = 3.0

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
    """A worker's output: its records go to the parent over a pipe, as frames.

    The processing loop uses it as it uses a JsonLinesSink (add, maybe_flush,
    flush, close).  Whatever was added is sent at the end of the batch that
    made it (maybe_flush sends anything pending), so a record waits in the
    parent's sink only and the flush_interval_s promise holds across the two
    hops.  One thread writes (the processing loop): frames never interleave.
    A full pipe blocks that thread; the capture queue then fills and frames
    are dropped and counted, as with a slow disk.
    """

    # The output counters the stats read (the parent's sink has the real ones).
    rotations = 0
    records_lost = 0
    records_held = 0
    reopens = 0
    write_errors = 0
    state = "ok"

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending: list[str] = []
        self.records_written = 0  # lines handed to the parent

    def add(self, lines: Any) -> None:
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

    def send(self, kind: bytes, payload: bytes) -> None:
        _write_all(self.fd, FRAME.pack(kind, len(payload)) + payload)

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self.fd)
            self.fd = -1

    def request_reopen(self) -> None:
        pass  # the parent owns the file


class Worker(Daemon):
    """One worker process: the capture and processing loops of Daemon on
    capture ``index`` of the fanout group, records to the parent.

    Made in the child right after the fork, with privileges already dropped
    by the parent.  Its main thread runs the processing loop (the signal
    handlers only set the flag that loop reads), so a worker is two tasks.
    """

    def __init__(self, cfg: Config, index: int, capture: LiveCapture, pipeline: Any, out_fd: int, release_fd: int) -> None:
        super().__init__(cfg)
        from sniffd import records

        self.index = index
        self.capture = capture
        self.pipeline = pipeline
        self.sink = PipeSink(out_fd)
        self.dumps = records.dumps
        self.release_fd = release_fd
        self.stats_interval_s = WORKER_STATS_INTERVAL_S
        self.close_capture = False

    def run(self) -> int:
        capture_thread = threading.Thread(target=self._capture_loop, name="sniffd-capture", daemon=True)
        capture_thread.start()
        self._processing_loop()
        capture_thread.join()
        # Stay in the fanout group until the parent has every worker's last
        # frame: a socket leaving the group changes the hash, and a flow of
        # ours moved to a worker still reading would turn up there as a
        # half connection.  The parent closes the release pipe (EOF) then.
        try:
            select.select([self.release_fd], [], [], WORKER_RELEASE_TIMEOUT_S)
        except OSError:
            pass
        assert self.capture is not None
        self.capture.close()
        return self.exit_status

    def _log_stats(self, event: str, **extra: Any) -> None:
        # The parent logs the stats, summed; a worker reports its own.
        if event == "shutdown":
            payload = {"stats": self.stats(), "exit_status": self.exit_status}
            self.sink.send(FRAME_FINAL, json.dumps(payload).encode("ascii"))
        else:
            self.sink.send(FRAME_STATS, json.dumps(self.stats()).encode("ascii"))

    def _finish(self, sink: Any) -> None:
        sink.flush()
        self._log_stats("shutdown")
        sink.close()


@dataclasses.dataclass(slots=True)
class WorkerProcess:
    """The parent's view of one worker."""

    index: int
    pid: int
    fd: int  # read end of its pipe
    buf: bytearray = dataclasses.field(default_factory=bytearray)
    stats: dict = dataclasses.field(default_factory=dict)
    final: bool = False  # its last frame came
    eof: bool = False  # its pipe closed
    exit_status: int | None = None  # from the last frame, else from waitpid
    reaped: bool = False


class Supervisor:
    """``sniffd run`` with ``workers = N > 1``: the parent process.

    prepare() opens N captures in one PACKET_FANOUT_HASH group (capture.
    open_fanout), drops privileges (as Daemon does, once, before any fork, so
    no process ever handles a packet with privileges), and opens the output
    file.  run() forks one Worker per capture and then owns the output: one
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
        self.captures: list[LiveCapture] = []
        self.pipelines: list[Any] = []
        self.group: int | None = None
        self.sink: JsonLinesSink | None = None
        self.workers: list[WorkerProcess] = []
        self._stop_signal: int | None = None
        self._stop_sent = False
        self._failed = False
        self._output_gone = False
        self.started_at = time.monotonic()
        self.exit_status = EXIT_OK

    # -- start (privileged) --

    def prepare(self) -> None:
        cfg = self.cfg
        cap = cfg.capture
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        from sniffd import records  # noqa: F401  (imported while readable, see Daemon.prepare)
        from sniffd.pipeline import Pipeline

        self.captures, self.group = open_fanout(
            cap["interface"],
            self.count,
            bpf=cap["bpf_filter"],
            snaplen=cap["snaplen"],
            promiscuous=cap["promiscuous"],
            buffer_bytes=cap["buffer_bytes"],
            read_timeout_ms=cap["read_timeout_ms"],
        )
        self.linktype = self.captures[0].linktype
        settings = worker_settings(cfg.settings(), self.count)
        # One token key for every worker, so a secret gets the same token
        # whichever worker saw it (a random one when none is configured).
        key = cfg.redact_key()
        if key is None and settings.redact:
            key = os.urandom(32)
        try:
            self.pipelines = [Pipeline(settings, snaplen=cap["snaplen"], redact_key=key, interface=cap["interface"])
                              for _ in range(self.count)]
        except ValueError as e:
            raise ConfigError(f"{cfg.path or 'configuration'}: {e}") from None
        self.versions = versions()
        _preload()
        log.info(
            "capture_opened",
            interface=cap["interface"],
            linktype=self.linktype,
            dropping_to_user=cfg.get("privileges", "user") or None,
            workers=self.count,
            fanout_group=self.group,
        )
        self.uid, self.gid = drop_privileges(cfg.get("privileges", "user"), cfg.get("privileges", "group"))
        self.sink = open_sink(cfg)

    def abort(self) -> None:
        for capture in self.captures:
            capture.close()
        self.captures = []

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        self._stop_signal = signum

    def _on_hup(self, signum: int, frame: object) -> None:
        if self.sink is not None:
            self.sink.request_reopen()

    # -- run --

    def run(self) -> int:
        assert self.sink is not None
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
            self.abort()  # the workers hold the sockets now (or nobody does)
            self.pipelines = []
        os.close(release_r)
        try:
            user = pwd.getpwuid(self.uid).pw_name
        except KeyError:
            user = str(self.uid)
        cfg, cap = self.cfg, self.cfg.capture
        if not self._failed:
            log.info(
                "start",
                interface=cap["interface"],
                filter=cap["bpf_filter"],
                linktype=self.linktype,
                snaplen=cap["snaplen"],
                promiscuous=cap["promiscuous"],
                output=cfg.output["path"],
                config=cfg.path,
                user=user,
                uid=self.uid,
                gid=self.gid,
                pid=os.getpid(),
                workers=self.count,
                worker_pids=[w.pid for w in self.workers],
                fanout_group=self.group,
                versions=self.versions,
            )
        try:
            self._loop()
        finally:
            os.close(release_w)  # EOF: every worker may leave the group now
            self._reap_all()
        self._close_sink()
        self._log_stats("shutdown", uptime_s=round(time.monotonic() - self.started_at, 3))
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
        """The child: become worker ``index`` and never return (os._exit)."""
        status = EXIT_FAILURE
        try:
            worker = Worker(self.cfg, index, self.captures[index], self.pipelines[index], out_fd, release_r)
            signal.signal(signal.SIGTERM, worker._on_stop_signal)
            signal.signal(signal.SIGINT, worker._on_stop_signal)
            # SIGHUP is the parent's business (it owns the file).
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            configure_logging(self.cfg.get("log", "level"), self.cfg.get("log", "format"), {"worker": index, "pid": os.getpid()})
            _die_with_parent()
            if os.getppid() != parent:
                worker._stop_signal = signal.SIGTERM  # orphaned before the line above
            # What the child inherited and must not keep: the other workers'
            # captures (their sockets would stay in the group), the pipes of
            # the workers before it (their EOF would never come), the release
            # pipe's write end, and the output file (logrotate's old file
            # would stay allocated after the parent reopened).
            for i, capture in enumerate(self.captures):
                if i != index:
                    capture.close()
            for other in self.workers:
                os.close(other.fd)
            os.close(release_w)
            if self.sink is not None:
                self.sink.close()
                self.sink = None
            self.pipelines = []
            status = worker.run()
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
        stats_interval = self.cfg.get("stats", "interval_s")
        next_stats = time.monotonic() + stats_interval if stats_interval else float("inf")
        stop_deadline: float | None = None
        wait_s = min(0.2, self.cfg.output["flush_interval_s"])
        while any(not w.eof for w in self.workers):
            if (self._stop_signal is not None or self._failed or self._output_gone) and not self._stop_sent:
                if self._stop_signal is not None:
                    log.info("stopping", signal=signal.Signals(self._stop_signal).name)
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
                self._log_stats("stats")
                next_stats = mono + stats_interval
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
            elif kind == FRAME_FINAL:
                last = json.loads(payload)
                w.stats, w.exit_status, w.final = last["stats"], last["exit_status"], True
        del buf[:off]
        return True

    def _output_lost(self) -> None:
        # `sniffd run -o - | head`: the reader went away; stop (exit 0), as Daemon does.
        self._output_gone = True

    def _check_ended(self, w: WorkerProcess) -> None:
        """Worker ``w`` closed its pipe: fine after a stop request with a clean last frame."""
        if not w.final:
            # Killed, crashed, or its processing failed: no last frame.
            reason, status = "died", self._reap(w, wait_s=0.5)
        elif w.exit_status != EXIT_OK:
            reason, status = "failed", {"exit_status": w.exit_status}  # e.g. capture_failed
        elif not self._stop_sent and self._stop_signal is None and not self._output_gone:
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
        sink = self.sink
        out = {
            key: total.get(key, 0)
            for key in ("packets", "bytes", "kernel_received", "kernel_drops", "interface_drops", "queue_drops",
                        "open_connections", "buffered_bytes", "fragments_held", "non_tcp_packets", "records")
        }
        out.update(
            **_output_stats(sink),
            anomalies=dict(sorted(anomalies.items())),
            workers=self.count,
            per_worker=[
                {"worker": w.index, "pid": w.pid, **{key: w.stats.get(key, 0) for key in _PER_WORKER_FIELDS}}
                for w in self.workers
            ],
        )
        return out

    def _log_stats(self, event: str, **extra: Any) -> None:
        log.info(event, **self.stats(), **extra)


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
