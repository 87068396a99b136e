"""`sniffd read` on captures the way people have them: through a pipe (``-``,
``<(zcat x.gz)``), gzip or zstd compressed, and long (a progress bar).

Every read of a stream is held to the read of the same capture as a plain
file: the same records, byte for byte, and the same warning.  Small
captures fit in sniffd's first chunk (1 MiB, held in memory and read as a
plain file); the big ones here (over 3 MiB) take the stream's own path,
chunk after chunk, and libpcap fed through a pipe where a plain file's read
would use libpcap (a filter, raw IP, an odd record).  The compressed files
are made by the real gzip and zstd tools.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import stat
import struct
import subprocess
import termios
import time
from pathlib import Path

import craft
import pytest
from craft import TcpConversation
from pcapcheck import SNIFFD, T0, stderr_lines

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "captures" / "sample.pcap"
CHUNK = 1 << 20  # sniffd.capture._CHUNK: a stream longer than this is read as a stream

pytestmark = pytest.mark.skipif(not (shutil.which("gzip") and shutil.which("zstd")),
                                reason="needs the gzip and zstd tools (scripts/install)")


_UID = re.compile(rb'"uid":"C[0-9A-Za-z]{17}"')


def same_uids(out: bytes) -> bytes:
    """Records with each connection's uid renamed by its first appearance
    (U1, U2, ...): a uid is drawn afresh each run (and per worker), so two
    reads of one capture agree on which records share a uid, not on its value."""
    seen: dict[bytes, bytes] = {}
    return _UID.sub(lambda m: seen.setdefault(m.group(), b'"uid":"U%d"' % (len(seen) + 1)), out)


def sh(script: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """``script`` in bash (pipes, process substitution), with pipefail; its
    stdout with uids renamed (``same_uids``)."""
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", script], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)
    proc.stdout = same_uids(proc.stdout)
    return proc


def sniffd(*args) -> str:
    return " ".join([str(SNIFFD), "read", *map(str, args)])


_PLAIN: dict[tuple, subprocess.CompletedProcess] = {}


def read_plain(capture: Path, *extra: str) -> subprocess.CompletedProcess:
    """The plain file's read, the reference (once per file and arguments)."""
    key = (str(capture), capture.stat().st_mtime_ns, *extra)
    if key not in _PLAIN:
        proc = sh(sniffd(capture, *extra))
        assert proc.returncode == 0, proc.stderr
        _PLAIN[key] = proc
    return _PLAIN[key]


def warnings_of(proc: subprocess.CompletedProcess, name: str) -> list[str]:
    """stderr's lines, with the input's name made ``NAME`` (the plain read names the file)."""
    return [line.replace(name, "NAME") for line in proc.stderr.decode().splitlines()]


def get(conv: TcpConversation, uri: str, body: bytes) -> list:
    request = f"GET {uri} HTTP/1.1\r\nHost: example.test\r\n\r\n".encode()
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    return (conv.handshake() + conv.client_data(request) + [conv.server_ack()]
            + conv.server_data(response, [1400] * (len(response) // 1400)) + [conv.client_ack()] + conv.close())


def big_packets(n: int = 1200) -> list:
    """``n`` connections, one 2.5 KB exchange each: over 3 MiB of capture."""
    packets = []
    for i in range(n):
        conv = TcpConversation((f"10.0.{i // 250}.{i % 250 + 1}", 40000 + i % 20000), ("10.1.0.2", 80),
                               client_isn=1000 + i * 7919)
        body = bytes((i + k) % 251 for k in range(2500))
        for k, seg in enumerate(get(conv, f"/obj/{i}", body)):
            packets.append((T0 + i * 0.01 + k * 0.0001, seg))
    return packets


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> dict[str, Path]:
    """Big captures: classic pcap (walked), pcapng (walked), raw IP pcap
    (libpcap's), each with its .gz and .zst made by the real tools."""
    d = tmp_path_factory.mktemp("big")
    packets = big_packets()
    files = {
        "pcap": d / "big.pcap",
        "pcapng": d / "big.pcapng",
        "raw": d / "big_raw.pcap",
    }
    craft.capture(files["pcap"], packets)
    craft.capture(files["pcapng"], packets, fmt="pcapng")
    craft.capture(files["raw"], packets, linktype=craft.LINKTYPE_RAW)
    for path in list(files.values()):
        assert path.stat().st_size > 3 * CHUNK
        subprocess.run(["gzip", "-k", "-f", str(path)], check=True)
        subprocess.run(["zstd", "-q", "-f", str(path), "-o", f"{path}.zst"], check=True)
    return files


# --- a pipe and compressed files read as the plain file ----------------------------------


@pytest.mark.parametrize("form", [
    "gzip -c {f} | {sniffd} -",
    "zstd -q -c {f} | {sniffd} -",
    "cat {f} | {sniffd} -",
    "{sniffd} - < {f}.gz",
    "{sniffd} <(zcat {f}.gz)",
    "{sniffd} /dev/stdin < <(zstd -q -d -c {f}.zst)",
    "{sniffd} {f}.gz",
    "{sniffd} {f}.zst",
])
@pytest.mark.parametrize("kind", ["sample", "pcap", "pcapng", "raw"])
def test_read_pipe_and_compressed_gives_the_plain_files_records(form, kind, big, tmp_path):
    if kind == "sample":
        f = tmp_path / "sample.pcap"
        shutil.copy(SAMPLE, f)
        subprocess.run(["gzip", "-k", str(f)], check=True)
        subprocess.run(["zstd", "-q", str(f), "-o", f"{f}.zst"], check=True)
    else:
        f = big[kind]
    plain = read_plain(f)
    proc = sh(form.format(f=f, sniffd=sniffd()))
    assert (0, b"") == (proc.returncode, proc.stderr)
    assert plain.stdout.count(b"\n") > 0
    assert plain.stdout == proc.stdout


def test_read_stream_with_a_filter_gives_the_plain_files_records(big):
    """A filter is libpcap's: on a stream, libpcap reads it from a pipe."""
    f = big["pcap"]
    plain = read_plain(f, "-f", "'net 10.0.1.0/24'")
    assert 0 < plain.stdout.count(b"\n") < 1200
    for form in ("gzip -c {f} | {sniffd} -f 'net 10.0.1.0/24' -", "{sniffd} -f 'net 10.0.1.0/24' {f}.zst"):
        proc = sh(form.format(f=f, sniffd=sniffd()))
        assert (0, b"", plain.stdout) == (proc.returncode, proc.stderr, proc.stdout)
    ng = sh(sniffd("-f", "'net 10.0.1.0/24'", f"{big['pcapng']}.gz"))
    assert (0, b"", plain.stdout) == (ng.returncode, ng.stderr, ng.stdout)


def test_compression_is_told_by_the_bytes_not_the_name(big, tmp_path):
    """gzip data named .pcap, zstd named .gz, and a plain pcap named .gz all read."""
    f = big["pcap"]
    plain = read_plain(f)
    shutil.copy(f"{f}.gz", tmp_path / "really_gzip.pcap")
    shutil.copy(f"{f}.zst", tmp_path / "really_zstd.gz")
    shutil.copy(f, tmp_path / "really_plain.pcap.gz")
    for name in ("really_gzip.pcap", "really_zstd.gz", "really_plain.pcap.gz"):
        proc = sh(sniffd(tmp_path / name))
        assert (0, b"", plain.stdout) == (proc.returncode, proc.stderr, proc.stdout), name


def test_zstd_of_several_frames_and_gzip_of_several_members_read_whole(big, tmp_path):
    """`zstd` of two parts, concatenated (as pzstd and `cat a.zst b.zst` make), and the same for gzip."""
    f = big["pcap"]
    plain = read_plain(f)
    data = f.read_bytes()
    half = len(data) // 2 + 3  # not at a record's edge
    for tool, ext in (("zstd -q -c", "zst"), ("gzip -c", "gz")):
        parts = [subprocess.run(tool.split(), input=part, capture_output=True, check=True).stdout
                 for part in (data[:half], data[half:])]
        joined = tmp_path / f"two.pcap.{ext}"
        joined.write_bytes(b"".join(parts))
        proc = sh(sniffd(joined))
        assert (0, b"", plain.stdout) == (proc.returncode, proc.stderr, proc.stdout), ext


# --- cut and broken captures inside clean compression: as the plain file ------------------


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "raw"])
def test_capture_cut_inside_a_clean_stream_warns_as_the_plain_file_does(kind, big, tmp_path):
    """A capture cut mid-record (past the first chunk) inside a whole gzip
    stream: the records before the cut, the same warning, exit 0."""
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(big[kind].read_bytes()[: 2 * CHUNK + 777])
    plain = sh(sniffd(cut))
    assert plain.returncode == 0 and b"truncated" in plain.stderr
    proc = sh(f"gzip -c {cut} | {sniffd('-')}")
    assert (0, plain.stdout) == (proc.returncode, proc.stdout)
    assert warnings_of(plain, str(cut)) == warnings_of(proc, "stdin")


def test_odd_record_in_a_stream_is_libpcaps_as_in_the_plain_file(big, tmp_path):
    """A record longer than the file's snapshot length, past the first
    chunk: the walk leaves it to libpcap (which cuts it to the snapshot
    length and goes on); on a stream libpcap reads on from a pipe."""
    data = bytearray(big["pcap"].read_bytes())
    struct.pack_into("<I", data, 16, 1000)  # the header's snapshot length: below the 1,454-byte frames
    odd = tmp_path / "odd.pcap"
    odd.write_bytes(data)
    plain = read_plain(odd)
    proc = sh(f"gzip -c {odd} | {sniffd('-')}")
    assert (0, plain.stdout) == (proc.returncode, proc.stdout)
    assert warnings_of(plain, str(odd)) == warnings_of(proc, "stdin")
    big_caplen = tmp_path / "huge.pcap"
    data = bytearray(big["pcap"].read_bytes())
    at = _record_offset_past(data, 2 * CHUNK)
    struct.pack_into("<I", data, at + 8, 300000)  # caplen above any snapshot length: libpcap stops
    big_caplen.write_bytes(data)
    plain = sh(sniffd(big_caplen))
    assert plain.returncode == 0 and b"invalid packet capture length" in plain.stderr
    proc = sh(f"zstd -q -c {big_caplen} | {sniffd('-')}")
    assert (0, plain.stdout) == (proc.returncode, proc.stdout)
    assert warnings_of(plain, str(big_caplen)) == warnings_of(proc, "stdin")


def _record_offset_past(data: bytes, offset: int) -> int:
    at = 24
    while at < offset:
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    return at


# --- damaged compression: one line, exit 2, nothing half-written ----------------------------


def _damaged(path: Path, how: str, tmp_path: Path) -> Path:
    data = bytearray(path.read_bytes())
    if how == "cut":
        data = data[: len(data) * 2 // 3]
    elif how == "flipped":
        data[len(data) * 2 // 3] ^= 0x55
    else:  # junk after the end
        data += b"this is not compressed"
    out = tmp_path / f"{how}{''.join(path.suffixes[-2:])}"
    out.write_bytes(data)
    return out


@pytest.mark.parametrize("how", ["cut", "flipped", "junk"])
@pytest.mark.parametrize("ext", ["gz", "zst"])
@pytest.mark.parametrize("kind", ["sample", "pcap", "raw"])
def test_damaged_compression_is_one_line_exit_2_and_no_output(kind, ext, how, big, tmp_path):
    """Cut short, a byte changed, junk after the end: in a small capture (found
    before any record) and in a big one (found after records were made)."""
    if kind == "sample":
        src = tmp_path / "sample.pcap"
        shutil.copy(SAMPLE, src)
        subprocess.run(["gzip", "-k", str(src)], check=True)
        subprocess.run(["zstd", "-q", str(src), "-o", f"{src}.zst"], check=True)
        src = Path(f"{src}.{ext}")
    else:
        src = Path(f"{big[kind]}.{ext}")
    bad = _damaged(src, how, tmp_path)
    out = tmp_path / "out.jsonl"
    for form, name in (("{sniffd} -o {out} {bad}", str(bad)), ("cat {bad} | {sniffd} -o {out} -", "stdin")):
        proc = sh(form.format(sniffd=sniffd(), out=out, bad=bad))
        lines = stderr_lines(subprocess.CompletedProcess([], 0, "", proc.stderr.decode()))
        assert (2, 1, False) == (proc.returncode, len(lines), out.exists()), proc.stderr
        assert lines[0].startswith(f"sniffd: error: {name}: ")
        kind_word = "gzip" if ext == "gz" else "zstd"
        assert f" {kind_word} stream " in lines[0] or "not a readable" in lines[0], lines[0]
        assert not list(tmp_path.glob(".sniffd-*")), "a temporary file was left"


def test_a_zstd_stream_cut_anywhere_is_exit_2(tmp_path):
    """zstandard's stream reader ends without a word inside a cut frame;
    sniffd follows the frames and says so (every cut: tests/unit/test_source.py)."""
    whole = subprocess.run(["zstd", "-q", "-c", str(SAMPLE)], capture_output=True, check=True).stdout
    for cut in (1, 4, 5, 6, 9, len(whole) // 2, len(whole) - 4, len(whole) - 1):
        proc = subprocess.run([str(SNIFFD), "read", "-"], input=whole[:cut], capture_output=True, timeout=30)
        assert (2, b"") == (proc.returncode, proc.stdout), (cut, proc.stderr)
        assert proc.stderr.decode().count("\n") == 1, (cut, proc.stderr)


@pytest.mark.parametrize("stdin", ["empty pipe", "empty file", "empty gzip"])
def test_empty_input_is_one_line_exit_2(stdin, tmp_path):
    out = tmp_path / "out.jsonl"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    source = {"empty pipe": "printf '' |", "empty file": "", "empty gzip": "printf '' | gzip -c |"}[stdin]
    redirect = f"< {empty}" if stdin == "empty file" else ""
    proc = sh(f"{source} {sniffd('-o', out, '-')} {redirect}")
    assert (2, False, 1) == (proc.returncode, out.exists(), len(proc.stderr.splitlines())), proc.stderr
    assert proc.stderr.startswith(b"sniffd: error: stdin: empty"), proc.stderr


def test_stdin_that_is_a_terminal_is_refused_not_waited_on(tmp_path):
    master, slave = _terminal()
    proc = subprocess.run([str(SNIFFD), "read", "-"], stdin=slave, capture_output=True, timeout=30)
    os.close(slave)
    os.close(master)
    assert (2, b"", b"sniffd: error: stdin: is a terminal, not a capture (pipe one in: ... | sniffd read -)\n") == (
        proc.returncode, proc.stdout, proc.stderr)


# --- workers -------------------------------------------------------------------------


def test_workers_read_compressed_files_and_refuse_a_long_pipe(big, tmp_path):
    f = big["pcap"]
    plain = read_plain(f)
    proc = sh(sniffd("-w", "2", f"{f}.zst"))
    assert (0, b"", plain.stdout) == (proc.returncode, proc.stderr, proc.stdout)
    small = sh(f"gzip -c {SAMPLE} | {sniffd('-w', '2', '-')}")
    assert (0, read_plain(SAMPLE).stdout) == (small.returncode, small.stdout), small.stderr
    out = tmp_path / "out.jsonl"
    proc = sh(f"cat {f} | {sniffd('-w', '2', '-o', out, '-')}")
    assert (2, False, 1) == (proc.returncode, out.exists(), len(proc.stderr.splitlines())), proc.stderr
    assert proc.stderr.startswith(b"sniffd: error: stdin: a pipe is read once")


def test_workers_report_damaged_compression_as_bad_input(big, tmp_path):
    bad = _damaged(Path(f"{big['pcap']}.gz"), "cut", tmp_path)
    out = tmp_path / "out.jsonl"
    proc = sh(sniffd("-w", "2", "-o", out, bad))
    assert (2, False, 1) == (proc.returncode, out.exists(), len(proc.stderr.splitlines())), proc.stderr
    assert proc.stderr.startswith(f"sniffd: error: {bad}: truncated gzip stream".encode())


# --- --quiet, and output to a FIFO ----------------------------------------------------


def test_quiet_silences_warnings_but_not_errors_or_stats(big, tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(big["pcap"].read_bytes()[: CHUNK + 99])
    loud = sh(sniffd(cut))
    assert b"sniffd: warning:" in loud.stderr
    quiet = sh(sniffd("-q", cut))
    assert (0, b"", loud.stdout) == (quiet.returncode, quiet.stderr, quiet.stdout)
    stats = sh(sniffd("--quiet", "--stats", cut))
    assert (0, 1) == (stats.returncode, len(stats.stderr.splitlines()))
    assert stats.stderr.startswith(b"{")
    error = sh(sniffd("--quiet", tmp_path / "nowhere.pcap"))
    assert (2, 1) == (error.returncode, len(error.stderr.splitlines()))


def test_output_to_a_fifo_is_written_into_it_not_renamed_over_it(tmp_path):
    """-o onto a device or FIFO (e.g. /dev/null) writes into it: a temporary
    file renamed over it had turned /dev/null into a regular file."""
    fifo = tmp_path / "records.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    try:
        proc = sh(sniffd("-o", fifo, SAMPLE), timeout=30)
        got, _ = reader.communicate(timeout=10)
    finally:
        reader.kill()
    assert 0 == proc.returncode, proc.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert read_plain(SAMPLE).stdout == same_uids(got)


# --- the progress bar ------------------------------------------------------------------


def _terminal() -> tuple[int, int]:
    """A pseudo-terminal of 24 rows and 100 columns (a new one has 0: tqdm draws nothing)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    return master, slave


def _collect(proc: subprocess.Popen, fd: int) -> bytes:
    """What ``proc`` writes to ``fd`` (a terminal's master side, or a pipe),
    read while it runs (a full terminal would stop it), until it is done."""
    seen = b""
    while True:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: no process holds the terminal any more
                data = b""
            if data:
                seen += data
                continue
            break
        if proc.poll() is not None:
            break
    proc.wait(timeout=60)
    return seen


def _read_on_a_terminal(args: list[str], feed: bytes, pause_after: int, tmp_path: Path,
                        quiet_stderr_pipe: bool = False):
    """`sniffd read ARGS -` with stdin a pipe fed ``feed`` (pausing 1.5 s
    after ``pause_after`` bytes, so the read is long), stdout a file, and
    stderr a pseudo-terminal (or a pipe).  Returns (exit status, stdout,
    what stderr got)."""
    master, slave = _terminal()
    stdout = open(tmp_path / "stdout", "w+b")
    err_r = None
    stderr = slave
    if quiet_stderr_pipe:
        err_r, stderr = os.pipe()
    proc = subprocess.Popen([str(SNIFFD), "read", *args, "-"], stdin=subprocess.PIPE, stdout=stdout,
                            stderr=stderr)
    os.close(slave)
    if err_r is not None:
        os.close(stderr)
    proc.stdin.write(feed[:pause_after])
    proc.stdin.flush()
    time.sleep(1.5)
    proc.stdin.write(feed[pause_after:])
    proc.stdin.close()
    seen = _collect(proc, err_r if err_r is not None else master)
    os.close(master)
    if err_r is not None:
        os.close(err_r)
    proc.wait(timeout=60)
    stdout.seek(0)
    out = same_uids(stdout.read())
    stdout.close()
    return proc.returncode, out, seen


def test_progress_bar_is_drawn_on_a_terminal_and_never_into_a_pipe(big, tmp_path):
    data = big["pcap"].read_bytes()
    plain = read_plain(big["pcap"]).stdout
    rc, out, tty = _read_on_a_terminal([], data, 2 * CHUNK, tmp_path)
    assert (0, plain) == (rc, out)
    assert b"packets" in tty and b"reading" in tty and b"B/s" in tty, tty[-400:]
    rc, out, piped = _read_on_a_terminal([], data, 2 * CHUNK, tmp_path, quiet_stderr_pipe=True)
    assert (0, plain, b"") == (rc, out, piped)
    rc, out, quiet = _read_on_a_terminal(["--quiet"], data, 2 * CHUNK, tmp_path)
    assert (0, plain, b"") == (rc, out, quiet)


def test_progress_bar_shows_the_share_read_of_a_file_of_known_size(big, tmp_path):
    """A FIFO read by name has no size; a compressed file has one: its bar
    shows a percentage."""
    f = Path(f"{big['pcap']}.gz")
    master, slave = _terminal()
    # A slow reader of the output holds the read long enough for the bar.
    proc = subprocess.Popen(["bash", "-c", f"{sniffd(f)} | (sleep 1.5; cat >/dev/null)"], stdin=subprocess.DEVNULL,
                            stderr=slave, stdout=subprocess.DEVNULL)
    os.close(slave)
    seen = _collect(proc, master)
    os.close(master)
    assert 0 == proc.returncode
    assert b"%" in seen and b"packets" in seen, seen[-400:]
