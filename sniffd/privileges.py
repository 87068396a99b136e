"""Privileges: what ``sniffd run`` gives up once the capture is open.

The order, like ``tcpdump -Z``: open the capture with the privilege it needs
(root or CAP_NET_RAW), ``preload()`` what may be loaded lazily later, then
``drop_privileges()`` to the configured user and drop every capability,
before any packet is parsed and before the output file is opened.
"""

from __future__ import annotations

import grp
import os
import pwd


class PrivilegeError(Exception):
    """The configured user or group cannot be switched to."""



def preload() -> None:
    """Load now, as the starting user, what may be loaded lazily later.

    After the privilege drop the Python installation itself may be unreadable
    (an interpreter under /root, say); anything first imported after it would
    fail.  Codec lookups are cached by the registry, imports by sys.modules.
    """
    import codecs
    import ctypes  # noqa: F401  (drop_capabilities, oplog.versions)
    import socket  # noqa: F401  (LiveCapture.set_fanout)
    import traceback  # noqa: F401  (log.exception)

    import hpack  # noqa: F401  (sniffd.http2.decoder, at the first HTTP/2 connection)

    import sniffd.http2.flow  # noqa: F401  (the flow table, at the first HTTP/2 connection)
    from sniffd.tls import x509

    x509.warm_up()  # cryptography, at the first TLS 1.2 certificate

    for name in ("ascii", "latin-1", "utf-8", "utf-16", "idna"):
        codecs.lookup(name)


def drop_privileges(user: str, group: str) -> tuple[int, int]:
    """Become ``user``:``group`` for good (no way back to root), then drop every capability.

    Started as root: supplementary groups cleared, then gid, then uid (real,
    effective and saved), which also empties the capability sets.  Started
    as the target user with capabilities (systemd's AmbientCapabilities):
    the capabilities are dropped.  ``user = ""`` keeps the current user.
    Returns the (uid, gid) now in force.
    """
    if user:
        pw = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
        if os.geteuid() == 0:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
            if pw.pw_uid != 0:
                try:
                    os.setuid(0)
                except PermissionError:
                    pass
                else:  # pragma: no cover - would be a kernel or libc bug
                    raise PrivilegeError("[privileges] user: could regain root after dropping it")
        elif os.geteuid() != pw.pw_uid:
            raise PrivilegeError(
                f"[privileges] user: cannot switch to {user!r} (uid {pw.pw_uid}): not started as root "
                f"(running as uid {os.geteuid()}); start as root, or set user to the current user or ''"
            )
        elif os.getegid() != gid and gid not in os.getgroups():
            raise PrivilegeError(f"[privileges] group: cannot switch to gid {gid}: not started as root")
    drop_capabilities()
    return os.geteuid(), os.getegid()


def _cap_sets() -> dict[str, int]:
    sets = {}
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(("CapPrm:", "CapEff:", "CapInh:", "CapAmb:")):
                name, value = line.split(":", 1)
                sets[name] = int(value, 16)
    return sets


def drop_capabilities() -> None:
    """Empty the permitted, effective and inheritable (hence ambient) capability sets.

    After the capture is open, CAP_NET_RAW is not needed any more; keeping it
    would let a bug in the packet parsers open new raw sockets.
    """
    caps = _cap_sets()
    if not any(caps.values()):
        return
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two Data structs
    data = (Data * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"cannot drop capabilities: {os.strerror(err)}")
    left = _cap_sets()
    if left.get("CapPrm") or left.get("CapEff") or left.get("CapAmb"):
        raise PrivilegeError(f"capabilities still held after dropping them: {left}")
