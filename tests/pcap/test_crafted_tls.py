"""TLS connections through the real ``sniffd read``: recognised by the client's
ClientHello on any port, one record per connection (``kind: "tls"``), HTTP
records beside them unchanged.

The TLS bytes are written by hand (tests/tlscraft.py, which shares no code with
sniffd.tls); expected fingerprints are the hashes of hand-written JA3/JA4
strings, as in tests/unit/test_tls_session.py.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import craft
from craft import TcpConversation
from pcapcheck import T0, community_id, load_jsonl, read_records, run_sniffd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests import tlscraft as T  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TLS_CAPTURES = REPO / "captures" / "tls"

TLS_RECORD_KEYS = ["kind", "ts", "client", "server", "tls", "duration_ms", "community_id", "end_reason", "anomalies"]


def ms(n):
    return T0 + n / 1000


def ends(client, server):
    return {"client": {"ip": client[0], "port": client[1]}, "server": {"ip": server[0], "port": server[1]}}


# --- a TLS 1.3 handshake (RFC 8446 section 2), as in tests/unit/test_tls_session.py ----------

SID = bytes(range(32))
CH13 = T.client_hello(
    [0x1301, 0x1302, 0x1303],
    [T.ext_sni("tls13.test"), T.ext_supported_versions([0x0304, 0x0303]), T.ext_groups([0x001D]), T.ext_sigalgs([0x0804]),
     T.ext_alpn([b"h2", b"http/1.1"]), T.ext_key_share([(0x11EC, 1216), (0x001D, 32)]), (0x002D, b"\x01\x01")],
    session_id=SID,
)  # fmt: skip
SH13 = T.server_hello(0x1302, [(0x002B, b"\x03\x04"), (0x0033, b"\x00\x1d" + T.vec16(os.urandom(32)))], session_id=SID)
CLIENT_HELLO = T.record(22, CH13, version=0x0301)
SERVER_FLIGHT = T.record(22, SH13) + T.CCS + T.app_data(900) + T.app_data(60)
CLIENT_FINISH = T.CCS + T.app_data(60)
TLS13_BASE = {
    "starttls": None,  # the client's stream began with the hello
    "version": "TLSv1.3",
    "negotiated": True,
    "cipher": "TLS_AES_256_GCM_SHA384",
    "sni": "tls13.test",
    "alpn_offered": ["h2", "http/1.1"],
    "alpn": None,  # TLS 1.3 sends the server's choice encrypted
    "resumed": False,
    "established": True,
    "hello_retry": False,
    "alerts": [],
    "ja3": hashlib.md5(b"771,4865-4866-4867,0-43-10-13-16-51-45,29,").hexdigest(),
    "ja3s": hashlib.md5(b"771,4866,43-51").hexdigest(),
    "ja4": "t13d0307h2_" + hashlib.sha256(b"1301,1302,1303").hexdigest()[:12]
    + "_" + hashlib.sha256(b"000a,000d,002b,002d,0033_0804").hexdigest()[:12],
    "ja4s": "t130200_1302_" + hashlib.sha256(b"002b,0033").hexdigest()[:12],
    "server_cert": None,
}


def tls_exchange(c: TcpConversation, t: float, *, client_sizes=None, app: int = 200) -> list:
    """Handshake at t, ClientHello (cut into ``client_sizes``) at t+1, server flight at t+2,
    client finish at t+3, one application record each way at t+4/t+5, FINs at t+10/t+11 (ms)."""
    return [
        *zip([ms(t), ms(t + 0.5), ms(t + 0.7)], c.handshake()),
        *[(ms(t + 1), s) for s in c.client_data(CLIENT_HELLO, client_sizes)],
        (ms(t + 2), c.server_data(SERVER_FLIGHT)[0]),
        (ms(t + 3), c.client_data(CLIENT_FINISH)[0]),
        (ms(t + 4), c.client_data(T.record(23, bytes(app)))[0]),
        (ms(t + 5), c.server_data(T.record(23, bytes(app)))[0]),
        *zip([ms(t + 10), ms(t + 11), ms(t + 12)], c.close()),
    ]


CLIENT_BYTES = len(CLIENT_HELLO) + len(CLIENT_FINISH) + 205
SERVER_BYTES = len(SERVER_FLIGHT) + 205


def read_with_stats(pcap: Path) -> tuple[list[dict], dict]:
    out = pcap.with_name(pcap.name + ".out.jsonl")
    proc = run_sniffd("read", pcap, "-o", out, "--stats")
    assert proc.returncode == 0, proc.stderr
    return load_jsonl(out), json.loads(proc.stderr.strip().splitlines()[-1])["anomalies"]


# --- the real capture --------------------------------------------------------------------


def test_loopback_handshakes_give_one_tls_record_per_connection_equal_to_the_answer_key(tmp_path):
    """Real python ssl / openssl / curl handshakes (captures/tls): the answer key was written
    by the two ends and tshark when the capture was made."""
    key = json.loads((TLS_CAPTURES / "loopback_handshakes.json").read_text())
    pcap = tmp_path / "loopback_handshakes.pcap"
    pcap.write_bytes((TLS_CAPTURES / "loopback_handshakes.pcap").read_bytes())
    records = read_records(pcap)
    fields = ["version", "cipher", "alpn", "resumed", "sni", "server_cert", "ja3", "ja3s"]
    expected = {int(port): {"kind": "tls", "server_port_known": True, **{f: conn[f] for f in fields}}
                for port, conn in key["connections"].items()}
    got = {r["client"]["port"]: {"kind": r["kind"], "server_port_known": r["server"]["port"] in key["server_ports"],
                                 **{f: r["tls"][f] for f in fields}} for r in records}
    assert expected == got
    assert [TLS_RECORD_KEYS] * len(records) == [list(r) for r in records]
    # The python and openssl connections end with FINs; the server reset curl's after its FIN
    # (tcpdump shows the RST from port 39907).
    ends_by = {int(p): ("rst" if c["name"] == "curl" else "fin") for p, c in key["connections"].items()}
    assert {p: (True, [], e) for p, e in ends_by.items()} == {
        r["client"]["port"]: (r["tls"]["established"], r["anomalies"], r["end_reason"]) for r in records}


# --- crafted ------------------------------------------------------------------------------


def test_http_and_tls_connections_in_one_capture_each_get_their_own_record(tmp_path):
    http_c, http_s = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    tls_c, tls_s = ("10.0.0.1", 40001), ("10.0.0.3", 443)
    h = TcpConversation(http_c, http_s)
    t = TcpConversation(tls_c, tls_s, client_isn=5_000_000, server_isn=6_000_000)
    packets = [
        *zip([ms(0), ms(1), ms(2)], h.handshake()),
        (ms(3), h.client_data(b"GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n")[0]),
        (ms(10), h.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")[0]),
        (ms(11), h.client_ack()),
        *zip([ms(20), ms(21), ms(22)], h.close()),
        *tls_exchange(t, 30),
    ]
    pcap = tmp_path / "mixed.pcap"
    craft.capture(pcap, sorted(packets, key=lambda p: p[0]))
    records = read_records(pcap)
    assert [
        {
            "kind": "http",
            "ts": "2026-11-21T10:42:05.003000Z",
            **ends(http_c, http_s),
            "request": {"method": "GET", "uri": "/a", "version": "1.1", "host": "example.test",
                        "headers": {"host": "example.test"}, "body_len": 0, "missed_bytes": 0, "body_truncated": False},
            "response": {"status": 200, "reason": "OK", "version": "1.1", "headers": {"content-length": "2"},
                         "body_len": 2, "missed_bytes": 0, "body_truncated": False, "interim": []},
            "duration_ms": 7.0,
            "trans_depth": 1,
            "community_id": community_id(*http_c, *http_s),
            "end_reason": "complete",
            "anomalies": [],
        },
        {
            "kind": "tls",
            "ts": "2026-11-21T10:42:05.031000Z",  # the ClientHello's packet
            **ends(tls_c, tls_s),
            "tls": {**TLS13_BASE, "client_bytes": CLIENT_BYTES, "server_bytes": SERVER_BYTES},
            "duration_ms": 10.0,  # ClientHello to the FIN that closed the connection (the server's)
            "community_id": community_id(*tls_c, *tls_s),
            "end_reason": "fin",
            "anomalies": [],
        },
    ] == records
    assert TLS_RECORD_KEYS == list(records[1])


def test_client_hello_split_over_segments_and_out_of_order_on_a_nonstandard_port(tmp_path):
    """Port 50443 is no HTTP or TLS port: the hello decides.  Its 3 segments arrive
    2nd, 3rd, then 1st (the first is 20 bytes: enough to tell a hello)."""
    c, s = ("10.0.0.1", 40002), ("10.0.0.4", 50443)
    t = TcpConversation(c, s)
    packets = tls_exchange(t, 0, client_sizes=[20, 700])
    hello = packets[3:6]
    assert [20, 700, len(CLIENT_HELLO) - 720] == [len(p[1].payload) for p in hello]
    packets[3:6] = [hello[1], hello[2], hello[0]]
    pcap = tmp_path / "split.pcap"
    craft.capture(pcap, packets)
    assert [
        {
            "kind": "tls",
            "ts": "2026-11-21T10:42:05.001000Z",
            **ends(c, s),
            "tls": {**TLS13_BASE, "client_bytes": CLIENT_BYTES, "server_bytes": SERVER_BYTES},
            "duration_ms": 10.0,
            "community_id": community_id(*c, *s),
            "end_reason": "fin",
            "anomalies": [],
        }
    ] == read_records(pcap)


def test_garbage_on_443_is_no_tls_and_gets_no_record(tmp_path):
    """Bytes that open like a TLS record but hold no ClientHello (msg_type 'h'): counted
    non_http, as before, and no TLS record."""
    c, s = ("10.0.0.1", 40003), ("10.0.0.3", 443)
    g = TcpConversation(c, s)
    packets = [
        *zip([ms(0), ms(1), ms(2)], g.handshake()),
        (ms(3), g.client_data(b"\x16\x03\x01\x00\x30" + b"hello, this is not a client hello at all..." + bytes(5))[0]),
        (ms(4), g.server_data(b"\x00\x01garbage back")[0]),
        *zip([ms(5), ms(6), ms(7)], g.close()),
    ]
    pcap = tmp_path / "garbage.pcap"
    craft.capture(pcap, packets)
    records, stats = read_with_stats(pcap)
    assert ([], 1) == (records, stats.get("non_http"))


def test_long_lived_tls_connection_is_written_early_then_never_again(tmp_path):
    """Handshake over at +3 ms; a packet at +14 s runs housekeeping more than 10 s after it
    (sniffd.tls.flow.EARLY_RECORD_S): the record is written then, with the bytes so far and
    end_reason "open"; the bytes and the close that follow write nothing more."""
    c, s = ("10.0.0.1", 40004), ("10.0.0.3", 443)
    t = TcpConversation(c, s)
    packets = [
        *zip([ms(0), ms(0.5), ms(0.7)], t.handshake()),
        (ms(1), t.client_data(CLIENT_HELLO)[0]),
        (ms(2), t.server_data(SERVER_FLIGHT)[0]),
        (ms(3), t.client_data(CLIENT_FINISH)[0]),
        (ms(5000), t.client_data(T.record(23, bytes(100)))[0]),
        (ms(14001), t.server_ack()),
        (ms(20000), t.server_data(T.record(23, bytes(100)))[0]),
        *zip([ms(30000), ms(30001), ms(30002)], t.close()),
    ]
    pcap = tmp_path / "long.pcap"
    craft.capture(pcap, packets)
    records = read_records(pcap)
    assert [
        {
            "kind": "tls",
            "ts": "2026-11-21T10:42:05.001000Z",
            **ends(c, s),
            "tls": {**TLS13_BASE, "client_bytes": len(CLIENT_HELLO) + len(CLIENT_FINISH) + 105,
                    "server_bytes": len(SERVER_FLIGHT)},
            "community_id": community_id(*c, *s),
            "end_reason": "open",
            "anomalies": [],
        }
    ] == [{k: v for k, v in r.items() if k != "duration_ms"} for r in records]
    # Written at the housekeeping pass that the +14.001 s packet brought: between 13 and 14 s.
    assert 13000.0 <= records[0]["duration_ms"] <= 14000.0
