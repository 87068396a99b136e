"""Fixtures for the transformed-capture tests (issue 10): one small real-kernel corpus per session.

The chain is made of parts that do not depend on sniffd: bench/make_corpus.py
(httpgen traffic over a veth between two network namespaces, captured by
tcpdump, with the client's ground truth), bench/transform.py (seeded damage
with a sidecar saying what was done), bench/damage.py (the expected outcome
from the truth, the clean capture, httpgen's own HTTP reader and the
sidecar).  Only the records under test come from sniffd, read by the
installed ``sniffd read`` in its own process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO_ROOT / "bench"
for _p in (str(REPO_ROOT), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import damage  # noqa: E402  (bench/damage.py)
import transform  # noqa: E402  (bench/transform.py)

# The corpus: every httpgen behaviour (keepalive, 3-deep pipelines with HEAD,
# 304/204/HEAD, 100-continue uploads, chunked and gzip, "large" bodies both
# ways) over 96 connections, 8 in flight, bodies up to 60 kB so a "large"
# body still spans ~40 segments.  ~740 transactions, ~8k packets, made in ~2 s.
CORPUS_SEED = 5
CORPUS_CONNECTIONS = 96
CORPUS_MAX_BODY_LEN = 60_000
CORPUS_KINDS = "keepalive,pipeline,bodiless,continue,chunked_gzip,pipeline,keepalive,bodiless,large,pipeline,bodiless,keepalive"

# make_corpus takes ~2 s here; a minute means something is stuck.
MAKE_CORPUS_TIMEOUT_S = 120.0

# `sniffd read` of a few MB takes well under a second.
SNIFFD_TIMEOUT_S = 60.0


@dataclass
class Corpus:
    pcap: Path
    truth: list[dict]
    meta: dict
    ref: damage.Reference


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """A fresh small corpus made by bench/make_corpus.py (skipped, with the reason, where it cannot be made)."""
    if os.geteuid() != 0:
        pytest.skip("making a real-kernel corpus needs root (network namespaces and packet capture)")
    for tool, package in (("tcpdump", "tcpdump"), ("ip", "iproute2"), ("ethtool", "ethtool")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install -y {package})")
    out = tmp_path_factory.mktemp("corpus")
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / "make_corpus.py"), "--seed", str(CORPUS_SEED), "--connections", str(CORPUS_CONNECTIONS),
         "--max-body-len", str(CORPUS_MAX_BODY_LEN), "--kinds", CORPUS_KINDS, "--out-dir", str(out)],
        capture_output=True, text=True, timeout=MAKE_CORPUS_TIMEOUT_S, cwd=REPO_ROOT,
    )
    if proc.returncode != 0 and ("Operation not permitted" in proc.stderr or "Cannot create namespace" in proc.stderr):
        pytest.skip(f"cannot build network namespaces here: {proc.stderr.strip()[-500:]}")
    assert 0 == proc.returncode, f"bench/make_corpus.py failed (not a sniffd result):\n{proc.stderr[-3000:]}"
    truth = json.loads((out / "truth.json").read_text())
    ref = damage.Reference(truth, out / "corpus.pcap")  # raises if httpgen's reader and the truth disagree
    return Corpus(out / "corpus.pcap", truth, json.loads((out / "corpus.json").read_text()), ref)


@pytest.fixture(scope="session")
def segment_spans(corpus: Corpus) -> dict[tuple[int, int], list[tuple[int, int, int]]]:
    """The corpus's data packets by connection and direction: ``(id(conn), direction) ->
    [(stream start, stream end, input index)]``, in stream order."""
    spans: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for index, (conn, p) in corpus.ref.by_index.items():
        if p.is_data:
            off = (p.seq - conn.base[p.direction]) % (1 << 32)
            spans.setdefault((id(conn), p.direction), []).append((off, off + p.payload_len, index))
    for items in spans.values():
        items.sort()
    return spans


@dataclass
class CopyRun:
    pcap: Path
    sidecar: dict
    records_path: Path
    verdict: damage.DamageVerdict
    stats: str

    def report(self) -> str:
        """What a failing assertion prints: the verdict, every missed target, the transactions behind it."""
        lines = [f"transforms {self.sidecar['transforms']} seed {self.sidecar['seed']}: {self.verdict.summary()}"]
        lines += [f"  {'met   ' if ok else 'MISSED'} {name}: {value}" for name, ok, value in self.verdict.targets()]
        lines += self.verdict.problems(limit=12)
        lines.append(f"sniffd --stats: {self.stats}")
        lines.append(f"files: {self.pcap}, {self.records_path}")
        return "\n".join(lines)


@pytest.fixture
def read_copy(corpus: Corpus, sniffd_exe: Path, tmp_path: Path):
    """``run(transforms, seed=1, **Params fields) -> CopyRun``: transform the corpus, `sniffd read` it, check the records."""

    def run(transforms: list[str], seed: int = 1, **params) -> CopyRun:
        name = "+".join(transforms) or "drop"
        pcap = tmp_path / f"{name}-{seed}.pcap"
        sidecar = transform.transform_file(corpus.pcap, pcap, transforms, transform.Params(seed=seed, **params))
        out = tmp_path / f"{name}-{seed}.jsonl"
        proc = subprocess.run([str(sniffd_exe), "read", str(pcap), "-o", str(out), "--stats"], capture_output=True, text=True,
                              timeout=SNIFFD_TIMEOUT_S)
        assert 0 == proc.returncode, f"sniffd read exited {proc.returncode} on {pcap}:\n{proc.stderr[-3000:]}"
        records, bad = damage.read_records(out)
        verdict = damage.check(corpus.ref, sidecar, records, bad)
        stats = next((line for line in reversed(proc.stderr.splitlines()) if line.startswith("{")), "")
        return CopyRun(pcap, sidecar, out, verdict, stats)

    return run
