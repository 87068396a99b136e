#!/usr/bin/env python3
"""Record captures/h2c/loopback_h2c.pcap and its answer key (needs root, tcpdump, curl with HTTP/2).

    .venv/bin/python tests/pcap/make_h2c_fixtures.py [OUTDIR]     (default: captures/h2c/)

Real HTTP/2 in clear over loopback, made by tests/live/test_h2c_loopback.py's
``h2c_traffic`` (a Hypercorn server; curl in prior knowledge, curl upgrading
with ``Upgrade: h2c``, and a python-hyper h2 client with nine streams open at
once, one of them gRPC, one cancelled with RST_STREAM).  The ports and bytes
differ from run to run: the committed files are the fixture, this script is
how they were made.  The answer key (loopback_h2c.json) is written from the
two ends' own knowledge and dpkt's reading of the frames; sniffd is never run.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.live.test_h2c_loopback import H2cServer, h2c_traffic  # noqa: E402


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    server = H2cServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pcap, key = h2c_traffic(Path(tmp), server)
            shutil.copyfile(pcap, outdir / "loopback_h2c.pcap")
    finally:
        server.stop()
    if server.errors:
        raise SystemExit(f"the Hypercorn server failed: {server.errors}")
    (outdir / "loopback_h2c.json").write_text(json.dumps(key, indent=1) + "\n")
    print(f"wrote {outdir / 'loopback_h2c.pcap'} and loopback_h2c.json: "
          f"{sum(len(c['streams']) for c in key['connections'].values())} streams on {len(key['connections'])} connections")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "captures" / "h2c")
