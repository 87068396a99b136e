"""Every capture the fuzzers found a bug with (captures/fuzz/*.pcap, written
by fuzz/crash_to_pcap.py) is read by the real `sniffd read`: exit status 0,
no traceback, in bounded time, and the run's stats balance at the end.

SNIFFD_STRICT=1 (tests/conftest.py, passed on to the subprocess) makes an
internal error crash instead of being counted, so a bug fails here.  A
capture with a .toml beside it was found with the fuzzer's TIGHT settings
and is read with ``-c`` that file.  A bug that shows only in the records
(a phantom or duplicate transaction) gets ``crash-NNN.expect.json`` beside
the pcap: the records expected, as ``[trans_depth, method, uri, status]``.
docs/fuzzing.md lists what each capture hit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = sorted((ROOT / "captures" / "fuzz").glob("*.pcap"))
SNIFFD = Path(sys.executable).parent / "sniffd"
# Each capture is a few frames, read in well under a second; a run still
# going after this is an endless loop.
TIMEOUT_S = 15


@pytest.mark.parametrize("pcap", CAPTURES, ids=[p.name for p in CAPTURES])
def test_fuzz_capture_is_read_cleanly_by_sniffd_read(pcap: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    args = [str(SNIFFD), "read", str(pcap), "--stats", "-o", str(out)]
    config = pcap.with_suffix(".toml")
    if config.exists():
        args += ["-c", str(config)]
    env = dict(os.environ, SNIFFD_STRICT="1")
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"sniffd read {pcap.name} still running after {TIMEOUT_S} s (endless loop?)")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert 0 == proc.returncode, proc.stderr
    recs = [orjson.loads(line) for line in out.read_text(encoding="ascii").splitlines()]  # strict
    expect = pcap.with_suffix(".expect.json")
    if expect.exists():
        expected = json.loads(expect.read_text())["records"]
        assert expected == [[r["trans_depth"], (r["request"] or {}).get("method"), (r["request"] or {}).get("uri"),
                             (r["response"] or {}).get("status")] for r in recs]
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    assert "internal_error" not in stats["anomalies"]
    # After the end of input every connection is flushed: nothing is open,
    # nothing counted as buffered (the memory budget relies on that count).
    assert (0, 0) == (stats["open_connections"], stats["buffered_bytes"]), stats
    # ... and with no fragment held, nothing is left on the memory estimate.
    if stats.get("fragments_held") == 0 and "memory_estimate_bytes" in stats:
        assert 0 == stats["memory_estimate_bytes"], stats
