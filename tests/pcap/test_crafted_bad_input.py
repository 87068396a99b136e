"""What comes in may be broken: truncated or foreign files, missing files, bad BPF,
snaplen-cut frames, IP headers that lie.  Bad input from the command line is exit
status 2 with one line on stderr naming the problem; bad traffic is never a crash."""

import craft
from craft import TcpConversation
from pcapcheck import T0, community_id, load_jsonl, read_records, run_sniffd, stderr_lines, without_run_fields

SERVER = ("10.0.0.2", 80)


def ms(n):
    return T0 + n / 1000


def get(conv, uri, start_ms):
    """Handshake at start_ms, GET ``uri`` at +3 ms answered at +10 ms, close at +20 ms."""
    t = start_ms
    return [
        *zip([ms(t), ms(t + 1), ms(t + 2)], conv.handshake()),
        (ms(t + 3), conv.client_data(f"GET {uri} HTTP/1.1\r\nHost: example.test\r\n\r\n".encode())[0]),
        (ms(t + 10), conv.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")[0]),
        (ms(t + 11), conv.client_ack()),
        *zip([ms(t + 20), ms(t + 21), ms(t + 22)], conv.close()),
    ]


def record(ts, uri, client, server=SERVER, trans_depth=1):
    """The record of one ``get()`` exchange, by hand."""
    return {
        "kind": "http",
        "ts": ts,
        "client": {"ip": client[0], "port": client[1]},
        "server": {"ip": server[0], "port": server[1]},
        "request": {
            "method": "GET",
            "uri": uri,
            "version": "1.1",
            "host": "example.test",
            "headers": {"host": "example.test"},
            "body_len": 0,
            "missed_bytes": 0,
            "body_truncated": False,
        },
        "response": {
            "status": 200,
            "reason": "OK",
            "version": "1.1",
            "headers": {"content-length": "2"},
            "body_len": 2,
            "missed_bytes": 0,
            "body_truncated": False,
            "interim": [],
        },
        "duration_ms": 7.0,
        "trans_depth": trans_depth,
        "community_id": community_id(client[0], client[1], server[0], server[1]),
        "end_reason": "complete",
        "anomalies": [],
    }


def test_truncated_pcap_keeps_records_before_the_cut_and_warns(tmp_path):
    """The file ends 20 bytes into the data of its last record (the final ACK)."""
    pcap = tmp_path / "cut.pcap"
    a = TcpConversation(("10.0.0.1", 40000), SERVER)
    b = TcpConversation(("10.0.0.1", 40001), SERVER, client_isn=5_000_000)
    offsets = craft.capture(pcap, get(a, "/first", 0) + get(b, "/second", 100))
    craft.truncate(pcap, offsets[-1] + 16 + 20)
    out = tmp_path / "out.jsonl"
    proc = run_sniffd("read", pcap, "-o", out)
    assert (0, True) == (proc.returncode, out.exists()), proc.stderr
    assert [
        record("2026-11-21T10:42:05.003000Z", "/first", ("10.0.0.1", 40000)),
        record("2026-11-21T10:42:05.103000Z", "/second", ("10.0.0.1", 40001)),
    ] == without_run_fields(load_jsonl(out))
    warnings = stderr_lines(proc)
    assert warnings, "no warning on stderr for a truncated file"
    assert any(pcap.name in line for line in warnings), f"no stderr line names the file: {warnings}"


def test_non_pcap_file_exits_2_with_one_line_and_no_output(tmp_path):
    notes = tmp_path / "notes.pcap"
    notes.write_text("this is not a capture file\n" * 20)
    out = tmp_path / "out.jsonl"
    proc = run_sniffd("read", notes, "-o", out)
    lines = stderr_lines(proc)
    assert (2, 1, False) == (proc.returncode, len(lines), out.exists()), proc.stderr
    assert notes.name in lines[0]


def test_missing_file_exits_2_with_one_line_and_no_output(tmp_path):
    missing = tmp_path / "nowhere.pcap"
    out = tmp_path / "out.jsonl"
    proc = run_sniffd("read", missing, "-o", out)
    lines = stderr_lines(proc)
    assert (2, 1, False) == (proc.returncode, len(lines), out.exists()), proc.stderr
    assert missing.name in lines[0]


def test_invalid_bpf_filter_exits_2_with_one_line_and_no_output(tmp_path):
    pcap = tmp_path / "ok.pcap"
    craft.capture(pcap, get(TcpConversation(("10.0.0.1", 40000), SERVER), "/", 0))
    out = tmp_path / "out.jsonl"
    proc = run_sniffd("read", pcap, "-o", out, "-f", "tcp port")
    assert (2, 1, False) == (proc.returncode, len(stderr_lines(proc)), out.exists()), proc.stderr


def test_bpf_filter_keeps_only_the_matching_connection(tmp_path):
    pcap = tmp_path / "two_ports.pcap"
    on_80 = TcpConversation(("10.0.0.1", 40000), ("10.0.0.2", 80))
    on_8080 = TcpConversation(("10.0.0.1", 40001), ("10.0.0.2", 8080), client_isn=5_000_000)
    craft.capture(pcap, get(on_80, "/eighty", 0) + get(on_8080, "/eighty-eighty", 100))
    assert [
        record("2026-11-21T10:42:05.103000Z", "/eighty-eighty", ("10.0.0.1", 40001), server=("10.0.0.2", 8080)),
    ] == read_records(pcap, "-f", "tcp port 8080")


def test_frame_cut_by_snaplen_marks_the_record_and_counts_lost_body(tmp_path):
    """Snaplen 96 keeps 42 of a 100-byte body segment (54 bytes of Ethernet/IPv4/TCP
    headers); every other frame fits.  The 58 bytes cut are lost body bytes."""
    c = TcpConversation(("10.0.0.1", 40000), SERVER)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    body = b"0123456789" * 10
    packets = [
        *zip([ms(0), ms(1), ms(2)], c.handshake()),
        (ms(3), c.client_data(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")[0]),
        (ms(9), c.server_data(head)[0]),
        (ms(10), c.server_data(body)[0]),
        (ms(11), c.client_ack()),
        *zip([ms(20), ms(21), ms(22)], c.close()),
    ]
    pcap = tmp_path / "snaplen.pcap"
    fr = craft.frames(packets)
    assert [len(f.data) for f in fr if len(f.data) > 96] == [154]
    craft.write_pcap(pcap, fr, snaplen=96)
    (got,) = read_records(pcap)
    got_anomalies = set(got.pop("anomalies"))
    assert {
        "kind": "http",
        "ts": "2026-11-21T10:42:05.003000Z",
        "client": {"ip": "10.0.0.1", "port": 40000},
        "server": {"ip": "10.0.0.2", "port": 80},
        "request": {
            "method": "GET",
            "uri": "/",
            "version": "1.1",
            "host": "example.test",
            "headers": {"host": "example.test"},
            "body_len": 0,
            "missed_bytes": 0,
            "body_truncated": False,
        },
        "response": {
            "status": 200,
            "reason": "OK",
            "version": "1.1",
            "headers": {"content-length": "100"},
            "body_len": 42,
            "missed_bytes": 58,
            "body_truncated": False,
            "interim": [],
        },
        "duration_ms": 7.0,
        "trans_depth": 1,
        "community_id": community_id("10.0.0.1", 40000, "10.0.0.2", 80),
        "end_reason": "complete",
    } == got
    # Whether the cut also counts as a TCP gap is left open; these two are required.
    assert {"snaplen_truncated", "body_gap"} <= got_anomalies <= {"snaplen_truncated", "body_gap", "tcp_gap"}


def test_ip_total_length_larger_than_frame_is_dropped_without_crash(tmp_path):
    """Two lying packets on flows of their own (IPv4 total length 1500, IPv6 payload
    length 1400, both with ~60 bytes present); the honest connection is still logged."""
    honest = TcpConversation(("10.0.0.1", 40000), SERVER)
    packets = get(honest, "/honest", 0)
    liar4 = TcpConversation(("10.0.0.3", 40002), SERVER).client_data(b"GET /bogus HTTP/1.1\r\nHost: x\r\n\r\n")[0]
    liar6 = TcpConversation(("2001:db8::3", 40003), ("2001:db8::2", 80)).client_data(b"GET /bogus6 HTTP/1.1\r\n\r\n")[0]
    l4 = craft.ipv4(liar4.src, liar4.dst, liar4.tcp_bytes(), ip_id=77, total_length=1500)
    l6 = bytearray(craft.ip_packet(liar6))
    l6[4:6] = (1400).to_bytes(2, "big")
    packets[4:4] = [(ms(5), l4), (ms(6), bytes(l6))]
    pcap = tmp_path / "ip_length_lies.pcap"
    craft.capture(pcap, packets)
    assert [record("2026-11-21T10:42:05.003000Z", "/honest", ("10.0.0.1", 40000))] == read_records(pcap)
