"""Metrics and sd_notify pieces on their own: the duration buckets, the
notification datagrams on real sockets, the textfile, and bad [metrics]
configuration through the real CLI (one line naming the key, exit 2,
nothing written)."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sniffd import config as configmod
from sniffd.metrics import Exporter, RecordMeter, merge_meters
from sniffd.notify import Notifier

SNIFFD = Path(sys.executable).parent / "sniffd"
CLI_TIMEOUT_S = 30


# --- the record meter -------------------------------------------------------------


def test_record_meter_counts_end_reasons_and_puts_a_duration_on_a_bound_in_that_bucket():
    m = RecordMeter()
    m.observe([
        {"end_reason": "complete", "duration_ms": 0.2},
        {"end_reason": "complete", "duration_ms": 1.0},  # on the first bound: le="0.001"
        {"end_reason": "complete", "duration_ms": 1.001},
        {"end_reason": "idle_timeout", "duration_ms": None},  # no response: counted, not timed
        {"end_reason": "complete", "duration_ms": 300000.0},  # the last bound
        {"end_reason": "complete", "duration_ms": 300000.5},  # beyond every bound: +Inf only
    ])
    d = m.to_dict()
    assert {"complete": 5, "idle_timeout": 1} == d["by_end_reason"]
    assert [2, 1] + [0] * 13 + [1, 1] == d["buckets"]
    assert 5 == d["duration_count"]
    assert 0.2 + 1.0 + 1.001 + 300000.0 + 300000.5 == pytest.approx(d["duration_sum_ms"])


def test_merged_meters_are_the_sums_of_the_workers_meters():
    a, b = RecordMeter(), RecordMeter()
    a.observe([{"end_reason": "complete", "duration_ms": 3.0}])
    b.observe([{"end_reason": "complete", "duration_ms": 3.0}, {"end_reason": "shutdown", "duration_ms": 40.0}])
    total = merge_meters([a.to_dict(), None, b.to_dict()])
    assert {"complete": 2, "shutdown": 1} == total["by_end_reason"]
    assert [0, 0, 2, 0, 0, 1] + [0] * 11 == total["buckets"]
    assert (3, 46.0) == (total["duration_count"], total["duration_sum_ms"])


def test_exposition_read_back_by_prometheus_parser(tmp_path):
    meter = RecordMeter()
    meter.observe([{"end_reason": "complete", "duration_ms": 7.5}, {"end_reason": "complete", "duration_ms": 7000.0}])
    textfile = tmp_path / "sniffd.prom"
    exporter = Exporter(None, 0, str(textfile), 15.0)
    exporter.bind()
    exporter.publish({"packets": 12, "bytes": 3400, "kernel_drops": 1, "open_connections": 3, "output_state": "blocked",
                      "anomalies": {"tcp_gap": 2}, "workers": 1, "record_meter": meter.to_dict()}, 0.0)
    samples = {}
    for family in text_string_to_metric_families(textfile.read_text()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert 12 == samples[("sniffd_packets_total", ())]
    assert 3400 == samples[("sniffd_bytes_total", ())]
    assert 1 == samples[("sniffd_kernel_drops_total", ())]
    assert 3 == samples[("sniffd_open_connections", ())]
    assert (0, 1) == (samples[("sniffd_output_state", (("state", "ok"),))], samples[("sniffd_output_state", (("state", "blocked"),))])
    assert 2 == samples[("sniffd_anomalies_total", (("name", "tcp_gap"),))]
    assert 2 == samples[("sniffd_records_total", (("end_reason", "complete"),))]
    assert 0 == samples[("sniffd_record_duration_seconds_bucket", (("le", "0.005"),))]
    assert 1 == samples[("sniffd_record_duration_seconds_bucket", (("le", "0.01"),))]
    assert 1 == samples[("sniffd_record_duration_seconds_bucket", (("le", "5.0"),))]
    assert 2 == samples[("sniffd_record_duration_seconds_bucket", (("le", "10.0"),))]
    assert 7.0075 == pytest.approx(samples[("sniffd_record_duration_seconds_sum", ())])
    assert ["sniffd.prom"] == os.listdir(tmp_path)  # the temporary file was renamed over it


def test_textfile_in_a_directory_that_is_gone_is_an_error_remembered_not_raised(tmp_path):
    exporter = Exporter(None, 0, str(tmp_path / "gone" / "sniffd.prom"), 15.0)
    exporter.bind()
    exporter.publish({"packets": 1}, 0.0)
    assert f"{tmp_path / 'gone' / 'sniffd.prom'}: No such file or directory" == exporter.textfile_error
    (tmp_path / "gone").mkdir()
    exporter.publish({"packets": 2}, 100.0)
    assert exporter.textfile_error is None


# Serves every kind of request in a fresh interpreter (text, OpenMetrics,
# gzip, name[] filter, POST, OPTIONS, favicon, a bad request line) over a raw
# socket, and prints the modules imported after bind(): after the privilege
# drop the Python installation may not be readable (sniffd.privileges.preload).
LAZY_IMPORTS = r"""
import socket, sys
from sniffd.metrics import Exporter
e = Exporter("127.0.0.1", 0, "", 15.0)
e.bind()
e.publish({"packets": 1, "anomalies": {"x": 1}}, 0.0)
e.start()
before = set(sys.modules)
for r in [b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
          b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0\r\n"
          b"Accept-Encoding: gzip\r\nConnection: close\r\n\r\n",
          b"GET /metrics?name[]=sniffd_packets_total HTTP/1.0\r\n\r\n",
          b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n", b"OPTIONS / HTTP/1.0\r\n\r\n",
          b"GET /favicon.ico HTTP/1.0\r\n\r\n", b"garbage\r\n\r\n",
          b"GET / HTTP/1.0\r\nAccept: text/plain; version=1.0.0; escaping=underscores\r\n\r\n"]:
    s = socket.socket()  # not create_connection: its getaddrinfo would import the idna codec here
    s.connect(("127.0.0.1", e.port))
    s.sendall(r)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    print(data.split(b"\r\n", 1)[0].decode(errors="replace")[:40])
    s.close()
e.close()
print(sorted(set(sys.modules) - before))
"""


def test_a_scrape_of_any_kind_imports_nothing_after_bind():
    proc = subprocess.run([sys.executable, "-c", LAZY_IMPORTS], capture_output=True, text=True, timeout=60)
    assert 0 == proc.returncode, proc.stderr
    lines = proc.stdout.splitlines()
    assert ["HTTP/1.0 200 OK"] * 3 + ["HTTP/1.0 405 Method Not Allowed"] + ["HTTP/1.0 200 OK"] * 2 == lines[:6]
    assert "[]" == lines[-1], "imported while serving: " + lines[-1]
    assert "" == proc.stderr  # no access log, no traceback


# --- sd_notify ----------------------------------------------------------------------


def test_notify_sends_one_datagram_per_message_to_a_path_socket(tmp_path):
    path = tmp_path / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(5)
    n = Notifier({"NOTIFY_SOCKET": str(path)})
    assert n.send("READY=1", "STATUS=capturing on lo")
    assert n.send("WATCHDOG=1")
    assert b"READY=1\nSTATUS=capturing on lo" == receiver.recv(4096)
    assert b"WATCHDOG=1" == receiver.recv(4096)
    n.close()
    receiver.close()


def test_notify_reaches_an_abstract_socket_named_with_at():
    name = f"sniffd-test-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(b"\0" + name.encode())
    receiver.settimeout(5)
    n = Notifier({"NOTIFY_SOCKET": "@" + name})
    assert n.send("STOPPING=1")
    assert b"STOPPING=1" == receiver.recv(4096)
    n.close()
    receiver.close()


def test_notify_without_socket_does_nothing_and_watchdog_is_half_the_period_for_this_pid_only():
    n = Notifier({})
    assert (False, False, 0.0) == (n.enabled, n.send("READY=1"), n.watchdog_interval_s)
    assert 15.0 == Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval_s
    assert 15.0 == Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_interval_s
    assert 0.0 == Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval_s
    assert 0.0 == Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval_s
    # A socket that is gone: the send fails quietly (systemd's timeouts act).
    assert not Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"}).send("WATCHDOG=1")


# --- [metrics] configuration ------------------------------------------------------------


@pytest.mark.parametrize("value,expected", [
    ("127.0.0.1:9853", ("127.0.0.1", 9853)),
    ("0.0.0.0:1", ("0.0.0.0", 1)),
    ("[::1]:65535", ("::1", 65535)),
    ("[::]:9853", ("::", 9853)),
])
def test_listen_takes_an_ip_address_and_a_port(value, expected):
    assert expected == configmod.parse_listen(value)


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SNIFFD), *args], capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


BAD_METRICS = [
    ("host_name", "listen = 'localhost:9853'", "[metrics] listen: expected an IP address before the port (no host names), got 'localhost:9853'"),
    ("no_port", "listen = '127.0.0.1'", "[metrics] listen: expected \"ADDRESS:PORT\""),
    ("ipv6_without_brackets", "listen = '::1:9853'", "[metrics] listen: an IPv6 address is written in brackets (\"[::1]:9853\"), got '::1:9853'"),
    ("port_zero", "listen = '127.0.0.1:0'", "[metrics] listen: the port must be between 1 and 65535, got '127.0.0.1:0'"),
    ("port_too_big", "listen = '127.0.0.1:70000'", "[metrics] listen: the port must be between 1 and 65535, got '127.0.0.1:70000'"),
    ("not_a_string", "listen = 9853", "[metrics] listen: expected a string, got 9853"),
    ("textfile_not_prom", "textfile = '/tmp/sniffd.txt'", "[metrics] textfile: must be a file name ending in .prom (node_exporter reads only those), got '/tmp/sniffd.txt'"),
    ("textfile_directory_missing", "textfile = '/nonexistent-dir/sniffd.prom'", "[metrics] textfile: directory /nonexistent-dir does not exist"),
    ("interval_zero", "textfile_interval_s = 0", "[metrics] textfile_interval_s: must be between 1 and 3600, got 0"),
    ("unknown_key", "port = 9853", "[metrics] port: unknown key"),
]


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("name,line,expected", BAD_METRICS, ids=[c[0] for c in BAD_METRICS])
def test_bad_metrics_config_gives_one_line_naming_the_key_and_exit_2(tmp_path, command, name, line, expected):
    out = tmp_path / "out"
    out.mkdir()
    config = tmp_path / "sniffd.toml"
    config.write_text(f"[metrics]\n{line}\n")
    proc = run_cli(command, "-c", str(config), "-i", "lo", "--user", current_user(), "-o", str(out / "http.jsonl"))
    assert 2 == proc.returncode, proc.stderr
    assert 1 == len(proc.stderr.splitlines()), proc.stderr
    assert proc.stderr.startswith(f"sniffd: error: {config}: {expected}"), proc.stderr
    assert [] == list(out.iterdir())


@pytest.mark.parametrize("case", ["port_in_use", "address_not_here"])
def test_run_with_a_listen_address_it_cannot_bind_gives_one_line_and_exit_2(tmp_path, case):
    """Found before the capture opens: no output file, nothing captured."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    if case == "port_in_use":
        listen, error = f"127.0.0.1:{holder.getsockname()[1]}", "Address already in use"
    else:
        # TEST-NET-3 (RFC 5737): on no interface of this machine.
        listen, error = "203.0.113.7:9853", "Cannot assign requested address"
    out = tmp_path / "out"
    out.mkdir()
    config = tmp_path / "sniffd.toml"
    config.write_text(f"[metrics]\nlisten = '{listen}'\n")
    try:
        proc = run_cli("run", "-c", str(config), "-i", "lo", "--user", current_user(), "-o", str(out / "http.jsonl"))
    finally:
        holder.close()
    assert 2 == proc.returncode, proc.stderr
    assert [f"sniffd: error: {config}: [metrics] listen: cannot listen on {listen}: {error}"] == proc.stderr.splitlines()
    assert [] == list(out.iterdir())
