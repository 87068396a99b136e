"""`sniffd read` on real loopback captures gives exactly the transactions the client made.

Each test drives one kind of HTTP/1.1 behaviour (tests/httpgen.py) over kernel
TCP on 127.0.0.1, captures it with tcpdump, runs the installed `sniffd read`
on the pcap and compares every record with the client's own ground truth,
matched by client port and trans_depth.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import struct
from datetime import datetime, timezone

import pytest

from tests import httpgen  # on sys.path via tests/live/conftest.py

pytestmark = pytest.mark.live

# docs/CONTRACT.md: a record's keys, in this order.
RECORD_KEYS = ["kind", "ts", "uid", "client", "server", "request", "response", "duration_ms", "trans_depth", "community_id",
               "end_reason", "anomalies", "sensor", "interface"]

# RFC 3339 UTC with exactly microseconds and a Z, as the contract's example.
TS_PATTERN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")

# Slack between the client's clock readings and the kernel's packet stamps
# (same clock, but read at slightly different moments).
CLOCK_SLACK_S = 1.0


def community_id_v1(src_ip: str, dst_ip: str, src_port: int, dst_port: int, proto: int = 6, seed: int = 0) -> str:
    """Community ID v1 (corelight/community-id-spec), written here independently of sniffd.

    The endpoints are ordered so both directions hash the same; the hash input is
    seed, addresses, protocol, one pad byte and ports, all in network order.
    """
    family = socket.AF_INET6 if ":" in src_ip else socket.AF_INET
    src, dst = socket.inet_pton(family, src_ip), socket.inet_pton(family, dst_ip)
    if not (src < dst or (src == dst and src_port < dst_port)):
        src, dst, src_port, dst_port = dst, src, dst_port, src_port
    digest = hashlib.sha1(struct.pack("!H", seed) + src + dst + struct.pack("!BBHH", proto, 0, src_port, dst_port)).digest()
    return "1:" + base64.b64encode(digest).decode()


def test_community_id_v1_matches_the_spec_example():
    """The spec's TCP example, so the reference used below is itself checked."""
    assert "1:wCb3OG7yAFWelaUydu0D+125CLM=" == community_id_v1("1.2.3.4", "5.6.7.8", 1122, 3344)


def transaction_key(port: int, depth: int) -> str:
    return f"client port {port} depth {depth}"


def expected_fields(truth: list[dict]) -> dict[str, dict]:
    """The record fields the client's ground truth determines, keyed by client port and depth."""
    return {transaction_key(t["client_port"], t["trans_depth"]): httpgen.truth_fields(t) for t in truth}


def actual_fields(records: list[dict]) -> dict[str, dict]:
    """The same projection of sniffd's records (tolerant of missing keys, so the diff shows them)."""
    projected = {}
    for r in records:
        client = r.get("client") or {}
        key = transaction_key(client.get("port"), r.get("trans_depth"))
        if key in projected:
            key += f" (duplicate #{sum(k.startswith(key) for k in projected)})"
        projected[key] = httpgen.record_fields(r)
    return projected


def parse_ts(ts: object) -> float | None:
    """Seconds since the epoch for a contract timestamp, None if it is not one."""
    if not isinstance(ts, str) or not TS_PATTERN.fullmatch(ts):
        return None
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def expected_derived(truth: list[dict]) -> dict[str, dict]:
    """Checks on fields the truth bounds rather than fixes: key order, ts, duration, community ID."""
    return {
        transaction_key(t["client_port"], t["trans_depth"]): {
            "keys": RECORD_KEYS,
            "ts is RFC 3339 with Z, within the exchange": True,
            "duration_ms is >= 0 and within the exchange": True,
            "community_id": community_id_v1(t["client_ip"], t["server_ip"], t["client_port"], t["server_port"]),
        }
        for t in truth
    }


def actual_derived(records: list[dict], truth: list[dict]) -> dict[str, dict]:
    """The same checks on sniffd's records: True when one holds, else the offending value, for the diff."""
    by_key = {transaction_key(t["client_port"], t["trans_depth"]): t for t in truth}
    derived = {}
    for r in records:
        key = transaction_key((r.get("client") or {}).get("port"), r.get("trans_depth"))
        t = by_key.get(key, {"t_request_s": 0.0, "t_response_end_s": 0.0})
        start_s, end_s = t["t_request_s"] - CLOCK_SLACK_S, t["t_response_end_s"] + CLOCK_SLACK_S
        ts, ts_s = r.get("ts"), parse_ts(r.get("ts"))
        duration = r.get("duration_ms")
        duration_ok = isinstance(duration, (int, float)) and 0 <= duration <= (end_s - start_s) * 1000
        derived[key] = {
            "keys": list(r),
            "ts is RFC 3339 with Z, within the exchange": True
            if ts_s is not None and start_s <= ts_s <= end_s
            else f"{ts!r}, client saw {start_s:.6f}..{end_s:.6f} (with slack)",
            "duration_ms is >= 0 and within the exchange": True
            if duration_ok
            else f"{duration!r}, client saw {(end_s - start_s) * 1000:.3f} ms (with slack)",
            "community_id": r.get("community_id"),
        }
    return derived


def flatten(value: object, prefix: str = "") -> dict[str, object]:
    """Nested dicts to {"client port P depth D / response.body_len": leaf}.

    Comparing flat dicts makes pytest print only the differing fields, each
    under a name that says which transaction and which field, without -vv.
    """
    if isinstance(value, dict) and value:
        flat: dict[str, object] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}{key}" if not prefix else f"{prefix}{'.' if '/' in prefix else ' / '}{key}"))
        return flat
    return {prefix: value}


def assert_records_match_truth(run) -> None:
    """Same transactions, same fields; every mismatch is shown by client port, depth and field."""
    assert flatten(expected_fields(run.truth)) == flatten(actual_fields(run.records))
    assert flatten(expected_derived(run.truth)) == flatten(actual_derived(run.records, run.truth))
    assert len(run.truth) == len(run.records)


def test_read_keepalive_connections_give_one_record_per_request(capture_and_read):
    run = capture_and_read(seed=11, kinds=("keepalive",), n_connections=3)
    assert {"GET", "POST"} == {t["method"] for t in run.truth}
    assert_records_match_truth(run)


def test_read_pipelined_requests_with_head_in_the_middle(capture_and_read):
    """Three requests per send(); the HEAD response (headers only) sits between two bodies."""
    run = capture_and_read(seed=12, kinds=("pipeline",), n_connections=2)
    middle_methods = {t["method"] for t in run.truth if t["batch_size"] == 3 and t["trans_depth"] % 3 == 2}
    assert {"HEAD"} == middle_methods
    assert_records_match_truth(run)


def test_read_chunked_and_gzip_bodies_count_wire_bytes(capture_and_read):
    """body_len is after de-chunking and before gzip decoding, in both directions."""
    run = capture_and_read(seed=13, kinds=("chunked_gzip",), n_connections=2)
    assert_records_match_truth(run)


def test_read_two_megabyte_bodies(capture_and_read):
    run = capture_and_read(seed=14, kinds=("large",), n_connections=1, max_body_len=2_000_000)
    assert 2_000_000 == max(t["response_body_len"] for t in run.truth)
    assert 1_000_000 == max(t["request_body_len"] for t in run.truth)
    assert_records_match_truth(run)


def test_read_not_modified_no_content_and_head_have_no_body(capture_and_read):
    run = capture_and_read(seed=15, kinds=("bodiless",), n_connections=2)
    bodiless = {(t["method"], t["status"]) for t in run.truth if t["response_body_len"] == 0}
    assert {("GET", 304), ("GET", 204), ("DELETE", 204), ("HEAD", 200)} == bodiless
    assert_records_match_truth(run)


def test_read_expect_100_continue_keeps_the_interim_status(capture_and_read):
    run = capture_and_read(seed=16, kinds=("continue",), n_connections=2)
    assert 6 == sum(t["interim"] == [100] for t in run.truth)
    assert_records_match_truth(run)


def test_read_concurrent_connections_of_every_kind(capture_and_read):
    """Every behaviour at once, four connections interleaved in the capture."""
    run = capture_and_read(seed=17, n_connections=12, workers=4, max_body_len=300_000)
    assert_records_match_truth(run)
