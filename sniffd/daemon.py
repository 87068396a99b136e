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

Order at start, like ``tcpdump -Z``: check the whole configuration, open the
capture with the privilege it needs, drop to the configured user (and drop
every capability), then open the output file as that user, then start the
threads.  Anything wrong before the threads start is one line on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
import grp
import os
import platform
import pwd
import queue
import signal
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
from sniffd.capture import DEFAULT_BATCH_SIZE, Batch, CaptureError, LiveCapture, list_interfaces
from sniffd.config import Config, ConfigError
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
    print(
        f"{where}: OK: interface {cap['interface']}, filter {cap['bpf_filter']!r}, "
        f"output {cfg.output['path']}, user {cfg.get('privileges', 'user') or '(unchanged)'}"
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
    daemon = Daemon(cfg)
    try:
        daemon.prepare()
    except (CaptureError, PrivilegeError, ConfigError, OSError) as e:
        daemon.abort()
        return _die(str(e))
    return daemon.run()


# --- logging -----------------------------------------------------------------


def configure_logging(level: str, fmt: str) -> None:
    """structlog to stderr: one JSON object per line, or a readable console line."""
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
            _time_level_event_first,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level.upper()),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def _time_level_event_first(logger: object, method: str, event_dict: dict) -> dict:
    """Put time, level and event first, so JSON lines read naturally."""
    head = {k: event_dict.pop(k) for k in ("time", "level", "event") if k in event_dict}
    head.update(event_dict)
    return head


def versions() -> dict[str, str]:
    out = {"sniffd": __version__, "python": platform.python_version(), "libpcap": _libpcap_version()}
    for dist in ("pcapy-ng", "dpkt", "httptools", "structlog"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
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
            self.pipeline = Pipeline(cfg.settings(), snaplen=cap["snaplen"], redact_key=cfg.redact_key())
        except ValueError as e:
            # A stage refused a setting the config checks let through.
            raise ConfigError(f"{cfg.path or 'configuration'}: {e}") from None
        self.versions = versions()
        _preload()
        # The first rendered event also loads what the log renderer needs.
        log.info("capture_opened", interface=cap["interface"], linktype=self.capture.linktype, dropping_to_user=cfg.get("privileges", "user") or None)
        self.uid, self.gid = drop_privileges(cfg.get("privileges", "user"), cfg.get("privileges", "group"))
        self.dumps = records.dumps
        out = cfg.output
        self.sink = JsonLinesSink(
            out["path"],
            rotate_bytes=out["rotate_bytes"],
            keep_files=out["keep_files"],
            flush_interval_s=out["flush_interval_s"],
            on_event=self._sink_event,
        )
        try:
            self.sink.open()
        except OSError as e:
            raise OSError(f"{cfg.where('output', 'path')}: cannot open {out['path']}: {e.strerror} (as uid {os.geteuid()})") from None

    def abort(self) -> None:
        if self.capture is not None:
            self.capture.close()
            self.capture = None

    def _sink_event(self, event: str, **fields: object) -> None:
        if event.startswith("output_"):
            log.error(event, **fields)
        else:
            log.info(event, **fields)

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

    def _process(self, sink: JsonLinesSink) -> None:
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
        stats_interval = self.cfg.get("stats", "interval_s")
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
            "records_written": sink.records_written if sink else 0,
            "records_lost": sink.records_lost if sink else 0,
            "rotations": sink.rotations if sink else 0,
            "anomalies": dict(sorted(p.get("anomalies", {}).items())),
        }

    def _log_stats(self, event: str, **extra: Any) -> None:
        log.info(event, **self.stats(), **extra)
