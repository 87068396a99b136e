"""pcapng blocks -> capture batch entries (pure: bytes in, values out).

libpcap reads pcapng files right (64-bit time stamps, any ``if_tsresol``,
``if_tsoffset``), but pcapy-ng's ``next_batch`` hands each time stamp over
as a uint32 of seconds: 2106-02-07 and later came out in 1970 (issue 11).
sniffd therefore walks pcapng files itself (``capture.OfflineCapture``
feeds this module chunks of the file) and keeps libpcap for filtered reads,
one record at a time (its ``next`` keeps 64-bit seconds).

The format: draft-ietf-opsawg-pcapng.  A file is a sequence of blocks
(type, total length, body, total length again), in sections each opened by
a Section Header Block, which sets the byte order; interface ids count the
Interface Description Blocks of their section.  Packets come in Enhanced
Packet Blocks, Simple Packet Blocks (no interface id, no time stamp: the
section's first interface, time 0, as libpcap reads them) and the obsolete
Packet Blocks; every other block is skipped.

A packet's time stamp is a 64-bit count of its interface's units
(``if_tsresol``: 10^-n or 2^-n seconds, default 10^-6) plus
``if_tsoffset`` seconds.  It becomes seconds and microseconds, the fraction
truncated as libpcap truncates it, and batches carry seconds past 2106 as
``capture.Batch.epoch`` (the multiple of 2**32 below them) plus the uint32
rest.

Where the file breaks, the walk stops and says why, as libpcap would and
in libpcap's words where it has some, so that a damaged file reads the
same whether libpcap or sniffd reads it: the records before the break are
kept (`sniffd read` warns and exits 0, as for a truncated classic pcap).
libpcap itself checks the file's first section when it opens the file.
"""

from __future__ import annotations

import struct
import sys

SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
MAGIC = b"\x0a\x0d\x0d\x0a"
# The byte-order magic, as each order writes it.
_ORDERS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
# libpcap refuses blocks past 16 MiB (INITIAL_MAX_BLOCKSIZE); a packet of
# the largest snapshot length (262144) is far below it.
MAX_BLOCK = 16 * 1024 * 1024
# libpcap's largest snapshot length for the link types sniffd reads
# (max_snaplen_for_dlt); an interface's 0 or larger means this.
MAX_SNAPLEN = 262144
# Records carry RFC 3339 times, whose years run to 9999; a time stamp from
# 10000-01-01 on (or before 1970: a negative if_tsoffset) has no place in
# them, and the walk stops there.
TS_END = 253402300800
USEC = 1_000_000

_META = struct.Struct("=4I").pack
_SHORT = "block of type {} in pcapng dump file is too short"
# pcapng_epbs's interface table: units per second, if_tsoffset, native.
_IFACE = struct.Struct("=Qq")


def _structs(order: str) -> tuple:
    return (
        struct.Struct(order + "II").unpack_from,  # block type, total length
        struct.Struct(order + "I").unpack_from,  # trailing total length; SPB original length
        struct.Struct(order + "5I").unpack_from,  # EPB: interface, ts high, ts low, caplen, length
        struct.Struct(order + "HH4I").unpack_from,  # PB: interface, drops, ts high, ts low, caplen, length
        struct.Struct(order + "HxxI").unpack_from,  # IDB: link type, snaplen
        struct.Struct(order + "HH").unpack_from,  # option code, length
        struct.Struct(order + "q").unpack_from,  # if_tsoffset
    )


def timestamp(t: int, units: int, offset: int) -> tuple[int, int]:
    """(seconds, microseconds) of a time stamp of ``t`` units (``units`` per
    second) on an interface with ``if_tsoffset`` ``offset``; the fraction is
    truncated to the microsecond, as libpcap does."""
    sec, frac = divmod(t, units)
    return sec + offset, frac * USEC // units


def ts_problem(sec: int) -> str:
    """Why a time stamp of ``sec`` seconds is refused (not 0 <= sec < TS_END)."""
    when = "before 1970" if sec < 0 else "after the year 9999"
    return f"a packet's time stamp ({sec} s from 1970) is {when}, where a record has no time for it"


def pcapng_epbs_py(buf: bytes, pos: int, n: int, swapped: bool, interfaces: bytes, snapshot: int,
                   epoch: int) -> tuple[bytes, int, int, int]:
    """The reference for sniffd/_batch.c's pcapng_epbs (see there): up to
    ``n`` sound Enhanced Packet Blocks in a row from ``pos`` -> (meta, pos,
    stop, epoch); stop 0 after ``n`` packets or before one of another
    epoch, 1 at a block the walk must read itself."""
    order = ">" if (sys.byteorder == "little") == swapped else "<"
    head = struct.Struct(order + "7I").unpack_from
    trail = struct.Struct(order + "I").unpack_from
    ifs = list(_IFACE.iter_unpack(interfaces))
    out = []
    stop = 0
    while len(out) < n:
        if pos + 28 > len(buf):
            stop = 1
            break
        btype, blen, iface, hi, lo, caplen, _wirelen = head(buf, pos)
        if (btype != EPB or blen < 32 or blen & 3 or blen > MAX_BLOCK or pos + blen > len(buf)
                or trail(buf, pos + blen - 4)[0] != blen):
            stop = 1
            break
        if iface >= len(ifs) or caplen > snapshot or 28 + caplen > blen - 4 or ifs[iface][0] == 0:
            stop = 1
            break
        units, offset = ifs[iface]
        sec, usec = timestamp((hi << 32) | lo, units, offset)
        if not 0 <= sec < TS_END:
            stop = 1
            break
        low = sec & 0xFFFFFFFF
        if sec - low != epoch:
            if epoch != -1:
                break
            epoch = sec - low
        out.append(_META(low, usec, pos + 28, caplen))
        pos += blen
    return b"".join(out), pos, stop, epoch


try:
    from sniffd._batch import pcapng_epbs
except ImportError:  # built without a C compiler: the same, slower
    pcapng_epbs = pcapng_epbs_py


class PcapngWalk:
    """A walk through the blocks of one pcapng file, in order.

    Call ``walk(buf, pos, n)`` with ``buf`` holding the file from some block
    on (the first call: from offset 0, its Section Header Block), then again
    from the position it returns, with the same or re-read bytes.  The walk
    keeps the section's byte order and its interfaces between calls.  Runs
    of sound Enhanced Packet Blocks are read by pcapng_epbs (C); every other
    block, and any that pcapng_epbs leaves, by ``_block`` here.
    """

    def __init__(self) -> None:
        self.order = ""  # "<" or ">" from the first Section Header Block on
        self._s: tuple = ()
        self._swapped = False
        # Per interface of the current section: (units per second, offset
        # s), and the same packed for pcapng_epbs.
        self.interfaces: list[tuple[int, int]] = []
        self._packed = b""
        # libpcap's rules for the whole file: one link type, the first
        # interface's; its snapshot length bounds every caplen.
        self.linktype: int | None = None
        self.snapshot = MAX_SNAPLEN
        # Why the walk stopped (stop 2), in one line.
        self.problem: str | None = None
        # Stop 1: the bytes the next block needs from ``pos`` (8 until its
        # header is read).
        self.need = 8

    def walk(self, buf: bytes, pos: int, n: int) -> tuple[bytes, int, int, int]:
        """Up to ``n`` packets from the block at ``pos`` on -> (meta entries
        as capture.Batch holds them, offsets into ``buf``; the position
        after the blocks walked; stop; epoch of the entries).

        stop 0: ``n`` packets, or the next packet's epoch differs (call
        again); 1: the next block is not whole in ``buf`` (``need`` bytes
        from ``pos``; read more, or the file ends there); 2: the file is
        broken at ``pos`` (``problem`` says how)."""
        out: list[bytes] = []
        count = 0
        epoch = -1
        while count < n:
            if self.order:
                meta, pos, stop, epoch = pcapng_epbs(buf, pos, n - count, self._swapped, self._packed,
                                                     self.snapshot, epoch)
                if meta:
                    out.append(meta)
                    count += len(meta) >> 4
                if stop == 0:
                    break
            entry, pos, stop, epoch = self._block(buf, pos, epoch)
            if stop:
                return b"".join(out), pos, stop, epoch
            if entry is not None:
                if not entry:
                    break  # a packet of another epoch: the next batch's
                out.append(entry)
                count += 1
        return b"".join(out), pos, 0, epoch

    def _block(self, buf: bytes, pos: int, epoch: int) -> tuple[bytes | None, int, int, int]:
        """Read the one block at ``pos`` -> (its packet's meta entry, None
        for a block without one, b"" for a packet of an epoch other than
        ``epoch`` (left unread); the position after it; stop 0, or 1 / 2 as
        ``walk``'s; the epoch)."""
        end = len(buf)
        if pos + 8 > end:
            self.need = 8
            return None, pos, 1, epoch
        if buf[pos : pos + 4] == MAGIC:
            if pos + 12 > end:
                # libpcap reads the length in the section's order so far.
                self.need = max(12, self._s[0](buf, pos)[1]) if self._s else 12
                return None, pos, 1, epoch
            order = _ORDERS.get(buf[pos + 8 : pos + 12])
            if order is None:
                return self._broken(pos, epoch, "unknown byte order in a Section Header Block")
            if order != self.order:
                self.order, self._s = order, _structs(order)
                self._swapped = (order == "<") != (sys.byteorder == "little")
        s = self._s
        btype, blen = s[0](buf, pos)
        if blen < 12:
            return self._broken(pos, epoch, f"block in pcapng dump file has a length of {blen} < 12")
        if blen & 3:
            return self._broken(pos, epoch, f"block in pcapng dump file has a length of {blen} that is not a multiple of 4")
        if blen > MAX_BLOCK:
            return self._broken(pos, epoch, f"pcapng block size {blen} > maximum {MAX_BLOCK}")
        if pos + blen > end:
            self.need = blen
            return None, pos, 1, epoch
        if s[1](buf, pos + blen - 4)[0] != blen:
            return self._broken(pos, epoch, "block total length in header and trailer don't match")
        entry = None
        if btype == EPB or btype == PB or btype == SPB:
            if btype == EPB:
                if blen < 32:
                    return self._broken(pos, epoch, _SHORT.format(btype))
                iface, hi, lo, caplen, _wirelen = s[2](buf, pos + 8)
                data = pos + 28
            elif btype == PB:
                if blen < 32:
                    return self._broken(pos, epoch, _SHORT.format(btype))
                iface, _drops, hi, lo, caplen, _wirelen = s[3](buf, pos + 8)
                data = pos + 28
            else:
                if blen < 16:
                    return self._broken(pos, epoch, _SHORT.format(btype))
                iface, hi, lo = 0, 0, 0
                caplen = min(s[1](buf, pos + 8)[0], self.snapshot)
                data = pos + 12
            if iface >= len(self.interfaces):
                return self._broken(pos, epoch, f"a packet arrived on interface {iface}, but there's no Interface Description Block for that interface")
            if caplen > self.snapshot:
                return self._broken(pos, epoch, f"invalid packet capture length {caplen}, bigger than snaplen of {self.snapshot}")
            if data + caplen > pos + blen - 4:
                return self._broken(pos, epoch, _SHORT.format(btype))
            units, offset = self.interfaces[iface]
            sec, usec = timestamp((hi << 32) | lo, units, offset)
            if not 0 <= sec < TS_END:
                return self._broken(pos, epoch, ts_problem(sec))
            low = sec & 0xFFFFFFFF
            if sec - low != epoch:
                if epoch != -1:
                    return b"", pos, 0, epoch
                epoch = sec - low
            entry = _META(low, usec, data, caplen)
        elif btype == IDB:
            problem = self._interface(buf, pos, blen)
            if problem:
                return self._broken(pos, epoch, problem)
        elif btype == SHB:
            if blen < 28:
                return self._broken(pos, epoch, _SHORT.format(btype))
            major = s[5](buf, pos + 12)[0]
            if major != 1:
                return self._broken(pos, epoch, f"unknown pcapng savefile major version number {major}")
            self.interfaces = []
            self._packed = b""
        return entry, pos + blen, 0, epoch

    def _broken(self, pos: int, epoch: int, problem: str) -> tuple[None, int, int, int]:
        self.problem = problem
        return None, pos, 2, epoch

    def _interface(self, buf: bytes, pos: int, blen: int) -> str | None:
        """Read the Interface Description Block at ``pos``; its problem, or None."""
        s = self._s
        if blen < 20:
            return _SHORT.format(IDB)
        linktype, snaplen = s[4](buf, pos + 8)
        units, offset = USEC, 0
        seen_resol = seen_offset = False
        opt, end = pos + 16, pos + blen - 4
        while opt + 4 <= end:
            code, olen = s[5](buf, opt)
            if code == 0:  # opt_endofopt
                break
            value = opt + 4
            opt = value + ((olen + 3) & ~3)
            if opt > end:
                return "Interface Description Block has an option that runs past its end"
            if code == 9:  # if_tsresol
                if olen != 1:
                    return f"Interface Description Block has if_tsresol option with length {olen} != 1"
                if seen_resol:
                    return "Interface Description Block has more than one if_tsresol option"
                seen_resol = True
                resol = buf[value]
                if resol & 0x80:  # a power of 2
                    if resol & 0x7F > 63:
                        return f"Interface Description Block if_tsresol option resolution 2^-{resol & 0x7F} is too high"
                    units = 1 << (resol & 0x7F)
                else:
                    if resol > 19:
                        return f"Interface Description Block if_tsresol option resolution 10^-{resol} is too high"
                    units = 10**resol
            elif code == 14:  # if_tsoffset
                if olen != 8:
                    return f"Interface Description Block has if_tsoffset option with length {olen} != 8"
                if seen_offset:
                    return "Interface Description Block has more than one if_tsoffset option"
                seen_offset = True
                offset = s[6](buf, value)[0]
        if self.linktype is None:
            self.linktype = linktype
            self.snapshot = snaplen if 0 < snaplen <= MAX_SNAPLEN else MAX_SNAPLEN
        elif linktype != self.linktype:
            return f"an interface has a type {linktype} different from the type of the first interface"
        self.interfaces.append((units, offset))
        self._packed += _IFACE.pack(units, offset)
        return None
