"""Link types and capture formats: the same HTTP exchange, framed every way sniffd reads.

Each test writes one capture and expects the one record written out by hand below.
"""

import shutil
import subprocess
from decimal import Decimal

import craft
import pytest
from craft import TcpConversation
from pcapcheck import T0, community_id, read_records, run_sniffd, stderr_lines

REQUEST = b"GET /index.html HTTP/1.1\r\nHost: example.test\r\nUser-Agent: craft/1.0\r\nAccept: */*\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n"


def exchange(client=("10.0.0.1", 40000), server=("10.0.0.2", 80)):
    """Handshake, one GET at T0+3ms answered at T0+10ms, close at T0+20ms."""
    c = TcpConversation(client, server)
    syn, syn_ack, ack = c.handshake()
    (req,) = c.client_data(REQUEST)
    (resp,) = c.server_data(RESPONSE)
    ack2 = c.client_ack()
    fin1, fin2, ack3 = c.close()
    return [
        (T0 + 0.000, syn),
        (T0 + 0.001, syn_ack),
        (T0 + 0.002, ack),
        (T0 + 0.003, req),
        (T0 + 0.010, resp),
        (T0 + 0.011, ack2),
        (T0 + 0.020, fin1),
        (T0 + 0.021, fin2),
        (T0 + 0.022, ack3),
    ]


EXPECTED_V4 = {
    "kind": "http",
    "ts": "2026-11-21T10:42:05.003000Z",
    "client": {"ip": "10.0.0.1", "port": 40000},
    "server": {"ip": "10.0.0.2", "port": 80},
    "request": {
        "method": "GET",
        "uri": "/index.html",
        "version": "1.1",
        "host": "example.test",
        "headers": {"host": "example.test", "user-agent": "craft/1.0", "accept": "*/*"},
        "body_len": 0,
        "missed_bytes": 0,
        "body_truncated": False,
    },
    "response": {
        "status": 200,
        "reason": "OK",
        "version": "1.1",
        "headers": {"content-type": "text/plain", "content-length": "12"},
        "body_len": 12,
        "missed_bytes": 0,
        "body_truncated": False,
        "interim": [],
    },
    "duration_ms": 7.0,
    "trans_depth": 1,
    "community_id": community_id("10.0.0.1", 40000, "10.0.0.2", 80),
    "end_reason": "complete",
    "anomalies": [],
}

EXPECTED_V6 = {
    **EXPECTED_V4,
    "client": {"ip": "2001:db8::10", "port": 40000},
    "server": {"ip": "2001:db8::80", "port": 80},
    "community_id": community_id("2001:db8::10", 40000, "2001:db8::80", 80),
    "end_reason": "complete",
}


def test_ethernet_ipv4_exchange_gives_one_record(tmp_path):
    pcap = tmp_path / "eth.pcap"
    craft.capture(pcap, exchange(), linktype=craft.LINKTYPE_ETHERNET)
    assert [EXPECTED_V4] == read_records(pcap)


def encapsulated(record: dict, **fields) -> dict:
    """``record`` with ``vlan`` / ``tunnel`` where the record puts them: right after ``server``."""
    out = {}
    for key, value in record.items():
        out[key] = value
        if key == "server":
            out.update(fields)
    return out


def test_vlan_8021q_tagged_frames_are_decoded(tmp_path):
    pcap = tmp_path / "dot1q.pcap"
    craft.capture(pcap, exchange(), tags=craft.dot1q(100))
    records = read_records(pcap)
    assert [encapsulated(EXPECTED_V4, vlan=[100])] == records
    assert list(encapsulated(EXPECTED_V4, vlan=[100])) == list(records[0])


def test_qinq_double_tagged_frames_are_decoded(tmp_path):
    """802.1ad (0x88a8) outer tag around an 802.1Q (0x8100) inner tag."""
    pcap = tmp_path / "qinq.pcap"
    craft.capture(pcap, exchange(), tags=craft.qinq(300, 100))
    assert [encapsulated(EXPECTED_V4, vlan=[300, 100])] == read_records(pcap)


def test_priority_tagged_frames_vlan_0_have_no_vlan(tmp_path):
    """An 802.1Q tag with VLAN id 0 only carries a priority (IEEE 802.1Q)."""
    pcap = tmp_path / "prio.pcap"
    craft.capture(pcap, exchange(), tags=craft.dot1q(0))
    assert [EXPECTED_V4] == read_records(pcap)


def test_linux_cooked_v1_sll_is_decoded(tmp_path):
    pcap = tmp_path / "sll.pcap"
    craft.capture(pcap, exchange(), linktype=craft.LINKTYPE_LINUX_SLL)
    assert [EXPECTED_V4] == read_records(pcap)


def test_linux_cooked_v2_sll2_is_decoded(tmp_path):
    pcap = tmp_path / "sll2.pcap"
    craft.capture(pcap, exchange(), linktype=craft.LINKTYPE_LINUX_SLL2)
    assert [EXPECTED_V4] == read_records(pcap)


def test_raw_ip_linktype_101_is_decoded(tmp_path):
    """LINKTYPE_RAW is 101 in the file; libpcap hands it to sniffd as DLT_RAW (12 on Linux)."""
    pcap = tmp_path / "raw.pcap"
    craft.capture(pcap, exchange(), linktype=craft.LINKTYPE_RAW)
    assert [EXPECTED_V4] == read_records(pcap)


def test_bsd_null_loopback_is_decoded(tmp_path):
    pcap = tmp_path / "null.pcap"
    craft.capture(pcap, exchange(), linktype=craft.LINKTYPE_NULL)
    assert [EXPECTED_V4] == read_records(pcap)


def test_ipv6_with_hop_by_hop_extension_header_is_decoded(tmp_path):
    """Every packet carries a Hop-by-Hop Options header between IPv6 and TCP."""
    pcap = tmp_path / "ipv6_hbh.pcap"
    packets = exchange(client=("2001:db8::10", 40000), server=("2001:db8::80", 80))
    craft.capture(pcap, packets, ext_headers=[craft.hop_by_hop_options()])
    assert [EXPECTED_V6] == read_records(pcap)


def test_ipv6_with_destination_options_on_bsd_null_is_decoded(tmp_path):
    """Destination Options header; NULL link with the BSD AF_INET6 value (24)."""
    pcap = tmp_path / "ipv6_dst_null.pcap"
    packets = exchange(client=("2001:db8::10", 40000), server=("2001:db8::80", 80))
    craft.capture(pcap, packets, linktype=craft.LINKTYPE_NULL, ext_headers=[craft.destination_options()])
    assert [EXPECTED_V6] == read_records(pcap)


def test_pcapng_input_gives_the_same_record(tmp_path):
    pcap = tmp_path / "exchange.pcapng"
    craft.capture(pcap, exchange(), fmt="pcapng")
    assert [EXPECTED_V4] == read_records(pcap)


def test_nanosecond_pcap_timestamps_are_read_as_nanoseconds(tmp_path):
    """A fraction of 3,000,000 ns must read as 3 ms, not 3 s.

    Packets other than the request and the response get 123 ns more, so sub-microsecond
    digits are present in the file without touching ts or duration_ms.
    """
    pcap = tmp_path / "nano.pcap"
    packets = [
        (Decimal(T0) + Decimal(f"{ts - T0:.6f}") + (0 if n in (3, 4) else Decimal("0.000000123")), item)
        for n, (ts, item) in enumerate(exchange())
    ]
    craft.capture(pcap, packets, nano=True)
    assert [EXPECTED_V4] == read_records(pcap)


# --- link types read since issue 10 (tshark finds the same request: see test_tshark_*)

NEW_LINKTYPES = {
    # link type: the fields its framing adds to the record
    craft.LINKTYPE_PPP: {},
    craft.LINKTYPE_PPP_HDLC: {},
    craft.LINKTYPE_C_HDLC: {},
    craft.LINKTYPE_PPP_WITH_DIR: {},
    craft.LINKTYPE_C_HDLC_WITH_DIR: {},
    craft.LINKTYPE_NFLOG: {},
    # craft.link_frame's PPPoE session 0x1234 and MPLS label 16
    craft.LINKTYPE_PPP_ETHER: {"tunnel": [{"type": "pppoe", "src": None, "dst": None, "session": 0x1234}]},
    craft.LINKTYPE_MPLS: {"tunnel": [{"type": "mpls", "src": None, "dst": None, "labels": [16]}]},
}


@pytest.mark.parametrize("linktype", sorted(NEW_LINKTYPES))
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_ppp_cisco_hdlc_pppoe_mpls_and_nflog_link_types_are_decoded(tmp_path, linktype, v6):
    pcap = tmp_path / f"link{linktype}.pcap"
    ends = (("2001:db8::10", 40000), ("2001:db8::80", 80)) if v6 else (("10.0.0.1", 40000), ("10.0.0.2", 80))
    craft.capture(pcap, exchange(*ends), linktype=linktype)
    assert [encapsulated(EXPECTED_V6 if v6 else EXPECTED_V4, **NEW_LINKTYPES[linktype])] == read_records(pcap)


# tshark (4.0) refuses pcap files of Cisco HDLC with direction (205) and MPLS (219).
TSHARK_LINKTYPES = sorted(set(NEW_LINKTYPES) - {craft.LINKTYPE_C_HDLC_WITH_DIR, craft.LINKTYPE_MPLS})


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("linktype", TSHARK_LINKTYPES)
def test_tshark_finds_the_same_request_in_each_new_link_type(tmp_path, linktype):
    pcap = tmp_path / f"link{linktype}.pcap"
    craft.capture(pcap, exchange(), linktype=linktype)
    tshark = subprocess.run(["tshark", "-r", str(pcap), "-Y", "http.request", "-T", "fields", "-e", "http.request.uri"],
                            capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert (["/index.html"], ["/index.html"]) == ([r["request"]["uri"] for r in read_records(pcap)], tshark)


def test_unsupported_link_type_is_one_clear_line_and_exit_status_2(tmp_path):
    pcap = tmp_path / "lt147.pcap"
    craft.write_pcap(pcap, [craft.Frame(T0, b"abc")], linktype=147)  # LINKTYPE_USER0
    out = tmp_path / "out.jsonl"
    proc = run_sniffd("read", pcap, "-o", out)
    lines = stderr_lines(proc)
    assert (2, 1, False) == (proc.returncode, len(lines), out.exists())
    assert lines[0].startswith(f"sniffd: error: {pcap}: unsupported link type 147; sniffd reads BSD loopback (NULL) (0), "
                               "Ethernet (1), PPP (9), raw IP (12, 14, 101), ")
    assert lines[0].endswith("Linux NFLOG (239), Linux cooked capture v2 (276)")
