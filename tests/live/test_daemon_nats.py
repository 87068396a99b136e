"""The real `sniffd run` daemon on the namespace gateway, publishing to a real `nats-server -js`.

The gateway, the client and the daemon are test_daemon_gateway.py's (sniffd
captures on g1 inside the gateway namespace and drops to the sniffd user).
The NATS server runs in the gateway namespace too, on its 127.0.0.1, with a
store directory of the test's: it is stopped and started again on the same
store under traffic.  What the stream holds is read by a nats-py pull
consumer run in that namespace (tests/natsserver.py dump); the answer key is
the client's (tests/httpgen.py), never sniffd's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest
from test_daemon_gateway import (  # noqa: F401  (fixtures)
    HTTP_PORT,
    SNIFFD_USER,
    Daemon,
    PYTHON,
    REPO,
    SERVER_IP,
    SNIFFD,
    connections,
    gateway,
    in_ns,
    key,
    log_dir,
    run_client,
    shutdown_summary,
    sniffd_user,
    start_sniffd,
    wait_for,
)

from tests.natsserver import NatsServer

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(NatsServer.available() is not None, reason=str(NatsServer.available()))]

SUBJECT = "gw.http"
STREAM = "HTTP"


@pytest.fixture
def nats_server(gateway, log_dir):
    """nats-server -js in the gateway namespace (127.0.0.1 there), its store in the test's directory."""
    srv = NatsServer(log_dir.parent / "nats-store", prefix=in_ns(gateway.gw)).start()
    in_gateway(gateway, "add-stream", srv.url, STREAM, SUBJECT)
    yield srv
    srv.stop()


def in_gateway(gateway, *args: str) -> str:
    proc = subprocess.run(in_ns(gateway.gw, PYTHON, "-m", "tests.natsserver", *args), capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert 0 == proc.returncode, proc.stderr
    return proc.stdout


def stored(gateway, srv: NatsServer) -> list[dict]:
    """Every message of the stream: {"seq", "msg_id", "data"}, read by a JetStream consumer."""
    return [json.loads(line) for line in in_gateway(gateway, "dump", srv.url, STREAM, SUBJECT).splitlines()]


def start_daemon(start_sniffd, srv: NatsServer, **output):
    return start_sniffd(f"tcp port {HTTP_PORT}", output={"path": f"{srv.url}/{SUBJECT}", **output})


def stop_when_acked(daemon) -> dict:
    """Wait until nothing is held (every record acknowledged), stop, return the shutdown summary."""
    assert wait_for(lambda: [e for e in daemon.named("stats") if e["records_held"] == 0 and e["records_written"] > 0
                             and e["output_state"] == "ok" and e is daemon.named("stats")[-1]], 30), daemon.stderr()
    time.sleep(1.6)  # a stats tick after the last record
    rc, _ = daemon.stop()
    assert 0 == rc, daemon.stderr()
    return shutdown_summary(daemon)


def records_of(msgs: list[dict]) -> list[dict]:
    return [json.loads(m["data"]) for m in msgs]


def assert_every_transaction_at_least_once(truth: list[dict], msgs: list[dict]) -> Counter:
    """Every transaction the client made is in the stream; nothing the client did not make;
    a record stored twice only as the same message (same id, same bytes): a re-send.
    Returns how many times each message id was stored."""
    made = Counter(key(t["client_port"], t["trans_depth"]) for t in truth)
    assert all(n == 1 for n in made.values())
    records = records_of(msgs)
    got = Counter(key(r["client"]["port"], r["trans_depth"]) for r in records)
    assert [] == sorted(set(made) - set(got)), "transactions missing"
    assert [] == sorted(set(got) - set(made)), "records the client did not make"
    by_id: dict[str, set[str]] = {}
    for m in msgs:
        by_id.setdefault(m["msg_id"], set()).add(m["data"])
    assert all(len(datas) == 1 for datas in by_id.values()), "one message id, two different records"
    assert len(by_id) == len(made), "a transaction under two message ids: a record made twice, not a re-send"
    uris = {key(r["client"]["port"], r["trans_depth"]): r["request"]["uri"] for r in records}
    assert [t["uri"] for t in truth] == [uris[key(t["client_port"], t["trans_depth"])] for t in truth]
    return Counter(m["msg_id"] for m in msgs)


def test_run_publishes_every_transaction_once_with_its_acks_counted(gateway, start_sniffd, nats_server):
    daemon = start_daemon(start_sniffd, nats_server)
    truth = run_client(gateway, {"server": SERVER_IP, "connections": connections(HTTP_PORT, 40, 3)})
    assert 120 == len(truth)
    summary = stop_when_acked(daemon)

    msgs = stored(gateway, nats_server)
    copies = assert_every_transaction_at_least_once(truth, msgs)
    assert 120 == len(msgs) == len(copies)
    assert (120, 0, 0, "ok") == (summary["records_written"], summary["records_lost"], summary["records_held"], summary["output_state"])
    assert [] == daemon.named("output_blocked")
    assert f"{nats_server.url}/{SUBJECT}" == daemon.named("start")[0]["output"]


def test_server_restart_under_traffic_loses_no_transaction(gateway, start_sniffd, nats_server):
    daemon = start_daemon(start_sniffd, nats_server)
    spec = {"server": SERVER_IP, "connections": connections(HTTP_PORT, 150, 2), "pause_s": 0.03}
    result: dict = {}
    client = threading.Thread(target=lambda: result.update(truth=run_client(gateway, spec)))
    client.start()
    # Stop the server once records flow, keep it away for 3 s, start it on the same store.
    assert wait_for(lambda: [e for e in daemon.named("stats") if e["records_written"] > 0], 20), daemon.stderr()
    nats_server.stop()
    assert wait_for(lambda: daemon.named("output_blocked"), 10), daemon.stderr()
    time.sleep(3)
    assert client.is_alive(), "the client must still be making traffic while the server comes back"
    nats_server.start()
    client.join(120)
    truth = result["truth"]
    assert wait_for(lambda: daemon.named("output_resumed"), 30), daemon.stderr()
    summary = stop_when_acked(daemon)

    msgs = stored(gateway, nats_server)
    copies = assert_every_transaction_at_least_once(truth, msgs)
    assert 300 == len(truth) == len(copies)
    # The duplicate window dropped every re-send the restarted server could
    # match; any other copy is a re-send of the same message, counted above.
    print(f"stored {len(msgs)} messages for {len(truth)} transactions; re-sends stored twice: "
          f"{sum(n - 1 for n in copies.values())}; write_errors (re-sent) {summary['write_errors']}")
    assert (300, 0, 0, "ok") == (summary["records_written"], summary["records_lost"], summary["records_held"], summary["output_state"])
    blocked, resumed = daemon.named("output_blocked"), daemon.named("output_resumed")
    assert 1 == len(blocked) == len(resumed), daemon.stderr()
    assert blocked[0]["error"].startswith("disconnected from nats://127.0.0.1:")
    assert 0 == resumed[0]["records_lost"]
    assert summary["reopens"] >= 1  # reconnections


def test_outage_beyond_a_tiny_buffer_counts_every_record_lost(gateway, start_sniffd, nats_server):
    """backlog_mb = 0.02 (~25 records): stored + records_lost = what the client made, exactly."""
    daemon = start_daemon(start_sniffd, nats_server, backlog_mb=0.02)
    nats_server.stop()
    assert wait_for(lambda: daemon.named("output_blocked"), 10), daemon.stderr()
    truth = run_client(gateway, {"server": SERVER_IP, "connections": connections(HTTP_PORT, 100, 3), "pause_s": 0.01})
    assert 300 == len(truth)
    assert wait_for(lambda: [e for e in daemon.named("stats") if e["records_lost"] > 0 and e["records"] == 300], 10), daemon.stderr()
    nats_server.start()
    assert wait_for(lambda: daemon.named("output_resumed"), 30), daemon.stderr()
    summary = stop_when_acked(daemon)

    msgs = stored(gateway, nats_server)
    records = records_of(msgs)
    made = {key(t["client_port"], t["trans_depth"]) for t in truth}
    arrived = {key(r["client"]["port"], r["trans_depth"]) for r in records}
    assert made >= arrived
    assert 0 < summary["records_lost"]
    assert (300, 0) == (len(arrived) + summary["records_lost"], summary["records_held"])
    assert summary["records_written"] == len({m["msg_id"] for m in msgs}) == len(arrived)
    assert summary["records_lost"] == daemon.named("output_resumed")[0]["records_lost"]


@pytest.fixture
def start_with_nats_keys(gateway, log_dir):
    """Like start_sniffd, with a [nats] section: ``start(srv, nats={...}, output={...}) -> Daemon``."""
    daemons: list[Daemon] = []

    def start(srv: NatsServer, nats: dict, output: dict | None = None, workers: int = 1) -> Daemon:
        out = {"path": f"{srv.url}/{SUBJECT}", **(output or {})}
        config = log_dir.parent / "sniffd.toml"
        config.write_text("\n".join([
            "[capture]", 'interface = "g1"', f'bpf_filter = "tcp port {HTTP_PORT}"', f"workers = {workers}",
            "[output]", *(f"{k} = {json.dumps(v)}" for k, v in out.items()),
            "[nats]", *(f"{k} = {json.dumps(v)}" for k, v in nats.items()),
            "[privileges]", f'user = "{SNIFFD_USER}"',
            "[stats]", "interval_s = 1.0", "",
        ]))
        daemon = Daemon(gateway, config).start()
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.kill()


def test_publishes_without_ack_are_sent_again_and_the_stream_keeps_one_copy(gateway, start_with_nats_keys, nats_server):
    """The server frozen (SIGSTOP): the connection stays up, no ack comes; after
    ack_timeout_s each record is published again under its message id.  Thawed
    (SIGCONT), the server stores the first copies and its duplicate window
    drops the re-sends: every transaction once, nothing lost."""
    daemon = start_with_nats_keys(nats_server, {"ack_timeout_s": 1.0})
    assert nats_server.proc is not None
    os.kill(nats_server.proc.pid, signal.SIGSTOP)  # `ip netns exec` execs: this is nats-server
    try:
        truth = run_client(gateway, {"server": SERVER_IP, "connections": connections(HTTP_PORT, 30, 2)})
        assert wait_for(lambda: [e for e in daemon.named("stats") if e["write_errors"] >= 60], 20), daemon.stderr()
    finally:
        os.kill(nats_server.proc.pid, signal.SIGCONT)
    assert wait_for(lambda: daemon.named("output_resumed"), 30), daemon.stderr()
    summary = stop_when_acked(daemon)

    msgs = stored(gateway, nats_server)
    copies = assert_every_transaction_at_least_once(truth, msgs)
    assert 60 == len(truth) == len(msgs) == len(copies), "the duplicate window keeps one copy of each re-sent record"
    assert (60, 0, 0, "ok") == (summary["records_written"], summary["records_lost"], summary["records_held"], summary["output_state"])
    assert summary["write_errors"] >= 60
    assert daemon.named("output_blocked")[0]["error"] == "publish not acknowledged: no ack within 1 s"


def test_with_two_workers_the_parent_publishes_every_transaction(gateway, start_with_nats_keys, nats_server):
    """[capture] workers = 2: the forked workers send their lines to the parent,
    which owns the one NATS connection (a worker lets go of its inherited copy)."""
    daemon = start_with_nats_keys(nats_server, {}, workers=2)
    truth = run_client(gateway, {"server": SERVER_IP, "connections": connections(HTTP_PORT, 40, 2)})
    summary = stop_when_acked(daemon)
    msgs = stored(gateway, nats_server)
    assert 80 == len(truth) == len(msgs) == len(assert_every_transaction_at_least_once(truth, msgs))
    assert (80, 0, 2) == (summary["records_written"], summary["records_lost"], summary["workers"])


def test_daemon_started_without_its_server_buffers_and_publishes_once_it_comes(gateway, start_with_nats_keys, nats_server):
    """run starts (a daemon should), blocked, after connect_timeout_s; the records
    made meanwhile are held and published when the server comes."""
    nats_server.stop()
    daemon = start_with_nats_keys(nats_server, {"connect_timeout_s": 1.0})
    blocked = daemon.named("output_blocked")
    assert 1 == len(blocked) and blocked[0]["error"].startswith("cannot connect: "), daemon.stderr()
    truth = run_client(gateway, {"server": SERVER_IP, "connections": connections(HTTP_PORT, 10, 2)})
    assert wait_for(lambda: [e for e in daemon.named("stats") if e["records_held"] == 20], 10), daemon.stderr()
    nats_server.start()
    assert wait_for(lambda: daemon.named("output_resumed"), 30), daemon.stderr()
    summary = stop_when_acked(daemon)
    msgs = stored(gateway, nats_server)
    assert 20 == len(truth) == len(msgs) == len(assert_every_transaction_at_least_once(truth, msgs))
    assert (20, 0) == (summary["records_written"], summary["records_lost"])


def test_daemon_refuses_to_start_when_no_stream_takes_the_subject(gateway, log_dir):
    srv = NatsServer(log_dir.parent / "bare-store", prefix=in_ns(gateway.gw)).start()
    try:
        config = log_dir.parent / "sniffd.toml"
        config.write_text(f'[capture]\ninterface = "g1"\n[output]\npath = "{srv.url}/{SUBJECT}"\n[privileges]\nuser = "{SNIFFD_USER}"\n')
        proc = subprocess.run(in_ns(gateway.gw, str(SNIFFD), "run", "-c", str(config)), capture_output=True, text=True, timeout=30)
        assert 2 == proc.returncode
        # capture_opened comes first (the output is opened after the privilege drop), then one line.
        assert ["capture_opened"] == [json.loads(line)["event"] for line in proc.stderr.splitlines()[:-1]]
        assert [f"sniffd: error: {config}: [output] path: {srv.url}/{SUBJECT}: no JetStream stream takes subject '{SUBJECT}' "
                f"(create one, e.g. `nats stream add --subjects {SUBJECT} SNIFFD`, or set [nats] create_stream = true)"] == proc.stderr.splitlines()[-1:]
    finally:
        srv.stop()
