"""Turn a fuzzer input (a crash-<sha1> file, or any corpus entry) into a
pcap file holding the same frames, timestamps, snaplen and link type, so
that the crash becomes a regression capture that the real `sniffd read`
runs (tests/fuzz/test_regressions.py runs every captures/fuzz/*.pcap).

    .venv/bin/python fuzz/crash_to_pcap.py fuzz/crashes/crash-<sha1> [-o captures/fuzz/crash-NNN.pcap] [--check]

Without -o the next free captures/fuzz/crash-NNN.pcap is used.  An input
that asks for the TIGHT settings also gets crash-NNN.toml beside the pcap
(`sniffd read -c` reads it; so does the regression test).  --check
replays the input in this process first and prints the traceback it gives.
An input that asks for the per-frame driver (Pipeline.feed, the daemon's
path) is still written as a pcap, which `sniffd read` feeds through
feed_batch: check with `sniffd read` that the crash reproduces that way.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fuzzinput  # noqa: E402

DEFAULT_DIR = HERE.parent / "captures" / "fuzz"


def next_free(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    taken = {p.stem for p in directory.glob("crash-*.pcap")}
    n = 1
    while f"crash-{n:03d}" in taken:
        n += 1
    return directory / f"crash-{n:03d}.pcap"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", type=Path, help="a fuzzer input file")
    ap.add_argument("-o", "--output", type=Path, help="pcap to write (default: next captures/fuzz/crash-NNN.pcap)")
    ap.add_argument("--check", action="store_true", help="replay the input in-process first and show what it raises")
    args = ap.parse_args(argv)

    data = args.input.read_bytes()
    cap = fuzzinput.decode(data)
    if args.check:
        import os

        os.environ["SNIFFD_STRICT"] = "1"
        import fuzz_pipeline

        try:
            fuzz_pipeline.run(data)
            print("replay: no exception")
        except Exception:
            print("replay raised:")
            traceback.print_exc(file=sys.stdout)
    out = args.output or next_free(DEFAULT_DIR)
    out.parent.mkdir(parents=True, exist_ok=True)
    fuzzinput.write_pcap(str(out), cap)
    toml = out.with_suffix(".toml")
    if cap.tight:
        # The regression test passes it to `sniffd read -c`.
        toml.write_text(fuzzinput.tight_toml())
        print(f"{toml}: the input's TIGHT settings (sniffd read -c {toml})")
    driver = "Pipeline.feed per frame (daemon path)" if cap.per_frame else "feed_batch (sniffd read path)"
    print(f"{out}: {len(cap.frames)} frames, linktype {cap.linktype}, snaplen {cap.snaplen}; input used {driver}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
