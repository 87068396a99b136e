"""The fields that say where and by which run a record was written, through
the real ``sniffd read``: ``uid`` (one per connection, shared by all its
records, never by another connection nor another run), ``sensor`` (the host
name, or ``[output] sensor``), ``interface`` (null when reading a file)."""

from __future__ import annotations

import socket
from collections import defaultdict
from pathlib import Path

import craft
from craft import TcpConversation
from pcapcheck import T0, UID_FORM, read_records

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


def copy_of(name: str, tmp_path: Path) -> Path:
    src = CAPTURES / name
    dst = tmp_path / src.name
    dst.write_bytes(src.read_bytes())
    return dst


def conn_key(rec: dict) -> tuple:
    return rec["client"]["ip"], rec["client"]["port"], rec["server"]["ip"], rec["server"]["port"]


def test_read_names_the_host_as_sensor_and_no_interface(tmp_path):
    recs = read_records(copy_of("sample.pcap", tmp_path), run_fields=True)
    assert recs and {(socket.gethostname(), None)} == {(r["sensor"], r["interface"]) for r in recs}
    assert all(UID_FORM.fullmatch(r["uid"]) for r in recs)


def test_read_with_a_config_names_its_sensor(tmp_path):
    cfg = tmp_path / "sniffd.toml"
    cfg.write_text('[output]\nsensor = "gw-01.example.test"\n')
    recs = read_records(copy_of("sample.pcap", tmp_path), "-c", str(cfg), run_fields=True)
    assert recs and {"gw-01.example.test"} == {r["sensor"] for r in recs}


def test_every_transaction_of_a_connection_and_its_tls_record_share_one_uid(tmp_path):
    """captures/tls/starttls.pcap: ten STARTTLS connections, one TLS record
    each, and a CONNECT whose HTTP record and whose tunnel's TLS record are
    one connection; captures/pipeline_head.pcap: several transactions on a
    connection."""
    for name in ("tls/starttls.pcap", "pipeline_head.pcap"):
        recs = read_records(copy_of(name, tmp_path), run_fields=True)
        by_conn = defaultdict(set)
        for r in recs:
            by_conn[conn_key(r)].add(r["uid"])
        assert all(1 == len(u) for u in by_conn.values()), by_conn
        assert len(by_conn) == len({r["uid"] for r in recs})
    recs = read_records(copy_of("tls/starttls.pcap", tmp_path), run_fields=True)
    (http,) = [r for r in recs if r["kind"] == "http"]
    (tls,) = [r for r in recs if r["kind"] == "tls" and conn_key(r) == conn_key(http)]
    assert ("CONNECT", "http", http["uid"]) == (http["request"]["method"], tls["tls"]["starttls"], tls["uid"])


def test_a_reused_four_tuple_is_a_new_uid_and_data_after_an_rst_keeps_its_uid(tmp_path):
    """Two connections from the same client port, one after the other (the
    second with a new handshake): two uids, one community_id.  The first
    connection is reset by the client and then sends more: the records
    after the RST (tcp_data_after_rst) keep the connection's uid."""
    client, server = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    packets = []
    t = T0
    for n, isn in enumerate((1000, 900_000)):
        conv = TcpConversation(client, server, client_isn=isn, server_isn=isn + 77)
        req = b"GET /%d HTTP/1.1\r\nHost: example.test\r\n\r\n" % n
        resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        segs = conv.handshake() + conv.client_data(req) + conv.server_data(resp) + [conv.client_ack()]
        if n == 0:
            segs += [conv.client_rst()] + conv.client_data(req.replace(b"/0", b"/0b")) + conv.server_data(resp)
            segs += [conv.client_ack()]
        segs += conv.close()
        packets += [(t + i * 0.001, s) for i, s in enumerate(segs)]
        t += 5.0
    pcap = tmp_path / "reuse.pcap"
    craft.capture(pcap, packets)
    recs = read_records(pcap, run_fields=True)
    assert [("/0", []), ("/0b", ["tcp_data_after_rst"]), ("/1", [])] == [
        (r["request"]["uri"], r["anomalies"]) for r in recs]
    assert 1 == len({r["community_id"] for r in recs})
    assert recs[0]["uid"] == recs[1]["uid"] != recs[2]["uid"]
