"""TlsSession on the shipped real capture captures/tls/loopback_handshakes.pcap.

Five loopback connections (TLS 1.2 and 1.3, each also resumed, and curl),
made by tests/pcap/make_tls_fixtures.py; the answer key beside the pcap was
written from the two ends' own knowledge, tshark (JA3/JA3S) and openssl x509.
Each connection's TCP payload is read back with dpkt and fed in capture order,
one call per segment, as the flow table will.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import tlscraft as T

from sniffd.tls import TlsSession

CAPTURES = Path(__file__).resolve().parents[2] / "captures" / "tls"
KEY = json.loads((CAPTURES / "loopback_handshakes.json").read_text())
CONNS = T.connections(CAPTURES / "loopback_handshakes.pcap", set(KEY["server_ports"]))


def replay(conn: T.Connection) -> TlsSession:
    s = TlsSession()
    for from_client, data, ts in conn.segments:
        s.feed(from_client, data, ts)
    s.close(conn.segments[-1][2])
    return s


def test_the_capture_holds_the_answer_keys_connections():
    assert sorted(KEY["connections"]) == sorted(str(p) for p in CONNS)


@pytest.mark.parametrize("port", sorted(KEY["connections"]), ids=lambda p: KEY["connections"][p]["name"])
def test_replayed_connection_matches_the_answer_key(port):
    expect = dict(KEY["connections"][port])
    del expect["name"]
    conn = CONNS[int(port)]
    s = replay(conn)
    got = s.result()
    assert expect == {k: got[k] for k in expect}
    assert (True, set(), 0) == (got["established"], s.anomalies, s.mem)
    assert (len(conn.stream(True)), len(conn.stream(False))) == (got["client_bytes"], got["server_bytes"])


def test_handshake_parse_cost():
    """Replaying all five connections' segments costs well under a millisecond each
    (~0.1 ms measured); a loose bound so a shared CI machine does not flake."""
    n = 50
    start = time.perf_counter()
    for _ in range(n):
        for conn in CONNS.values():
            replay(conn).result()
    per_connection = (time.perf_counter() - start) / (n * len(CONNS))
    assert per_connection < 0.005, per_connection
