"""Floods: the real ``sniffd read`` on generated hostile captures, with a small
memory budget, while legitimate keep-alive transactions go on around them.

Each test writes one capture (tests/flood/floodgen.py: raw struct-packed
frames, a million in about a second) holding one flood and about twenty
legitimate transactions on seven keep-alive connections (three exchanges
each): one connection before the flood starts, five during it, one after it
ends.  It runs ``sniffd read -c small.toml FLOOD.pcap -o OUT --stats`` as a
child process, takes its peak RSS from ``os.wait4`` (``ru_maxrss``, KiB; see
_PEAK_RSS for why through a small wrapper process), and asserts:

* exit status 0;
* peak RSS < memory_budget_mb + FIXED_OVERHEAD, where FIXED_OVERHEAD is the
  peak RSS of the same command on a tiny capture (the interpreter, httptools,
  libpcap: ~36 MB here), measured once per session, plus RSS_MARGIN_MB;
* every legitimate transaction has exactly one record with the right method,
  URI, status and body lengths, no anomaly and end_reason "complete";
* the counters that show the flood reached its bound are non-zero, so the
  test cannot pass by the flood missing the limit it is aimed at.

Each flood is sized so that a sniffd that ignored the bound it targets would
hold far more than the RSS bound allows (numbers in each test).
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import floodgen as fg  # noqa: E402

SNIFFD = Path(sys.executable).parent / "sniffd"
MiB = 1024 * 1024
# The budget every flood runs under: small, so each flood presses on it.
BUDGET_MB = 32
# Slack above budget + baseline: sniffd's estimate is of the objects it
# holds, not of what the allocator keeps around them (free lists, arena
# fragmentation after a million connections came and went, the pcap batch
# buffers, records on their way out).  The SYN flood, which fills the
# budget with the most objects, peaks ~3 MB above budget + baseline.
RSS_MARGIN_MB = 30
# Packet spacing of the floods: 10 us (100,000 frames a second of capture
# time), the SYN flood 3 us (333,000 SYNs a second).
STEP_US = 10
# Legitimate connections: seven, three keep-alive exchanges each (21
# transactions), 20 us between their packets (a LAN: each connection lives
# under a millisecond).
LEGIT_CONNECTIONS = 7
LEGIT_PER_CONNECTION = 3
RUN_TIMEOUT_S = 300


@dataclass
class Run:
    returncode: int
    peak_rss_kib: int
    seconds: float
    stats: dict
    records: list[dict]
    stderr: str
    # Records not kept (run_measured's ``keep``): how many of each
    # (end_reason, response status) there were.
    others: collections.Counter

    @property
    def anomalies(self) -> dict[str, int]:
        return self.stats.get("anomalies", {})

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_kib / 1024


def _toml(limits: dict, bodies: dict | None = None) -> str:
    def lines(d: dict) -> str:
        return "".join(f"{k} = {json.dumps(v)}\n" for k, v in d.items())

    text = "[limits]\n" + lines(limits)
    if bodies:
        text += "\n[bodies]\n" + lines(bodies)
    return text


# Runs the command given after it as its child and prints that child's exit
# status and peak RSS.  Why not os.wait4 on a child of pytest itself: Linux
# keeps, across exec, the high-water RSS of the process that forked (the
# kernel folds the old mm's hiwater_rss into the rusage at exec), so a
# child of this pytest process, which has just generated a capture, would
# report pytest's RSS (measured: 176-330 MB for 2-second sniffd runs).
# Forked from this small interpreter instead, sniffd starts from ~10 MB.
_PEAK_RSS = r"""
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


_SUMMARY = re.compile(r'"status":(\d+).*"end_reason":"(\w+)"')


def run_measured(work: Path, pcap: Path, limits: dict, bodies: dict | None = None, keep=None) -> Run:
    """``sniffd read -c CONFIG PCAP -o OUT --stats``; its exit status and
    peak RSS (``ru_maxrss`` from ``os.wait4``, KiB on Linux).  ``keep``: a
    test on the raw line; records it rejects are only counted by
    (end_reason, status) in ``Run.others`` (200,000 records parsed would
    cost this process hundreds of MB)."""
    config = work / f"{pcap.stem}.toml"
    config.write_text(_toml(limits, bodies))
    out = work / f"{pcap.stem}.out.jsonl"
    err_path = work / f"{pcap.stem}.stderr"
    argv = [sys.executable, "-c", _PEAK_RSS, str(SNIFFD), "read", "-c", str(config), str(pcap), "-o", str(out),
            "--stats"]
    with open(err_path, "wb") as err:
        t = time.monotonic()
        # Its own process group, so a hung run is killed with its wrapper.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                start_new_session=True, text=True)
        try:
            report_line, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        seconds = time.monotonic() - t
    assert proc.returncode == 0, f"the RSS wrapper failed: {proc.returncode}"
    returncode, peak_rss_kib = map(int, report_line.split())
    stderr = err_path.read_text(errors="replace")
    stats = {}
    for line in stderr.splitlines():
        if line.startswith("{"):
            stats = json.loads(line)
    records = []
    others: collections.Counter = collections.Counter()
    if out.exists():
        with open(out, encoding="ascii") as f:
            for line in f:
                if keep is None or keep(line):
                    records.append(json.loads(line))
                else:
                    m = _SUMMARY.search(line)
                    others[(m.group(2), int(m.group(1))) if m else None] += 1
    return Run(returncode, peak_rss_kib, seconds, stats, records, stderr, others)


@pytest.fixture(autouse=True)
def _drop_captures(tmp_path):
    """Captures are up to 170 MB each, and floodgen makes them again byte
    for byte: not kept after the test (configs, stderr and records are)."""
    yield
    for p in tmp_path.glob("*.pcap"):
        p.unlink()


@pytest.fixture(scope="session")
def fixed_overhead_mb(tmp_path_factory) -> float:
    """Peak RSS of ``sniffd read`` on a tiny capture (one keep-alive
    connection), plus RSS_MARGIN_MB: what sniffd costs whatever the traffic."""
    work = tmp_path_factory.mktemp("baseline")
    legit, _ = fg.legit_traffic([fg.T0_US])
    pcap = work / "tiny.pcap"
    fg.write_capture(pcap, iter(()), legit)
    run = run_measured(work, pcap, {"memory_budget_mb": BUDGET_MB})
    assert run.returncode == 0, run.stderr
    assert len(run.records) == LEGIT_PER_CONNECTION
    print(f"\nbaseline: sniffd read on a tiny capture, peak RSS {run.peak_rss_mb:.1f} MB")
    return run.peak_rss_mb + RSS_MARGIN_MB


def flood_pcap(path: Path, flood_frames, flood_count: int, step_us: int = STEP_US,
               first_port: int = 41000) -> tuple[Path, list[fg.Exchange], int]:
    """Write ``flood_frames`` (``flood_count`` of them, an iterable) spaced
    ``step_us`` apart from T0, with the legitimate connections spread from
    before its start to after its end.  Returns the file, the legitimate
    exchanges and the number of frames written."""
    end_us = fg.T0_US + flood_count * step_us
    legit, expected = fg.legit_traffic(fg.legit_times(fg.T0_US, end_us, LEGIT_CONNECTIONS),
                                       LEGIT_PER_CONNECTION, first_port=first_port)
    timed = ((fg.T0_US + i * step_us, f) for i, f in enumerate(flood_frames))
    frames = fg.write_capture(path, timed, legit)
    return path, expected, frames


def legit_view(ex: fg.Exchange, depth: int) -> dict:
    return {
        "client": {"ip": "10.1.0.1", "port": ex.client_port},
        "method": ex.method, "uri": ex.uri, "request_body_len": ex.request_body_len,
        "status": ex.status, "response_body_len": ex.response_body_len,
        "missed_bytes": [0, 0], "trans_depth": depth, "end_reason": "complete", "anomalies": [],
    }


def record_view(r: dict) -> dict:
    req, resp = r["request"] or {}, r["response"] or {}
    return {
        "client": r["client"],
        "method": req.get("method"), "uri": req.get("uri"), "request_body_len": req.get("body_len"),
        "status": resp.get("status"), "response_body_len": resp.get("body_len"),
        "missed_bytes": [req.get("missed_bytes"), resp.get("missed_bytes")], "trans_depth": r["trans_depth"],
        "end_reason": r["end_reason"], "anomalies": r["anomalies"],
    }


def assert_legit_logged(run: Run, expected: list[fg.Exchange]) -> None:
    """Every legitimate exchange: exactly one record, clean and complete."""
    by_port: dict[int, list[dict]] = {}
    for r in run.records:
        if r["client"]["ip"] == "10.1.0.1":
            by_port.setdefault(r["client"]["port"], []).append(r)
    ports = sorted({ex.client_port for ex in expected})
    want = {p: [legit_view(ex, k + 1) for k, ex in enumerate([e for e in expected if e.client_port == p])]
            for p in ports}
    got = {p: [record_view(r) for r in by_port.get(p, [])] for p in ports}
    assert want == got
    assert sorted(by_port) == ports, "records of legitimate clients on unexpected ports"


def assert_rss_bounded(run: Run, budget_mb: float, overhead_mb: float) -> None:
    bound = budget_mb + overhead_mb
    assert run.peak_rss_mb < bound, (
        f"peak RSS {run.peak_rss_mb:.1f} MB >= budget {budget_mb} MB + fixed overhead {overhead_mb:.1f} MB")


def report(name: str, run: Run, budget_mb: float, overhead_mb: float, gen_s: float, pcap: Path) -> None:
    counters = {k: v for k, v in run.stats.items() if k != "anomalies"}
    print(f"\n{name}: pcap {pcap.stat().st_size / MiB:.1f} MB written in {gen_s:.1f} s; "
          f"sniffd {run.seconds:.1f} s, peak RSS {run.peak_rss_mb:.1f} MB "
          f"(bound {budget_mb + overhead_mb:.1f} MB); anomalies {run.anomalies}; {counters}")


def check_run(run: Run, frames: int) -> None:
    """Exit 0, the stats line, every frame read, no internal error."""
    assert run.returncode == 0, f"sniffd exited {run.returncode}\n{run.stderr}"
    assert run.stats, f"no --stats line on stderr\n{run.stderr}"
    assert run.stats["packets"] == frames
    assert "internal_error" not in run.anomalies


# ---------------------------------------------------------------- floods


def test_syn_flood_of_a_million_tuples_stays_in_budget(tmp_path, fixed_overhead_mb):
    """1,000,000 SYNs from distinct 4-tuples, 333,000 a second of capture
    time, with max_connections above the flood: only the memory budget
    stops the table.  Unbounded, a million half-open connections would
    hold ~1.5 GB; the 32 MB budget holds ~16,000 of them."""
    n = 1_000_000
    t = time.monotonic()
    pcap, expected, written = flood_pcap(tmp_path / "syn.pcap", (f for _, f in fg.syn_flood(n, 0, 1)), n,
                                         step_us=3)
    gen_s = time.monotonic() - t
    run = run_measured(tmp_path, pcap, {"memory_budget_mb": BUDGET_MB, "max_connections": 1_000_000})
    report("syn flood", run, BUDGET_MB, fixed_overhead_mb, gen_s, pcap)
    check_run(run, written)
    assert run.anomalies.get("memory_evicted", 0) > n * 0.9, run.anomalies
    assert_legit_logged(run, expected)
    assert_rss_bounded(run, BUDGET_MB, fixed_overhead_mb)
    # SYN-only connections carried no HTTP: the legitimate ones are all.
    assert len(run.records) == len(expected)


def test_segments_far_ahead_on_thousands_of_connections_stay_in_budget(tmp_path, fixed_overhead_mb):
    """3,000 connections each send 24 segments of 1,400 bytes starting 1 MiB
    past the next expected byte (the byte before them never comes),
    round-robin, so all buffers grow together: 100 MB of data that a
    receiver waiting for the hole would hold.  The per-direction bound
    (32 KiB) cuts each wait short (tcp_buffer_overflow), and the 32 MB
    budget drops the buffers of the connections idle longest before that
    (memory_ooo_dropped)."""
    conns, segs = 3000, 24
    t = time.monotonic()
    frames = fg.far_ahead_flood(conns, segs)
    pcap, expected, written = flood_pcap(tmp_path / "far_ahead.pcap", frames, len(frames))
    del frames
    gen_s = time.monotonic() - t
    limits = {"memory_budget_mb": BUDGET_MB, "max_conn_buffer_bytes": 32 * 1024,
              "max_total_buffer_bytes": 64 * MiB}
    run = run_measured(tmp_path, pcap, limits)
    report("far-ahead segments", run, BUDGET_MB, fixed_overhead_mb, gen_s, pcap)
    check_run(run, written)
    # The far-ahead data is dropped by whichever bound it reaches first: a
    # connection's buffer (tcp_buffer_overflow) or the memory budget.
    assert run.anomalies.get("memory_ooo_dropped", 0) > 0, run.anomalies
    assert_legit_logged(run, expected)
    assert_rss_bounded(run, BUDGET_MB, fixed_overhead_mb)


def test_overlapping_segments_that_disagree_keep_the_first_copy(tmp_path, fixed_overhead_mb):
    """2,000 connections each buffer the second half of a request, then
    get 30 copies of it whose bytes disagree (whole, front half, back
    half), then the first half, then 10 more disagreeing copies of the
    delivered half.  Kept, the copies would be 87 MB; the first copy of
    each byte must win, so each flood connection's record is its request
    as first sent, marked tcp_overlap_conflict."""
    conns, before, after = 2000, 30, 10
    t = time.monotonic()
    frames, flood_exchanges = fg.overlap_flood(conns, before, after)
    pcap, expected, written = flood_pcap(tmp_path / "overlap.pcap", frames, len(frames))
    del frames
    gen_s = time.monotonic() - t
    run = run_measured(tmp_path, pcap, {"memory_budget_mb": BUDGET_MB})
    report("overlap conflicts", run, BUDGET_MB, fixed_overhead_mb, gen_s, pcap)
    check_run(run, written)
    # Every copy disagrees with the bytes kept: before delivery against the
    # buffered copy, after it against the last delivered chunk.
    assert run.anomalies.get("tcp_overlap_conflict", 0) == conns * (before + after), run.anomalies
    assert_legit_logged(run, expected)
    assert_rss_bounded(run, BUDGET_MB, fixed_overhead_mb)
    flood = {r["client"]["port"]: r for r in run.records if r["client"]["ip"] != "10.1.0.1"}
    assert len(flood) == conns
    for ex in flood_exchanges:
        r = flood[ex.client_port]
        assert r["request"]["uri"] == ex.uri
        assert set(r["request"]["headers"]["x-pad"]) == {"p"}, "a later, disagreeing copy won"
        assert (r["response"]["status"], r["end_reason"], r["anomalies"]) == (200, "complete", ["tcp_overlap_conflict"])


def test_ten_megabyte_header_lines_end_their_messages(tmp_path, fixed_overhead_mb):
    """Ten connections at once (five requests, five responses) each carry
    one 10 MB header line, interleaved segment by segment: 100 MB of header
    value that a parser buffering it whole would hold.  max_header_bytes
    (64 KiB) ends each of those messages (header_limit); a normal exchange
    that follows on the same connection is still logged, found by
    resynchronising past the rest of the line (http_resync)."""
    line, conns = 10 * 1000 * 1000, 10
    t = time.monotonic()
    convs, streams, after = [], [], []
    for i in range(conns):
        conv = fg.Conversation(fg.flood_client(i), fg.LEGIT_SERVER, client_isn=i * 7919, server_isn=i * 104729)
        then = fg.Exchange(conv.cport, "GET", f"/after-big-header/{i}", 200, 0, 321)
        streams.append(fg.big_header_conversation(conv, line, in_request=i % 2 == 0, then=then))
        convs.append(conv)
        after.append(then)
    frames = fg.round_robin(*streams)
    del streams
    pcap, expected, written = flood_pcap(tmp_path / "big_header.pcap", frames, len(frames))
    del frames
    gen_s = time.monotonic() - t
    run = run_measured(tmp_path, pcap, {"memory_budget_mb": BUDGET_MB, "max_header_bytes": 64 * 1024})
    report("10 MB header lines", run, BUDGET_MB, fixed_overhead_mb, gen_s, pcap)
    check_run(run, written)
    assert run.anomalies.get("header_limit", 0) == conns, run.anomalies
    assert_legit_logged(run, expected)
    assert_rss_bounded(run, BUDGET_MB, fixed_overhead_mb)
    flood: dict[int, list[dict]] = {}
    for r in run.records:
        if r["client"]["ip"] != "10.1.0.1":
            flood.setdefault(r["client"]["port"], []).append(r)
    got = {p: [(rec["request"] and rec["request"]["uri"], rec["response"] and rec["response"]["status"],
                rec["response"] and rec["response"]["body_len"], rec["anomalies"], rec["end_reason"])
               for rec in recs]
           for p, recs in flood.items()}
    want = {}
    for i, (conv, then) in enumerate(zip(convs, after)):
        if i % 2 == 0:
            # The request's header section was cut; its response (431)
            # still completes the transaction.
            big = ("/big-header-request", 431, 0, ["header_limit"], "complete")
        else:
            # The response was cut there: start line kept, nothing after it.
            big = ("/big-header-response", 200, 0, ["header_limit"], "header_limit")
        # The rest of the 10 MB line is skipped to the next start line
        # (http_resync), and that message comes after one that could not be
        # framed (http_resumed).
        want[conv.cport] = [big, (then.uri, 200, 321, ["http_resumed", "http_resync"], "complete")]
    assert want == got


def test_endless_chunked_body_is_written_at_end_of_input(tmp_path, fixed_overhead_mb):
    """A chunked response that never ends: 160 MB of 1 KiB chunks, no last
    chunk, no FIN, with body capture on (64 KiB kept).  Kept whole, the body
    alone would be five times the budget.  Its record is written when the
    capture ends, with the whole de-chunked length, message_incomplete and
    the captured body cut."""
    total = 160 * MiB
    conv = fg.Conversation(fg.flood_client(0), fg.LEGIT_SERVER)
    per_segment = fg.MSS // (1024 + 7)
    segments = -(-total // (1024 * per_segment))
    count = 3 + 1 + 1 + 1 + segments + segments // 32
    t = time.monotonic()
    pcap, expected, written = flood_pcap(tmp_path / "endless.pcap", fg.endless_chunked(conv, total), count)
    gen_s = time.monotonic() - t
    run = run_measured(tmp_path, pcap, {"memory_budget_mb": BUDGET_MB},
                       {"capture_bodies": True, "max_body_bytes": 64 * 1024})
    report("endless chunked body", run, BUDGET_MB, fixed_overhead_mb, gen_s, pcap)
    check_run(run, written)
    assert run.anomalies.get("message_incomplete", 0) == 1, run.anomalies
    assert_legit_logged(run, expected)
    assert_rss_bounded(run, BUDGET_MB, fixed_overhead_mb)
    [r] = [r for r in run.records if r["client"]["port"] == conv.cport]
    body = r["response"].pop("body")
    assert (r["request"]["uri"], r["response"]["status"], r["response"]["body_len"], r["end_reason"],
            r["anomalies"]) == ("/endless", 200, segments * 1024 * per_segment, "end_of_input", ["message_incomplete"])
    assert (body["bytes"], body["truncated"]) == (64 * 1024, True)
    assert r["response"]["body_truncated"] is True


def test_ten_thousand_pipelined_requests_without_responses(tmp_path, fixed_overhead_mb):
    """One connection sends 10,000 GETs (8 KB of headers each, 80 MB in
    all) back to back; the server never answers.  max_pending_requests
    (100) writes the oldest unanswered one each time a new one begins
    (pending_overflow); the last 100 are written at end of input.  All
    10,000 are logged, in order, with response_missing."""
    count, pending = 10_000, 100
    conv = fg.Conversation(fg.flood_client(0), fg.LEGIT_SERVER)
    t = time.monotonic()
    frames, uris = fg.pipelined_requests(conv, count, 8000)
    pcap, expected, written = flood_pcap(tmp_path / "pipelined.pcap", frames, len(frames))
    del frames
    gen_s = time.monotonic() - t
    run = run_measured(tmp_path, pcap, {"memory_budget_mb": BUDGET_MB, "max_pending_requests": pending})
    report("10,000 pipelined requests", run, BUDGET_MB, fixed_overhead_mb, gen_s, pcap)
    check_run(run, written)
    assert run.anomalies.get("pending_overflow", 0) == count - pending, run.anomalies
    assert run.anomalies.get("response_missing", 0) == count, run.anomalies
    assert_legit_logged(run, expected)
    assert_rss_bounded(run, BUDGET_MB, fixed_overhead_mb)
    flood = [r for r in run.records if r["client"]["port"] == conv.cport]
    assert [r["request"]["uri"] for r in flood] == uris
    assert [r["trans_depth"] for r in flood] == list(range(1, count + 1))
    reasons = [r["end_reason"] for r in flood]
    assert reasons == ["pending_overflow"] * (count - pending) + ["end_of_input"] * pending
    assert all(r["response"] is None and "response_missing" in r["anomalies"] for r in flood)


def test_one_byte_segments(tmp_path, fixed_overhead_mb):
    """A legitimate exchange whose request and 100 KB response travel one
    byte per segment (100,000 segments) is logged with the right lengths;
    meanwhile 40 connections each send 3,000 one-byte segments after a
    hole that is never filled: at ~130 bytes of objects per buffered byte
    the per-direction bound (256 KiB with that overhead counted, ~2,000
    segments) must cut each wait short."""
    conns, per_conn = 40, 3000
    big = fg.Exchange(40999, "GET", "/one-byte-segments", 200, 0, 100_000)
    slow = fg.Conversation(("10.1.0.1", big.client_port), fg.LEGIT_SERVER, client_isn=123, server_isn=456)
    ooo = [fg.one_byte_out_of_order(fg.Conversation(fg.flood_client(i), fg.LEGIT_SERVER, client_isn=i * 7919,
                                                    server_isn=i * 104729), per_conn) for i in range(conns)]
    t = time.monotonic()
    frames = fg.round_robin(list(fg.one_byte_exchange(slow, big)), *ooo)
    del ooo
    pcap, expected, written = flood_pcap(tmp_path / "one_byte.pcap", frames, len(frames))
    del frames
    gen_s = time.monotonic() - t
    run = run_measured(tmp_path, pcap, {"memory_budget_mb": BUDGET_MB, "max_conn_buffer_bytes": 256 * 1024})
    report("one-byte segments", run, BUDGET_MB, fixed_overhead_mb, gen_s, pcap)
    check_run(run, written)
    assert run.anomalies.get("tcp_buffer_overflow", 0) >= conns, run.anomalies
    assert_legit_logged(run, [big] + expected)
    assert_rss_bounded(run, BUDGET_MB, fixed_overhead_mb)


def test_syn_flood_keeps_a_connection_active_every_100ms(tmp_path, fixed_overhead_mb):
    """A SYN flood of 33,000 SYNs a second of capture time (one every 30 us)
    for 3 s, and one legitimate GET whose 10-segment response is streamed
    one segment every 100 ms.  The connection is never idle longer than
    100 ms (3,300 flood SYNs), while the 32 MB budget holds ~14,000
    connections: the least recently active ones are the flood's, and the
    transaction must come through whole."""
    n = 100_000
    conv = fg.Conversation(("10.1.0.1", 41000), fg.LEGIT_SERVER)
    ex = fg.Exchange(41000, "GET", "/streamed", 200, 0, 10 * fg.MSS - 80)
    legit = fg.streamed_exchange(conv, ex, fg.T0_US + 1_000_000, 100_000)
    pcap = tmp_path / "syn_streamed.pcap"
    t = time.monotonic()
    written = fg.write_capture(pcap, fg.syn_flood(n, fg.T0_US, 30), legit)
    gen_s = time.monotonic() - t
    run = run_measured(tmp_path, pcap, {"memory_budget_mb": BUDGET_MB, "max_connections": 1_000_000})
    report("syn flood, streamed response", run, BUDGET_MB, fixed_overhead_mb, gen_s, pcap)
    check_run(run, written)
    assert run.anomalies.get("memory_evicted", 0) > n // 2, run.anomalies
    assert_legit_logged(run, [ex])
    assert_rss_bounded(run, BUDGET_MB, fixed_overhead_mb)



def test_unterminated_header_lines_on_5000_connections_stay_in_budget(tmp_path, fixed_overhead_mb):
    """5,000 connections each send a request whose header line runs 56 KB
    (below max_header_bytes, 64 KiB) and never ends: no CRLF, no FIN, no
    answer; the line's segments go round-robin, so every unfinished head
    grows at once.  Held whole, the heads would be 280 MB; the bytes an
    unfinished head holds count against the 32 MB budget, which evicts the
    connections idle longest (memory_evicted).  Each connection's request
    is written once, cut (message_incomplete, response_missing).  Before
    the heads were all counted (a resynchronising direction's bytes were
    not, nor sessions made between two looks at the budget) and before
    sessions stopped being cycles, this peaked at 163 MB."""
    conns, line = 5000, 56 * 1000
    t = time.monotonic()
    frames, count = fg.unterminated_headers(conns, line)
    pcap, expected, written = flood_pcap(tmp_path / "unterminated.pcap", frames, count)
    gen_s = time.monotonic() - t
    run = run_measured(tmp_path, pcap, {"memory_budget_mb": BUDGET_MB})
    report("unterminated 56 KB header lines", run, BUDGET_MB, fixed_overhead_mb, gen_s, pcap)
    check_run(run, written)
    assert run.anomalies.get("memory_evicted", 0) >= conns, run.anomalies
    assert_legit_logged(run, expected)
    assert_rss_bounded(run, BUDGET_MB, fixed_overhead_mb)
    flood: dict[int, list[tuple]] = {}
    for r in run.records:
        if r["client"]["ip"] != "10.1.0.1":
            flood.setdefault(r["client"]["port"], []).append(
                (r["request"]["uri"], r["response"], "message_incomplete" in r["anomalies"],
                 "response_missing" in r["anomalies"]))
    want = {fg.flood_client(i)[1]: [(f"/unterminated/{i}", None, True, True)] for i in range(conns)}
    assert want == flood


# The unit's backstop (systemd/sniffd.service MemoryMax): a flood at the
# default budget must stay well under it.
UNIT = Path(__file__).resolve().parents[2] / "systemd" / "sniffd.service"
IDLE_CONNECTIONS = 200_000


def memory_max_mb() -> float:
    [value] = re.findall(r"^MemoryMax=(\d+)([KMG])$", UNIT.read_text(), re.M)
    return int(value[0]) * {"K": 1 / 1024, "M": 1, "G": 1024}[value[1]]


@dataclass
class Capture:
    pcap: Path
    expected: list[fg.Exchange]
    frames: int
    gen_s: float


@pytest.fixture(scope="session")
def idle_flood(tmp_path_factory):
    """200,000 connections that each make one request, get its answer and
    stay open and silent (fg.idle_connections, five frames each, 10 us
    apart: 2 s of capture), written once for the tests at both budgets."""
    work = tmp_path_factory.mktemp("idle_flood")
    t = time.monotonic()
    pcap, expected, written = flood_pcap(work / "idle.pcap", fg.idle_connections(IDLE_CONNECTIONS),
                                         IDLE_CONNECTIONS * 5)
    yield Capture(pcap, expected, written, time.monotonic() - t)
    pcap.unlink()


def _not_idle_flood(line: str) -> bool:
    return '"uri":"/idle/' not in line


def check_idle_flood(run: Run, capture: Capture) -> None:
    """Every one of the 200,000 exchanges written, complete, when its
    answer ended (before any eviction: the records are all in ``others``)."""
    check_run(run, capture.frames)
    assert_legit_logged(run, capture.expected)
    assert {("complete", 200): IDLE_CONNECTIONS} == dict(run.others)


def test_idle_connections_evicted_by_a_32_mb_budget_are_freed(tmp_path, fixed_overhead_mb, idle_flood):
    """200,000 idle keep-alive connections (one exchange each) with
    max_connections above the flood: the 32 MB budget holds ~6,000 of them
    and evicts the rest (memory_evicted).  An evicted connection's HTTP
    session must be freed when it leaves the table: while sessions were
    reference cycles (session <-> its readers), the cyclic GC, run rarely
    at sniffd's thresholds, left them piling up: 263 MB peak here."""
    run = run_measured(tmp_path, idle_flood.pcap, {"memory_budget_mb": BUDGET_MB, "max_connections": 1_000_000},
                       keep=_not_idle_flood)
    report("200,000 idle connections, 32 MB", run, BUDGET_MB, fixed_overhead_mb, idle_flood.gen_s, idle_flood.pcap)
    check_idle_flood(run, idle_flood)
    assert run.anomalies.get("memory_evicted", 0) > IDLE_CONNECTIONS * 0.9, run.anomalies
    assert_rss_bounded(run, BUDGET_MB, fixed_overhead_mb)


def test_idle_connections_at_the_default_budget_stay_well_under_memory_max(tmp_path, fixed_overhead_mb, idle_flood):
    """The same flood with every limit at its default (512 MB budget,
    max_connections 100,000: the table fills, then evicts one connection
    for each new one, conn_evicted).  The bound is the budget's, which is
    itself well under the systemd unit's MemoryMax (1G); with the cycles,
    this peaked at 954 MB (the issue's run: 1,028 MB)."""
    budget_mb = 512
    run = run_measured(tmp_path, idle_flood.pcap, {}, keep=_not_idle_flood)
    report("200,000 idle connections, defaults", run, budget_mb, fixed_overhead_mb, idle_flood.gen_s,
           idle_flood.pcap)
    check_idle_flood(run, idle_flood)
    assert run.stats["memory_budget_bytes"] == budget_mb * MiB
    assert run.anomalies.get("conn_evicted", 0) >= IDLE_CONNECTIONS - 100_000, run.anomalies
    assert budget_mb + fixed_overhead_mb < 0.6 * memory_max_mb()
    assert_rss_bounded(run, budget_mb, fixed_overhead_mb)
