"""The JSON-lines sink: whole lines, size rotation keeping N files, mode 0640, reopen, flush timing."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sniffd.sink import OUTPUT_STATS, JsonLinesSink


class FakeClock:
    """Simulated monotonic time for the flush policy."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def line(i: int, pad: int = 40) -> str:
    return json.dumps({"n": i, "pad": "x" * pad})


def read_lines(paths: list[Path]) -> list[str]:
    out = []
    for p in paths:
        data = p.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f"{p} ends with a partial line"
        out += data.decode().splitlines()
    return out


def all_files(path: Path) -> list[Path]:
    """The current file and its rotations, oldest first."""
    rotated = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return rotated + ([path] if path.exists() else [])


def test_sink_rotation_keeps_n_files_of_whole_lines(tmp_path: Path):
    path = tmp_path / "http.jsonl"
    events = []
    sink = JsonLinesSink(str(path), rotate_bytes=1000, keep_files=3, on_event=lambda e, **f: events.append(e)).open()
    lines = [line(i) for i in range(200)]  # ~10 KB: rotates about ten times
    for i in range(0, 200, 7):
        sink.add(lines[i : i + 7])
        sink.flush()
    sink.close()

    assert ["http.jsonl", "http.jsonl.1", "http.jsonl.2", "http.jsonl.3"] == sorted(p.name for p in tmp_path.iterdir())
    files = all_files(path)
    for p in files:
        assert p.stat().st_size <= 1000
    kept = read_lines(files)
    # Only the oldest are gone, the rest are in order, none torn or doubled.
    assert lines[-len(kept) :] == kept
    assert sink.rotations == events.count("rotated")
    assert sink.rotations >= 9
    assert 200 == sink.records_written


def test_sink_rotation_does_not_split_a_batch_mid_line(tmp_path: Path):
    path = tmp_path / "http.jsonl"
    sink = JsonLinesSink(str(path), rotate_bytes=500, keep_files=50).open()
    lines = [line(i) for i in range(60)]
    sink.add(lines)  # one batch far larger than a file
    sink.close()
    assert lines == read_lines(all_files(path))
    assert all(p.stat().st_size <= 500 for p in all_files(path))


def test_sink_line_longer_than_rotate_bytes_gets_a_file_of_its_own(tmp_path: Path):
    path = tmp_path / "http.jsonl"
    sink = JsonLinesSink(str(path), rotate_bytes=100, keep_files=5).open()
    lines = [line(1, 10), line(2, 500), line(3, 10)]
    sink.add(lines)
    sink.close()
    assert lines == read_lines(all_files(path))
    assert [lines[1] + "\n"] == (tmp_path / "http.jsonl.1").read_text().splitlines(keepends=True)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_sink_creates_files_mode_0640_whatever_the_umask(tmp_path: Path, umask: int):
    path = tmp_path / "http.jsonl"
    old = os.umask(umask)
    try:
        sink = JsonLinesSink(str(path), rotate_bytes=100, keep_files=2).open()
        sink.add([line(i) for i in range(5)])
        sink.close()
    finally:
        os.umask(old)
    assert {"http.jsonl": 0o640, "http.jsonl.1": 0o640, "http.jsonl.2": 0o640} == {
        p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()
    }


def test_sink_appends_to_an_existing_file_and_keeps_its_mode(tmp_path: Path):
    path = tmp_path / "http.jsonl"
    path.write_text('{"old": 1}\n')
    path.chmod(0o600)
    sink = JsonLinesSink(str(path)).open()
    sink.add([line(1)])
    sink.close()
    assert ['{"old": 1}', line(1)] == path.read_text().splitlines()
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)


def test_sink_reopen_after_logrotate_moved_the_file(tmp_path: Path):
    """As logrotate does: rename, then SIGHUP (request_reopen); nothing lost or doubled."""
    path = tmp_path / "http.jsonl"
    sink = JsonLinesSink(str(path)).open()
    sink.add([line(1), line(2)])
    sink.flush()
    moved = tmp_path / "http.jsonl-20260101"
    path.rename(moved)
    sink.add([line(3)])  # still buffered when the HUP comes: goes to the new file
    sink.request_reopen()
    sink.add([line(4)])
    sink.close()
    assert [line(1), line(2)] == moved.read_text().splitlines()
    assert [line(3), line(4)] == path.read_text().splitlines()
    assert 0o640 == stat.S_IMODE(path.stat().st_mode)
    assert 1 == sink.reopens


def test_sink_reopen_requested_while_idle_happens_at_the_next_tick(tmp_path: Path):
    path = tmp_path / "http.jsonl"
    sink = JsonLinesSink(str(path)).open()
    path.rename(tmp_path / "moved")
    sink.request_reopen()
    sink.maybe_flush()
    assert path.exists()
    sink.close()


def test_sink_rotation_after_the_file_was_moved_away_loses_nothing(tmp_path: Path):
    """Built-in rotation racing an external rename (HUP not yet handled)."""
    path = tmp_path / "http.jsonl"
    sink = JsonLinesSink(str(path), rotate_bytes=200, keep_files=5).open()
    sink.add([line(1), line(2)])
    sink.flush()
    (tmp_path / "http.jsonl").rename(tmp_path / "moved")
    sink.add([line(i) for i in range(3, 9)])
    sink.close()
    got = read_lines([tmp_path / "moved"] + all_files(path))
    assert [line(i) for i in range(1, 9)] == got
    assert 0o640 == stat.S_IMODE(path.stat().st_mode)


def test_sink_rotation_does_not_rename_a_file_logrotate_created(tmp_path: Path):
    """logrotate's `create`: the old file moved, a new empty one made, SIGHUP still to come."""
    path = tmp_path / "http.jsonl"
    sink = JsonLinesSink(str(path), rotate_bytes=200, keep_files=5).open()
    sink.add([line(1), line(2)])
    sink.flush()
    path.rename(tmp_path / "moved")
    path.write_text("")
    sink.add([line(i) for i in range(3, 9)])
    sink.close()
    # The path's identity is checked at every flush: the file logrotate made
    # is reopened at once (no SIGHUP needed), and never renamed by our rotation.
    assert [line(1), line(2)] == read_lines([tmp_path / "moved"])
    assert [line(i) for i in range(3, 9)] == read_lines(all_files(path))
    assert 1 == sink.reopens


def test_sink_flushes_when_the_oldest_line_waited_the_interval(tmp_path: Path):
    path = tmp_path / "http.jsonl"
    clock = FakeClock()
    sink = JsonLinesSink(str(path), flush_interval_s=1.0, clock=clock).open()
    sink.add([line(1)])
    clock.now += 0.5
    sink.add([line(2)])
    sink.maybe_flush()
    assert b"" == path.read_bytes()
    clock.now += 0.5
    sink.maybe_flush()
    assert [line(1), line(2)] == path.read_text().splitlines()
    sink.close()


def test_sink_writes_without_waiting_once_the_buffer_is_large(tmp_path: Path):
    path = tmp_path / "http.jsonl"
    sink = JsonLinesSink(str(path), flush_interval_s=1.0, clock=FakeClock()).open()
    lines = [line(i, 1000) for i in range(300)]  # ~300 KB, over WRITE_CHUNK_BYTES
    sink.add(lines)
    assert lines == path.read_text().splitlines()
    sink.close()


def test_sink_stdout_writes_whole_lines_to_fd_1(capfd: pytest.CaptureFixture):
    sink = JsonLinesSink("-", rotate_bytes=10, keep_files=1).open()
    sink.add([line(1), line(2)])
    sink.request_reopen()  # ignored for stdout
    sink.close()
    assert f"{line(1)}\n{line(2)}\n" == capfd.readouterr().out
    assert 0 == sink.rotations


# --- faults: a full disk, a short write, the file or its directory removed ---------


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A real 64 KiB tmpfs (we are root, as the suite is): the kernel says ENOSPC, not a mock."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


class Events(list):
    def __call__(self, event: str, **fields: object) -> None:
        self.append((event, fields))

    def named(self, name: str) -> list[dict]:
        return [f for e, f in self if e == name]


def test_sink_disk_full_writes_whole_lines_counts_them_and_resumes_when_space_returns(tiny_fs: Path):
    filler = tiny_fs / "filler"
    filler.write_bytes(b"\0" * 32 * 1024)
    path = tiny_fs / "http.jsonl"
    clock, events = FakeClock(), Events()
    sink = JsonLinesSink(str(path), clock=clock, on_event=events).open()
    lines = [line(i, 300) for i in range(150)]  # ~50 KB: more than the 32 KiB left
    for i in range(0, 150, 10):
        sink.add(lines[i : i + 10])
        sink.flush()

    on_disk = read_lines([path])  # no partial line
    assert lines[: len(on_disk)] == on_disk
    assert 0 < len(on_disk) < 150
    assert (len(on_disk), len(on_disk), 150 - len(on_disk), 0) == (
        sink.records_written, len(path.read_bytes().splitlines()), sink.records_held, sink.records_lost)
    assert "blocked" == sink.state
    assert [{"path": str(path), "error": os.strerror(errno.ENOSPC), "records_held": 0, "backlog_bytes": sink.backlog_bytes}] == [
        {**f, "records_held": 0} for f in events.named("output_blocked")]

    filler.unlink()
    clock.now += 0.5
    sink.maybe_flush()  # not yet: retried once a second
    assert len(on_disk) == len(read_lines([path]))
    clock.now += 0.6
    sink.maybe_flush()
    assert lines == read_lines([path])
    assert ("ok", 150, 0, 0) == (sink.state, sink.records_written, sink.records_held, sink.records_lost)
    assert [0] == [f["records_lost"] for f in events.named("output_resumed")]
    sink.close()


def test_sink_backlog_is_bounded_and_what_overflows_is_counted_lost(tiny_fs: Path):
    (tiny_fs / "filler").write_bytes(b"\0" * 60 * 1024)  # leaves less than the slack: nothing fits
    path = tiny_fs / "http.jsonl"
    clock, events = FakeClock(), Events()
    sink = JsonLinesSink(str(path), clock=clock, on_event=events, backlog_bytes=10_000).open()
    lines = [line(i, 100) for i in range(1000)]  # ~120 KB
    for i in range(0, 1000, 50):
        sink.add(lines[i : i + 50])
        sink.maybe_flush()
        clock.now += 1.1
    assert b"" == path.read_bytes()
    held = sink.records_held
    size = [len(t) + 1 for t in lines]
    assert sum(size[:held]) <= 10_000 < sum(size[: held + 1])
    assert (0, 1000 - held) == (sink.records_written, sink.records_lost)
    (tiny_fs / "filler").unlink()
    sink.close()
    # The oldest lines were kept (the file's order has no hole but at its end).
    assert lines[:held] == read_lines([path])
    assert (held, 1000 - held) == (sink.records_written, sink.records_lost)
    assert [1000 - held] == [f["records_lost"] for f in events.named("output_resumed")]


SHORT_WRITE = r"""
import json, os, resource, signal, sys
sys.path.insert(0, sys.argv[1])
from sniffd.sink import JsonLinesSink
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (5000, 5000))
events = []
sink = JsonLinesSink(sys.argv[2], on_event=lambda e, **f: events.append(e)).open()
sink.add([json.dumps({"n": i, "pad": "x" * 90}) for i in range(100)])  # ~10 KB in one write
sink.flush()
print(json.dumps([sink.records_written, sink.records_held, sink.write_errors, sink.state, events]))
"""


def test_sink_short_write_is_cut_back_to_the_last_whole_line(tmp_path: Path):
    """A write the kernel cuts short although the disk has room (here RLIMIT_FSIZE,
    in real life a quota): the file is truncated to the last whole line and the
    count is exactly what is in it."""
    path = tmp_path / "http.jsonl"
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", SHORT_WRITE, str(repo), str(path)], capture_output=True, text=True, check=True)
    written, held, errors, state, events = json.loads(out.stdout)
    data = path.read_bytes()
    assert data.endswith(b"\n") and len(data) <= 5000
    assert len(data) > 5000 - 120  # cut at the last whole line, not before
    assert (len(data.splitlines()), 100 - len(data.splitlines()), 1, "blocked", ["output_blocked"]) == (
        written, held, errors, state, events)


def test_sink_deleted_file_is_made_again_at_the_next_flush(tmp_path: Path):
    path = tmp_path / "http.jsonl"
    events = Events()
    sink = JsonLinesSink(str(path), on_event=events).open()
    sink.add([line(1)])
    sink.flush()
    path.unlink()
    sink.add([line(2)])
    sink.flush()
    assert [line(2)] == read_lines([path])
    assert 0o640 == stat.S_IMODE(path.stat().st_mode)
    assert ["removed"] == [f["reason"] for f in events.named("reopened")]
    sink.close()


def test_sink_removed_directory_is_made_again(tmp_path: Path):
    logs = tmp_path / "log"
    logs.mkdir()
    path = logs / "http.jsonl"
    events = Events()
    sink = JsonLinesSink(str(path), on_event=events).open()
    sink.add([line(1)])
    sink.flush()
    shutil.rmtree(logs)
    sink.add([line(2), line(3)])
    sink.flush()
    assert [line(2), line(3)] == read_lines([path])
    assert 0o750 == stat.S_IMODE(logs.stat().st_mode)
    assert [{"path": str(path), "size_bytes": 0, "reason": "removed", "created_directory": True}] == events.named("reopened")
    assert (3, 0) == (sink.records_written, sink.records_lost)
    sink.close()


def test_sink_directory_that_cannot_be_made_blocks_until_it_is_back(tmp_path: Path):
    """rm -rf two levels up: sniffd may not make its parents; it holds the lines
    and writes them, in order, once an operator recreates the directory."""
    top = tmp_path / "top"
    logs = top / "log"
    logs.mkdir(parents=True)
    path = logs / "http.jsonl"
    clock, events = FakeClock(), Events()
    sink = JsonLinesSink(str(path), clock=clock, on_event=events).open()
    sink.add([line(1)])
    sink.flush()
    shutil.rmtree(top)
    for i in range(2, 6):
        sink.add([line(i)])
        clock.now += 1.1
        sink.maybe_flush()
    assert ("blocked", 4, 1) == (sink.state, sink.records_held, len(events.named("output_blocked")))
    assert not top.exists()
    logs.mkdir(parents=True)
    clock.now += 1.1
    sink.maybe_flush()
    assert [line(i) for i in range(2, 6)] == read_lines([path])
    assert ("ok", 5, 0) == (sink.state, sink.records_written, sink.records_lost)
    assert 1 == len(events.named("output_resumed"))
    sink.close()


def test_sink_close_while_blocked_counts_the_held_lines_lost(tmp_path: Path):
    top = tmp_path / "top"
    (top / "log").mkdir(parents=True)
    path = top / "log" / "http.jsonl"
    events = Events()
    sink = JsonLinesSink(str(path), on_event=events).open()
    shutil.rmtree(top)
    sink.add([line(1), line(2)])
    sink.close()
    assert (0, 2) == (sink.records_written, sink.records_lost)
    assert [2] == [f["records_lost"] for f in events.named("output_lost_at_exit")]


def test_sink_backlog_bound_holds_between_retries(tmp_path: Path):
    """While blocked, add() alone keeps the held lines within backlog_bytes,
    even when the backlog is smaller than a write chunk."""
    top = tmp_path / "top"
    (top / "log").mkdir(parents=True)
    clock = FakeClock()
    sink = JsonLinesSink(str(top / "log" / "http.jsonl"), clock=clock, backlog_bytes=2_000).open()
    shutil.rmtree(top)
    sink.add([line(0)])
    sink.flush()  # blocked now: the directory cannot be made again
    assert "blocked" == sink.state
    for i in range(1, 200):
        sink.add([line(i)])  # no flush, no retry due: the clock stands still
        assert sink._pending_bytes <= 2_000
    assert 200 == sink.records_held + sink.records_lost
    sink.close()


def test_stats_reports_the_output_counters_in_order(tmp_path):
    """Sink.stats: the keys every sink reports, in the order the stats events carry them."""
    sink = JsonLinesSink(str(tmp_path / "http.jsonl")).open()
    sink.add(["{}", "{}"])
    sink.close()
    expected = {"records_written": 2, "records_lost": 0, "records_held": 0, "rotations": 0, "reopens": 0,
                "write_errors": 0, "output_state": "ok"}
    assert expected == sink.stats()
    assert list(OUTPUT_STATS) == list(sink.stats())
