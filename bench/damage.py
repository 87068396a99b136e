"""Damage-aware check of sniffd's records on a transformed copy of a corpus (bench/transform.py).

    .venv/bin/python bench/damage.py --truth truth.json --original corpus.pcap \\
        --sidecar copy.pcap.json --records records.jsonl [--json verdict.json]

bench/verify.py asks for every transaction exact, which is right for the
clean corpus.  After a loss some transactions cannot be exact; what is owed
then is that sniffd says so (an anomaly on every record holding a damaged
transaction), never pairs a request with another transaction's response, and
gets every other transaction exact.  Which transactions a loss damaged comes
from the traffic generator's side, never from sniffd:

1. Each connection's two byte streams are reassembled here from the ORIGINAL
   clean capture (data packets sorted by sequence number, identical
   retransmissions merged; a hole or a disagreeing overlap is an error).
2. Each stream is cut into messages by the httpgen client's and server's own
   HTTP/1.1 reader (tests/httpgen.py: ``SocketReader``, the server's request
   framing, the client's ``_read_response``), so every request and response
   (1xx interim included) gets its byte range in its stream.  The framed
   messages must agree with truth.json (method, URI, status, reason, interim,
   both body lengths) or the check stops: that would be an instrument fault.
3. The sidecar lists every dropped packet (connection, direction, seq,
   length).  Bytes that no surviving packet of the original carries are
   lost.  A transaction is damaged when a lost byte falls in its request or
   its response (interim responses included).

Each record is placed on its connection by client address and port, and its
request and its response are each identified with a ground-truth
transaction by content, not by the record's trans_depth: method, URI, Host,
the framing and validator header fields and the body length for a request;
status, reason, framing/ETag header fields, body length and interim statuses
for a response.  When a damaged part no longer matches in full, a coarser
key is tried (without body length, then method+URI or status+reason).
Content-identical candidates on a connection are taken in order (position).
A record is *mispaired* when no single transaction fits both its request and
its response, judged without body lengths (the response to a HEAD and to a
GET of one entity have the same head, and which body length a logger gives a
response depends on the request it paired it with).  Because the header
fields are compared too, a mispairing that verify.py's projection cannot see
(HEAD /chunked/N answered with HEAD /gzip/N's Content-Encoding and
Content-Length, both "200 OK, no body") is caught.

Categories, one per ground-truth transaction (first that applies):

``mispaired``            a record pairs this transaction's request or response with another's
``exact``                undamaged, and a record equals the verify.py projection (anomalies [])
``damaged_flagged``      damaged; every record holding part of it has an anomaly
``damaged_unflagged``    damaged; a record holding part of it has no anomaly
``damaged_unseen``       damaged, no record, and nothing left to make one from: every one of
                         its bytes lost, or the first byte of its request and the first byte
                         of its final response (after any 1xx) both lost (no request line, no
                         final status line; what is left of it is skipped as the rest of an
                         unknown message)
``missing``              no record holds any part of it (and some of it was on the wire)
``undamaged_not_exact``  undamaged, records hold it, none is exact (``unpaired`` counts those
                         whose every record says pairing_uncertain: see ``ok_unless_undecided``)

plus ``extra`` records: records that hold no transaction (flagged or not),
records whose client and server are the other way round, and second records
of an exact transaction.  An undamaged transaction *follows a loss* when a
lost byte of its connection comes before its request (client stream) or its
response (server stream).

Targets: without loss, every transaction exact and no other record; with
loss, 0 mispaired, every damaged transaction flagged (or unseen), every
undamaged transaction exact, and no unflagged extra record.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
for _p in (str(BENCH_DIR), str(REPO_ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from tests import httpgen  # noqa: E402
from transform import C2S, DIRECTION_NAMES, S2C, assign_connections, read_pcap  # noqa: E402
from verify import _ts_seconds, diff, read_records, record_fields, truth_fields  # noqa: E402

_SEQ_MOD = 1 << 32

# Header fields that tell requests (responses) of one connection apart besides
# the start line: framing, validators, Expect and Connection.  Server, Date-like
# fields and User-Agent are the same on every message of a connection.
REQUEST_ID_HEADERS = ("content-length", "transfer-encoding", "expect", "if-none-match", "accept-encoding", "connection")
RESPONSE_ID_HEADERS = ("content-length", "transfer-encoding", "content-encoding", "etag", "connection")

CATEGORIES = ("exact", "damaged_flagged", "damaged_unflagged", "damaged_unseen", "undamaged_not_exact", "mispaired", "missing")


class InstrumentError(Exception):
    """The original capture, truth and sidecar do not fit together: a fault of the instrument, not a sniffd result."""


# --- streams and messages from the clean original --------------------------------


@dataclass
class Exchange:
    """One request and its response as framed from the clean streams."""

    req: tuple[int, int]  # byte range in the client's stream
    resp: tuple[int, int]  # byte range in the server's stream (1xx interim included)
    method: str
    uri: str
    host: str | None
    req_headers: list[tuple[str, str]]
    req_body_len: int
    status: int = 0
    reason: str = ""
    resp_headers: list[tuple[str, str]] = field(default_factory=list)
    interim: list[int] = field(default_factory=list)
    resp_body_len: int = 0
    final: int = 0  # where the final response's status line begins (after the 1xx interim heads)


@dataclass
class Conn:
    key: tuple[str, int]  # client ip, client port
    server: tuple[str, int]
    index: int  # bench/transform.py's connection index in the original
    first_ts: float
    last_ts: float
    base: list[int]  # per direction, the sequence number of stream offset 0
    streams: list[bytes]
    exchanges: list[Exchange] = field(default_factory=list)
    truth: list[dict] = field(default_factory=list)
    lost: list[list[tuple[int, int]]] = field(default_factory=lambda: [[], []])  # per direction, merged byte ranges


class _BytesSocket:
    """What httpgen.SocketReader needs of a socket (``recv``), served from bytes; ``pos`` = bytes handed out."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def recv(self, n: int) -> bytes:
        chunk = bytes(self.data[self.pos : self.pos + n])
        self.pos += len(chunk)
        return chunk


def _offset(reader: httpgen.SocketReader) -> int:
    return reader.sock.pos - len(reader.buffer)


def frame_streams(c2s: bytes, s2c: bytes) -> list[Exchange]:
    """Cut a connection's two streams into exchanges with httpgen's own readers.

    Requests are framed as ``HttpGenServer._serve_connection`` reads them
    (chunked, else Content-Length, else no body); responses as the client
    reads them (``httpgen._read_response``, which knows the request method,
    so HEAD, 1xx, 204 and 304 have no body).  HTTP/1.1 answers in order
    (RFC 9112 section 9.3.2), so response i belongs to request i.
    """
    reader = httpgen.SocketReader(_BytesSocket(c2s))
    out: list[Exchange] = []
    while True:
        start = _offset(reader)
        head = reader.read_head()
        if head is None:
            break
        line, headers = head
        method, target, _version = httpgen._parse_request_line(line)
        if httpgen.is_chunked(headers):
            body_len = len(reader.read_chunked())
        else:
            body_len = len(reader.read_exact(int(httpgen.header_value(headers, "content-length") or 0)))
        out.append(Exchange((start, _offset(reader)), (0, 0), method, target, httpgen.header_value(headers, "host"), headers, body_len))
    if _offset(reader) != len(c2s):
        raise httpgen.GeneratorError(f"{len(c2s) - _offset(reader)} bytes after the last request")
    reader = httpgen.SocketReader(_BytesSocket(s2c))
    for ex in out:
        start = _offset(reader)
        ex.status, ex.reason, ex.resp_headers, ex.interim, ex.resp_body_len = httpgen._read_response(reader, ex.method)
        ex.resp = (start, _offset(reader))
        ex.final = start
        for _ in ex.interim:  # a 1xx response is a head alone
            ex.final = s2c.index(b"\r\n\r\n", ex.final) + 4
    if _offset(reader) != len(s2c):
        raise httpgen.GeneratorError(f"{len(s2c) - _offset(reader)} bytes after the last response")
    return out


def load_original(path: str | Path) -> tuple[list[Conn], dict]:
    """Connections of the clean capture with their two byte streams; also {input index: (conn, packet)}."""
    pcap = read_pcap(path)
    tcp_conns = assign_connections(pcap.packets)
    conns = []
    by_index = {}
    for c in tcp_conns:
        streams, base = [], []
        for d in (C2S, S2C):
            data = [p for p in c.packets if p.direction == d and p.is_data]
            b0 = c.isn[d] + 1 if c.isn[d] is not None else (min(p.seq for p in data) if data else 0)
            data.sort(key=lambda p: (p.seq - b0) % _SEQ_MOD)
            buf = bytearray()
            for p in data:
                off = (p.seq - b0) % _SEQ_MOD
                if off > len(buf):
                    raise InstrumentError(f"{path}: connection {c.client_ip}:{c.client_port} {DIRECTION_NAMES[d]}: "
                                          f"{off - len(buf)} bytes never captured at offset {len(buf)}; the original must be clean")
                overlap = min(len(buf) - off, p.payload_len)
                if buf[off : off + overlap] != p.payload[:overlap]:
                    raise InstrumentError(f"{path}: connection {c.client_ip}:{c.client_port}: two copies of offset {off} differ")
                buf += p.payload[overlap:]
            streams.append(bytes(buf))
            base.append(b0)
        ts = [p.sec + p.frac / pcap.frac_per_s for p in c.packets]
        conn = Conn((c.client_ip, c.client_port), (c.server_ip, c.server_port), c.index, min(ts), max(ts), base, streams)
        conns.append(conn)
        for p in c.packets:
            by_index[p.index] = (conn, p)
    return conns, by_index


def attach_truth(conns: list[Conn], truth: list[dict]) -> list[Conn]:
    """Give each connection its truth rows and framed exchanges; the two must agree.

    A client port used twice is resolved by time order on both sides.
    Returns the connections that carry truth (others, e.g. a stray
    connection, are ignored).
    """
    rows: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for t in truth:
        rows[(t["client_ip"], t["client_port"])][t["connection"]].append(t)
    by_key: dict[tuple, list[Conn]] = defaultdict(list)
    for c in conns:
        by_key[c.key].append(c)
    used = []
    for key, per_conn in rows.items():
        instances = sorted(by_key.get(key, []), key=lambda c: c.first_ts)
        groups = sorted(per_conn.values(), key=lambda g: min(t["t_request_s"] for t in g))
        if len(instances) < len(groups):
            raise InstrumentError(f"truth has {len(groups)} connection(s) from {key[0]}:{key[1]}, the original capture {len(instances)}")
        for c, g in zip(instances, groups):
            c.truth = sorted(g, key=lambda t: t["trans_depth"])
            try:
                c.exchanges = frame_streams(*c.streams)
            except (httpgen.GeneratorError, ValueError) as e:
                raise InstrumentError(f"connection {key[0]}:{key[1]}: httpgen's reader cannot frame the clean streams: {e}") from e
            _check_agreement(c)
            used.append(c)
    return used


def _check_agreement(c: Conn) -> None:
    if len(c.exchanges) != len(c.truth):
        raise InstrumentError(f"connection {c.key}: {len(c.exchanges)} exchanges framed, truth has {len(c.truth)}")
    for ex, t in zip(c.exchanges, c.truth):
        got = (ex.method, ex.uri, ex.host, ex.req_body_len, ex.status, ex.reason, ex.interim, ex.resp_body_len)
        want = (t["method"], t["uri"], t["host"], t["request_body_len"], t["status"], t["reason"], t["interim"], t["response_body_len"])
        if got != want:
            raise InstrumentError(f"connection {c.key} depth {t['trans_depth']}: framed {got}, truth {want}")


# --- what the loss removed ----------------------------------------------------------


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _subtract(ranges: list[tuple[int, int]], minus: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    minus = _merge(minus)
    for s, e in _merge(ranges):
        cur = s
        for ms, me in minus:
            if me <= cur or ms >= e:
                continue
            if ms > cur:
                out.append((cur, ms))
            cur = max(cur, me)
        if cur < e:
            out.append((cur, e))
    return out


def apply_loss(conns: list[Conn], by_index: dict, sidecar: dict) -> int:
    """Fill each connection's ``lost`` ranges from the sidecar's dropped packets; return how many were dropped.

    A dropped packet is found by its input index and must match the
    sidecar's connection, direction, seq and length (or it is looked up by
    those alone).  Bytes that another, surviving packet of the original also
    carried (a retransmission in the capture) are not lost.
    """
    dropped = (sidecar.get("loss") or {}).get("dropped") or []
    if not dropped:
        return 0
    conn_ids = {id(c) for c in conns}
    gone: dict[int, list] = defaultdict(list)  # id(conn) -> dropped packets
    for d in dropped:
        direction = DIRECTION_NAMES.index(d["direction"])
        hit = by_index.get(d["index"])
        if not (hit and hit[0].key == (d["client_ip"], d["client_port"]) and hit[1].direction == direction
                and hit[1].seq == d["seq"] and hit[1].payload_len == d["len"]):
            hit = next(((c, p) for c, p in by_index.values() if c.key == (d["client_ip"], d["client_port"]) and p.direction == direction
                        and p.seq == d["seq"] and p.payload_len == d["len"]), None)
        if hit is None:
            raise InstrumentError(f"sidecar: dropped packet {d} is not in the original capture (another original?)")
        gone[id(hit[0])].append(hit[1])
    per_conn_packets: dict[int, list] = defaultdict(list)
    for c, p in by_index.values():
        if id(c) in gone:
            per_conn_packets[id(c)].append((c, p))
    for cid, packets in gone.items():
        if cid not in conn_ids:
            continue  # a connection without truth
        c = per_conn_packets[cid][0][0]
        gone_ids = {id(p) for p in packets}
        for d in (C2S, S2C):
            def rng(p):
                s = (p.seq - c.base[d]) % _SEQ_MOD
                return (s, s + p.payload_len)
            lost = [rng(p) for p in packets if p.direction == d]
            kept = [rng(p) for _, p in per_conn_packets[cid] if p.direction == d and p.is_data and id(p) not in gone_ids]
            c.lost[d] = _subtract(lost, kept)
    return len(dropped)


def _overlaps(ranges: list[tuple[int, int]], span: tuple[int, int]) -> bool:
    return any(s < span[1] and span[0] < e for s, e in ranges)


def _lost_at(ranges: list[tuple[int, int]], span: tuple[int, int]) -> bool:
    """Was the first byte of ``span`` lost?"""
    return span[0] < span[1] and _overlaps(ranges, (span[0], span[0] + 1))


def _covered(ranges: list[tuple[int, int]], span: tuple[int, int]) -> bool:
    return span[0] >= span[1] or _subtract([span], ranges) == []


def _countable(c: Conn, run: list[int]) -> int:
    """How many of the consecutive exchanges ``run`` of ``c``, whose request
    lines were all lost, a reader of the capture can count (see check)."""
    lost = c.lost[S2C]
    n = 0
    for i in run:
        ex = c.exchanges[i]
        if not _lost_at(lost, (ex.final, ex.resp[1])):
            n += 1  # its status line is there: a record
            continue
        prev = c.exchanges[i - 1] if i else None
        framed = prev is None or (not _overlaps(lost, prev.resp) and not (i - 1 in run and prev.method == "HEAD"))
        nxt = c.exchanges[i + 1] if i + 1 in run else None
        for s, e in lost:
            # A stretch lost from where a framed response ended held a
            # response start, unless it ends right at the status line of the
            # next one, whose request (lost) had a body: those bytes could
            # have been only that response's 100 Continue.
            if s == ex.resp[0] and framed and not ex.interim and not (nxt is not None and e == nxt.final and nxt.req_body_len):
                n += 1
    return max(1, n)


# --- records against truth ---------------------------------------------------------


def _sig(headers, names) -> tuple:
    """The identifying header fields, from httpgen's (name, value) list or a record's headers dict."""
    if isinstance(headers, dict):
        return tuple((n, headers[n] if not isinstance(headers[n], list) else ", ".join(headers[n])) for n in names if n in headers)
    return tuple((n, httpgen.header_value(headers, n)) for n in names if httpgen.header_value(headers, n) is not None)


def _request_keys(method, uri, host, body_len, missed, headers) -> list[tuple]:
    sig = _sig(headers or {}, REQUEST_ID_HEADERS)
    full = ("full", method, uri, host, sig, body_len) if not missed else None
    return [full, ("mid", method, uri, host, sig), ("weak", method, uri)]


def _response_keys(status, reason, body_len, missed, interim, headers) -> list[tuple]:
    sig = _sig(headers or {}, RESPONSE_ID_HEADERS)
    full = ("full", status, reason, sig, body_len, tuple(interim)) if not missed else None
    return [full, ("mid", status, reason, sig), ("weak", status, reason)]


@dataclass
class Outcome:
    """Per ground-truth transaction: its category and why."""

    truth: dict
    conn: Conn
    exchange: Exchange
    damaged: bool = False
    unseen: bool = False  # every byte of it lost
    after_loss: bool = False
    records: list[int] = field(default_factory=list)  # indexes of records holding part of it
    mispaired_with: set = field(default_factory=set)  # other transactions (conn key, depth) a record paired it with
    exact_record: int | None = None
    category: str = ""
    excuse: str = ""  # undamaged_not_exact allowed by ok_unless_undecided: "unpaired", "renumbered" or "uncounted"

    @property
    def key(self) -> str:
        return f"client port {self.truth['client_port']} depth {self.truth['trans_depth']}"


@dataclass
class DamageVerdict:
    truth: int = 0
    records: int = 0
    dropped_packets: int = 0
    lossy: bool = False
    counts: Counter = field(default_factory=Counter)
    unpaired: int = 0  # undamaged_not_exact whose every record says pairing_uncertain
    renumbered: int = 0  # undamaged_not_exact, exact but for trans_depth, after records written unpaired
    # undamaged_not_exact, exact but for a trans_depth lower by no more than
    # the uncountable: after runs of whole transactions lost together (no
    # start line of either side left), each run counted as one by the logger
    # where it held several (nothing in the capture says how many).
    uncounted: int = 0
    damaged: int = 0
    after_loss: int = 0
    after_loss_exact: int = 0
    mispaired_records: int = 0
    mispaired_unflagged_records: int = 0  # of those, records with no anomaly at all
    extra: list[int] = field(default_factory=list)  # record indexes
    extra_unflagged: int = 0
    swapped_records: int = 0  # client and server the other way round
    unparsable_lines: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    record_list: list[dict] = field(default_factory=list)

    # -- targets --

    def targets(self) -> list[tuple[str, bool, str]]:
        c = self.counts
        if not self.lossy:
            ok = c["exact"] == self.truth and not self.extra and not self.unparsable_lines
            return [("every transaction exact, no other record", ok,
                     f"{c['exact']}/{self.truth} exact, {len(self.extra)} extra records")]
        undamaged = self.truth - self.damaged
        flagged = c["damaged_flagged"] + c["damaged_unseen"]
        return [
            ("0 mispaired", c["mispaired"] == 0,
             f"{c['mispaired']} mispaired ({self.mispaired_records} records, {self.mispaired_unflagged_records} with no anomaly)"),
            ("every damaged transaction flagged", flagged == self.damaged, f"{flagged}/{self.damaged} flagged"),
            ("every undamaged transaction exact", c["exact"] == undamaged,
             f"{c['exact']}/{undamaged} exact ({self.after_loss_exact}/{self.after_loss} of those after a loss)"),
            ("no unflagged record outside the truth", self.extra_unflagged == 0 and not self.unparsable_lines,
             f"{self.extra_unflagged} unflagged extra records"),
        ]

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.targets())

    @property
    def ok_unless_undecided(self) -> bool:
        """``ok``, except that an undamaged transaction may be written
        unpaired instead of exact when every record holding it says
        ``pairing_uncertain`` (issue 10's fallback where the marks cannot
        decide) and none pairs it with another's; and one after such records
        on its connection may differ in trans_depth alone (each record
        written unpaired takes a number); and one after a run of k
        transactions whose request lines were lost together may have a
        trans_depth up to k - m too low, m being what the capture still
        counts of them (``uncounted``: the responses whose status lines were
        captured, and the stretches lost from where a response ended; at
        least one, since the lost stretch held a request; see check)."""
        if self.ok:
            return True
        c = self.counts
        missed = [name for name, ok, _ in self.targets() if not ok]
        return (missed == ["every undamaged transaction exact"]
                and c["exact"] + self.unpaired + self.renumbered + self.uncounted == self.truth - self.damaged)

    def summary(self) -> str:
        """One line, in the words of issue 10: "A of N transactions exact and B mispaired; ..."."""
        c = self.counts
        text = f"{'PASS' if self.ok else 'FAIL'}: {c['exact']:,} of {self.truth:,} transactions exact and {c['mispaired']:,} mispaired"
        if self.mispaired_records:
            text += f" ({self.mispaired_records:,} records pair wrongly, {self.mispaired_unflagged_records:,} of them with no anomaly)"
        if self.lossy:
            text += (f"; {self.dropped_packets:,} data packets dropped, {self.damaged:,} transactions damaged: "
                     f"{c['damaged_flagged']:,} flagged, {c['damaged_unflagged']:,} not flagged, {c['damaged_unseen']:,} unseen; "
                     f"{self.after_loss_exact:,} of the {self.after_loss:,} undamaged transactions that follow a loss on their "
                     f"connection exact")
        text += (f"; {c['undamaged_not_exact']:,} undamaged not exact ({self.unpaired:,} written unpaired, pairing_uncertain; "
                 f"{self.renumbered:,} only renumbered after those; {self.uncounted:,} numbered lower after runs of whole "
                 f"transactions lost together), "
                 f"{c['missing']:,} missing, {len(self.extra):,} extra records "
                 f"({self.extra_unflagged:,} unflagged); {self.records:,} records")
        if self.unparsable_lines:
            text += f", {self.unparsable_lines} unparsable lines"
        return text

    def problems(self, limit: int = 20) -> list[str]:
        """One line per transaction that keeps a target from being met (up to ``limit`` per category), then extras."""
        lines = []
        shown: Counter = Counter()
        for o in self.outcomes:
            if o.category == "exact" or o.category == "damaged_flagged" or o.category == "damaged_unseen":
                continue
            shown[o.category] += 1
            if shown[o.category] > limit:
                continue
            t = o.truth
            what = (f"{o.category:<19} {o.key} [{t['label']}]{' damaged' if o.damaged else ''}{' after-loss' if o.after_loss else ''}"
                    f"{' (allowed: ' + o.excuse + ')' if o.excuse else ''}: "
                    f"{t['method']} {t['uri']} -> {t['status']}")
            if o.mispaired_with:
                what += f"; paired with depth {sorted(d for _, d in o.mispaired_with)}"
            for i in o.records[:2]:
                r = self.record_list[i]
                d = diff(truth_fields(t), record_fields(r))
                if not d:  # the projection cannot show it: the response's own header fields are another transaction's
                    resp = r.get("response") or {}
                    d = [f"projected fields equal, response header fields {dict(_sig(resp.get('headers') or {}, RESPONSE_ID_HEADERS))}"]
                what += f"; record {i}: anomalies {r.get('anomalies')}, " + "; ".join(d[:4])
            if not o.records:
                what += "; no record"
            lines.append("  " + what)
        for category, n in shown.items():
            if n > limit:
                lines.append(f"  ... and {n - limit} more {category}")
        for i in self.extra[:limit]:
            r = self.record_list[i]
            lines.append(f"  extra               record {i}: " + json.dumps(record_fields(r), separators=(",", ":"))[:300])
        if len(self.extra) > limit:
            lines.append(f"  ... and {len(self.extra) - limit} more extra records")
        return lines

    def to_json(self) -> dict:
        return {
            "ok": self.ok, "truth": self.truth, "records": self.records, "lossy": self.lossy,
            "dropped_packets": self.dropped_packets, "damaged": self.damaged, "counts": dict(self.counts),
            "after_loss": self.after_loss, "after_loss_exact": self.after_loss_exact,
            "mispaired_records": self.mispaired_records, "mispaired_unflagged_records": self.mispaired_unflagged_records, "extra": len(self.extra), "extra_unflagged": self.extra_unflagged,
            "swapped_records": self.swapped_records, "unparsable_lines": self.unparsable_lines,
            "targets": [{"target": n, "met": ok, "value": v} for n, ok, v in self.targets()],
            "summary": self.summary(),
            "transactions": [{"key": o.key, "label": o.truth["label"], "category": o.category, "damaged": o.damaged,
                              "after_loss": o.after_loss, "records": o.records,
                              "mispaired_with": sorted(d for _, d in o.mispaired_with)}
                             for o in self.outcomes if o.category != "exact"],
            "extra_records": [self.record_list[i] for i in self.extra],
        }


class Reference:
    """The instrument's side, built once per original capture and reused for every copy of it."""

    def __init__(self, truth: list[dict], original: str | Path) -> None:
        self.truth = truth
        self.original = str(original)
        self.all_conns, self.by_index = load_original(original)
        self.conns = attach_truth(self.all_conns, truth)


def check(ref: Reference, sidecar: dict | None, records: list[dict], unparsable_lines: int = 0) -> DamageVerdict:
    """Classify every ground-truth transaction of ``ref`` against ``records`` (see the module docstring)."""
    sidecar = sidecar or {}
    for c in ref.all_conns:
        c.lost = [[], []]
    v = DamageVerdict(records=len(records), unparsable_lines=unparsable_lines, record_list=records)
    v.dropped_packets = apply_loss(ref.conns, ref.by_index, sidecar)
    v.lossy = "loss" in (sidecar.get("transforms") or [])
    conns = ref.conns
    kept = sidecar.get("kept_connections")
    if kept is not None:
        kept_keys = {tuple(k) for k in kept}
        conns = [c for c in conns if c.key in kept_keys]

    # Outcomes, and lookup tables of request/response keys per connection.
    outcome_of: dict[int, list[Outcome]] = {}
    req_index: dict[int, dict[tuple, list[int]]] = {}
    resp_index: dict[int, dict[tuple, list[int]]] = {}
    by_key: dict[tuple, list[Conn]] = defaultdict(list)
    for c in conns:
        by_key[c.key].append(c)
        outs = []
        ri, si = defaultdict(list), defaultdict(list)
        for i, (ex, t) in enumerate(zip(c.exchanges, c.truth)):
            o = Outcome(t, c, ex)
            o.damaged = _overlaps(c.lost[C2S], ex.req) or _overlaps(c.lost[S2C], ex.resp)
            final = (ex.final, ex.resp[1])  # a 1xx alone makes no record
            o.unseen = (_covered(c.lost[C2S], ex.req) and _covered(c.lost[S2C], final)) or (
                _lost_at(c.lost[C2S], ex.req) and _lost_at(c.lost[S2C], final))
            o.after_loss = not o.damaged and (any(s < ex.req[0] for s, _ in c.lost[C2S]) or any(s < ex.resp[0] for s, _ in c.lost[S2C]))
            outs.append(o)
            for k in _request_keys(ex.method, ex.uri, ex.host, ex.req_body_len, 0, ex.req_headers):
                ri[k].append(i)
            for k in _response_keys(ex.status, ex.reason, ex.resp_body_len, 0, ex.interim, ex.resp_headers):
                si[k].append(i)
        outcome_of[id(c)] = outs
        req_index[id(c)], resp_index[id(c)] = ri, si
    v.outcomes = [o for c in conns for o in outcome_of[id(c)]]
    v.truth = len(v.outcomes)

    def conn_for(r: dict) -> tuple[Conn | None, bool]:
        cl, sv = r.get("client") or {}, r.get("server") or {}
        for key, swapped in (((cl.get("ip"), cl.get("port")), False), ((sv.get("ip"), sv.get("port")), True)):
            cands = by_key.get(key)
            if cands:
                if len(cands) == 1:
                    return cands[0], swapped
                ts = _ts_seconds(r.get("ts"))
                return min(cands, key=lambda c: 0 if c.first_ts - 1 <= ts <= c.last_ts + 1 else abs(ts - c.first_ts)), swapped
        return None, False

    def candidates(index: dict[tuple, list[int]], keys: list[tuple]) -> tuple[list[int], list[int]]:
        """(best, pairing): the candidates of the finest key that matches, and those of the
        key without body length (or the coarsest), which is what pairing is judged on."""
        found = [index.get(k, []) if k is not None else [] for k in keys]
        best = next((f for f in found if f), [])
        return best, found[1] or found[2]

    claimed_req: dict[int, set] = defaultdict(set)
    claimed_resp: dict[int, set] = defaultdict(set)

    first_unpaired: dict[int, int] = {}  # connection -> its first record saying pairing_uncertain

    def seen(cands: list[int], outs: list, direction: int) -> list[int]:
        # A record's request or response begins with its start line, so it
        # holds a message whose first byte was captured: for a response,
        # its final response's (after any 1xx).
        kept = [i for i in cands if not _lost_at(outs[i].conn.lost[direction], outs[i].exchange.req if direction == C2S
                                                 else (outs[i].exchange.final, outs[i].exchange.resp[1]))]
        return kept or cands

    def pick(cands: list[int], claimed: set) -> int:
        for i in cands:
            if i not in claimed:
                return i
        return cands[0]

    for n, r in enumerate(records):
        c, swapped = conn_for(r)
        if c is None:
            v.extra.append(n)
            continue
        if swapped:
            v.swapped_records += 1
            v.extra.append(n)
            continue
        if "pairing_uncertain" in (r.get("anomalies") or ()):
            first_unpaired.setdefault(id(c), n)
        req, resp = r.get("request"), r.get("response")
        rq = rs = rq_pair = rs_pair = []
        if req:
            rq, rq_pair = candidates(req_index[id(c)], _request_keys(req.get("method"), req.get("uri"), req.get("host"), req.get("body_len"),
                                                                     req.get("missed_bytes"), req.get("headers")))
        if resp:
            rs, rs_pair = candidates(resp_index[id(c)], _response_keys(resp.get("status"), resp.get("reason"), resp.get("body_len"),
                                                                       resp.get("missed_bytes"), [i.get("status") for i in resp.get("interim") or []],
                                                                       resp.get("headers")))
        outs = outcome_of[id(c)]
        # Among identical messages, one whose start line was lost cannot be
        # in a record: prefer those the capture still has.
        rq, rq_pair = seen(rq, outs, C2S), seen(rq_pair, outs, C2S)
        rs, rs_pair = seen(rs, outs, S2C), seen(rs_pair, outs, S2C)
        held: list[int] = []
        if rq and rs:
            # Paired right when some transaction fits both halves; prefer the finest fit.
            both = next((b for b in ([i for i in a if i in z] for a, z in ((rq, rs), (rq, rs_pair), (rq_pair, rs), (rq_pair, rs_pair))) if b), [])
            if both:
                held = [pick(both, claimed_req[id(c)])]
                claimed_req[id(c)].add(held[0])
                claimed_resp[id(c)].add(held[0])
            else:
                iq, is_ = pick(rq, claimed_req[id(c)]), pick(rs, claimed_resp[id(c)])
                claimed_req[id(c)].add(iq)
                claimed_resp[id(c)].add(is_)
                held = [iq, is_]
                v.mispaired_records += 1
                v.mispaired_unflagged_records += not r.get("anomalies")
                outs[iq].mispaired_with.add((c.key, outs[is_].truth["trans_depth"]))
                outs[is_].mispaired_with.add((c.key, outs[iq].truth["trans_depth"]))
        elif rq:
            held = [pick(rq, claimed_req[id(c)])]
            claimed_req[id(c)].add(held[0])
        elif rs:
            held = [pick(rs, claimed_resp[id(c)])]
            claimed_resp[id(c)].add(held[0])
        if not held:
            v.extra.append(n)
            continue
        for i in held:
            o = outs[i]
            o.records.append(n)
            if len(held) == 1 and o.exact_record is None and not o.damaged and record_fields(r) == truth_fields(o.truth):
                o.exact_record = n

    # Per transaction, how many transactions before it on its connection no
    # logger can count.  A run of consecutive transactions whose request
    # lines were all lost is one lost stretch of the client's stream (what
    # is left of their requests is junk to a reader): it held at least one
    # request, how many more the client's stream cannot say.  The server's
    # says more: each of their responses whose status line was captured
    # makes a record (request_missing), and each lost server stretch that
    # begins where a response the reader could frame ended holds at least
    # one response start (unless it could have been only the next one's 100
    # Continue: see _countable).  A run of k counts max(1, those); the rest
    # of it is uncountable for every transaction after it.
    uncountable: dict[int, int] = {}
    for c in conns:
        outs = outcome_of[id(c)]
        hidden = 0
        run: list[int] = []
        for i in range(len(outs) + 1):
            if i < len(outs) and _lost_at(c.lost[C2S], outs[i].exchange.req):
                run.append(i)
                continue
            if run:
                hidden += len(run) - _countable(c, run)
                run = []
            if i < len(outs):
                uncountable[id(outs[i])] = hidden

    for o in v.outcomes:
        if o.mispaired_with:
            o.category = "mispaired"
        elif o.damaged:
            if not o.records:
                o.category = "damaged_unseen" if o.unseen else "missing"
            elif any(not records[i].get("anomalies") for i in o.records):
                o.category = "damaged_unflagged"
            else:
                o.category = "damaged_flagged"
        elif o.exact_record is not None:
            o.category = "exact"
            v.extra += [i for i in o.records if i != o.exact_record]
        elif o.records:
            o.category = "undamaged_not_exact"
            recs = [records[i] for i in o.records]
            if all("pairing_uncertain" in (r.get("anomalies") or ()) for r in recs):
                v.unpaired += 1
                o.excuse = "unpaired"
            elif (len(recs) == 1 and first_unpaired.get(id(o.conn), len(records)) < o.records[0]
                  and dict(record_fields(recs[0]), trans_depth=0) == dict(truth_fields(o.truth), trans_depth=0)):
                v.renumbered += 1
                o.excuse = "renumbered"
            elif len(recs) == 1 and dict(record_fields(recs[0]), trans_depth=0) == dict(truth_fields(o.truth), trans_depth=0) \
                    and 0 < o.truth["trans_depth"] - (recs[0].get("trans_depth") or 0) <= uncountable[id(o)]:
                v.uncounted += 1
                o.excuse = "uncounted"
        else:
            o.category = "missing"
        v.counts[o.category] += 1
        v.damaged += o.damaged
        if o.after_loss:
            v.after_loss += 1
            v.after_loss_exact += o.category == "exact"
    for c in CATEGORIES:
        v.counts.setdefault(c, 0)
    v.extra = sorted(set(v.extra))
    v.extra_unflagged = sum(1 for i in v.extra if not records[i].get("anomalies"))
    return v


def check_files(truth_path, original, sidecar_path, records_path, ref: Reference | None = None) -> DamageVerdict:
    truth = json.loads(Path(truth_path).read_text())
    ref = ref or Reference(truth, original)
    sidecar = json.loads(Path(sidecar_path).read_text()) if sidecar_path else None
    records, bad = read_records(records_path)
    return check(ref, sidecar, records, bad)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--truth", required=True, type=Path, help="truth.json of the corpus")
    ap.add_argument("--original", required=True, type=Path, help="the clean corpus.pcap the copy was made from")
    ap.add_argument("--sidecar", type=Path, default=None, help="the copy's sidecar from bench/transform.py (none: the clean corpus)")
    ap.add_argument("--records", required=True, type=Path, help="sniffd's records for the copy (JSON lines)")
    ap.add_argument("--json", type=Path, default=None, help="write the whole verdict here")
    ap.add_argument("--limit", type=int, default=20, help="problem lines printed per category")
    args = ap.parse_args(argv)
    try:
        v = check_files(args.truth, args.original, args.sidecar, args.records)
    except InstrumentError as e:
        print(f"damage: instrument error (not a sniffd result): {e}", file=sys.stderr)
        return 2
    print(v.summary())
    for name, ok, value in v.targets():
        print(f"  {'met   ' if ok else 'MISSED'} {name:<40} {value}")
    for line in v.problems(args.limit):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(v.to_json(), indent=1) + "\n")
    return 0 if v.ok else 1


if __name__ == "__main__":
    sys.exit(main())
