"""Capture inputs (I/O): a path or ``-``, plain, gzip or zstd, a file or a pipe.

``open_input`` looks at what a path is, not at its name: a regular file
whose first bytes are a capture's is a *plain file*, which libpcap and
sniffd's walkers read by path, seeking, as they always have (the fast path,
unchanged).  Everything else is a *stream*, read once from the front: a pipe,
a FIFO, standard input (``-``, and ``/dev/stdin``, ``<(zcat x.gz)``), and any
compressed input, file or pipe.  Compression is told by the first bytes
(gzip ``1f 8b``, a zstd frame ``28 b5 2f fd`` or a skippable frame
``5? 2a 4d 18``), never by the file name: a ``.gz`` renamed still reads, a
plain pcap named ``.gz`` reads as plain.

A stream's reader is bounded: each ``read(n)`` returns at most ``n``
decompressed bytes (a small file that inflates to gigabytes is read a chunk
at a time, like any other).  Damage found in the compression (a stream cut
short, a bad block, a checksum that does not match, junk after the end) is
a CaptureError naming the input: those bytes cannot be trusted, so `sniffd
read` stops with exit 2 and keeps no output (readfile).  A *capture* cut
short inside a clean compressed stream is read as a cut plain file is: the
records before the cut, and a warning.
"""

from __future__ import annotations

import gzip
import mmap
import os
import stat
import struct

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class CaptureError(Exception):
    """A capture source or filter cannot be used; the message names it."""


def compression(magic: bytes) -> str | None:
    """"gzip" or "zstd" for an input starting with ``magic`` (4 bytes), else None."""
    if magic[:2] == GZIP_MAGIC:
        return "gzip"
    if magic == ZSTD_MAGIC or (len(magic) == 4 and magic[0] & 0xF0 == 0x50 and magic[1:] == b"\x2a\x4d\x18"):
        return "zstd"
    return None


class _Raw:
    """The input's own bytes, read in order: ``prefix`` (bytes already taken
    to look at the magic) first, then the file.  Counts the bytes handed
    out in shared memory, so the progress bar sees them even when a child
    process reads (capture.OfflineCapture._fed)."""

    def __init__(self, f, prefix: bytes = b"") -> None:
        self._f = f
        self._prefix = prefix
        self._count = mmap.mmap(-1, 8)  # MAP_SHARED | MAP_ANONYMOUS: visible across fork

    @property
    def count(self) -> int:
        return struct.unpack_from("=Q", self._count)[0]

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            data = self._prefix if n < 0 else self._prefix[:n]
            self._prefix = self._prefix[len(data):]
        else:
            data = self._f.read(n)
        struct.pack_into("=Q", self._count, 0, self.count + len(data))
        return data


class _ZstdFrames:
    """Follows the frames of a zstd stream as its compressed bytes go by
    (RFC 8878 section 3.1), to tell a stream cut inside a frame from one
    that ended between frames: zstandard's stream_reader returns what it
    has and stops without a word at a cut frame.  Block contents are not
    looked at (the decompressor judges them); the bad magic or the reserved
    block type the decompressor reports too, so the walk just stops."""

    def __init__(self, raw: _Raw) -> None:
        self._raw = raw
        self._pending = b""  # a header's bytes so far
        self._want = 4  # header bytes the step needs
        self._step = self._frame
        self._skip = 0  # bytes of a block (or skippable frame) still to pass
        self._checksum = 0  # 4 after the last block if the frame has a checksum

    @property
    def inside_frame(self) -> bool:
        return bool(self._pending or self._skip or self._step != self._frame)

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        pos, end = 0, len(data)
        while pos < end and self._step is not None:
            if self._skip:
                k = min(self._skip, end - pos)
                self._skip -= k
                pos += k
                continue
            k = min(self._want - len(self._pending), end - pos)
            self._pending += data[pos : pos + k]
            pos += k
            if len(self._pending) == self._want:
                head, self._pending = self._pending, b""
                self._step(head)
        return data

    def _frame(self, head: bytes) -> None:
        magic = struct.unpack_from("<I", head)[0]
        if len(head) == 4 and head == ZSTD_MAGIC:
            self._want, self._step = 5, self._frame  # + Frame_Header_Descriptor
            self._pending = head
            return
        if len(head) == 5:
            fhd = head[4]
            single = fhd >> 5 & 1
            self._checksum = 4 if fhd >> 2 & 1 else 0
            rest = (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + ((1 if single else 0), 2, 4, 8)[fhd >> 6]
            self._skip, self._want, self._step = rest, 3, self._block
            return
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame: size, then data
            self._want, self._step = 8, self._skippable
            self._pending = head
            return
        self._step = None  # not zstd: the decompressor says so

    def _skippable(self, head: bytes) -> None:
        self._skip = struct.unpack_from("<I", head, 4)[0]
        self._want, self._step = 4, self._frame

    def _block(self, head: bytes) -> None:
        header = head[0] | head[1] << 8 | head[2] << 16
        last, btype, size = header & 1, header >> 1 & 3, header >> 3
        self._skip = 1 if btype == 1 else size  # an RLE block stores its byte once
        if last:
            self._skip += self._checksum
            self._want, self._step = 4, self._frame


class Input:
    """One capture input, opened.  ``plain_path``: a plain capture file that
    libpcap and the walkers may open and seek (None for a stream).
    ``read(n)``: a stream's next ``n`` bytes (fewer only at its end),
    decompressed.  ``reopen_path``: where a worker process may open the same
    input again (None for a pipe, read once).  ``size``: the input's size
    (compressed, for a compressed file) when known, for the progress bar,
    and ``consumed`` how much of it was read."""

    def __init__(self, name: str, plain_path: str | None, reopen_path: str | None, size: int | None,
                 compressed: str | None = None, raw: _Raw | None = None) -> None:
        self.name = name
        self.plain_path = plain_path
        self.reopen_path = reopen_path
        self.size = size
        self.compression = compressed
        self._raw = raw
        self._stream = None
        self._frames: _ZstdFrames | None = None
        if raw is not None:
            if compressed == "gzip":
                self._stream = gzip.GzipFile(fileobj=raw, mode="rb")
            elif compressed == "zstd":
                import zstandard

                self._frames = _ZstdFrames(raw)
                self._stream = zstandard.ZstdDecompressor().stream_reader(self._frames, read_across_frames=True)
            else:
                self._stream = raw

    @property
    def consumed(self) -> int:
        return self._raw.count if self._raw is not None else 0

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, fewer only at the end; raises CaptureError
        naming the input when it cannot be read or its compression is
        damaged."""
        parts, got = [], 0
        try:
            while got < n:
                data = self._stream.read(n - got)
                if not data:
                    if self._frames is not None and self._frames.inside_frame:
                        raise CaptureError(f"{self.name}: truncated zstd stream (it ends inside a frame)")
                    break
                parts.append(data)
                got += len(data)
        except CaptureError:
            raise
        except EOFError as e:  # gzip: the stream ends before its end marker
            raise CaptureError(f"{self.name}: truncated {self.compression} stream ({_lower(e)})") from None
        except gzip.BadGzipFile as e:  # a bad header, CRC or length; junk after the end
            raise CaptureError(f"{self.name}: damaged gzip stream ({_lower(e)})") from None
        except OSError as e:
            raise CaptureError(f"{self.name}: cannot read: {e.strerror or e}") from None
        except Exception as e:  # zlib.error, zstandard.ZstdError
            if self.compression is None:
                raise
            raise CaptureError(f"{self.name}: damaged {self.compression} stream ({_lower(e)})") from None
        return parts[0] if len(parts) == 1 else b"".join(parts)


def _lower(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text[:1].lower() + text[1:]


def open_input(path: str) -> Input:
    """Open ``path`` (``-``: standard input) and tell what it is (see the
    module's docstring).  Raises CaptureError with one line naming it."""
    if path == "-":
        name, fd = "stdin", 0
        try:
            st = os.fstat(0)
        except OSError:
            raise CaptureError("stdin: not open") from None
        if os.isatty(0):
            # Nobody types a capture: waiting for one would look like a hang.
            raise CaptureError("stdin: is a terminal, not a capture (pipe one in: ... | sniffd read -)")
        # Standard input redirected from a file at its start is that file:
        # read it by path (fast, seekable, and workers may open it again).
        at_start = stat.S_ISREG(st.st_mode) and os.lseek(0, 0, os.SEEK_CUR) == 0
        file_path = "/proc/self/fd/0" if at_start else None
        f = open(0, "rb", closefd=False)
    else:
        name = path
        if not os.path.exists(path):
            raise CaptureError(f"{path}: no such file")
        if os.path.isdir(path):
            raise CaptureError(f"{path}: is a directory, not a capture file")
        if not os.access(path, os.R_OK):
            raise CaptureError(f"{path}: permission denied")
        try:
            f = open(path, "rb")
            st = os.fstat(f.fileno())
        except OSError as e:
            raise CaptureError(f"{path}: cannot open: {e.strerror}") from None
        file_path = path if stat.S_ISREG(st.st_mode) else None
    regular = stat.S_ISREG(st.st_mode)
    size = st.st_size if regular else None
    try:
        magic = _read_full(f, 4)
    except OSError as e:
        raise CaptureError(f"{name}: cannot read: {e.strerror}") from None
    kind = compression(magic)
    if file_path is not None and kind is None:
        f.close()
        return Input(name, file_path, file_path, size)
    if file_path is not None:
        f.seek(0)
        raw = _Raw(f)
    else:
        raw = _Raw(f, magic)
    return Input(name, None, file_path, size, kind, raw)


def _read_full(f, n: int) -> bytes:
    """``n`` bytes of ``f``, fewer only at its end (a pipe's read may return less)."""
    data = b""
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            break
        data += more
    return data


def memfd_path(data: bytes, name: str = "sniffd-head") -> tuple[int, str]:
    """An anonymous in-memory file holding ``data``: (its descriptor, a path
    that opens it, e.g. for libpcap).  The caller closes the descriptor."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)  # kept across fork (workers), not exec
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd, f"/proc/self/fd/{fd}"
