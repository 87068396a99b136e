"""Flow pcaps: the packets of chosen connections, each connection in a pcap file of its own.

The forensics sink beside the records (issue 13; gopacket's reassemblydump
and Suricata's pcap-log are the models).  On when ``flow_pcap_dir`` is set
(``[flow_pcaps]``, ``sniffd read --flow-pcaps``); ``flow_pcap_when`` says
which connections (``When``).

A connection's fate is known only once one of its records is built, so
until then its frames are held, as they came off the wire (pcap records:
time stamp, lengths, the frame), in a buffer of its own:

* a record matches: its file is made, the held frames written, and its
  later frames written straight through;
* the connection ends (the flow table forgets it) with no record matching:
  the held frames are dropped;
* ``all``: nothing is held, every frame is written as it comes.

Bounds.  A file holds the first ``flow_pcap_max_file_mb`` of its
connection's packets (pcap header included; the held buffer is that same
head, so a connection chosen late is written from its first packet); the
packets after it are counted (``flow_pcap_packets_cut``), not written.
The held buffers together stay under ``flow_pcap_max_buffer_mb``: past it,
the buffers of the connections that began first are dropped
(``flow_pcap_buffers_shed``) and those connections are never written (a
file without its connection's head would mislead).  They are also charged
to the memory budget (``memory_budget_mb``): when the flow table sheds
memory (step 1), every held buffer is dropped too.  The files in the
directory (this naming's, those of earlier runs included) stay under
``flow_pcap_max_total_mb``: past it the oldest are removed
(``flow_pcap_files_removed``), an open one included (its connection is
then written no more).  At most ``MAX_OPEN_FILES`` files are open at once.

Names tell the connection: ``<first packet, UTC>-<uid>-<client ip>.<port>-
<server ip>.<port>.pcap`` (an IPv6 address with ``_`` for ``:``), the uid
being the records' ``uid``.  Files are made 0640 when the first packet is
written, so by the user sniffd runs as (after ``sniffd run`` drops root).

The pipeline is the only caller, in this order: ``packet()`` for every frame
the flow table took (after that frame's records), ``record()`` for every
record built, ``settle()`` after records (it takes the connections the flow
table forgot, ``gone``), ``tick()`` once a second of packet time,
``close()`` at the end.  It reads no clock: time stamps are the packets'.
"""

from __future__ import annotations

import enum
import errno
import os
import re
import struct
import time
from collections import OrderedDict

from sniffd import records

# --- which connections: flow_pcap_when ------------------------------------------------

# RFC 9110 section 9.1: a method is a token (section 5.6.2).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PART = re.compile(
    r"(?P<all>all)|(?P<anomaly>anomaly)(?:=(?P<name>[a-z0-9_]+))?"
    r"|status(?P<op>>=|<=|!=|=|>|<)(?P<status>[1-9][0-9]{2})"
    r"|host=(?P<host>(?:\*\.)?[A-Za-z0-9_.:\[\]-]+)"
    rf"|method=(?P<method>{_TOKEN})"
)
_OPS = {
    ">=": int.__ge__, "<=": int.__le__, "!=": int.__ne__, "=": int.__eq__, ">": int.__gt__, "<": int.__lt__,
}
WHEN_HELP = ("all, anomaly, anomaly=NAME, status<op>NNN (op one of = != < <= > >=), host=NAME or host=*.DOMAIN, "
             "method=TOKEN, or several joined by '&'")


def _part(text: str):
    """One test of a record (a callable), from ``text``; ValueError if it is none."""
    m = _PART.fullmatch(text)
    if m is None:
        raise ValueError(f"bad condition {text!r}: expected {WHEN_HELP}")
    if m["all"]:
        return None
    if m["anomaly"]:
        name = m["name"]
        if name is None:
            return lambda rec: bool(rec["anomalies"])
        from sniffd.anomalies import ANOMALIES

        if name not in ANOMALIES:
            raise ValueError(f"bad condition {text!r}: no anomaly is named {name!r} (see README, Anomalies)")
        return lambda rec: name in rec["anomalies"]
    if m["op"]:
        op, n = _OPS[m["op"]], int(m["status"])
        return lambda rec: (rec.get("response") or {}).get("status") is not None and op(rec["response"]["status"], n)
    if m["host"]:
        host = m["host"].lower()
        if host.startswith("*."):
            suffix = host[1:]
            return lambda rec: _host(rec).endswith(suffix) or _host(rec) == suffix[1:]
        return lambda rec: _host(rec) == host
    method = m["method"]
    return lambda rec: (rec.get("request") or {}).get("method") == method


def _host(rec: dict) -> str:
    """The host a record names: the request's Host (port and case
    dropped) or a TLS record's server name; "" when none."""
    req = rec.get("request")
    if req is not None:
        host = req.get("host") or ""
    else:
        host = (rec.get("tls") or {}).get("sni") or ""
    host = host.lower()
    if host.startswith("["):  # [v6]:port
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class When:
    """``flow_pcap_when``: a connection is chosen when one of its records
    passes any of the terms; a term is tests joined by ``&``, all of which
    must pass.  ``all`` chooses every connection at its first packet (no
    record needed).  Raises ValueError, naming the term, for anything else."""

    def __init__(self, terms: tuple[str, ...] | list[str]) -> None:
        if not terms:
            raise ValueError(f"no condition given: expected {WHEN_HELP}")
        self.terms = tuple(terms)
        self.all = False
        self._tests: list[list] = []
        for term in terms:
            parts = [p.strip() for p in term.split("&")]
            tests = [_part(p) for p in parts]
            if None in tests:
                if len(parts) > 1:
                    raise ValueError(f"bad condition {term!r}: 'all' cannot be combined with '&'")
                self.all = True
            else:
                self._tests.append(tests)

    def matches(self, rec: dict) -> bool:
        return any(all(t(rec) for t in tests) for tests in self._tests)


# --- the files ------------------------------------------------------------------------

# Classic pcap (libpcap's savefile format), microseconds, little-endian:
# every reader takes it, tcpdump -r and tshark included.  sniffd's own time
# stamps are microseconds (capture.Batch), so nothing finer is lost here.
PCAP_MAGIC = 0xA1B2C3D4
_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
FILE_HEADER_BYTES = _FILE_HEADER.size
# The snapshot length a file declares: libpcap's largest (MAXIMUM_SNAPLEN),
# so no reader cuts a frame that sniffd held whole.
SNAPLEN = 262144
_META = struct.Struct("=4I")

# Files kept open at once: enough for the connections being written at any
# moment on a busy link; the others are reopened (append) when a packet
# comes.  Far under the unit's file limit (LimitNOFILE, 1024 soft).
MAX_OPEN_FILES = 32
# Costs charged to the memory budget (see sniffd/budget.py), rounded up
# from tracemalloc on CPython 3.11 (20,000 connections): an entry per
# connection (the object, its frame list, its slots in two dicts) ~290
# bytes; a held frame, its record's bytes plus 33 of object and its list
# slot.
FLOW_COST = 320
FRAME_COST = 48

# A name this module writes: what counts toward flow_pcap_max_total_mb among
# the directory's files (the operator's own files are never removed).
NAME_PATTERN = re.compile(r"\d{8}T\d{6}Z-C[0-9A-Za-z]+-[0-9A-Fa-f._]+\.\d+-[0-9A-Fa-f._]+\.\d+(?:-\d+)?\.pcap")

# The counters in the stats (present only when flow pcaps are on).
COUNTERS = ("flow_pcap_files", "flow_pcap_packets", "flow_pcap_bytes", "flow_pcap_packets_cut",
            "flow_pcap_buffers_shed", "flow_pcap_files_removed", "flow_pcap_held_bytes",
            "flow_pcap_fragments_skipped", "flow_pcap_write_errors")


class Fate(enum.Enum):
    """A connection's pcap state.  The transitions, all of them:

        HELD    --a record matches (or ``all``, at the first packet)--> WRITING
        HELD    --buffers over flow_pcap_max_buffer_mb, or memory budget--> SHED
        WRITING --its file removed by flow_pcap_max_total_mb, or a write error--> DONE
        any     --the flow table forgets the connection--> (entry forgotten:
                  HELD's frames dropped, WRITING's file closed)

    SHED and DONE write nothing more (the counters say what was lost)."""

    HELD = 1
    WRITING = 2
    SHED = 3
    DONE = 4


class _Flow:
    __slots__ = ("fate", "frames", "held", "size", "path", "linktype", "cut", "first")

    def __init__(self, linktype: int | None, first: int) -> None:
        self.fate = Fate.HELD
        self.frames: list[bytes] = []  # pcap records (header + frame) while HELD
        self.held = 0  # bytes of those records
        self.size = FILE_HEADER_BYTES  # of the file, written or to be
        self.path: str | None = None
        self.linktype = linktype
        self.cut = 0  # packets past flow_pcap_max_file_mb
        self.first = first  # the first packet's time, seconds


class FlowPcaps:
    def __init__(self, directory: str, when: When, max_file_bytes: int, max_total_bytes: int,
                 max_buffer_bytes: int, uids, shard: tuple[int, int] | None = None) -> None:
        """``uids``: the pipeline's uid maker (records.Uids), for a
        connection written before it has a record (``all``)."""
        self.directory = directory
        self.when = when
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.max_buffer_bytes = max_buffer_bytes
        self._uids = uids
        self.flows: dict = {}  # Connection -> _Flow, in the order connections came
        self.held_flows: OrderedDict = OrderedDict()  # Connection -> _Flow, HELD ones, oldest first
        self.held = 0  # bytes held, with FLOW_COST per entry and FRAME_COST per frame
        self.gone: list = []  # connections the flow table forgot (FlowTable.gone)
        # Files under the total cap, oldest first: path -> [size, _Flow or None when closed].
        self.files: OrderedDict[str, list] = OrderedDict()
        self.total = 0
        self._open: OrderedDict[str, object] = OrderedDict()
        self.counts = dict.fromkeys(COUNTERS, 0)
        if shard is None or shard[0] == 0:
            self._adopt_existing()
        if shard is not None:
            self.share(*shard)

    def share(self, k: int, n: int) -> None:
        """This is process ``k`` of ``n`` writing into the directory (workers):
        each keeps its own files under 1/n of the total; the files there
        before the run count in process 0's share."""
        self.max_total_bytes = max(self.max_total_bytes // n, self.max_file_bytes)
        if k != 0:
            self.files.clear()
            self.total = 0

    def _adopt_existing(self) -> None:
        try:
            names = [e for e in os.scandir(self.directory) if NAME_PATTERN.fullmatch(e.name) and e.is_file()]
        except OSError:
            return
        for e in sorted(names, key=lambda e: (e.stat().st_mtime, e.name)):
            size = e.stat().st_size
            self.files[e.path] = [size, None]
            self.total += size

    # ------------------------------------------------------------- feeding

    def packet(self, conn, linktype: int, sec: int, usec: int, frame: bytes, wirelen: int) -> None:
        """One frame of ``conn`` (a flows.Connection), as captured."""
        f = self.flows.get(conn)
        if f is None:
            f = self.flows[conn] = _Flow(linktype, sec)
            self.held += FLOW_COST
            if self.when.all:
                if conn.uid is None:
                    conn.uid = self._uids()
                self._choose(conn, f)
            else:
                self.held_flows[conn] = f
        elif f.linktype is None:
            f.linktype, f.first = linktype, sec
            self._choose(conn, f)
        fate = f.fate
        if fate is Fate.SHED or fate is Fate.DONE or linktype != f.linktype:
            return
        rec = _RECORD_HEADER.pack(sec & 0xFFFFFFFF, usec, len(frame), max(wirelen, len(frame))) + frame
        n = len(rec)
        if f.cut or f.size + n > self.max_file_bytes:
            # The file is the head of the connection: once one packet does
            # not fit, no later one is written (a smaller ACK would fit, and
            # leave a hole).
            f.cut += 1
            if fate is Fate.WRITING:
                self.counts["flow_pcap_packets_cut"] += 1
            return
        f.size += n
        if fate is Fate.HELD:
            f.frames.append(rec)
            f.held += n
            self.held += n + FRAME_COST
            if self.held > self.max_buffer_bytes:
                self._shed_oldest()
        else:
            self._write(f, rec, 1)

    def record(self, conn, rec: dict) -> None:
        """A record of ``conn`` was built: does it choose the connection?"""
        f = self.flows.get(conn)
        if f is not None and f.fate is not Fate.HELD:
            return
        if not self.when.matches(rec):
            return
        if f is None:
            # None of its frames reached here (all were IP fragments): its
            # file is made at its next packet (whose link type it takes).
            f = self.flows[conn] = _Flow(None, 0)
            f.fate = Fate.WRITING
            self.held += FLOW_COST
            return
        self._choose(conn, f)

    def fragment(self) -> None:
        """A frame that completed a fragmented datagram: its connection's
        pieces are not attributed (only the first carries the ports)."""
        self.counts["flow_pcap_fragments_skipped"] += 1

    def settle(self) -> None:
        """Forget the connections the flow table forgot (after their last records)."""
        gone = self.gone
        while gone:
            conn = gone.pop()
            f = self.flows.pop(conn, None)
            if f is None:
                continue
            self.held -= FLOW_COST
            if f.fate is Fate.HELD:
                self._release(f)
                del self.held_flows[conn]
            elif f.path is not None:
                self._close_file(f.path)
                entry = self.files.get(f.path)
                if entry is not None:
                    entry[1] = None

    def tick(self) -> None:
        """Once a second (packet time): what was written reaches the files,
        for a reader following them."""
        for fh in self._open.values():
            self._flush(fh)

    def shed(self) -> int:
        """The memory budget is over: drop every held buffer.  Returns 0
        (counted here, as flow_pcap_buffers_shed)."""
        for conn in list(self.held_flows):
            self._shed(conn)
        return 0

    def close(self) -> None:
        """The end: held connections are dropped (no record chose them),
        files closed."""
        self.gone.extend(self.flows)
        self.settle()
        for path in list(self._open):
            self._close_file(path)

    @property
    def stats(self) -> dict:
        self.counts["flow_pcap_held_bytes"] = self.held
        return dict(self.counts)

    # ----------------------------------------------------------- internals

    def _release(self, f: _Flow) -> None:
        self.held -= f.held + FRAME_COST * len(f.frames)
        f.frames = []
        f.held = 0

    def _shed(self, conn) -> None:
        f = self.held_flows.pop(conn)
        self._release(f)
        f.fate = Fate.SHED
        self.counts["flow_pcap_buffers_shed"] += 1

    def _shed_oldest(self) -> None:
        """Over flow_pcap_max_buffer_mb: drop the buffers of the connections
        that began first, down to 90% (so it does not run on every packet
        at the edge)."""
        target = self.max_buffer_bytes * 9 // 10
        while self.held > target and self.held_flows:
            self._shed(next(iter(self.held_flows)))

    def _choose(self, conn, f: _Flow) -> None:
        self.held_flows.pop(conn, None)
        f.fate = Fate.WRITING
        (cip, cport), (sip, sport) = conn.client, conn.server
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(f.first))
        base = f"{stamp}-{conn.uid}-{_ip(cip)}.{cport}-{_ip(sip)}.{sport}"
        path = os.path.join(self.directory, base + ".pcap")
        for n in range(1, 1000):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
                break
            except FileExistsError:
                # The same connection again after an RST (it keeps its uid),
                # or the same name from an earlier run.
                path = os.path.join(self.directory, f"{base}-{n}.pcap")
            except OSError as e:
                self._failed(f, e)
                return
        else:
            self._failed(f, OSError(errno.EEXIST, "too many files of this name"))
            return
        try:
            os.fchmod(fd, 0o640)  # whatever the umask
            fh = os.fdopen(fd, "wb", buffering=1 << 16)
        except OSError as e:
            os.close(fd)
            self._failed(f, e)
            return
        f.path = path
        self._open[path] = fh
        if len(self._open) > MAX_OPEN_FILES:
            self._close_file(next(iter(self._open)))
        self.files[path] = [0, f]
        self.counts["flow_pcap_files"] += 1
        self.counts["flow_pcap_packets_cut"] += f.cut
        frames, f.frames = f.frames, []
        self.held -= f.held + FRAME_COST * len(frames)
        f.held = 0
        self._write(f, _FILE_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, _file_linktype(f.linktype)), 0)
        if frames:
            self._write(f, b"".join(frames), len(frames))

    def _write(self, f: _Flow, data: bytes, packets: int) -> None:
        path = f.path
        fh = self._open.get(path)
        try:
            if fh is None:
                fh = open(path, "ab", buffering=1 << 16)  # kept open, closed by _close_file
                self._open[path] = fh
                if len(self._open) > MAX_OPEN_FILES:
                    self._close_file(next(iter(self._open)))
            else:
                self._open.move_to_end(path)
            fh.write(data)
        except OSError as e:
            self._failed(f, e)
            return
        n = len(data)
        self.files[path][0] += n
        self.total += n
        self.counts["flow_pcap_packets"] += packets
        self.counts["flow_pcap_bytes"] += n
        if self.total > self.max_total_bytes:
            self._rotate()

    def _rotate(self) -> None:
        """Remove the oldest files until the directory's are under the cap."""
        while self.total > self.max_total_bytes and self.files:
            path, (size, f) = self.files.popitem(last=False)
            self._close_file(path)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError:
                self.counts["flow_pcap_write_errors"] += 1
            self.total -= size
            self.counts["flow_pcap_files_removed"] += 1
            if f is not None and f.fate is Fate.WRITING:
                f.fate = Fate.DONE

    def _failed(self, f: _Flow, e: OSError) -> None:
        """A file that cannot be written (disk full, directory gone): that
        connection is written no more; counted, never raised (the records
        go on)."""
        self.counts["flow_pcap_write_errors"] += 1
        f.fate = Fate.DONE
        if f.path is not None:
            self._close_file(f.path)

    def _flush(self, fh) -> None:
        try:
            fh.flush()
        except OSError:
            self.counts["flow_pcap_write_errors"] += 1

    def _close_file(self, path: str) -> None:
        fh = self._open.pop(path, None)
        if fh is not None:
            try:
                fh.close()
            except OSError:
                self.counts["flow_pcap_write_errors"] += 1


def _ip(addr: bytes) -> str:
    return records.ip_text(addr).replace(":", "_")


# libpcap reports LINKTYPE_RAW (101 in files) as DLT_RAW (12 on Linux): a
# file says 101.  Every other link type sniffd reads has one number.
_DLT_TO_LINKTYPE = {12: 101, 14: 101}


def _file_linktype(linktype: int) -> int:
    return _DLT_TO_LINKTYPE.get(linktype, linktype)


def check_directory(path: str) -> str | None:
    """What is wrong with ``path`` as the flow pcap directory, or None."""
    if not os.path.isdir(path):
        return f"directory {path} does not exist" if not os.path.exists(path) else f"{path} is not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"directory {path} is not writable"
    return None


def meta_of(batch, index: int) -> tuple[int, int, int, int]:
    """(sec, usec, offset, caplen) of frame ``index`` of a capture batch."""
    return _META.unpack_from(batch.meta, index * 16)
