"""Fuzzing every stage from frame bytes up (hypothesis): whatever the wire
carries, no exception escapes a stage and every output is well-formed.

* decode: any bytes, for every supported link type, with and without
  tunnels (VLAN, MPLS, PPPoE, GRE, ERSPAN, VXLAN, Geneve, Teredo, IP in IP)
  nested in any order, give a Segment, a Fragment, None or a documented
  anomaly name;
* fragments: any sequence of fragments (offsets, lengths, overlaps, "more"
  flags, snaplen cuts) stays within the caps, and a datagram cut into pieces
  and shuffled comes back whole;
* reassembly: any (seq, payload) sequence (wraparound, huge jumps, FIN,
  expire, skip, close) delivers chunks whose total is exactly ``next``;
* http: any bytes and gaps on both directions, and mutated valid
  conversations, give well-typed transactions that make one-line records;
* pipeline: random frames (structured Ethernet/IPv4/IPv6/TCP with random
  fields, sometimes in VLANs or tunnels, and raw bytes) at random times, and
  mutated real conversations (some in tunnels),
  through ``feed`` and ``feed_batch`` (the `sniffd read` path), then
  ``flush``: every record is one line of JSON.

tests/conftest.py sets SNIFFD_STRICT=1, so a bug inside the flow table
raises here instead of being counted as ``internal_error``.

The suite runs 300-800 examples per test (about 30 s in all);
``SNIFFD_FUZZ_EXAMPLES=5000`` sets every test's max_examples for a long run.
The coverage-guided fuzzer (fuzz/fuzz_pipeline.py) goes further; its crashes
become captures/fuzz/*.pcap, run by test_regressions.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import struct
from contextlib import contextmanager

import craft
from recordschema import assert_valid
from craft import ACK, FIN, PSH, RST, SYN, TcpConversation
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from sniffd import records
from sniffd.anomalies import ANOMALIES
from sniffd.capture import Batch
from sniffd.decode import SUPPORTED_LINKTYPES, Fragment, Segment, decode_frame, decode_frame_dpkt, decode_transport
from sniffd.fragments import MAX_DATAGRAM, Defragmenter
from sniffd.http import HttpSession, Message, Transaction
from sniffd.http.reader import MessageReader
from sniffd.pipeline import Pipeline
from sniffd.reassembly import HalfStream
from sniffd.settings import Settings

EXAMPLES = int(os.environ.get("SNIFFD_FUZZ_EXAMPLES", "0"))

# Checks switched off while the bug they catch is being fixed; each entry
# names the regression capture that shows it.  Remove the entry with the fix.
KNOWN_BUGS: frozenset[str] = frozenset()
# Fixed, each with its regression capture: buffered_accounting (crash-001),
# resync_loop (crash-002), empty_segment (crash-003), careful_dup (crash-004,
# crash-007), meter_leak (crash-005), taken_twice (crash-006).
# Longest one example may run: far above any real one (< 1 s); past it the
# example fails instead of hanging the suite.
EXAMPLE_TIMEOUT_S = 20.0
# Consecutive resynchronisations to the same bytes that count as no progress.
RESYNC_REPEATS = 4


class Hang(BaseException):
    """Raised by the watchdog; BaseException so no ``except Exception`` in a
    stage turns it into an anomaly."""


@contextmanager
def guarded():
    """Run one example with guards against endless loops and the bugs in
    KNOWN_BUGS (an example that hits a known bug is skipped, not failed):

    * HTTP resynchronisation that finds the same start line again and
      again, with no message parsed in between, would loop forever: it fails
      at once;
    * an empty payload ahead of the next byte must not break HalfStream;
    * a watchdog fails any example still running after EXAMPLE_TIMEOUT_S.
      It re-fires every 0.2 s: httptools turns an exception raised inside one
      of its callbacks into a parse error, so one signal may be swallowed."""
    original = MessageReader._resync
    last: dict[int, tuple] = {}

    def resync(self, data, i, base):
        found = original(self, data, i, base)
        if found is not None:
            # A start line was found at stream offset ``at``.  Finding the
            # same one again and again with no message parsed in between
            # would loop forever.
            rest, j, origin = found
            key = (self.good, origin + j)
            entry = last.get(id(self))
            repeats = entry[2] + 1 if entry is not None and entry[0] is self and entry[1] == key else 0
            if repeats >= RESYNC_REPEATS:
                if "resync_loop" in KNOWN_BUGS:
                    reject()
                raise AssertionError(f"endless loop: HTTP resynchronisation finds the start line at offset {key[1]} "
                                     f"{repeats + 1} times with no progress: {bytes(rest[j:j + 60])!r}")
            last[id(self)] = (self, key, repeats)
        return found

    def alarm(_signum, _frame):
        raise Hang(f"example still running after {EXAMPLE_TIMEOUT_S} s: endless loop?")

    original_feed = HalfStream.feed

    def feed(self, seq, payload, now, ack=None):
        # An empty payload (its bytes all cut by the snaplen) ahead of the
        # next byte, with nothing buffered, raises IndexError.
        if "empty_segment" in KNOWN_BUGS and not payload and not self.closed and not self.pending \
                and self.rel(seq) > self.next:
            reject()
        return original_feed(self, seq, payload, now, ack)

    MessageReader._resync = resync
    HalfStream.feed = feed
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, EXAMPLE_TIMEOUT_S, 0.2)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        MessageReader._resync = original
        HalfStream.feed = original_feed


def fuzz(examples: int):
    return settings(max_examples=EXAMPLES or examples, deadline=None, suppress_health_check=list(HealthCheck))


T0 = 1795257725.0  # 2026-11-21T10:42:05Z
T0_US = 1_795_257_725_000_000
LINKTYPES = sorted(SUPPORTED_LINKTYPES)
CLIENT_REC = {"ip": "10.0.0.1", "port": 40000}
SERVER_REC = {"ip": "10.0.0.2", "port": 80}
CID = records.community_id(bytes([10, 0, 0, 1]), 40000, bytes([10, 0, 0, 2]), 80)


def tight_settings() -> Settings:
    """Bounds small enough for a handful of frames to reach each of them,
    body capture on.  Only fields this Settings has (the class grows)."""
    wanted = dict(
        max_connections=2, max_conn_buffer_bytes=1500, max_total_buffer_bytes=3000, max_frag_datagrams=2,
        max_frags_per_datagram=3, max_pending_requests=2, max_header_bytes=200, max_header_count=4,
        max_uri_bytes=24, memory_budget_mb=0.04, capture_bodies=True, max_body_bytes=128, max_decoded_bytes=512,
    )
    names = {f.name for f in dataclasses.fields(Settings)}
    return Settings(**{k: v for k, v in wanted.items() if k in names})


# ------------------------------------------------------------------ checks


ENCAP_KEYS = {"vlan", "tunnel"}


def check_record_line(rec: dict, shape: dict) -> None:
    """One line of valid JSON, keys in one order for every record of a kind (vlan and
    tunnel aside), only documented anomaly names."""
    line = records.dumps(rec)
    assert "\n" not in line and "\r" not in line
    back = json.loads(line)
    keys = list(back)
    assert ("kind", "ts", "uid", "anomalies", "sensor", "interface") == (*keys[:3], *keys[-3:])
    # vlan and tunnel, right after server, only on encapsulated connections.
    assert keys[5:5 + len(ENCAP_KEYS & set(keys))] == [k for k in ("vlan", "tunnel") if k in keys]
    plain = [k for k in keys if k not in ENCAP_KEYS]
    assert shape.setdefault(back["kind"], plain) == plain  # one order per kind of record
    if "vlan" in back:
        assert back["vlan"] and all(isinstance(v, int) for v in back["vlan"])
    if "tunnel" in back:
        assert back["tunnel"] and all({"type", "src", "dst"} <= set(t) for t in back["tunnel"])
    assert set(back["anomalies"]) <= set(ANOMALIES)
    assert sorted(set(back["anomalies"])) == back["anomalies"]
    assert isinstance(back["trans_depth"], int) and back["trans_depth"] >= 1
    assert_valid(back)  # schema/record.schema.json, once per shape


def check_records(out: list[dict]) -> None:
    shape: dict = {}
    for rec in out:
        check_record_line(rec, shape)


def check_stats(p: Pipeline) -> None:
    stats = p.stats
    assert set(stats["anomalies"]) <= set(ANOMALIES)
    assert "internal_error" not in stats["anomalies"]
    assert 0 == stats["open_connections"]
    if "buffered_accounting" not in KNOWN_BUGS:
        assert 0 == stats["buffered_bytes"]
    meter = getattr(p.flows, "meter", None)
    if meter is not None and not {"meter_leak", "taken_twice"} & KNOWN_BUGS:
        # Every byte charged to the HTTP memory meter is given back by the end.
        assert (0, 0) == (meter.http_bytes, meter.sessions)


def _opt(value, typ) -> bool:
    return value is None or isinstance(value, typ)


def check_message(m: Message) -> None:
    assert _opt(m.method, str) and _opt(m.uri, str) and _opt(m.reason, str) and _opt(m.version, str)
    assert _opt(m.status, int)
    assert isinstance(m.headers, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in m.headers.items())
    assert isinstance(m.body_len, int) and m.body_len >= 0
    assert isinstance(m.missed_bytes, int) and m.missed_bytes >= 0
    assert isinstance(m.start_ts, float) and isinstance(m.end_ts, float)


def check_transaction(t: Transaction) -> None:
    assert isinstance(t, Transaction)
    assert isinstance(t.depth, int) and t.depth >= 1
    assert isinstance(t.anomalies, set) and t.anomalies <= set(ANOMALIES), t.anomalies
    assert all(isinstance(s, int) and isinstance(r, str) for s, r in t.interim)
    for m in (t.request, t.response):
        assert m is None or isinstance(m, Message)
        if m is not None:
            check_message(m)
    check_record_line(records.build(t, CLIENT_REC, SERVER_REC, CID, uid="C00000000000000001", sensor="fuzz",
                                    interface=None), {})


# ------------------------------------------------------------------ decode


def _family(linktype: int) -> st.SearchStrategy[bytes]:
    fam = st.sampled_from([2, 10, 24, 28, 30, 0x02000000]) | st.integers(0, 2**32 - 1)
    order = ">I" if linktype == 108 else "<I"
    return st.one_of(fam.map(lambda f: struct.pack(order, f)), fam.map(lambda f: struct.pack(">I", f)))


ETHERTYPES = st.sampled_from([0x0800, 0x86DD, 0x8100, 0x88A8, 0x9100, 0x0806, 0x8847, 0x8864]) | st.integers(0, 0xFFFF)
# PPP protocol fields: IPv4, IPv6, MPLS, LCP, compressed IPv4 / IPv6, any.
PPP_PROTOCOLS = st.sampled_from([b"\x00\x21", b"\x00\x57", b"\x02\x81", b"\xc0\x21", b"\x21", b"\x57"]) \
    | st.binary(min_size=1, max_size=2)


def _mpls_stack(draw) -> bytes:
    labels = draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4))
    last = len(labels) - 1
    return b"".join(struct.pack(">I", (v & ~0x100) | (0x100 if i == last else 0)) for i, v in enumerate(labels))


@st.composite
def link_header(draw, linktype: int) -> bytes:
    if linktype == 1:
        tags = draw(st.lists(st.tuples(st.sampled_from([0x8100, 0x88A8, 0x9100]), st.integers(0, 0xFFFF)), max_size=3))
        head = draw(st.binary(min_size=12, max_size=12))
        for tpid, tci in tags:
            head += struct.pack(">HH", tpid, tci)
        etype = draw(ETHERTYPES)
        head += struct.pack(">H", etype)
        if etype == 0x8847:
            head += _mpls_stack(draw)
        elif etype == 0x8864:
            head += struct.pack(">BBHH", draw(st.sampled_from([0x11, 0x11, 0x21])), 0, 7, 0) + draw(PPP_PROTOCOLS)
        return head
    if linktype == 113:
        return draw(st.binary(min_size=14, max_size=14)) + struct.pack(">H", draw(ETHERTYPES))
    if linktype == 276:
        return struct.pack(">H", draw(ETHERTYPES)) + draw(st.binary(min_size=18, max_size=18))
    if linktype in (0, 108):
        return draw(_family(linktype))
    if linktype in (9, 50, 204):
        head = b"\x01" if linktype == 204 else b""
        return head + draw(st.sampled_from([b"\xff\x03", b""])) + draw(PPP_PROTOCOLS)
    if linktype == 51:
        return struct.pack(">BBHH", 0x11, 0, 7, 0) + draw(PPP_PROTOCOLS)
    if linktype in (104, 205):
        head = b"\x00" if linktype == 205 else b""
        return head + bytes([draw(st.sampled_from([0x0F, 0x8F])), 0]) + struct.pack(">H", draw(ETHERTYPES))
    if linktype == 219:
        return _mpls_stack(draw)
    if linktype == 239:
        attrs = struct.pack("<HH", 8, 1) + bytes(4)  # the packet header attribute
        length = draw(st.sampled_from([4 + 60, 4 + 2000]) | st.integers(0, 0xFFFF))
        kind = draw(st.sampled_from([9, 9, 10]) | st.integers(0, 0xFFFF))
        return bytes([draw(st.sampled_from([2, 10, 7])), 0, 0, 1]) + attrs + struct.pack("<HH", length, kind)
    return b""  # raw IP


@st.composite
def tunnel_ish(draw, depth: int = 0) -> tuple[int, bytes]:
    """(IP protocol, IP payload): a tunnel header with random, often
    plausible fields (GRE with any flags and payload types, ERSPAN, UDP to
    VXLAN, Geneve or Teredo ports or between others, IP in IP) around an
    Ethernet frame or an IP packet, itself sometimes a tunnel again."""
    inner = draw(ip_ish(depth + 1)) if depth < 2 else draw(st.binary(max_size=60))
    eth = draw(st.binary(min_size=12, max_size=12)) + struct.pack(">H", draw(ETHERTYPES)) + inner
    kind = draw(st.sampled_from(["gre", "erspan2", "erspan3", "vxlan", "geneve", "teredo", "ipip"]))
    if kind == "gre":
        flags = draw(st.sampled_from([0, 0x2000, 0xB000, 0x4000, 0x0001]) | st.integers(0, 0xFFFF))
        ptype = draw(st.sampled_from([0x0800, 0x86DD, 0x6558, 0x8847, 0x88BE, 0x22EB]) | st.integers(0, 0xFFFF))
        extra = draw(st.binary(min_size=0, max_size=12))
        return 47, struct.pack(">HH", flags, ptype) + extra + (eth if ptype in (0x6558, 0x88BE) else inner)
    if kind == "erspan2":
        return 47, struct.pack(">HHI", 0x1000, 0x88BE, 1) + struct.pack(">HHI", draw(st.sampled_from([0x1000, 0x2000])),
                                                                          draw(st.integers(0, 0xFFFF)), 0) + eth
    if kind == "erspan3":
        word = draw(st.sampled_from([0, 1, 0x0800, 0x0801]) | st.integers(0, 0xFFFF))
        sub = bytes(8) if word & 1 and draw(st.booleans()) else b""
        return 47, struct.pack(">HHI", 0x1000, 0x22EB, 1) + struct.pack(">HHIHH", 0x2000, 5, 0, 0, word) + sub + (
            inner if word & 0x7C00 == 0x0800 else eth)
    if kind == "ipip":
        return draw(st.sampled_from([4, 41])), inner
    sport = draw(st.sampled_from([3544, 54321, 32900]) | st.integers(0, 0xFFFF))
    if kind == "vxlan":
        dport, body = 4789, struct.pack(">BxxxI", draw(st.sampled_from([8, 0])), draw(st.integers(0, 2**32 - 1))) + eth
    elif kind == "geneve":
        opts = draw(st.integers(0, 3))
        body = struct.pack(">BBHI", draw(st.sampled_from([opts, opts, 0x40 | opts])), 0,
                           draw(st.sampled_from([0x6558, 0x0800, 0x86DD]) | st.integers(0, 0xFFFF)),
                           draw(st.integers(0, 2**32 - 1))) + bytes(4 * opts) + draw(st.sampled_from([eth, inner]))
        dport = 6081
    else:
        dport = draw(st.sampled_from([3544, 3797]) | st.integers(0, 0xFFFF))
        head = draw(st.sampled_from([b"", b"\x00\x00" + bytes(6), b"\x00\x01\x00\x00" + bytes(9),
                                     b"\x00\x01\x02\x03" + bytes(14) + b"\x00\x00" + bytes(6)]))
        body = head + inner
    length = draw(st.sampled_from([8 + len(body)] * 3 + [0, 7, 65535]))
    return 17, struct.pack(">HHHH", sport, dport, length, 0) + body


@st.composite
def ip_ish(draw, depth: int = 0) -> bytes:
    """An IPv4 or IPv6 header with random, often plausible fields, then
    extension headers / TCP-ish bytes or a tunnel, sometimes cut short."""
    body = draw(tcp_ish())
    tunnel = draw(tunnel_ish(depth)) if depth < 2 and draw(st.integers(0, 3)) == 0 else None
    if tunnel is not None:
        body = tunnel[1]
    if draw(st.booleans()):
        ihl = draw(st.sampled_from([5, 5, 5, 6, 4, 15, 0]))
        total = draw(st.sampled_from([None, 0, 19, 20, 65535]) | st.integers(0, 2000))
        opts = draw(st.binary(min_size=max(0, ihl - 5) * 4, max_size=max(0, ihl - 5) * 4))
        total = 20 + len(opts) + len(body) if total is None else total
        frag = draw(st.sampled_from([0, 0x4000, 0x2000, 0x2001, 0x0001, 0x3FFF]) | st.integers(0, 0xFFFF))
        proto = draw(st.sampled_from([6, 6, 17, 1, 44]) | st.integers(0, 255)) if tunnel is None else tunnel[0]
        version = draw(st.sampled_from([4, 4, 4, 6, 0]))
        head = struct.pack(">BBHHHBBH4s4s", (version << 4) | ihl, 0, total & 0xFFFF, draw(st.integers(0, 0xFFFF)),
                           frag, 64, proto, 0, draw(st.binary(min_size=4, max_size=4)),
                           draw(st.binary(min_size=4, max_size=4)))
        pkt = head + opts + body
    else:
        nxt = draw(st.sampled_from([6, 6, 0, 43, 44, 51, 59, 60, 135, 17]) | st.integers(0, 255)) if tunnel is None \
            else tunnel[0]
        exts = b""
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from([6, 0, 43, 44, 51, 60, 59]) | st.integers(0, 255))
            length = draw(st.integers(0, 3))
            exts += bytes([kind, length]) + draw(st.binary(min_size=6 + 8 * length, max_size=6 + 8 * length))
        plen = draw(st.sampled_from([None, 0, 1, 65535]) | st.integers(0, 2000))
        plen = len(exts) + len(body) if plen is None else plen
        first = draw(st.sampled_from([0x60000000, 0x6FFFFFFF, 0x40000000]) | st.integers(0, 2**32 - 1))
        pkt = struct.pack(">IHBB16s16s", first, plen & 0xFFFF, nxt, 64, bytes(16), bytes(16)) + exts + body
    cut = draw(st.none() | st.integers(0, len(pkt)))
    return pkt if cut is None else pkt[:cut]


@st.composite
def tcp_ish(draw) -> bytes:
    off = draw(st.sampled_from([5, 5, 6, 8, 15, 4, 0]))
    opts = draw(st.binary(min_size=max(0, off - 5) * 4, max_size=max(0, off - 5) * 4))
    head = struct.pack(">HHIIBBHHH", draw(st.integers(0, 0xFFFF)), draw(st.sampled_from([80, 8080, 443]) | st.integers(0, 0xFFFF)),
                       draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)), off << 4,
                       draw(st.integers(0, 255)), 65535, 0, 0)
    return head + opts + draw(http_soup())


@fuzz(600)
@given(data=st.data())
def test_decode_any_frame_of_any_linktype_gives_a_value_never_an_exception(data) -> None:
    linktype = data.draw(st.sampled_from(LINKTYPES), label="linktype")
    frame = data.draw(st.one_of(st.binary(max_size=200), st.builds(bytes.__add__, link_header(linktype), ip_ish())),
                      label="frame")
    verify = data.draw(st.booleans(), label="verify")
    values = decode_frame(linktype, frame, verify), decode_frame_dpkt(linktype, frame, verify)
    for value in values:
        check_decoded(value)
    assert values[0] == values[1]


TUNNEL_TYPES = {"mpls", "pppoe", "gre", "erspan", "vxlan", "geneve", "teredo", "ipip"}


def check_ctx(ctx) -> None:
    """None, or (VLAN ids, tunnels) as decode's docstring gives them, hashable."""
    if ctx is None:
        return
    hash(ctx)
    vlans, tunnels = ctx
    assert all(0 < v < 4096 for v in vlans)
    assert len(vlans) + len(tunnels) <= 16
    for kind, src, dst, key in tunnels:
        assert kind in TUNNEL_TYPES
        if kind in ("mpls", "pppoe"):
            assert (src, dst) == (None, None)
        else:
            assert len(src) in (4, 16) and len(dst) == len(src)
        assert key is None or isinstance(key, (int, tuple))


def check_decoded(value) -> None:
    if isinstance(value, str):
        assert value in ANOMALIES
    elif isinstance(value, Segment):
        assert len(value.src) in (4, 16) and len(value.dst) == len(value.src)
        assert 0 <= value.sport < 65536 and 0 <= value.dport < 65536
        assert 0 <= value.seq < 2**32 and 0 <= value.ack < 2**32 and 0 <= value.flags < 256
        assert isinstance(value.payload, bytes) and value.lost >= 0
        assert 0 <= value.ttl < 256 and value.csum in (-1, 0, 1)
        assert value.csum == -1 or value.lost == 0
        check_ctx(value.ctx)
    elif isinstance(value, Fragment):
        assert value.version in (4, 6) and value.offset >= 0 and value.offset % 8 == 0 and value.lost >= 0
        assert isinstance(value.data, bytes) and 0 <= value.ttl < 256 and value.verify in (True, False)
        assert value.key[-1] == value.ctx
        check_ctx(value.ctx)
    else:
        assert value is None


@fuzz(400)
@given(version=st.sampled_from([4, 6]), proto=st.sampled_from([4, 6, 17, 41, 47]) | st.integers(0, 255),
       buf=st.binary(max_size=120), lost=st.integers(0, 100), verify=st.booleans())
def test_decode_transport_any_reassembled_datagram_gives_a_value(version, proto, buf, lost, verify) -> None:
    src = bytes(4 if version == 4 else 16)
    check_decoded(decode_transport(version, src, src, proto, buf, lost, 64, None, verify))


# --------------------------------------------------------------- fragments

KEYS = [(4, b"\x01" * 4, b"\x02" * 4, 6, 1, None), (4, b"\x01" * 4, b"\x02" * 4, 6, 2, None),
        (6, b"\x01" * 16, b"\x02" * 16, 7, None), (4, b"\x01" * 4, b"\x02" * 4, 6, 1, ((5,), ()))]


@st.composite
def fragment(draw) -> Fragment:
    key = draw(st.sampled_from(KEYS))
    offset = draw(st.integers(0, 40).map(lambda n: n * 8) | st.integers(0, 70000))
    data = draw(st.binary(max_size=48) | st.integers(0, 9000).map(bytes))
    lost = draw(st.sampled_from([0, 0, 0, 1, 40]))
    proto = draw(st.sampled_from([6, 17]))
    return Fragment(key, key[0], key[1], key[2], proto, offset, draw(st.booleans()), data, lost, 64, key[-1], False)


def check_defragmenter(d: Defragmenter) -> None:
    table = d._table
    assert len(table) <= d.max_frag_datagrams
    held = 0
    for dg in table.values():
        assert len(dg.pieces) <= d.max_frags_per_datagram
        assert dg.held == sum(len(b) for _s, b, _l in dg.pieces)
        held += dg.held
    assert held == d.held_bytes
    if hasattr(d, "held_pieces"):
        assert sum(len(dg.pieces) for dg in table.values()) == d.held_pieces
    # The caps bound what is held: datagrams x pieces x the largest piece.
    assert d.held_bytes <= d.max_frag_datagrams * d.max_frags_per_datagram * MAX_DATAGRAM


@fuzz(600)
@given(max_datagrams=st.integers(1, 4), max_frags=st.integers(1, 8),
       ops=st.lists(st.one_of(fragment(), st.floats(0, 40)), max_size=30))
def test_fragments_any_sequence_stays_within_the_caps(max_datagrams, max_frags, ops) -> None:
    d = Defragmenter(30.0, max_datagrams, max_frags)
    now = T0
    for op in ops:
        if isinstance(op, float):
            now += op
            names = d.expire(now)
        else:
            whole, names = d.feed(op, now)
            if whole is not None:
                version, src, dst, proto, payload, lost, ttl, ctx, verify = whole
                assert (version, src, dst, ttl, ctx, verify) == (op.version, op.src, op.dst, 64, op.ctx, False)
                assert isinstance(proto, int) and isinstance(payload, bytes) and lost >= 0
                assert len(payload) + lost <= MAX_DATAGRAM
        assert set(names) <= set(ANOMALIES)
        check_defragmenter(d)


@fuzz(300)
@given(data=st.data())
def test_fragments_any_cut_shuffled_and_duplicated_comes_back_whole(data) -> None:
    payload = data.draw(st.binary(min_size=1, max_size=400), label="payload")
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, (len(payload) - 1) // 8)), max_size=6), label="cuts")))
    bounds = [0, *(c * 8 for c in cuts if c * 8 < len(payload)), len(payload)]
    key = KEYS[0]
    pieces = [Fragment(key, 4, key[1], key[2], 6, a, b < len(payload), payload[a:b], 0, 64, None, False)
              for a, b in zip(bounds, bounds[1:])]
    pieces += data.draw(st.lists(st.sampled_from(pieces), max_size=3), label="duplicates")
    order = data.draw(st.permutations(pieces), label="order")
    d = Defragmenter(30.0, 4, 64)
    got = []
    for frag in order:
        whole, names = d.feed(frag, T0)
        assert [] == names
        if whole is not None:
            got.append(whole)
            break
    assert [(4, key[1], key[2], 6, payload, 0, 64, None, False)] == got


# -------------------------------------------------------------- reassembly

ISNS = st.sampled_from([0, 1_000_000, 2**32 - 5, 2**31 - 1, 2**32 - 1]) | st.integers(0, 2**32 - 1)


@st.composite
def stream_ops(draw):
    ops = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["feed"] * 6 + ["fin", "expire", "skip", "forced", "close_hole"]))
        if kind == "feed":
            rel = draw(st.integers(-3000, 6000) | st.integers(-2**33, 2**33))
            data = draw(st.binary(max_size=64) | st.integers(0, 5000).map(lambda n: b"z" * n))
            ops.append(("feed", rel, data, draw(st.sampled_from([0.0, 0.1, 5.0, 11.0]))))
        elif kind == "fin":
            ops.append(("fin", draw(st.integers(-100, 7000) | st.integers(0, 2**32)), None, 0.0))
        elif kind == "skip":
            ops.append(("skip", draw(st.integers(-100, 7000) | st.integers(0, 2**40)), None, 0.0))
        else:
            ops.append((kind, 0, None, draw(st.sampled_from([0.0, 1.0, 10.0, 30.0]))))
    ops.append(("close", 0, None, 0.0))
    return ops


def delivered(chunks: list) -> tuple[int, int]:
    """(bytes of data, bytes of gaps) in ``chunks``, checking each one's form."""
    data = gaps = 0
    for c in chunks:
        if c.__class__ is int:
            assert c > 0
            gaps += c
        elif c.__class__ is tuple:
            b, ts, ack = c
            assert isinstance(b, (bytes, bytearray)) and isinstance(ts, float)
            assert ack is None or 0 <= ack < 2**32
            data += len(b)
        else:
            assert isinstance(c, (bytes, bytearray)), c
            data += len(c)
    return data, gaps


@fuzz(600)
@given(isn=ISNS, max_buffer=st.integers(1, 20000), ops=stream_ops())
def test_reassembly_any_segments_deliver_exactly_up_to_next(isn, max_buffer, ops) -> None:
    with guarded():
        _stream_run(isn, max_buffer, ops)


def _stream_run(isn: int, max_buffer: int, ops: list) -> None:
    hs = HalfStream(10.0, max_buffer)
    hs.start(isn)
    now = T0
    total_data = total_gaps = 0
    for kind, rel, data, dt in ops:
        now += dt
        seq = (isn + rel) % 2**32
        if kind == "feed":
            chunks = hs.feed(seq, data, now)
        elif kind == "fin":
            hs.feed_fin(seq)
            chunks = []
        elif kind == "skip":
            chunks = hs.skip_to(rel)
        elif kind == "expire":
            chunks = hs.expire(now)
        elif kind == "forced":
            chunks = hs.forced_skip()
        elif kind == "close_hole" and hasattr(hs, "close_hole"):
            chunks = hs.close_hole()
        elif kind == "close":
            chunks = hs.close()
        else:
            chunks = []
        d, g = delivered(chunks)
        total_data += d
        total_gaps += g
        assert total_data + total_gaps == hs.next
        assert total_gaps == hs.missed_bytes
        assert set(hs.anomalies) <= set(ANOMALIES)
        assert hs.pending_bytes == sum(len(b) for _s, b, _t, _a in hs.pending)
        ends = [hs.next] + [x for s, b, _t, _a in hs.pending for x in (s, s + len(b))]
        assert ends == sorted(ends) and (not hs.pending or hs.pending[0][0] > hs.next)
    assert 0 == len(hs.pending) and hs.finished
    assert [] == hs.feed(isn, b"late", now)


@fuzz(300)
@given(data=st.data())
def test_reassembly_any_order_and_duplication_gives_the_stream_back(data) -> None:
    isn = data.draw(ISNS, label="isn")
    stream = data.draw(st.binary(min_size=1, max_size=300), label="stream")
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream)), max_size=8), label="cuts")))
    bounds = [0, *cuts] if cuts and cuts[-1] == len(stream) else [0, *cuts, len(stream)]
    segs = [(a, stream[a:b]) for a, b in zip(bounds, bounds[1:]) if b > a]
    segs += data.draw(st.lists(st.sampled_from(segs), max_size=4), label="duplicates")
    hs = HalfStream(10.0, 1 << 20)
    hs.start(isn)
    out = bytearray()
    for rel, piece in data.draw(st.permutations(segs), label="order"):
        for c in hs.feed((isn + rel) % 2**32, piece, T0):
            assert c.__class__ is not int
            out += c[0] if c.__class__ is tuple else c
    assert (bytes(stream), ()) == (bytes(out), hs.anomalies)


# -------------------------------------------------------------------- http

# Pieces of HTTP that, joined at random, reach deep into llhttp and the
# session's pairing: start lines, framing headers, chunk syntax, CRLFs.
TOKENS = [
    b"GET / HTTP/1.1\r\n", b"HEAD /h HTTP/1.1\r\n", b"POST /p HTTP/1.1\r\n", b"CONNECT a:443 HTTP/1.1\r\n",
    b"GET ` HTTP/1.1\r\n", b"PUT /\xff\xfe HTTP/1.0\r\n", b"OPTIONS * HTTP/1.1\r\n",
    b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n", b"HTTP/1.1 101 Switching Protocols\r\n",
    b"HTTP/1.1 204 No Content\r\n", b"HTTP/1.1 304 Not Modified\r\n", b"HTTP/1.0 200 OK\r\n", b"HTTP/1.1 404 \r\n",
    b"Host: h\r\n", b"Content-Length: 5\r\n", b"Content-Length: 0\r\n", b"Content-Length: -1\r\n",
    b"Content-Length: 99999999999999999999\r\n", b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n",
    b"Connection: Upgrade\r\nUpgrade: websocket\r\n", b"Expect: 100-continue\r\n", b"Content-Encoding: gzip\r\n",
    b"Content-Type: application/json\r\n", b"Cookie: a=b\r\n", b"Authorization: Basic eDp5\r\n",
    b"X: \xc3\xa9\xff\r\n", b"\r\n", b"\n", b"\r", b"5\r\nhello\r\n", b"0\r\n\r\n", b"ffffffffffffffff\r\n",
    b"3;ext=1\r\nabc\r\n", b"hello", b"\x00", b" ", b":", b"\x1f\x8b\x08\x00\x00\x00\x00\x00",
]


def http_soup() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.lists(st.sampled_from(TOKENS), max_size=12).map(b"".join),
        st.binary(max_size=80),
    )


def conversation_kinds():
    """(request stream, response stream) of valid conversations exercising
    keep-alive, pipelining, HEAD, chunked, 100-continue, CONNECT, Upgrade,
    close-delimited bodies."""
    host = b"Host: example.test\r\n"
    return [
        (b"GET /a HTTP/1.1\r\n" + host + b"\r\nGET /b HTTP/1.1\r\n" + host + b"\r\n",
         b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        (b"HEAD /h HTTP/1.1\r\n" + host + b"\r\nGET /g HTTP/1.1\r\n" + host + b"\r\n",
         b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n"),
        (b"POST /up HTTP/1.1\r\n" + host + b"Expect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
         b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
        (b"CONNECT example.test:443 HTTP/1.1\r\n" + host + b"\r\n\x16\x03\x01tls",
         b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03tls"),
        (b"GET /ws HTTP/1.1\r\n" + host + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00",
         b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"),
        (b"GET /old HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the connection closes"),
        (b"GET /c HTTP/1.1\r\n" + host + b"\r\nHEAD /d HTTP/1.1\r\n" + host + b"\r\nGET /e HTTP/1.1\r\n" + host + b"\r\n",
         b"HTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"HTTP/1.1 204 No Content\r\n\r\n"),
    ]


@st.composite
def mutated(draw, stream: bytes) -> bytes:
    buf = bytearray(stream)
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, len(buf)))
        op = draw(st.sampled_from(["insert", "delete", "flip", "dup", "token", "junk"]))
        if op == "junk":
            # Junk just before a start line: the resynchronisation paths.
            starts = [i for i in range(len(buf)) if buf.startswith(b"HTTP/1.", i) or buf.startswith(b"GET ", i)
                      or buf.startswith(b"HEAD ", i)]
            if starts:
                at = draw(st.sampled_from(starts))
                buf[at:at] = draw(st.sampled_from([b"x", b"\x00", b"\r\n", b"hello", b"\xff\xfe"]))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del buf[pos : pos + draw(st.integers(1, 16))]
        elif op == "flip" and pos < len(buf):
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "dup":
            buf[pos:pos] = buf[pos : pos + draw(st.integers(1, 40))]
        elif op == "token":
            buf[pos:pos] = draw(st.sampled_from(TOKENS))
    return bytes(buf)


@st.composite
def chunked(draw, stream: bytes) -> list:
    """``stream`` cut into chunks, sometimes with a gap (int) in place of a piece."""
    out: list = []
    pos = 0
    while pos < len(stream):
        n = draw(st.integers(1, max(1, len(stream) - pos)))
        piece = stream[pos : pos + n]
        pos += n
        if draw(st.integers(0, 9)) == 0:
            out.append(len(piece))  # lost on the wire
        else:
            out.append(piece)
    return out


def run_session(session: HttpSession, steps: list, reason) -> list[Transaction]:
    with guarded():
        return _run_session(session, steps, reason)


def _run_session(session: HttpSession, steps: list, reason) -> list[Transaction]:
    now = T0
    got: list[Transaction] = []
    for step in steps:
        now += 0.001
        if step[0] == "end":
            session.end(step[1], now)
        elif step[0] == "take":
            got += session.take()
        elif step[0] == "note":
            session.note(step[1], [step[2]])
        else:
            session.feed(step[0], [step[1]], now)
    session.close(reason, now)
    got += session.take()
    for t in got:
        check_transaction(t)
    if "taken_twice" not in KNOWN_BUGS:
        assert len(got) == len({id(t) for t in got}), "a transaction was taken twice"
    meter = getattr(session, "meter", None)
    if meter is not None and not {"meter_leak", "taken_twice"} & KNOWN_BUGS:
        assert 0 == meter.http_bytes  # all given back once every transaction is taken
    return got


def session_args(data) -> tuple:
    tight = data.draw(st.booleans(), label="tight")
    midstream = data.draw(st.booleans(), label="midstream")
    return (2, 200, 4, midstream) if tight else (100, 65536, 256, midstream)


REASONS = st.sampled_from([None, "idle_timeout", "cut_by_shutdown", "conn_evicted"])


@fuzz(600)
@given(data=st.data())
def test_http_any_bytes_and_gaps_on_both_sides_give_well_typed_transactions(data) -> None:
    step = st.one_of(
        st.tuples(st.booleans(), http_soup()),
        st.tuples(st.booleans(), st.integers(1, 100000)),
        st.tuples(st.just("end"), st.booleans()),
        st.tuples(st.just("take")),
        st.tuples(st.just("note"), st.booleans(), st.sampled_from(["tcp_gap", "tcp_overlap_conflict"])),
    )
    steps = data.draw(st.lists(step, max_size=20), label="steps")
    run_session(HttpSession(*session_args(data)), steps, data.draw(REASONS, label="reason"))


@fuzz(800)
@given(data=st.data())
def test_http_mutated_valid_conversations_give_well_typed_transactions(data) -> None:
    req, resp = data.draw(st.sampled_from(conversation_kinds()), label="conversation")
    req_chunks = data.draw(chunked(data.draw(mutated(req), label="request stream")), label="request chunks")
    resp_chunks = data.draw(chunked(data.draw(mutated(resp), label="response stream")), label="response chunks")
    # Interleave, requests usually first (a capture is almost always causal).
    steps: list = []
    while req_chunks or resp_chunks:
        from_client = bool(req_chunks) and (not resp_chunks or data.draw(st.integers(0, 3)) > 0)
        steps.append((from_client, (req_chunks if from_client else resp_chunks).pop(0)))
    steps += data.draw(st.lists(st.tuples(st.just("end"), st.booleans()), max_size=2), label="ends")
    run_session(HttpSession(*session_args(data)), steps, data.draw(REASONS, label="reason"))


# ---------------------------------------------------------------- pipeline

HOSTS4 = [bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes([10, 0, 0, 3])]
HOSTS6 = [bytes(15) + b"\x01", bytes(15) + b"\x02"]
PORTS = [80, 8080, 40000, 40001]
BASES = [1000, 2**32 - 20, 3_000_000]
FLAGS = st.sampled_from([SYN, SYN | ACK, ACK, PSH | ACK, PSH | ACK, PSH | ACK, FIN | ACK, RST, RST | ACK, FIN | PSH | ACK]) \
    | st.integers(0, 255)
STEPS_US = st.sampled_from([0, 0, 0, 1000, 200_000, 1_500_000, 11_000_000, 31_000_000, 301_000_000,
                            -500_000, -20_000_000])


@st.composite
def tcp_frame(draw) -> tuple[int, bytes]:
    """(linktype 1, an Ethernet frame): IPv4 or IPv6 TCP among a few
    endpoints, so frames meet in the same connections; header fields
    sometimes corrupted, IPv4 sometimes a fragment."""
    v6 = draw(st.integers(0, 4)) == 0
    hosts = HOSTS6 if v6 else HOSTS4
    src, dst = draw(st.sampled_from(hosts)), draw(st.sampled_from(hosts))
    seq = (draw(st.sampled_from(BASES)) + draw(st.integers(0, 3000))) % 2**32 if draw(st.integers(0, 5)) else \
        draw(st.integers(0, 2**32 - 1))
    ack = (draw(st.sampled_from(BASES)) + draw(st.integers(0, 3000))) % 2**32 if draw(st.integers(0, 5)) else \
        draw(st.integers(0, 2**32 - 1))
    payload = draw(http_soup())
    doff = draw(st.sampled_from([5] * 8 + [4, 6, 15]))
    tcp = struct.pack(">HHIIBBHHH", draw(st.sampled_from(PORTS)), draw(st.sampled_from(PORTS)), seq, ack, doff << 4,
                      draw(FLAGS), 65535, 0, 0) + bytes(max(0, doff - 5) * 4) + payload
    if v6:
        plen = draw(st.sampled_from([len(tcp)] * 6 + [0, 1, 65535]))
        l3 = struct.pack(">IHBB16s16s", 0x60000000, plen, 6, 64, src, dst) + tcp
        etype = 0x86DD
    else:
        total = draw(st.sampled_from([20 + len(tcp)] * 6 + [0, 19, 20, 65535]))
        frag = draw(st.sampled_from([0x4000] * 6 + [0x2000, 0x0001, 0x2003]))
        if frag & 0x2000 and total > 28:
            tcp = tcp[: (len(tcp) // 8) * 8] or tcp  # a first fragment carries a multiple of 8
            total = 20 + len(tcp)
        ver = draw(st.sampled_from([0x45] * 8 + [0x46, 0x44, 0x55]))
        l3 = struct.pack(">BBHHHBBH4s4s", ver, 0, total & 0xFFFF, draw(st.integers(0, 3)), frag, 64, 6, 0, src, dst) + tcp
        etype = 0x0800
    # Sometimes in one of two VLANs, GRE keys, VNIs or MPLS labels, so the
    # same 4-tuple meets itself in other contexts.
    encap = draw(st.sampled_from([None] * 8 + ["vlan", "gre", "vxlan", "mpls"]))
    n = draw(st.sampled_from([1, 2]))
    if encap == "vlan":
        l3, etype = struct.pack(">HH", n, etype) + l3, 0x8100
    elif encap == "mpls":
        l3, etype = struct.pack(">I", (n << 12) | 0x1FF) + l3, 0x8847
    elif encap is not None:
        outer = draw(st.permutations(HOSTS4[:2]))
        if encap == "gre":
            inner, proto = struct.pack(">HHI", 0x2000, etype, n) + l3, 47
        else:
            inner = struct.pack(">HHHHBxxxI", 5000, 4789, 16 + 14 + len(l3), 0, 8, n << 8)
            inner, proto = inner + bytes(12) + struct.pack(">H", etype) + l3, 17
        l3 = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(inner), 0, 0x4000, 64, proto, 0, *outer) + inner
        etype = 0x0800
    frame = bytes(12) + struct.pack(">H", etype) + l3
    cut = draw(st.none() | st.none() | st.integers(0, len(frame)))
    return 1, frame if cut is None else frame[:cut]


@st.composite
def raw_frame(draw) -> tuple[int, bytes]:
    linktype = draw(st.sampled_from(LINKTYPES))
    return linktype, draw(st.binary(max_size=120) | st.builds(bytes.__add__, link_header(linktype), ip_ish()))


def run_pipeline(p: Pipeline, frames: list[tuple[int, int, bytes]], batch: bool) -> list[dict]:
    """``(ts_us, linktype, frame)`` through ``feed``, or through
    ``feed_batch`` as `sniffd read` does (one batch per run of a link type)."""
    with guarded():
        return _run_pipeline(p, frames, batch)


def _run_pipeline(p: Pipeline, frames: list[tuple[int, int, bytes]], batch: bool) -> list[dict]:
    out: list[dict] = []
    if not batch:
        for ts_us, linktype, frame in frames:
            sec, usec = divmod(ts_us, 1_000_000)
            out += p.feed(sec + usec * 1e-6, linktype, frame, len(frame))
    else:
        i = 0
        while i < len(frames):
            linktype = frames[i][1]
            buf, meta = bytearray(), bytearray()
            while i < len(frames) and frames[i][1] == linktype:
                sec, usec = divmod(frames[i][0], 1_000_000)
                meta += struct.pack("=4I", sec, usec, len(buf), len(frames[i][2]))
                buf += frames[i][2]
                i += 1
            out += p.feed_batch(linktype, Batch(bytes(buf), bytes(meta)))
    out += p.flush("end_of_input")
    return out


def timed(data, items: list) -> list[tuple[int, int, bytes]]:
    ts = T0_US
    out = []
    for linktype, frame in items:
        ts = max(0, ts + data.draw(STEPS_US, label="step"))
        out.append((ts, linktype, frame))
    return out


@fuzz(500)
@given(data=st.data())
def test_pipeline_random_frames_at_random_times_never_raise(data) -> None:
    items = data.draw(st.lists(st.one_of(tcp_frame(), tcp_frame(), tcp_frame(), raw_frame()), max_size=30),
                      label="frames")
    p = Pipeline(tight_settings() if data.draw(st.booleans(), label="tight") else None)
    out = run_pipeline(p, timed(data, items), data.draw(st.booleans(), label="feed_batch"))
    check_records(out)
    check_stats(p)


@st.composite
def real_conversation(draw) -> tuple[int, list[bytes]]:
    """(linktype, frames) of a valid capture of one or two connections."""
    v6 = draw(st.booleans())
    client, server = (("2001:db8::1", 40000), ("2001:db8::2", 80)) if v6 else (("10.0.0.1", 40000), ("10.0.0.2", 80))
    segs: list[craft.Segment] = []
    for n, (req, resp) in enumerate(draw(st.lists(st.sampled_from(conversation_kinds()), min_size=1, max_size=2))):
        c = TcpConversation(client if n == 0 else (client[0], 40001 + n), server,
                            client_isn=draw(ISNS), server_isn=draw(ISNS))
        segs += c.handshake()
        segs += c.client_data(req, sizes=[max(1, len(req) // 3)])
        segs += c.server_data(resp, sizes=[max(1, len(resp) // 2)])
        segs += c.close()
    linktype = draw(st.sampled_from([1, 1, 113, 276, 101, 0, 9, 104, 239]))
    wrap = None
    if linktype == 1:
        # Sometimes through a tunnel, both directions alike (outer addresses swapped).
        kind = draw(st.sampled_from([None, None, "gre", "vxlan"]))

        def wrap(l3: bytes, kind=kind) -> bytes:
            a, b = ("192.0.2.1", "192.0.2.2") if craft.ip_src(l3) == client[0] else ("192.0.2.2", "192.0.2.1")
            if kind == "gre":
                return craft.ethernet(craft.ipv4(a, b, craft.gre(l3, 0x86DD if v6 else 0x0800, key=7), proto=47))
            if kind == "vxlan":
                datagram = craft.udp(a, b, 999, 4789, craft.vxlan(craft.ethernet(l3), 9))
                return craft.ethernet(craft.ipv4(a, b, datagram, proto=17))
            return craft.ethernet(l3)
    return linktype, [f.data for f in craft.frames([(T0, s) for s in segs], linktype=linktype, wrap=wrap)]


# Ethernet + IPv4 header fields worth corrupting: (offset, size).
FIELDS = [(14, 1), (16, 2), (18, 2), (20, 2), (23, 1), (26, 4), (30, 4), (34, 2), (36, 2), (38, 4), (42, 4),
          (46, 1), (47, 1)]


@fuzz(500)
@given(data=st.data())
def test_pipeline_mutated_real_traffic_never_raises(data) -> None:
    linktype, frames = data.draw(real_conversation(), label="conversation")
    frames = list(frames)
    for _ in range(data.draw(st.integers(1, 6), label="mutations")):
        i = data.draw(st.integers(0, len(frames) - 1))
        f = bytearray(frames[i])
        op = data.draw(st.sampled_from(["flip", "truncate", "duplicate", "swap", "drop", "field", "field"]))
        if op == "flip" and f:
            pos = data.draw(st.integers(0, len(f) - 1))
            f[pos] ^= 1 << data.draw(st.integers(0, 7))
            frames[i] = bytes(f)
        elif op == "truncate":
            frames[i] = bytes(f[: data.draw(st.integers(0, len(f)))])
        elif op == "duplicate":
            frames.insert(data.draw(st.integers(0, len(frames))), frames[i])
        elif op == "swap":
            j = data.draw(st.integers(0, len(frames) - 1))
            frames[i], frames[j] = frames[j], frames[i]
        elif op == "drop" and len(frames) > 1:
            del frames[i]
        elif op == "field" and linktype == 1 and len(f) >= 48 and f[12:14] == b"\x08\x00":
            off, size = data.draw(st.sampled_from(FIELDS))
            f[off : off + size] = data.draw(st.binary(min_size=size, max_size=size))
            frames[i] = bytes(f)
    p = Pipeline(tight_settings() if data.draw(st.booleans(), label="tight") else None)
    out = run_pipeline(p, timed(data, [(linktype, f) for f in frames]), data.draw(st.booleans(), label="feed_batch"))
    check_records(out)
    check_stats(p)
