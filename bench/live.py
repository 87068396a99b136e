"""Live benchmark: tcpreplay pushes the corpus through a veth into `sniffd run`, at rising rates.

    .venv/bin/python bench/live.py [--workers 1,2] [--rates 20000,40000,...]

For each worker count and each rate (packets/s, ascending), in two fresh
network namespaces joined by a veth pair (MTU 1500, offloads off, no IP
addresses, so neither kernel answers the replayed frames):

1. ``sniffd run -c CONFIG`` captures on one end (config written to
   bench/out/live/, stats every second, output to a file);
2. ``tcpreplay --pps RATE --loop N --unique-ip`` sends bench/out/corpus.pcap
   on the other end, N times over so every step lasts at least --min-seconds
   (a single pass at a high rate is shorter than what sniffd's kernel ring and
   queue absorb, which would hide a rate sniffd cannot sustain), with other IP
   addresses on each pass so every pass is new connections;
3. once sniffd's stats stop moving, SIGTERM; its "shutdown" log line gives
   the packets it handled and its kernel and queue drops.

dropped = sent (tcpreplay's successful packets) - packets sniffd handled.  A
rate is sustained when dropped < 0.1% of sent.  The ladder stops at the first
rate that is not, then bisects between the last good and the first bad rate.
Each run's records are also checked against the ground truth (every
transaction N times); at a sustained rate they should be exact.

Needs root, tcpreplay (installed with apt-get when missing) and a corpus
(bench/make_corpus.py, or bench/run.py makes one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from machine import machine_busy_s, tree_cpu_s  # noqa: E402
from netns import NetnsError, VethPair, remove_stale  # noqa: E402
from pcapinfo import pcap_info  # noqa: E402
from verify import verify  # noqa: E402

# The criterion: sustained means under 0.1% of packets dropped.
MAX_DROP_FRACTION = 0.001

DEFAULT_RATES = [20_000, 40_000, 60_000, 80_000, 100_000, 125_000, 150_000, 200_000, 300_000]

# Each step replays the corpus enough times to last this long (see docstring).
DEFAULT_MIN_SECONDS = 8.0

# Bisection steps between the last sustained and the first failed rate.
DEFAULT_BISECT = 2

START_TIMEOUT_S = 20.0
# After tcpreplay ends: sniffd is done when its packet count has not moved for
# this long (stats come every second), or at the cap.
SETTLE_S = 2.5
DRAIN_CAP_S = 120.0
STOP_TIMEOUT_S = 30.0

SERVER_PORT = 8080  # make_corpus.py's server port


def say(msg: str) -> None:
    print(f"live: {msg}", file=sys.stderr, flush=True)


def ensure_tcpreplay() -> None:
    if shutil.which("tcpreplay") is not None:
        return
    say("installing tcpreplay with apt-get (missing)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], env=env, stdout=sys.stderr, check=False)
    if subprocess.run(["apt-get", "install", "-y", "-q", "tcpreplay"], env=env, stdout=sys.stderr).returncode != 0:
        raise SystemExit("live: apt-get install tcpreplay failed")


def sniffd_exe() -> str:
    venv = Path(sys.executable).parent / "sniffd"
    return str(venv) if venv.exists() else (shutil.which("sniffd") or "sniffd")


def workers_support(exe: str) -> tuple[str, str] | None:
    """How this sniffd takes a worker count: ("flag", "--workers") or ("config", "SECTION"); None if it does not."""
    run_help = subprocess.run([exe, "run", "--help"], capture_output=True, text=True, timeout=60)
    if run_help.returncode != 0:
        raise SystemExit(f"live: `sniffd run` is not available yet (exit {run_help.returncode}): {run_help.stderr.strip()[:300]}")
    if "--workers" in run_help.stdout:
        return ("flag", "--workers")
    probe = subprocess.run(
        [sys.executable, "-c", "import json; from sniffd.config import SCHEMA; print(json.dumps({s: list(k) for s, k in SCHEMA.items()}))"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
    )
    if probe.returncode == 0:
        for section, keys in json.loads(probe.stdout).items():
            if "workers" in keys:
                return ("config", section)
    return None


def write_config(path: Path, interface: str, output: Path, workers: int, support: tuple[str, str] | None) -> None:
    """The daemon's TOML: this interface, the corpus's port, stats every second, no privilege drop."""
    extra = {}
    if workers > 1 and support and support[0] == "config":
        extra[support[1]] = f"workers = {workers}\n"
    sections = {
        "capture": f'interface = "{interface}"\nbpf_filter = "tcp port {SERVER_PORT}"\n',
        "output": f'path = "{output}"\nrotate_bytes = 0\n',
        "log": 'level = "info"\nformat = "json"\n',
        # Keep root: the bench's output directory belongs to root.
        "privileges": 'user = ""\n',
        "stats": "interval_s = 1.0\n",
    }
    for section, text in extra.items():
        sections[section] = sections.get(section, "") + text
    path.write_text("# Written by bench/live.py; every other key has its default.\n"
                    + "".join(f"\n[{s}]\n{body}" for s, body in sections.items()))


class Daemon:
    """``sniffd run`` in a namespace; collects its JSON log lines."""

    def __init__(self, argv: list[str]) -> None:
        self.events: list[dict] = []
        self.other_lines: list[str] = []
        self._started = threading.Event()
        self.p = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            try:
                ev = json.loads(line)
            except ValueError:
                self.other_lines.append(line.rstrip("\n"))
                continue
            self.events.append(ev)
            if ev.get("event") == "start":
                self._started.set()

    def wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._started.wait(0.05):
            if self.p.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("sniffd run did not start: " + " | ".join(self.other_lines[-10:] + [json.dumps(e) for e in self.events[-3:]]))

    def last(self, event: str) -> dict | None:
        return next((e for e in reversed(self.events) if e.get("event") == event), None)

    def stop(self) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._reader.join(5)
        return self.p.returncode


def parse_tcpreplay(text: str) -> dict:
    """Sent packets, seconds and achieved rate from tcpreplay's summary."""
    out = {}
    m = re.search(r"Actual: (\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds", text)
    if m:
        out.update(packets=int(m.group(1)), bytes=int(m.group(2)), seconds=float(m.group(3)))
    m = re.search(r"Rated: [\d.]+ Bps, ([\d.]+) Mbps, ([\d.]+) pps", text)
    if m:
        out.update(mbps=float(m.group(1)), pps=float(m.group(2)))
    m = re.search(r"Successful packets:\s+(\d+)", text)
    if m:
        out["successful"] = int(m.group(1))
    m = re.search(r"Failed packets:\s+(\d+)", text)
    if m:
        out["failed"] = int(m.group(1))
    return out


@dataclass
class Step:
    workers: int
    rate: int  # asked, packets/s (0 = --topspeed)
    loops: int
    sent: int = 0
    achieved_pps: float = 0.0
    handled: int = 0
    kernel_drops: int = 0
    queue_drops: int = 0
    records: int = 0
    exact: str = ""
    error: str = ""
    sniffd_cpus: float = 0.0  # CPUs sniffd kept busy, averaged over the replay
    replay_cpus: float = 0.0  # and tcpreplay
    other_cpus: float = 0.0  # and everything else on the machine
    shutdown: dict = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return max(0, self.sent - self.handled)

    @property
    def drop_fraction(self) -> float:
        return self.dropped / self.sent if self.sent else 1.0

    @property
    def sustained(self) -> bool:
        return not self.error and self.sent > 0 and self.drop_fraction < MAX_DROP_FRACTION


def run_step(pcap: Path, info, truth: list[dict], workers: int, rate: int, support, exe: str, live_dir: Path,
             min_seconds: float) -> Step:
    loops = max(1, math.ceil(min_seconds * rate / info.packets)) if rate else max(1, round(min_seconds / 2))
    step = Step(workers, rate, loops)
    output = live_dir / f"records-w{workers}-{rate or 'top'}.jsonl"
    output.unlink(missing_ok=True)
    config = live_dir / f"sniffd-w{workers}.toml"
    with VethPair("rpl", "cap", addresses=False) as net:
        write_config(config, net.right_if, output, workers, support)
        argv = [exe, "run", "-c", str(config)]
        if workers > 1 and support and support[0] == "flag":
            argv += ["--workers", str(workers)]
        daemon = Daemon(net.exec_argv(net.right_ns, argv))
        try:
            daemon.wait_started()
            rate_args = ["--topspeed"] if rate == 0 else [f"--pps={rate}"]
            t0, busy0, sniffd0 = time.monotonic(), machine_busy_s(), tree_cpu_s(daemon.p.pid)
            children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            say(f"workers {workers}: tcpreplay {' '.join(rate_args)} --loop={loops} ({loops * info.packets:,} packets)")
            # --unique-ip: every pass gets other addresses, so each is new
            # connections (a pass with the same 4-tuples and sequence numbers
            # would be old data to a TCP reassembler, and rightly ignored).
            loop_args = [f"--loop={loops}", "--unique-ip"] if loops > 1 else []
            replay = subprocess.run(net.exec_argv(net.left_ns, ["tcpreplay", "-i", net.left_if, *rate_args, *loop_args, "--no-flow-stats",
                                                                str(pcap)]),
                                    capture_output=True, text=True, timeout=max(120.0, 4 * loops * info.packets / max(rate, 50_000)))
            if replay.returncode != 0:
                raise RuntimeError(f"tcpreplay exit {replay.returncode}: {replay.stderr.strip()[-500:]}")
            # CPU shares over the replay: `ip netns exec` execs sniffd, so
            # daemon.p.pid is sniffd's own pid (its workers are its children).
            # A worker that exited during the replay is missed (counted as other).
            elapsed = time.monotonic() - t0
            children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            replay_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
            sniffd_cpu = tree_cpu_s(daemon.p.pid) - sniffd0
            other_cpu = machine_busy_s() - busy0 - replay_cpu - sniffd_cpu
            step.sniffd_cpus, step.replay_cpus = sniffd_cpu / elapsed, replay_cpu / elapsed
            step.other_cpus = max(0.0, other_cpu / elapsed)
            stats = parse_tcpreplay(replay.stdout)
            step.sent = stats.get("successful", stats.get("packets", 0))
            step.achieved_pps = stats.get("pps", 0.0)
            # Wait until sniffd has caught up: its packet count stops moving.
            deadline = time.monotonic() + DRAIN_CAP_S
            last, since = -1, time.monotonic()
            while time.monotonic() < deadline:
                ev = daemon.last("stats") or {}
                handled = ev.get("packets", 0) + ev.get("kernel_drops", 0) + ev.get("queue_drops", 0)
                if handled != last:
                    last, since = handled, time.monotonic()
                elif time.monotonic() - since >= SETTLE_S:
                    break
                time.sleep(0.2)
        finally:
            rc = daemon.stop()
        shutdown = daemon.last("shutdown")
        if shutdown is None:
            step.error = f"sniffd run exited {rc} without a shutdown line: " + " | ".join(daemon.other_lines[-5:])
            return step
        step.shutdown = shutdown
        step.handled = shutdown.get("packets", 0)
        step.kernel_drops = shutdown.get("kernel_drops", 0) + shutdown.get("interface_drops", 0)
        step.queue_drops = shutdown.get("queue_drops", 0)
        step.records = shutdown.get("records_written", 0)
    if output.exists():
        v = verify(truth, str(output), copies=loops)
        step.exact = f"{v.exact}/{v.truth}"
    return step


def describe(step: Step) -> str:
    rate = "topspeed" if step.rate == 0 else f"{step.rate:,} pps"
    if step.error:
        return f"workers {step.workers}, {rate}: ERROR {step.error}"
    return (f"workers {step.workers}, asked {rate}, achieved {step.achieved_pps:,.0f} pps x{step.loops}: sent {step.sent:,}, "
            f"sniffd handled {step.handled:,}, dropped {step.dropped:,} ({100 * step.drop_fraction:.3f}%; kernel {step.kernel_drops:,}, "
            f"queue {step.queue_drops:,}), records exact {step.exact}; CPUs busy: sniffd {step.sniffd_cpus:.2f}, tcpreplay "
            f"{step.replay_cpus:.2f}, other {step.other_cpus:.2f} -> {'sustained' if step.sustained else 'NOT sustained'}")


def ladder(pcap, info, truth, workers, rates, support, exe, live_dir, min_seconds, bisect) -> tuple[list[Step], Step | None]:
    steps: list[Step] = []
    best: Step | None = None
    failed_rate = None
    for rate in rates:
        step = run_step(pcap, info, truth, workers, rate, support, exe, live_dir, min_seconds)
        steps.append(step)
        say(describe(step))
        if step.sustained:
            best = step
        else:
            failed_rate = rate
            break
    lo = best.rate if best else 0
    hi = failed_rate
    for _ in range(bisect if hi else 0):
        mid = int(round((lo + hi) / 2 / 1000) * 1000)
        if mid in (lo, hi) or mid <= 0:
            break
        step = run_step(pcap, info, truth, workers, mid, support, exe, live_dir, min_seconds)
        steps.append(step)
        say(describe(step))
        if step.sustained:
            best, lo = step, mid
        else:
            hi = mid
    return steps, best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=BENCH_DIR / "out", help="where corpus.pcap and truth.json are (default bench/out)")
    ap.add_argument("--workers", default="1,2", help="worker counts to try (default 1,2)")
    ap.add_argument("--rates", default=",".join(str(r) for r in DEFAULT_RATES), help="packets/s, ascending; 0 = topspeed")
    ap.add_argument("--min-seconds", type=float, default=DEFAULT_MIN_SECONDS, help="least duration of one step (the corpus is looped)")
    ap.add_argument("--bisect", type=int, default=DEFAULT_BISECT, help="bisection steps after the first failed rate")
    ap.add_argument("--sniffd", default=None, help="sniffd executable (default: the one next to this python)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("live: must run as root (network namespaces, packet capture)")
    pcap = args.out_dir / "corpus.pcap"
    if not pcap.exists():
        raise SystemExit(f"live: {pcap} does not exist: run bench/make_corpus.py (or bench/run.py) first")
    ensure_tcpreplay()
    for tool in ("ip", "ethtool"):
        if shutil.which(tool) is None:
            raise SystemExit(f"live: {tool} is missing (bench/run.py installs it)")

    def on_term(signum, frame):
        raise SystemExit(f"live: stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    stale = remove_stale()
    if stale:
        say(f"removed namespaces left by killed runs: {', '.join(stale)}")
    exe = args.sniffd or sniffd_exe()
    support = workers_support(exe)
    truth = json.loads((args.out_dir / "truth.json").read_text())
    info = pcap_info(str(pcap))
    live_dir = args.out_dir / "live"
    live_dir.mkdir(parents=True, exist_ok=True)
    rates = [int(r) for r in args.rates.split(",")]
    summary = {}
    all_steps = []
    try:
        for workers in [int(w) for w in args.workers.split(",")]:
            if workers > 1 and support is None:
                summary[workers] = "not supported yet: `sniffd run` has no --workers flag and its config no workers key"
                say(f"workers {workers}: {summary[workers]}; skipped")
                continue
            steps, best = ladder(pcap, info, truth, workers, rates, support, exe, live_dir, args.min_seconds, args.bisect)
            all_steps += steps
            summary[workers] = best
    except (NetnsError, RuntimeError, subprocess.TimeoutExpired) as e:
        say(f"error: {e}")
        return 2

    print()
    print(f"live: corpus {pcap} ({info.packets:,} packets), replayed by tcpreplay through a veth (MTU 1500, offloads off) "
          f"into `sniffd run`; sustained = under {100 * MAX_DROP_FRACTION:g}% dropped over at least {args.min_seconds:g} s")
    print()
    hdr = f"| {'workers':>7} | {'asked pps':>10} | {'achieved pps':>12} | {'loops':>5} | {'sent':>10} | {'handled':>10} | {'dropped %':>9} | {'kernel drops':>12} | {'queue drops':>11} | {'records exact':>15} | {'CPUs: sniffd/replay/other':>25} | {'result':<13} |"
    print(hdr)
    print("|" + "|".join("-" * len(c) for c in hdr.split("|")[1:-1]) + "|")
    for s in all_steps:
        asked = "top" if s.rate == 0 else f"{s.rate:,}"
        print(f"| {s.workers:>7} | {asked:>10} | {s.achieved_pps:>12,.0f} | {s.loops:>5} | {s.sent:>10,} | {s.handled:>10,} | "
              f"{100 * s.drop_fraction:>9.3f} | {s.kernel_drops:>12,} | {s.queue_drops:>11,} | {s.exact:>15} | "
              f"{f'{s.sniffd_cpus:.2f} / {s.replay_cpus:.2f} / {s.other_cpus:.2f}':>25} | "
              f"{('sustained' if s.sustained else ('ERROR' if s.error else 'dropped')):<13} |")
    print()
    if any(s.other_cpus > 0.25 for s in all_steps):
        print(f"WARNING: other processes kept up to {max(s.other_cpus for s in all_steps):.2f} CPUs busy during some steps "
              f"(last column): on this {os.cpu_count()}-CPU machine sniffd and tcpreplay then had less than their share, "
              f"and the sustained rates are lower than on an idle machine")
        print()
    results = {}
    for workers, best in summary.items():
        if isinstance(best, str):
            print(f"live: workers {workers}: {best}")
            results[str(workers)] = {"supported": False, "why": best}
        elif best is None:
            print(f"live: workers {workers}: no rate tried was sustained (lowest: {rates[0]:,} pps)")
            results[str(workers)] = {"supported": True, "highest_sustained_pps": None}
        else:
            print(f"live: workers {workers}: highest sustained rate {best.achieved_pps:,.0f} packets/s "
                  f"(asked {best.rate:,}; {100 * best.drop_fraction:.3f}% dropped, records exact {best.exact})")
            results[str(workers)] = {"supported": True, "highest_sustained_pps": best.achieved_pps, "asked_pps": best.rate,
                                     "drop_fraction": best.drop_fraction, "records_exact": best.exact}
    (live_dir / "results.json").write_text(json.dumps({
        "summary": results,
        "steps": [{**{k: v for k, v in s.__dict__.items() if k != "shutdown"}, "dropped": s.dropped, "drop_fraction": s.drop_fraction,
                   "sustained": s.sustained, "shutdown": s.shutdown} for s in all_steps],
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
