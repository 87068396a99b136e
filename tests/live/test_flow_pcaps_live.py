"""Flow pcaps from the real `sniffd run` daemon on the namespace gateway
(tests/live/test_daemon_gateway.py): real kernel TCP to a real HTTP server
(Python's http.server) that answers 500 for some paths.

Which connections got a 500 is the client's word (its local port and the
status it read); what each file must hold is tcpdump's own capture on the
same interface, filtered by the connection's 5-tuple.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from test_daemon_gateway import (  # noqa: F401  (fixtures: gateway, sniffd_user, log_dir)
    CLIENT_IP,
    PYTHON,
    SERVER_IP,
    SETTLE_S,
    SNIFFD_USER,
    Daemon,
    gateway,
    in_ns,
    log_dir,
    sniffd_user,
)

pytestmark = pytest.mark.live

PORT = 8090

# HTTP/1.0 (http.server's default): one request per connection, closed by the server.
SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = 500 if self.path.startswith("/fail") else 200
        body = b"%d %s\n" % (status, self.path.encode())
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H)
print("listening", flush=True)
server.serve_forever()
"""

# One connection per path; prints [[local port, status], ...] as the client saw them.
CLIENT = r"""
import http.client, json, sys
seen = []
for path in sys.argv[3:]:
    conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
    conn.request("GET", path)
    port = conn.sock.getsockname()[1]
    resp = conn.getresponse()
    resp.read()
    seen.append([port, resp.status])
    conn.close()
print(json.dumps(seen))
"""

PATHS = ["/ok/1", "/fail/2", "/ok/3", "/fail/4", "/ok/5", "/fail/6", "/ok/7"]


def pcap_records(path: Path) -> list[tuple[int, int, bytes]]:
    """(seconds, microseconds, frame) of each record of a little-endian classic pcap."""
    data = path.read_bytes()
    assert struct.unpack_from("<I", data)[0] == 0xA1B2C3D4
    out, off = [], 24
    while off < len(data):
        sec, usec, caplen, _wirelen = struct.unpack_from("<IIII", data, off)
        out.append((sec, usec, data[off + 16 : off + 16 + caplen]))
        off += 16 + caplen
    return out


@pytest.fixture(scope="module")
def server_500(gateway):
    """The server, once for the module (the gateway's teardown stops it)."""
    gateway.start(gateway.server, [PYTHON, "-c", SERVER, SERVER_IP, str(PORT)], "listening")


@pytest.mark.parametrize("workers", [1, 2])
def test_run_writes_a_flow_pcap_for_exactly_the_connections_answered_500(gateway, server_500, log_dir, sniffd_user,
                                                                         tmp_path, workers):
    """One worker, and two in a fanout group (each writes its own connections' files)."""
    flows = log_dir / "flows"
    flows.mkdir(mode=0o750)
    os.chown(flows, sniffd_user.pw_uid, sniffd_user.pw_gid)

    # tcpdump's own capture of the same interface: the reference.
    ref = tmp_path / "ref.pcap"
    tcpdump = subprocess.Popen(in_ns(gateway.gw, "tcpdump", "-i", "g1", "-n", "-U", "-w", str(ref), f"tcp port {PORT}"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    listening = threading.Event()

    def watch() -> None:
        for line in tcpdump.stderr:
            if "listening on" in line:
                listening.set()

    threading.Thread(target=watch, daemon=True).start()
    assert listening.wait(10), "tcpdump did not start"

    config = log_dir.parent / "sniffd.toml"
    config.write_text("\n".join([
        "[capture]", 'interface = "g1"', f'bpf_filter = "tcp port {PORT}"', f"workers = {workers}",
        "[output]", f'path = "{log_dir / "http.jsonl"}"', "rotate_bytes = 0",
        "[privileges]", f'user = "{SNIFFD_USER}"',
        "[stats]", "interval_s = 1.0",
        "[flow_pcaps]", f'flow_pcap_dir = "{flows}"', 'flow_pcap_when = ["status>=500"]', "",
    ]))
    daemon = Daemon(gateway, config).start()
    try:
        proc = subprocess.run(in_ns(gateway.client, PYTHON, "-c", CLIENT, SERVER_IP, str(PORT), *PATHS),
                              capture_output=True, text=True, timeout=60, check=True)
        seen = json.loads(proc.stdout)
        assert [status for _port, status in seen] == [200, 500, 200, 500, 200, 500, 200]
        failed = {port for port, status in seen if status == 500}

        # While it runs: the files are there, written as the service user, and
        # readable (housekeeping flushes them once a second).
        time.sleep(SETTLE_S + 1)
        names = sorted(p.name for p in flows.iterdir())
        assert {int(n.split("-")[-2].rsplit(".", 1)[1]) for n in names} == failed, names
        for p in flows.iterdir():
            st = p.stat()
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (pwd.getpwnam(SNIFFD_USER).pw_uid, 0o640)
            tcpdump_r = subprocess.run(["tcpdump", "-nr", str(p)], capture_output=True, text=True)
            assert tcpdump_r.returncode == 0, tcpdump_r.stderr
        rc, _ = daemon.stop()
        assert rc == 0, daemon.stderr()
    finally:
        daemon.kill()
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(10)

    files = {int(p.name.split("-")[-2].rsplit(".", 1)[1]): p for p in flows.iterdir()}
    assert set(files) == failed
    shutdown = daemon.named("shutdown")[-1]
    assert shutdown["flow_pcap_files"] == 3
    for port, path in files.items():
        assert path.name.endswith(f"-{CLIENT_IP}.{port}-{SERVER_IP}.{PORT}.pcap"), path.name
        mine = tmp_path / f"mine{port}.pcap"
        theirs = tmp_path / f"ref{port}.pcap"
        bpf = f"tcp and host {CLIENT_IP} and port {port} and host {SERVER_IP} and port {PORT}"
        subprocess.run(["tcpdump", "-r", str(ref), "-w", str(theirs), bpf], check=True, capture_output=True)
        # The file is the connection and nothing else: filtering it changes nothing.
        subprocess.run(["tcpdump", "-r", str(path), "-w", str(mine), bpf], check=True, capture_output=True)
        assert pcap_records(mine) == pcap_records(path)
        expected = pcap_records(theirs)
        got = pcap_records(path)
        assert len(expected) >= 8  # handshake, request, response, FINs and ACKs
        # The same frames, in the same order.  Time stamps are each
        # capture's own (its socket stamps its copy: 1-2 us apart seen), so
        # they agree to a millisecond; sniffd read's tests hold the time
        # stamps to the input's exactly.
        assert [frame for _s, _u, frame in got] == [frame for _s, _u, frame in expected]
        for (s1, u1, _f1), (s2, u2, _f2) in zip(got, expected):
            assert abs((s1 * 1_000_000 + u1) - (s2 * 1_000_000 + u2)) <= 1000


def test_run_refuses_a_directory_the_service_user_cannot_write(gateway, log_dir, sniffd_user):
    """Checked after the privilege drop, as that user: one line, exit 2, nothing captured."""
    flows = log_dir.parent / "root-only"
    flows.mkdir(mode=0o755)  # root's: the sniffd user may read it, not write it
    config = log_dir.parent / "sniffd.toml"
    config.write_text("\n".join([
        "[capture]", 'interface = "g1"', f'bpf_filter = "tcp port {PORT}"',
        "[output]", f'path = "{log_dir / "http.jsonl"}"',
        "[privileges]", f'user = "{SNIFFD_USER}"',
        "[flow_pcaps]", f'flow_pcap_dir = "{flows}"', "",
    ]))
    from test_daemon_gateway import SNIFFD

    proc = subprocess.run(in_ns(gateway.gw, str(SNIFFD), "run", "-c", str(config)), capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"sniffd: error: {config}: [flow_pcaps] flow_pcap_dir: directory {flows} is not writable by uid "
                    f"{sniffd_user.pw_uid}")
    assert not (log_dir / "http.jsonl").exists()
