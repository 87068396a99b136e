"""Fixtures for live tests: real kernel TCP on loopback, captured by tcpdump, read by the real CLI.

The chain is deliberately made of independent parts: ``tests/httpgen.py`` makes
the traffic and the answer key, tcpdump (not sniffd) writes the pcap, and the
installed ``sniffd`` executable reads it in its own process.  A bug in one part
cannot hide a bug in another.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

# tests/ has no __init__.py, so pytest puts tests/live (not the repository root)
# on sys.path; `import tests.httpgen` needs the root, whatever directory pytest
# was started from.
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests import httpgen  # noqa: E402

# tcpdump prints "listening on lo, ..." once its capture is really open; before
# that, packets are lost.  A few seconds covers a loaded CI machine.
TCPDUMP_START_TIMEOUT_S = 10.0

# After SIGINT tcpdump flushes and exits at once; more than this means it hangs.
TCPDUMP_STOP_TIMEOUT_S = 10.0

# Time for the last packets (the final ACK of the teardown) to pass the capture
# point before tcpdump is stopped.
CAPTURE_SETTLE_S = 0.2

# tcpdump -B, in KiB: a whole test's traffic (at most ~15 MB) fits, so nothing
# is dropped even if tcpdump is not scheduled for the whole burst.
BUFFER_KIB = 65_536

# Reading a few MB of loopback traffic takes well under a second; the bound
# keeps a hung sniffd from hanging the suite.
SNIFFD_TIMEOUT_S = 60.0


class TcpdumpCapture:
    """One tcpdump process writing a pcap of loopback traffic.

    ``--immediate-mode`` and ``-U`` make tcpdump hand every packet to the file as
    it arrives: without immediate mode, libpcap's TPACKET_V3 ring holds packets
    in a block until it fills or times out, and SIGINT loses that tail (seen
    here: the last response and both FINs missing, with 0 counted as dropped).
    ``-B`` raises the kernel buffer from 2 MiB because loopback delivers a 2 MB
    body in a millisecond, faster than tcpdump writes it (seen: hundreds of
    packets "dropped by kernel").  ``-Z root`` stops tcpdump from dropping to
    its own user before opening the output file (pytest's tmp dirs are
    private to root).
    """

    def __init__(self, path: Path, bpf: str, interface: str = "lo") -> None:
        self.path = path
        self.argv = ["tcpdump", "-i", interface, "-w", str(path), "-U", "--immediate-mode", "-B", str(BUFFER_KIB), "-n"]
        if os.geteuid() == 0:
            self.argv += ["-Z", "root"]
        self.argv.append(bpf)
        self.stderr_lines: list[str] = []
        self._listening = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> TcpdumpCapture:
        """Start tcpdump and return once it says it is listening; raise with its stderr otherwise."""
        self._proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + TCPDUMP_START_TIMEOUT_S
        while not self._listening.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tcpdump did not start capturing: {' '.join(self.argv)}: {self.stderr_text()!r}")
        return self

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))
            if "listening on" in line:
                self._listening.set()

    def fin_pairs(self) -> set[tuple[int, int]]:
        """(source port, destination port) of every FIN in the written file, read back by tcpdump.

        Each connection's teardown is the last thing on the wire, so a FIN from
        both ends proves the file holds the connection to its end.
        """
        proc = subprocess.run(
            ["tcpdump", "-r", str(self.path), "-n", "-q", "tcp[tcpflags] & tcp-fin != 0"],
            capture_output=True,
            text=True,
            timeout=TCPDUMP_STOP_TIMEOUT_S,
            check=True,
        )
        pairs = set()
        for line in proc.stdout.splitlines():
            # "10:46:21.788055 IP 127.0.0.1.60802 > 127.0.0.1.36233: tcp 0"
            words = line.split()
            src, dst = words[2], words[4].rstrip(":")
            pairs.add((int(src.rsplit(".", 1)[1]), int(dst.rsplit(".", 1)[1])))
        return pairs

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_lines)

    def stop(self) -> dict:
        """SIGINT tcpdump, wait for it, return its counters: {"captured", "received", "dropped"}."""
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(TCPDUMP_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                raise RuntimeError(f"tcpdump ignored SIGINT for {TCPDUMP_STOP_TIMEOUT_S} s")
        if self._reader is not None:
            self._reader.join(TCPDUMP_STOP_TIMEOUT_S)
        if self._proc.stderr is not None:
            self._proc.stderr.close()
        counters = {}
        for line in self.stderr_lines:
            words = line.split()
            # "12 packets captured", "12 packets received by filter", "0 packets dropped by kernel"
            if len(words) >= 3 and words[0].isdigit() and words[1] == "packets":
                counters[words[2]] = int(words[0])
        return counters


@pytest.fixture(scope="session", autouse=True)
def loopback_capture_works(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip every live test, with the reason, where this machine cannot capture on lo."""
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed (scripts/install installs it)")
    probe = TcpdumpCapture(tmp_path_factory.mktemp("probe") / "probe.pcap", "tcp port 9")
    try:
        probe.start()
    except RuntimeError as exc:
        pytest.skip(f"cannot capture on the loopback interface (needs root or CAP_NET_RAW): {exc}")
    probe.stop()


@pytest.fixture
def http_server():
    """A fresh httpgen server on an ephemeral 127.0.0.1 port, so each test's BPF filter sees only its own traffic."""
    server = httpgen.HttpGenServer("127.0.0.1", 0).start()
    yield server
    server.stop()


@dataclass
class LiveRun:
    """Everything one capture-and-read produced, for assertions and failure messages."""

    truth: list[dict]
    records: list[dict]
    pcap: Path
    tcpdump_counters: dict
    sniffd_stderr: str


@pytest.fixture
def capture_and_read(tmp_path: Path, http_server: httpgen.HttpGenServer, sniffd_exe: Path):
    """Return ``run(**run_scenario_kwargs) -> LiveRun``.

    It captures the scenario's traffic with tcpdump, then runs ``sniffd read
    PCAP -o OUT`` as a subprocess and parses OUT as JSON lines.
    """

    def run(**scenario_kwargs) -> LiveRun:
        pcap = tmp_path / "live.pcap"
        out = tmp_path / "records.jsonl"
        capture = TcpdumpCapture(pcap, f"tcp port {http_server.port}").start()
        try:
            truth = httpgen.run_scenario(port=http_server.port, host="127.0.0.1", **scenario_kwargs)
            time.sleep(CAPTURE_SETTLE_S)
        finally:
            counters = capture.stop()
        assert [] == http_server.errors, "the httpgen server failed; this is not a sniffd result"
        # A packet the kernel dropped before tcpdump saw it would be a capture
        # problem, not a sniffd one: fail loudly rather than blame sniffd.
        assert 0 == counters.get("dropped", 0), f"tcpdump dropped packets: {capture.stderr_text()}"
        assert counters.get("captured", 0) > 0, f"tcpdump captured nothing: {capture.stderr_text()}"
        ends = {(t["client_port"], t["server_port"]) for t in truth}
        ends |= {(server, client) for client, server in ends}
        assert set() == ends - capture.fin_pairs(), "the pcap lacks the end of some connections (capture cut short)"
        proc = subprocess.run(
            [str(sniffd_exe), "read", str(pcap), "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=SNIFFD_TIMEOUT_S,
        )
        assert 0 == proc.returncode, f"sniffd read exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        lines = [line for line in out.read_text(encoding="utf-8").split("\n") if line]
        records = [orjson.loads(line) for line in lines]  # strict: what shippers parse
        return LiveRun(truth, records, pcap, counters, proc.stderr)

    return run
