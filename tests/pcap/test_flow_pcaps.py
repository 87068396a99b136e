"""Flow pcaps (README, "Flow pcaps"): the real ``sniffd read --flow-pcaps`` on
crafted captures and on captures/*.pcap.

Which connections must have a file is written by hand for each capture;
what a file must hold comes from tcpdump or tshark reading the input (the
connection's packets, filtered by its 5-tuple or its tshark stream), never
from sniffd: a file's records (time stamp, lengths, frame) must be those
tools' records byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
import subprocess
from pathlib import Path

import craft
import pytest
from craft import TcpConversation
from pcapcheck import T0, run_sniffd

REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO / "captures"

# <first packet UTC>-<uid>-<client ip>.<port>-<server ip>.<port>.pcap
NAME = re.compile(r"(\d{8}T\d{6}Z)-(C[0-9A-Za-z]{17})-([0-9a-f._]+)\.(\d+)-([0-9a-f._]+)\.(\d+)\.pcap")


def ms(n: float) -> float:
    return T0 + n / 1000


def named(directory: Path) -> dict[tuple[str, int, str, int], Path]:
    """The files of ``directory`` by (client ip, port, server ip, port), from their names."""
    out = {}
    for p in sorted(directory.iterdir()):
        m = NAME.fullmatch(p.name)
        assert m, f"unexpected file name {p.name}"
        key = (m[3].replace("_", ":"), int(m[4]), m[5].replace("_", ":"), int(m[6]))
        assert key not in out, f"two files for {key}"
        out[key] = p
    return out


def records_of(path: Path) -> bytes:
    """A classic pcap's records: everything after the 24-byte file header."""
    data = path.read_bytes()
    assert struct.unpack_from("<I", data)[0] == 0xA1B2C3D4, f"{path}: not a little-endian microsecond pcap"
    return data[24:]


def linktype_of(path: Path) -> int:
    return struct.unpack_from("<I", path.read_bytes(), 20)[0]


def tcpdump_filtered(src: Path, key: tuple[str, int, str, int], out: Path) -> Path:
    """tcpdump's copy of the connection's packets (by its 5-tuple) from ``src``."""
    cip, cport, sip, sport = key
    bpf = f"tcp and host {cip} and host {sip} and port {cport} and port {sport}"
    subprocess.run(["tcpdump", "-r", str(src), "-w", str(out), bpf], check=True, capture_output=True)
    return out


def tcpdump_reads(path: Path) -> list[str]:
    """``tcpdump -nr``: exit status 0, the lines it prints."""
    proc = subprocess.run(["tcpdump", "-nr", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def read_with(pcap: Path, out_dir: Path, *extra: str) -> dict:
    """``sniffd read PCAP --flow-pcaps OUT_DIR --stats [extra]``: exit 0, the stats."""
    out_dir.mkdir(exist_ok=True)
    proc = run_sniffd("read", pcap, "-o", out_dir.parent / (out_dir.name + ".jsonl"), "--flow-pcaps", out_dir,
                      "--stats", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stderr.strip().splitlines()[-1])


# --- three connections: a 500, an anomaly, a clean one --------------------------------

C500 = ("10.0.0.1", 40001, "10.0.0.2", 80)
CANOM = ("10.0.0.1", 40002, "10.0.0.2", 80)
CCLEAN = ("10.0.0.1", 40003, "10.0.0.2", 80)


def exchange(conv: TcpConversation, t0: float, request: bytes, response: bytes, sizes=None) -> list:
    return [
        *zip([ms(t0), ms(t0 + 1), ms(t0 + 2)], conv.handshake()),
        (ms(t0 + 3), conv.client_data(request)[0]),
        *((ms(t0 + 10 + i), s) for i, s in enumerate(conv.server_data(response, sizes))),
        (ms(t0 + 20), conv.client_ack()),
        *zip([ms(t0 + 30), ms(t0 + 31), ms(t0 + 32)], conv.close()),
    ]


@pytest.fixture
def three(tmp_path: Path) -> Path:
    """A 500 (POST to api.example.test), a connection whose response is
    cut (an anomaly: its server closes 5 bytes into a 10-byte body), a clean
    200 (GET www.example.test); interleaved in time."""
    a = TcpConversation(C500[:2], C500[2:], client_isn=1000, server_isn=5000)
    b = TcpConversation(CANOM[:2], CANOM[2:], client_isn=2000, server_isn=6000)
    c = TcpConversation(CCLEAN[:2], CCLEAN[2:], client_isn=3000, server_isn=7000)
    packets = (
        exchange(a, 0, b"POST /x HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 2\r\n\r\nhi",
                 b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops")
        + exchange(b, 5, b"GET /cut HTTP/1.1\r\nHost: www.example.test\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        + exchange(c, 7, b"GET /fine HTTP/1.1\r\nHost: www.example.test\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", sizes=[20, 10])
    )
    packets.sort(key=lambda p: p[0])
    path = tmp_path / "three.pcap"
    craft.capture(path, packets)
    return path


def test_default_condition_writes_exactly_the_500_and_the_anomalous_connection(three: Path, tmp_path: Path):
    """Default flow_pcap_when ("anomaly", "status>=500"): the 500 and the cut
    response have a file each, the clean connection none; each file is
    tcpdump's 5-tuple copy of the input, byte for byte."""
    stats = read_with(three, tmp_path / "fp")
    files = named(tmp_path / "fp")
    assert set(files) == {C500, CANOM}
    for key, path in files.items():
        assert path.name.startswith("20261121T104205Z-"), path.name  # the first packet's second, UTC
        assert linktype_of(path) == 1
        ref = tcpdump_filtered(three, key, tmp_path / "ref.pcap")
        assert records_of(path) == records_of(ref)
        assert len(tcpdump_reads(path)) == 9  # handshake 3, request, response, ack, close 3
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert (stats["flow_pcap_files"], stats["flow_pcap_packets"], stats["flow_pcap_held_bytes"]) == (2, 18, 0)
    # The records say which connection each file is (the uid in its name).
    recs = [json.loads(line) for line in (tmp_path / "fp.jsonl").read_text().splitlines()]
    uids = {(r["client"]["ip"], r["client"]["port"], r["server"]["ip"], r["server"]["port"]): r["uid"] for r in recs}
    for key, path in files.items():
        assert NAME.fullmatch(path.name)[2] == uids[key]


def test_tshark_sees_one_tcp_stream_per_file(three: Path, tmp_path: Path):
    read_with(three, tmp_path / "fp", "--flow-pcap-when", "all")
    files = named(tmp_path / "fp")
    assert set(files) == {C500, CANOM, CCLEAN}
    for key, path in files.items():
        proc = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "tcp.stream", "-e", "ip.src",
                               "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport"],
                              capture_output=True, text=True, check=True)
        rows = {tuple(line.split("\t")) for line in proc.stdout.splitlines()}
        cip, cport, sip, sport = key
        assert rows == {("0", cip, str(cport), sip, str(sport)), ("0", sip, str(sport), cip, str(cport))}


@pytest.mark.parametrize(("when", "chosen"), [
    (["status>=500"], {C500}),
    (["status=200"], {CANOM, CCLEAN}),
    (["status<500", "method=POST"], {C500, CANOM, CCLEAN}),
    (["method=POST"], {C500}),
    (["method=GET"], {CANOM, CCLEAN}),
    (["host=www.example.test"], {CANOM, CCLEAN}),
    (["host=*.example.test & status>=500"], {C500}),
    (["host=WWW.Example.Test & anomaly"], {CANOM}),
    (["anomaly=message_incomplete"], {CANOM}),
    (["anomaly=tcp_gap"], set()),
    (["all"], {C500, CANOM, CCLEAN}),
])
def test_conditions_choose_the_connections_written_by_hand(three: Path, tmp_path: Path, when, chosen):
    args = [a for w in when for a in ("--flow-pcap-when", w)]
    read_with(three, tmp_path / "fp", *args)
    files = named(tmp_path / "fp")
    assert set(files) == chosen
    for key, path in files.items():
        assert records_of(path) == records_of(tcpdump_filtered(three, key, tmp_path / "ref.pcap"))


def test_condition_from_the_config_file(three: Path, tmp_path: Path):
    conf = tmp_path / "sniffd.toml"
    conf.write_text('[flow_pcaps]\nflow_pcap_when = ["method=POST"]\n')
    read_with(three, tmp_path / "fp", "-c", conf)
    assert set(named(tmp_path / "fp")) == {C500}


def test_workers_write_the_same_files(three: Path, tmp_path: Path):
    read_with(three, tmp_path / "one", "--flow-pcap-when", "all")
    read_with(three, tmp_path / "two", "--flow-pcap-when", "all", "-w", "2")
    one, two = named(tmp_path / "one"), named(tmp_path / "two")
    assert set(one) == set(two) == {C500, CANOM, CCLEAN}
    for key in one:
        assert one[key].read_bytes() == two[key].read_bytes()


# --- bounds ---------------------------------------------------------------------------


def test_file_cap_keeps_the_head_of_the_connection_and_counts_the_rest(tmp_path: Path):
    """flow_pcap_max_file_mb = 0.01 (10,485 bytes): a 500 with a 30,000-byte body in
    1,000-byte segments; the file is the first records of tcpdump's copy that fit."""
    conv = TcpConversation(C500[:2], C500[2:])
    body = b"x" * 30000
    pcap = tmp_path / "big.pcap"
    craft.capture(pcap, exchange(conv, 0, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
                                 b"HTTP/1.1 503 Busy\r\nContent-Length: 30000\r\n\r\n" + body, sizes=[1000] * 30))
    conf = tmp_path / "sniffd.toml"
    conf.write_text("[flow_pcaps]\nflow_pcap_max_file_mb = 0.01\n")
    stats = read_with(pcap, tmp_path / "fp", "-c", conf)
    (path,) = named(tmp_path / "fp").values()
    ref = records_of(tcpdump_filtered(pcap, C500, tmp_path / "ref.pcap"))
    mine = records_of(path)
    # Walk tcpdump's records: those that fit in 10,485 bytes with the header.
    kept, off, size = 0, 0, 24
    while off < len(ref):
        n = 16 + struct.unpack_from("<I", ref, off + 8)[0]
        if size + n > 10485:
            break
        size, off, kept = size + n, off + n, kept + 1
    assert mine == ref[:off]
    assert path.stat().st_size == size <= 10485
    total = len(tcpdump_reads(tmp_path / "ref.pcap"))
    assert total == 3 + 1 + 31 + 1 + 3  # handshake, request, 31 response segments, ack, close
    assert stats["flow_pcap_packets"] == kept
    assert stats["flow_pcap_packets_cut"] == total - kept


def test_total_cap_removes_the_oldest_files(tmp_path: Path):
    """Six 500s one after another, each file about 1.1 KB; flow_pcap_max_total_mb
    = 0.01 (10,485 bytes), flow_pcap_max_file_mb = 0.002 (2,097 bytes): the newest
    files that fit stay, the oldest are removed and counted."""
    packets = []
    keys = []
    for i in range(12):
        conv = TcpConversation(("10.0.0.1", 41000 + i), ("10.0.0.2", 80))
        keys.append(("10.0.0.1", 41000 + i, "10.0.0.2", 80))
        packets += exchange(conv, 100 * i, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
                            b"HTTP/1.1 500 Oops\r\nContent-Length: 400\r\n\r\n" + b"e" * 400)
    pcap = tmp_path / "many.pcap"
    craft.capture(pcap, packets)
    conf = tmp_path / "sniffd.toml"
    conf.write_text("[flow_pcaps]\nflow_pcap_max_file_mb = 0.002\nflow_pcap_max_total_mb = 0.01\n")
    stats = read_with(pcap, tmp_path / "fp", "-c", conf)
    files = named(tmp_path / "fp")
    # tcpdump's sizes of each connection's file (its header is 24 bytes too).
    sizes = [tcpdump_filtered(pcap, k, tmp_path / f"ref{i}.pcap").stat().st_size for i, k in enumerate(keys)]
    assert len(set(sizes)) == 1 and 1000 < sizes[0] < 2097
    keep = 10485 // sizes[0]  # the newest files that fit
    assert set(files) == set(keys[-keep:])
    assert sum(p.stat().st_size for p in files.values()) <= 10485
    assert stats["flow_pcap_files"] == 12
    assert stats["flow_pcap_files_removed"] == 12 - keep
    for key, path in files.items():
        assert records_of(path) == records_of(tcpdump_filtered(pcap, key, tmp_path / "ref.pcap"))


def test_total_cap_counts_files_of_an_earlier_run_and_leaves_other_files(tmp_path: Path, three: Path):
    """A 9,000-byte flow pcap of an earlier run (by its name) and a file of the
    operator's; the cap is 10,485 bytes and this run writes two files of
    about 1 KB: the earlier run's file goes (it is the oldest), the
    operator's stays."""
    fp = tmp_path / "fp"
    fp.mkdir()
    old = fp / "20200101T000000Z-C00000000000000000-10.9.9.9.1-10.9.9.8.80.pcap"
    old.write_bytes(b"\0" * 9000)
    os.utime(old, (1, 1))
    theirs = fp / "notes.txt"
    theirs.write_bytes(b"\0" * 9000)
    conf = tmp_path / "sniffd.toml"
    conf.write_text("[flow_pcaps]\nflow_pcap_max_file_mb = 0.002\nflow_pcap_max_total_mb = 0.01\n")
    stats = read_with(three, fp, "-c", conf)
    assert not old.exists()
    assert theirs.read_bytes() == b"\0" * 9000
    theirs.unlink()
    assert set(named(fp)) == {C500, CANOM}
    assert stats["flow_pcap_files_removed"] == 1


def test_buffer_cap_sheds_the_oldest_held_connections(tmp_path: Path):
    """flow_pcap_max_buffer_mb = 0.01 (10,485 bytes).  Three connections open
    at once; each gets 4,500 bytes of its 500 response before any response
    ends.  Two of those held together pass the cap: the second sheds the
    first's buffer, the third the second's.  Only the third is written,
    though all three are 500s; two buffers are counted shed."""
    convs = [TcpConversation(("10.0.0.1", 42000 + i), ("10.0.0.2", 80)) for i in range(3)]
    keys = [("10.0.0.1", 42000 + i, "10.0.0.2", 80) for i in range(3)]
    head = b"HTTP/1.1 500 Oops\r\nContent-Length: 5000\r\n\r\n"
    first = (head + b"p" * 5000)[:4500]
    rest = (head + b"p" * 5000)[4500:]
    packets = []
    t = 0
    for conv in convs:
        for seg in [*conv.handshake(), conv.client_data(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")[0]]:
            packets.append((ms(t), seg))
            t += 1
    for conv in convs:
        packets.append((ms(t), conv.server_data(first)[0]))
        t += 1
    for conv in convs:
        packets.append((ms(t), conv.server_data(rest)[0]))
        packets.append((ms(t + 1), conv.client_ack()))
        t += 2
    pcap = tmp_path / "held.pcap"
    craft.capture(pcap, packets)
    conf = tmp_path / "sniffd.toml"
    conf.write_text("[flow_pcaps]\nflow_pcap_max_buffer_mb = 0.01\n")
    stats = read_with(pcap, tmp_path / "fp", "-c", conf)
    files = named(tmp_path / "fp")
    assert set(files) == {keys[2]}
    assert records_of(files[keys[2]]) == records_of(tcpdump_filtered(pcap, keys[2], tmp_path / "ref.pcap"))
    assert stats["flow_pcap_buffers_shed"] == 2
    assert stats["flow_pcap_files"] == 1


# --- real captures -------------------------------------------------------------------


def tshark_streams(pcap: Path) -> dict[int, tuple[str, int, str, int]]:
    """tshark's TCP streams of ``pcap``: index -> (client ip, port, server ip, port), the
    client being the sender of the stream's first packet."""
    proc = subprocess.run(["tshark", "-r", str(pcap), "-Y", "tcp", "-T", "fields", "-e", "tcp.stream",
                           "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "ipv6.dst",
                           "-e", "tcp.dstport"], capture_output=True, text=True, check=True)
    streams: dict[int, tuple[str, int, str, int]] = {}
    for line in proc.stdout.splitlines():
        stream, s4, s6, sport, d4, d6, dport = line.split("\t")
        streams.setdefault(int(stream), (s4 or s6, int(sport), d4 or d6, int(dport)))
    return streams


@pytest.mark.parametrize("name", ["sample.pcap", "pipeline_head.pcap", "vlan_ipv6.pcap",
                                  "tls/loopback_handshakes.pcap", "h2c/loopback_h2c.pcap"])
def test_real_capture_all_gives_one_file_per_tshark_stream_identical_to_tsharks_copy(name: str, tmp_path: Path):
    pcap = CAPTURES / name
    if not pcap.exists():
        pytest.fail(f"{pcap} is missing")
    read_with(pcap, tmp_path / "fp", "--flow-pcap-when", "all")
    files = named(tmp_path / "fp")
    streams = tshark_streams(pcap)
    # The same connections (tshark's client is its first packet's sender, a SYN's).
    assert {frozenset([(k[0], k[1]), (k[2], k[3])]) for k in files} == \
        {frozenset([(s[0], s[1]), (s[2], s[3])]) for s in streams.values()}
    by_ends = {frozenset([(k[0], k[1]), (k[2], k[3])]): p for k, p in files.items()}
    for index, s in streams.items():
        ref = tmp_path / f"stream{index}.pcap"
        subprocess.run(["tshark", "-r", str(pcap), "-Y", f"tcp.stream == {index}", "-F", "pcap", "-w", str(ref)],
                       check=True, capture_output=True)
        path = by_ends[frozenset([(s[0], s[1]), (s[2], s[3])])]
        assert records_of(path) == records_of(ref), f"stream {index}: {path.name}"
        assert linktype_of(path) == linktype_of(ref)


# --- bad options: one line, exit 2, nothing written -----------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--flow-pcap-when", "status>>500"],
     "sniffd: error: --flow-pcap-when: bad condition 'status>>500': expected all, anomaly, anomaly=NAME, "
     "status<op>NNN (op one of = != < <= > >=), host=NAME or host=*.DOMAIN, method=TOKEN, or several joined by '&'"),
    (["--flow-pcap-when", "anomaly=no_such_thing"],
     "sniffd: error: --flow-pcap-when: bad condition 'anomaly=no_such_thing': no anomaly is named 'no_such_thing' "
     "(see README, Anomalies)"),
    (["--flow-pcap-when", "all & method=GET"],
     "sniffd: error: --flow-pcap-when: bad condition 'all & method=GET': 'all' cannot be combined with '&'"),
])
def test_bad_condition_is_one_line_and_exit_2(three: Path, tmp_path: Path, args, message):
    fp = tmp_path / "fp"
    fp.mkdir()
    out = tmp_path / "out.jsonl"
    proc = run_sniffd("read", three, "-o", out, "--flow-pcaps", fp, *args)
    assert (proc.returncode, proc.stderr) == (2, message + "\n")
    assert not out.exists()
    assert list(fp.iterdir()) == []


def test_missing_directory_is_one_line_and_exit_2(three: Path, tmp_path: Path):
    out = tmp_path / "out.jsonl"
    proc = run_sniffd("read", three, "-o", out, "--flow-pcaps", tmp_path / "nope")
    assert (proc.returncode, proc.stderr) == (2, f"sniffd: error: --flow-pcaps: directory {tmp_path / 'nope'} does not exist\n")
    assert not out.exists()


def test_when_without_a_directory_is_one_line_and_exit_2(three: Path, tmp_path: Path):
    proc = run_sniffd("read", three, "-o", tmp_path / "out.jsonl", "--flow-pcap-when", "all")
    assert (proc.returncode, proc.stderr) == (
        2, "sniffd: error: --flow-pcap-when: needs --flow-pcaps DIR (or flow_pcap_dir in the -c file)\n")


@pytest.mark.parametrize(("toml", "message"), [
    ('flow_pcap_when = ["sometimes"]',
     "[flow_pcaps] flow_pcap_when: bad condition 'sometimes': expected all, anomaly, anomaly=NAME, "
     "status<op>NNN (op one of = != < <= > >=), host=NAME or host=*.DOMAIN, method=TOKEN, or several joined by '&'"),
    ("flow_pcap_when = []", "[flow_pcaps] flow_pcap_when: no condition given: expected all, anomaly, anomaly=NAME, "
     "status<op>NNN (op one of = != < <= > >=), host=NAME or host=*.DOMAIN, method=TOKEN, or several joined by '&'"),
    ("flow_pcap_max_file_mb = 0", "[flow_pcaps] flow_pcap_max_file_mb: must be between 0.001 and 4096, got 0"),
    ("flow_pcap_max_file_mb = 8\nflow_pcap_max_total_mb = 4",
     "[flow_pcaps] flow_pcap_max_total_mb: must be at least flow_pcap_max_file_mb (8), got 4"),
    ("flow_pcap_dirr = 'x'", "[flow_pcaps] flow_pcap_dirr: unknown key (did you mean flow_pcap_dir?)"),
])
def test_bad_config_is_one_line_and_exit_2(three: Path, tmp_path: Path, toml: str, message: str):
    fp = tmp_path / "fp"
    fp.mkdir()
    conf = tmp_path / "sniffd.toml"
    conf.write_text(f"[flow_pcaps]\nflow_pcap_dir = '{fp}'\n{toml}\n")
    out = tmp_path / "out.jsonl"
    proc = run_sniffd("read", three, "-o", out, "-c", conf)
    assert (proc.returncode, proc.stderr) == (2, f"sniffd: error: {conf}: {message}\n")
    assert not out.exists()
    assert list(fp.iterdir()) == []


def test_check_refuses_a_bad_condition(tmp_path: Path):
    fp = tmp_path / "fp"
    fp.mkdir()
    conf = tmp_path / "sniffd.toml"
    conf.write_text(f'[capture]\ninterface = "lo"\n[output]\npath = "{tmp_path}/http.jsonl"\n[privileges]\nuser = ""\n'
                    f'[flow_pcaps]\nflow_pcap_dir = "{fp}"\nflow_pcap_when = ["status>=5000"]\n')
    proc = run_sniffd("check", "-c", conf)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"sniffd: error: {conf}: [flow_pcaps] flow_pcap_when: bad condition 'status>=5000'")


def test_check_refuses_a_missing_directory(tmp_path: Path):
    conf = tmp_path / "sniffd.toml"
    conf.write_text(f'[capture]\ninterface = "lo"\n[output]\npath = "{tmp_path}/http.jsonl"\n[privileges]\nuser = ""\n'
                    f'[flow_pcaps]\nflow_pcap_dir = "{tmp_path}/gone"\n')
    proc = run_sniffd("check", "-c", conf)
    assert (proc.returncode, proc.stderr) == (
        2, f"sniffd: error: {conf}: [flow_pcaps] flow_pcap_dir: directory {tmp_path}/gone does not exist\n")


def test_fragmented_datagrams_are_left_out_and_counted(tmp_path: Path):
    """A 500 whose request comes as two IPv4 fragments: its file is the
    connection's unfragmented frames (tcpdump's 5-tuple copy without
    fragments), and the one datagram is counted."""
    conv = TcpConversation(C500[:2], C500[2:])
    hs = conv.handshake()
    request = conv.client_data(b"GET /frag HTTP/1.1\r\nHost: a.test\r\n\r\n" + b"X-Pad: " + b"p" * 200 + b"\r\n\r\n")[0]
    pieces = craft.ipv4_fragments(craft.ip_packet(request, ip_id=77), 2)
    packets = [*zip([ms(0), ms(1), ms(2)], hs), (ms(3), pieces[0]), (ms(4), pieces[1]),
               (ms(10), conv.server_data(b"HTTP/1.1 500 No\r\nContent-Length: 0\r\n\r\n")[0]),
               (ms(11), conv.client_ack()), *zip([ms(20), ms(21), ms(22)], conv.close())]
    pcap = tmp_path / "frag.pcap"
    craft.capture(pcap, packets)
    stats = read_with(pcap, tmp_path / "fp")
    (path,) = named(tmp_path / "fp").values()
    ref = tmp_path / "ref.pcap"
    cip, cport, sip, sport = C500
    subprocess.run(["tcpdump", "-r", str(pcap), "-w", str(ref),
                    f"tcp and host {cip} and host {sip} and port {cport} and port {sport} and ip[6:2] & 0x3fff = 0"],
                   check=True, capture_output=True)
    assert records_of(path) == records_of(ref)
    assert len(tcpdump_reads(ref)) == 8
    assert stats["flow_pcap_fragments_skipped"] == 1
