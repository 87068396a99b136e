"""Two network namespaces joined by a veth pair, for the benchmark's real kernel traffic.

Used by ``make_corpus.py`` (httpgen client in one namespace, server in the
other, tcpdump on the client's end) and ``live.py`` (tcpreplay in one, the
sniffd daemon in the other).

Isolation: the addresses (10.231.0.0/30 by default) exist only inside the two
namespaces, which have no route anywhere else, so nothing the benchmark sends
can leave them.  Names carry the creating process's pid, so two runs never
collide, and ``remove_stale()`` deletes the leftovers of a run that was killed
(its pid is gone) and nothing else.

Offloads are turned off on both ends (``ethtool -K IF tso off gso off gro off
tx off``): with them on, a veth hands tcpdump 64 KB GSO/GRO "super-packets"
instead of MTU-sized frames, and the corpus would not look like a real link.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

PREFIX = "sniffd-bench-"

# A private range used for nothing else on this machine; it only ever exists
# inside the two namespaces below.
DEFAULT_NET = "10.231.0"

# Real Ethernet: the corpus must hold frames of at most 1514 bytes.
MTU = 1500

# Offload features turned off on both veth ends (see the module docstring).
OFFLOADS_OFF = ("tso", "off", "gso", "off", "gro", "off", "tx", "off")


class NetnsError(Exception):
    """A namespace, link or address could not be set up; the message has the command and its stderr."""


def sh(argv: list[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run a setup command; on failure raise NetnsError with the command line and its stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Delete namespaces ``sniffd-bench-PID-*`` whose PID no longer runs (a killed run's leftovers)."""
    proc = sh(["ip", "netns", "list"], check=False)
    removed = []
    for line in proc.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(re.escape(PREFIX) + r"(\d+)-\w+", name)
        if m and not _pid_alive(int(m.group(1))):
            sh(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed


class VethPair:
    """Namespaces ``left`` and ``right`` joined by a veth pair, addresses .1 (left) and .2 (right).

    Use as a context manager: ``__exit__`` deletes both namespaces (which
    destroys the veth pair) whatever happened, so an error or Ctrl-C leaves
    nothing behind.
    """

    def __init__(self, left_role: str = "cli", right_role: str = "srv", net: str = DEFAULT_NET, mtu: int = MTU,
                 addresses: bool = True) -> None:
        pid = os.getpid()
        self.left_ns = f"{PREFIX}{pid}-{left_role}"
        self.right_ns = f"{PREFIX}{pid}-{right_role}"
        # Interface names are at most 15 bytes; the pid keeps them unique
        # (they live inside the namespaces anyway).
        tag = f"sb{pid % 10_000_000}"
        self.left_if = f"{tag}l"
        self.right_if = f"{tag}r"
        self.left_ip = f"{net}.1"
        self.right_ip = f"{net}.2"
        self.mtu = mtu
        # Without addresses (live.py) the kernels of both namespaces ignore
        # the replayed frames entirely: no reply, no RST, only the capture.
        self.addresses = addresses
        self._created: list[str] = []

    def exec_argv(self, ns: str, argv: list[str]) -> list[str]:
        """``argv`` run inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns, *argv]

    def up(self) -> VethPair:
        for tool in ("ip", "ethtool"):
            if shutil.which(tool) is None:
                raise NetnsError(f"{tool} is not installed (apt-get install -y iproute2 ethtool)")
        for ns in (self.left_ns, self.right_ns):
            sh(["ip", "netns", "add", ns])
            self._created.append(ns)
        sh(["ip", "link", "add", self.left_if, "netns", self.left_ns, "mtu", str(self.mtu), "type", "veth",
            "peer", "name", self.right_if, "netns", self.right_ns, "mtu", str(self.mtu)])
        for ns, ifname, ip in ((self.left_ns, self.left_if, self.left_ip), (self.right_ns, self.right_if, self.right_ip)):
            x = lambda *a: sh(self.exec_argv(ns, list(a)))  # noqa: E731
            # No IPv6 on the veth: router solicitations and DAD would be the
            # only non-benchmark packets on the link.
            x("sysctl", "-q", "-w", f"net.ipv6.conf.{ifname}.disable_ipv6=1")
            x("ip", "link", "set", "lo", "up")
            if self.addresses:
                x("ip", "addr", "add", f"{ip}/30", "dev", ifname)
            x("ethtool", "-K", ifname, *OFFLOADS_OFF)
            x("ip", "link", "set", ifname, "up")
        self.check_offloads()
        return self

    def check_offloads(self) -> None:
        """Raise unless TSO, GSO and GRO are really off on both ends (``ethtool -k``)."""
        for ns, ifname in ((self.left_ns, self.left_if), (self.right_ns, self.right_if)):
            text = sh(self.exec_argv(ns, ["ethtool", "-k", ifname])).stdout
            for feature in ("tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload"):
                m = re.search(rf"^{feature}: (\w+)", text, re.M)
                if m is None or m.group(1) != "off":
                    raise NetnsError(f"{ns} {ifname}: {feature} is {m.group(1) if m else 'unknown'}, expected off")

    def down(self) -> None:
        """Delete both namespaces (and so the veth pair); never raises."""
        for ns in reversed(self._created):
            proc = sh(["ip", "netns", "del", ns], check=False)
            if proc.returncode != 0:
                print(f"bench: warning: could not delete namespace {ns}: {proc.stderr.strip()}", file=sys.stderr)
        self._created.clear()

    def __enter__(self) -> VethPair:
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc: object) -> None:
        self.down()
