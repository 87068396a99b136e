"""Output stage (I/O): JSON lines appended to a file, or written to stdout.

``Sink`` is what the live runner (sniffd.live) needs of an output, and all it
knows of one: ``JsonLinesSink`` here, a fan-out worker's pipe to its parent
(sniffd.workers.PipeSink), and any other output to come.  ``open_sink(cfg)``
makes the one ``[output]`` configures.

One thread owns a sink (the daemon's processing loop); the only thing other
threads or signal handlers may do is ``request_reopen()``, which sets a flag
the owner acts on at its next write.

Guarantees, and how they are kept:

- A record is never torn, and the counts are exact.  Lines are joined into
  one buffer of whole lines and handed to the kernel with one ``os.write`` on
  an ``O_APPEND`` descriptor, so a reader (``tail -f``, a shipper) sees whole
  lines only, and a rotation, which happens between two writes, never splits
  one.  Before a write, the file system's free space is asked
  (``fstatvfs``) and only the whole lines that fit are written, so a full disk
  does not cut a line; if a write still comes back short (a quota, another
  writer filling the disk at the same moment), the file is cut back to the
  last whole line (``ftruncate``).  ``records_written`` counts the lines that
  are in the file, nothing else.
- A full disk or a file that cannot be opened blocks the output, it does not
  lose it: the lines that could not be written wait in a buffer bounded by
  ``backlog_bytes`` (what does not fit is counted in ``records_lost``), the
  write is retried every ``RETRY_INTERVAL_S``, and writing resumes by itself,
  oldest line first, when there is room again.  Events: ``output_blocked``
  (once, when it starts), ``output_resumed`` (with how long and how many were
  lost).
- The path's identity is checked at every flush.  If ``path`` now names
  another file (replaced, or logrotate's ``create`` before the SIGHUP), the
  sink reopens it.  If our file was deleted (its link count is 0: ``rm``, or
  ``rm -rf`` of the log directory), it is created again, and so is the
  directory (one level, mode 0750) when it is gone and we may create it;
  until then the output is blocked as above.  A file only moved away
  (renamed, still linked) keeps the lines until the SIGHUP, as logrotate
  expects.
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
import stat
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sniffd.config import Config

FILE_MODE = 0o640
DIR_MODE = 0o750

# Lines are written once this many bytes are buffered even before the flush
# interval: big enough that a busy link costs few system calls, small enough
# that a write is quick and memory stays flat.
WRITE_CHUNK_BYTES = 256 * 1024

# While the output is blocked, lines wait in memory up to this many bytes by
# default (``[output] backlog_mb``): about a minute of a busy gateway's records
# (~1,000 records/s of ~600 bytes), so a log directory recreated or a disk
# cleaned up within that loses nothing, and well inside the unit's MemoryMax.
BACKLOG_BYTES = 64 * 1024 * 1024

# How often a blocked output is tried again: often enough that writing resumes
# within a flush interval of space coming back, rarely enough that a full disk
# costs nothing.
RETRY_INTERVAL_S = 1.0

# Free space kept in hand when deciding which lines fit: a file system takes
# whole blocks, and may need one for its own bookkeeping (an extent block).
FREE_SPACE_SLACK_BLOCKS = 2

# Called with an event name and fields ("rotated", path=...): the daemon's logger.
EventHook = Callable[..., None]


def _no_events(event: str, **fields: object) -> None:
    pass


# The output's counters every sink reports (Sink.stats), in the order the
# daemon's stats and shutdown events carry them.
OUTPUT_STATS = ("records_written", "records_lost", "records_held", "rotations", "reopens", "write_errors", "output_state")


class Sink(Protocol):
    """An output of record lines, as the live runner uses it.

    Call order: ``add`` any number of times; ``maybe_flush(now)`` after each
    batch or tick (at least every flush interval: the runner wakes at least
    every read timeout); ``close`` once, at the end; ``stats`` at any time.
    All from the one owning thread, but ``request_reopen``, which a signal
    handler may call.  A reader that went away (stdout closed) is a
    ``BrokenPipeError`` from ``add``, ``maybe_flush`` or ``close``.
    """

    def add(self, lines: Iterable[str]) -> None:
        """Take whole record lines (no trailing newline), in order."""

    def maybe_flush(self, now: float | None = None) -> None:
        """Send what is due (``now``: time.monotonic()); act on a reopen request."""

    def close(self) -> None:
        """Send everything taken, then let go of the output (what cannot be sent is counted lost)."""

    def request_reopen(self) -> None:
        """Open the output again at the next write (SIGHUP); only sets a flag."""

    def stats(self) -> dict[str, Any]:
        """The output's counters: the OUTPUT_STATS keys, in that order."""


def open_sink(cfg: Config, on_event: EventHook = _no_events) -> Sink:
    """The records file of ``[output]``, opened as the user we run as now; OSError names the key.
    A ``nats://`` path is a JetStream output instead (sniffd.natssink)."""
    out = cfg.output
    if "://" in out["path"]:
        from sniffd import natssink

        try:
            return natssink.open_nats_sink(out, cfg.values["nats"], on_event)
        except natssink.NatsStartError as e:
            raise OSError(f"{cfg.where('output', 'path')}: {e}") from None
    sink = JsonLinesSink(
        out["path"],
        rotate_bytes=out["rotate_bytes"],
        keep_files=out["keep_files"],
        flush_interval_s=out["flush_interval_s"],
        backlog_bytes=int(out["backlog_mb"] * 1024 * 1024),
        on_event=on_event,
    )
    try:
        sink.open()
    except OSError as e:
        raise OSError(f"{cfg.where('output', 'path')}: cannot open {out['path']}: {e.strerror} (as uid {os.geteuid()})") from None
    return sink


class JsonLinesSink:
    """Whole JSON lines to ``path`` (``"-"`` = stdout), with size rotation, reopen,
    and a bounded backlog while the output is blocked."""

    def __init__(
        self,
        path: str,
        *,
        rotate_bytes: int = 0,
        keep_files: int = 10,
        flush_interval_s: float = 1.0,
        backlog_bytes: int = BACKLOG_BYTES,
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
        self.backlog_bytes = backlog_bytes
        self._on_event = on_event
        self._clock = clock
        self._fd: int | None = None
        self._regular = False  # the descriptor is a regular file (free space can be asked)
        self._size = 0
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._oldest_pending: float | None = None
        self._reopen_requested = False
        # Blocked output: since when (monotonic), why, and when to try again.
        self._blocked_since: float | None = None
        self._blocked_reason = ""
        self._next_retry = 0.0
        self._lost_while_blocked = 0
        # Counters for the stats event.
        self.records_written = 0
        self.bytes_written = 0
        self.rotations = 0
        self.reopens = 0
        self.write_errors = 0
        self.records_lost = 0
        self.blocked_episodes = 0

    # --- state ---

    @property
    def state(self) -> str:
        """``"ok"`` or ``"blocked"`` (disk full, file or directory gone and not yet made again)."""
        return "ok" if self._blocked_since is None else "blocked"

    @property
    def records_held(self) -> int:
        """Lines waiting in memory for the output (only while blocked are there many)."""
        return len(self._pending)

    def stats(self) -> dict[str, Any]:
        """The counters of the daemon's stats events (Sink.stats)."""
        return {
            "records_written": self.records_written,  # whole lines that reached the file
            "records_lost": self.records_lost,  # could not be written (backlog full, or held at exit)
            "records_held": self.records_held,  # waiting in memory (many only while blocked)
            "rotations": self.rotations,
            "reopens": self.reopens,
            "write_errors": self.write_errors,
            "output_state": self.state,
        }

    # --- lifecycle ---

    def open(self) -> JsonLinesSink:
        """Open (creating it mode 0640 if needed); raises OSError naming the path."""
        if self.is_stdout:
            self._fd = 1
            self._size = 0
            self._regular = stat.S_ISREG(os.fstat(1).st_mode)
            return self
        self._fd, self._size = _open_append(self.path)
        self._regular = True
        return self

    def close(self) -> None:
        """Write what is buffered and close the file (stdout is left open).
        Lines a blocked output still holds are counted lost and reported."""
        self.flush()
        if self._pending:
            n = len(self._pending)
            self.records_lost += n
            self._lost_while_blocked += n
            self._on_event("output_lost_at_exit", path=self.path, records_lost=n, reason=self._blocked_reason)
            self._pending, self._pending_bytes, self._oldest_pending = [], 0, None
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
        pending = self._pending
        for line in lines:
            text = line + "\n"
            pending.append(text)
            self._pending_bytes += len(text)
            if self._oldest_pending is None:
                now = self._clock() if now is None else now
                self._oldest_pending = now
        if self._blocked_since is not None:
            # Blocked: hold no more than the backlog, whatever its size
            # (it may be smaller than a write chunk).
            if self._pending_bytes > self.backlog_bytes:
                self._drop_newest()
        elif self._pending_bytes >= WRITE_CHUNK_BYTES:
            self.flush()

    def maybe_flush(self, now: float | None = None) -> None:
        """Write the buffer if its oldest line has waited flush_interval_s; act on a
        reopen request; retry a blocked output once RETRY_INTERVAL_S has passed."""
        if self._reopen_requested and not self._pending:
            self._reopen("signal")
        if self._oldest_pending is None:
            return
        now = self._clock() if now is None else now
        if self._blocked_since is not None:
            if now >= self._next_retry:
                self.flush()
        elif now - self._oldest_pending >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write every buffered line now, reopening or rotating first where due;
        lines that cannot be written stay buffered (bounded) and the output is blocked."""
        if self._reopen_requested:
            self._reopen("signal")
        if not self._pending:
            return
        if not self.is_stdout and not self._check_path():
            self._block(self._blocked_reason or "cannot open the log file")
            return
        lines = self._pending
        self._pending = []
        self._pending_bytes = 0
        self._oldest_pending = None
        left = self._write_rotating(lines)
        if left:
            self._pending = left
            self._pending_bytes = sum(len(t) for t in left)
            self._oldest_pending = self._clock()
            if self._pending_bytes > self.backlog_bytes:
                self._drop_newest()
        elif self._blocked_since is not None:
            self._resume()

    def _write_rotating(self, lines: list[str]) -> list[str]:
        """Write ``lines`` (rotating at line boundaries when due); the lines not written."""
        if not self.rotate_bytes:
            return self._write_lines(lines)
        # Split at line boundaries so no file grows past rotate_bytes (a single
        # line longer than that gets a file of its own).
        chunk: list[str] = []
        chunk_bytes = 0
        for i, line in enumerate(lines):
            n = len(line.encode("utf-8")) if not line.isascii() else len(line)
            if self._size + chunk_bytes + n > self.rotate_bytes and self._size + chunk_bytes > 0:
                if chunk:
                    left = self._write_lines(chunk)
                    if left:
                        return left + lines[i:]
                    chunk, chunk_bytes = [], 0
                self._rotate()
            chunk.append(line)
            chunk_bytes += n
        return self._write_lines(chunk) if chunk else []

    def _write_lines(self, lines: list[str]) -> list[str]:
        """Write whole lines; return those not written (the output is then blocked)."""
        data = "".join(lines).encode("utf-8")
        if self._fd is None:
            self._block("no log file open")
            return lines
        if self._regular:
            room = _room(self._fd)
            if room < len(data):
                # Never start a write that cannot finish: only the whole lines
                # that fit go now, the rest wait (blocked).
                fit = data.rfind(b"\n", 0, max(room, 0)) + 1
                rest = lines
                if fit:
                    written = self._write_whole(data[:fit])
                    k = data.count(b"\n", 0, written)
                    self._commit(written, k)
                    rest = lines[k:]
                self._block(os.strerror(errno.ENOSPC))
                return rest
        written = self._write_whole(data)
        if written < len(data):
            k = data.count(b"\n", 0, written)
            self._commit(written, k)
            return lines[k:]
        self._commit(written, len(lines))
        return []

    def _commit(self, written: int, lines: int) -> None:
        """Count ``written`` bytes, ``lines`` whole lines, as in the file."""
        self._size += written
        self.bytes_written += written
        self.records_written += lines

    def _write_whole(self, data: bytes) -> int:
        """Write ``data``; on an error part-way, cut the file back to the last whole
        line and return the bytes that stay (always a line boundary)."""
        assert self._fd is not None
        view = memoryview(data)
        done = 0
        try:
            # One write for the whole buffer; the loop only runs again if the
            # kernel took part of it (a regular file does that only when it
            # runs out of space).
            while done < len(data):
                done += os.write(self._fd, view[done:])
            return done
        except BrokenPipeError:
            raise
        except OSError as e:
            self.write_errors += 1
            keep = data.rfind(b"\n", 0, done) + 1
            if keep < done:
                try:
                    os.ftruncate(self._fd, self._size + keep)
                except OSError:
                    pass  # stdout to a pipe: the reader has the partial line either way
            self._block(os.strerror(e.errno or errno.EIO))
            return keep

    # --- blocked output ---

    def _block(self, reason: str) -> None:
        self._next_retry = self._clock() + RETRY_INTERVAL_S
        if self._blocked_since is None:
            self._blocked_since = self._clock()
            self._blocked_reason = reason
            self._lost_while_blocked = 0
            self.blocked_episodes += 1
            self._on_event("output_blocked", path=self.path, error=reason, records_held=len(self._pending),
                           backlog_bytes=self.backlog_bytes)

    def _resume(self) -> None:
        assert self._blocked_since is not None
        blocked_s = round(self._clock() - self._blocked_since, 3)
        self._blocked_since = None
        self._on_event("output_resumed", path=self.path, blocked_s=blocked_s, reason=self._blocked_reason,
                       records_lost=self._lost_while_blocked)
        self._blocked_reason = ""

    def _drop_newest(self) -> None:
        """Keep the backlog within backlog_bytes: the newest lines go, counted lost."""
        pending = self._pending
        while pending and self._pending_bytes > self.backlog_bytes:
            self._pending_bytes -= len(pending.pop())
            self.records_lost += 1
            self._lost_while_blocked += 1
        if not pending:
            self._oldest_pending = None

    # --- the path's identity, rotation and reopen ---

    def _check_path(self) -> bool:
        """Make sure we write where ``path`` points; False when no file can be open there now."""
        if self._fd is None:
            return self._switch_to_new_file("removed")
        try:
            there = os.stat(self.path)
        except OSError:
            there = None
        mine = os.fstat(self._fd)
        if there is not None:
            if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                return True
            # Replaced (logrotate's `create` before its SIGHUP, or by hand):
            # the new file is where readers look.
            self._reopen("replaced")
            return self._fd is not None
        if mine.st_nlink > 0:
            # Moved away but still linked: what we write is kept there; the
            # SIGHUP that follows a logrotate reopens NAME.
            return True
        # Deleted (rm of the file or of its directory): lines written to it
        # now would be lost to every reader.
        return self._switch_to_new_file("removed")

    def _rotate(self) -> None:
        assert self._fd is not None
        if not self._path_is_ours():
            # Someone (logrotate) moved the file away and the SIGHUP has not
            # been handled yet: the moved file holds what we wrote, and NAME
            # (if anything) is not ours to rename.  Start a fresh NAME.
            self._reopen("moved")
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
        if self._switch_to_new_file(None):
            self.rotations += 1
            self._on_event("rotated", path=self.path, rotated_to=f"{self.path}.1", size_bytes=old_size, keep_files=self.keep_files)

    def _path_is_ours(self) -> bool:
        """True while ``path`` still names the file our descriptor writes to."""
        assert self._fd is not None
        mine = os.fstat(self._fd)
        try:
            there = os.stat(self.path)
        except OSError:
            return False
        return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)

    def _reopen(self, reason: str) -> None:
        self._reopen_requested = False
        if self.is_stdout:
            return
        self._switch_to_new_file(reason)

    def _switch_to_new_file(self, reason: str | None) -> bool:
        """Open ``path`` afresh (its directory too, when it was removed) and write
        there from now on; on failure keep the old descriptor, if it is still
        worth writing to, and say why.  ``reason``: for the ``reopened`` event
        (None for a rotation, which has its own)."""
        created_dir = False
        try:
            try:
                fd, size = _open_append(self.path)
            except FileNotFoundError:
                if reason != "removed" or not self._make_directory():
                    raise
                created_dir = True
                fd, size = _open_append(self.path)
        except OSError as e:
            self.write_errors += 1
            why = f"cannot open {self.path}: {e.strerror}"
            if self._fd is not None and reason == "removed":
                # The old file is deleted: writing there would lose silently.
                os.close(self._fd)
                self._fd = None
            if self._blocked_since is None:
                self._on_event("output_open_failed", path=self.path, error=e.strerror)
            self._blocked_reason = why
            return False
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._size = fd, size
        self._regular = True
        if reason is not None:
            self.reopens += 1
            fields = {"created_directory": True} if created_dir else {}
            self._on_event("reopened", path=self.path, size_bytes=size, reason=reason, **fields)
        return True

    def _make_directory(self) -> bool:
        """Create the log file's directory again (one level: its parent must exist)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            return True
        except OSError:
            return False
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


def _room(fd: int) -> int:
    """Bytes that can be appended to ``fd``'s file system now, less a little slack.
    Root may use the blocks ext4 reserves for it (f_bfree); anyone else may not."""
    try:
        v = os.fstatvfs(fd)
    except OSError:
        return 1 << 62
    if v.f_blocks == 0:
        return 1 << 62  # a file system that does not report space (some FUSE, procfs)
    free = v.f_bfree if os.geteuid() == 0 else v.f_bavail  # the daemon drops root after start
    return (free - FREE_SPACE_SLACK_BLOCKS) * v.f_frsize
