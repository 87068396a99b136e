"""ECS output stage (sniffd.ecs), fed record dicts: whatever text the wire
carried, the ECS line is one line of ASCII JSON that strict parsers accept,
and it says exactly what the native line says (the native record made again
from it by tests/ecscheck.py's hand-written rules equals the native line),
so the two formats never escape a string differently."""

from __future__ import annotations

import json

import orjson
from ecscheck import check_types, expected_url, native_from_ecs
from hypothesis import given, settings
from hypothesis import strategies as st

from sniffd import ecs, records

# Any code point but surrogates, and the lone surrogates U+DC80..U+DCFF that
# stand for bytes that were not UTF-8 (all http.syntax.text makes), with
# the characters that take a special path in dumps made likely.
_wire = st.text(st.one_of(st.characters(blacklist_categories=("Cs",)),
                          st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),
                          st.sampled_from(["\\", "\x7f", "\u2028", "\x00", "é", "?", "@", ":", "[", "]"])),
                max_size=12)
_name = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=10)


def http_record(method, uri, host, headers, reason, sensor, start_line, vlan) -> dict:
    rec = {
        "kind": "http", "ts": "2026-12-31T23:59:59.999500Z", "uid": "C0LzwxoEHtMZJd1fMu",
        "client": {"ip": "2001:db8::1", "port": 40000}, "server": {"ip": "2001:db8::2", "port": 80},
        "request": {"method": method, "uri": uri, "version": "1.1", "host": host, "headers": headers,
                    "body_len": 3, "missed_bytes": 0, "body_truncated": False},
        "response": {"status": 200, "reason": reason, "version": "1.1", "headers": headers, "body_len": 0,
                     "missed_bytes": 0, "body_truncated": False, "interim": []},
        "duration_ms": 1.25, "trans_depth": 1, "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "end_reason": "complete", "anomalies": [], "sensor": sensor, "interface": "eth0",
    }
    if start_line is not None:
        rec["request"]["start_line"] = start_line
    if vlan:
        rec = {**dict(list(rec.items())[:5]), "vlan": vlan, **dict(list(rec.items())[5:])}
    return rec


@settings(max_examples=400, deadline=None)
@given(method=st.one_of(st.none(), _wire), uri=st.one_of(st.none(), _wire, _wire.map(lambda s: "/" + s),
                                                         _wire.map(lambda s: "http://" + s), st.just("*")),
       host=st.one_of(st.none(), _wire, st.sampled_from(["h:", "[::1]:", "[::1]:8080", "u:p@h:99999", "h:08080", "a:b:1"])), headers=st.dictionaries(st.one_of(_wire, st.sampled_from(["user-agent", "referer"])),
                                                                 _wire, max_size=4),
       reason=st.one_of(st.none(), _wire), sensor=_name.map(lambda s: s + "\\x"), start_line=st.one_of(st.none(), _wire),
       vlan=st.lists(st.integers(1, 4095), max_size=4))
def test_ecs_line_says_what_the_native_line_says_whatever_the_wire_sent(method, uri, host, headers, reason, sensor,
                                                                        start_line, vlan) -> None:
    rec = http_record(method, uri, host, headers, reason, sensor, start_line, vlan)
    line = ecs.dumps(rec)
    assert line.isascii() and "\n" not in line and "\x7f" not in line
    doc = orjson.loads(line)
    assert doc == json.loads(line)
    assert [] == check_types(doc)
    native = orjson.loads(records.dumps(rec))
    assert native == native_from_ecs(doc)
    # url.* by RFC 9112's target forms and RFC 3986's authority, as the native line writes the text.
    assert expected_url(native["request"]) == doc.get("url", {})
    # The sensor is configuration, not wire text: written as it is, as natively.
    assert sensor == doc["observer"]["hostname"]


@settings(max_examples=200, deadline=None)
@given(subject=_wire, sni=st.one_of(st.none(), _wire), cipher=st.one_of(st.none(), _wire),
       version=st.sampled_from([None, "SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3", "0x7f1c"]),
       alpn_offered=st.lists(_wire, max_size=3))
def test_ecs_tls_line_keeps_certificate_text_unescaped_as_the_native_line(subject, sni, cipher, version,
                                                                         alpn_offered) -> None:
    """The certificate's strings come from the X.509 library (RFC 4514 escapes):
    written as they are in both formats; the hello's strings are wire text."""
    cert = {"subject": "CN=a\\, b," + subject, "issuer": None, "serial": "0A", "not_before": "2025-01-02T03:04:05Z",
            "not_after": None, "dns_names": ["a.test"], "sha256": "ab" * 32}
    t = {"version": version, "negotiated": True, "cipher": cipher, "sni": sni, "alpn_offered": alpn_offered,
         "alpn": None, "resumed": None, "established": False, "hello_retry": False, "alerts": [], "ja3": None,
         "ja3s": None, "ja4": None, "ja4s": None, "server_cert": cert, "client_bytes": 10, "server_bytes": 20,
         "starttls": None}
    rec = {"kind": "tls", "ts": "2026-11-21T10:42:05.003000Z", "uid": "C0LzwxoEHtMZJd1fMv",
           "client": {"ip": "10.0.0.1", "port": 40000}, "server": {"ip": "10.0.0.2", "port": 443}, "tls": t,
           "duration_ms": 3.518, "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "end_reason": "fin",
           "anomalies": [], "sensor": "gw", "interface": None}
    doc = orjson.loads(ecs.dumps(rec))
    assert [] == check_types(doc)
    assert orjson.loads(records.dumps(rec)) == native_from_ecs(doc)


def test_ecs_event_end_crosses_the_year_and_duration_is_whole_nanoseconds() -> None:
    rec = http_record("GET", "/", "h", {}, "OK", "gw", None, [])
    doc = orjson.loads(ecs.dumps(rec))
    assert ("2026-12-31T23:59:59.999500Z", "2027-01-01T00:00:00.000750Z", 1_250_000) == (
        doc["event"]["start"], doc["event"]["end"], doc["event"]["duration"])


def test_default_format_is_the_native_dumps_and_an_unknown_format_raises() -> None:
    import pytest

    assert records.dumps is records.serializer("json")
    assert ecs.dumps is records.serializer("ecs")
    with pytest.raises(ValueError):
        records.serializer("xml")
