"""The instrument itself: bench/transform.py does what its sidecar says, bench/damage.py judges right.

These tests do not depend on sniffd's behaviour (except the last, the clean
baseline), so they pass whatever state sniffd is in; a failure here is a
fault of the instrument.
"""

from __future__ import annotations

import copy
import json
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest

import damage
import transform
from tests import httpgen

pytestmark = pytest.mark.live

ALL = ["shuffle", "duplicate", "resegment"]


def frames_of(path: Path) -> list[transform.Packet]:
    return transform.read_pcap(path).packets


def make(corpus, tmp_path: Path, transforms: list[str], seed: int = 1, **params) -> tuple[list[transform.Packet], dict]:
    out = tmp_path / f"{'+'.join(transforms)}-{seed}.pcap"
    side = transform.transform_file(corpus.pcap, out, transforms, transform.Params(seed=seed, **params))
    return frames_of(out), side


def packets_holding(original: list, conn, direction: int, offset: int) -> list[int]:
    """The input indexes of the data packets of ``conn`` that hold stream ``offset`` of ``direction``."""
    base = conn.base[direction]
    held = []
    for p in original:  # conn.key is the client's address and port
        end = (transform.ip_text(p.src), p.sport) if direction == transform.C2S else (transform.ip_text(p.dst), p.dport)
        if p.is_data and end == conn.key and (p.seq - base) % (1 << 32) <= offset < (p.seq - base) % (1 << 32) + p.payload_len:
            held.append(p.index)
    return held


def packet_holding(original: list, conn, direction: int, offset: int) -> int:
    """The input index of the (first) data packet of ``conn`` that holds stream ``offset`` of ``direction``."""
    held = packets_holding(original, conn, direction, offset)
    if not held:
        raise AssertionError(f"no packet holds offset {offset}")
    return held[0]


def only_packet_holding(original: list, conn, direction: int, offset: int) -> int | None:
    """Like packet_holding, None when no packet or more than one (a retransmission) holds it."""
    held = packets_holding(original, conn, direction, offset)
    return held[0] if len(held) == 1 else None


def test_same_seed_same_bytes_other_seed_other_bytes(corpus, tmp_path):
    a = tmp_path / "a.pcap"
    b = tmp_path / "b.pcap"
    c = tmp_path / "c.pcap"
    everything = ALL + ["loss"]
    side_a = transform.transform_file(corpus.pcap, a, everything, transform.Params(seed=7))
    side_b = transform.transform_file(corpus.pcap, b, everything, transform.Params(seed=7))
    transform.transform_file(corpus.pcap, c, everything, transform.Params(seed=8))
    assert a.read_bytes() == b.read_bytes()
    drop_times = lambda s: {k: v for k, v in s.items() if k not in ("made_in_s", "output", "input")}  # noqa: E731
    assert drop_times(side_a) == drop_times(side_b)
    assert a.read_bytes() != c.read_bytes()


def test_one_transform_does_not_change_what_another_chooses(corpus, tmp_path):
    _, alone = make(corpus, tmp_path, ["duplicate"], seed=3)
    _, mixed = make(corpus, tmp_path, ["duplicate", "resegment"], seed=3)
    # Same packets picked (the positions differ only by what resegment inserts, which is after the pick).
    assert [c["index"] for c in alone["duplicate"]["copies"]] == [c["index"] for c in mixed["duplicate"]["copies"]]


@pytest.mark.parametrize("transforms", [["shuffle"], ["duplicate"], ["resegment"], ["loss"], ALL, ALL + ["loss"]])
def test_output_is_time_ordered_and_checksums_hold(corpus, tmp_path, transforms):
    packets, side = make(corpus, tmp_path, transforms)
    assert side["output_packets"] == len(packets) == len(side["output_from_input"])
    original = frames_of(corpus.pcap)
    for p, source in zip(packets, side["output_from_input"]):
        if isinstance(source, int):
            assert original[source].frame == p.frame
        else:  # a piece re-cut from that input packet: same ends, same direction
            o = original[int(source[1:])]
            assert (o.src, o.sport, o.dst, o.dport) == (p.src, p.sport, p.dst, p.dport)
    assert all(a.ts <= b.ts for a, b in zip(packets, packets[1:]))
    for p in packets:
        assert p.is_tcp
        ip = p.frame[p.ip_off : p.tcp_off]
        assert 0 == transform.inet_checksum(ip), f"IP checksum of output packet {p.index}"
        total = struct.unpack_from("!H", ip, 2)[0]
        assert len(p.frame) - p.ip_off == total
        tcp = p.frame[p.tcp_off :]
        pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
        # 0xffff and 0 are the same one's-complement zero; the kernel writes either.
        assert transform.inet_checksum(pseudo + tcp) in (0, 0xFFFF), f"TCP checksum of output packet {p.index}"


def test_shuffle_permutes_each_direction_within_windows_and_keeps_the_interleaving(corpus, tmp_path):
    original = frames_of(corpus.pcap)
    packets, side = make(corpus, tmp_path, ["shuffle"], seed=2)
    assert len(original) == len(packets)
    assert side["shuffle"]["packets_moved"] > len(original) // 3
    # Every slot keeps its time (a stamp earlier than the one before it is raised to it).
    expected, last = [], (0, 0)
    for p in original:
        last = max(last, p.ts)
        expected.append(last)
    assert expected == [p.ts for p in packets]
    oc, pc = transform.assign_connections(original), transform.assign_connections(packets)
    by_key = {c.key: c for c in pc}
    moved_syn = 0
    for c in oc:
        d = by_key[c.key]
        # The order of directions on the connection is the original's (slots kept) ...
        assert [p.direction for p in c.packets] == [p.direction for p in d.packets]
        for direction in (transform.C2S, transform.S2C):
            before = [p.frame for p in c.packets if p.direction == direction]
            after = [p.frame for p in d.packets if p.direction == direction]
            # ... and each direction holds the same packets, none moved more than window_max - 1 places.
            assert Counter(before) == Counter(after)
            where = {f: i for i, f in enumerate(before)}
            assert all(abs(where[f] - i) < transform.DEFAULT_WINDOW_MAX for i, f in enumerate(after))
        first_c2s = next(p for p in d.packets if p.direction == transform.C2S)
        moved_syn += not (first_c2s.flags & transform.SYN)
    assert moved_syn > 0, "no SYN was moved behind another packet of its connection"


def test_duplicates_are_exact_copies_later_on_their_connection(corpus, tmp_path):
    original = frames_of(corpus.pcap)
    packets, side = make(corpus, tmp_path, ["duplicate"], seed=4)
    copies = side["duplicate"]["copies"]
    data = [p for p in original if p.is_data]
    assert round(transform.DEFAULT_DUP_RATE * len(data)) == len(copies) == len(packets) - len(original)
    assert Counter(p.frame for p in packets) - Counter(p.frame for p in original) == Counter(original[c["index"]].frame for c in copies)
    conns = transform.assign_connections(packets)
    for c in copies:
        frame = original[c["index"]].frame
        conn = next(x for x in conns if x.key == (c["client_ip"], c["client_port"]))
        positions = [i for i, p in enumerate(conn.packets) if p.frame == frame]
        assert len(positions) >= 2
        # Packets of the connection between original and copy, not counting other copies (a frame seen before).
        seen = {q.frame for q in conn.packets[: positions[0] + 1]}
        between = 0
        for q in conn.packets[positions[0] + 1 : positions[-1]]:
            between += q.frame not in seen
            seen.add(q.frame)
        assert c["packets_later"] == between <= transform.DEFAULT_DUP_MAX_DISTANCE


def test_resegmented_pieces_carry_the_streams_own_bytes_at_other_offsets(corpus, tmp_path):
    original = frames_of(corpus.pcap)
    packets, side = make(corpus, tmp_path, ["resegment"], seed=5)
    copies = side["resegment"]["copies"]
    assert len(copies) == round(transform.DEFAULT_RESEG_RATE * sum(1 for p in original if p.payload_len >= 2))
    assert {"within", "spanning"} == {c["kind"] for c in copies}
    conns = {c.key: c for c in corpus.ref.all_conns}
    original_frames = Counter(p.frame for p in original)
    new = [p for p in packets if not original_frames[p.frame]]
    assert len(copies) == len(new)
    pieces = {(c["client_port"], c["piece_seq"], c["piece_len"]) for c in copies}
    for p in new:
        conn = conns[(transform.ip_text(p.src), p.sport)] if (transform.ip_text(p.src), p.sport) in conns else conns[(transform.ip_text(p.dst), p.dport)]
        direction = transform.C2S if (transform.ip_text(p.src), p.sport) == conn.key else transform.S2C
        off = (p.seq - conn.base[direction]) % (1 << 32)
        assert conn.streams[direction][off : off + p.payload_len] == p.payload
        assert (conn.key[1], p.seq, p.payload_len) in pieces
        # Cut at other offsets: no original segment of that direction has this exact range.
        assert not any(o.seq == p.seq and o.payload_len == p.payload_len for o in original
                       if o.is_data and (o.src, o.sport) == (p.src, p.sport))


def test_loss_sidecar_lists_exactly_the_packets_missing(corpus, tmp_path):
    original = frames_of(corpus.pcap)
    packets, side = make(corpus, tmp_path, ["loss"], seed=6)
    dropped = side["loss"]["dropped"]
    data = [p for p in original if p.is_data]
    assert round(transform.DEFAULT_LOSS_RATE * len(data)) == len(dropped) > 0
    assert Counter(p.frame for p in original) - Counter(p.frame for p in packets) == Counter(original[d["index"]].frame for d in dropped)
    for d in dropped:
        p = original[d["index"]]
        assert (d["seq"], d["len"]) == (p.seq, p.payload_len) and p.payload_len > 0
        assert (d["client_port"] == p.sport) == (d["direction"] == "client_to_server")


def test_explicit_drop_list_drops_exactly_those(corpus, tmp_path):
    original = frames_of(corpus.pcap)
    data = [p.index for p in original if p.is_data]
    packets, side = make(corpus, tmp_path, [], drop_packets=(data[3], data[-1]))
    assert [data[3], data[-1]] == [d["index"] for d in side["loss"]["dropped"]]
    assert len(original) - 2 == len(packets)
    with pytest.raises(transform.TransformError):
        make(corpus, tmp_path, [], drop_packets=(next(p.index for p in original if not p.is_data),))


def test_httpgen_reader_frames_every_stream_byte_into_one_message(corpus):
    """The clean streams split into requests/responses that tile each stream (the Reference already checked them against truth)."""
    assert len(corpus.truth) == sum(len(c.exchanges) for c in corpus.ref.conns)
    for c in corpus.ref.conns:
        ends = [0, 0]
        for ex in c.exchanges:
            assert ex.req[0] == ends[0] and ex.resp[0] == ends[1]
            ends = [ex.req[1], ex.resp[1]]
        assert ends == [len(c.streams[0]), len(c.streams[1])]
    labels = Counter(t["label"] for t in corpus.truth)
    assert set(labels) == set(httpgen.PLANNERS), labels
    assert any(t["interim"] == [100] for t in corpus.truth) and any(t["method"] == "HEAD" for t in corpus.truth)


# --- the verifier on records made from the truth (no sniffd) ---------------------------------


def ideal_records(corpus) -> list[dict]:
    """What a perfect logger would write, built from truth and the framed headers."""
    out = []
    for c in corpus.ref.conns:
        for ex, t in zip(c.exchanges, c.truth):
            out.append({
                "ts": "2030-01-01T00:00:00.000000Z",
                "client": {"ip": t["client_ip"], "port": t["client_port"]},
                "server": {"ip": t["server_ip"], "port": t["server_port"]},
                "request": {"method": ex.method, "uri": ex.uri, "version": "1.1", "host": ex.host,
                            "headers": {n: httpgen.header_value(ex.req_headers, n) for n, _ in ex.req_headers},
                            "body_len": ex.req_body_len, "missed_bytes": 0},
                "response": {"status": ex.status, "reason": ex.reason, "version": "1.1",
                             "headers": {n: httpgen.header_value(ex.resp_headers, n) for n, _ in ex.resp_headers},
                             "body_len": ex.resp_body_len, "missed_bytes": 0,
                             "interim": [{"status": s, "reason": httpgen.REASONS[s]} for s in ex.interim]},
                "trans_depth": t["trans_depth"],
                "anomalies": [],
            })
    return out


def test_verifier_passes_ideal_records_and_catches_a_swap(corpus):
    records = ideal_records(corpus)
    v = damage.check(corpus.ref, None, records)
    assert (True, len(corpus.truth), 0) == (v.ok, v.counts["exact"], len(v.extra)), v.summary()

    # Swap the responses of two transactions with different responses: both mispaired, even if flagged.
    bad = copy.deepcopy(records)
    i = next(i for i, r in enumerate(bad[:-1]) if r["response"]["status"] != bad[i + 1]["response"]["status"]
             and r["client"] == bad[i + 1]["client"])
    bad[i]["response"], bad[i + 1]["response"] = bad[i + 1]["response"], bad[i]["response"]
    bad[i]["anomalies"] = ["tcp_gap"]
    v = damage.check(corpus.ref, None, bad)
    assert 2 == v.counts["mispaired"] == v.truth - v.counts["exact"]
    assert not v.ok

    # Trust no trans_depth: the same records with depths shuffled are mispaired nowhere, just not exact.
    bad = copy.deepcopy(records)
    for r in bad:
        r["trans_depth"] = 1
    v = damage.check(corpus.ref, None, bad)
    assert 0 == v.counts["mispaired"]
    assert len(corpus.truth) - sum(1 for t in corpus.truth if t["trans_depth"] == 1) == v.counts["undamaged_not_exact"]

    # A missing record and an invented one.
    bad = copy.deepcopy(records[1:]) + [dict(copy.deepcopy(records[0]), request=dict(records[0]["request"], uri="/nowhere"), response=None)]
    v = damage.check(corpus.ref, None, bad)
    assert (1, 1, 1) == (v.counts["missing"], len(v.extra), v.extra_unflagged)


def test_verifier_classifies_damage_from_the_sidecar(corpus, tmp_path):
    """Drop the packet holding a response's status line: that transaction is damaged, the rest not; judged by flags and pairing."""
    records = ideal_records(corpus)
    original = frames_of(corpus.pcap)
    conn = next(c for c in corpus.ref.conns if len(c.exchanges) >= 3)
    ex = conn.exchanges[1]
    _, side = make(corpus, tmp_path, [], drop_packets=(packet_holding(original, conn, transform.S2C, ex.resp[0]),))
    v = damage.check(corpus.ref, side, records)
    damaged = [o for o in v.outcomes if o.damaged]
    assert conn.truth[1]["trans_depth"] in [o.truth["trans_depth"] for o in damaged if o.conn is conn]
    # The ideal records claim the damaged transaction complete, with no anomaly: not flagged.
    assert len(damaged) == v.counts["damaged_unflagged"] and not v.ok
    for r in records:
        if any(o.truth["client_port"] == r["client"]["port"] and o.truth["trans_depth"] == r["trans_depth"] for o in damaged):
            r["anomalies"] = ["tcp_gap"]
            r["response"] = None
    v = damage.check(corpus.ref, side, records)
    assert (len(damaged), 0) == (v.counts["damaged_flagged"], v.counts["mispaired"])
    assert v.ok, v.summary()
    assert v.after_loss == v.after_loss_exact == sum(1 for o in v.outcomes if o.conn is conn and not o.damaged
                                                       and o.exchange.resp[0] > ex.resp[0])


def test_verifier_counts_a_transaction_without_start_lines_as_unseen(corpus, tmp_path):
    """Lose the first byte of a request and of its response: no request line and no status line
    is left, so no record is expected (damaged_unseen); with the response's first byte kept, a
    record could say request_missing, so the same absence is ``missing``."""
    original = frames_of(corpus.pcap)
    conn = next(c for c in corpus.ref.conns if len(c.exchanges) >= 3 and c.exchanges[1].resp[1] - c.exchanges[1].resp[0] > 3000)
    ex = conn.exchanges[1]
    req_pkt = packet_holding(original, conn, transform.C2S, ex.req[0])
    resp_pkt = packet_holding(original, conn, transform.S2C, ex.resp[0])
    depth = conn.truth[1]["trans_depth"]
    records = [r for r in ideal_records(corpus)
               if not (r["client"]["port"] == conn.truth[1]["client_port"] and r["trans_depth"] == depth)]
    for drop, expected in (((req_pkt, resp_pkt), "damaged_unseen"), ((req_pkt,), "missing")):
        _, side = make(corpus, tmp_path, [], drop_packets=drop)
        v = damage.check(corpus.ref, side, records)
        ours = next(o for o in v.outcomes if o.conn is conn and o.truth["trans_depth"] == depth)
        assert expected == ours.category, v.summary()


def test_verifier_gives_a_record_the_identical_message_the_capture_still_has(corpus, tmp_path):
    """Two identical answers on one connection (204, no body); the first is lost whole, and the
    second's request too: the record holding the second answer alone is the second's, not the
    first's (a record cannot hold bytes the capture lost)."""
    original = frames_of(corpus.pcap)

    def same(a, b) -> bool:
        return (a.status, a.resp_body_len, a.interim) == (b.status, b.resp_body_len, b.interim) == (204, 0, [])

    conn, i, j = next((c, i, j) for c in corpus.ref.conns for i in range(len(c.exchanges)) for j in range(i + 1, len(c.exchanges))
                      if same(c.exchanges[i], c.exchanges[j]))
    first, second = conn.exchanges[i], conn.exchanges[j]
    drop = (packet_holding(original, conn, transform.S2C, first.resp[0]), packet_holding(original, conn, transform.C2S, second.req[0]))
    answer_then_request_lost(corpus, tmp_path, conn, i, j, drop)


def answer_then_request_lost(corpus, tmp_path, conn, i: int, j: int, drop: tuple) -> None:
    """With ``drop`` lost, records saying transaction i's answer and j's request
    are missing: the verifier finds both damaged and flagged."""
    _, side = make(corpus, tmp_path, [], drop_packets=drop)
    port = conn.truth[0]["client_port"]
    records = ideal_records(corpus)
    for r in records:
        if r["client"]["port"] == port and r["trans_depth"] == conn.truth[i]["trans_depth"]:
            r["response"], r["anomalies"] = None, ["response_missing", "tcp_gap"]
        if r["client"]["port"] == port and r["trans_depth"] == conn.truth[j]["trans_depth"]:
            r["request"], r["anomalies"] = None, ["request_missing", "tcp_gap"]
    v = damage.check(corpus.ref, side, records)
    ours = {o.truth["trans_depth"]: o.category for o in v.outcomes if o.conn is conn and o.truth["trans_depth"] in
            (conn.truth[i]["trans_depth"], conn.truth[j]["trans_depth"])}
    assert {conn.truth[i]["trans_depth"]: "damaged_flagged", conn.truth[j]["trans_depth"]: "damaged_flagged"} == ours, v.summary()


def test_verifier_gives_a_record_the_final_answer_the_capture_still_has(corpus, tmp_path):
    """Two identical answers after a 100 Continue on one connection; the
    first's final answer is lost (its 100 Continue captured), and the
    second's request line too: the record holding the second final answer
    alone is the second's.  (It was given to the first, whose bytes were not
    all lost, and the second was called missing.)"""
    original = frames_of(corpus.pcap)

    def answer(ex):
        return ex.status, ex.reason, ex.resp_body_len, ex.interim, damage._sig(dict(ex.resp_headers), damage.RESPONSE_ID_HEADERS)

    def final(c, ex) -> int:  # the final answer's first byte: after the 100 Continue's head
        return c.streams[transform.S2C].index(b"\r\n\r\n", ex.resp[0]) + 4

    def fits(c, i, j) -> bool:
        a, b = c.exchanges[i], c.exchanges[j]
        ps = [only_packet_holding(original, c, transform.S2C, a.resp[0]), only_packet_holding(original, c, transform.S2C, final(c, a)),
              only_packet_holding(original, c, transform.C2S, b.req[0])]
        return a.interim == [100] and answer(a) == answer(b) and None not in ps and ps[0] != ps[1]

    conn, i, j = next((c, i, j) for c in corpus.ref.conns for i in range(len(c.exchanges)) for j in range(i + 1, len(c.exchanges))
                      if fits(c, i, j))
    first, second = conn.exchanges[i], conn.exchanges[j]
    drop = (only_packet_holding(original, conn, transform.S2C, final(conn, first)),
            only_packet_holding(original, conn, transform.C2S, second.req[0]))
    answer_then_request_lost(corpus, tmp_path, conn, i, j, drop)


def test_verifier_counts_what_the_capture_still_shows_of_lost_request_lines(corpus, tmp_path):
    """Two requests in a row lost, the first one's answer captured and the
    second's lost from its first byte.  When the first answer was captured
    whole, the lost server bytes began where a response ended: a logger can
    count both, so a later record one lower is wrong.  When the first
    answer's last segment was lost too, nothing shows a second exchange
    (the lost client bytes held at least one request, and one answer came):
    one lower is allowed ('uncounted').  (Before, only runs of whole
    exchanges lost were counted, so the second case failed as well.)"""
    original = frames_of(corpus.pcap)

    def pkt(c, d, off) -> int | None:
        return only_packet_holding(original, c, d, off)

    def fits(c, i) -> bool:
        a, b = c.exchanges[i], c.exchanges[i + 1]
        ps = [pkt(c, transform.C2S, a.req[0]), pkt(c, transform.C2S, b.req[0]), pkt(c, transform.S2C, a.resp[0]),
              pkt(c, transform.S2C, a.resp[1] - 1), pkt(c, transform.S2C, b.resp[0])]
        return None not in ps and len(set(ps)) == 5

    conn, i = next((c, i) for c in corpus.ref.conns if c.truth[0]["label"] == "keepalive" for i in range(1, len(c.exchanges) - 2)
                   if fits(c, i))
    a, b = conn.exchanges[i], conn.exchanges[i + 1]
    port = conn.truth[0]["client_port"]
    later = len(conn.exchanges) - i - 2

    def check(tail_lost: bool):
        drop = {pkt(conn, transform.C2S, a.req[0]), pkt(conn, transform.C2S, b.req[0]), pkt(conn, transform.S2C, b.resp[0])}
        if tail_lost:
            drop.add(pkt(conn, transform.S2C, a.resp[1] - 1))
        _, side = make(corpus, tmp_path, [], drop_packets=sorted(drop))
        out = []
        for r in ideal_records(corpus):
            if r["client"]["port"] == port:
                if r["trans_depth"] == conn.truth[i]["trans_depth"]:
                    r["request"], r["anomalies"] = None, ["request_missing", "tcp_gap"]
                elif r["trans_depth"] == conn.truth[i + 1]["trans_depth"]:
                    continue  # no request line, no status line: no record
                elif r["trans_depth"] > conn.truth[i + 1]["trans_depth"]:
                    r = dict(r, trans_depth=r["trans_depth"] - 1)
            out.append(r)
        return damage.check(corpus.ref, side, out)

    v = check(tail_lost=True)
    assert (False, True, later) == (v.ok, v.ok_unless_undecided, v.uncounted), v.summary()
    v = check(tail_lost=False)
    assert (False, False, 0) == (v.ok, v.ok_unless_undecided, v.uncounted), v.summary()


def test_verifier_allows_undecided_windows_only_when_flagged(corpus, tmp_path):
    """ok_unless_undecided: a transaction written as two records, both pairing_uncertain, is
    'unpaired'; a later one on that connection differing in trans_depth alone is 'renumbered';
    without the flag neither is excused."""
    original = frames_of(corpus.pcap)
    lossy = next(c for c in corpus.ref.conns if len(c.exchanges) >= 3)
    ex = lossy.exchanges[1]
    _, side = make(corpus, tmp_path, [], drop_packets=(packet_holding(original, lossy, transform.S2C, ex.resp[0]),))
    clean = damage.check(corpus.ref, side, ideal_records(corpus))
    damaged = {(o.truth["client_port"], o.truth["trans_depth"]) for o in clean.outcomes if o.damaged}
    other = next(c for c in corpus.ref.conns if len(c.exchanges) >= 3 and c is not lossy)
    port = other.truth[0]["client_port"]

    def records(flag: bool) -> list[dict]:
        out = []
        for r in ideal_records(corpus):
            if (r["client"]["port"], r["trans_depth"]) in damaged:
                r["anomalies"], r["response"] = ["tcp_gap"], None
            if r["client"]["port"] == port and r["trans_depth"] == 1:
                names = ["pairing_uncertain"] if flag else []
                out.append(dict(r, response=None, anomalies=names + ["response_missing"]))
                out.append(dict(r, request=None, anomalies=names + ["request_missing"], trans_depth=2))
                continue
            if r["client"]["port"] == port:
                r = dict(r, trans_depth=r["trans_depth"] + 1)
            out.append(r)
        return out

    v = damage.check(corpus.ref, side, records(True))
    assert (False, True, 1, len(other.exchanges) - 1) == (v.ok, v.ok_unless_undecided, v.unpaired, v.renumbered), v.summary()
    v = damage.check(corpus.ref, side, records(False))
    assert (False, False, 0, 0) == (v.ok, v.ok_unless_undecided, v.unpaired, v.renumbered), v.summary()


def test_sniffd_reads_the_clean_corpus_exactly(corpus, tmp_path, sniffd_exe):
    """The baseline the transformed copies are measured against (issue 10 is only about damaged copies)."""
    out = tmp_path / "clean.jsonl"
    subprocess.run([str(sniffd_exe), "read", str(corpus.pcap), "-o", str(out)], check=True, timeout=60)
    records, bad = damage.read_records(out)
    v = damage.check(corpus.ref, None, records, bad)
    assert v.ok, v.summary() + "\n" + "\n".join(v.problems())
    assert json.loads(json.dumps(v.to_json()))["ok"] is True


def test_verifier_allows_a_lower_trans_depth_only_after_a_run_of_whole_lost_transactions(corpus, tmp_path):
    """Two consecutive transactions lost whole (no start line left either way) are one lost stretch
    to a logger, which cannot tell it held two: a later record on that connection one lower in
    trans_depth is 'uncounted', excused; two lower, or one lower with only one transaction lost, is not."""
    original = frames_of(corpus.pcap)
    conn, i = next((c, i) for c in corpus.ref.conns for i in range(1, len(c.exchanges) - 2))
    lost = (conn.exchanges[i], conn.exchanges[i + 1])
    port = conn.truth[0]["client_port"]
    later = len(conn.exchanges) - i - 2

    def check(whole_lost: int, lower: int):
        drop = sorted({packet_holding(original, conn, d, (ex.req if d == transform.C2S else ex.resp)[0])
                       for ex in lost[:whole_lost] for d in (transform.C2S, transform.S2C)})
        _, side = make(corpus, tmp_path, [], drop_packets=drop)
        clean = damage.check(corpus.ref, side, ideal_records(corpus))
        unseen = {o.truth["trans_depth"] for o in clean.outcomes if o.conn is conn and o.unseen}
        assert {conn.truth[k]["trans_depth"] for k in range(i, i + whole_lost)} == unseen, clean.summary()
        damaged = {(o.truth["client_port"], o.truth["trans_depth"]) for o in clean.outcomes if o.damaged}
        out = []
        for r in ideal_records(corpus):
            if r["client"]["port"] == port and r["trans_depth"] in unseen:
                continue
            if (r["client"]["port"], r["trans_depth"]) in damaged:
                r["anomalies"] = ["tcp_gap"]
            if r["client"]["port"] == port and r["trans_depth"] > conn.truth[i + 1]["trans_depth"]:
                r = dict(r, trans_depth=r["trans_depth"] - lower)
            out.append(r)
        return damage.check(corpus.ref, side, out)

    v = check(2, 1)
    assert (False, True, later, 0, 0) == (v.ok, v.ok_unless_undecided, v.uncounted, v.renumbered, v.unpaired), v.summary()
    v = check(2, 2)
    assert (False, 0) == (v.ok_unless_undecided, v.uncounted), v.summary()
    v = check(1, 1)
    assert (False, 0) == (v.ok_unless_undecided, v.uncounted), v.summary()


def test_bench_compares_two_outputs_by_how_their_uids_group_records_not_by_their_values(tmp_path):
    """bench/run.py's one-process vs --workers check: every run draws its own
    uids, so equal outputs differ in the values; they must still group the
    same records into connections (it reported DIFFERS at line 1 for every
    run since the uid field came, before the numbering)."""
    import run

    def uid(ch: str) -> str:
        return "C" + ch * 17

    def write(name: str, *uids: str) -> Path:
        path = tmp_path / name
        path.write_text("".join(f'{{"kind":"http","uid":"{u}","n":{i}}}\n' for i, u in enumerate(uids)))
        return path

    one = write("w1", uid("A"), uid("B"), uid("A"))
    assert run.same_lines(one, write("w2", uid("X"), uid("Y"), uid("X"))) is None
    assert run.same_lines(one, write("merged", uid("X"), uid("X"), uid("X"))) == 2
    assert run.same_lines(one, write("split", uid("X"), uid("Y"), uid("Z"))) == 3
    assert run.same_lines(one, write("short", uid("X"), uid("Y"))) == 3


def test_bench_short_tls_check_passes_sniffds_records_and_catches_each_wrong_one(tmp_path, sniffd_exe):
    """bench/run.py --tls: the copies bench/tls_corpus.py makes are judged
    against the generator's own record of each copy (the answer key of the
    source connection, its payload bytes each way).  sniffd's records of a
    25-copy corpus pass; a changed field, a copy's record missing, a record
    twice and an HTTP record each fail."""
    import run
    import tls_corpus

    pcap, truth_path = tmp_path / "tls.pcap", tmp_path / "tls.json"
    assert tls_corpus.build(25, pcap, truth_path) == 25 * 13
    truth = json.loads(truth_path.read_text())
    out = tmp_path / "tls.jsonl"
    subprocess.run([sniffd_exe, "read", str(pcap), "-o", str(out)], check=True)
    ok, summary, problems = run.verify_tls(truth, out)
    assert (ok, summary, problems) == (True, "25 of 25 TLS connections exact", [])
    lines = out.read_bytes().splitlines(keepends=True)

    def judged(records: list[bytes]) -> tuple[bool, list[str]]:
        bad = tmp_path / "bad.lines"  # not .jsonl: the suite's schema scan reads only real outputs
        bad.write_bytes(b"".join(records))
        ok, _, problems = run.verify_tls(truth, bad)
        return ok, problems

    rec = json.loads(lines[2])
    rec["tls"]["sni"] = "other.test"
    ok, problems = judged(lines[:2] + [json.dumps(rec).encode() + b"\n"] + lines[3:])
    assert not ok and "sni" in problems[0]
    rec = json.loads(lines[4])
    rec["tls"]["server_bytes"] += 1
    ok, problems = judged(lines[:4] + [json.dumps(rec).encode() + b"\n"] + lines[5:])
    assert not ok and "bytes" in problems[0]
    assert judged(lines[:-1]) == (False, ["1 copy without a record"])
    ok, problems = judged(lines + lines[:1])
    assert not ok and "not one of the copies' records" in problems[0]
    http = b'{"kind":"http","client":{"ip":"10.0.0.1","port":20000}}\n'
    ok, problems = judged([http] + lines[1:])
    assert not ok and "kind 'http'" in problems[0]
