"""`sniffd run` with `[capture] workers = 2` on the namespace gateway of test_daemon_gateway.

N capture processes share g1 through one kernel PACKET_FANOUT_HASH group; the
parent writes all their records to the one file.  What must hold: the
kernel's hash keeps both directions of a connection (and an IPv4 datagram
that came in fragments) on one capture, so every transaction is logged once,
paired; lines are whole; both workers really work; SIGTERM flushes what is in
flight; every process runs unprivileged; a worker that dies takes the daemon
down with a non-zero status (systemd restarts it).  The answer key comes from
the client (tests/httpgen.py), never from sniffd.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from test_daemon_gateway import (  # noqa: F401  (fixtures: gateway, sniffd_user, log_dir)
    CLIENT_IP,
    HTTP_PORT,
    IN_FLIGHT_CLIENT,
    PYTHON,
    REPO,
    SERVER_IP,
    SETTLE_S,
    SILENT_PORT,
    SNIFFD,
    SNIFFD_USER,
    STOP_TIMEOUT_S,
    Daemon,
    connections,
    gateway,
    in_ns,
    key,
    log_dir,
    read_records,
    run_client,
    sniffd_user,
    wait_for,
)

pytestmark = pytest.mark.live

WORKERS = 2

# Ports the raw-socket flow of the fragment test uses (nothing listens on the
# client side; the server answers the stray ACKs with RSTs, which is fine).
RAW_SPORT = 40999

# Opens two captures in one fanout group on g1 (as sniffd does), prints
# "ready", collects until a line arrives on stdin, then prints one JSON list:
# [capture, src, dst, sport, dport, ip_total_length, ip_flags_and_offset] per
# IPv4 frame (ports 0 for a fragment).
FANOUT_PROBE = r"""
import json, select, socket, struct, sys
sys.path.insert(0, sys.argv[1])
from sniffd.capture import open_fanout
caps, group = open_fanout("g1", 2, bpf=sys.argv[2], read_timeout_ms=20, buffer_bytes=8 << 20)
print("ready", group, flush=True)
seen = []
def drain():
    for k, cap in enumerate(caps):
        while True:
            batch = cap.next_batch(512)
            if batch is None:
                break
            for _ts, frame in batch.frames():
                if frame[12:14] != b"\x08\x00":
                    continue
                ip = frame[14:]
                ihl = (ip[0] & 15) * 4
                total, frag = struct.unpack_from("!H2xH", ip, 2)
                ports = struct.unpack_from("!HH", ip, ihl) if ip[9] == 6 and frag & 0x3FFF == 0 else (0, 0)
                seen.append([k, socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), *ports, total, frag])
while not select.select([sys.stdin], [], [], 0)[0]:
    drain()
drain()
print(json.dumps(seen), flush=True)
"""

# From the client namespace: three bare ACKs, then one 400-byte segment sent
# as two IPv4 fragments, all of one made-up flow to the server's HTTP port.
FRAGMENT_SENDER = r"""
import socket, struct, sys
sys.path.insert(0, sys.argv[1])
import dpkt
src, dst, sport, dport = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def datagram(seq, payload, ident):
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=1, flags=dpkt.tcp.TH_ACK, data=payload)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=6, ttl=64, id=ident, data=tcp)
    return bytes(ip)
def header(ident, flags_offset, length):
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, ident, flags_offset, 64, 6, 0,
                       socket.inet_aton(src), socket.inet_aton(dst))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(3):
    raw.sendto(datagram(1000 + i, b"", 7000 + i), (dst, 0))
body = datagram(2000, b"x" * 400, 4242)[20:]
cut = 208  # a multiple of 8
raw.sendto(header(4242, 0x2000, cut) + body[:cut], (dst, 0))  # MF, offset 0
raw.sendto(header(4242, cut // 8, len(body) - cut) + body[cut:], (dst, 0))
print("sent", flush=True)
"""


@pytest.fixture
def start_workers(gateway, log_dir):
    """``start(bpf, workers=2, output=None) -> Daemon``, the config written as an operator would."""
    daemons: list[Daemon] = []

    def start(bpf_filter: str, workers: int = WORKERS, output: dict | None = None) -> Daemon:
        out = {"path": str(log_dir / "http.jsonl"), "rotate_bytes": 0, "keep_files": 1000, "flush_interval_s": 1.0}
        out.update(output or {})
        config = log_dir.parent / "sniffd.toml"
        config.write_text(
            "\n".join(
                [
                    "[capture]",
                    'interface = "g1"',
                    f"bpf_filter = {json.dumps(bpf_filter)}",
                    f"workers = {workers}",
                    "[output]",
                    *(f"{k} = {json.dumps(v)}" for k, v in out.items()),
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
        for pid in worker_pids(daemon):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        daemon.kill()


def worker_pids(daemon: Daemon) -> list[int]:
    start = daemon.named("start")
    return list(start[0]["worker_pids"]) if start else []


def proc_status(pid: int) -> dict[str, list[str]]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in text.splitlines()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- the kernel's fanout hash --------------------------------------------------------


def test_fanout_hash_keeps_both_directions_and_fragments_of_a_flow_on_one_capture(gateway):
    """Checks the claim sniffd relies on, with the kernel's own hash (no daemon):
    every frame of a connection, either direction, lands on the same capture of
    the group, and an IPv4 datagram sent as fragments arrives reassembled there."""
    bpf = f"tcp port {HTTP_PORT} or (ip[6:2] & 0x3fff != 0)"
    probe = subprocess.Popen(
        in_ns(gateway.gw, PYTHON, "-c", FANOUT_PROBE, str(REPO), bpf),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    gateway.procs.append(probe)
    assert probe.stdout is not None and probe.stdin is not None
    ready = probe.stdout.readline()
    assert ready.startswith("ready"), probe.stderr.read() if probe.stderr else ready
    truth = run_client(gateway, {"server": SERVER_IP, "connections": connections(HTTP_PORT, 40, 2)})
    sent = subprocess.run(
        in_ns(gateway.client, PYTHON, "-c", FRAGMENT_SENDER, str(REPO), CLIENT_IP, SERVER_IP, str(RAW_SPORT), str(HTTP_PORT)),
        capture_output=True, text=True, timeout=30,
    )
    assert "sent" in sent.stdout, sent.stderr
    time.sleep(0.3)
    out, err = probe.communicate("stop\n", timeout=30)
    frames = json.loads(out.strip().splitlines()[-1])

    captures_of: dict[tuple, set[int]] = {}
    for k, src, dst, sport, dport, _total, _frag in frames:
        if sport:
            flow = tuple(sorted([(src, sport), (dst, dport)]))
            captures_of.setdefault(flow, set()).add(k)
    client_flows = {tuple(sorted([(CLIENT_IP, t["client_port"]), (SERVER_IP, HTTP_PORT)])) for t in truth}
    assert client_flows <= set(captures_of), "the probe missed connections the client made"
    assert {} == {flow: ks for flow, ks in captures_of.items() if len(ks) != 1}, "a flow was split between captures"
    assert {0, 1} == {next(iter(captures_of[f])) for f in client_flows}, "one capture got every connection"

    raw_flow = tuple(sorted([(CLIENT_IP, RAW_SPORT), (SERVER_IP, HTTP_PORT)]))
    assert [] == [f for f in frames if f[6] & 0x3FFF], "a fragment reached a capture unreassembled"
    whole = [f for f in frames if f[1] == CLIENT_IP and f[3] == RAW_SPORT and f[5] == 20 + 20 + 400]
    assert 1 == len(whole), f"the fragmented datagram did not arrive once, whole: {whole}"
    assert captures_of[raw_flow] == {whole[0][0]}


def test_a_group_opened_under_traffic_splits_no_flow():
    """Packets a capture took in before it joined the group (between opening
    and its reject-all filter) must never be handed over: they include flows
    the kernel's hash gives to another member, which would then be split
    between two captures (seen: a request logged by one worker with
    response_missing, its response by the other with request_missing).
    Loopback, 64 UDP flows flooding while the group forms."""
    from sniffd.capture import open_fanout

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    senders = []
    for _ in range(64):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        senders.append(s)
    ours = {s.getsockname()[1] for s in senders}
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            for s in senders:
                s.sendto(b"x", ("127.0.0.1", port))
            while True:  # keep the receive buffer from filling
                try:
                    sink.recv(64, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        time.sleep(0.1)
        caps, _group = open_fanout("lo", 2, bpf=f"udp dst port {port}", read_timeout_ms=20, buffer_bytes=8 << 20)
        captures_of: dict[int, set[int]] = {}
        until = time.monotonic() + 0.3
        try:
            while time.monotonic() < until:
                for k, cap in enumerate(caps):
                    batch = cap.next_batch(512)
                    for _ts, frame in batch.frames() if batch is not None else ():
                        ip = frame[14:]
                        sport = int.from_bytes(ip[(ip[0] & 15) * 4:][:2], "big")
                        captures_of.setdefault(sport, set()).add(k)
        finally:
            for cap in caps:
                cap.close()
    finally:
        stop.set()
        flooder.join(5)
        for s in [sink, *senders]:
            s.close()
    assert ours <= set(captures_of), "the captures missed flows"
    assert {} == {p: ks for p, ks in captures_of.items() if len(ks) != 1}, "a flow was split between captures"


# --- the daemon ------------------------------------------------------------------------


def test_two_workers_log_every_transaction_once_paired_on_whole_lines(gateway, start_workers, log_dir):
    daemon = start_workers(f"tcp port {HTTP_PORT}", output={"rotate_bytes": 65536})
    spec = {"server": SERVER_IP, "connections": connections(HTTP_PORT, 40, 4)}
    truth = run_client(gateway, spec)
    time.sleep(SETTLE_S)
    rc, _ = daemon.stop()
    assert 0 == rc, daemon.stderr()

    files = sorted(log_dir.iterdir())
    records = read_records(files)  # fails on a torn or unparsable line
    assert 160 == len(truth)
    expected = Counter(key(t["client_port"], t["trans_depth"]) for t in truth)
    got = Counter(key(r["client"]["port"], r["trans_depth"]) for r in records)
    assert [] == sorted((expected - got).elements()), "transactions missing"
    assert [] == sorted((got - expected).elements()), "records duplicated or not made by the client"
    by_key = {key(r["client"]["port"], r["trans_depth"]): r for r in records}
    assert [(t["method"], t["uri"], t["status"], t["request_body_len"], t["response_body_len"], []) for t in truth] == [
        (r["request"]["method"], r["request"]["uri"], r["response"]["status"], r["request"]["body_len"], r["response"]["body_len"], r["anomalies"])
        for r in (by_key[key(t["client_port"], t["trans_depth"])] for t in truth)
    ]
    assert len(files) >= 2, "built-in rotation did not run in the parent"
    # Both workers name the interface; a connection's records share one uid,
    # and no two connections (whichever worker logged them) share one.
    assert {"g1"} == {r["interface"] for r in records}
    uids = {}
    for r in records:
        uids.setdefault(r["client"]["port"], set()).add(r["uid"])
    assert (40, [1] * 40) == (len({r["uid"] for r in records}), [len(u) for u in uids.values()])

    summary = daemon.named("shutdown")[-1]
    per_worker = summary["per_worker"]
    assert (2, [0, 1]) == (summary["workers"], [w["worker"] for w in per_worker])
    assert all(w["packets"] > 0 and w["records"] > 0 for w in per_worker), per_worker
    assert sum(w["packets"] for w in per_worker) == summary["packets"]
    assert (160, 160, 0, 0, 0) == (
        summary["records"], summary["records_written"], summary["records_lost"], summary["kernel_drops"], summary["queue_drops"]
    )
    assert [] == daemon.named("worker_failed") + daemon.named("processing_failed")


def test_sigterm_with_two_workers_writes_the_in_flight_request_and_leaves_no_process(gateway, start_workers, log_dir):
    daemon = start_workers(f"tcp port {SILENT_PORT}")
    pids = worker_pids(daemon)
    assert 2 == len(pids) and all(alive(pid) for pid in pids)
    gateway.start(gateway.client, [PYTHON, "-c", IN_FLIGHT_CLIENT, SERVER_IP, str(SILENT_PORT)], "")
    time.sleep(0.3)  # the request is on the wire; no answer will ever come
    rc, elapsed = daemon.stop(signal.SIGTERM)
    assert 0 == rc, daemon.stderr()
    assert elapsed < STOP_TIMEOUT_S
    assert [] == [pid for pid in pids if alive(pid)], "a worker outlived the parent"

    records = read_records([log_dir / "http.jsonl"])
    assert [("GET", "/in-flight", None, "shutdown")] == [
        (r["request"]["method"], r["request"]["uri"], r["response"], r["end_reason"]) for r in records
    ]
    assert "cut_by_shutdown" in records[0]["anomalies"]
    summary = daemon.named("shutdown")
    assert summary, daemon.stderr()
    assert (1, 1) == (summary[-1]["records_written"], summary[-1]["anomalies"].get("cut_by_shutdown"))
    assert [] == daemon.named("worker_failed")


def test_every_worker_process_runs_unprivileged(start_workers, sniffd_user, log_dir):
    daemon = start_workers(f"tcp port {HTTP_PORT}")
    assert daemon.proc is not None
    pids = worker_pids(daemon)
    assert 2 == len(pids)
    uid, gid = str(sniffd_user.pw_uid), str(sniffd_user.pw_gid)
    unprivileged = {"Uid": [uid] * 4, "Gid": [gid] * 4, "Groups": [], "CapPrm": ["0" * 16], "CapEff": ["0" * 16], "CapAmb": ["0" * 16]}
    for pid in [daemon.proc.pid, *pids]:
        fields = proc_status(pid)
        assert unprivileged == {k: fields[k] for k in unprivileged}, f"pid {pid}"
    assert [str(daemon.proc.pid)] * 2 == [proc_status(pid)["PPid"][0] for pid in pids]
    children = Path(f"/proc/{daemon.proc.pid}/task/{daemon.proc.pid}/children")
    if children.exists():
        assert sorted(pids) == sorted(int(p) for p in children.read_text().split())
    assert sniffd_user.pw_uid == (log_dir / "http.jsonl").stat().st_uid
    rc, _ = daemon.stop(signal.SIGINT)
    assert 0 == rc, daemon.stderr()


def test_start_under_traffic_logs_no_transaction_twice(gateway, start_workers, log_dir):
    """Captures opened while traffic flows: no packet may reach two workers
    (each capture rejects everything until the whole group is formed)."""
    result: dict = {}
    spec = {"server": SERVER_IP, "connections": connections(HTTP_PORT, 400, 1, start=1000), "pause_s": 0.01}
    client = threading.Thread(target=lambda: result.update(truth=run_client(gateway, spec)))
    client.start()
    time.sleep(0.3)
    daemon = start_workers(f"tcp port {HTTP_PORT}")
    assert client.is_alive(), "the traffic ended before the captures opened: nothing was tested"
    client.join(60)
    time.sleep(SETTLE_S)
    rc, _ = daemon.stop()
    assert 0 == rc, daemon.stderr()
    records = read_records([log_dir / "http.jsonl"])
    got = Counter(key(r["client"]["port"], r["trans_depth"]) for r in records)
    expected = {key(t["client_port"], t["trans_depth"]) for t in result["truth"]}
    assert records, "nothing logged"
    twice = {k for k, n in got.items() if n > 1}
    shown = [r for r in records if key(r["client"]["port"], r["trans_depth"]) in twice]
    assert not twice, f"a transaction was logged twice: {json.dumps(shown)}"
    assert set() == set(got) - expected


def test_a_worker_killed_stops_the_daemon_with_status_1(start_workers):
    daemon = start_workers(f"tcp port {HTTP_PORT}")
    assert daemon.proc is not None
    victim, other = worker_pids(daemon)
    os.kill(victim, signal.SIGKILL)
    try:
        rc = daemon.proc.wait(STOP_TIMEOUT_S + 5)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the parent kept running without a worker: {daemon.stderr()}") from None
    assert 1 == rc
    assert not alive(other)
    failed = wait_for(lambda: daemon.named("worker_failed"), 2)
    assert [(victim, "died", "SIGKILL")] == [(e["pid"], e["reason"], e.get("signal")) for e in failed]
    assert wait_for(lambda: daemon.named("shutdown"), 2), daemon.stderr()


def test_workers_flag_out_of_range_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run(
        [str(SNIFFD), "check", "-i", "lo", "--user", "", "-o", str(tmp_path / "x.jsonl"), "--workers", "0"],
        capture_output=True, text=True, timeout=30,
    )
    assert (2, ["sniffd: error: --workers: must be between 1 and 64, got 0"]) == (proc.returncode, proc.stderr.splitlines())
