"""Compare sniffd's records with httpgen's ground truth, transaction by transaction.

A transaction is identified by client address, client port and trans_depth
(its position on the connection).  Every ground-truth transaction must have
exactly one record whose fields equal what the client saw, and there must be
no other record.  The fields compared are the ones the client's ground truth
fixes (the same projection as tests/live/test_read_loopback.py): addresses and
ports, trans_depth, method, URI, version, Host, request body length, status,
reason, response body length, interim (1xx) statuses, missed_bytes = 0 and no
anomaly (the corpus is a clean capture).

If the kernel gave a client port to two connections, the records and the
truth sharing that key are paired in time order.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
import sys
from datetime import datetime, timezone
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))
from tests.httpgen import record_fields, truth_fields  # noqa: E402


def _ts_seconds(ts: object) -> float:
    try:
        return datetime.strptime(str(ts), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return 0.0


# The projection is the live tests' (tests/httpgen.py), so the bench checks
# exactly what they check.
expected = truth_fields
actual = record_fields


def diff(exp: object, act: object, prefix: str = "") -> list[str]:
    """'field: expected X, got Y' for every leaf that differs."""
    if isinstance(exp, dict) and isinstance(act, dict):
        out = []
        for k in exp:
            out += diff(exp[k], act.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    if exp != act:
        return [f"{prefix}: expected {exp!r}, got {act!r}"]
    return []


@dataclass
class Verdict:
    truth: int = 0
    records: int = 0
    exact: int = 0
    missing: list[dict] = field(default_factory=list)  # truth rows with no record
    extra: list[dict] = field(default_factory=list)  # records with no truth row
    differing: list[dict] = field(default_factory=list)  # {"key", "label", "diffs", "record"}
    unparsable_lines: int = 0

    @property
    def ok(self) -> bool:
        return self.exact == self.truth == self.records and not (self.missing or self.extra or self.differing or self.unparsable_lines)

    def summary(self) -> str:
        word = "PASS" if self.ok else "FAIL"
        return (f"{word}: {self.exact}/{self.truth} ground-truth transactions exact, {len(self.differing)} differing, "
                f"{len(self.missing)} missing, {len(self.extra)} extra records ({self.records} records)"
                + (f", {self.unparsable_lines} unparsable lines" if self.unparsable_lines else ""))

    def details(self, limit: int = 20) -> list[str]:
        lines = []
        for d in self.differing[:limit]:
            lines.append(f"  differs  {d['key']} [{d['label']}]: " + "; ".join(d["diffs"]))
        for t in self.missing[:limit]:
            lines.append(f"  missing  client port {t['client_port']} depth {t['trans_depth']} [{t['label']}]: "
                         f"{t['method']} {t['uri']} -> {t['status']}, req body {t['request_body_len']}, resp body {t['response_body_len']}, "
                         f"interim {t['interim']}")
        for r in self.extra[:limit]:
            lines.append(f"  extra    client port {(r.get('client') or {}).get('port')} depth {r.get('trans_depth')}: "
                         + json.dumps(actual(r), separators=(",", ":")))
        hidden = max(0, len(self.differing) - limit) + max(0, len(self.missing) - limit) + max(0, len(self.extra) - limit)
        if hidden:
            lines.append(f"  ... and {hidden} more (see the mismatches file)")
        return lines

    def to_json(self) -> dict:
        return {"ok": self.ok, "truth": self.truth, "records": self.records, "exact": self.exact,
                "differing": self.differing, "missing": self.missing, "extra": self.extra,
                "unparsable_lines": self.unparsable_lines}


def read_records(path) -> tuple[list[dict], int]:
    """The records of a JSON Lines file, and how many lines did not parse."""
    records, bad = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                bad += 1
    return records, bad


def verify(truth: list[dict], records_path: str, copies: int = 1) -> Verdict:
    """``copies`` > 1: the capture was replayed that many times with other IP addresses each time
    (``tcpreplay --loop N --unique-ip``), so each transaction must appear that often, and addresses
    are not compared."""
    truth = truth * copies
    ignore_ips = copies > 1
    v = Verdict(truth=len(truth))
    records, v.unparsable_lines = read_records(records_path)
    v.records = len(records)
    want: dict[tuple, list[dict]] = defaultdict(list)
    for t in truth:
        want[(None if ignore_ips else t["client_ip"], t["client_port"], t["trans_depth"])].append(t)
    got: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        c = r.get("client") or {}
        got[(None if ignore_ips else c.get("ip"), c.get("port"), r.get("trans_depth"))].append(r)
    for key, rows in want.items():
        rows.sort(key=lambda t: t["t_request_s"])
        recs = sorted(got.pop(key, []), key=lambda r: _ts_seconds(r.get("ts")))
        for i, t in enumerate(rows):
            if i >= len(recs):
                v.missing.append(t)
                continue
            exp, act = expected(t), actual(recs[i])
            if ignore_ips:
                for side in ("client", "server"):
                    exp[side] = {**exp[side], "ip": None}
                    act[side] = {**(act[side] or {}), "ip": None}
            d = diff(exp, act)
            if d:
                v.differing.append({"key": f"client port {key[1]} depth {key[2]}", "label": t["label"], "diffs": d, "record": recs[i]})
            else:
                v.exact += 1
        v.extra += recs[len(rows):]
    for recs in got.values():
        v.extra += recs
    return v
