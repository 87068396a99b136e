"""The JSON-lines sink: whole lines, size rotation keeping N files, mode 0640, reopen, flush timing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sniffd.sink import JsonLinesSink


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
    # Until the reopen, lines go to the moved file (as logrotate expects); the
    # rotation that comes due reopens NAME instead of renaming logrotate's file.
    assert [line(1), line(2), line(3)] == read_lines([tmp_path / "moved"])
    assert [line(i) for i in range(4, 9)] == read_lines(all_files(path))
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
