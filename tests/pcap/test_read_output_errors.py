"""``sniffd read`` when the output cannot be written: one line naming it, exit 2,
no output file and no temporary file left behind (the disk is a real tmpfs
filled for the test, /dev/full a real device that always says ENOSPC)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pcapcheck import run_sniffd, stderr_lines

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


@pytest.fixture
def tiny_fs(tmp_path: Path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], check=True)
    # Filled to the last block: the first record cannot be written.
    with open(mnt / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_read_to_a_full_disk_says_so_and_leaves_no_file(tiny_fs: Path):
    out = tiny_fs / "out.jsonl"
    proc = run_sniffd("read", CAPTURES / "pipeline_head.pcap", CAPTURES / "sample.pcap", "-o", out)
    assert (2, [f"sniffd: error: {out}: cannot write: No space left on device"], []) == (
        proc.returncode, stderr_lines(proc), sorted(p.name for p in tiny_fs.iterdir() if p.name != "filler"))


def test_read_to_a_stdout_that_refuses_says_so(tmp_path: Path):
    sniffd = Path(run_sniffd.__globals__["SNIFFD"])
    with open("/dev/full", "w") as full:
        proc = subprocess.run([str(sniffd), "read", str(CAPTURES / "sample.pcap")], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert (2, ["sniffd: error: stdout: cannot write: No space left on device"]) == (
        proc.returncode, [line for line in proc.stderr.splitlines() if line.strip()])
