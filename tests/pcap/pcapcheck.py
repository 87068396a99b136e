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
import re
import socket
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


# The fields that say which run wrote a record rather than what was on the
# wire: ``uid`` (random per run) and ``sensor`` (the host name) vary from run
# to run, and ``interface`` is null for every ``sniffd read``.  Hand-written
# expected records leave them out; read_records checks their form and drops
# them (test_record_fields.py and tests/unit/test_records.py test their
# values, the suite-wide scan every record's schema).
RUN_FIELDS = ("uid", "sensor", "interface")
UID_FORM = re.compile(r"C[0-9A-Za-z]{17}")


def without_run_fields(records: list[dict], check_sensor: bool = True) -> list[dict]:
    """``records`` with RUN_FIELDS dropped, each checked first: a uid of the
    right form, the host name as sensor (unless not ``check_sensor``: a
    config may name another), interface null."""
    host = socket.gethostname()
    out = []
    for rec in records:
        rec = dict(rec)
        uid, sensor, interface = (rec.pop(k, "<absent>") for k in RUN_FIELDS)
        assert isinstance(uid, str) and UID_FORM.fullmatch(uid), f"bad uid {uid!r} in {rec}"
        assert isinstance(sensor, str) and (sensor == host or not check_sensor), f"sensor {sensor!r} in {rec}"
        assert interface is None, rec
        out.append(rec)
    return out


def read_records(pcap: Path, *extra: str, run_fields: bool = False) -> list[dict]:
    """``sniffd read PCAP -o OUT [extra...]``; asserts exit status 0 and returns
    OUT's records, without their RUN_FIELDS unless ``run_fields``."""
    out = pcap.with_name(pcap.name + ".out.jsonl")
    proc = run_sniffd("read", pcap, "-o", out, *extra)
    assert proc.returncode == 0, f"sniffd exited {proc.returncode}\nstderr:\n{proc.stderr}"
    assert out.exists(), f"sniffd wrote no output file\nstderr:\n{proc.stderr}"
    records = load_jsonl(out)
    if run_fields:
        return records
    return without_run_fields(records, check_sensor=not {"-c", "--config"} & set(map(str, extra)))


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
