"""sniffd's benchmark: speed of `sniffd read` on a real ~200 MB capture, against tcpflow and tshark.

    .venv/bin/python bench/run.py              # as root; makes the corpus the first time

Steps (see bench/README.md):

1. Installs tcpflow, tshark, tcpdump, ethtool, iproute2 and time with apt-get
   when one is missing (said on stderr).
2. Makes bench/out/corpus.pcap + truth.json with bench/make_corpus.py if they
   are absent, were made from another seed, or --regen is given.
3. Reads the pcap once so every command starts from the page cache, counts
   its packets itself (bench/pcapinfo.py), then times, each --repeat times,
   with outputs going to /dev/shm (so the disk is not measured):
   ``sniffd read corpus.pcap -o out.jsonl`` (one process, and with
   ``--workers N`` for each N of --workers above 1, when sniffd has that
   option), ``tcpflow -r corpus.pcap -o DIR`` (TCP reassembly into files),
   ``tshark -r corpus.pcap -Y http -T fields ...`` (reassembly plus HTTP
   dissection, one line per HTTP message) and ``tshark -z http,tree`` (the
   same dissection into a statistics tap).  Wall time is the median run;
   peak RSS is the larger of ru_maxrss (via /usr/bin/time) and the sampled
   sum over the process tree.  CPU time used by other processes meanwhile is
   measured too, and the report warns when the machine was not idle.
4. Checks every sniffd output against the ground truth (bench/verify.py):
   every transaction exactly once with the exact fields, no other record.
   Then, untimed, makes damaged copies of the corpus with bench/transform.py
   (by default one shuffled in windows of 1-6 packets per direction with 5%
   of data packets duplicated and 2% re-sent cut at other offsets, and one
   with 1% of data packets dropped; issue 10), runs ``sniffd read`` on each
   and checks it with bench/damage.py: the first must be exact throughout;
   on the second no transaction may be mispaired, every damaged one must be
   flagged and every other one exact.
5. Issue 12's short-TLS check (--tls N, default 10,000; 0 skips it): makes
   bench/out/tls-N.pcap with bench/tls_corpus.py (N copies of the real
   handshakes of captures/tls/loopback_handshakes.pcap, 13 packets each) if
   absent, times ``sniffd read`` on it, each run right after one of the HTTP
   corpus's one-process runs (so both see the same machine), and checks each
   TLS record against what the generator knows of its copy (the source
   connection's answer key, captures/tls/loopback_handshakes.json, and the
   payload bytes each way).  Target: no fewer packets/s than on the HTTP corpus.
6. Prints the figures, ratios, a summary table and the issue's targets, and
   writes bench/out/results.json; with --live, then runs bench/live.py.

Exit status: 0 when every sniffd output is exact (on the damaged copies:
meets the targets above), 1 when one is not or sniffd fails (a sniffd bug:
the mismatching transactions are printed), 2 when the bench itself could not
run.  --strict also fails (3) when a speed or memory target is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from machine import machine_busy_s  # noqa: E402
from pcapinfo import pcap_info  # noqa: E402
from verify import verify  # noqa: E402

import damage  # noqa: E402
import tls_corpus  # noqa: E402
import transform  # noqa: E402

# The targets for `sniffd read` on this corpus.
TARGET_PPS = 200_000
TARGET_VS_TCPFLOW = 1.0
TARGET_VS_TSHARK = 5.0
TARGET_RSS_BYTES = 100_000_000
TARGET_WORKERS2_SPEEDUP = 1.6

# Peak RSS of a process tree is sampled this often (ru_maxrss covers only the
# largest single process, and `--workers` may run several at once).  Slow
# enough to cost nothing next to the process measured.
RSS_SAMPLE_S = 0.05

# Upper bound for one measured run: tshark needs ~10 s here, sniffd a few.
RUN_TIMEOUT_S = 300.0

# Debian package for each program the bench runs.
PACKAGES = {"tcpflow": "tcpflow", "tshark": "tshark", "tcpdump": "tcpdump", "ethtool": "ethtool", "ip": "iproute2",
            "/usr/bin/time": "time"}

MB = 1_000_000  # MB and MB/s are 10^6 bytes throughout

# CPUs kept busy by other processes during a timed run, above which the
# report warns that wall-clock rates are depressed (this machine is shared).
OTHER_CPU_WARN = 0.25

# The damaged copies checked after the timed runs (issue 10): variants
# separated by ";", each a bench/transform.py --transforms list.
DEFAULT_TRANSFORMS = "shuffle,duplicate,resegment;loss"

# Output of the timed commands: tcpflow writes one file per direction of
# every connection (~190 MB), sniffd ~15 MB, tshark ~2 MB.
SCRATCH_NEEDED_BYTES = 400 * MB


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --- setup -------------------------------------------------------------------


def ensure_tools(programs: list[str]) -> None:
    missing = sorted({PACKAGES[p] for p in programs if shutil.which(p) is None})
    if not missing:
        return
    say(f"installing missing packages with apt-get: {' '.join(missing)}")
    if os.geteuid() != 0:
        raise SystemExit(f"bench: need {' '.join(missing)}; run as root or: apt-get install -y {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], env=env, check=False, stdout=sys.stderr)
    proc = subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env, stdout=sys.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"bench: apt-get install {' '.join(missing)} failed (exit {proc.returncode})")


def sniffd_exe() -> str:
    venv = Path(sys.executable).parent / "sniffd"
    if venv.exists():
        return str(venv)
    found = shutil.which("sniffd")
    if found is None:
        raise SystemExit("bench: no sniffd executable next to this python or on PATH: run scripts/install")
    return found


def sniffd_read_has_workers(exe: str) -> bool:
    help_text = subprocess.run([exe, "read", "--help"], capture_output=True, text=True, timeout=60).stdout
    return "--workers" in help_text


def ensure_corpus(out_dir: Path, seed: int, regen: bool) -> dict:
    meta_path = out_dir / "corpus.json"
    have = all((out_dir / n).exists() for n in ("corpus.pcap", "truth.json", "corpus.json"))
    reason = None
    if regen:
        reason = "--regen"
    elif not have:
        reason = "no corpus yet"
    else:
        meta = json.loads(meta_path.read_text())
        if meta.get("seed") != seed:
            reason = f"corpus was made with seed {meta.get('seed')}, asked for {seed}"
    if reason:
        say(f"making the corpus ({reason}): bench/make_corpus.py --seed {seed}")
        ensure_tools(["tcpdump", "ethtool", "ip"])
        proc = subprocess.run([sys.executable, str(BENCH_DIR / "make_corpus.py"), "--seed", str(seed), "--out-dir", str(out_dir)])
        if proc.returncode != 0:
            raise SystemExit(f"bench: making the corpus failed (exit {proc.returncode})")
    return json.loads(meta_path.read_text())


def warm_page_cache(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


# --- measuring -----------------------------------------------------------------


def _tree_rss_bytes(pid: int, include_root: bool = True) -> int:
    """Sum of VmRSS over ``pid``'s descendants, and ``pid`` itself if ``include_root`` (0 if gone)."""
    total = 0
    stack = [(pid, include_root)]
    while stack:
        p, count = stack.pop()
        try:
            if count:
                with open(f"/proc/{p}/status", encoding="ascii") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
                            break
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children", encoding="ascii") as f:
                    stack += [(int(c), True) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


@dataclass
class Run:
    wall_s: float
    maxrss_bytes: int  # ru_maxrss: the largest single process of the tree
    tree_rss_bytes: int  # sampled peak of the sum over the tree
    returncode: int
    stderr: str
    cpu_s: float = 0.0  # user + system, the command and its children
    other_cpu_s: float = 0.0  # CPU time the whole machine spent on anything else meanwhile

    @property
    def peak_rss_bytes(self) -> int:
        return max(self.maxrss_bytes, self.tree_rss_bytes)


def measure(argv: list[str], stdout_path: str | None = None) -> Run:
    """Run ``argv`` once: wall time, ru_maxrss, sampled tree RSS, exit status, stderr.

    The command runs under /usr/bin/time, which reports its child's
    ru_maxrss (wait4).  Not measured from here: Linux carries the parent's
    RSS high-water mark across fork and exec into the child's ru_maxrss, and
    this process has read the pcap and holds the ground truth (hundreds of
    MB at its peak), so every child of
    it would seem to use that much.  /usr/bin/time is a small C program.
    """
    stdout = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    err = tempfile.TemporaryFile()
    time_out = tempfile.NamedTemporaryFile(prefix="bench-time-", suffix=".txt", delete=False)
    time_out.close()
    try:
        # Dirty pages of the previous command (tcpflow writes ~190 MB) would
        # otherwise be written back during this one.
        os.sync()
        busy0 = machine_busy_s()
        t0 = time.perf_counter()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M %x %U %S", "-o", time_out.name, *argv], stdout=stdout, stderr=err, cwd=REPO_ROOT)
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(RSS_SAMPLE_S):
                peak[0] = max(peak[0], _tree_rss_bytes(proc.pid, include_root=False))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            proc.wait(RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        wall = time.perf_counter() - t0
        busy = machine_busy_s() - busy0
        done.set()
        sampler.join()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
        words = Path(time_out.name).read_text().split()
        # "Command exited with non-zero status N" may precede the format line.
        if len(words) >= 4:
            maxrss_kib, status, cpu_s = int(words[-4]), int(words[-3]), float(words[-2]) + float(words[-1])
        else:
            maxrss_kib, status, cpu_s = 0, proc.returncode or -1, 0.0
        return Run(wall, maxrss_kib * 1024, peak[0], status, stderr, cpu_s, max(0.0, busy - cpu_s))
    finally:
        err.close()
        os.unlink(time_out.name)
        if stdout_path:
            stdout.close()


@dataclass
class Result:
    name: str
    argv: list[str]
    runs: list[Run] = field(default_factory=list)
    items: int = 0  # records (sniffd), flow files (tcpflow), HTTP message lines (tshark)
    item_name: str = "records"
    note: str = ""
    verdict: object = None

    @property
    def wall_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def peak_rss_bytes(self) -> int:
        return max(r.peak_rss_bytes for r in self.runs)

    @property
    def cpu_s(self) -> float:
        return statistics.median(r.cpu_s for r in self.runs)

    def rates(self, packets: int, nbytes: int) -> dict:
        w = self.wall_s
        return {"pps": packets / w, "mbps": nbytes / MB / w, "items_per_s": self.items / w}


def run_repeated(name: str, argv: list[str], repeat: int, *, stdout_path: str | None = None, before=None) -> Result:
    res = Result(name, argv)
    for i in range(repeat):
        if before:
            before()
        say(f"{name}: run {i + 1}/{repeat}: {' '.join(argv)}")
        r = measure(argv, stdout_path)
        if r.returncode != 0:
            raise RuntimeError(f"{name} exited {r.returncode}:\n{r.stderr[-3000:]}")
        res.runs.append(r)
    return res


def run_alternating(jobs: list[tuple[str, list[str]]], repeat: int) -> list[Result]:
    """``run_repeated`` for several commands taking turns (A B A B ...), so
    that a machine busier at one moment slows each of them alike."""
    results = [Result(name, argv) for name, argv in jobs]
    for i in range(repeat):
        for res in results:
            say(f"{res.name}: run {i + 1}/{repeat}: {' '.join(res.argv)}")
            r = measure(res.argv)
            if r.returncode != 0:
                raise RuntimeError(f"{res.name} exited {r.returncode}:\n{r.stderr[-3000:]}")
            res.runs.append(r)
    return results


# --- report --------------------------------------------------------------------

TLS_RUN = "sniffd read (short TLS)"


# A record's connection id: drawn at random by every run and every worker
# (README, "uid"), so two outputs can only agree on which records share one.
_UID = re.compile(rb'"uid":"C[0-9A-Za-z]{17}"')


def same_lines(a: Path, b: Path) -> int | None:
    """None when the two files are equal but for the values of their uids
    (each uid numbered by its first appearance in its own file: equal files
    group their records into connections alike), else the first line number
    where they differ."""
    names_a: dict[bytes, bytes] = {}
    names_b: dict[bytes, bytes] = {}

    def numbered(line: bytes | None, names: dict[bytes, bytes]) -> bytes | None:
        if line is None:
            return None
        return _UID.sub(lambda m: names.setdefault(m.group(0), b'"uid":"#%d"' % len(names)), line)

    with open(a, "rb") as fa, open(b, "rb") as fb:
        for no, (la, lb) in enumerate(itertools.zip_longest(fa, fb), 1):
            if numbered(la, names_a) != numbered(lb, names_b):
                return no
    return None


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    ap.add_argument("--regen", action="store_true", help="make the corpus again even if one exists")
    ap.add_argument("--out-dir", type=Path, default=BENCH_DIR / "out")
    ap.add_argument("--workers", default="2", help="comma-separated `sniffd read --workers` values to time besides the one-process run "
                                                   "(default 2; 1 = only the one-process run)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each command; the median is reported (default 3)")
    ap.add_argument("--scratch", type=Path, default=None,
                    help="where the commands write their output while timed (default: a new directory in /dev/shm, so the "
                         "disk is not what is measured; give a directory on disk to include it)")
    ap.add_argument("--sniffd", default=None, help="sniffd executable to time (default: the one next to this python)")
    ap.add_argument("--no-compare", action="store_true", help="skip tcpflow and tshark")
    ap.add_argument("--transforms", default=DEFAULT_TRANSFORMS,
                    help="damaged copies to check after the timed runs, ';'-separated bench/transform.py --transforms lists "
                         f"(default {DEFAULT_TRANSFORMS!r}: the issue's reordered copy and its 1%% loss copy)")
    ap.add_argument("--no-transforms", action="store_true", help="check only the clean corpus")
    ap.add_argument("--transform-seed", type=int, default=1, help="seed of the damaged copies (default 1)")
    ap.add_argument("--tls", type=int, default=10_000, metavar="N",
                    help="time `sniffd read` on N short TLS connections (bench/tls_corpus.py) beside the HTTP corpus "
                         "(issue 12: no fewer packets/s); 0 skips it (default 10000)")
    ap.add_argument("--live", action="store_true", help="also run bench/live.py (tcpreplay through a veth into `sniffd run`)")
    ap.add_argument("--strict", action="store_true", help="exit 3 when a speed or memory target is missed")
    args = ap.parse_args(argv)
    t_start = time.monotonic()
    try:
        variants = [] if args.no_transforms else [transform.parse_transforms(v) for v in args.transforms.split(";") if v.strip()]
    except ValueError as e:
        ap.error(f"--transforms: {e}")

    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        worker_counts = sorted({int(w) for w in args.workers.split(",") if w.strip()} - {1})
    except ValueError:
        ap.error(f"--workers: expected comma-separated integers, got {args.workers!r}")
    ensure_tools(["/usr/bin/time"] + ([] if args.no_compare else ["tcpflow", "tshark"]))
    meta = ensure_corpus(out_dir, args.seed, args.regen)
    pcap = out_dir / "corpus.pcap"
    truth = json.loads((out_dir / "truth.json").read_text())
    say("counting packets and warming the page cache")
    warm_page_cache(pcap)
    info = pcap_info(str(pcap))
    exe = args.sniffd or sniffd_exe()
    args.tls_corpus = None
    if args.tls > 0:
        args.tls_corpus = ensure_tls_corpus(out_dir, args.tls)
        warm_page_cache(args.tls_corpus[0])

    scratch = make_scratch(args.scratch)
    try:
        return bench(args, out_dir, scratch, meta, pcap, truth, info, exe, worker_counts, variants, t_start)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def make_scratch(where: Path | None) -> Path:
    if where is not None:
        where.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="sniffd-bench-", dir=where))
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 2 * SCRATCH_NEEDED_BYTES:
        return Path(tempfile.mkdtemp(prefix="sniffd-bench-", dir=shm))
    say("no room in /dev/shm: the timed commands write to bench/out (disk speed is included)")
    return Path(tempfile.mkdtemp(prefix="scratch-", dir=BENCH_DIR / "out"))


def git_state() -> str:
    """Commit and whether the work tree differs from it: the sniffd code that was measured."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sniffd"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{head}{' + uncommitted changes in sniffd/' if dirty else ''}" if head else "unknown"


@dataclass
class Copy:
    """One damaged copy of the corpus, sniffd's records for it and the verdict."""

    transforms: list[str]
    label: str  # "on shuffled+dup+reseg copy", "with 1% loss"
    slug: str
    sidecar: dict
    verdict: damage.DamageVerdict
    stats: str


def copy_label(transforms: list[str], loss_rate: float) -> tuple[str, str]:
    """("on shuffled+dup+reseg copy" / "with 1% loss" / "on shuffled copy with 1% loss", file name part)."""
    short = {"shuffle": "shuffled", "duplicate": "dup", "resegment": "reseg"}
    words = [short[t] for t in transforms if t in short]
    loss = f"{loss_rate * 100:g}% loss" if "loss" in transforms else ""
    label = (f"on {'+'.join(words)} copy" + (f" with {loss}" if loss else "")) if words else f"with {loss}"
    return label, "+".join(transforms)


def check_copies(variants: list[list[str]], seed: int, out_dir: Path, scratch: Path, pcap: Path, truth: list[dict], exe: str) -> list[Copy]:
    """Make each damaged copy (in scratch, deleted after), run `sniffd read` on it (untimed), judge the records."""
    say("damaged copies: framing the clean corpus's streams with httpgen's reader (bench/damage.py)")
    ref = damage.Reference(truth, pcap)
    copies = []
    for transforms in variants:
        params = transform.Params(seed=seed)
        label, slug = copy_label(transforms, params.loss_rate)
        copy_pcap = scratch / f"copy-{slug}.pcap"
        sidecar_path = out_dir / f"transform-{slug}.json"
        say(f"damaged copy {label}: bench/transform.py {pcap} {copy_pcap} --transforms {','.join(transforms)} --seed {seed}")
        side = transform.transform_file(pcap, copy_pcap, transforms, params, sidecar_path)
        records_path = out_dir / f"records-{slug}.jsonl"
        say(f"damaged copy {label}: sniffd read")
        proc = subprocess.run([exe, "read", str(copy_pcap), "-o", str(records_path), "--stats"], capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S, cwd=REPO_ROOT)
        copy_pcap.unlink()
        if proc.returncode != 0:
            raise SniffdFailed(f"sniffd read {label} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        records, bad = damage.read_records(records_path)
        verdict = damage.check(ref, side, records, bad)
        (out_dir / f"mismatches-{slug}.json").write_text(json.dumps(verdict.to_json(), indent=1) + "\n")
        stats = next((line for line in reversed(proc.stderr.splitlines()) if line.startswith("{")), "")
        copies.append(Copy(transforms, label, slug, side, verdict, stats))
    return copies


def ensure_tls_corpus(out_dir: Path, connections: int) -> tuple[Path, dict]:
    """bench/out/tls-N.pcap and what the generator knew of it, made again
    when absent or when the source capture changed."""
    pcap, truth_path = out_dir / f"tls-{connections}.pcap", out_dir / f"tls-{connections}.json"
    source_sha = hashlib.sha256(tls_corpus.SOURCE.read_bytes()).hexdigest()
    if pcap.exists() and truth_path.exists():
        truth = json.loads(truth_path.read_text())
        if truth.get("source_sha256") == source_sha and truth.get("connections") == connections:
            return pcap, truth
    say(f"making the short-TLS corpus: bench/tls_corpus.py --connections {connections}")
    tls_corpus.build(connections, pcap, truth_path)
    return pcap, json.loads(truth_path.read_text())


# The answer key's fields checked on every TLS record (all of them but "name").
TLS_KEY = json.loads((REPO_ROOT / "captures" / "tls" / "loopback_handshakes.json").read_text())["connections"]


def verify_tls(truth: dict, records_path: Path) -> tuple[bool, str, list[str]]:
    """Each copy exactly one record of kind "tls", equal to its source
    connection's answer key, established, no anomaly, and the copy's payload
    bytes each way; no other record."""
    want = {(ip, port): (src, cb, sb) for ip, port, src, cb, sb in truth["copies"]}
    seen: set = set()
    problems: list[str] = []
    exact = 0
    with open(records_path, "rb") as f:
        for n, line in enumerate(f, 1):
            rec = json.loads(line)
            key = (rec.get("client", {}).get("ip"), rec.get("client", {}).get("port"))
            if rec.get("kind") != "tls" or key not in want or key in seen:
                problems.append(f"line {n}: not one of the copies' records (kind {rec.get('kind')!r}, client {key})")
                continue
            seen.add(key)
            src, cb, sb = want[key]
            tls = rec["tls"]
            expect = {k: v for k, v in TLS_KEY[str(src)].items() if k != "name"}
            got = {k: tls.get(k) for k in expect}
            wrong = [k for k in expect if got[k] != expect[k]]
            if not tls.get("established"):
                wrong.append("established")
            if rec.get("anomalies"):
                wrong.append(f"anomalies {rec['anomalies']}")
            if (tls.get("client_bytes"), tls.get("server_bytes")) != (cb, sb):
                wrong.append(f"bytes {tls.get('client_bytes')}/{tls.get('server_bytes')} (copy: {cb}/{sb})")
            if wrong:
                problems.append(f"line {n}: client {key[0]}:{key[1]} ({TLS_KEY[str(src)]['name']}): {', '.join(wrong)}")
            else:
                exact += 1
    missing = len(want) - len(seen)
    if missing:
        problems.append(f"{missing} cop{'y' if missing == 1 else 'ies'} without a record")
    ok = not problems
    return ok, f"{exact:,} of {len(want):,} TLS connections exact" + ("" if ok else f", {len(problems)} problem(s)"), problems


class SniffdFailed(RuntimeError):
    """sniffd exited non-zero on an input it must handle: a sniffd bug (exit 1), not a bench problem."""


def bench(args, out_dir: Path, scratch: Path, meta: dict, pcap: Path, truth: list[dict], info, exe: str,
          worker_counts: list[int], variants: list[list[str]], t_start: float) -> int:
    packets, nbytes = info.packets, info.file_bytes
    results: list[Result] = []
    failures: list[str] = []
    unsupported: dict[int, str] = {}

    tls_res: Result | None = None  # the short-TLS runs (--tls), taking turns with the one-process HTTP runs
    # sniffd: one process, then each --workers N.
    configs = [(1, [])]
    has_workers = sniffd_read_has_workers(exe) if worker_counts else False
    for n in worker_counts:
        if has_workers:
            configs.append((n, ["--workers", str(n)]))
        else:
            unsupported[n] = "not supported yet: `sniffd read --help` has no --workers option"
            say(f"sniffd read --workers {n}: {unsupported[n]}; skipped")
    for n, extra in configs:
        name = "sniffd read" if n == 1 else f"sniffd read --workers {n}"
        out = scratch / f"records-w{n}.jsonl"
        argv = [exe, "read", str(pcap), "-o", str(out), "--stats", *extra]
        try:
            if n == 1 and args.tls_corpus:
                tls_out = scratch / "records-tls.jsonl"
                res, tls_res = run_alternating(
                    [(name, argv), (TLS_RUN, [exe, "read", str(args.tls_corpus[0]), "-o", str(tls_out), "--stats"])], args.repeat)
                tls_out = Path(shutil.move(tls_out, out_dir / tls_out.name))
                ok, tls_res.note, problems = verify_tls(args.tls_corpus[1], tls_out)
                tls_res.verdict = ok
                tls_res.items = args.tls_corpus[1]["connections"]
                tls_res.item_name = "TLS records"
                if not ok:
                    failures.append(TLS_RUN)
                    (out_dir / "mismatches-tls.txt").write_text("\n".join(problems) + "\n")
            else:
                res = run_repeated(name, argv, args.repeat)
        except RuntimeError as e:
            # sniffd failing on a clean capture is a sniffd bug, not a bench problem.
            print(f"bench: FAIL: {e}")
            return 1
        out = Path(shutil.move(out, out_dir / out.name))  # kept for inspection
        stats_line = next((line for line in reversed(res.runs[-1].stderr.splitlines()) if line.startswith("{")), "")
        res.note = stats_line
        res.verdict = verify(truth, str(out))
        res.items = res.verdict.records
        (out_dir / f"mismatches-w{n}.json").write_text(json.dumps(res.verdict.to_json(), indent=1) + "\n")
        if not res.verdict.ok:
            failures.append(name)
        results.append(res)

    # The tools sniffd is compared with.
    if not args.no_compare:
        flow_dir = scratch / "tcpflow"

        def fresh_flow_dir() -> None:
            shutil.rmtree(flow_dir, ignore_errors=True)
            flow_dir.mkdir()

        res = run_repeated("tcpflow", ["tcpflow", "-r", str(pcap), "-o", str(flow_dir)], args.repeat, before=fresh_flow_dir)
        res.items = sum(1 for n in os.listdir(flow_dir) if n != "report.xml")
        res.item_name = "flow files"
        shutil.rmtree(flow_dir, ignore_errors=True)
        results.append(res)

        tshark_out = scratch / "tshark.txt"
        res = run_repeated("tshark", ["tshark", "-n", "-r", str(pcap), "-Y", "http", "-T", "fields",
                                      "-e", "tcp.stream", "-e", "http.request.method", "-e", "http.request.uri",
                                      "-e", "http.response.code", "-e", "http.content_length_header"],
                           args.repeat, stdout_path=str(tshark_out))
        with open(tshark_out, "rb") as f:
            res.items = sum(1 for _ in f)
        res.item_name = "HTTP lines"
        tshark_out.unlink()
        results.append(res)

        # The same dissection feeding a statistics tap instead of printing
        # fields: tshark builds no per-packet output, so it is faster.
        res = run_repeated("tshark -z http,tree", ["tshark", "-n", "-q", "-r", str(pcap), "-z", "http,tree"], args.repeat,
                           stdout_path=str(tshark_out))
        tree = tshark_out.read_text(errors="replace")
        m = re.search(r"^Total HTTP Packets\s+(\d+)", tree, re.M)
        res.items = int(m.group(1)) if m else 0
        res.item_name = "HTTP packets"
        tshark_out.unlink()
        results.append(res)

    # Damaged copies (issue 10), after everything timed.
    copies: list[Copy] = []
    if variants:
        try:
            copies = check_copies(variants, args.transform_seed, out_dir, scratch, pcap, truth, exe)
        except SniffdFailed as e:
            print(f"bench: FAIL: {e}")
            return 1
        except damage.InstrumentError as e:
            raise RuntimeError(f"damaged copies: {e}") from e
        failures += [f"sniffd read {c.label}" for c in copies if not c.verdict.ok]

    # --- print -----------------------------------------------------------------
    by_name = {r.name: r for r in results}
    base = by_name["sniffd read"]
    base_pps = base.rates(packets, nbytes)["pps"]
    print()
    print(f"corpus: {pcap} ({nbytes / MB:.1f} MB, {packets:,} packets, {len(truth):,} transactions, "
          f"{meta['connections']:,} connections, seed {meta['seed']}, plan {meta['plan_digest'][:12]}, "
          f"largest frame {info.max_caplen} bytes)")
    print(f"timing: median of {args.repeat} run(s) each, pcap in page cache, outputs written to {scratch.parent}, "
          f"wall clock incl. process start; MB = 10^6 bytes; {os.cpu_count()} CPUs, kernel {os.uname().release}; "
          f"sniffd at {git_state()}")
    print()
    busiest = max((x for r in results for x in r.runs), key=lambda x: x.other_cpu_s / x.wall_s)
    if busiest.other_cpu_s / busiest.wall_s > OTHER_CPU_WARN:
        print(f"WARNING: other processes used the CPUs during the timed runs (up to {busiest.other_cpu_s / busiest.wall_s:.2f} "
              f"of {os.cpu_count()} CPUs busy with something else): wall-clock rates are lower than on an idle machine; "
              f"the cpu s column is less affected")
        print()
    for r in results:
        rt = r.rates(packets, nbytes)
        walls = ", ".join(f"{x.wall_s:.2f}" for x in r.runs)
        print(f"{r.name}: {rt['pps']:,.0f} packets/s, {rt['mbps']:.1f} MB/s, {rt['items_per_s']:,.0f} {r.item_name}/s "
              f"({r.items:,} {r.item_name}), peak RSS {r.peak_rss_bytes / MB:.1f} MB, wall {r.wall_s:.2f} s (runs: {walls}), "
              f"cpu {r.cpu_s:.2f} s")
    for n, why in unsupported.items():
        print(f"sniffd read --workers {n}: {why}")
    ratios = {}
    if "tcpflow" in by_name:
        ratios["tcpflow"] = base_pps / by_name["tcpflow"].rates(packets, nbytes)["pps"]
        ratios["tshark"] = base_pps / by_name["tshark"].rates(packets, nbytes)["pps"]
        ratios["tshark -z http,tree"] = base_pps / by_name["tshark -z http,tree"].rates(packets, nbytes)["pps"]
        print(f"ratios (packets/s): sniffd/tcpflow {ratios['tcpflow']:.2f}x, sniffd/tshark {ratios['tshark']:.2f}x "
              f"(sniffd/tshark -z http,tree {ratios['tshark -z http,tree']:.2f}x)")
    speedups = {}
    for n, _ in configs[1:]:
        r = by_name[f"sniffd read --workers {n}"]
        speedups[n] = r.rates(packets, nbytes)["pps"] / base_pps
        print(f"speedup sniffd read --workers {n} vs one process: {speedups[n]:.2f}x")
    print()
    for r in results:
        if r.verdict is not None:
            print(f"correctness of {r.name}: {r.verdict.summary()}")
            for line in r.verdict.details():
                print(line)
            if not r.verdict.ok:
                print(f"  full list: {out_dir}/mismatches-w{1 if r.name == 'sniffd read' else r.name.split()[-1]}.json")
    # --workers promises the very output of one process, in the same order
    # (the corpus carries no credentials, so no per-run redaction token
    # can differ between the runs).
    for n, _ in configs[1:]:
        same = same_lines(out_dir / "records-w1.jsonl", out_dir / f"records-w{n}.jsonl")
        if same is None:
            print(f"sniffd read --workers {n} output: identical to one process's, byte for byte")
        else:
            print(f"sniffd read --workers {n} output: DIFFERS from one process's at line {same}")
            failures.append(f"sniffd read --workers {n} (output order)")
    if base.note:
        print(f"sniffd read --stats: {base.note}")
    tls_line = None
    if tls_res is not None:
        tls_pcap, tls_truth = args.tls_corpus
        tls_packets = tls_truth["packets"]
        trt = tls_res.rates(tls_packets, tls_pcap.stat().st_size)
        tls_cpu_pps = tls_packets / tls_res.cpu_s if tls_res.cpu_s else 0.0
        base_cpu_pps = packets / base.cpu_s if base.cpu_s else 0.0
        pairs = ", ".join(f"{h.wall_s:.2f}/{t.wall_s:.2f}" for h, t in zip(base.runs, tls_res.runs))
        print()
        print(f"{TLS_RUN}: {tls_pcap} ({tls_truth['connections']:,} connections, {tls_packets:,} packets, "
              f"{tls_packets / tls_truth['connections']:.0f} a connection): {trt['pps']:,.0f} packets/s, "
              f"{tls_cpu_pps:,.0f} packets/cpu-s, wall {tls_res.wall_s:.2f} s, cpu {tls_res.cpu_s:.2f} s, "
              f"peak RSS {tls_res.peak_rss_bytes / MB:.1f} MB")
        print(f"  against the HTTP corpus, one process, in turns (wall s HTTP/TLS: {pairs}): "
              f"{base_pps:,.0f} packets/s, {base_cpu_pps:,.0f} packets/cpu-s; TLS ÷ HTTP {trt['pps'] / base_pps:.2f}x "
              f"(per cpu-s {tls_cpu_pps / base_cpu_pps if base_cpu_pps else 0:.2f}x)")
        # This machine is shared: a run slowed by a busy neighbour is slow
        # for reasons of its own; each command's fastest run is the least disturbed.
        best_tls = tls_packets / min(x.wall_s for x in tls_res.runs)
        best_http = packets / min(x.wall_s for x in base.runs)
        print(f"  fastest run of each: TLS {best_tls:,.0f} packets/s, HTTP {best_http:,.0f} packets/s; TLS ÷ HTTP {best_tls / best_http:.2f}x")
        print(f"correctness of {TLS_RUN}: {tls_res.note}")
        if not tls_res.verdict:
            print(f"  full list: {out_dir}/mismatches-tls.txt")
        tls_line = (trt["pps"] >= base_pps,
                    (f"{trt['pps']:,.0f} vs {base_pps:,.0f} packets/s ({trt['pps'] / base_pps:.2f}x; per cpu-s "
                     f"{tls_cpu_pps:,.0f} vs {base_cpu_pps:,.0f})"))
    for c in copies:
        print(f"correctness {c.label}: {c.verdict.summary()}")
        for name, ok, value in c.verdict.targets():
            print(f"  {'met   ' if ok else 'MISSED'} {name:<40} {value}")
        for line in c.verdict.problems(limit=5):
            print(line)
        print(f"  full list: {out_dir}/mismatches-{c.slug}.json (copy made by bench/transform.py --transforms {','.join(c.transforms)} "
              f"--seed {c.sidecar['seed']}; what it did: {out_dir}/transform-{c.slug}.json)")
        print(f"  sniffd read --stats {c.label}: {c.stats}")

    # Summary table.
    print()
    hdr = f"| {'command':<26} | {'wall s':>7} | {'cpu s':>6} | {'packets/s':>10} | {'pkts/cpu-s':>10} | {'MB/s':>7} | {'items/s':>10} | {'items':>16} | {'peak RSS MB':>11} | {'sniffd(1) ÷ this':>16} |"
    print(hdr)
    print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
    for r in results:
        rt = r.rates(packets, nbytes)
        rel = base_pps / rt["pps"]
        print(f"| {r.name:<26} | {r.wall_s:>7.2f} | {r.cpu_s:>6.2f} | {fmt_int(rt['pps']):>10} | {fmt_int(packets / r.cpu_s if r.cpu_s else 0):>10} | {rt['mbps']:>7.1f} | {fmt_int(rt['items_per_s']):>10} | "
              f"{f'{r.items:,} ' + r.item_name.split()[-1]:>16} | {r.peak_rss_bytes / MB:>11.1f} | {rel:>15.2f}x |")
    for n, why in unsupported.items():
        print(f"| {f'sniffd read --workers {n}':<26} | {'n/a':>7} | {'n/a':>6} | {'n/a':>10} | {'n/a':>10} | {'n/a':>7} | {'n/a':>10} | {'':>16} | {'n/a':>11} | {'':>16} |")

    # Targets.
    targets = [
        ("sniffd read >= 200k packets/s", base_pps >= TARGET_PPS, f"{base_pps:,.0f} packets/s"),
        ("peak RSS < 100 MB", base.peak_rss_bytes < TARGET_RSS_BYTES, f"{base.peak_rss_bytes / MB:.1f} MB"),
        ("every transaction exact", base.verdict.ok, base.verdict.summary().split(":")[0]),
    ]
    if ratios:
        targets.insert(1, ("packets/s >= tcpflow's", ratios["tcpflow"] >= TARGET_VS_TCPFLOW, f"{ratios['tcpflow']:.2f}x"))
        targets.insert(2, ("packets/s >= 5x tshark's", ratios["tshark"] >= TARGET_VS_TSHARK,
                           f"{ratios['tshark']:.2f}x (-Y http -T fields); {ratios['tshark -z http,tree']:.2f}x (-z http,tree)"))
    for c in copies:
        for name, ok, value in c.verdict.targets():
            targets.append((f"{name} ({c.label.removeprefix('on ').removeprefix('with ')})", ok, value))
    if tls_line is not None:
        targets.append(("short TLS packets/s >= HTTP corpus's (issue 12)", *tls_line))
        targets.append(("every short TLS connection exact", tls_res.verdict, tls_res.note))
    if 2 in speedups:
        targets.append(("--workers 2 >= 1.6x one process", speedups[2] >= TARGET_WORKERS2_SPEEDUP, f"{speedups[2]:.2f}x"))
    elif 2 in unsupported:
        targets.append(("--workers 2 >= 1.6x one process", None, "not supported yet"))
    print()
    width = max(34, *(len(n) for n, _, _ in targets))
    print("targets (issue):")
    for name, ok, value in targets:
        word = "n/a   " if ok is None else ("met   " if ok else "MISSED")
        print(f"  {word} {name:<{width}} {value}")

    results_json = {
        "corpus": {**{k: v for k, v in meta.items() if k != "kinds"}, "packets_counted": packets, "pcap_bytes": nbytes},
        "repeat": args.repeat,
        "max_other_cpus_busy": busiest.other_cpu_s / busiest.wall_s,
        "runs": [{"name": r.name, "argv": r.argv, "wall_s": [x.wall_s for x in r.runs], "median_wall_s": r.wall_s,
                  "cpu_s": [x.cpu_s for x in r.runs], "other_cpu_s": [x.other_cpu_s for x in r.runs],
                  **r.rates(packets, nbytes), "items": r.items, "item_name": r.item_name,
                  "peak_rss_bytes": r.peak_rss_bytes, "ru_maxrss_bytes": max(x.maxrss_bytes for x in r.runs),
                  "exact": None if r.verdict is None else r.verdict.ok} for r in results],
        "unsupported": {f"--workers {n}": why for n, why in unsupported.items()},
        "ratios": ratios,
        "speedups": {str(n): s for n, s in speedups.items()},
        "targets": [{"target": n, "met": ok, "value": v} for n, ok, v in targets],
        "short_tls": None if tls_res is None else {
            "pcap": str(args.tls_corpus[0]), "connections": args.tls_corpus[1]["connections"], "packets": args.tls_corpus[1]["packets"],
            "argv": tls_res.argv, "wall_s": [x.wall_s for x in tls_res.runs], "median_wall_s": tls_res.wall_s,
            "cpu_s": [x.cpu_s for x in tls_res.runs], "other_cpu_s": [x.other_cpu_s for x in tls_res.runs],
            **tls_res.rates(args.tls_corpus[1]["packets"], args.tls_corpus[0].stat().st_size),
            "peak_rss_bytes": tls_res.peak_rss_bytes, "exact": tls_res.verdict, "summary": tls_res.note},
        "damaged_copies": [{"label": c.label, "transforms": c.transforms, "seed": c.sidecar["seed"], "ok": c.verdict.ok,
                            "summary": c.verdict.summary(), "counts": dict(c.verdict.counts), "damaged": c.verdict.damaged,
                            "after_loss": c.verdict.after_loss, "after_loss_exact": c.verdict.after_loss_exact,
                            "extra": len(c.verdict.extra), "sniffd_stats": c.stats} for c in copies],
    }
    (out_dir / "results.json").write_text(json.dumps(results_json, indent=1) + "\n")

    live_rc = 0
    if args.live:
        print(flush=True)
        live_rc = subprocess.run([sys.executable, str(BENCH_DIR / "live.py"), "--out-dir", str(out_dir),
                                  "--workers", ",".join(str(n) for n in [1, *worker_counts])]).returncode

    print()
    verdict = "FAIL" if failures else "PASS"
    print(f"bench: {verdict}: " + (f"records wrong (against the ground truth, or --workers against one process) for {', '.join(failures)}" if failures
                                   else f"every sniffd output exact ({len(truth):,} transactions)"
                                        + (", damaged copies meet their targets" if copies else ""))
          + f"; results in {out_dir}/results.json; bench took {time.monotonic() - t_start:.0f} s")
    if failures:
        return 1
    if live_rc:
        return live_rc
    if args.strict and any(ok is False for _, ok, _ in targets):
        return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        say(f"error: {e}")
        sys.exit(2)
