"""The real `sniffd run` daemon on a gateway between two network namespaces.

    client ns                 gateway ns (sniffd on g1)            server ns
    c0 10.200.1.2/24 <-veth-> g1 10.200.1.1  g2 10.200.2.1 <-veth-> s0 10.200.2.2/24

Real kernel TCP crosses the gateway (ip_forward on); the installed ``sniffd``
executable captures on g1 inside the gateway namespace, configured by a TOML
file as an operator would, and is stopped with real signals.  Traffic never
leaves these three namespaces.  The answer key comes from the client
(tests/httpgen.py), never from sniffd.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[2]
SNIFFD = Path(sys.executable).parent / "sniffd"
PYTHON = sys.executable

CLIENT_IP, GATEWAY_CLIENT_IP = "10.200.1.2", "10.200.1.1"
SERVER_IP, GATEWAY_SERVER_IP = "10.200.2.2", "10.200.2.1"
HTTP_PORT = 8080  # in the daemon's BPF filter
OTHER_PORT = 9090  # kept out by the filter
SILENT_PORT = 8081  # accepts and never answers: a request stays in flight

SNIFFD_USER = "sniffd"

# The promise: a transaction is in the log within 2 s of its end
# (libpcap hands packets over within read_timeout_ms, the sink flushes at
# least once a second).
RECORD_LATENCY_S = 2.0

# sniffd must be capturing within this after exec (imports, opening the capture).
START_TIMEOUT_S = 15.0

# "exit 0 within a few seconds" after SIGTERM.
STOP_TIMEOUT_S = 5.0

# Longer than read timeout + flush interval: what is not in the file by then
# was not going to be written.
SETTLE_S = 1.6


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def set_sysctl(ns: str, name: str, value: str, check: bool = True) -> None:
    """Write /proc/sys/NAME inside ns (/proc/sys/net is per namespace; no procps needed)."""
    run(*in_ns(ns, "sh", "-c", f"echo {value} > /proc/sys/{name}"), check=check)


# --- processes started in the namespaces -------------------------------------------

SILENT_SERVER = r"""
import socket, sys
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((sys.argv[1], int(sys.argv[2])))
listener.listen(16)
print("listening", flush=True)
held = []
while True:
    conn, _ = listener.accept()
    held.append(conn)  # read nothing, answer nothing
"""

# One connection per entry of spec["connections"], each a keep-alive sequence
# of GETs; the ground truth (tests/httpgen.py) goes to stdout as JSON.
CLIENT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from tests import httpgen
spec = json.loads(sys.argv[2])
truth = []
for conn in spec["connections"]:
    plan = httpgen.ConnectionPlan(conn["label"], conn["host"], [[httpgen.Request("GET", uri)] for uri in conn["uris"]])
    truth += httpgen.run_connection(plan, spec["server"], conn["port"])
    time.sleep(spec.get("pause_s", 0))
json.dump(truth, sys.stdout)
"""

IN_FLIGHT_CLIENT = r"""
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
sock.sendall(b"GET /in-flight HTTP/1.1\r\nHost: in-flight.test\r\n\r\n")
print(sock.getsockname()[1], flush=True)
sock.recv(1)  # the server never answers; the test kills this process
"""


class Gateway:
    """Three namespaces joined by two veth pairs, named uniquely for this run."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}-{secrets.token_hex(2)}"
        self.client, self.gw, self.server = (f"sniffd-t{tag}-{role}" for role in ("cli", "gw", "srv"))
        self.created: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def setup(self) -> None:
        for ns in (self.client, self.gw, self.server):
            run("ip", "netns", "add", ns)
            self.created.append(ns)
        # Interface names live inside the namespaces, so they cannot clash with the host's.
        run("ip", "link", "add", "c0", "netns", self.client, "type", "veth", "peer", "name", "g1", "netns", self.gw)
        run("ip", "link", "add", "g2", "netns", self.gw, "type", "veth", "peer", "name", "s0", "netns", self.server)
        for ns, dev, addr in (
            (self.client, "c0", f"{CLIENT_IP}/24"),
            (self.gw, "g1", f"{GATEWAY_CLIENT_IP}/24"),
            (self.gw, "g2", f"{GATEWAY_SERVER_IP}/24"),
            (self.server, "s0", f"{SERVER_IP}/24"),
        ):
            run("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
        for ns in (self.client, self.gw, self.server):
            run("ip", "-n", ns, "link", "set", "lo", "up")
            # No IPv6 chatter (router solicitations, DAD) on the captured link;
            # a kernel without IPv6 has none anyway.
            set_sysctl(ns, "net/ipv6/conf/all/disable_ipv6", "1", check=False)
        run("ip", "-n", self.client, "route", "add", "default", "via", GATEWAY_CLIENT_IP)
        run("ip", "-n", self.server, "route", "add", "default", "via", GATEWAY_SERVER_IP)
        set_sysctl(self.gw, "net/ipv4/ip_forward", "1")

    def start(self, ns: str, argv: list[str], ready: str, timeout_s: float = 10.0) -> subprocess.Popen:
        """Start argv in ns; return once its stdout printed a line containing ``ready``."""
        proc = subprocess.Popen(in_ns(ns, *argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        self.procs.append(proc)
        lines: list[str] = []
        seen = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if ready in line:
                    seen.set()

        threading.Thread(target=read, daemon=True).start()
        if not seen.wait(timeout_s):
            proc.kill()
            raise RuntimeError(f"{argv} did not become ready: {''.join(lines)} {proc.stderr.read() if proc.stderr else ''}")
        return proc

    def teardown(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for ns in self.created:
            run("ip", "netns", "del", ns, check=False)


@pytest.fixture(scope="module")
def gateway():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")
    gw = Gateway()
    try:
        try:
            gw.setup()
        except RuntimeError as exc:
            pytest.skip(f"cannot build network namespaces here: {exc}")
        gw.start(gw.server, [PYTHON, "-m", "tests.httpgen", "serve", "--host", SERVER_IP, "--port", str(HTTP_PORT)], "listening")
        gw.start(gw.server, [PYTHON, "-m", "tests.httpgen", "serve", "--host", SERVER_IP, "--port", str(OTHER_PORT)], "listening")
        gw.start(gw.server, [PYTHON, "-c", SILENT_SERVER, SERVER_IP, str(SILENT_PORT)], "listening")
        yield gw
    finally:
        gw.teardown()


@pytest.fixture(scope="module")
def sniffd_user():
    """The unprivileged user sniffd drops to, created (and removed) if this machine lacks it."""
    created = False
    try:
        pw = pwd.getpwnam(SNIFFD_USER)
    except KeyError:
        run("useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", SNIFFD_USER)
        created = True
        pw = pwd.getpwnam(SNIFFD_USER)
    yield pw
    if created:
        run("userdel", SNIFFD_USER, check=False)


@pytest.fixture
def log_dir(sniffd_user):
    """A log directory owned by the sniffd user, as the systemd unit's LogsDirectory= makes it.

    Not under pytest's tmp_path: that is private to root, and sniffd writes
    after dropping to its own user.
    """
    base = Path(tempfile.mkdtemp(prefix="sniffd-live-"))
    base.chmod(0o755)
    logs = base / "log"
    logs.mkdir(mode=0o750)
    os.chown(logs, sniffd_user.pw_uid, sniffd_user.pw_gid)
    yield logs
    shutil.rmtree(base, ignore_errors=True)


class Daemon:
    """One `sniffd run` process in the gateway namespace; its stderr parsed as JSON events."""

    def __init__(self, gateway: Gateway, config: Path, env: dict[str, str] | None = None) -> None:
        self.argv = in_ns(gateway.gw, str(SNIFFD), "run", "-c", str(config))
        self.env = {**os.environ, **env} if env else None  # extra environment (NOTIFY_SOCKET, ...)
        self.events: list[dict] = []
        self.stderr_lines: list[str] = []
        self._started = threading.Event()
        self.proc: subprocess.Popen | None = None

    def start(self) -> Daemon:
        # `ip netns exec` execs (no fork): proc.pid is sniffd's own pid.
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self.env)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._started.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"sniffd did not start: {self.stderr()}")
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            if event.get("event") == "start":
                self._started.set()

    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def named(self, name: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == name]

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        """Send sig; return (exit status, seconds it took to exit)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(STOP_TIMEOUT_S + 10)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"sniffd ignored {signal.Signals(sig).name}: {self.stderr()}")
        elapsed = time.monotonic() - t0
        # Let the reader thread take the last lines (the shutdown summary).
        for _ in range(100):
            if self.named("shutdown") or not self.stderr_lines:
                break
            time.sleep(0.02)
        return rc, elapsed

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def start_sniffd(gateway, log_dir):
    """Return ``start(**toml_sections) -> Daemon``; every daemon is killed at teardown if still running."""
    daemons: list[Daemon] = []

    def start(bpf_filter: str, output: dict | None = None, limits: dict | None = None) -> Daemon:
        out = {"path": str(log_dir / "http.jsonl"), "rotate_bytes": 0, "keep_files": 10, "flush_interval_s": 1.0}
        out.update(output or {})
        config = log_dir.parent / "sniffd.toml"
        config.write_text(
            "\n".join(
                [
                    "[capture]",
                    'interface = "g1"',
                    f"bpf_filter = {json.dumps(bpf_filter)}",
                    "[output]",
                    *(f"{k} = {json.dumps(v)}" for k, v in out.items()),
                    "[limits]",
                    *(f"{k} = {json.dumps(v)}" for k, v in (limits or {}).items()),
                    "[privileges]",
                    f'user = "{SNIFFD_USER}"',
                    "[stats]",
                    "interval_s = 1.0",
                    "",
                ]
            )
        )
        daemon = Daemon(gateway, config).start()
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.kill()


def run_client(gateway: Gateway, spec: dict, timeout_s: float = 60) -> list[dict]:
    proc = subprocess.run(
        in_ns(gateway.client, PYTHON, "-c", CLIENT, str(REPO), json.dumps(spec)),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert proc.returncode == 0, f"client failed: {proc.stderr}"
    return json.loads(proc.stdout)


def connections(port: int, n: int, per_conn: int, start: int = 0) -> list[dict]:
    """n keep-alive connections of per_conn GETs each, every URI unique."""
    out = []
    for c in range(n):
        uris = [f"/size/{100 + (start + c * per_conn + k) % 900}?seed={start + c * per_conn + k}" for k in range(per_conn)]
        out.append({"label": f"c{start + c}", "host": f"c{start + c}.gateway.test", "port": port, "uris": uris})
    return out


def read_records(paths: list[Path]) -> list[dict]:
    """Every record in paths; fails on a torn (partial or unparsable) line."""
    records = []
    for path in paths:
        data = path.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f"{path.name} ends in a partial line"
        for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
            try:
                records.append(orjson.loads(line))  # strict: what shippers parse
            except ValueError:
                raise AssertionError(f"{path.name}:{n}: torn or invalid JSON line: {line[:200]!r}") from None
    return records


def wait_for(predicate, timeout_s: float, interval_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def key(port: int, depth: int) -> tuple[int, int]:
    return (port, depth)


# --- tests ---------------------------------------------------------------------------


def test_gateway_records_appear_within_2s_and_filter_keeps_other_ports_out(gateway, start_sniffd, log_dir):
    daemon = start_sniffd(f"tcp port {HTTP_PORT}", output={"sensor": "gw-test"})
    out = log_dir / "http.jsonl"
    # The filtered-out exchange goes first: by the time the wanted one is in
    # the file, the other would have been too.
    other = run_client(gateway, {"server": SERVER_IP, "connections": connections(OTHER_PORT, 1, 1)})
    truth = run_client(gateway, {"server": SERVER_IP, "connections": connections(HTTP_PORT, 1, 2, start=1)})
    done = max(t["t_response_end_s"] for t in truth)

    def both_written():
        return len(read_records([out])) >= 2 if out.exists() else False

    assert wait_for(both_written, RECORD_LATENCY_S + 3), f"no records in {out}: {daemon.stderr()}"
    latency = time.time() - done
    assert latency <= RECORD_LATENCY_S, f"records took {latency:.2f} s to appear"

    time.sleep(SETTLE_S)
    records = read_records([out])
    assert [
        {"client": {"ip": CLIENT_IP, "port": t["client_port"]}, "server": {"ip": SERVER_IP, "port": HTTP_PORT}, "uri": t["uri"], "status": 200, "trans_depth": t["trans_depth"]}
        for t in truth
    ] == [
        {"client": r["client"], "server": r["server"], "uri": r["request"]["uri"], "status": r["response"]["status"], "trans_depth": r["trans_depth"]}
        for r in records
    ]
    assert other and all(r["server"]["port"] != OTHER_PORT for r in records)
    # Where they were captured: the configured sensor name and interface.
    assert {("gw-test", "g1")} == {(r["sensor"], r["interface"]) for r in records}
    assert 0o640 == stat.S_IMODE(out.stat().st_mode)

    stats = wait_for(lambda: [e for e in daemon.named("stats") if e["records_written"] >= 2], 3)
    assert stats, f"no stats event counting the records: {daemon.stderr()}"
    fields = {"packets", "bytes", "kernel_drops", "queue_drops", "open_connections", "records_written", "anomalies"}
    assert fields <= set(stats[-1]), stats[-1]
    assert 0 == stats[-1]["queue_drops"]
    start = daemon.named("start")[0]
    assert ("g1", f"tcp port {HTTP_PORT}") == (start["interface"], start["filter"])
    assert {"sniffd", "python", "libpcap", "pcapy-ng", "orjson"} <= set(start["versions"])
    assert start["versions"]["batch_decoder"] == "c"

    rc, _ = daemon.stop()
    assert 0 == rc, daemon.stderr()


def test_daemon_no_longer_runs_as_root_after_start(start_sniffd, sniffd_user, log_dir):
    daemon = start_sniffd(f"tcp port {HTTP_PORT}")
    assert daemon.proc is not None
    status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in status.splitlines()}
    assert "sniffd" in Path(f"/proc/{daemon.proc.pid}/cmdline").read_text()
    uid, gid = str(sniffd_user.pw_uid), str(sniffd_user.pw_gid)
    assert {"Uid": [uid] * 4, "Gid": [gid] * 4, "Groups": [], "CapPrm": ["0" * 16], "CapEff": ["0" * 16], "CapAmb": ["0" * 16]} == {
        k: fields[k] for k in ("Uid", "Gid", "Groups", "CapPrm", "CapEff", "CapAmb")
    }
    out = log_dir / "http.jsonl"
    assert (sniffd_user.pw_uid, 0o640) == (out.stat().st_uid, stat.S_IMODE(out.stat().st_mode))
    rc, _ = daemon.stop(signal.SIGINT)
    assert 0 == rc, daemon.stderr()


def test_sighup_and_builtin_rotation_lose_no_transaction(gateway, start_sniffd, log_dir):
    """logrotate-style renames + SIGHUP while the built-in rotation also runs, under steady traffic."""
    daemon = start_sniffd(f"tcp port {HTTP_PORT}", {"rotate_bytes": 16384, "keep_files": 1000})
    out = log_dir / "http.jsonl"
    spec = {"server": SERVER_IP, "connections": connections(HTTP_PORT, 120, 3), "pause_s": 0.02}
    result: dict = {}
    client = threading.Thread(target=lambda: result.update(truth=run_client(gateway, spec)))
    client.start()
    moved = []
    for n in range(1, 4):
        time.sleep(0.8)
        # What logrotate does (without copytruncate): rename, then SIGHUP.
        if out.exists():
            target = log_dir / f"moved-{n}.jsonl"
            out.rename(target)
            moved.append(target)
        daemon.send(signal.SIGHUP)
    client.join(120)
    truth = result["truth"]
    time.sleep(SETTLE_S)
    rc, _ = daemon.stop()
    assert 0 == rc, daemon.stderr()

    files = sorted(log_dir.iterdir())
    records = read_records(files)
    expected = Counter(key(t["client_port"], t["trans_depth"]) for t in truth)
    got = Counter(key(r["client"]["port"], r["trans_depth"]) for r in records)
    assert 360 == len(truth)
    assert [] == sorted((expected - got).elements()), "transactions missing from the union of the files"
    assert [] == sorted((got - expected).elements()), "records duplicated or not made by the client"
    by_key = {key(r["client"]["port"], r["trans_depth"]): r for r in records}
    assert [t["uri"] for t in truth] == [by_key[key(t["client_port"], t["trans_depth"])]["request"]["uri"] for t in truth]

    rotated = [p for p in files if p.name.startswith("http.jsonl.")]
    assert len(rotated) >= 2, f"built-in rotation did not run: {[p.name for p in files]}"
    assert moved and any(p.stat().st_size > 0 for p in moved), "no records went to a file moved before SIGHUP"
    assert len(daemon.named("reopened")) >= 1 and len(daemon.named("rotated")) >= len(rotated)
    assert [] == daemon.named("processing_failed") + [e for e in daemon.events if e["event"].startswith("output_")]
    for p in files:
        assert 0o640 == stat.S_IMODE(p.stat().st_mode), p.name


def test_sigterm_writes_the_in_flight_request_flagged_and_exits_0(gateway, start_sniffd, log_dir):
    daemon = start_sniffd(f"tcp port {SILENT_PORT}")
    client = gateway.start(gateway.client, [PYTHON, "-c", IN_FLIGHT_CLIENT, SERVER_IP, str(SILENT_PORT)], "")
    assert client.stdout is not None
    time.sleep(0.3)  # the request is on the wire; no answer will ever come
    rc, elapsed = daemon.stop(signal.SIGTERM)
    assert 0 == rc, daemon.stderr()
    assert elapsed < STOP_TIMEOUT_S

    records = read_records([log_dir / "http.jsonl"])
    assert [("GET", "/in-flight", "in-flight.test", None)] == [
        (r["request"]["method"], r["request"]["uri"], r["request"]["host"], r["response"]) for r in records
    ]
    assert "cut_by_shutdown" in records[0]["anomalies"]
    assert (CLIENT_IP, SERVER_IP, SILENT_PORT) == (records[0]["client"]["ip"], records[0]["server"]["ip"], records[0]["server"]["port"])
    summary = daemon.named("shutdown")
    assert summary and 1 == summary[-1]["records_written"], daemon.stderr()
    assert summary[-1]["anomalies"].get("cut_by_shutdown", 0) >= 1


def test_quiet_link_still_flushes_an_idle_connection(gateway, start_sniffd, log_dir):
    """No packet after the request: read timeouts alone advance time to the idle timeout."""
    idle_timeout_s = 2.0
    daemon = start_sniffd(f"tcp port {SILENT_PORT}", limits={"idle_timeout_s": idle_timeout_s})
    gateway.start(gateway.client, [PYTHON, "-c", IN_FLIGHT_CLIENT, SERVER_IP, str(SILENT_PORT)], "")
    sent = time.time()
    out = log_dir / "http.jsonl"
    # Idle timeout, plus up to 1 s until the next expiry pass, plus the flush interval.
    records = wait_for(lambda: read_records([out]) if out.exists() else [], idle_timeout_s + 2 + 2)
    waited = time.time() - sent
    assert [("/in-flight", None)] == [(r["request"]["uri"], r["response"]) for r in records], daemon.stderr()
    assert "idle_timeout" in records[0]["anomalies"]
    assert "cut_by_shutdown" not in records[0]["anomalies"]
    assert idle_timeout_s <= waited <= idle_timeout_s + 3.5
    rc, _ = daemon.stop()
    assert 0 == rc


# --- the output under faults: a full disk, the log directory removed -------------------


def shutdown_summary(daemon: Daemon) -> dict:
    summary = daemon.named("shutdown")
    assert summary, daemon.stderr()
    return summary[-1]


def assert_records_are_the_client_s(truth: list[dict], records: list[dict]) -> None:
    """Every transaction the client made is in records once, with its URI; nothing else."""
    expected = Counter(key(t["client_port"], t["trans_depth"]) for t in truth)
    got = Counter(key(r["client"]["port"], r["trans_depth"]) for r in records)
    assert [] == sorted((expected - got).elements()), "transactions missing"
    assert [] == sorted((got - expected).elements()), "records duplicated or not made by the client"
    by_key = {key(r["client"]["port"], r["trans_depth"]): r for r in records}
    assert [t["uri"] for t in truth] == [by_key[key(t["client_port"], t["trans_depth"])]["request"]["uri"] for t in truth]


@pytest.fixture
def tiny_log_fs(log_dir, sniffd_user):
    """The log directory on a 512 KiB tmpfs, owned by the sniffd user, with a
    filler file that leaves ~70 KiB: about a third of 300 records."""
    run("mount", "-t", "tmpfs", "-o", "size=512k,mode=0750", "tmpfs", str(log_dir))
    os.chown(log_dir, sniffd_user.pw_uid, sniffd_user.pw_gid)
    (log_dir / "filler").write_bytes(b"\0" * 440 * 1024)
    yield log_dir
    run("umount", "-l", str(log_dir), check=False)


def free_space_and_stop(daemon: Daemon, log_dir: Path) -> None:
    """Delete the filler; the output resumes by itself; stop sniffd (exit 0)."""
    (log_dir / "filler").unlink()
    assert wait_for(lambda: daemon.named("output_resumed"), 10), daemon.stderr()
    time.sleep(SETTLE_S)
    rc, _ = daemon.stop()
    assert 0 == rc, daemon.stderr()


def test_disk_full_blocks_without_a_torn_record_and_resumes_when_space_is_freed(gateway, start_sniffd, tiny_log_fs):
    log_dir = tiny_log_fs
    out = log_dir / "http.jsonl"
    daemon = start_sniffd(f"tcp port {HTTP_PORT}")
    spec = {"server": SERVER_IP, "connections": connections(HTTP_PORT, 100, 3), "pause_s": 0.01}
    result: dict = {}
    client = threading.Thread(target=lambda: result.update(truth=run_client(gateway, spec)))
    client.start()
    assert wait_for(lambda: daemon.named("output_blocked"), 60), f"the disk never filled: {daemon.stderr()}"
    # While blocked: whole records only, and the stats count exactly those.
    blocked_at = read_records([out])
    assert 0 < len(blocked_at) < 300
    client.join(120)
    truth = result["truth"]
    stats = wait_for(lambda: [e for e in daemon.named("stats") if e["output_state"] == "blocked" and e["records_held"] > 0], 5)
    assert stats, daemon.stderr()
    assert len(read_records([out])) == stats[-1]["records_written"]
    free_space_and_stop(daemon, log_dir)

    records = read_records([out])
    assert 300 == len(truth)
    assert_records_are_the_client_s(truth, records)
    summary = shutdown_summary(daemon)
    assert (300, 0, 0, "ok") == (summary["records_written"], summary["records_lost"], summary["records_held"], summary["output_state"])
    assert [{"error": os.strerror(28)}] == [{"error": e["error"]} for e in daemon.named("output_blocked")]
    assert [0] == [e["records_lost"] for e in daemon.named("output_resumed")]


def test_disk_full_beyond_the_backlog_counts_every_record_lost(gateway, start_sniffd, tiny_log_fs):
    """A backlog too small for the outage: on disk + records_lost = what the client did, exactly."""
    log_dir = tiny_log_fs
    out = log_dir / "http.jsonl"
    daemon = start_sniffd(f"tcp port {HTTP_PORT}", {"backlog_mb": 0.02})
    spec = {"server": SERVER_IP, "connections": connections(HTTP_PORT, 100, 3), "pause_s": 0.01}
    truth = run_client(gateway, spec)
    assert wait_for(lambda: [e for e in daemon.named("stats") if e["records_lost"] > 0], 10), daemon.stderr()
    free_space_and_stop(daemon, log_dir)

    records = read_records([out])
    summary = shutdown_summary(daemon)
    assert (len(records), 300) == (summary["records_written"], summary["records_written"] + summary["records_lost"])
    assert 300 == len(truth)
    made = {key(t["client_port"], t["trans_depth"]) for t in truth}
    assert made >= {key(r["client"]["port"], r["trans_depth"]) for r in records}
    assert summary["records_lost"] == daemon.named("output_resumed")[0]["records_lost"] > 0


def test_log_directory_removed_under_traffic_loses_nothing_silently(gateway, start_sniffd, log_dir, sniffd_user):
    """rm -rf of the log directory, recreated by the operator 4 s later: the
    records written before are in the deleted file (read through a descriptor
    the test kept open), the ones after in the new file; none lost, none twice."""
    out = log_dir / "http.jsonl"
    daemon = start_sniffd(f"tcp port {HTTP_PORT}")
    spec = {"server": SERVER_IP, "connections": connections(HTTP_PORT, 150, 3), "pause_s": 0.03}
    result: dict = {}
    client = threading.Thread(target=lambda: result.update(truth=run_client(gateway, spec)))
    client.start()
    assert wait_for(lambda: out.exists() and out.stat().st_size > 0, 20), daemon.stderr()
    time.sleep(1.0)
    with open(out, "rb") as old:
        shutil.rmtree(log_dir)
        time.sleep(4.0)
        # sniffd (user sniffd) may not create it under a root-owned parent:
        # it has held the records since it noticed.
        assert daemon.named("output_blocked"), daemon.stderr()
        log_dir.mkdir(mode=0o750)
        os.chown(log_dir, sniffd_user.pw_uid, sniffd_user.pw_gid)
        client.join(120)
        truth = result["truth"]
        assert wait_for(lambda: daemon.named("output_resumed"), 10), daemon.stderr()
        time.sleep(SETTLE_S)
        rc, _ = daemon.stop()
        assert 0 == rc, daemon.stderr()
        before = old.read()
    assert before.endswith(b"\n")
    deleted = tmp_copy = log_dir.parent / "deleted-file.jsonl"
    tmp_copy.write_bytes(before)
    records = read_records([deleted, out])
    assert 450 == len(truth)
    assert_records_are_the_client_s(truth, records)
    summary = shutdown_summary(daemon)
    assert (450, 0) == (summary["records_written"], summary["records_lost"])
    assert ["removed"] == [e["reason"] for e in daemon.named("reopened")]


# --- TLS -------------------------------------------------------------------------------

TLS_PORT = 8443  # no HTTP server here: only a ClientHello can make it a TLS record
TLS_SNI = "tls.gateway.test"
TLS_SERVER = r"""
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(8)
print("listening", flush=True)
while True:
    conn, _ = srv.accept()
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
        tls.sendall(tls.recv(100))
        tls.close()
    except (OSError, ssl.SSLError):
        conn.close()
"""
TLS_CLIENT = r"""
import json, socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.set_alpn_protocols(["h2", "http/1.1"])
raw = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
tls = ctx.wrap_socket(raw, server_hostname=sys.argv[3])
tls.sendall(b"ping")
assert tls.recv(100) == b"ping"
out = {"client_port": tls.getsockname()[1], "version": tls.version(), "cipher": tls.cipher()[0]}
tls.close()
print(json.dumps(out))
"""


def test_tls_connection_through_the_gateway_gets_one_tls_record(gateway, start_sniffd, log_dir, tmp_path):
    """A TLS 1.3 exchange (python ssl both ends) on a port the filter lets through: one
    kind "tls" record, with what the client says it negotiated."""
    cert, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key_file), "-out", str(cert), "-days", "1", "-subj", f"/CN={TLS_SNI}")
    gateway.start(gateway.server, [PYTHON, "-c", TLS_SERVER, SERVER_IP, str(TLS_PORT), str(cert), str(key_file)], "listening")
    daemon = start_sniffd(f"tcp port {HTTP_PORT} or tcp port {TLS_PORT}")
    proc = subprocess.run(in_ns(gateway.client, PYTHON, "-c", TLS_CLIENT, SERVER_IP, str(TLS_PORT), TLS_SNI),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"client failed: {proc.stderr}"
    truth = json.loads(proc.stdout)
    out = log_dir / "http.jsonl"
    assert wait_for(lambda: out.exists() and read_records([out]), RECORD_LATENCY_S + 3), daemon.stderr()
    time.sleep(SETTLE_S)
    records = read_records([out])
    assert [
        {"kind": "tls", "client": {"ip": CLIENT_IP, "port": truth["client_port"]}, "server": {"ip": SERVER_IP, "port": TLS_PORT},
         "version": truth["version"], "cipher": truth["cipher"], "sni": TLS_SNI, "alpn_offered": ["h2", "http/1.1"],
         "established": True, "end_reason": "fin", "anomalies": []}
    ] == [
        {"kind": r["kind"], "client": r["client"], "server": r["server"], "version": r["tls"]["version"],
         "cipher": r["tls"]["cipher"], "sni": r["tls"]["sni"], "alpn_offered": r["tls"]["alpn_offered"],
         "established": r["tls"]["established"], "end_reason": r["end_reason"], "anomalies": r["anomalies"]}
        for r in records
    ]
    rc, _ = daemon.stop()
    assert 0 == rc, daemon.stderr()
