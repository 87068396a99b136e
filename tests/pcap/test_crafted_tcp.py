"""TCP reassembly seen through the records: order, duplicates, overlaps, wraparound,
mid-stream pickup and connection boundaries (SYN reuse, RST).

Times are chosen so that the packet carrying the first request byte is also the one
that lets it be delivered (likewise for the last response byte): ts and duration_ms
are then the same whichever of the two a reader takes.
"""

import craft
from craft import TcpConversation
from pcapcheck import T0, anomalies, community_id, read_records

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 80)

REQUEST = b"GET /reassembly HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\nabcdefghijklmnopqrstuvwxyz"


def record(ts, duration_ms, *, uri="/reassembly", trans_depth=1, anomaly_names=(), client=CLIENT, response=True,
           end_reason="complete"):
    """The record for REQUEST (with ``uri``) answered by RESPONSE, fields given by hand."""
    return {
        "kind": "http",
        "ts": ts,
        "client": {"ip": client[0], "port": client[1]},
        "server": {"ip": "10.0.0.2", "port": 80},
        "request": {
            "method": "GET",
            "uri": uri,
            "version": "1.1",
            "host": "example.test",
            "headers": {"host": "example.test", "accept": "*/*"},
            "body_len": 0,
            "missed_bytes": 0,
            "body_truncated": False,
        },
        "response": {
            "status": 200,
            "reason": "OK",
            "version": "1.1",
            "headers": {"content-length": "26"},
            "body_len": 26,
            "missed_bytes": 0,
            "body_truncated": False,
            "interim": [],
        }
        if response
        else None,
        "duration_ms": duration_ms,
        "trans_depth": trans_depth,
        "community_id": community_id(client[0], client[1], "10.0.0.2", 80),
        "end_reason": end_reason,
        "anomalies": anomalies(*anomaly_names),
    }


def ms(n):
    return T0 + n / 1000


def test_reassembly_out_of_order_segments_give_one_transaction(tmp_path):
    c = TcpConversation(CLIENT, SERVER)
    syn, syn_ack, ack = c.handshake()
    r0, r1, r2 = c.client_data(REQUEST, [20, 20])
    s0, s1, s2 = c.server_data(RESPONSE, [20, 20])
    packets = [
        (ms(0), syn), (ms(1), syn_ack), (ms(2), ack),
        (ms(3), r2), (ms(4), r0), (ms(5), r1),
        (ms(10), s1), (ms(11), s0), (ms(12), s2),
        (ms(13), c.client_ack()),
        *zip([ms(20), ms(21), ms(22)], c.close()),
    ]  # fmt: skip
    pcap = tmp_path / "reorder.pcap"
    craft.capture(pcap, packets)
    assert [record("2026-11-21T10:42:05.004000Z", 8.0)] == read_records(pcap)


def test_reassembly_exact_duplicate_segments_are_ignored(tmp_path):
    c = TcpConversation(CLIENT, SERVER)
    syn, syn_ack, ack = c.handshake()
    r0, r1 = c.client_data(REQUEST, [30])
    (s0,) = c.server_data(RESPONSE)
    packets = [
        (ms(0), syn), (ms(0.5), syn), (ms(1), syn_ack), (ms(2), ack),
        (ms(3), r0), (ms(4), r0), (ms(5), r1), (ms(6), r1),
        (ms(10), s0), (ms(11), s0),
        (ms(13), c.client_ack()),
        *zip([ms(20), ms(21), ms(22)], c.close()),
    ]  # fmt: skip
    pcap = tmp_path / "duplicates.pcap"
    craft.capture(pcap, packets)
    assert [record("2026-11-21T10:42:05.003000Z", 7.0)] == read_records(pcap)


def test_reassembly_partial_retransmission_with_same_bytes_is_ignored(tmp_path):
    c = TcpConversation(CLIENT, SERVER)
    syn, syn_ack, ack = c.handshake()
    (req,) = c.client_data(REQUEST)
    (resp,) = c.server_data(RESPONSE)
    packets = [
        (ms(0), syn), (ms(1), syn_ack), (ms(2), ack),
        (ms(3), req.sub(0, 30)), (ms(4), req.sub(20, 50)), (ms(5), req.sub(10)),
        (ms(10), resp.sub(0, 40)), (ms(11), resp),  # all again, plus the last 25 bytes
        (ms(13), c.client_ack()),
        *zip([ms(20), ms(21), ms(22)], c.close()),
    ]  # fmt: skip
    pcap = tmp_path / "overlap_same.pcap"
    craft.capture(pcap, packets)
    assert [record("2026-11-21T10:42:05.003000Z", 8.0)] == read_records(pcap)


def test_reassembly_overlap_with_conflicting_bytes_keeps_first_copy(tmp_path):
    """Both copies of bytes 5..21 are buffered (byte 0 not yet seen) when they disagree."""
    request = b"GET /first HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n"
    c = TcpConversation(CLIENT, SERVER)
    syn, syn_ack, ack = c.handshake()
    r0, r1, r2 = c.client_data(request, [5, 16])
    assert (r0.payload, r1.payload) == (b"GET /", b"first HTTP/1.1\r\n")
    (s0,) = c.server_data(RESPONSE)
    packets = [
        (ms(0), syn), (ms(1), syn_ack), (ms(2), ack),
        (ms(3), r1), (ms(4), r1.with_payload(b"evil! HTTP/1.1\r\n")), (ms(5), r0), (ms(6), r2),
        (ms(10), s0),
        (ms(13), c.client_ack()),
        *zip([ms(20), ms(21), ms(22)], c.close()),
    ]  # fmt: skip
    pcap = tmp_path / "overlap_conflict.pcap"
    craft.capture(pcap, packets)
    expected = record("2026-11-21T10:42:05.005000Z", 5.0, uri="/first", anomaly_names=["tcp_overlap_conflict"])
    assert [expected] == read_records(pcap)


def test_reassembly_follows_sequence_numbers_across_the_2_32_wrap(tmp_path):
    """Both ISNs sit just below 2**32; a segment straddles the wrap in each direction,
    and the request's segment past the wrap arrives before the one across it."""
    c = TcpConversation(CLIENT, SERVER, client_isn=2**32 - 10, server_isn=2**32 - 30)
    syn, syn_ack, ack = c.handshake()
    r0, r1, r2 = c.client_data(REQUEST, [5, 20])
    s0, s1, s2 = c.server_data(RESPONSE, [25, 10])
    assert r1.seq == 2**32 - 4 and r2.seq == 16  # r1 crosses the wrap
    assert s1.seq == 2**32 - 4 and s2.seq == 6  # so does s1
    packets = [
        (ms(0), syn), (ms(1), syn_ack), (ms(2), ack),
        (ms(3), r0), (ms(4), r2), (ms(5), r1),
        (ms(10), s0), (ms(11), s1), (ms(12), s2),
        (ms(13), c.client_ack()),
        *zip([ms(20), ms(21), ms(22)], c.close()),
    ]  # fmt: skip
    pcap = tmp_path / "wrap.pcap"
    craft.capture(pcap, packets)
    assert [record("2026-11-21T10:42:05.003000Z", 9.0)] == read_records(pcap)


def test_midstream_pickup_without_handshake_still_gives_records(tmp_path):
    """Capture starts after the handshake: the first packet is the request."""
    c = TcpConversation(CLIENT, SERVER)
    (req,) = c.client_data(REQUEST)
    (resp,) = c.server_data(RESPONSE)
    packets = [
        (ms(3), req),
        (ms(10), resp),
        (ms(13), c.client_ack()),
        *zip([ms(20), ms(21), ms(22)], c.close()),
    ]
    pcap = tmp_path / "midstream.pcap"
    craft.capture(pcap, packets)
    expected = record("2026-11-21T10:42:05.003000Z", 7.0, anomaly_names=["midstream_pickup"])
    assert [expected] == read_records(pcap)


def test_new_syn_on_closed_four_tuple_starts_new_connection(tmp_path):
    """Same 4-tuple reused one second after a clean close: trans_depth restarts at 1."""
    first = TcpConversation(CLIENT, SERVER, client_isn=1_000_000, server_isn=2_000_000)
    again = TcpConversation(CLIENT, SERVER, client_isn=7_000_000, server_isn=9_000_000)
    packets = [
        *zip([ms(0), ms(1), ms(2)], first.handshake()),
        (ms(3), first.client_data(REQUEST.replace(b"/reassembly", b"/one"))[0]),
        (ms(10), first.server_data(RESPONSE)[0]),
        (ms(11), first.client_ack()),
        (ms(20), first.client_data(REQUEST.replace(b"/reassembly", b"/two"))[0]),
        (ms(30), first.server_data(RESPONSE)[0]),
        (ms(31), first.client_ack()),
        *zip([ms(40), ms(41), ms(42)], first.close()),
        *zip([ms(1000), ms(1001), ms(1002)], again.handshake()),
        (ms(1003), again.client_data(REQUEST.replace(b"/reassembly", b"/again"))[0]),
        (ms(1010), again.server_data(RESPONSE)[0]),
        (ms(1011), again.client_ack()),
        *zip([ms(1020), ms(1021), ms(1022)], again.close()),
    ]
    pcap = tmp_path / "syn_reuse.pcap"
    craft.capture(pcap, packets)
    assert [
        record("2026-11-21T10:42:05.003000Z", 7.0, uri="/one", trans_depth=1),
        record("2026-11-21T10:42:05.020000Z", 10.0, uri="/two", trans_depth=2),
        record("2026-11-21T10:42:06.003000Z", 7.0, uri="/again", trans_depth=1),
    ] == read_records(pcap)


def test_rst_ends_the_connection_and_writes_its_open_transaction(tmp_path):
    """The server resets instead of answering request 2.  Its record (no response) is
    written when the RST is seen, so before the record of a later connection that
    closes normally; at end of input it would come after it."""
    a = TcpConversation(CLIENT, SERVER)
    b = TcpConversation(("10.0.0.1", 40001), SERVER, client_isn=5_000_000, server_isn=6_000_000)
    packets = [
        *zip([ms(0), ms(1), ms(2)], a.handshake()),
        (ms(3), a.client_data(REQUEST.replace(b"/reassembly", b"/one"))[0]),
        (ms(10), a.server_data(RESPONSE)[0]),
        (ms(11), a.client_ack()),
        (ms(20), a.client_data(REQUEST.replace(b"/reassembly", b"/two"))[0]),
        (ms(21), a.server_rst()),
        *zip([ms(30), ms(31), ms(32)], b.handshake()),
        (ms(33), b.client_data(REQUEST)[0]),
        (ms(40), b.server_data(RESPONSE)[0]),
        (ms(41), b.client_ack()),
        *zip([ms(50), ms(51), ms(52)], b.close()),
    ]
    pcap = tmp_path / "rst.pcap"
    craft.capture(pcap, packets)
    assert [
        record("2026-11-21T10:42:05.003000Z", 7.0, uri="/one"),
        record(
            "2026-11-21T10:42:05.020000Z",
            None,
            uri="/two",
            trans_depth=2,
            response=False,
            anomaly_names=["response_missing"],
            end_reason="rst",
        ),
        record("2026-11-21T10:42:05.033000Z", 7.0, client=("10.0.0.1", 40001)),
    ] == read_records(pcap)
