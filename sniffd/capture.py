"""Capture stage (I/O): libpcap through pcapy-ng, live or from a file.

It keeps no state beyond the libpcap handle and hands out *batches*: one
``next_batch`` call moves up to ``batch_size`` packets across the C/Python
boundary at once (pcapy-ng returns one bytes object plus a packed array of
``(sec, usec, offset, caplen)`` records), which is what lets the rest of the
pipeline keep up with a busy link.
"""

from __future__ import annotations

import os
import select
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pcapy

from sniffd import pcapng
from sniffd.source import CaptureError, memfd_path, open_input

# One batch = one C call.  512 packets amortise the call overhead well while
# keeping a batch small (<1 MiB at full-size frames) for the live queue.
DEFAULT_BATCH_SIZE = 512

_META = struct.Struct("=4I")


@dataclass(slots=True)
class Batch:
    """Packets of one ``next_batch`` call: ``buf[offset:offset+caplen]`` each.

    ``meta`` holds uint32 seconds, which end on 2106-02-07; a file's packets
    after that (pcapng has 64-bit time stamps) come in batches whose
    ``epoch``, the multiple of 2**32 below their seconds, is added to each
    entry's.  0 for everything else (live capture, classic pcap)."""

    buf: bytes
    meta: bytes
    epoch: int = 0

    def __len__(self) -> int:
        return len(self.meta) // 16

    def frames(self) -> Iterator[tuple[float, bytes]]:
        buf, epoch = self.buf, self.epoch
        for sec, usec, off, caplen in _META.iter_unpack(self.meta):
            yield (epoch + sec) + usec * 1e-6, buf[off : off + caplen]


def _compile_check(linktype: int, snaplen: int, bpf: str) -> None:
    try:
        pcapy.compile(linktype, snaplen, bpf, 1, 0xFFFFFFFF)
    except pcapy.PcapError as e:
        raise CaptureError(f"invalid BPF filter {bpf!r}: {e}") from None


class OfflineCapture:
    """A saved capture (pcap or pcapng), optionally filtered by BPF in libpcap.

    libpcap opens every file (so it judges what is a capture file, and its
    link type) and reads it when a filter is given.  Without one, sniffd
    walks the records itself: classic pcap in C (pcap_records), handing any
    odd record back to libpcap; pcapng in Python (sniffd.pcapng), to the
    end, since pcapy-ng's next_batch cuts pcapng's 64-bit time stamps to
    32-bit seconds.  A filtered pcapng read goes through libpcap one record
    at a time, whose time stamps keep their 64 bits.

    ``path`` may also be ``-`` (standard input), a pipe, or gzip or zstd
    data (sniffd.source): a *stream*, read once from the front.  libpcap
    judges its head (the first chunk, from an in-memory file); a stream that
    ends within that chunk is then read from there as a plain file.  A
    longer one is walked by the same walkers, chunk after chunk
    (_StreamChunks); what they leave to libpcap (a filter, link types
    libpcap rewrites, an odd record) libpcap reads from a pipe (_fed).
    """

    def __init__(self, path: str, bpf: str = "") -> None:
        self.input = open_input(path)
        self.path = self.input.name  # in messages: the argument, or "stdin"
        self._memfd: int | None = None
        self._stream: _StreamChunks | None = None
        self._chunks: _FileChunks | None = None
        file = self.input.plain_path
        if file is not None:
            if self.input.size == 0:
                raise CaptureError(f"{self.path}: empty: no capture in it")
            self._reader = self._open(file, "")
            head = _file_head(file)
        else:
            head = self.input.read(_CHUNK)
            after = f" after {self.input.compression} decompression" if self.input.compression else ""
            if not head:
                raise CaptureError(f"{self.path}: empty{after}: no capture in it")
            self._memfd, file = memfd_path(head)
            self._reader = self._open(file, after)
            if len(head) == _CHUNK:  # more to come: a stream
                self._stream = _StreamChunks(self.input, head)
                file = None
        # Where libpcap and the walkers open the capture (None: a stream), and
        # where a worker process may open it again (None: a pipe, read once).
        self._file = file
        self.reopen_path = file if file is not None else self.input.reopen_path
        self._reading = self._reader  # the libpcap handle reading now (position)
        self.linktype = self._reader.datalink()
        if bpf:
            _compile_check(self.linktype, 262144, bpf)
        self.bpf = bpf
        if self.bpf:
            self._setfilter(self._reader)
        self._head = head
        self.snaplen = file_snaplen(head)
        # Set when libpcap reports the file cut short mid-record.
        self.truncated: str | None = None
        # Classic pcap of a link type whose frames libpcap hands over as
        # stored, read without a filter: records are walked in C straight
        # from the file (see _walk); anything else is read by libpcap.
        self._walk_as = _plain_pcap(head) if not bpf and self.linktype in _WALKED_LINKTYPES else None
        self._pcapng = head[:4] == pcapng.MAGIC
        # pcapng without a filter: walked here (_walk_pcapng), except the
        # link types whose frames libpcap rewrites.
        self._walk_pcapng_file = self._pcapng and not bpf and self.linktype not in _REWRITTEN_LINKTYPES

    def _open(self, file: str, after: str):
        try:
            return pcapy.open_offline(file)
        except pcapy.PcapError as e:
            raise CaptureError(f"{self.path}: not a readable pcap/pcapng file{after} ({e})") from None

    @property
    def size(self) -> int | None:
        """The input's size in bytes (compressed, for a compressed file), when known."""
        return self.input.size

    def position(self) -> int:
        """Bytes of the input read so far (of ``size``), for the progress bar."""
        if self.input.plain_path is None:
            return self.input.consumed
        if self._chunks is not None:
            return self._chunks.consumed
        try:
            return os.lseek(self._reading.getfd(), 0, os.SEEK_CUR)
        except (OSError, pcapy.PcapError):
            return 0

    def _setfilter(self, reader) -> None:
        try:
            reader.setfilter(self.bpf)
        except pcapy.PcapError as e:
            raise CaptureError(f"invalid BPF filter {self.bpf!r}: {e}") from None

    def batches(self, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[Batch]:
        if self._stream is not None:
            yield from self._stream_batches(batch_size)
            return
        reader = self._reader
        done = 0
        if self._walk_pcapng_file:
            self._chunks = _FileChunks(self._file)
            try:
                yield from self._walk_pcapng(self._chunks, batch_size)
            finally:
                self._chunks.close()
            return
        if self._pcapng:
            # next_batch would cut the seconds to 32 bits.
            yield from self._by_record(reader, batch_size)
            return
        if self._walk_as is not None:
            self._chunks = _FileChunks(self._file)
            try:
                done, stopped_at = yield from self._walk(self._chunks, batch_size)
            finally:
                self._chunks.close()
                self._chunks = None
            if stopped_at is None:
                return
            # A record the walk leaves to libpcap (cut short, or longer than
            # the snapshot length): libpcap goes on from there, and says.
            for _ in range(done):
                reader.next()
        while True:
            try:
                buf, meta = reader.next_batch(batch_size)
            except pcapy.PcapError as e:
                # libpcap reports a record cut mid-way ("truncated dump
                # file") as an error, and next_batch then drops the whole
                # batch it was filling.  Re-read that batch one record at a
                # time so every whole record before the cut is kept.
                self.truncated = str(e)
                yield from self._tail(done)
                return
            if not meta:
                return
            done += len(meta) // 16
            yield Batch(buf, meta)

    def _stream_batches(self, batch_size: int) -> Iterator[Batch]:
        """A stream's batches: the walks of a plain file, on its chunks;
        libpcap (_fed) where a plain file's read would use it."""
        chunks = self._stream
        if self._walk_pcapng_file:
            yield from self._walk_pcapng(chunks, batch_size)
            self._drain()
            return
        if self._walk_as is not None:
            _, stopped_at = yield from self._walk(chunks, batch_size)
            if stopped_at is not None:
                # libpcap reads on from the record the walk left, after the
                # file header, as it goes on in a plain file.
                yield from self._fed(self._head[:24] + chunks.rest(stopped_at), batch_size)
            return
        yield from self._fed(chunks.rest(0), batch_size)

    def _drain(self) -> None:
        """Decompress what is left of a compressed stream after the capture
        in it stopped, and throw it away: damage further on is still found
        (CaptureError), and a capture broken by damaged compression (bytes
        changed, whose CRC fails only at the end) is reported as that, not
        as a cut capture."""
        if self.input.compression:
            while self.input.read(_CHUNK):
                pass

    def _walk(self, chunks, batch_size: int):
        """Batches of whole records, read in chunks of the file and indexed
        by pcap_records (C), with no copy of each packet as libpcap's
        next_batch makes: half of `sniffd read`'s reading time.  Returns
        (records yielded, None if the file ended cleanly after them, else
        the offset of the record left to libpcap)."""
        swapped, nano, max_caplen = self._walk_as
        done = 0
        at = 24  # file offset of the next record
        while True:
            chunk = chunks.chunk(at, _CHUNK)
            if not chunk:
                return done, None
            pos, stop = 0, 0
            while stop == 0:
                meta, pos, stop = pcap_records(chunk, pos, batch_size, swapped, nano, max_caplen)
                if meta:
                    done += len(meta) // 16
                    yield Batch(chunk, meta)
            if stop == 2 or (pos < len(chunk) and len(chunk) < _CHUNK) or pos == 0:
                # An odd record, the file cut inside one, or one longer
                # than a chunk (cannot be, below max_caplen): libpcap's.
                return done, at + pos
            at += pos  # the record that did not fit starts the next chunk

    def _walk_pcapng(self, chunks, batch_size: int) -> Iterator[Batch]:
        """Batches of a pcapng file walked by sniffd.pcapng, from chunks of
        the file; a block cut by a chunk's end starts the next chunk.
        Sets ``truncated`` where the file ends inside a block or breaks."""
        walk = pcapng.PcapngWalk()
        at = 0  # file offset of the next block
        while True:
            want = max(_CHUNK, walk.need)
            chunk = chunks.chunk(at, want)
            pos, stop = 0, 0
            while stop == 0:
                meta, pos, stop, epoch = walk.walk(chunk, pos, batch_size)
                if meta:
                    yield Batch(chunk, meta, epoch)
            if stop == 2:
                self.truncated = walk.problem
                return
            if len(chunk) < want:  # the file ends in this chunk
                left = len(chunk) - pos
                if left:
                    # libpcap's words: it reads a block's 8-byte header,
                    # then the rest (a section header's byte-order magic
                    # first: 4 bytes).
                    tried, got = (8, left) if left < 8 else (max(walk.need - 8, 4), left - 8)
                    self.truncated = f"truncated pcapng dump file; tried to read {tried} bytes, only got {got}"
                return
            at += pos

    def _by_record(self, reader, batch_size: int) -> Iterator[Batch]:
        """Batches from libpcap one record at a time (``next``, whose
        seconds are 64 bits wide, where next_batch's are 32); a new batch
        for each epoch (see Batch).  Sets ``truncated`` on libpcap's error,
        or at a time stamp a record has no time for."""
        bufs, metas, off, epoch = [], [], 0, 0
        while True:
            try:
                hdr, data = reader.next()
            except pcapy.PcapError as e:
                self.truncated = str(e)
                break
            if hdr is None:
                break
            sec, usec = hdr.getts()
            if not 0 <= sec < pcapng.TS_END:
                self.truncated = pcapng.ts_problem(sec)
                break
            low = sec & 0xFFFFFFFF
            if metas and (sec - low != epoch or len(metas) == batch_size):
                yield Batch(b"".join(bufs), b"".join(metas), epoch)
                bufs, metas, off = [], [], 0
            epoch = sec - low
            bufs.append(data)
            metas.append(_META.pack(low, usec, off, len(data)))
            off += len(data)
        if metas:
            yield Batch(b"".join(bufs), b"".join(metas), epoch)

    def _fed(self, prefix: bytes, batch_size: int) -> Iterator[Batch]:
        """libpcap reads the rest of a stream: ``prefix`` (its bytes read
        already, from a file header on), then the rest, written into a pipe
        by a child process.  A process, not a thread: pcapy holds the GIL
        while libpcap waits on the pipe, so a feeding thread never runs.  One
        record at a time (_by_record): next_batch drops the batch it was
        filling at a cut, and a stream cannot be read again (_tail).  The
        child's own failure (damaged compression) comes back on a second
        pipe, and is raised here once libpcap has read what came before."""
        r, w = os.pipe()
        er, ew = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: feed, then leave without the parent's exit code
            code = 0
            try:
                os.close(r)
                os.close(er)
                _write_all(w, prefix)
                while data := self.input.read(_CHUNK):
                    _write_all(w, data)
            except BrokenPipeError:
                # libpcap stopped at a broken record (the parent says so):
                # still check the compression to its end (_drain).
                try:
                    self._drain()
                except CaptureError as e:
                    _write_all(ew, str(e).encode("utf-8", "replace"))
                    code = 1
            except BaseException as e:
                message = str(e) if isinstance(e, CaptureError) else f"{self.path}: cannot read: {e!r}"
                _write_all(ew, message.encode("utf-8", "replace"))
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        os.close(ew)
        reader = None
        finished = False
        try:
            try:
                reader = pcapy.open_offline(f"/proc/self/fd/{r}")
            except pcapy.PcapError as e:
                raise CaptureError(f"{self.path}: {e}") from None
            finally:
                os.close(r)
            if self.bpf:
                self._setfilter(reader)
            yield from self._by_record(reader, batch_size)
            finished = True
        finally:
            if reader is not None:
                reader.close()
            if not finished or (self.truncated and not self.input.compression):
                # libpcap stopped before the end: the child may be waiting
                # for more input to write what no one will read.  (Of a
                # compressed stream it reads the rest, to check it.)
                import signal  # here: `sniffd read` imports no more than it uses

                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            with open(er, "rb") as f:
                problem = f.read().decode("utf-8", "replace")
        if problem:
            raise CaptureError(problem)

    def _tail(self, skip: int) -> Iterator[Batch]:
        reader = pcapy.open_offline(self._file)
        if self.bpf:
            self._setfilter(reader)
        self._reading = reader
        for _ in range(skip):
            reader.next()
        yield from self._by_record(reader, DEFAULT_BATCH_SIZE)


class _FileChunks:
    """A plain file's bytes from any offset (see OfflineCapture._walk): a
    chunk that ends inside a record is read again from that record."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "rb", buffering=0)
        self.consumed = 0

    def chunk(self, at: int, want: int) -> bytes:
        """``want`` bytes from offset ``at``, fewer only at the file's end."""
        f = self._f
        f.seek(at)
        data = f.read(want)
        self.consumed = at + len(data)
        return data

    def close(self) -> None:
        self._f.close()


class _StreamChunks:
    """The same for a stream (sniffd.source.Input), read once: offsets only
    go forward, and the part of the last chunk not yet used starts the next
    one (a stream cannot seek back to it)."""

    def __init__(self, source, head: bytes) -> None:
        self._source = source
        self._buf = head  # the input from offset _start on
        self._start = 0

    def chunk(self, at: int, want: int) -> bytes:
        buf = self._buf
        if at == self._start and len(buf) >= want:
            return buf
        rest = buf[at - self._start :]
        more = self._source.read(want - len(rest))
        self._buf = rest + more if rest else more
        self._start = at
        return self._buf

    def rest(self, at: int) -> bytes:
        """What was read of the input from offset ``at`` on (the rest is
        still to be read from the input)."""
        return self._buf[at - self._start :]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class LiveCapture:
    """An interface opened with create/activate, as tcpdump does.

    The handle is put in non-blocking mode and waited on with poll(): on Linux
    libpcap uses TPACKET_V3, whose read timeout only fires once a packet has
    arrived, so a blocking read on a quiet link never returns and time could
    not advance (idle connections would never be flushed).  poll() on the
    descriptor honours ``read_timeout_ms`` whether or not traffic flows.
    """

    # pcap_activate() return codes (pcap/pcap.h) worth a specific message.
    _ACTIVATE_ERRORS = {
        -5: "no such interface",  # PCAP_ERROR_NO_SUCH_DEVICE
        -8: "permission denied (capturing needs root or CAP_NET_RAW)",  # PCAP_ERROR_PERM_DENIED
        -9: "interface is not up",  # PCAP_ERROR_IFACE_NOT_UP
        -4: "already activated",  # PCAP_ERROR_ACTIVATED
        -6: "capture not supported on this interface",  # PCAP_ERROR_RFMON_NOTSUP
        -7: "monitor mode not supported",  # PCAP_ERROR_NOT_RFMON
    }

    def __init__(
        self,
        interface: str,
        *,
        bpf: str = "",
        snaplen: int = 262144,
        promiscuous: bool = True,
        buffer_bytes: int = 32 * 1024 * 1024,
        read_timeout_ms: int = 200,
    ) -> None:
        self.interface = interface
        self.read_timeout_ms = read_timeout_ms
        try:
            h = pcapy.create(interface)
            h.set_snaplen(snaplen)
            h.set_promisc(1 if promiscuous else 0)
            h.set_buffer_size(buffer_bytes)
            h.set_timeout(read_timeout_ms)
            # pcapy-ng returns pcap_activate()'s status instead of raising:
            # negative is an error, positive a warning (e.g. promiscuous mode
            # not supported), which does not stop the capture.
            status = h.activate()
        except pcapy.PcapError as e:
            raise CaptureError(f"cannot open interface {interface!r}: {e}") from None
        if isinstance(status, int) and status < 0:
            reason = self._ACTIVATE_ERRORS.get(status, f"pcap_activate error {status}")
            raise CaptureError(f"cannot open interface {interface!r}: {reason}")
        self.linktype = h.datalink()
        if self.linktype < 0:
            raise CaptureError(f"cannot open interface {interface!r}: pcap_activate failed")
        self.snaplen = snaplen
        self._handle = h
        if bpf:
            self.set_filter(bpf)
        try:
            h.setnonblock(1)
        except pcapy.PcapError as e:
            raise CaptureError(f"cannot open interface {interface!r}: {e}") from None
        self._poll = select.poll()
        self._poll.register(h.getfd(), select.POLLIN)

    def set_filter(self, bpf: str) -> None:
        """Compile ``bpf`` for this link type and attach it in the kernel.

        Packets already in the ring are filtered with it in userland by
        libpcap, so none that it rejects is ever handed over.
        """
        if bpf:
            _compile_check(self.linktype, self.snaplen, bpf)
        try:
            self._handle.setfilter(bpf)
        except pcapy.PcapError as e:
            raise CaptureError(f"invalid BPF filter {bpf!r}: {e}") from None

    def set_fanout(self, group_id: int, flags: int = 0) -> int:
        """Join the PACKET_FANOUT_HASH group ``group_id``; return the group's id.

        ``flags`` may hold PACKET_FANOUT_FLAG_UNIQUEID (then ``group_id``
        must be 0 and the kernel picks an id no other group uses) and
        PACKET_FANOUT_FLAG_DEFRAG.  See ``open_fanout``.
        """
        try:
            self._handle.set_fanout(group_id, pcapy.PACKET_FANOUT_HASH | flags)
        except pcapy.PcapError as e:
            raise CaptureError(f"cannot join a PACKET_FANOUT group on {self.interface!r}: {e}") from None
        if not flags & PACKET_FANOUT_FLAG_UNIQUEID:
            return group_id
        # getsockopt(PACKET_FANOUT) = group id | type and flags << 16.
        import socket  # here, not with the module: `sniffd read` never needs it (~15 M instructions)

        sock = socket.socket(fileno=self._handle.getfd())
        try:
            return sock.getsockopt(_SOL_PACKET, _PACKET_FANOUT) & 0xFFFF
        finally:
            sock.detach()  # the descriptor stays libpcap's

    def next_batch(self, batch_size: int = DEFAULT_BATCH_SIZE) -> Batch | None:
        """One batch, or None when ``read_timeout_ms`` passed with no packet.

        Raises CaptureError when the interface goes away or fails.
        """
        handle = self._handle
        try:
            buf, meta = handle.next_batch(batch_size)
            if not meta:
                # Nothing ready: wait (GIL released) for the kernel to hand
                # over a block, at most the read timeout, then look again.
                if not self._poll.poll(self.read_timeout_ms):
                    return None
                buf, meta = handle.next_batch(batch_size)
        except pcapy.PcapError as e:
            raise CaptureError(f"capture on {self.interface!r} failed: {e}") from None
        if not meta:
            return None
        return Batch(buf, meta)

    def discard_until(self, deadline: float) -> None:
        """Read and throw away every packet the ring holds or is handed until
        ``deadline`` (time.monotonic()).

        The kernel hands a TPACKET_V3 block over only when it fills or its
        retire timer (the read timeout) fires, so a packet taken in just
        before a reject-all filter was attached appears up to two read
        timeouts later.  libpcap cannot be trusted to drop it: setting a
        filter re-filters in userland only the blocks already handed over.
        """
        handle = self._handle
        try:
            while True:
                while handle.next_batch(4096)[1]:
                    pass
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._poll.poll(max(1, int(remaining * 1000)))
        except pcapy.PcapError as e:
            raise CaptureError(f"capture on {self.interface!r} failed: {e}") from None

    def stats(self) -> tuple[int, int, int]:
        """(received, dropped by kernel, dropped by interface) from libpcap."""
        return self._handle.stats()

    def close(self) -> None:
        self._handle.close()


# Read by OfflineCapture._walk: link types whose frames libpcap does not
# rewrite (it does for some, e.g. USB and NFLOG pseudo-headers).
_WALKED_LINKTYPES = frozenset((1, 113))  # Ethernet, Linux cooked v1
# Link types whose pseudo-headers libpcap swaps to the host's byte order
# (swap_pseudo_headers): pcapng files of these are read by libpcap.
_REWRITTEN_LINKTYPES = frozenset((189, 220, 239))  # USB Linux, USB Linux mmapped, NFLOG
_CHUNK = 1 << 20  # > the largest record (max_caplen + 16); 1 MiB measured faster than 4
_MAX_SNAPLEN = 262144  # libpcap's max_snaplen_for_dlt for these link types


# Classic pcap magic numbers -> (byte order, nanosecond timestamps).
_PCAP_FORMS = {b"\xd4\xc3\xb2\xa1": ("<", False), b"\x4d\x3c\xb2\xa1": ("<", True),
               b"\xa1\xb2\xc3\xd4": (">", False), b"\xa1\xb2\x3c\x4d": (">", True)}


def _file_head(path: str) -> bytes:
    """The first 4 KiB of a capture file (b"" if unreadable): its header."""
    try:
        with open(path, "rb") as f:
            return f.read(4096)
    except OSError:
        return b""


def _classic_header(head: bytes) -> tuple[str, bool, int] | None:
    """(byte order, nanosecond, header snaplen) of a classic pcap file's
    header, None for anything else."""
    form = _PCAP_FORMS.get(head[:4]) if len(head) >= 24 else None
    if form is None:
        return None
    order, nano = form
    return order, nano, struct.unpack_from(order + "I", head, 16)[0]


def _plain_pcap(head: bytes) -> tuple[bool, bool, int] | None:
    """(byte-swapped, nanosecond, largest caplen libpcap reads as is) for a
    classic pcap file, None for pcapng or anything unexpected."""
    classic = _classic_header(head)
    if classic is None:
        return None
    order, nano, snaplen = classic
    # libpcap takes a header snaplen of 0 or above the maximum as the
    # maximum; a record longer than the snapshot length it handles its own
    # way (the walk hands such a record to it).
    if not 0 < snaplen <= _MAX_SNAPLEN:
        snaplen = _MAX_SNAPLEN
    return (order == "<") != (sys.byteorder == "little"), nano, snaplen


def pcap_records_py(buf: bytes, pos: int, n: int, swapped: bool, nano: bool, max_caplen: int) -> tuple[bytes, int, int]:
    """The reference for sniffd/_batch.c's pcap_records: up to ``n`` records
    of a classic pcap file in ``buf`` from offset ``pos`` -> (meta entries as
    next_batch gives them, offset after them, stop): stop 0 after n records,
    1 when the next is not whole in ``buf``, 2 when its caplen is above
    ``max_caplen``.  Nanoseconds become microseconds, truncated (libpcap)."""
    hdr = struct.Struct((">" if (sys.byteorder == "little") == swapped else "<") + "4I")
    out = []
    stop = 0
    while len(out) < n:
        if pos + 16 > len(buf):
            stop = 1
            break
        sec, frac, caplen, _wirelen = hdr.unpack_from(buf, pos)
        if caplen > max_caplen:
            stop = 2
            break
        if pos + 16 + caplen > len(buf):
            stop = 1
            break
        out.append(_META.pack(sec, frac // 1000 if nano else frac, pos + 16, caplen))
        pos += 16 + caplen
    return b"".join(out), pos, stop


try:
    from sniffd._batch import pcap_records
except ImportError:  # built without a C compiler: the same, slower
    pcap_records = pcap_records_py


def file_snaplen(head: bytes) -> int:
    """The snapshot length a capture file was written with (pcap file header,
    or the first pcapng Interface Description Block), from the file's head
    (_file_head); 0 if unknown.  A frame shorter than this was not cut by the
    capture, so an IP length claiming more is a lie, not a snaplen cut."""
    if len(head) < 24:
        return 0
    classic = _classic_header(head)
    if classic is not None:
        return classic[2]
    if head[:4] == b"\x0a\x0d\x0d\x0a":
        bom = head[8:12]
        e = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
        off = struct.unpack_from(e + "I", head, 4)[0]
        while off + 16 <= len(head):
            btype, blen = struct.unpack_from(e + "II", head, off)
            if btype == 1:  # Interface Description Block
                snap = struct.unpack_from(e + "I", head, off + 12)[0]
                return snap or 0
            if blen < 12:
                break
            off += blen
    return 0


# <linux/if_packet.h>: PACKET_FANOUT is socket option 18 at level SOL_PACKET
# (263).  FLAG_UNIQUEID (Linux 4.4) lets the kernel pick an unused group id;
# FLAG_DEFRAG (Linux 3.2) reassembles IPv4 fragments before hashing them.
_SOL_PACKET = 263
_PACKET_FANOUT = 18
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000
PACKET_FANOUT_FLAG_DEFRAG = 0x8000

# A filter no packet passes, on every link type: no length is below 0.
# (libpcap refuses an expression its optimiser folds to a constant reject,
# "expression rejects all packets"; it does not fold this comparison.)
REJECT_ALL_BPF = "len < 0"


def open_fanout(interface: str, count: int, *, bpf: str = "", **options) -> tuple[list[LiveCapture], int]:
    """``count`` captures on ``interface`` sharing its packets: one kernel
    PACKET_FANOUT_HASH group.  Returns the captures and the group's id.

    The kernel hands every packet to exactly one member, chosen by a
    symmetric hash of the flow (``__skb_get_hash_symmetric``: addresses and
    ports, ordered), so both directions of a TCP connection reach the same
    capture.  IPv4 fragments carry no ports and would hash apart from their
    connection, so the group is made with FLAG_DEFRAG: the kernel reassembles
    them first and the member gets the whole datagram (IPv6 fragments are not
    reassembled by the kernel; TCP almost never sends any).

    Order matters.  A socket receives every packet of the interface from the
    moment it is activated until it joins the group, so every capture is
    opened with a filter that rejects all packets, all of them join, and only
    then does each get ``bpf``: no packet is ever in two rings.  The group's
    size is fixed before the first packet is accepted, so the hash never
    moves a flow while sniffd starts.

    ``options`` are LiveCapture's (snaplen, promiscuous, buffer_bytes,
    read_timeout_ms).  Raises CaptureError; nothing is left open then.
    """
    captures: list[LiveCapture] = []
    try:
        group = 0
        for i in range(count):
            capture = LiveCapture(interface, bpf=REJECT_ALL_BPF, **options)
            captures.append(capture)
            if i == 0:
                try:
                    group = capture.set_fanout(0, PACKET_FANOUT_FLAG_UNIQUEID | PACKET_FANOUT_FLAG_DEFRAG)
                except CaptureError:
                    # A kernel before 4.4: pick an id; another process using
                    # the same id on another interface makes this fail loudly.
                    group = capture.set_fanout(os.getpid() & 0xFFFF, PACKET_FANOUT_FLAG_DEFRAG)
            else:
                capture.set_fanout(group, PACKET_FANOUT_FLAG_DEFRAG)
        # Each socket took in every packet of the interface from its opening
        # until its reject-all filter was attached, flows of other members
        # among them; they wait in a block the kernel hands over only at its
        # retire timeout.  Drop them all before the real filter lets any in.
        timeout_s = max(c.read_timeout_ms for c in captures) / 1000.0
        deadline = time.monotonic() + 2 * timeout_s + 0.01
        for capture in captures:
            capture.discard_until(deadline)
        for capture in captures:
            capture.set_filter(bpf)
    except BaseException:
        for capture in captures:
            capture.close()
        raise
    return captures, group


def list_interfaces() -> list[str]:
    return list(pcapy.findalldevs())


def libpcap_loaded() -> tuple[str, str]:
    """``(pcap_lib_version(), file)`` of the libpcap pcapy-ng is linked to.

    Asked of the library actually loaded, not of a package database: the
    symbol is looked up from pcapy's own extension (dlsym on its handle
    searches it and the libraries it needs, so it finds the copy pcapy calls
    whatever else is loaded), and dladdr names the file it came from.  A
    pcapy-ng installed from its wheel shows its bundled copy here (a file in
    site-packages/pcapy_ng.libs); scripts/install and the install guide
    build pcapy-ng against Debian's instead (see README, *Install on a
    gateway*).  ``("unknown", "unknown")`` if either cannot be read.
    """
    import ctypes

    class DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

    try:
        fn = ctypes.CDLL(pcapy.__file__).pcap_lib_version
        fn.restype = ctypes.c_char_p
        version = fn().decode("ascii", "replace")
    except (OSError, AttributeError):
        return "unknown", "unknown"
    info = DlInfo()
    dladdr = ctypes.CDLL(None).dladdr  # in glibc itself since 2.34
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]
    if not dladdr(ctypes.cast(fn, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
        return version, "unknown"
    return version, os.path.realpath(os.fsdecode(info.dli_fname))
