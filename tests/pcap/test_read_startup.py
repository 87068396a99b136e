"""What `sniffd read` loads at start-up: only what the read path uses.

Every `sniffd read` pays for the modules it imports (~0.1 s of a short run:
bench/run.py's TLS corpus, issue 12).  These tests run the real console
script under ``python -X importtime`` (the interpreter's own list of the
modules it imported, not sniffd's) and hold the lazy ones lazy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Modules the read path never needs, and why each would be there if it were
# imported: the daemon's (config, logging, live capture, metrics, workers),
# outputs and options the run does not use, socket.py (the live capture's
# fanout; records take inet_ntop from _socket), tempfile (an output file).
NOT_FOR_READ = {
    "socket", "signal", "tempfile", "multiprocessing", "tomllib", "structlog",
    "sniffd.config", "sniffd.live", "sniffd.oplog", "sniffd.metrics", "sniffd.workers",
    "sniffd.natssink", "sniffd.ecs", "sniffd.flowpcap", "cryptography.x509",
}


def _imported(sniffd_exe: Path, *argv: str) -> tuple[set[str], str]:
    """(modules the run imported, its stdout) for ``sniffd read -q ARGV`` under -X importtime."""
    proc = subprocess.run([sys.executable, "-X", "importtime", str(sniffd_exe), "read", "-q", *argv],
                          capture_output=True, text=True, timeout=120)
    assert 0 == proc.returncode, proc.stderr[-2000:]
    mods = {line.split("|")[2].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return mods, proc.stdout


def test_read_of_http_to_stdout_imports_nothing_it_does_not_use(sniffd_exe):
    mods, out = _imported(sniffd_exe, str(ROOT / "captures" / "sample.pcap"), "-o", "-")
    assert out.count("\n") > 0 and '"kind":"http"' in out  # it did read the capture
    assert "sniffd.pipeline" in mods  # the parse of -X importtime's lines found the real modules
    assert set() == mods & NOT_FOR_READ


def test_read_to_a_file_imports_tempfile_only(sniffd_exe, tmp_path):
    """An output file is written to a temporary file renamed at the end: that,
    and nothing else of the list, comes in."""
    out = tmp_path / "out.jsonl"
    mods, _ = _imported(sniffd_exe, str(ROOT / "captures" / "sample.pcap"), "-o", str(out))
    assert {"tempfile"} == mods & NOT_FOR_READ
    assert out.read_text().count("\n") > 0


def test_first_tls_certificate_imports_cryptography(sniffd_exe):
    """The TLS 1.2 certificate summary loads cryptography when it needs it
    (and cryptography's email.utils brings socket.py with it)."""
    mods, out = _imported(sniffd_exe, str(ROOT / "captures" / "tls" / "loopback_handshakes.pcap"), "-o", "-")
    assert '"server_cert":{"subject":"' in out
    assert {"cryptography.x509", "socket"} == mods & NOT_FOR_READ


def test_daemon_preload_imports_what_read_leaves_lazy():
    """sniffd.privileges.preload (before the daemon drops privileges) loads what
    the live capture imports lazily: socket (LiveCapture.set_fanout) and
    cryptography (the first certificate)."""
    probe = (
        "import sys\n"
        "from sniffd import capture, privileges\n"
        "print(sorted(m for m in ('socket', 'cryptography.x509') if m in sys.modules))\n"
        "privileges.preload()\n"
        "print(sorted(m for m in ('socket', 'cryptography.x509') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert 0 == proc.returncode, proc.stderr
    assert ["[]", "['cryptography.x509', 'socket']"] == proc.stdout.splitlines()
