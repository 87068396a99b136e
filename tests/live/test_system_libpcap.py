"""sniffd calls Debian's libpcap (package libpcap0.8), never a copy bundled in
pcapy-ng's wheel: apt's security updates must reach the code that parses
every frame.  scripts/install builds pcapy-ng from source against
libpcap-dev; these tests fail if the wheel (and its libpcap 1.9.1 in
site-packages/pcapy_ng.libs) comes back.

The truth comes from outside sniffd: dpkg names the package's version and
file, ldd resolves the extension's link, the kernel's /proc/PID/maps shows
what the running daemon has mapped.
"""

from __future__ import annotations

import os
import re
import site
import subprocess
import sys
from pathlib import Path

import pcapy
import pytest
from test_daemon_gateway import (  # noqa: F401  (fixtures: gateway, sniffd_user, log_dir, start_sniffd)
    HTTP_PORT,
    gateway,
    log_dir,
    sniffd_user,
    start_sniffd,
)

pytestmark = pytest.mark.live

SNIFFD = Path(sys.executable).parent / "sniffd"


def debian_libpcap() -> tuple[str, str]:
    """(upstream version, real path of the shared library) of Debian's libpcap0.8, from dpkg."""
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libpcap0.8"],
                             capture_output=True, text=True, check=True).stdout
    files = subprocess.run(["dpkg-query", "-L", "libpcap0.8"], capture_output=True, text=True, check=True).stdout.split()
    libs = [f for f in files if re.search(r"/libpcap\.so\.\d+\.\d+\.\d+$", f)]
    assert len(libs) == 1, files
    # "1.10.3-1" -> "1.10.3" (no epoch in Debian 12's; a Debian revision follows the last "-").
    return version.rsplit("-", 1)[0], os.path.realpath(libs[0])


def mapped_libpcaps(pid: int | str) -> set[str]:
    with open(f"/proc/{pid}/maps", encoding="utf-8") as f:
        return {os.path.realpath(line.split()[-1]) for line in f if "libpcap" in line.rsplit("/", 1)[-1]}


def test_pcapy_links_debians_libpcap_and_no_copy_is_bundled():
    upstream, lib = debian_libpcap()
    ldd = subprocess.run(["ldd", pcapy.__file__], capture_output=True, text=True, check=True).stdout
    linked = [line.split("=>")[1].split("(")[0].strip() for line in ldd.splitlines() if "libpcap" in line]
    assert [lib] == [os.path.realpath(p) for p in linked], ldd
    assert upstream in lib, (upstream, lib)  # libpcap.so.1.10.3 is 1.10.3
    # No libpcap anywhere in the environment's packages (the wheel's sits in pcapy_ng.libs/).
    bundled = [str(p) for d in site.getsitepackages() for p in Path(d).rglob("*libpcap*")]
    assert [] == bundled
    # And this very process, which imported pcapy above, maps Debian's file alone.
    assert {lib} == mapped_libpcaps("self")


def test_version_names_the_libpcap_dpkg_installed():
    upstream, lib = debian_libpcap()
    proc = subprocess.run([str(SNIFFD), "--version"], capture_output=True, text=True, timeout=30)
    assert (0, "") == (proc.returncode, proc.stderr)
    name, libpcap, python = proc.stdout.splitlines()
    assert name.startswith("sniffd ")
    # pcap_lib_version() says "libpcap version 1.10.3 (with TPACKET_V3)"; the file follows.
    assert re.fullmatch(rf"libpcap version {re.escape(upstream)}( \(.*\))? \({re.escape(lib)}\)", libpcap), libpcap
    assert python.startswith(f"python {sys.version.split()[0]} (/")


def test_running_daemon_maps_debians_libpcap_and_says_so_in_its_start_event(start_sniffd):
    upstream, lib = debian_libpcap()
    daemon = start_sniffd(f"tcp port {HTTP_PORT}")
    assert {lib} == mapped_libpcaps(daemon.proc.pid)
    versions = daemon.named("start")[0]["versions"]
    version_line = subprocess.run([str(SNIFFD), "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[1]
    assert version_line == f"{versions['libpcap']} ({versions['libpcap_file']})"
    assert (True, lib) == (versions["libpcap"].startswith(f"libpcap version {upstream}"), versions["libpcap_file"])
    rc, _ = daemon.stop()
    assert 0 == rc, daemon.stderr()
