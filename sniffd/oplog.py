"""The daemon's operational log: structlog set-up and the events about the daemon itself.

structlog is for these events only, never one line per packet: records go
through the sink.  One JSON object per line on stderr (journald keeps it), or
a readable console line.

The events every ``sniffd run`` writes, with one worker or many, are written
here once: ``capture_opened`` and ``start`` (``capture_opened``, ``start``),
then ``stats``, ``stopping`` and ``shutdown`` (``LogReport``), whose counters
have one shape (``stats_fields``).  The fields are listed in the README,
*Operational events*.
"""

from __future__ import annotations

import os
import platform
import pwd
import signal
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

import structlog

from sniffd import __version__

if TYPE_CHECKING:
    from sniffd.config import Config

log = structlog.get_logger("sniffd")


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
    from sniffd.capture import libpcap_loaded

    # The libpcap pcapy-ng really calls, and its file: Debian's unless
    # pcapy-ng came from its wheel, whose bundled copy apt never patches.
    libpcap, libpcap_file = libpcap_loaded()
    out = {"sniffd": __version__, "python": platform.python_version(), "libpcap": libpcap, "libpcap_file": libpcap_file}
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


def sink_event(event: str, **fields: object) -> None:
    """The sink's events (rotated, output_blocked, ...) as operational events."""
    # output_resumed ends a fault: news, not an error.
    if event.startswith("output_") and event != "output_resumed":
        log.error(event, **fields)
    else:
        log.info(event, **fields)


# --- the events of a run ---------------------------------------------------------


def capture_opened(cfg: Config, linktype: int, **fanout: Any) -> None:
    """The capture is open, privileges not dropped yet.  ``fanout``: with workers,
    their number and the fanout group."""
    log.info(
        "capture_opened",
        interface=cfg.capture["interface"],
        linktype=linktype,
        dropping_to_user=cfg.get("privileges", "user") or None,
        **fanout,
    )


def start(cfg: Config, linktype: int, uid: int, gid: int, versions: dict[str, str], workers: int, **fanout: Any) -> None:
    """Capturing as ``uid``:``gid``.  ``fanout``: with workers, their pids and the fanout group."""
    cap = cfg.capture
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    log.info(
        "start",
        interface=cap["interface"],
        filter=cap["bpf_filter"],
        linktype=linktype,
        snaplen=cap["snaplen"],
        promiscuous=cap["promiscuous"],
        output=_shown_output(cfg.output["path"]),
        config=cfg.path,
        user=user,
        uid=uid,
        gid=gid,
        pid=os.getpid(),
        workers=workers,
        **fanout,
        versions=versions,
    )


def _shown_output(path: str) -> str:
    """The output as events show it: a nats:// URL without its credentials."""
    if "://" not in path:
        return path
    from sniffd.natssink import shown_url

    return shown_url(path)


# The daemon's counters in the stats and shutdown events, in this order; the
# output's (sink.OUTPUT_STATS) follow them.
COUNTERS = ("packets", "bytes", "kernel_received", "kernel_drops", "interface_drops", "queue_drops",
            "open_connections", "buffered_bytes", "fragments_held", "non_tcp_packets", "records")


def stats_fields(counters: Mapping[str, int], output: dict[str, Any], anomalies: Mapping[str, int], workers: int) -> dict[str, Any]:
    """The fields of a stats or shutdown event: the COUNTERS (0 when missing),
    the output's counters, the anomalies by name, and the number of workers."""
    return {
        **{key: counters.get(key, 0) for key in COUNTERS},
        # Flow pcaps' counters (sniffd.flowpcap.COUNTERS), when they are on.
        **{key: value for key, value in counters.items() if key.startswith("flow_pcap_")},
        **output,
        "anomalies": dict(sorted(anomalies.items())),
        "workers": workers,
    }


class LogReport:
    """A run's own events go to the operational log (live.Report).

    ``interval_s``: between stats events, 0 = none ([stats] interval_s).
    """

    # Only health.ServiceReport acts on these (systemd, metrics): see live.Report.
    health_fields = False

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.started_at = time.monotonic()

    def ready(self, source: Any) -> None:
        pass

    def beat(self, now: float) -> None:
        pass

    def stats(self, fields: dict[str, Any]) -> None:
        log.info("stats", **fields)

    def stopping(self, signum: int) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)

    def shutdown(self, fields: dict[str, Any], exit_status: int) -> None:
        log.info("shutdown", **fields, uptime_s=round(time.monotonic() - self.started_at, 3))
