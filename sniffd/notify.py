"""systemd's notification protocol (sd_notify(3)), written out: one datagram per message.

The service manager passes an AF_UNIX datagram socket in ``$NOTIFY_SOCKET``
(a path, or an abstract name written with a leading ``@``) and, with
``WatchdogSec=``, the watchdog period in ``$WATCHDOG_USEC`` (for the process
``$WATCHDOG_PID``, when set).  A message is newline-separated ``KEY=VALUE``
assignments: ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1``.

About twenty lines, so no library: python-systemd needs libsystemd's headers
to build, and sdnotify (the pure-Python one) has had no release since 2017.
Sending never raises: a lost notification must not stop the capture (systemd
then acts on its own timeouts, as it should).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Messages to ``$NOTIFY_SOCKET``; does nothing when it is not set (not under systemd)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        self.sock: socket.socket | None = None
        if address.startswith("@"):
            # An abstract socket: the name starts with a NUL byte instead.
            self.address = b"\0" + address[1:].encode()
        elif address.startswith("/"):
            self.address = address
        if self.address is not None:
            # Made now, before the privilege drop; sendto() needs no privilege.
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # Half the period systemd waits: one late ping is not a restart.
        self.watchdog_interval_s = 0.0
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval_s = int(usec) / 2e6

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False if it could not be sent."""
        if self.sock is None or self.address is None:
            return False
        try:
            self.sock.sendto("\n".join(assignments).encode("utf-8", "replace"), self.address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
