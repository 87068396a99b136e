"""``sniffd read``: saved captures in, JSON lines out (the offline driver).

Every file is opened and the filter compiled before any record is written,
so bad input fails with one line and leaves no output file.  Output to a
file goes to a temporary name in the same directory and is renamed into
place at the end: a reader never sees half a run under the final name.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from sniffd.capture import CaptureError, OfflineCapture
from sniffd.decode import UnknownLinkType, check_linktype
from sniffd.pipeline import Pipeline
from sniffd.records import dumps
from sniffd.settings import Settings

EXIT_BAD_INPUT = 2


def _err(msg: str) -> None:
    print(f"sniffd: error: {msg}", file=sys.stderr)


def read_files(paths: list[str], bpf: str = "", output: str = "-", settings: Settings | None = None,
               stats: bool = False) -> int:
    captures = []
    try:
        for path in paths:
            cap = OfflineCapture(path, bpf)
            check_linktype(cap.linktype)
            captures.append(cap)
    except CaptureError as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    except UnknownLinkType as e:
        _err(f"{path}: {e}")
        return EXIT_BAD_INPUT

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

    pipeline = Pipeline(settings)
    write = out.write
    try:
        for cap in captures:
            linktype = cap.linktype
            pipeline.snaplen = cap.snaplen
            feed_batch = pipeline.feed_batch
            for batch in cap.batches():
                recs = feed_batch(linktype, batch)
                if recs:
                    write("".join([dumps(r) + "\n" for r in recs]))
            if cap.truncated:
                print(f"sniffd: warning: {cap.path}: capture file is truncated ({cap.truncated}); "
                      "records up to the cut were written", file=sys.stderr)
        recs = pipeline.flush("end_of_input")
        if recs:
            write("".join(dumps(r) + "\n" for r in recs))
        out.flush()
    except BaseException:
        if tmp is not None:
            out.close()
            os.unlink(tmp)
        raise
    if tmp is not None:
        out.close()
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, output)
    if stats:
        print(json.dumps(pipeline.stats, sort_keys=True), file=sys.stderr)
    return 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
