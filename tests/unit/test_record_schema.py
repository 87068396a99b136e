"""schema/record.schema.json: a valid draft 2020-12 schema, its anomaly names
the code's, strict where the record is closed, open where it is not; and the
suite-wide scan (tests/conftest.py, tests/recordschema.py) that checks every
record the tests write against it."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recordschema import EVERY, FIRST, RecordScan, problems, schema, shape  # noqa: E402

from sniffd.anomalies import ANOMALIES  # noqa: E402
from sniffd.http2.anomalies import H2_ANOMALIES  # noqa: E402
from sniffd.tls.anomalies import TLS_ANOMALIES  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

HTTP = {
    "kind": "http", "ts": "2026-11-21T10:42:05.100000Z", "uid": "C0LzwxoEHtMZJd1fMu",
    "client": {"ip": "10.0.0.1", "port": 40000}, "server": {"ip": "10.0.0.2", "port": 80},
    "request": {"method": "GET", "uri": "/x", "version": "1.1", "host": "example.test",
                "headers": {"host": "example.test", "x-anything": "at all"}, "body_len": 0, "missed_bytes": 0,
                "body_truncated": False},
    "response": {"status": 200, "reason": "OK", "version": "1.1", "headers": {}, "body_len": 5, "missed_bytes": 0,
                 "body_truncated": False, "interim": [{"status": 100, "reason": "Continue"}]},
    "duration_ms": 101.5, "trans_depth": 1, "community_id": "1:AjxUc4eNfbjPWdZM6+KiXOkkxCc=", "end_reason": "complete",
    "anomalies": [], "sensor": "gw-01", "interface": "eth0",
}  # fmt: skip

TLS = {
    "kind": "tls", "ts": "2026-12-06T20:03:28.728335Z", "uid": "C0LzwxoEHtMZJd1fMv",
    "client": {"ip": "127.0.0.1", "port": 60030}, "server": {"ip": "::1", "port": 36249},
    "tls": {"version": "TLSv1.2", "negotiated": True, "cipher": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "sni": "tls.test", "alpn_offered": ["h2", "http/1.1"], "alpn": "h2", "resumed": False,
            "established": True, "hello_retry": False,
            "alerts": [{"from": "server", "level": "fatal", "description": "handshake_failure"}],
            "ja3": "104774240db569f8f87b1a28206b25e5", "ja3s": "e195432758194ce2d482396b82e0d48e",
            "ja4": "t12d1508h2_d68b136fe8d9_e7e480e5a997", "ja4s": "t1205h2_c02c_1ece00aee4e9",
            "server_cert": {"subject": "CN=tls.test", "issuer": "CN=tls.test", "serial": "6082E3",
                            "not_before": "2025-01-02T03:04:05Z", "not_after": "2035-06-07T08:09:10Z",
                            "dns_names": ["tls.test"],
                            "sha256": "e428737e156822c639886b9fd94aca23113b3c15b370a9c08595f95363d32c9d"},
            "client_bytes": 290, "server_bytes": 911, "starttls": None},
    "duration_ms": 3.518, "community_id": "1:8JpGIJgKFveXQIiOZEfkIUFNmTQ=", "end_reason": "open", "anomalies": [],
    "sensor": "gw-01", "interface": None,
}  # fmt: skip

H2 = {"stream_id": 7, "pushed_by": None, "h2_error": None, "grpc": {"status": 7, "message": "not allowed"}}


def changed(rec: dict, path: str, value=..., delete: bool = False) -> dict:
    """A copy of ``rec`` with the field at dotted ``path`` set (or deleted)."""
    out = copy.deepcopy(rec)
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if delete:
        del node[last]
    else:
        node[last] = value
    return out


def test_schema_is_a_valid_draft_2020_12_schema():
    assert "https://json-schema.org/draft/2020-12/schema" == schema()["$schema"]
    Draft202012Validator.check_schema(schema())


def test_schema_anomaly_names_are_exactly_the_codes_anomaly_tables():
    """The enum is the union of sniffd/anomalies.py, sniffd/tls/anomalies.py and
    sniffd/http2/anomalies.py: a name added to (or removed from) one of them
    must be added to (removed from) schema/record.schema.json too."""
    code = set(ANOMALIES) | set(TLS_ANOMALIES) | set(H2_ANOMALIES)
    enum = schema()["$defs"]["anomaly"]["enum"]
    assert sorted(enum) == enum, "keep the enum sorted"
    assert (sorted(code - set(enum)), sorted(set(enum) - code)) == ([], []), "(missing from the schema, not in the code)"


@pytest.mark.parametrize("rec", [HTTP, TLS, {**HTTP, **H2}], ids=["http", "tls", "http2"])
def test_schema_accepts_the_documented_records(rec):
    assert [] == problems(rec)


def test_schema_accepts_what_each_record_may_carry():
    """Nulls where the README allows them, optional fields, any header names."""
    ok = [
        changed(HTTP, "request", None),
        changed(HTTP, "response", None),
        changed(changed(HTTP, "response.status", None), "response.reason", None),
        changed(HTTP, "request.start_line", "GARBAGE / HTTP/1.1"),
        changed(HTTP, "request.headers", {":scheme": "http", "X-Odd Name\\x80": "\\xff", "": ""}),
        changed(HTTP, "duration_ms", None),
        {**HTTP, **H2, "pushed_by": 1, "h2_error": "CANCEL", "grpc": None},
        changed(HTTP, "request.body", {"encoding": "base64", "data": "AAE=", "bytes": 2, "truncated": False, "gap": False,
                                       "content_encoding": "gzip", "decoded": False, "decode_error": "corrupt",
                                       "decoded_truncated": False, "redacted": False}),
        changed(HTTP, "response.body", None),
        dict(list(HTTP.items())[:5] + [("vlan", [300, 100]),
             ("tunnel", [{"type": "gre", "src": "192.0.2.1", "dst": "192.0.2.2", "key": 7},
                         {"type": "mpls", "src": None, "dst": None, "labels": [16, 17]},
                         {"type": "teredo", "src": "192.0.2.1", "dst": "192.0.2.9"}])] + list(HTTP.items())[5:]),
        changed(HTTP, "connect_tunnel", {"target": "example.test:80", "trans_depth": 1}),
        changed(HTTP, "anomalies", ["http2_gap", "tcp_gap", "tls_gap"]),
        changed(TLS, "tls.starttls", "smtp"),
        changed(changed(TLS, "tls.version", None), "tls.server_cert", None),
        changed(TLS, "tls.version", "0x7f1c"),
    ]
    assert [[] for _ in ok] == [problems(r) for r in ok]


REFUSED = [
    # (name, the record, the error's start)
    ("no_uid", changed(HTTP, "uid", delete=True), "$: 'uid' is a required property"),
    ("uid_not_base62", changed(HTTP, "uid", "C0LzwxoEHtMZJd1fM-"), "$.uid: 'C0LzwxoEHtMZJd1fM-' does not match"),
    ("no_sensor", changed(TLS, "sensor", delete=True), "$: 'sensor' is a required property"),
    ("empty_sensor", changed(HTTP, "sensor", ""), "$.sensor: '' should be non-empty"),
    ("interface_too_long", changed(HTTP, "interface", "a" * 16), "$.interface: 'aaaaaaaaaaaaaaaa' is too long"),
    ("unknown_top_level_field", changed(HTTP, "extra", 1), "$: Additional properties are not allowed ('extra' was unexpected)"),
    ("unknown_request_field", changed(HTTP, "request.extra", 1), "$.request: Additional properties are not allowed"),
    ("unknown_tls_field", changed(TLS, "tls.extra", 1), "$.tls: Additional properties are not allowed"),
    ("tls_field_on_http", changed(HTTP, "tls", TLS["tls"]), "$: Additional properties are not allowed ('tls' was unexpected)"),
    ("unknown_kind", changed(HTTP, "kind", "dns"), "$.kind: 'dns' is not one of ['http', 'tls']"),
    ("unknown_anomaly", changed(HTTP, "anomalies", ["tcp_gapp"]), "$.anomalies[0]: 'tcp_gapp' is not one of"),
    ("repeated_anomaly", changed(HTTP, "anomalies", ["tcp_gap", "tcp_gap"]), "$.anomalies: ['tcp_gap', 'tcp_gap'] has non-unique elements"),
    ("unknown_end_reason", changed(HTTP, "end_reason", "done"), "$.end_reason: 'done' is not one of"),
    ("open_is_tls_only", changed(HTTP, "end_reason", "open"), "$.end_reason: 'open' is not one of"),
    ("status_as_text", changed(HTTP, "response.status", "200"), "$.response.status: '200' is not of type 'integer', 'null'"),
    ("header_value_not_text", changed(HTTP, "request.headers.x-n", 1), "$.request.headers['x-n']: 1 is not of type 'string'"),
    ("port_out_of_range", changed(HTTP, "client.port", 65536), "$.client.port: 65536 is greater than the maximum of 65535"),
    ("ts_without_microseconds", changed(HTTP, "ts", "2026-11-21T10:42:05Z"), "$.ts: '2026-11-21T10:42:05Z' does not match"),
    ("http2_fields_only_in_part", {**HTTP, "stream_id": 3}, "$: 'pushed_by' is a dependency of 'stream_id'"),
    ("unknown_starttls", changed(TLS, "tls.starttls", "ssh"), "$.tls.starttls: 'ssh' is not one of"),
    ("no_starttls", changed(TLS, "tls.starttls", delete=True), "$.tls: 'starttls' is a required property"),
    ("ja3_not_md5", changed(TLS, "tls.ja3", "x"), "$.tls.ja3: 'x' does not match"),
    ("tunnel_key_of_another_type", changed(HTTP, "tunnel", [{"type": "gre", "src": None, "dst": None, "vni": 1}]),
     "$.tunnel[0]: 'key' is a required property"),
    ("body_without_its_fields", changed(HTTP, "request.body", {"data": "x"}), "$.request.body: 'encoding' is a required property"),
]


@pytest.mark.parametrize("name,rec,error", REFUSED, ids=[c[0] for c in REFUSED])
def test_schema_refuses_a_record_that_breaks_the_contract(name, rec, error):
    found = problems(rec)
    assert any(p.startswith(error) for p in found), found


def test_schema_is_linked_from_the_readme():
    text = (REPO / "README.md").read_text()
    assert "(schema/record.schema.json)" in text


# --- the suite-wide scan ----------------------------------------------------------


def lines_of(recs) -> list[bytes]:
    return [json.dumps(r).encode() for r in recs]


def scan_file(scan: RecordScan, path: str, recs) -> None:
    for n, rec in enumerate(recs, 1):
        scan.line(path, n, rec)


def test_scan_names_the_file_line_and_field_of_an_invalid_record():
    scan = RecordScan()
    scan_file(scan, "out.jsonl", [HTTP, TLS, changed(HTTP, "response.status", "200"), {"event": "stats"}])
    assert 3 == scan.records
    assert ["out.jsonl:3: $.response.status: '200' is not of type 'integer', 'null'"] == scan.invalid


def test_scan_validates_each_new_shape_and_a_sample_of_the_rest():
    """Past the first FIRST lines, a record of a shape already validated is
    validated only at every EVERY-th line: a bad value there is found, one
    between is not (the price of a scan that takes seconds, not minutes)."""
    scan = RecordScan()
    recs = [changed(HTTP, "trans_depth", n) for n in range(1, 2 * EVERY + 1)]
    recs[EVERY - 1] = changed(recs[EVERY - 1], "client.port", -1)  # sampled line
    recs[EVERY + 7] = changed(recs[EVERY + 7], "client.port", -1)  # not sampled
    recs[EVERY + 20] = changed(recs[EVERY + 20], "anomalies", ["no_such_name"])  # a new shape: always
    scan_file(scan, "a.jsonl", recs)
    assert 2 * EVERY == scan.records
    assert FIRST + 2 + 1 == scan.validated
    assert [f"a.jsonl:{EVERY}: $.client.port: -1 is less than the minimum of 0",
            f"a.jsonl:{EVERY + 21}: $.anomalies[0]: 'no_such_name' is not one of"] == [i[: i.index(" of") + 3] if "one of" in i else i for i in scan.invalid]


def test_shape_tells_apart_what_the_schema_checks_by_structure_or_enum():
    same = [changed(HTTP, "request.headers", {"a": "b", "c": "d"}), changed(HTTP, "uid", "C1111111111111111x"),
            changed(HTTP, "client.port", 1)]
    assert {shape(HTTP)} == {shape(r) for r in same}
    differ = [changed(HTTP, "end_reason", "fin"), changed(HTTP, "anomalies", ["tcp_gap"]), changed(HTTP, "request", None),
              changed(HTTP, "response.status", None), changed(HTTP, "extra", 1), changed(HTTP, "request.headers", []),
              changed(HTTP, "response.interim", []), changed(TLS, "tls.starttls", "smtp"),
              changed(TLS, "tls.alerts.0.from", "client")]
    shapes = [shape(r) for r in differ]
    assert len(differ) == len(set(shapes)) and shape(HTTP) not in shapes
