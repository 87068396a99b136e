"""Run the real ``sniffd read`` CLI and read back its records; reference helpers.

Nothing here derives an expected record: tests write those by hand.  The only
computed expectation is the Community ID, from the small reference implementation
below (checked against the spec's published example in
test_community_id_reference.py), since a SHA-1 cannot be written by hand.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct
import subprocess
import sys
from pathlib import Path

import orjson

from sniffd.anomalies import ANOMALIES

SNIFFD = Path(sys.executable).parent / "sniffd"

# Every crafted capture starts at T0; expected "ts" strings are written from it by hand.
T0 = 1795257725.0  # 2026-11-21T10:42:05.000000Z


def run_sniffd(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """The sniffd CLI as a subprocess, text output captured."""
    return subprocess.run(
        [str(SNIFFD), *map(str, args)], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [orjson.loads(line) for line in f if line.strip()]  # strict: what shippers parse


def read_records(pcap: Path, *extra: str) -> list[dict]:
    """``sniffd read PCAP -o OUT [extra...]``; asserts exit status 0 and returns OUT's records."""
    out = pcap.with_name(pcap.name + ".out.jsonl")
    proc = run_sniffd("read", pcap, "-o", out, *extra)
    assert proc.returncode == 0, f"sniffd exited {proc.returncode}\nstderr:\n{proc.stderr}"
    assert out.exists(), f"sniffd wrote no output file\nstderr:\n{proc.stderr}"
    return load_jsonl(out)


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def anomalies(*names: str) -> list[str]:
    """The expected ``anomalies`` value: names checked against sniffd/anomalies.py, sorted."""
    unknown = [n for n in names if n not in ANOMALIES]
    assert not unknown, f"not anomaly names in sniffd/anomalies.py: {unknown}"
    return sorted(set(names))


def community_id(src_ip: str, sport: int, dst_ip: str, dport: int, proto: int = 6, seed: int = 0) -> str:
    """Community ID v1 (https://github.com/corelight/community-id-spec), for TCP/UDP.

    sha1(seed:u16be . ip_lo . ip_hi . proto:u8 . pad:u8=0 . port_lo:u16be . port_hi:u16be),
    base64, "1:" prefix; the (ip, port) endpoint that sorts lower goes first.
    """
    a = (ipaddress.ip_address(src_ip).packed, sport)
    b = (ipaddress.ip_address(dst_ip).packed, dport)
    (ip1, p1), (ip2, p2) = (a, b) if a <= b else (b, a)
    data = struct.pack(">H", seed) + ip1 + ip2 + struct.pack(">BBHH", proto, 0, p1, p2)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")
