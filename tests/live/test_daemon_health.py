"""Metrics and health of the real `sniffd run` on the namespace gateway of test_daemon_gateway.

The /metrics endpoint is scraped with a real HTTP GET from inside the gateway
namespace while real traffic crosses it; its numbers are checked against the
client's own count of transactions (tests/httpgen.py), against tcpdump's count
of the packets on the same interface and filter, and against the daemon's own
`stats` and `shutdown` events.  systemd's notification protocol is received on
a datagram socket the test binds (as systemd's is), with WATCHDOG_USEC set as
systemd sets it; the processing loop is wedged for real by an output FIFO
nobody reads (the sink's write blocks), and a fan-out worker by SIGSTOP.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from tests.live.conftest import TcpdumpCapture
from prometheus_client.parser import text_string_to_metric_families
from test_daemon_gateway import (  # noqa: F401  (fixtures: gateway, sniffd_user, log_dir)
    HTTP_PORT,
    PYTHON,
    SERVER_IP,
    SETTLE_S,
    SNIFFD_USER,
    START_TIMEOUT_S,
    Daemon,
    connections,
    gateway,
    in_ns,
    log_dir,
    read_records,
    run_client,
    sniffd_user,
    wait_for,
)

pytestmark = pytest.mark.live

METRICS_PORT = 9853  # the default; each gateway namespace has its own loopback

# Fetches http://127.0.0.1:PORT/metrics from inside the gateway namespace and
# prints the status, the content type and the body.
SCRAPE = r"""
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10) as r:
    print(r.status)
    print(r.headers["Content-Type"])
    sys.stdout.write(r.read().decode())
"""

# The duration buckets' upper bounds in seconds, written out here (not taken
# from sniffd.metrics) so a change there is a change the test notices.
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# systemd's watchdog period as the tests set it: sniffd pings every half of it.
WATCHDOG_USEC = 1_000_000


@pytest.fixture
def start_daemon(gateway, log_dir):
    """``start(workers=1, output=None, metrics=None, env=None, wait_start=True) -> Daemon``."""
    daemons: list[Daemon] = []

    def start(workers: int = 1, output: dict | None = None, metrics: dict | None = None,
              env: dict | None = None) -> Daemon:
        out = {"path": str(log_dir / "http.jsonl"), "rotate_bytes": 0, "flush_interval_s": 0.2}
        out.update(output or {})
        met = {"listen": f"127.0.0.1:{METRICS_PORT}"}
        met.update(metrics or {})
        config = log_dir.parent / "sniffd.toml"
        config.write_text("\n".join([
            "[capture]",
            'interface = "g1"',
            f'bpf_filter = "tcp port {HTTP_PORT}"',
            f"workers = {workers}",
            "[output]",
            *(f"{k} = {json.dumps(v)}" for k, v in out.items()),
            "[metrics]",
            *(f"{k} = {json.dumps(v)}" for k, v in met.items()),
            "[privileges]",
            f'user = "{SNIFFD_USER}"',
            "[stats]",
            "interval_s = 1.0",
            "",
        ]))
        daemon = Daemon(gateway, config, env).start()
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.kill()


def scrape(gateway, port: int = METRICS_PORT) -> dict[str, dict[tuple, float]]:
    """GET /metrics in the gateway namespace; {metric family: {labels (sorted items): value}}."""
    proc = subprocess.run(in_ns(gateway.gw, PYTHON, "-c", SCRAPE, str(port)), capture_output=True, text=True, timeout=30)
    assert 0 == proc.returncode, proc.stderr
    status, content_type, body = proc.stdout.split("\n", 2)
    assert "200" == status
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    return parse(body)


def parse(text: str) -> dict[str, dict[tuple, float]]:
    """Prometheus text format, read by prometheus_client's own parser."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def one(metrics: dict, name: str) -> float:
    (value,) = metrics[name].values()
    return value


class NotifySocket:
    """A datagram socket where sniffd's sd_notify messages arrive, as systemd's does.

    Each message is kept with its arrival time and its sender's pid and uid,
    which the kernel attaches (SO_PASSCRED: what systemd checks NotifyAccess by).
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o777)  # sniffd sends after dropping to its user
        self.messages: list[tuple[float, list[str]]] = []
        self.senders: list[tuple[int, int]] = []  # (pid, uid) of each message
        self.on_ready: list = []
        self._stop = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except TimeoutError:
                continue
            except OSError:
                return
            for level, kind, value in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                    pid, uid, _gid = struct.unpack("iII", value[:12])
                    self.senders.append((pid, uid))
            lines = data.decode().split("\n")
            if "READY=1" in lines:
                for hook in self.on_ready:
                    hook()
            self.messages.append((time.monotonic(), lines))

    def times(self, assignment: str) -> list[float]:
        return [t for t, lines in self.messages if assignment in lines]

    def statuses(self) -> list[str]:
        return [line for _, lines in self.messages for line in lines if line.startswith("STATUS=")]

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def notify_socket(log_dir):
    base = log_dir.parent
    sock = NotifySocket(base)
    yield sock
    sock.close()


def stats_settled(daemon: Daemon, records: int) -> dict:
    """The first stats event with every record written and no packet since the previous one."""
    def settled():
        events = daemon.named("stats")
        if len(events) >= 2 and events[-1]["records_written"] >= records and events[-1]["packets"] == events[-2]["packets"]:
            return events[-1]
        return None

    event = wait_for(settled, 15)
    assert event, f"stats never settled: {daemon.stderr()}"
    return event


def listening_socket_inode(pid: int, port: int) -> str:
    """The inode of the TCP socket listening on 127.0.0.1:port, from the process's own /proc/net/tcp (its namespace)."""
    with open(f"/proc/{pid}/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == f"0100007F:{port:04X}" and cols[3] == "0A":  # LISTEN
                return cols[9]
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} in the namespace of {pid}")


def socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def expected_buckets(durations_ms: list[float]) -> dict[str, int]:
    """Cumulative counts per upper bound (le), counted here from the records' duration_ms."""
    out = {repr(b): sum(1 for d in durations_ms if d / 1000.0 <= b) for b in BUCKETS_S}
    out["+Inf"] = len(durations_ms)
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_endpoint_counts_the_gateway_traffic_and_matches_the_stats_event(gateway, start_daemon, log_dir, workers):
    """A real scrape while the daemon runs: records by end_reason is the client's
    transaction count, packets at least what tcpdump saw on g1 with the same
    filter, the rest equal to the daemon's own stats event; with two workers,
    the sums.  The textfile written at shutdown equals the shutdown event."""
    textfile = log_dir / "sniffd.prom"
    daemon = start_daemon(workers=workers, metrics={"textfile": str(textfile), "textfile_interval_s": 1.0})
    tcpdump = TcpdumpCapture(log_dir.parent / "g1.pcap", f"tcp port {HTTP_PORT}", interface="g1")
    tcpdump.argv = in_ns(gateway.gw, *tcpdump.argv)
    tcpdump.start()
    try:
        truth = run_client(gateway, {"server": SERVER_IP, "connections": connections(HTTP_PORT, 8, 3)})
        out = log_dir / "http.jsonl"
        assert wait_for(lambda: out.exists() and len(read_records([out])) >= len(truth), 10), daemon.stderr()
        time.sleep(SETTLE_S)
    finally:
        counters = tcpdump.stop()
    assert 0 == counters.get("dropped", 0), tcpdump.stderr_text()
    assert 24 == len(truth)
    event = stats_settled(daemon, len(truth))
    time.sleep(1.2)  # a metrics snapshot taken after that event (they are refreshed every second)
    m = scrape(gateway)

    assert {(("end_reason", "complete"),): 24.0} == m["sniffd_records_total"]
    assert 24 == one(m, "sniffd_records_written_total")
    assert one(m, "sniffd_packets_total") >= counters["captured"] > 0
    # The rest, as the daemon's own stats event says (nothing moved since).
    for field, name in (("packets", "sniffd_packets_total"), ("bytes", "sniffd_bytes_total"),
                        ("kernel_received", "sniffd_kernel_received_packets_total"),
                        ("kernel_drops", "sniffd_kernel_drops_total"), ("queue_drops", "sniffd_queue_drops_total"),
                        ("records_lost", "sniffd_records_lost_total"), ("open_connections", "sniffd_open_connections"),
                        ("records_written", "sniffd_records_written_total")):
        assert (field, event[field]) == (field, one(m, name))
    assert 0 == event["kernel_drops"] + event["queue_drops"] + event["records_lost"]
    assert {name: n for name, n in event["anomalies"].items()} == {
        dict(labels)["name"]: v for labels, v in m.get("sniffd_anomalies_total", {}).items()}
    assert {(("state", "ok"),): 1.0, (("state", "blocked"),): 0.0} == m["sniffd_output_state"]
    assert workers == one(m, "sniffd_workers")
    assert 512 * 1024 * 1024 == one(m, "sniffd_memory_budget_bytes")  # the default budget, shared out and summed
    assert 0 <= one(m, "sniffd_memory_estimate_bytes") <= 512 * 1024 * 1024
    if workers > 1:
        per_worker = event["per_worker"]
        assert workers == len(per_worker)
        assert one(m, "sniffd_packets_total") == sum(w["packets"] for w in per_worker)
        # Only the parent holds the listening socket: a worker that kept it
        # would keep the port after the parent's death.
        listener = listening_socket_inode(daemon.proc.pid, METRICS_PORT)
        assert listener in socket_inodes(daemon.proc.pid)
        for w in per_worker:
            assert listener not in socket_inodes(w["pid"]), f"worker {w['worker']} holds the metrics socket"
    # The duration histogram against the records' own duration_ms.
    durations = [r["duration_ms"] for r in read_records([log_dir / "http.jsonl"])]
    buckets = {dict(labels)["le"]: v for labels, v in m["sniffd_record_duration_seconds_bucket"].items()}
    assert expected_buckets(durations) == buckets
    assert 24 == one(m, "sniffd_record_duration_seconds_count")
    assert abs(sum(durations) / 1000.0 - one(m, "sniffd_record_duration_seconds_sum")) < 1e-6

    rc, _ = daemon.stop()
    assert 0 == rc, daemon.stderr()
    (shutdown,) = daemon.named("shutdown")
    written = parse(textfile.read_text())
    assert {(("end_reason", "complete"),): 24.0} == written["sniffd_records_total"]
    for field, name in (("packets", "sniffd_packets_total"), ("records_written", "sniffd_records_written_total"),
                        ("open_connections", "sniffd_open_connections")):
        assert (field, shutdown[field]) == (field, one(written, name))
    assert [] == [p.name for p in log_dir.iterdir() if p.name.startswith("sniffd.prom.")], "a temporary file was left"


def test_sd_notify_ready_after_the_capture_is_open_then_watchdog_and_status(gateway, start_daemon, log_dir,
                                                                             sniffd_user, notify_socket):
    """READY=1 comes when the capture is open and privileges are dropped: at
    that instant the process already runs as the sniffd user, and a
    transaction made right then is logged.  Then WATCHDOG=1 every half
    WATCHDOG_USEC, STATUS= with rates at each stats tick, STOPPING=1 at SIGTERM."""
    seen_at_ready: dict = {}

    def at_ready() -> None:
        # Runs in the socket's thread as READY=1 arrives, before the next message is read.
        seen_at_ready["client"] = run_client(gateway, {"server": SERVER_IP, "connections": connections(HTTP_PORT, 1, 1, start=77)})

    notify_socket.on_ready.append(at_ready)
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    daemon = start_daemon(env=env)
    assert wait_for(lambda: "client" in seen_at_ready, 10), f"no READY=1: {notify_socket.messages} {daemon.stderr()}"
    ready_at = notify_socket.times("READY=1")
    assert 1 == len(ready_at)
    assert ["READY=1", "STATUS=capturing on g1"] == notify_socket.messages[0][1]
    # Every message came from the main process (NotifyAccess=main), already as the sniffd user.
    assert {(daemon.proc.pid, sniffd_user.pw_uid)} == set(notify_socket.senders)
    (made_at_ready,) = seen_at_ready["client"]
    out = log_dir / "http.jsonl"
    assert wait_for(lambda: out.exists() and any(r["request"]["uri"] == made_at_ready["uri"] for r in read_records([out])), 5), \
        "the transaction made when READY=1 arrived was not captured"
    time.sleep(3.0)
    pings = notify_socket.times("WATCHDOG=1")
    assert all(t >= ready_at[0] for t in pings)
    after = [t for t in pings if t > ready_at[0] + 0.5]
    gaps = [b - a for a, b in zip(after, after[1:])]
    assert len(after) >= 4, pings
    assert max(gaps) < WATCHDOG_USEC / 1e6, gaps  # every half period, never a whole one late
    statuses = notify_socket.statuses()
    assert statuses[0] == "STATUS=capturing on g1"
    assert any("packets/s" in s and "records/s" in s for s in statuses[1:]), statuses
    rc, _ = daemon.stop()
    assert 0 == rc
    assert notify_socket.times("STOPPING=1"), notify_socket.messages


def test_wedged_processing_loop_stops_the_watchdog_and_it_resumes_when_unwedged(gateway, start_daemon, log_dir, notify_socket):
    """The output is a FIFO whose reader never reads: once the pipe is full the
    sink's write blocks, the processing loop is stuck, and WATCHDOG=1 stops
    (systemd would restart sniffd).  The metrics endpoint still answers, its
    snapshot visibly old.  Reading the FIFO unblocks the loop: pings resume."""
    fifo = log_dir / "http.jsonl"
    os.mkfifo(fifo, 0o660)
    os.chown(fifo, *(lambda st: (st.st_uid, st.st_gid))(os.stat(log_dir)))
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)  # one page: a few records fill it
        env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
        daemon = start_daemon(output={"path": str(fifo)}, env=env)
        assert wait_for(lambda: len(notify_socket.times("WATCHDOG=1")) >= 3, 10), notify_socket.messages
        run_client(gateway, {"server": SERVER_IP, "connections": connections(HTTP_PORT, 4, 10, start=200)})
        time.sleep(4.0)
        wedged_from = time.monotonic() - 4.0
        late = [t for t in notify_socket.times("WATCHDOG=1") if t > wedged_from + 1.0]
        assert [] == late, "the watchdog was fed while the loop was stuck"
        m = scrape(gateway)
        assert time.time() - one(m, "sniffd_snapshot_timestamp_seconds") > 2.0
        # Unwedge: read everything the sink writes from now on.
        got = bytearray()
        unwedged_at = time.monotonic()
        deadline = unwedged_at + 5
        while time.monotonic() < deadline:
            try:
                got += os.read(reader, 1 << 16)
            except BlockingIOError:
                time.sleep(0.02)
        assert [t for t in notify_socket.times("WATCHDOG=1") if t > unwedged_at], "no ping after the loop was unstuck"
        assert 40 == got.count(b"\n")  # every record made it, none torn
        rc, _ = daemon.stop()
        assert 0 == rc, daemon.stderr()
    finally:
        os.close(reader)


def test_stopped_worker_stops_the_parents_watchdog(gateway, start_daemon, notify_socket):
    """With workers = 2 the parent notifies: READY=1 once both run, WATCHDOG=1
    only while every worker reports progress.  A worker stopped with SIGSTOP
    (its loop no longer turns) stops the pings; SIGCONT brings them back."""
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    daemon = start_daemon(workers=2, env=env)
    assert wait_for(lambda: notify_socket.times("READY=1") and len(notify_socket.times("WATCHDOG=1")) >= 3, 10), notify_socket.messages
    (start,) = daemon.named("start")
    worker = start["worker_pids"][0]
    os.kill(worker, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        time.sleep(8.0)  # the parent's progress window is 5 s
        pings = notify_socket.times("WATCHDOG=1")
        assert [] == [t for t in pings if t > stopped_at + 6.0], "pings went on with a worker stopped"
    finally:
        os.kill(worker, signal.SIGCONT)
    resumed_at = time.monotonic()
    assert wait_for(lambda: [t for t in notify_socket.times("WATCHDOG=1") if t > resumed_at], 5), "no ping after SIGCONT"
    rc, _ = daemon.stop()
    assert 0 == rc, daemon.stderr()
