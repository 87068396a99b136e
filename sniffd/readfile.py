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
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import sys
import tempfile

from sniffd.capture import CaptureError, OfflineCapture
from sniffd.decode import UnknownLinkType, check_linktype
from sniffd.pipeline import Pipeline
from sniffd.records import dumps
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


def _open_all(paths: list[str], bpf: str) -> list[OfflineCapture]:
    captures = []
    for path in paths:
        cap = OfflineCapture(path, bpf)
        try:
            check_linktype(cap.linktype)
        except UnknownLinkType as e:
            raise CaptureError(f"{path}: {e}") from None
        captures.append(cap)
    return captures


def read_files(paths: list[str], bpf: str = "", output: str = "-", settings: Settings | None = None,
               stats: bool = False, workers: int = 1, redact_key: bytes | None = None) -> int:
    try:
        captures = _open_all(paths, bpf)
    except CaptureError as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    if workers < 1:
        _err(f"--workers must be at least 1, got {workers}")
        return EXIT_BAD_INPUT
    if redact_key is None:
        # One random key for the run, shared by every worker, so a
        # credential gets one token throughout the output.
        redact_key = os.urandom(32)

    if output == "-":
        out, tmp = sys.stdout, None
    else:
        directory = os.path.dirname(os.path.abspath(output))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".sniffd-", suffix=".tmp", dir=directory)
        except OSError as e:
            _err(f"{output}: cannot write: {e.strerror}")
            return EXIT_BAD_INPUT
        out = os.fdopen(fd, "w", encoding="ascii", buffering=1 << 20)

    try:
        if workers == 1:
            totals = _run(captures, settings, out.write, None, warn=True, key=redact_key)
        else:
            totals = _run_parallel(paths, bpf, settings, out.write, workers, redact_key)
        out.flush()
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            if tmp is not None:
                _discard(out, tmp)
            raise
        # Disk full, or a device that refuses (e.g. /dev/full): one line, and
        # no output file (the temporary one is removed; stdout is closed so
        # nothing more is tried at exit).
        _discard(out, tmp)
        _err(f"{'stdout' if tmp is None else output}: cannot write: {e.strerror or e}")
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
    if stats:
        print(json.dumps(totals, sort_keys=True), file=sys.stderr)
    return 0


def _run(captures: list[OfflineCapture], settings: Settings | None, write, shard: tuple[int, int] | None,
         warn: bool, key: bytes) -> dict:
    """One pipeline over all captures; returns its stats.  With ``shard``,
    each line is prefixed with the record's place in one process's output
    (Pipeline.emit_keys), written by _key so that lines sort as keys do."""
    pipeline = Pipeline(settings, shard=shard, redact_key=key)
    if shard is not None:
        pipeline.emit_keys = []

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

    for cap in captures:
        linktype = cap.linktype
        pipeline.snaplen = cap.snaplen
        feed_batch = pipeline.feed_batch
        for batch in cap.batches():
            emit(feed_batch(linktype, batch))
        if cap.truncated and warn:
            print(f"sniffd: warning: {cap.path}: capture file is truncated or damaged ({cap.truncated}); "
                  "records up to that point were written", file=sys.stderr)
    emit(pipeline.flush("end_of_input"))
    return pipeline.stats


# Pipeline.emit_keys: (frames, phase, began in us, client ip, port, server
# ip, port), each as fixed-width hex (an IPv4 address is a small number).
_KEY_FORMAT = "{:012x}{:x}{:016x}{:032x}{:04x}{:032x}{:04x}"
_KEY_WIDTH = 12 + 1 + 16 + 32 + 4 + 32 + 4


def _key(k: tuple) -> str:
    return _KEY_FORMAT.format(*k)


def _shard_main(paths: list[str], bpf: str, settings: Settings | None, k: int, n: int, path: str,
                key: bytes) -> None:
    with open(path, "w", encoding="ascii", buffering=1 << 20) as f:
        stats = _run(_open_all(paths, bpf), settings, f.write, (k, n), warn=(k == 0), key=key)
    with open(path + ".stats", "w") as f:
        json.dump(stats, f)


def _run_parallel(paths: list[str], bpf: str, settings: Settings | None, write, n: int, key: bytes) -> dict | None:
    tmpdir = tempfile.mkdtemp(prefix="sniffd-read-")
    try:
        import multiprocessing  # here: one-process runs start faster without it

        ctx = multiprocessing.get_context("fork")
        parts = [os.path.join(tmpdir, f"shard{k}") for k in range(n)]
        procs = [ctx.Process(target=_shard_main, args=(paths, bpf, settings, k, n, parts[k], key)) for k in range(n)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        failed = [k for k, p in enumerate(procs) if p.exitcode != 0]
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
