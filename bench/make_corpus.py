"""Make the benchmark corpus: real kernel HTTP traffic over a veth, captured by tcpdump.

    .venv/bin/python bench/make_corpus.py [--seed 1] [--out-dir bench/out]

Writes ``corpus.pcap`` (about 200 MB, ~20k HTTP/1.1 transactions on ~2,400
connections), ``truth.json`` (the httpgen client's ground truth, one dict per
transaction) and ``corpus.json`` (how it was made and what tcpdump counted).

How: two network namespaces joined by a veth pair (MTU 1500, offloads off, so
the capture holds real 1514-byte frames; see bench/netns.py), the httpgen
server in one, tcpdump and the httpgen client in the other.  The traffic never
leaves the two namespaces.  Everything is torn down at the end, also after an
error or Ctrl-C.

Reproducible from ``--seed``: the same seed gives the same connections,
requests and bodies (``plan_digest`` in corpus.json is equal run to run);
ports, timing and packet boundaries differ, as on any real link.

Must run as root (namespaces, capture).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from netns import NetnsError, VethPair, remove_stale  # noqa: E402
from pcapinfo import pcap_info  # noqa: E402

SERVER_PORT = 8080  # one of sniffd's default filter ports, so `sniffd run` needs no filter change

# The connection mix, cycled by httpgen's build_plans.  Per httpgen's planners
# (bench/README.md has the arithmetic): keepalive = 7 transactions of <=20 kB
# bodies, pipeline = 10 (3-deep pipelines with a HEAD between bodies),
# bodiless = 9 (304, 204, HEAD of every entity kind), continue = 4
# (100-continue uploads), chunked_gzip = 5 (<=200 kB chunked/gzip/both,
# chunked uploads), large = 5 bodies up to --max-body-len (2 MB) each way.
# A 30-connection cycle is mostly small exchanges, as on a real site; one
# "large" connection per ten cycles brings the 2 MB bodies; every other cycle
# has a chunked_gzip connection.  With 2,408 connections (8 x 301) this is
# ~20.1k transactions and ~205 MB of pcap.
_SMALL = ["keepalive", "pipeline", "bodiless"] * 8 + ["keepalive", "pipeline"] * 2 + ["continue"]
_CYCLE_A = _SMALL + ["chunked_gzip"]
_CYCLE_B = _SMALL + ["bodiless"]
KINDS_PATTERN = (_CYCLE_A + _CYCLE_B) * 2 + _CYCLE_A + ["large"] + (_CYCLE_B + _CYCLE_A) * 2 + _CYCLE_B
DEFAULT_CONNECTIONS = 8 * len(KINDS_PATTERN)

# Connections in flight at once: enough that flows interleave in the capture
# as on a busy server, few enough for 2 cores.
DEFAULT_CLIENT_WORKERS = 8

# tcpdump -B in KiB: 64 MiB lets tcpdump fall behind for a while (a 2 MB body
# arrives in about a millisecond on a veth) without the kernel dropping.
TCPDUMP_BUFFER_KIB = 65536

# Time limits: server/tcpdump start, the whole client run, tcpdump's flush.
START_TIMEOUT_S = 15.0
CLIENT_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 20.0

# Lets the last ACK of the last teardown pass tcpdump before it is stopped.
SETTLE_S = 0.5


def log(msg: str) -> None:
    print(f"make_corpus: {msg}", file=sys.stderr, flush=True)


class Proc:
    """A background process whose stderr/stdout lines are collected; waits for a start marker."""

    def __init__(self, name: str, argv: list[str], marker: str | None, stream: str) -> None:
        self.name = name
        self.argv = argv
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._marker = marker
        self.p = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
            stderr=subprocess.PIPE if stream == "stderr" else None,
            text=True,
            start_new_session=True,  # so a Ctrl-C to us does not reach it before we stop it in order
        )
        pipe = self.p.stdout if stream == "stdout" else self.p.stderr
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for line in pipe:
            self.lines.append(line.rstrip("\n"))
            if self._marker and self._marker in line:
                self._ready.set()

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.05):
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: {' '.join(self.argv)}\n" + "\n".join(self.lines))

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = STOP_TIMEOUT_S) -> int:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                log(f"{self.name} ignored signal {sig} for {timeout_s} s and was killed")
        self._thread.join(timeout_s)
        return self.p.returncode


def tcpdump_counters(lines: list[str]) -> dict[str, int]:
    """{"captured", "received", "dropped"} from tcpdump's closing lines."""
    counters = {}
    for line in lines:
        words = line.split()
        # "12 packets captured", "12 packets received by filter", "0 packets dropped by kernel"
        if len(words) >= 3 and words[0].isdigit() and words[1] == "packets":
            counters[words[2]] = int(words[0])
    return counters


def plan_digest(truth: list[dict]) -> str:
    """SHA-256 of what the seed determines (not ports or times): equal for equal seeds."""
    h = hashlib.sha256()
    for t in truth:
        row = [t["connection"], t["label"], t["trans_depth"], t["method"], t["uri"], t["host"],
               t["request_body_len"], t["status"], t["response_body_len"], t["interim"]]
        h.update(json.dumps(row).encode() + b"\n")
    return h.hexdigest()


def make_corpus(out_dir: Path, *, seed: int, connections: int, client_workers: int, max_body_len: int,
                kinds: list[str]) -> dict:
    """Capture one corpus into ``out_dir``; return the metadata also written to corpus.json."""
    if os.geteuid() != 0:
        raise SystemExit("make_corpus: must run as root (network namespaces and packet capture)")
    if shutil.which("tcpdump") is None:
        raise SystemExit("make_corpus: tcpdump is not installed (apt-get install -y tcpdump)")
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = remove_stale()
    if stale:
        log(f"removed namespaces left by killed runs: {', '.join(stale)}")
    pcap_tmp = out_dir / f".corpus-{os.getpid()}.pcap"
    truth_tmp = out_dir / f".truth-{os.getpid()}.json"
    python = sys.executable
    procs: list[Proc] = []
    t0 = time.monotonic()
    try:
        with VethPair("cli", "srv") as net:
            log(f"namespaces {net.left_ns} ({net.left_if} {net.left_ip}) <-> {net.right_ns} ({net.right_if} {net.right_ip}), "
                f"MTU {net.mtu}, tso/gso/gro/tx offloads off")
            server = Proc("httpgen server", net.exec_argv(net.right_ns, [python, "-m", "tests.httpgen", "serve", "--host", net.right_ip,
                                                                         "--port", str(SERVER_PORT)]), "listening", "stdout")
            procs.append(server)
            server.wait_ready(START_TIMEOUT_S)
            tcpdump = Proc("tcpdump", net.exec_argv(net.left_ns, [
                "tcpdump", "-i", net.left_if, "-s", "0", "-B", str(TCPDUMP_BUFFER_KIB), "-U", "--immediate-mode",
                "-n", "-Z", "root", "-w", str(pcap_tmp), f"tcp port {SERVER_PORT}"]), "listening on", "stderr")
            procs.append(tcpdump)
            tcpdump.wait_ready(START_TIMEOUT_S)
            log(f"client: seed {seed}, {connections} connections, {client_workers} at a time, bodies up to {max_body_len} bytes")
            t_client = time.monotonic()
            client = subprocess.run(
                net.exec_argv(net.left_ns, [python, "-m", "tests.httpgen", "client", "--host", net.right_ip, "--port", str(SERVER_PORT),
                                            "--seed", str(seed), "--connections", str(connections), "--workers", str(client_workers),
                                            "--max-body-len", str(max_body_len), "--kinds", ",".join(kinds), "--out", str(truth_tmp)]),
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S,
            )
            client_s = time.monotonic() - t_client
            if client.returncode != 0:
                raise RuntimeError(f"httpgen client failed (exit {client.returncode}):\n{client.stderr[-4000:]}")
            time.sleep(SETTLE_S)
            tcpdump.stop(signal.SIGINT)
            counters = tcpdump_counters(tcpdump.lines)
            server_rc = server.stop(signal.SIGTERM)
            if server_rc != 0:
                raise RuntimeError("httpgen server reported errors (a generator problem, not sniffd's):\n" + "\n".join(server.lines))
            if counters.get("dropped", -1) != 0 or counters.get("captured", 0) == 0:
                raise RuntimeError(f"tcpdump dropped packets or captured none: {counters}; " + " | ".join(tcpdump.lines))
            log(f"client done in {client_s:.1f} s; tcpdump: {counters}")
    finally:
        # Normally both have exited already; after an error, make sure.
        for proc in procs:
            proc.stop(signal.SIGKILL, 5.0)
        if sys.exc_info()[0] is not None:
            for tmp in (pcap_tmp, truth_tmp):
                tmp.unlink(missing_ok=True)
    try:
        truth = json.loads(truth_tmp.read_text())
        info = pcap_info(str(pcap_tmp))
        if info.packets != counters["captured"]:
            raise RuntimeError(f"pcap holds {info.packets} packets, tcpdump said it captured {counters['captured']}")
        if info.max_caplen > 1514:
            raise RuntimeError(f"a frame of {info.max_caplen} bytes: offloads were not really off")
        ports = [(t["client_port"], t["connection"]) for t in truth]
        reused = len({p for p, _ in ports}) != len({c for _, c in ports})
        meta = {
            "seed": seed,
            "connections": connections,
            "client_workers": client_workers,
            "max_body_len": max_body_len,
            "kinds": ",".join(kinds),
            "transactions": len(truth),
            "client_ports_reused": reused,
            "plan_digest": plan_digest(truth),
            "packets": info.packets,
            "pcap_bytes": info.file_bytes,
            "max_frame_bytes": info.max_caplen,
            "capture_span_s": round(info.last_ts - info.first_ts, 3),
            "tcpdump": counters,
            "request_body_bytes": sum(t["request_body_len"] for t in truth),
            "response_body_bytes": sum(t["response_body_len"] for t in truth),
            "labels": {k: sum(1 for t in truth if t["label"] == k) for k in sorted({t["label"] for t in truth})},
            "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "made_in_s": round(time.monotonic() - t0, 1),
            "kernel": platform.release(),
        }
        os.replace(pcap_tmp, out_dir / "corpus.pcap")
        os.replace(truth_tmp, out_dir / "truth.json")
        (out_dir / "corpus.json").write_text(json.dumps(meta, indent=1) + "\n")
    finally:
        for tmp in (pcap_tmp, truth_tmp):
            tmp.unlink(missing_ok=True)
    log(f"wrote {out_dir}/corpus.pcap: {meta['packets']} packets, {meta['pcap_bytes'] / 1e6:.1f} MB, "
        f"{meta['transactions']} transactions on {connections} connections (plan {meta['plan_digest'][:12]})")
    if reused:
        log("note: a client port was used by two connections; the bench matches them by time order")
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1, help="httpgen scenario seed (default 1)")
    ap.add_argument("--out-dir", type=Path, default=BENCH_DIR / "out", help="default bench/out")
    ap.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS,
                    help=f"connections (default {DEFAULT_CONNECTIONS}: ~200 MB, ~20k transactions)")
    ap.add_argument("--client-workers", type=int, default=DEFAULT_CLIENT_WORKERS, help="connections in flight at once")
    ap.add_argument("--max-body-len", type=int, default=2_000_000, help="largest body (the 'large' connections)")
    ap.add_argument("--kinds", default=",".join(KINDS_PATTERN), help="httpgen kinds, cycled (default: the bench mix)")
    args = ap.parse_args(argv)

    # SIGTERM becomes an exception so the finally blocks tear the namespaces down.
    def on_term(signum, frame):
        raise SystemExit(f"make_corpus: stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        make_corpus(args.out_dir, seed=args.seed, connections=args.connections, client_workers=args.client_workers,
                    max_body_len=args.max_body_len, kinds=args.kinds.split(","))
    except (NetnsError, RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
