"""``sniffd read``: saved captures in, JSON lines out (the offline driver).

Every file is opened and the filter compiled before any record is written,
so bad input fails with one line and leaves no output file.  Output to a
file goes to a temporary name in the same directory and is renamed into
place at the end: a reader never sees half a run under the final name.

``--workers N`` spreads the connections over N processes: each reads the
whole file (from the page cache) and keeps the clock of every frame, so all
run the housekeeping (gap and idle timeouts) at the very frames one process
would, but decodes and reassembles only the connections whose symmetric
flow hash falls to it (decode_batch sorts the common frames in C).  Each
writes its records keyed by their place in one process's output (the frame
that completed them, then their connection's order: Pipeline.emit_keys);
the parent merges the N sorted streams by that key, so the output is the
one a single process writes, record for record and in the same order.  The
one exception: with the memory budget or max_connections reached, each
worker sheds its own connections, as one process would shed from all.

Inputs may be pipes, standard input (``-``) and gzip or zstd data
(sniffd.source).  A pipe is read once, so --workers refuses one bigger
than the first chunk (a smaller one is held in memory, which workers
share).  Damaged compression is bad input: found mid-read, it ends the run
with exit 2 and no output file, like a bad file at the start.
"""

from __future__ import annotations

import heapq
import json
import os
import stat
import sys

from sniffd import progress as progress_bar
from sniffd.capture import CaptureError, OfflineCapture
from sniffd.decode import UnknownLinkType, check_linktype
from sniffd.pipeline import Pipeline
from sniffd.records import serializer
from sniffd.settings import Settings

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def _err(msg: str) -> None:
    print(f"sniffd: error: {msg}", file=sys.stderr)


def _discard(out, tmp: str | None) -> None:
    """Give up the output: close it (what is still buffered is dropped) and
    remove the temporary file, if any."""
    try:
        out.close()
    except OSError:
        pass
    if tmp is not None:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _open_all(paths: list[str], bpf: str, names: list[str] | None = None) -> list[OfflineCapture]:
    """Open every capture; ``names``: what messages call them (a worker
    opens again by path what the parent opened by name)."""
    captures = []
    for i, path in enumerate(paths):
        cap = OfflineCapture(path, bpf)
        if names is not None:
            cap.path = names[i]
        try:
            check_linktype(cap.linktype)
        except UnknownLinkType as e:
            raise CaptureError(f"{cap.path}: {e}") from None
        captures.append(cap)
    return captures


def read_files(paths: list[str], bpf: str = "", output: str = "-", settings: Settings | None = None,
               stats: bool = False, workers: int = 1, redact_key: bytes | None = None,
               quiet: bool = False, nats: dict | None = None) -> int:
    """``quiet``: no warnings and no progress bar on stderr (errors, and
    the counters ``stats`` asks for, are still written).  ``nats``: the
    ``[nats]`` keys, when ``output`` is a nats:// URL (_read_to_nats)."""
    try:
        captures = _open_all(paths, bpf)
    except CaptureError as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    if workers < 1:
        _err(f"--workers must be at least 1, got {workers}")
        return EXIT_BAD_INPUT
    if workers > 1:
        once = [cap.path for cap in captures if cap.reopen_path is None]
        if once:
            _err(f"{once[0]}: a pipe is read once, and each of --workers {workers} reads the whole input; "
                 "read it with one worker, or from a file")
            return EXIT_BAD_INPUT
    if redact_key is None:
        # One random key for the run, shared by every worker, so a
        # credential gets one token throughout the output.
        redact_key = os.urandom(32)

    if nats is not None:
        return _read_to_nats(captures, bpf, settings, output, nats, stats, workers, redact_key, quiet)

    # Where the lines go, and (tmp) the temporary file renamed there at the end.
    where = output
    if output == "-":
        out, tmp, where = sys.stdout, None, "stdout"
    elif _special(output):
        # A device or a FIFO (-o /dev/null, a named pipe): written to as it
        # is.  A temporary file renamed onto it would replace the device
        # with a regular file (it did: /dev/null, by a benchmark run).
        try:
            out, tmp = open(output, "w", encoding="ascii", buffering=1 << 20), None
        except OSError as e:
            _err(f"{output}: cannot write: {e.strerror}")
            return EXIT_BAD_INPUT
    else:
        # tempfile (and random) only here: ~4 M instructions that a run to
        # stdout, a device or NATS does not need.
        import tempfile

        directory = os.path.dirname(os.path.abspath(output))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".sniffd-", suffix=".tmp", dir=directory)
        except OSError as e:
            _err(f"{output}: cannot write: {e.strerror}")
            return EXIT_BAD_INPUT
        out = os.fdopen(fd, "w", encoding="ascii", buffering=1 << 20)

    try:
        totals = _run_all(captures, bpf, settings, out.write, workers, redact_key, quiet)
        out.flush()
    except CaptureError as e:
        # Damage found mid-read (a compressed stream cut short or corrupt):
        # the records so far cannot be trusted to be all there is.  One
        # line, and no output file (what stdout got already stays there;
        # the exit status says it is incomplete).
        _discard(out, tmp)
        _err(str(e))
        return EXIT_BAD_INPUT
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            if tmp is not None:
                _discard(out, tmp)
            raise
        # Disk full, or a device that refuses (e.g. /dev/full): one line, and
        # no output file (the temporary one is removed; stdout is closed so
        # nothing more is tried at exit).
        _discard(out, tmp)
        _err(f"{where}: cannot write: {e.strerror or e}")
        return EXIT_BAD_INPUT
    except BaseException:
        if tmp is not None:
            _discard(out, tmp)
        raise
    if totals is None:
        if tmp is not None:
            out.close()
            os.unlink(tmp)
        return EXIT_FAILED
    if tmp is not None:
        out.close()
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, output)
    elif out is not sys.stdout:
        out.close()
    if stats:
        print(json.dumps(totals, sort_keys=True), file=sys.stderr)
    return 0


def _read_to_nats(captures: list[OfflineCapture], bpf: str, settings: Settings | None, url: str, nats: dict,
                  stats: bool, workers: int, key: bytes, quiet: bool) -> int:
    """``read -o nats://...``: every record a JetStream message (sniffd.natssink).

    Unlike the daemon, a read waits for acks when its buffer is full (a file
    can be read at the pace of the server) rather than drop.  Exit status: 2
    if the output cannot start (server unreachable within connect_timeout_s,
    no stream for the subject, bad input), 1 if any record was lost (not
    acknowledged by the end: ``records_lost`` on stderr), 0 when JetStream
    acknowledged every record.  Records published before a failure mid-read
    stay in the stream (a stream has no temporary name to discard)."""
    from sniffd import natssink

    def event(name: str, **fields: object) -> None:
        if quiet and name == "output_resumed":
            return
        detail = ", ".join(f"{k}={v}" for k, v in fields.items() if k != "path")
        print(f"sniffd: warning: {fields.get('path', url)}: {name}: {detail}", file=sys.stderr)

    try:
        sink = natssink.open_nats_sink({"path": url, "backlog_mb": 64.0}, nats, event,
                                       require_connection=True, wait_for_room=True)
    except natssink.NatsStartError as e:
        _err(str(e))
        return EXIT_BAD_INPUT

    def write(text: str) -> None:
        # Whole lines, each ending in "\n" (_run and the merge write those).
        sink.add(text.split("\n")[:-1])

    try:
        totals = _run_all(captures, bpf, settings, write, workers, key, quiet)
    except CaptureError as e:
        sink.close()
        _err(f"{e} (records before it were published to {sink.path})")
        return EXIT_BAD_INPUT
    finally:
        sink.close()  # waits for the acks (close_timeout_s); a second call does nothing
    out = sink.stats()
    if totals is None:
        return EXIT_FAILED
    if stats:
        totals["output"] = out
        print(json.dumps(totals, sort_keys=True), file=sys.stderr)
    if out["records_lost"]:
        _err(f"{sink.path}: {out['records_lost']} records lost (not acknowledged by JetStream), "
             f"{out['records_written']} acknowledged")
        return EXIT_FAILED
    return 0


def _run_all(captures: list[OfflineCapture], bpf: str, settings: Settings | None, write, workers: int, key: bytes,
             quiet: bool) -> dict | None:
    """Every capture's records to ``write``, by one pipeline or by ``workers``
    processes (_run_parallel); the stats, or None when a worker failed."""
    show = progress_bar.wanted(quiet)
    if workers == 1:
        return _run(captures, settings, write, None, warn=not quiet, key=key, show_progress=show)
    return _run_parallel(captures, bpf, settings, write, workers, key, quiet, show)


def _run(captures: list[OfflineCapture], settings: Settings | None, write, shard: tuple[int, int] | None,
         warn: bool, key: bytes, show_progress: bool = False) -> dict:
    """One pipeline over all captures; returns its stats.  With ``shard``,
    each line is prefixed with the record's place in one process's output
    (Pipeline.emit_keys), written by _key so that lines sort as keys do.
    ``warn``: say on stderr which capture was cut short; ``show_progress``:
    draw the progress bar (sniffd.progress)."""
    pipeline = Pipeline(settings, shard=shard, redact_key=key)
    if shard is not None:
        pipeline.emit_keys = []
    dumps = serializer(pipeline.settings.format)

    def emit(recs: list[dict]) -> None:
        if not recs:
            return
        # In slices: the flush at the end of a capture can hold every open
        # transaction, and one joined string of them all doubled the memory.
        keys = pipeline.emit_keys
        for i in range(0, len(recs), 1000):
            part = recs[i : i + 1000]
            if shard is None:
                write("".join([dumps(r) + "\n" for r in part]))
            else:
                write("".join([_key(k) + dumps(r) + "\n" for k, r in zip(keys[i : i + 1000], part)]))
        if keys is not None:
            keys.clear()

    bar = None
    if show_progress:
        sizes = [cap.size for cap in captures]
        bar = progress_bar.Progress(None if None in sizes else sum(sizes))
    try:
        for cap in captures:
            linktype = cap.linktype
            pipeline.snaplen = cap.snaplen
            feed_batch = pipeline.feed_batch
            if bar is None:
                for batch in cap.batches():
                    emit(feed_batch(linktype, batch))
            else:
                for batch in cap.batches():
                    emit(feed_batch(linktype, batch))
                    bar.update(len(batch), cap.position())
                bar.next_input(cap.position())
            if cap.truncated and warn:
                line = (f"sniffd: warning: {cap.path}: capture file is truncated or damaged ({cap.truncated}); "
                        "records up to that point were written")
                if bar is None:
                    print(line, file=sys.stderr)
                else:
                    bar.write(line)
        emit(pipeline.flush("end_of_input"))
    finally:
        if bar is not None:
            bar.close()
    return pipeline.stats


# Pipeline.emit_keys: (frames, phase, began in us, client ip, port, server
# ip, port), each as fixed-width hex (an IPv4 address is a small number).
_KEY_FORMAT = "{:012x}{:x}{:016x}{:032x}{:04x}{:032x}{:04x}"
_KEY_WIDTH = 12 + 1 + 16 + 32 + 4 + 32 + 4


def _key(k: tuple) -> str:
    return _KEY_FORMAT.format(*k)


def _shard_main(paths: list[str], names: list[str], bpf: str, settings: Settings | None, k: int, n: int,
                path: str, key: bytes, warn: bool, show_progress: bool) -> None:
    try:
        with open(path, "w", encoding="ascii", buffering=1 << 20) as f:
            stats = _run(_open_all(paths, bpf, names), settings, f.write, (k, n), warn=warn, key=key,
                         show_progress=show_progress)
    except CaptureError as e:
        # Bad input found mid-read (damaged compression): the parent says it.
        with open(path + ".error", "w") as f:
            f.write(str(e))
        os._exit(EXIT_BAD_INPUT)
    with open(path + ".stats", "w") as f:
        json.dump(stats, f)


def _run_parallel(captures: list[OfflineCapture], bpf: str, settings: Settings | None, write, n: int, key: bytes,
                  quiet: bool, show_progress: bool) -> dict | None:
    # Each worker opens the inputs again: a file by its path, a small pipe
    # from the memory the parent holds it in (inherited across fork).
    paths = [cap.reopen_path for cap in captures]
    names = [cap.path for cap in captures]
    import shutil
    import tempfile

    tmpdir = tempfile.mkdtemp(prefix="sniffd-read-")
    try:
        import multiprocessing  # here: one-process runs start faster without it

        ctx = multiprocessing.get_context("fork")
        parts = [os.path.join(tmpdir, f"shard{k}") for k in range(n)]
        # Worker 0 warns and draws the bar: it reads every frame, as all do.
        procs = [ctx.Process(target=_shard_main, args=(paths, names, bpf, settings, k, n, parts[k], key,
                                                       k == 0 and not quiet, k == 0 and show_progress))
                 for k in range(n)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        failed = [k for k, p in enumerate(procs) if p.exitcode != 0]
        for k in failed:
            if os.path.exists(parts[k] + ".error"):
                with open(parts[k] + ".error") as f:
                    raise CaptureError(f.read())
        if failed:
            _err(f"worker(s) {failed} failed; no output written")
            return None
        files = [open(p, encoding="ascii") for p in parts]
        try:
            # Keys of fixed width: the lines sort as their keys, compared
            # in C.  No two workers' lines share a key (a key names a
            # connection), and merge keeps each worker's own order.
            for line in heapq.merge(*files):
                write(line[_KEY_WIDTH:])
        finally:
            for f in files:
                f.close()
        return _sum_stats([json.load(open(p + ".stats")) for p in parts])
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _sum_stats(all_stats: list[dict]) -> dict:
    total: dict = {}
    for st in all_stats:
        for key, value in st.items():
            if key == "anomalies":
                an = total.setdefault("anomalies", {})
                for name, count in value.items():
                    an[name] = an.get(name, 0) + count
            else:
                total[key] = total.get(key, 0) + value
    total["anomalies"] = dict(sorted(total.get("anomalies", {}).items()))
    return total


def _special(path: str) -> bool:
    """Whether ``path`` exists and is not a regular file (a device, a FIFO)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
