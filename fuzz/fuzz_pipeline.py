"""Coverage-guided fuzzing of the whole pipeline, frame bytes up (atheris,
i.e. libFuzzer driving Python code instrumented for coverage).

Each input is a small capture (see fuzzinput.py: link type, snaplen, then
frames with time steps that can jump past every timeout or go backwards).
It is fed to a ``Pipeline`` (default settings, or fuzzinput.TIGHT ones:
tiny bounds and body capture) exactly as ``sniffd read`` feeds a file
(``feed_batch``, 512 frames a batch, the file's snaplen) or, when the input
says so, frame by frame through ``Pipeline.feed`` as the daemon does; then
``flush``.  SNIFFD_STRICT=1, so a bug inside the flow table raises instead
of being counted as ``internal_error``.  Every exception is a finding, and so
is a broken invariant of the output:

* every record is one line of JSON (``records.dumps``), its keys in one
  order for every record, with only documented anomaly names;
* every anomaly name in the stats is documented;
* after ``flush`` no connection is open, no byte is counted as buffered and
  the HTTP memory meter is back to zero.

Run (from the repository root):

    .venv/bin/python fuzz/make_seeds.py            # once: writes fuzz/corpus/
    mkdir -p fuzz/work fuzz/crashes
    .venv/bin/python fuzz/fuzz_pipeline.py -max_total_time=600 -timeout=20 \\
        -max_len=16384 -artifact_prefix=fuzz/crashes/ fuzz/work/ fuzz/corpus/

New corpus entries go to the first directory (fuzz/work/, not committed);
fuzz/corpus/ holds the seeds.  SNIFFD_FUZZ_IGNORE (see IGNORE below) steps
over known bugs while they are being fixed.

A crash is written to fuzz/crashes/crash-<sha1> (an input still running
after -timeout seconds, an endless loop, to timeout-<sha1>); replay it with
``.venv/bin/python fuzz/fuzz_pipeline.py fuzz/crashes/crash-<sha1>`` and turn
it into a regression capture with ``fuzz/crash_to_pcap.py``.
"""

from __future__ import annotations

import json
import os
import struct
import sys

os.environ["SNIFFD_STRICT"] = "1"  # read by sniffd.pipeline at import

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzzinput  # noqa: E402

try:
    import atheris
except ImportError:  # run() stays importable without atheris (crash_to_pcap --check)
    atheris = None

if atheris is not None and __name__ == "__main__":
    with atheris.instrument_imports(include=["sniffd"]):
        import sniffd.anomalies
        import sniffd.capture
        import sniffd.decode
        import sniffd.flows
        import sniffd.fragments
        import sniffd.http
        import sniffd.pipeline
        import sniffd.reassembly
        import sniffd.records

from sniffd.anomalies import ANOMALIES  # noqa: E402
from sniffd.capture import DEFAULT_BATCH_SIZE, Batch  # noqa: E402
from sniffd.pipeline import Pipeline  # noqa: E402
from sniffd.records import dumps  # noqa: E402
from sniffd.settings import Settings  # noqa: E402

_META = struct.Struct("=4I")
# Known bugs to step over while they are being fixed, so the fuzzer can
# look for others (comma-separated, SNIFFD_FUZZ_IGNORE=buffered,open):
#   buffered     do not check that no byte is counted buffered after flush
#   open         do not check that no connection is open after flush
#   meter        do not check that the HTTP memory meter is back to 0 after flush
#   empty_segment  give up on an input that feeds a HalfStream an empty
#                payload ahead of the next byte with nothing buffered
#                (IndexError in HalfStream.feed)
IGNORE = set(filter(None, os.environ.get("SNIFFD_FUZZ_IGNORE", "").split(",")))


class KnownBug(Exception):
    """An input hit a bug listed in SNIFFD_FUZZ_IGNORE: not a new finding."""


if "empty_segment" in IGNORE:
    from sniffd.reassembly import HalfStream

    _hs_feed = HalfStream.feed

    def _guarded_feed(self, seq, payload, now, ack=None):
        if not payload and not self.closed and not self.pending and self.rel(seq) > self.next:
            raise KnownBug("empty payload ahead of next with nothing buffered")
        return _hs_feed(self, seq, payload, now, ack)

    HalfStream.feed = _guarded_feed


def _check(rec: dict, shapes: dict) -> None:
    """One line of JSON; keys always in one order (whatever the current
    record format is: the README is checked against it elsewhere)."""
    line = dumps(rec)
    assert "\n" not in line and "\r" not in line, line
    back = json.loads(line)
    assert back == json.loads(json.dumps(rec)), "dumps changed the record"
    keys = list(back)
    assert "ts" == keys[0] and "anomalies" == keys[-1], keys
    assert shapes.setdefault("record", keys) == keys, (shapes["record"], keys)
    for side in ("request", "response"):
        if back.get(side) is not None:
            sub = list(back[side])
            assert shapes.setdefault(side, sub) == sub, (shapes[side], sub)
    unknown = set(back["anomalies"]) - set(ANOMALIES)
    assert not unknown, unknown
    assert back["anomalies"] == sorted(set(back["anomalies"])), back["anomalies"]


def run(data: bytes) -> list[dict]:
    """Feed one fuzz input through a fresh pipeline; return its records."""
    cap = fuzzinput.decode(data)
    p = Pipeline(Settings(**fuzzinput.tight_settings_kwargs()) if cap.tight else None)
    out: list[dict] = []
    if cap.per_frame:
        for fr in cap.frames:
            out += p.feed(fr.ts, cap.linktype, fr.data, fr.wirelen)
    else:
        # As readfile._run: the file's snaplen, batches of 512.
        p.snaplen = cap.snaplen
        frames = cap.frames
        for i in range(0, len(frames), DEFAULT_BATCH_SIZE):
            buf = bytearray()
            meta = bytearray()
            for fr in frames[i : i + DEFAULT_BATCH_SIZE]:
                sec, usec = divmod(fr.ts_us, 1_000_000)
                meta += _META.pack(sec, usec, len(buf), len(fr.data))
                buf += fr.data
            out += p.feed_batch(cap.linktype, Batch(bytes(buf), bytes(meta)))
    out += p.flush("end_of_input")
    shapes: dict = {}
    for rec in out:
        _check(rec, shapes)
    stats = p.stats
    unknown = set(stats["anomalies"]) - set(ANOMALIES)
    assert not unknown, unknown
    if "open" not in IGNORE:
        assert 0 == stats["open_connections"], stats
    if "buffered" not in IGNORE:
        assert 0 == stats["buffered_bytes"], stats
    meter = getattr(p.flows, "meter", None)
    if meter is not None and "meter" not in IGNORE:
        assert (0, 0) == (meter.http_bytes, meter.sessions), (meter.http_bytes, meter.sessions)
    return out


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris' name
    try:
        run(data)
    except KnownBug:
        pass


def main() -> None:
    if atheris is None:
        sys.exit("atheris is not installed: .venv/bin/pip install atheris (or the 'fuzz' extra)")
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
