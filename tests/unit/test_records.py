"""Records stage (sniffd.records): Community ID, RFC 3339 time stamps, the
record dict built from a transaction, and its one-line JSON form."""

from __future__ import annotations

import ipaddress
from pathlib import Path
import json
import re
import subprocess

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sniffd import records
from sniffd.capture import OfflineCapture
from sniffd.http import HttpSession
from sniffd.pipeline import Pipeline


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


# ------------------------------------------------------------ community id

# Published examples: https://github.com/corelight/community-id-spec,
# baseline/baseline_deflt.json (seed 0) and baseline_seed1.json (seed 1).
COMMUNITY_ID_CASES = [
    ("tcp_ipv4_published_example", "128.232.110.120", 34855, "66.35.250.204", 80, 6, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (
        "tcp_ipv6_published_example",
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        63943,
        "2607:f8b0:400c:c03::1a",
        25,
        6,
        0,
        "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
    ),
    ("udp_ipv4_published_example", "192.168.1.52", 54585, "8.8.8.8", 53, 17, 0, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    ("tcp_ipv4_published_example_seed_1", "128.232.110.120", 34855, "66.35.250.204", 80, 6, 1, "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
    (
        "tcp_ipv6_published_example_seed_1",
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        63943,
        "2607:f8b0:400c:c03::1a",
        25,
        6,
        1,
        "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
    ),
]


@pytest.mark.parametrize(
    "src,sport,dst,dport,proto,seed,expected",
    [c[1:] for c in COMMUNITY_ID_CASES],
    ids=[c[0] for c in COMMUNITY_ID_CASES],
)
def test_records_community_id_matches_the_published_examples_in_both_directions(src, sport, dst, dport, proto, seed, expected) -> None:
    assert (expected, expected) == (
        records.community_id(ip(src), sport, ip(dst), dport, proto, seed),
        records.community_id(ip(dst), dport, ip(src), sport, proto, seed),
    )


def test_records_community_id_between_two_ports_of_one_host_is_the_same_both_ways() -> None:
    a = records.community_id(ip("127.0.0.1"), 40000, ip("127.0.0.1"), 80)
    b = records.community_id(ip("127.0.0.1"), 80, ip("127.0.0.1"), 40000)
    assert (a, True) == (b, a != records.community_id(ip("127.0.0.1"), 40001, ip("127.0.0.1"), 80))


# ----------------------------------------------------------------- rfc3339

T0 = 1795257725.0  # 2026-11-21T10:42:05Z


@pytest.mark.parametrize(
    "ts,expected",
    [
        (0.0, "1970-01-01T00:00:00.000000Z"),
        (T0, "2026-11-21T10:42:05.000000Z"),
        (T0 + 0.123456, "2026-11-21T10:42:05.123456Z"),
        (T0 + 0.003, "2026-11-21T10:42:05.003000Z"),
        (T0 + 0.0000004, "2026-11-21T10:42:05.000000Z"),  # rounds down
        (1.9999996, "1970-01-01T00:00:02.000000Z"),  # rounds up: carries into the seconds
        (86399.9999999, "1970-01-02T00:00:00.000000Z"),  # ... and into the next day
        (951868799.9999996, "2000-03-01T00:00:00.000000Z"),  # ... past 29 February of a leap year
    ],
)
def test_records_rfc3339_is_utc_with_microseconds_rounded(ts: float, expected: str) -> None:
    assert expected == records.rfc3339(ts)


# ------------------------------------------------------------------- build

CLIENT = {"ip": "10.0.0.1", "port": 40000}
SERVER = {"ip": "10.0.0.2", "port": 80}
CID = "1:test"
UID = "C0000000000000000A"


def transactions(steps) -> list:
    s = HttpSession()
    for from_client, data, now in steps:
        s.feed(from_client, [data], now)
    s.close(None, steps[-1][2] + 1)
    return s.take()


def test_records_build_gives_the_contract_fields_in_order() -> None:
    (txn,) = transactions(
        [
            (True, b"GET /x?y=1 HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n", T0 + 0.1),
            (False, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", T0 + 0.2),
            (False, b"lo", T0 + 0.2015),
        ]
    )
    rec = records.build(txn, CLIENT, SERVER, CID, uid=UID, sensor="gw-01", interface="eth0")
    expected = {
        "kind": "http",
        "ts": "2026-11-21T10:42:05.100000Z",
        "uid": UID,
        "client": CLIENT,
        "server": SERVER,
        "request": {
            "method": "GET",
            "uri": "/x?y=1",
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
            "headers": {"content-length": "5"},
            "body_len": 5,
            "missed_bytes": 0,
            "body_truncated": False,
            "interim": [],
        },
        "duration_ms": 101.5,
        "trans_depth": 1,
        "community_id": CID,
        "end_reason": "complete",
        "anomalies": [],
        "sensor": "gw-01",
        "interface": "eth0",
    }
    assert (expected, list(expected), list(expected["request"]), list(expected["response"])) == (
        rec,
        list(rec),
        list(rec["request"]),
        list(rec["response"]),
    )


def test_records_build_request_without_response_has_null_response_and_duration() -> None:
    (txn,) = transactions([(True, b"GET / HTTP/1.1\r\n\r\n", T0)])
    rec = records.build(txn, CLIENT, SERVER, CID, uid=UID, sensor="gw-01", interface=None)
    assert {
        "kind": "http",
        "ts": "2026-11-21T10:42:05.000000Z",
        "uid": UID,
        "client": CLIENT,
        "server": SERVER,
        "request": {
            "method": "GET",
            "uri": "/",
            "version": "1.1",
            "host": None,
            "headers": {},
            "body_len": 0,
            "missed_bytes": 0,
            "body_truncated": False,
        },
        "response": None,
        "duration_ms": None,
        "trans_depth": 1,
        "community_id": CID,
        "end_reason": "end_of_input",
        "anomalies": ["response_missing"],
        "sensor": "gw-01",
        "interface": None,
    } == rec


# ------------------------------------------------------------------- dumps


def record_with_header(value: str) -> dict:
    (txn,) = transactions([(True, b"GET / HTTP/1.1\r\n\r\n", T0), (False, b"HTTP/1.1 204 No Content\r\n\r\n", T0)])
    rec = records.build(txn, CLIENT, SERVER, CID, uid=UID, sensor="gw-01", interface=None)
    rec["request"]["headers"]["x-test"] = value
    return rec


def test_records_dumps_is_one_line_with_every_special_character_escaped() -> None:
    value = 'a"b\\c\nd\re\tf\u00e9\u2028\udcff'
    line = records.dumps({"v": value, "n": None, "k": [1, 2.5]})
    # The backslash sent is doubled, the byte 0xff (not UTF-8) is \xff: both
    # then escaped once more by JSON.
    assert ('{"v":"a\\"b\\\\\\\\c\\nd\\re\\tf\\u00e9\\u2028\\\\xff","n":null,"k":[1,2.5]}', True) == (
        line,
        line.isascii(),
    )


@pytest.mark.parametrize(
    "value",
    ['\n{"fake": 1}', '"}\n{"fake": 1}', "\r\n{}", "\u2028{}\u2029", "\x85{}", "\x00\x1b[31m"],
    ids=["newline", "quote_brace_newline", "crlf", "unicode_line_separators", "nel", "nul_and_escape"],
)
def test_records_dumps_header_value_cannot_start_a_second_record(value: str) -> None:
    rec = record_with_header(value)
    line = records.dumps(rec)
    assert ([line], True, rec) == (line.splitlines(), line.isascii(), json.loads(line))


# dumps writes with orjson when the result is what the json module writes
# (ensure_ascii, compact) and falls back to the json module otherwise: the
# output must never depend on which one ran.
_JSON = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False).encode


def _wire_reference(value, keep=None):
    """Written by hand from the README: a wire string's bytes (surrogateescape),
    backslash doubled, every byte that is not UTF-8 as \\xNN (Python's own
    backslashreplace decoding); a message's captured body (``request.body``,
    ``response.body``), and a TLS record's ``tls.server_cert`` (made by the
    X.509 library, not wire text), as they are."""
    if isinstance(value, str):
        b = value.encode("utf-8", "surrogateescape")
        return b.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {_wire_reference(k): (v if k == keep else _wire_reference(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire_reference(v) for v in value]
    return value


def REFERENCE(record: dict) -> str:
    """A record's line; its ``sensor`` and ``interface`` (configured, not
    from the wire) as they are."""
    if isinstance(record, dict):
        kept = {"request": "body", "response": "body", "tls": "server_cert"}
        return _JSON({_wire_reference(k): (v if k in ("sensor", "interface") else _wire_reference(v, kept.get(k)))
                      for k, v in record.items()})
    return _JSON(_wire_reference(record))


_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64),
    # any code point but surrogates, and the lone surrogates that stand for
    # undecodable bytes (U+DC80..U+DCFF, all the decoder makes)
    st.text(st.one_of(st.characters(blacklist_categories=("Cs",)), st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF))),
    st.text(alphabet=st.characters(max_codepoint=0x7F)),
    st.sampled_from(["\x7f", "a\x7fb", "\udcff", "\u2028", "\x00", "é"]),
    # backslashes: from the wire (doubled) or in a field kept as it is
    # (a certificate's RFC 4514 escapes, a configured sensor name)
    st.sampled_from(["\\", "O=sniffd\\, test", "\\\\x41"]),
    # duration_ms: milliseconds rounded to 3 decimals, up to 2**32 s.
    st.floats(0, 2**32 * 1000.0).map(lambda x: round(x, 3)),
)
_records_ish = st.recursive(
    _leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(["server_cert", "body", "tls"])),
                                            inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(value=st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(["sensor", "interface", "tls", "body"])), _records_ish, max_size=6))
def test_records_dumps_writes_what_the_json_module_writes(value: dict) -> None:
    assert REFERENCE(value) == records.dumps(value)


CAPTURES = Path(__file__).resolve().parents[2] / "captures"


@pytest.mark.parametrize("path", sorted(CAPTURES.glob("**/*.pcap")), ids=lambda p: p.name)
def test_records_dumps_writes_every_record_of_the_test_captures_as_the_json_module(path: Path) -> None:
    p = Pipeline(redact_key=b"k" * 32)
    cap = OfflineCapture(str(path), "")
    recs = [r for b in cap.batches() for r in p.feed_batch(cap.linktype, b)] + p.flush()
    assert [REFERENCE(r) for r in recs] == [records.dumps(r) for r in recs]


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_records_wire_bytes_come_back_exactly_from_a_strict_parser(raw: bytes) -> None:
    """Any bytes from the wire: the line parses with orjson and strict json, and
    the value unescaped (README, "Encoding") is the bytes that were sent."""
    from sniffd.http.syntax import text

    line = records.dumps({"request": {"uri": text(raw), "headers": {text(raw): text(raw)}}})
    strict = orjson.loads(line)
    assert strict == json.loads(line)
    (name, value), = strict["request"]["headers"].items()
    assert [raw, raw, raw] == [records.unescape_wire_text(v) for v in (strict["request"]["uri"], name, value)]


def test_records_a_header_named_body_is_wire_text_like_any_other() -> None:
    """Only a message's captured body is written as it is: a header called
    "body" is escaped as wire text (the rule once kept every key "body" at
    any depth, so that header's bytes were written as lone surrogates)."""
    from sniffd.http.syntax import text

    rec = {"request": {"headers": {"body": text(b"a\x80\\")}, "body": {"data": "b\\"}}}
    assert '{"request":{"headers":{"body":"a\\\\x80\\\\\\\\"},"body":{"data":"b\\\\"}}}' == records.dumps(rec)


def test_records_lines_with_bytes_not_utf8_are_accepted_by_jq(tmp_path: Path) -> None:
    from sniffd.http.syntax import text

    rec = {"request": {"uri": text(b"/a\x80\\b\xff"), "headers": {"x": text(b"\xed\xa0\x80")}}}
    out = subprocess.run(["jq", "-c", ".request"], input=records.dumps(rec) + "\n", capture_output=True, text=True, check=True)
    assert '{"uri":"/a\\\\x80\\\\\\\\b\\\\xff","headers":{"x":"\\\\xed\\\\xa0\\\\x80"}}\n' == out.stdout


# ------------------------------------------------- uid, sensor, interface

UID_FORM = re.compile(r"C[0-9A-Za-z]{17}")


def test_records_uids_are_C_and_17_base62_digits_counting_up_from_the_salt() -> None:
    make = records.Uids(0)
    assert ["C00000000000000000", "C00000000000000001", "C00000000000000002"] == [make() for _ in range(3)]
    make = records.Uids(3843)  # the two last digits wrap: the cached leading digits change
    assert ["C000000000000000zz", "C00000000000000100"] == [make(), make()]
    top = records.Uids((1 << 96) - 1)
    assert [(1 << 96) - 1, 1 << 96] == [_base62(top()[1:]) for _ in range(2)]


def _base62(digits: str) -> int:
    n = 0
    for c in digits:
        n = n * 62 + "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".index(c)
    return n


def test_records_uids_are_distinct_over_many_connections_and_between_salts() -> None:
    a, b = records.Uids(12345), records.Uids(12345 + 10**6)
    first = [a() for _ in range(20000)]
    assert 20000 == len(set(first)) and all(UID_FORM.fullmatch(u) for u in first)
    assert not set(first) & {b() for _ in range(20000)}
    with pytest.raises(ValueError):
        records.Uids(1 << 96)


def _pipeline_records(path: Path, **kw) -> list[dict]:
    p = Pipeline(redact_key=b"k" * 32, **kw)
    cap = OfflineCapture(str(path), "")
    return [r for b in cap.batches() for r in p.feed_batch(cap.linktype, b)] + p.flush()


def test_records_of_one_connection_share_its_uid_and_no_other_connection_has_it() -> None:
    """captures/pipeline_head.pcap has several transactions on some of its
    connections; the TLS capture, one record per connection."""
    for path in (CAPTURES / "pipeline_head.pcap", CAPTURES / "tls" / "loopback_handshakes.pcap"):
        recs = _pipeline_records(path)
        conns = {(r["client"]["ip"], r["client"]["port"], r["server"]["ip"], r["server"]["port"]) for r in recs}
        by_conn = {}
        for r in recs:
            by_conn.setdefault((r["client"]["ip"], r["client"]["port"], r["server"]["ip"], r["server"]["port"]), set()).add(r["uid"])
        assert all(len(uids) == 1 for uids in by_conn.values()), by_conn
        assert len(conns) == len({r["uid"] for r in recs})
        assert all(UID_FORM.fullmatch(r["uid"]) for r in recs)


def test_records_uids_differ_between_two_pipelines_on_the_same_capture() -> None:
    """Two runs (a restart, two workers) never give a connection's uid to another."""
    one = {r["uid"] for r in _pipeline_records(CAPTURES / "sample.pcap")}
    two = {r["uid"] for r in _pipeline_records(CAPTURES / "sample.pcap")}
    assert one and two and not one & two


def test_records_name_the_sensor_and_interface_after_anomalies() -> None:
    import socket

    from sniffd.settings import Settings

    recs = _pipeline_records(CAPTURES / "sample.pcap")
    assert {(socket.gethostname(), None)} == {(r["sensor"], r["interface"]) for r in recs}
    recs = _pipeline_records(CAPTURES / "sample.pcap", settings=Settings(sensor="gw-01"), interface="eth0",
                             uid_salt=7)
    assert {("gw-01", "eth0")} == {(r["sensor"], r["interface"]) for r in recs}
    assert "C00000000000000007" == recs[0]["uid"]
    assert ["kind", "ts", "uid", "client", "server"] == list(recs[0])[:5]
    assert ["anomalies", "sensor", "interface"] == list(recs[0])[-3:]


def test_records_tls_record_has_uid_sensor_and_interface_in_the_same_places() -> None:
    (rec, *_) = _pipeline_records(CAPTURES / "tls" / "loopback_handshakes.pcap", interface="lo")
    assert "tls" == rec["kind"]
    assert ["kind", "ts", "uid", "client", "server", "tls"] == list(rec)[:6]
    assert ["anomalies", "sensor", "interface"] == list(rec)[-3:]
    assert "lo" == rec["interface"]


def test_records_dumps_writes_a_sensor_name_with_a_backslash_as_it_is() -> None:
    """The sensor comes from the configuration, not the wire: a backslash in it
    is no escape to double, even when the record's wire text needs escaping."""
    rec = record_with_header("a\\b")
    rec["sensor"] = "dc\\gw-01"
    back = orjson.loads(records.dumps(rec))
    assert ("dc\\gw-01", "a\\\\b") == (back["sensor"], back["request"]["headers"]["x-test"])


def test_ip_text_writes_addresses_as_operators_read_them():
    from sniffd.records import ip_text

    assert ip_text(bytes([10, 0, 0, 1])) == "10.0.0.1"
    assert ip_text(bytes(4)) == "0.0.0.0"
    assert ip_text(b"\xff" * 4) == "255.255.255.255"
    assert ip_text(bytes([192, 168, 1, 10])) == "192.168.1.10"
    assert ip_text(bytes(15) + b"\x01") == "::1"
    assert ip_text(bytes.fromhex("20010db8000000000000000000000001")) == "2001:db8::1"
    assert ip_text(bytes.fromhex("fe800000000000000202b3fffe1e8329")) == "fe80::202:b3ff:fe1e:8329"
    # IPv4-mapped: as Python's ipaddress writes it (glibc's inet_ntop writes ::ffff:1.2.3.4)
    assert ip_text(bytes.fromhex("00000000000000000000ffff01020304")) == "::ffff:102:304"
