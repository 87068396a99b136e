"""Command line: ``sniffd read``, plus the daemon's commands from sniffd.daemon.

Bad input (missing file, non-pcap file, invalid BPF, bad config) gets one
line on stderr naming the problem and exit status 2, with no output file
left behind.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

from sniffd import __version__

EXIT_USAGE = 2


def _die(msg: str) -> int:
    print(f"sniffd: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def build_parser(daemon_commands: bool = True) -> argparse.ArgumentParser:
    """``daemon_commands``: also the daemon's subcommands (run, check,
    interfaces); `sniffd read` leaves them out, which spares it importing
    the daemon (structlog, config, sink: ~90 ms of start-up)."""
    parser = argparse.ArgumentParser(prog="sniffd", description="Log every HTTP exchange seen on the wire as one JSON line.")
    parser.add_argument("--version", action="version", version=f"sniffd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    rd = sub.add_parser("read", help="read pcap/pcapng files and print one JSON line per HTTP transaction")
    rd.add_argument("files", nargs="+", metavar="FILE",
                    help="pcap or pcapng captures, read in order: files, pipes, - for stdin; gzip or zstd compressed too")
    rd.add_argument("-f", "--filter", dest="bpf", default="", metavar="BPF", help="BPF expression applied by libpcap")
    rd.add_argument("-o", "--output", default="-", metavar="PATH", help="write JSON lines here instead of stdout")
    rd.add_argument("--stats", action="store_true", help="print the run's counters (packets, anomalies by name) as JSON on stderr")
    rd.add_argument("-q", "--quiet", action="store_true",
                    help="no warnings and no progress bar on stderr (errors and --stats still print)")
    rd.add_argument("-c", "--config", metavar="FILE",
                    help="take [limits], [tcp], [privacy] and [bodies] from this sniffd.toml (capture/output keys are ignored)")
    rd.add_argument("-w", "--workers", type=int, default=1, metavar="N",
                    help="spread the connections over N processes (symmetric flow hash); output order is unchanged")
    rd.set_defaults(func=cmd_read)

    if daemon_commands:
        from sniffd import daemon

        daemon.register(sub)
    return parser


def cmd_read(args: argparse.Namespace) -> int:
    global _read_done
    from sniffd.readfile import read_files

    settings, key = None, None
    if args.config:
        from sniffd.config import ConfigError, load

        try:
            cfg = load(args.config)
            settings, key = cfg.settings(), cfg.redact_key()
        except ConfigError as e:
            return _die(str(e))
    rc = read_files(args.files, bpf=args.bpf, output=args.output, stats=args.stats, workers=args.workers,
                    settings=settings, redact_key=key, quiet=args.quiet)
    _read_done = True
    return rc


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
