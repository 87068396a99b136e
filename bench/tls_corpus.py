"""A capture of many short TLS connections, for issue 12's speed check:
``sniffd read`` on it must run at no fewer packets/s than on the HTTP bench
corpus (bench/run.py).

The connections are the real handshakes of captures/tls/loopback_handshakes.pcap
(python ssl, openssl s_client and curl; TLS 1.2 and 1.3, resumed and not),
replayed N times: each copy gets its own client address and port and starts
1 ms after the previous one ended, and every checksum is computed again, so each copy is a
whole, valid connection.

    .venv/bin/python bench/tls_corpus.py --connections 10000 -o /dev/shm/tls10k.pcap

``--truth FILE`` also writes what the generator knows of each copy: its
client address and port, the client port of the source connection it
copies (the key of captures/tls/loopback_handshakes.json, the answer key
written from the two ends' own knowledge) and the TCP payload bytes each
way.  bench/run.py checks sniffd's TLS records against it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import struct
from pathlib import Path

import dpkt

SOURCE = Path(__file__).resolve().parents[1] / "captures" / "tls" / "loopback_handshakes.pcap"


def _flows(path: Path) -> list[list[tuple[float, dpkt.ethernet.Ethernet]]]:
    """The source's packets grouped by connection (client port), in order."""
    flows: dict[tuple, list] = {}
    with open(path, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            tcp = eth.data.data
            key = tuple(sorted([(eth.data.src, tcp.sport), (eth.data.dst, tcp.dport)]))
            flows.setdefault(key, []).append((ts, buf))
    return list(flows.values())


def build(connections: int, out: Path, truth: Path | None = None) -> int:
    flows = _flows(SOURCE)
    t = 1_700_000_000.0
    packets = 0
    copies = []
    with open(out, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for i in range(connections):
            flow = flows[i % len(flows)]
            t0 = flow[0][0]
            # 10.x.y.z clients, one per copy; ports from 20000 up.
            client_ip = struct.pack("!I", (10 << 24) | (i + 1))
            client_port = 20000 + i % 40000
            sport0 = dpkt.ethernet.Ethernet(flow[0][1]).data.data.sport
            payload = [0, 0]  # client, server
            for ts, buf in flow:
                eth = dpkt.ethernet.Ethernet(buf)
                ip, tcp = eth.data, eth.data.data
                if tcp.sport == sport0:
                    ip.src, tcp.sport = client_ip, client_port
                    payload[0] += len(tcp.data)
                else:
                    ip.dst, tcp.dport = client_ip, client_port
                    payload[1] += len(tcp.data)
                ip.sum = 0
                tcp.sum = 0
                ip.data = tcp
                eth.data = ip
                w.writepkt(bytes(eth), t + (ts - t0))
                packets += 1
            t += (flow[-1][0] - t0) + 0.001  # one after the other: time never goes back
            copies.append([socket.inet_ntoa(client_ip), client_port, sport0, *payload])
    if truth is not None:
        truth.write_text(json.dumps({
            "source": str(SOURCE.relative_to(SOURCE.parents[2])),
            "source_sha256": hashlib.sha256(SOURCE.read_bytes()).hexdigest(),
            "connections": connections,
            "packets": packets,
            "copies_columns": ["client_ip", "client_port", "source_client_port", "client_payload_bytes", "server_payload_bytes"],
            "copies": copies,
        }) + "\n")
    return packets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--truth", type=Path, default=None, help="also write what the generator knows of each copy (JSON)")
    args = ap.parse_args()
    n = build(args.connections, args.out, args.truth)
    print(f"{args.out}: {args.connections} TLS connections, {n} packets")


if __name__ == "__main__":
    main()
