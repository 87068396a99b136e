"""Command line: ``sniffd read`` (capture files) and the daemon's ``run``,
``check`` and ``interfaces``: their flags, and what each command does with them.

Bad input (missing file, non-pcap file, invalid BPF, bad config) gets one
line on stderr naming the problem and exit status 2, with no output file
left behind.  ``sniffd run`` then exits 0 when stopped by a signal (or when
its stdout reader went away) and 1 when it failed (sniffd.live).

The daemon's commands import what they need when they run, and ``sniffd
read`` leaves them out of its parser altogether: it spares it the config
module, structlog and the live capture (~90 ms of start-up).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import TYPE_CHECKING

from sniffd import __version__

if TYPE_CHECKING:
    from sniffd.config import Config

EXIT_USAGE = 2


def _die(msg: str, status: int = EXIT_USAGE) -> int:
    print(f"sniffd: error: {msg}", file=sys.stderr)
    return status


class _Version(argparse.Action):
    """``--version``: sniffd's, then the libpcap pcapy-ng really calls (version
    and file: Debian's, or a copy bundled in pcapy-ng's wheel that apt never
    patches) and the interpreter (the venv's link resolved: a Python under
    /root is one the service user cannot run).  Imports pcapy only when asked."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from sniffd.capture import libpcap_loaded

        libpcap, libpcap_file = libpcap_loaded()
        py = sys.version.split()[0]
        print(f"sniffd {__version__}\n{libpcap} ({libpcap_file})\npython {py} ({os.path.realpath(sys.executable)})")
        parser.exit()


def build_parser(daemon_commands: bool = True) -> argparse.ArgumentParser:
    """``daemon_commands``: also the daemon's subcommands (run, check,
    interfaces); `sniffd read` leaves them out (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="sniffd", description="Log every HTTP exchange seen on the wire as one JSON line.")
    parser.add_argument("--version", action=_Version, help="show sniffd's version, the libpcap it calls and the Python it runs on, then exit")
    sub = parser.add_subparsers(dest="command", required=True)

    rd = sub.add_parser("read", help="read pcap/pcapng files and print one JSON line per HTTP transaction")
    rd.add_argument("files", nargs="+", metavar="FILE",
                    help="pcap or pcapng captures, read in order: files, pipes, - for stdin; gzip or zstd compressed too")
    rd.add_argument("-f", "--filter", dest="bpf", default="", metavar="BPF", help="BPF expression applied by libpcap")
    rd.add_argument("-o", "--output", default="-", metavar="PATH",
                    help="write JSON lines here instead of stdout; nats://HOST:PORT/SUBJECT publishes them to JetStream")
    rd.add_argument("--stats", action="store_true", help="print the run's counters (packets, anomalies by name) as JSON on stderr")
    rd.add_argument("-q", "--quiet", action="store_true",
                    help="no warnings and no progress bar on stderr (errors and --stats still print)")
    rd.add_argument("-c", "--config", metavar="FILE",
                    help="take [limits], [tcp], [privacy], [bodies] and [nats] from this sniffd.toml (capture/output keys are ignored)")
    rd.add_argument("-w", "--workers", type=int, default=1, metavar="N",
                    help="spread the connections over N processes (symmetric flow hash); output order is unchanged")
    rd.add_argument("--format", metavar="FORMAT", default=None,
                    help="json (the native record) or ecs (Elastic Common Schema); default: -c's [output] format, else json")
    rd.add_argument("--flow-pcaps", metavar="DIR",
                    help="write the packets of chosen connections there, one pcap each ([flow_pcaps] flow_pcap_dir)")
    rd.add_argument("--flow-pcap-when", action="append", metavar="COND",
                    help="which connections: all, anomaly, anomaly=NAME, status>=500, host=H, method=M, "
                         "tests joined by '&'; repeat for several ([flow_pcaps] flow_pcap_when)")
    rd.set_defaults(func=cmd_read)

    if daemon_commands:
        _add_daemon_commands(sub)
    return parser


def cmd_read(args: argparse.Namespace) -> int:
    global _read_done
    from sniffd.readfile import read_files

    settings, key, nats = None, None, None
    if args.config:
        from sniffd.config import ConfigError, load

        try:
            cfg = load(args.config)
            settings, key = cfg.settings(), cfg.redact_key()
        except ConfigError as e:
            return _die(str(e))
        nats = cfg.values["nats"] if "://" in args.output else None
    if "://" in args.output:
        # -o nats://HOST:PORT/SUBJECT: records to JetStream (sniffd.natssink),
        # with the [nats] keys of -c (or their defaults).
        from sniffd import natssink

        try:
            natssink.parse_url(args.output)
        except natssink.NatsUrlError as e:
            return _die(f"-o: bad NATS URL {natssink.shown_url(args.output)!r}: {e}")
        if nats is None:
            from sniffd.config import defaults

            nats = defaults().values["nats"]
    if args.format is not None:
        # Checked here, not by argparse's choices: one line, as for the config key.
        from dataclasses import replace

        from sniffd.settings import OUTPUT_FORMATS, Settings

        if args.format not in OUTPUT_FORMATS:
            return _die(f"--format: must be one of {', '.join(OUTPUT_FORMATS)}, got {args.format!r}")
        settings = replace(settings or Settings(), format=args.format)
    if args.flow_pcaps is not None or args.flow_pcap_when is not None or (settings and settings.flow_pcap_dir):
        settings, problem = _read_flow_pcaps(args, settings)
        if problem:
            return _die(problem)
    rc = read_files(args.files, bpf=args.bpf, output=args.output, stats=args.stats, workers=args.workers,
                    settings=settings, redact_key=key, quiet=args.quiet, nats=nats)
    _read_done = True
    return rc


def _read_flow_pcaps(args: argparse.Namespace, settings):
    """``sniffd read``'s flow pcap flags over the ``-c`` file's [flow_pcaps]:
    (settings, None), or (None, the one line that says what is wrong)."""
    import dataclasses

    from sniffd.config import _path, flow_pcap_problem
    from sniffd.flowpcap import When
    from sniffd.settings import Settings

    s = settings or Settings()
    fields = {}
    if args.flow_pcaps is not None:
        problem = _path(args.flow_pcaps) or ("must not be empty" if not args.flow_pcaps else None)
        if problem:
            return None, f"--flow-pcaps: {problem}"
        fields["flow_pcap_dir"] = args.flow_pcaps
    if args.flow_pcap_when is not None:
        try:
            When(args.flow_pcap_when)
        except ValueError as e:
            return None, f"--flow-pcap-when: {e}"
        fields["flow_pcap_when"] = tuple(args.flow_pcap_when)
    s = dataclasses.replace(s, **fields)
    if not s.flow_pcap_dir:
        return None, "--flow-pcap-when: needs --flow-pcaps DIR (or flow_pcap_dir in the -c file)"
    problem = flow_pcap_problem({f: getattr(s, f) for f in ("flow_pcap_dir", "flow_pcap_max_file_mb",
                                                              "flow_pcap_max_total_mb")})
    if problem:
        where = "--flow-pcaps" if problem[0] == "flow_pcap_dir" and args.flow_pcaps else f"{args.config}: [flow_pcaps] {problem[0]}"
        return None, f"{where}: {problem[1]}"
    return s, None


# --- the daemon: run, check, interfaces ------------------------------------------

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
    from sniffd import config as configmod

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
    p.add_argument("-o", "--output", metavar="PATH", help="JSON-lines file, '-' for stdout, or nats://HOST:PORT/SUBJECT ([output] path)")
    p.add_argument("--user", metavar="USER", help="run as this user after opening the capture ([privileges] user); '' keeps the current one")
    p.add_argument("--group", metavar="GROUP", help="and this group ([privileges] group)")
    p.add_argument("--log-level", choices=configmod.LOG_LEVELS, help="operational log level ([log] level)")
    p.add_argument("--log-format", choices=configmod.LOG_FORMATS, help="operational log format ([log] format)")
    p.add_argument("--stats-interval", type=float, metavar="SECONDS", help="seconds between stats events, 0 = off ([stats] interval_s)")
    p.add_argument("-w", "--workers", type=int, metavar="N", help="capture processes sharing the interface by flow hash ([capture] workers)")


def _add_daemon_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``run``, ``check`` and ``interfaces`` to the ``sniffd`` command line."""
    run = subparsers.add_parser("run", help="capture live traffic and append one JSON line per HTTP transaction")
    _add_config_args(run)
    run.set_defaults(func=cmd_run)

    check = subparsers.add_parser("check", help="validate the config and compile the BPF filter, without capturing")
    _add_config_args(check)
    check.set_defaults(func=cmd_check)

    ifaces = subparsers.add_parser("interfaces", help="list the interfaces libpcap can capture on")
    ifaces.set_defaults(func=cmd_interfaces)


def build_config(args: argparse.Namespace) -> Config:
    """The config file (or the defaults), the flags laid over it, checked against this machine."""
    from sniffd import config as configmod

    path = args.config
    if path is None:
        path = configmod.DEFAULT_CONFIG_PATH if os.path.exists(configmod.DEFAULT_CONFIG_PATH) else None
    cfg = configmod.load(path) if path is not None else configmod.defaults()
    overrides = {(section, key): (flag, getattr(args, attr)) for (section, key), (attr, flag) in _OVERRIDES.items()}
    configmod.apply_overrides(cfg, overrides)
    configmod.check_environment(cfg)
    return cfg


def cmd_check(args: argparse.Namespace) -> int:
    from sniffd.config import ConfigError
    from sniffd.live import EXIT_OK

    try:
        cfg = build_config(args)
    except ConfigError as e:
        return _die(str(e))
    cap = cfg.capture
    where = cfg.path or "built-in defaults"
    workers = f", workers {cap['workers']}" if cap["workers"] > 1 else ""
    print(
        f"{where}: OK: interface {cap['interface']}, filter {cap['bpf_filter']!r}, "
        f"output {_shown_output(cfg.output['path'])}, user {cfg.get('privileges', 'user') or '(unchanged)'}{workers}"
    )
    return EXIT_OK


def _shown_output(path: str) -> str:
    from sniffd.natssink import shown_url

    return shown_url(path) if "://" in path else path


def cmd_interfaces(args: argparse.Namespace) -> int:
    from sniffd.capture import list_interfaces
    from sniffd.live import EXIT_FAILURE, EXIT_OK

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
    from sniffd.capture import CaptureError
    from sniffd.config import ConfigError
    from sniffd.live import Daemon
    from sniffd.oplog import configure_logging
    from sniffd.privileges import PrivilegeError
    from sniffd.workers import Supervisor

    try:
        cfg = build_config(args)
    except ConfigError as e:
        return _die(str(e))
    configure_logging(cfg.get("log", "level"), cfg.get("log", "format"))
    daemon: Daemon | Supervisor = Supervisor(cfg) if cfg.capture["workers"] > 1 else Daemon(cfg)
    try:
        daemon.prepare()  # leaves nothing open when it fails
    except (CaptureError, PrivilegeError, ConfigError, OSError) as e:
        return _die(str(e))
    return daemon.run()


def entry() -> None:
    """The console script (and ``python -m sniffd``): ``main``, then exit.

    A finished `sniffd read` leaves with os._exit: its output is written,
    flushed and renamed, its workers joined, and tearing the interpreter
    down (freeing every object one by one) only cost ~30 ms of a 1 s read.
    Every other command exits normally."""
    rc = main()
    if _read_done:
        for stream in (sys.stdout, sys.stderr):
            try:
                if not stream.closed:  # stdout is closed after a write error (readfile)
                    stream.flush()
            except OSError:
                pass
        os._exit(rc)
    sys.exit(rc)


_read_done = False


def main(argv: list[str] | None = None) -> int:
    # sniffd keeps many long-lived container objects (connections, open
    # messages): at the default thresholds the cyclic GC walks them every
    # 700 allocations, 5% of 'sniffd read' time on the bench corpus and a
    # third of a flood's.  Collect less often: it can, because nothing it
    # drops per connection is a cycle (sessions call back through a weak
    # proxy), so evicted sessions are freed at once, not at the rare full
    # collection (issue 11: they piled up to 977 MB).  gc.freeze() gained
    # nothing measurable.
    gc.set_threshold(50_000, 20, 100)
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(daemon_commands=not (argv and argv[0] == "read"))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `sniffd read x.pcap | head`: the reader went away; not an error.
        return 0


if __name__ == "__main__":
    sys.exit(main())
