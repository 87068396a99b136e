"""Output stage (I/O): JSON lines appended to a file, or written to stdout.

One thread owns a sink (the daemon's processing thread); the only thing other
threads or signal handlers may do is ``request_reopen()``, which sets a flag
the owner acts on at its next write.

Guarantees, and how they are kept:

- A record is never torn.  Lines are joined into one buffer of whole lines and
  handed to the kernel with one ``os.write`` on an ``O_APPEND`` descriptor, so a
  reader (``tail -f``, a shipper) sees whole lines only, and a rotation, which
  happens between two writes, never splits one.
- Records reach the file promptly: buffered lines are written when the buffer
  reaches ``WRITE_CHUNK_BYTES`` or when the oldest has waited
  ``flush_interval_s`` (at most 1 s), whichever comes first.  The owner calls
  ``maybe_flush(now)`` at least that often.
- New files are mode 0640 whatever the umask: readable by the log group for a
  shipper, never by everyone (records hold URLs, cookies' names, hosts).
- Size rotation: before a write would take the file past ``rotate_bytes``, the
  file is renamed NAME.1 (NAME.1 -> NAME.2 ... up to NAME.keep_files, the
  oldest is overwritten) and a new NAME is opened.  ``rotate_bytes = 0`` turns
  it off (logrotate, via SIGHUP, can do the job instead).
- Reopen (SIGHUP): the current descriptor is closed and NAME opened again,
  created if logrotate moved it away.  Lines written before the reopen are in
  the moved file, lines after it in the new one; none in both.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterable

FILE_MODE = 0o640

# Lines are written once this many bytes are buffered even before the flush
# interval: big enough that a busy link costs few system calls, small enough
# that a write is quick and memory stays flat.
WRITE_CHUNK_BYTES = 256 * 1024

# Called with an event name and fields ("rotated", path=...): the daemon's logger.
EventHook = Callable[..., None]


def _no_events(event: str, **fields: object) -> None:
    pass


class JsonLinesSink:
    """Whole JSON lines to ``path`` (``"-"`` = stdout), with size rotation and reopen."""

    def __init__(
        self,
        path: str,
        *,
        rotate_bytes: int = 0,
        keep_files: int = 10,
        flush_interval_s: float = 1.0,
        on_event: EventHook = _no_events,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if keep_files < 1:
            raise ValueError("keep_files must be at least 1")
        self.path = path
        self.is_stdout = path == "-"
        self.rotate_bytes = 0 if self.is_stdout else rotate_bytes
        self.keep_files = keep_files
        self.flush_interval_s = flush_interval_s
        self._on_event = on_event
        self._clock = clock
        self._fd: int | None = None
        self._size = 0
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._oldest_pending: float | None = None
        self._reopen_requested = False
        # Counters for the stats event.
        self.records_written = 0
        self.bytes_written = 0
        self.rotations = 0
        self.reopens = 0
        self.write_errors = 0
        self.records_lost = 0

    # --- lifecycle ---

    def open(self) -> JsonLinesSink:
        """Open (creating it mode 0640 if needed); raises OSError naming the path."""
        if self.is_stdout:
            self._fd = 1
            self._size = 0
            return self
        self._fd, self._size = _open_append(self.path)
        return self

    def close(self) -> None:
        """Write what is buffered and close the file (stdout is left open)."""
        self.flush()
        if self._fd is not None and not self.is_stdout:
            os.close(self._fd)
        self._fd = None

    def request_reopen(self) -> None:
        """Ask for a reopen at the next write; safe from a signal handler."""
        self._reopen_requested = True

    # --- writing ---

    def add(self, lines: Iterable[str]) -> None:
        """Buffer whole lines (no trailing newline); writes when the buffer is full."""
        now = None
        for line in lines:
            text = line + "\n"
            self._pending.append(text)
            self._pending_bytes += len(text)
            if self._oldest_pending is None:
                now = self._clock() if now is None else now
                self._oldest_pending = now
        if self._pending_bytes >= WRITE_CHUNK_BYTES:
            self.flush()

    def maybe_flush(self, now: float | None = None) -> None:
        """Write the buffer if its oldest line has waited flush_interval_s; act on a reopen request."""
        if self._reopen_requested and not self._pending:
            self._reopen()
        if self._oldest_pending is None:
            return
        now = self._clock() if now is None else now
        if now - self._oldest_pending >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write every buffered line now, rotating or reopening first where due."""
        if self._reopen_requested:
            self._reopen()
        if not self._pending:
            return
        lines = self._pending
        self._pending = []
        self._pending_bytes = 0
        self._oldest_pending = None
        if not self.rotate_bytes:
            self._write_lines(lines)
            return
        # Split at line boundaries so no file grows past rotate_bytes (a single
        # line longer than that gets a file of its own).
        chunk: list[str] = []
        chunk_bytes = 0
        for line in lines:
            n = len(line.encode("utf-8")) if not line.isascii() else len(line)
            if self._size + chunk_bytes + n > self.rotate_bytes and self._size + chunk_bytes > 0:
                if chunk:
                    self._write_lines(chunk)
                    chunk, chunk_bytes = [], 0
                self._rotate()
            chunk.append(line)
            chunk_bytes += n
        if chunk:
            self._write_lines(chunk)

    def _write_lines(self, lines: list[str]) -> None:
        data = "".join(lines).encode("utf-8")
        if self._fd is None:
            self.records_lost += len(lines)
            return
        try:
            _write_all(self._fd, data)
        except BrokenPipeError:
            raise
        except OSError as e:
            # Disk full or the file system went read-only: these records are
            # lost (counted and reported); the daemon keeps capturing so it
            # recovers by itself when space comes back.
            self.write_errors += 1
            self.records_lost += len(lines)
            self._on_event("output_write_failed", path=self.path, error=os.strerror(e.errno or errno.EIO), records_lost=len(lines))
            return
        self._size += len(data)
        self.bytes_written += len(data)
        self.records_written += len(lines)

    # --- rotation and reopen ---

    def _rotate(self) -> None:
        assert self._fd is not None
        if not self._path_is_ours():
            # Someone (logrotate) moved the file away and the SIGHUP has not
            # been handled yet: the moved file holds what we wrote, and NAME
            # (if anything) is not ours to rename.  Start a fresh NAME.
            self._reopen()
            return
        old_size = self._size
        # Rename first, then open the new file, then close the old one: the
        # descriptor stays valid throughout, so if anything fails the records
        # still go somewhere (the file keeps growing; rotation is retried at
        # the next write).
        try:
            for i in range(self.keep_files, 1, -1):
                try:
                    os.replace(f"{self.path}.{i - 1}", f"{self.path}.{i}")
                except FileNotFoundError:
                    pass
            try:
                os.replace(self.path, f"{self.path}.1")
            except FileNotFoundError:
                pass  # moved away just now, by logrotate: same as above
        except OSError as e:
            self._on_event("output_rotate_failed", path=self.path, error=e.strerror)
            return
        if self._switch_to_new_file():
            self.rotations += 1
            self._on_event("rotated", path=self.path, rotated_to=f"{self.path}.1", size_bytes=old_size, keep_files=self.keep_files)

    def _path_is_ours(self) -> bool:
        """True while ``path`` still names the file our descriptor writes to."""
        assert self._fd is not None
        mine = os.fstat(self._fd)
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)

    def _reopen(self) -> None:
        self._reopen_requested = False
        if self.is_stdout:
            return
        if self._switch_to_new_file():
            self.reopens += 1
            self._on_event("reopened", path=self.path, size_bytes=self._size)

    def _switch_to_new_file(self) -> bool:
        """Open ``path`` afresh and write there from now on; on failure keep the old descriptor."""
        try:
            fd, size = _open_append(self.path)
        except OSError as e:
            self.write_errors += 1
            self._on_event("output_open_failed", path=self.path, error=e.strerror)
            return False
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._size = fd, size
        return True


def _open_append(path: str) -> tuple[int, int]:
    """Open ``path`` for appending; a file it creates is mode 0640 regardless of umask."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
        os.fchmod(fd, FILE_MODE)
    except FileExistsError:
        # An existing file keeps the mode the operator (or logrotate's
        # `create 0640 ...`) gave it.
        fd = os.open(path, flags)
    return fd, os.fstat(fd).st_size


def _write_all(fd: int, data: bytes) -> None:
    # One write for the whole buffer; the loop only runs again if the kernel
    # took part of it (a regular file does that only when it runs out of space).
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
