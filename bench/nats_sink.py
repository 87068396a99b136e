"""Records/s of the NATS output (sniffd.natssink) to a local `nats-server -js`.

    .venv/bin/python bench/nats_sink.py bench/out/corpus.pcap

Reads the capture once with `sniffd read` to a file (timed), once with
`sniffd read -o nats://` (timed, every ack in), then feeds the file's lines
straight to a NatsSink for each max_pending_acks (the sink alone, no
pipeline).  The server is started on a free port with a temporary store.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sniffd.natssink import NatsSink, parse_url  # noqa: E402
from tests.natsserver import NatsServer, add_stream  # noqa: E402

SNIFFD = Path(sys.executable).parent / "sniffd"


def main(pcap: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = NatsServer(Path(tmp) / "store").start()
        try:
            add_stream(srv.url, "BENCH", ["bench.>"])
            out = Path(tmp) / "records.jsonl"
            t = time.perf_counter()
            subprocess.run([str(SNIFFD), "read", pcap, "-o", str(out)], check=True)
            file_s = time.perf_counter() - t
            lines = out.read_text().split("\n")[:-1]
            t = time.perf_counter()
            subprocess.run([str(SNIFFD), "read", pcap, "-o", f"{srv.url}/bench.read"], check=True)
            nats_s = time.perf_counter() - t
            print(f"sniffd read -o FILE: {len(lines)} records in {file_s:.2f} s; -o nats://: {nats_s:.2f} s")
            for mpa in (64, 256, 1024, 4096):
                sink = NatsSink(parse_url(f"{srv.url}/bench.sink{mpa}"), backlog_bytes=64 << 20, max_pending_acks=mpa,
                                wait_for_room=True, require_connection=True).open()
                t = time.perf_counter()
                for i in range(0, len(lines), 500):
                    sink.add(lines[i:i + 500])
                sink.close()
                dt = time.perf_counter() - t
                st = sink.stats()
                print(f"sink alone, max_pending_acks={mpa}: {st['records_written']} acknowledged in {dt:.2f} s = "
                      f"{st['records_written'] / dt:.0f} records/s, lost {st['records_lost']}")
        finally:
            srv.stop()


if __name__ == "__main__":
    main(sys.argv[1])
