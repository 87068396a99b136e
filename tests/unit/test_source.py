"""sniffd.source: what an input is (by its bytes), and damaged compression
found wherever it falls (the real CLI on these: tests/pcap/test_read_streams.py)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import zstandard

from sniffd.source import CaptureError, compression, open_input

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / "captures" / "sample.pcap").read_bytes()


@pytest.mark.parametrize("magic, kind", [
    (b"\x1f\x8b\x08\x00", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x50\x2a\x4d\x18", "zstd"),  # a skippable frame first
    (b"\x5f\x2a\x4d\x18", "zstd"),
    (b"\xd4\xc3\xb2\xa1", None),  # classic pcap
    (b"\x0a\x0d\x0d\x0a", None),  # pcapng
    (b"\x60\x2a\x4d\x18", None),
    (b"", None),
])
def test_compression_is_told_by_the_first_bytes(magic, kind):
    assert kind == compression(magic)


def _read_all(path: Path) -> bytes:
    source = open_input(str(path))
    if source.plain_path is not None:
        return Path(source.plain_path).read_bytes()
    out = b""
    while data := source.read(1000):
        out += data
    return out


def _zstd(data: bytes, **kw) -> bytes:
    return zstandard.ZstdCompressor(**kw).compress(data)


@pytest.mark.parametrize("name, make", [
    ("gzip", gzip.compress),
    ("zstd", _zstd),
    ("zstd, checksum", lambda d: _zstd(d, write_checksum=True)),
    ("zstd, no content size", lambda d: _zstd(d, write_content_size=False)),
    ("zstd, dictionary id", lambda d: _zstd(d, write_dict_id=True)),
])
def test_every_cut_of_a_compressed_stream_is_reported_and_the_whole_reads(name, make, tmp_path):
    whole = make(SAMPLE)
    path = tmp_path / "x"
    path.write_bytes(whole)
    assert SAMPLE == _read_all(path)
    kind = name.split(",")[0]
    for cut in range(1, len(whole)):
        path.write_bytes(whole[:cut])
        if compression(whole[:cut][:4]) is None:
            continue  # too short to be told compressed: libpcap says it is no capture
        with pytest.raises(CaptureError) as e:
            _read_all(path)
        assert str(e.value).startswith(f"{path}: truncated {kind} stream ("), (cut, str(e.value))


def test_zstd_frames_one_after_another_and_skippable_frames_read_whole(tmp_path):
    half = len(SAMPLE) // 2
    skippable = b"\x5a\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"hello"
    path = tmp_path / "frames.zst"
    path.write_bytes(skippable + _zstd(SAMPLE[:half]) + skippable + _zstd(SAMPLE[half:], write_checksum=True))
    assert SAMPLE == _read_all(path)
    path.write_bytes(skippable[:-1])
    with pytest.raises(CaptureError, match="truncated zstd stream"):
        _read_all(path)


def test_a_changed_byte_in_zstd_with_a_checksum_is_damage(tmp_path):
    data = bytearray(_zstd(SAMPLE * 4, write_checksum=True))
    data[len(data) // 2] ^= 0x55
    path = tmp_path / "bad.zst"
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match="damaged zstd stream"):
        _read_all(path)


def test_gzip_junk_after_the_end_is_damage(tmp_path):
    path = tmp_path / "junk.gz"
    path.write_bytes(gzip.compress(SAMPLE) + b"junk")
    with pytest.raises(CaptureError, match="damaged gzip stream"):
        _read_all(path)


def test_a_plain_file_is_read_by_path_whatever_its_name(tmp_path):
    path = tmp_path / "plain.pcap.gz"
    path.write_bytes(SAMPLE)
    source = open_input(str(path))
    assert (str(path), None, len(SAMPLE)) == (source.plain_path, source.compression, source.size)


def test_a_fifo_is_a_stream_read_once(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pid = os.fork()
    if pid == 0:
        with open(fifo, "wb") as f:
            f.write(gzip.compress(SAMPLE))
        os._exit(0)
    source = open_input(str(fifo))
    assert (None, None, "gzip", None) == (source.plain_path, source.reopen_path, source.compression, source.size)
    assert SAMPLE == source.read(10 * len(SAMPLE))
    os.waitpid(pid, 0)
