"""The README's *Install on a gateway* step 3, run as written: the venv from
Debian's Python, pcapy-ng built against Debian's libpcap, and the service
user able to run what was installed (the check the guide itself ends with).

Only the install root is moved (/opt/sniffd -> a temporary directory) and
/path/to/sniffd is a copy of this checkout; the commands are taken from the
README, so the test fails when the guide's commands stop working.  pip
fetches sniffd's dependencies from the package index, as an operator's
would (its cache makes a second run quick).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from test_daemon_gateway import sniffd_user  # noqa: F401  (fixture: the `sniffd` user exists)
from test_system_libpcap import debian_libpcap

pytestmark = pytest.mark.live

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()

# Building pcapy-ng and sniffd's two C extensions, and fetching the
# dependencies: about a minute with a warm pip cache on 2 cores.
PIP_TIMEOUT_S = 900


def guide_step(n: int) -> list[str]:
    """The commands (no comments, no blank lines) of step ``n`` of the install guide's sh block."""
    guide = README.split("### Install on a gateway (Debian 12)\n\n```sh\n", 1)[1].split("\n```", 1)[0]
    step = guide.split(f"\n# {n}. ", 1)[1].split(f"\n# {n + 1}. ", 1)[0]
    return [line for line in step.splitlines()[1:] if line.strip() and not line.lstrip().startswith("#")]


def test_guide_step_3_is_what_this_test_runs():
    """Pins the shape the other test relies on: a venv from /usr/bin/python3, pcapy-ng from
    source, and the service user's check at the end."""
    assert [
        "/usr/bin/python3 -m venv /opt/sniffd/venv",
        "/opt/sniffd/venv/bin/pip install --no-binary pcapy-ng /path/to/sniffd",
        "install -d -m 0755 /opt/sniffd/docs && install -m 0644 README.md /opt/sniffd/docs/",
        "runuser -u sniffd -- /opt/sniffd/venv/bin/sniffd --version",
    ] == guide_step(3)


@pytest.fixture
def install_root():
    """A world-readable directory standing for /; pytest's tmp_path is private to root."""
    if os.geteuid() != 0:
        pytest.skip("runuser and the service user need root")
    root = Path(tempfile.mkdtemp(prefix="sniffd-guide-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_guide_installs_a_venv_the_service_user_runs_with_debians_python_and_libpcap(install_root, sniffd_user):
    src = install_root / "src"
    # The checkout, without this machine's build products (the guide starts from a clean one).
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "build", "*.egg-info", "*.so"))
    opt = install_root / "opt" / "sniffd"
    script = "\n".join(
        line.replace("/opt/sniffd", str(opt)).replace("/path/to/sniffd", str(src)) for line in guide_step(3)
    )
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=src, capture_output=True, text=True,
                          timeout=PIP_TIMEOUT_S)
    assert 0 == proc.returncode, proc.stderr[-3000:]

    # The guide's last command is the service user's `sniffd --version`: its output is the run's.
    upstream, lib = debian_libpcap()
    name, libpcap, python = proc.stdout.splitlines()[-3:]
    assert name.startswith("sniffd ")
    assert re.fullmatch(rf"libpcap version {re.escape(upstream)}( \(.*\))? \({re.escape(lib)}\)", libpcap), libpcap
    assert re.fullmatch(r"python 3\.\d+\.\d+ \(/usr/bin/python3\.\d+\)", python), python
    # The venv is Debian's Python's (pyvenv.cfg's home), and has no libpcap of its own.
    assert "home = /usr/bin\n" in (opt / "venv" / "pyvenv.cfg").read_text()
    assert [] == [str(p) for p in (opt / "venv").rglob("*libpcap*")]
    assert (opt / "docs" / "README.md").read_bytes() == (REPO / "README.md").read_bytes()

    # The check does catch an install the service user cannot read (what a venv
    # under /root amounts to): the same command fails once the root is private.
    install_root.chmod(0o700)
    check = guide_step(3)[-1].replace("/opt/sniffd", str(opt)).split()
    denied = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert (1, f"runuser: failed to execute {opt}/venv/bin/sniffd: Permission denied") == (
        denied.returncode, denied.stderr.strip())
