"""Write the fuzzer's seed corpus (fuzz/corpus/) from valid conversations
crafted with tests/craft.py: every link type, every tunnel, keep-alive,
pipelining with HEAD, chunked bodies, 100-continue, CONNECT, Upgrade, IPv4
and IPv6 fragments, reordering, retransmissions, overlaps, gaps, a snaplen
cut, a mid-stream pickup.  libFuzzer starts from these, so it mutates traffic
that already reaches the HTTP parser instead of guessing headers.

    .venv/bin/python fuzz/make_seeds.py [DIR]
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import craft  # noqa: E402
import fuzzinput  # noqa: E402
from craft import TcpConversation  # noqa: E402

STEP_US = 10_000  # one time-step unit of the input format

HOST = b"Host: example.test\r\n"


def frame_for(l3: bytes, linktype: int, tags=()) -> bytes:
    if linktype == 108:  # OpenBSD loopback: address family big-endian
        return struct.pack(">I", 24 if l3[0] >> 4 == 6 else 2) + l3
    if linktype in (12, 14, 101, 228, 229):
        return l3  # raw IP
    return craft.link_frame(l3, linktype, tags=tags)


# Tunnels, each a function from an IP packet to an Ethernet frame; the
# client is 10.0.0.1 or 2001:db8::1, its tunnel end 192.0.2.1.
def _ends(l3: bytes) -> tuple[str, str]:
    client = craft.ip_src(l3) in ("10.0.0.1", "2001:db8::1")
    return ("192.0.2.1", "192.0.2.2") if client else ("192.0.2.2", "192.0.2.1")


def _over(l3: bytes, proto: int, payload: bytes) -> bytes:
    return craft.ethernet(craft.ipv4(*_ends(l3), payload, proto=proto))


def _udp(l3: bytes, dport: int, payload: bytes) -> bytes:
    a, b = _ends(l3)
    return craft.ethernet(craft.ipv4(a, b, craft.udp(a, b, 50000, dport, payload), proto=17))


TUNNELS = {
    "mpls": lambda l3: craft.ethernet(craft.mpls(l3, [100, 200]), etype=0x8847),
    "pppoe": lambda l3: craft.ethernet(craft.pppoe_session(l3, 0x1234), etype=0x8864),
    "gre": lambda l3: _over(l3, 47, craft.gre(l3, 0x86DD if l3[0] >> 4 == 6 else 0x0800, key=7, seq=1)),
    "erspan3": lambda l3: craft.ethernet(craft.ipv4("192.0.2.1", "192.0.2.2", craft.erspan3(craft.ethernet(l3), 5,
                                                                                           subheader=True), proto=47)),
    "vxlan-vlan": lambda l3: _udp(l3, 4789, craft.vxlan(craft.ethernet(l3, tags=craft.dot1q(20)), 5000)),
    "geneve": lambda l3: _udp(l3, 6081, craft.geneve(craft.ethernet(l3), 700, options=bytes(8))),
    "teredo": lambda l3: _udp(l3, 3544, craft.teredo(l3, origin=(1, "192.0.2.9"))),
    "ipip": lambda l3: _over(l3, 41 if l3[0] >> 4 == 6 else 4, l3),
}


def build(linktype: int, packets, tags=(), per_frame=False, snaplen_index=0, tight=False, wrap=None) -> bytes:
    """``packets``: segments or IP packets (bytes) or (gap_steps, item), in
    capture order, 10 ms apart unless a gap is given.  ``wrap``: a function
    giving the (Ethernet) frame of an IP packet, instead of frame_for."""
    frames = []
    ts = fuzzinput.T0_US
    for n, item in enumerate(packets):
        if isinstance(item, tuple):
            steps, item = item
            ts += steps * STEP_US
        ts += STEP_US
        l3 = item if isinstance(item, bytes) else craft.ip_packet(item, ip_id=n + 1)
        frames.append((ts, frame_for(l3, linktype, tags) if wrap is None else wrap(l3)))
    return fuzzinput.encode(linktype, frames, per_frame=per_frame, snaplen_index=snaplen_index, tight=tight)


def keepalive(client=("10.0.0.1", 40000), server=("10.0.0.2", 80)):
    c = TcpConversation(client, server)
    return [
        *c.handshake(),
        *c.client_data(b"GET /a HTTP/1.1\r\n" + HOST + b"Accept: */*\r\n\r\n"),
        *c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", sizes=[20]),
        *c.client_data(b"POST /b HTTP/1.1\r\n" + HOST + b"Content-Length: 4\r\n\r\nbody"),
        *c.server_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"),
        *c.close(),
    ]


def pipelined_head():
    c = TcpConversation(("10.0.0.1", 40001), ("10.0.0.2", 8080), client_isn=2**32 - 10)
    reqs = (b"HEAD /h HTTP/1.1\r\n" + HOST + b"\r\n" + b"GET /g HTTP/1.1\r\n" + HOST + b"\r\n"
            + b"GET /c HTTP/1.0\r\n\r\n")
    resps = (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
             + b"HTTP/1.1 304 Not Modified\r\n\r\n"
             + b"HTTP/1.0 200 OK\r\n\r\nclose-delimited body")
    return [*c.handshake(), *c.client_data(reqs, sizes=[10, 30]), *c.server_data(resps, sizes=[45]),
            c.server_fin(), c.client_fin(), c.server_ack()]


def continue_connect_upgrade():
    c = TcpConversation(("10.0.0.1", 40002), ("10.0.0.2", 80))
    d = TcpConversation(("10.0.0.1", 40003), ("10.0.0.2", 3128))
    e = TcpConversation(("10.0.0.1", 40004), ("10.0.0.2", 80))
    return [
        *c.handshake(),
        *c.client_data(b"PUT /up HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
        *c.server_data(b"HTTP/1.1 100 Continue\r\n\r\n"),
        *c.client_data(b"abc"),
        *c.server_data(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
        *d.handshake(),
        *d.client_data(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n"),
        *d.server_data(b"HTTP/1.1 200 Connection established\r\n\r\n"),
        *d.client_data(b"\x16\x03\x01\x00\x05hello"),
        *e.handshake(),
        *e.client_data(b"GET /ws HTTP/1.1\r\n" + HOST + b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
        *e.server_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi"),
        *c.close(), *d.close(), *e.close(),
    ]


def reordered_with_overlap():
    c = TcpConversation()
    hs = c.handshake()
    req = c.client_data(b"GET /r HTTP/1.1\r\n" + HOST + b"\r\n", sizes=[8, 8, 8])
    resp = c.server_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", sizes=[30])
    conflict = req[1].sub(0, 4, payload=b"XXXX")
    return [*hs, req[2], req[0], req[1], conflict, req[1], req[3], resp[1], resp[0], *c.close()]


def with_gap():
    c = TcpConversation()
    hs = c.handshake()
    req = c.client_data(b"GET /gap HTTP/1.1\r\n" + HOST + b"\r\n")
    resp = c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n" + b"x" * 30, sizes=[40, 10])
    req2 = c.client_data(b"GET /after HTTP/1.1\r\n" + HOST + b"\r\n")
    resp2 = c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    # resp[1] is never captured; a 12 s pause passes gap_timeout_s.
    return [*hs, *req, resp[0], (1200, resp[2]), *req2, *resp2, *c.close()]


def midstream():
    c = TcpConversation(("10.0.0.1", 40005), ("10.0.0.2", 80))
    c.handshake()
    c.client_data(b"GET /before HTTP/1.1\r\n" + HOST + b"\r\n")
    tail = c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", sizes=[20])[1:]
    return [*tail, *c.client_data(b"GET /next HTTP/1.1\r\n" + HOST + b"\r\n"),
            *c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), c.client_rst()]


def fragmented_v4():
    c = TcpConversation()
    hs = c.handshake()
    req = c.client_data(b"POST /frag HTTP/1.1\r\n" + HOST + b"Content-Length: 64\r\n\r\n" + b"f" * 64)
    frags = craft.ipv4_fragments(craft.ip_packet(req[0], ip_id=77), 4)
    resp = c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    return [*hs, frags[2], frags[0], frags[3], frags[1], frags[1], *resp, *c.close()]


def fragmented_v6():
    c = TcpConversation(("2001:db8::1", 40006), ("2001:db8::2", 80))
    hs = c.handshake()
    req = c.client_data(b"GET /frag6 HTTP/1.1\r\n" + HOST + b"User-Agent: fuzz\r\n\r\n")
    pkt = craft.ip_packet(req[0], ext_headers=[craft.hop_by_hop_options(), craft.destination_options()])
    frags = craft.ipv6_fragments(pkt, 3)
    resp = c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nsix")
    return [*hs, frags[1], frags[0], frags[2], *resp, *c.close()]


def gzip_bodies():
    import gzip
    import zlib

    c = TcpConversation(("10.0.0.1", 40008), ("10.0.0.2", 80))
    page = b"<html>" + b"sniffd " * 200 + b"</html>"
    gz = gzip.compress(page)
    deflated = zlib.compress(b'{"user":"u","password":"secret","n":[1,2,3]}')
    return [
        *c.handshake(),
        *c.client_data(b"POST /login?token=abc&x=1 HTTP/1.1\r\n" + HOST
                       + b"Content-Type: application/x-www-form-urlencoded\r\nAuthorization: Basic dTpw\r\n"
                       + b"Cookie: sid=1\r\nContent-Length: 22\r\n\r\nuser=u&password=hunter"),
        *c.server_data(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nSet-Cookie: s=2\r\n"
                       + b"Content-Length: %d\r\n\r\n" % len(gz) + gz),
        *c.client_data(b"GET /api HTTP/1.1\r\n" + HOST + b"\r\n"),
        *c.server_data(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: deflate\r\n"
                       + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(deflated) + deflated + b"\r\n0\r\n\r\n"),
        *c.close(),
    ]


def seeds() -> dict[str, bytes]:
    v6 = TcpConversation(("2001:db8::1", 40007), ("2001:db8::2", 80))
    v6_packets = [*v6.handshake(), *v6.client_data(b"GET /six HTTP/1.1\r\n" + HOST + b"\r\n"),
                  *v6.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n6"), *v6.close()]
    out = {
        "eth-keepalive": build(1, keepalive()),
        "eth-keepalive-feed": build(1, keepalive(), per_frame=True),
        "eth-qinq-keepalive": build(1, keepalive(), tags=craft.qinq(100, 200)),
        "sll-pipelined-head": build(113, pipelined_head()),
        "sll2-continue-connect-upgrade": build(276, continue_connect_upgrade()),
        "raw-reordered-overlap": build(101, reordered_with_overlap()),
        "null-gap": build(0, with_gap()),
        "loop-midstream": build(108, midstream()),
        "eth-frag4": build(1, fragmented_v4(), tags=craft.dot1q(7)),
        "raw6-frag6": build(229, fragmented_v6()),
        "raw4-keepalive": build(228, keepalive()),
        "dltraw-v6": build(12, v6_packets),
        "eth-snaplen-cut": build(1, keepalive(), snaplen_index=5),
        "eth-snaplen-cut-feed": build(1, with_gap(), per_frame=True, snaplen_index=6),
        "tight-eth-keepalive-gzip": build(1, gzip_bodies(), tight=True),
        "tight-sll-pipelined-head": build(113, pipelined_head(), tight=True),
        "tight-eth-frag4": build(1, fragmented_v4(), tight=True),
        "tight-raw-reordered-overlap": build(101, reordered_with_overlap(), tight=True),
        "ppp-keepalive": build(9, keepalive()),
        "ppphdlc-v6": build(50, v6_packets),
        "pppoe-link-pipelined-head": build(51, pipelined_head()),
        "chdlc-keepalive": build(104, keepalive()),
        "pppdir-v6": build(204, v6_packets),
        "chdlcdir-frag4": build(205, fragmented_v4()),
        "mpls-link-keepalive": build(219, keepalive()),
        "nflog-keepalive": build(239, keepalive()),
        "nflog-v6": build(239, v6_packets),
    }
    for name, wrap in TUNNELS.items():
        if name != "teredo":  # IPv6 only
            out[f"eth-{name}-keepalive"] = build(1, keepalive(), wrap=wrap)
        out[f"eth-{name}-v6"] = build(1, v6_packets, wrap=wrap)
    out["eth-gre-frag4"] = build(1, fragmented_v4(), wrap=TUNNELS["gre"])
    return out


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "corpus"
    target.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        digest = hashlib.sha1(data).hexdigest()[:12]
        (target / f"seed-{name}-{digest}").write_bytes(data)
    print(f"{len(seeds())} seeds in {os.path.relpath(target)}")


if __name__ == "__main__":
    main()
