"""sniffd.flowpcap: the condition language, table-driven; what held frames
cost the memory budget, from the documented costs and frame lengths
written here."""

from __future__ import annotations

import dataclasses

import pytest

from sniffd.flowpcap import FLOW_COST, FRAME_COST, When
from sniffd.pipeline import Pipeline
from sniffd.settings import Settings


def http(method="GET", host="www.example.com", status=200, anomalies=()):
    return {"kind": "http", "request": {"method": method, "host": host},
            "response": None if status is None else {"status": status}, "anomalies": list(anomalies)}


TLS = {"kind": "tls", "tls": {"sni": "api.example.com"}, "anomalies": []}

CASES = [
    # (terms, record, chosen)
    (["status>=500"], http(status=500), True),
    (["status>=500"], http(status=499), False),
    (["status>=500"], http(status=None), False),
    (["status=404"], http(status=404), True),
    (["status!=200"], http(status=200), False),
    (["status<300"], http(status=204), True),
    (["status>399"], http(status=400), True),
    (["status<=100"], http(status=101), False),
    (["method=POST"], http(method="POST"), True),
    (["method=POST"], http(method="post"), False),  # methods are case-sensitive (RFC 9110 section 9.1)
    (["host=www.example.com"], http(host="WWW.Example.COM:8080"), True),
    (["host=example.com"], http(host="www.example.com"), False),
    (["host=*.example.com"], http(host="example.com"), True),
    (["host=*.example.com"], http(host="a.b.example.com"), True),
    (["host=*.example.com"], http(host="badexample.com"), False),
    (["host=api.example.com"], TLS, True),
    (["host=[::1]"], http(host="[::1]:8080"), True),
    (["anomaly"], http(anomalies=["tcp_gap"]), True),
    (["anomaly"], http(), False),
    (["anomaly=tcp_gap"], http(anomalies=["tcp_gap"]), True),
    (["anomaly=tcp_gap"], http(anomalies=["midstream_pickup"]), False),
    (["method=POST & status>=500"], http(method="POST", status=200), False),
    (["method=POST & status>=500"], http(method="POST", status=503), True),
    (["method=POST&status>=500", "anomaly"], http(method="GET", anomalies=["tcp_gap"]), True),
    (["status>=500"], TLS, False),
]


@pytest.mark.parametrize(("terms", "rec", "chosen"), CASES)
def test_when_chooses_as_written(terms, rec, chosen):
    assert chosen == When(terms).matches(rec)


@pytest.mark.parametrize("term", ["", "sometimes", "status>=5", "status>=0500", "status=>500", "status>=abc",
                                  "method=GE T", "host=", "host=a b", "anomaly=nope", "all & anomaly", "ALL"])
def test_when_refuses_what_it_cannot_read(term):
    with pytest.raises(ValueError, match="bad condition"):
        When([term])


def test_all_is_its_own_mode():
    assert When(["all"]).all and not When(["anomaly"]).all


def test_held_frames_are_charged_to_the_memory_budget(tmp_path):
    """One SYN of 74 bytes held: one connection (FLOW_COST) and one frame
    (16-byte record header + 74 + FRAME_COST) more than without flow pcaps."""
    syn = bytes.fromhex(
        "0200000000020200000000010800"  # Ethernet
        "4500003c00014000400600000a0000010a000002"  # IPv4, 60 bytes, checksum 0 (not checked)
        "9c4000500000000a00000000a002ffff00000000"  # TCP 40000 -> 80, SYN, 20 bytes of options follow
        "020405b40402080a000000000000000001030307")
    assert len(syn) == 74
    off = Pipeline(Settings())
    on = Pipeline(dataclasses.replace(Settings(), flow_pcap_dir=str(tmp_path)))
    for p in (off, on):
        p.feed(1_800_000_000.0, 1, syn)
    assert on.flows.estimate() - off.flows.estimate() == FLOW_COST + 16 + 74 + FRAME_COST
    assert on.stats["flow_pcap_held_bytes"] == 320 + 16 + 74 + 48
    on.flush()
    assert on.stats["flow_pcap_held_bytes"] == 0
    assert list(tmp_path.iterdir()) == []  # no record chose it
