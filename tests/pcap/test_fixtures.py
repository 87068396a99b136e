"""Every captures/NAME.pcap that has a NAME.jsonl beside it: sniffd's records, field by
field, equal the hand-written expected records (in output order).  Clean captures
raise no anomaly.  The shipped fixtures are exactly what make_fixtures.py writes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from make_fixtures import CLEAN, FIXTURES
from pcapcheck import community_id, load_jsonl, read_records, without_run_fields

REPO = Path(__file__).resolve().parent.parent.parent
CAPTURES = REPO / "captures"
RECORD_KEYS = [
    "kind", "ts", "uid", "client", "server", "vlan", "tunnel", "request", "response", "duration_ms", "trans_depth",
    "community_id", "end_reason", "anomalies", "sensor", "interface",
]  # fmt: skip
OPTIONAL_KEYS = {"vlan", "tunnel"}  # written only for encapsulated traffic
PAIRS = sorted(p for p in CAPTURES.glob("*.pcap") if p.with_suffix(".jsonl").exists())


def test_shipped_fixtures_are_present():
    assert sorted(f"{name}.pcap" for name in FIXTURES) == sorted(
        p.name for p in PAIRS if p.stem in FIXTURES
    ), "run tests/pcap/make_fixtures.py"


@pytest.mark.parametrize("pcap", PAIRS, ids=[p.stem for p in PAIRS])
def test_capture_gives_the_expected_records_field_by_field(pcap, tmp_path):
    expected = load_jsonl(pcap.with_suffix(".jsonl"))
    copy = tmp_path / pcap.name  # sniffd writes beside its input in read_records; keep captures/ clean
    copy.write_bytes(pcap.read_bytes())
    whole = read_records(copy, run_fields=True)
    got = without_run_fields(whole)  # the expected files do not pin them (pcapcheck.RUN_FIELDS)
    assert len(expected) == len(got), f"{len(got)} records, expected {len(expected)}:\n" + "\n".join(
        json.dumps(r) for r in got
    )
    mismatches = [
        (n, key, exp.get(key, "<absent>"), rec.get(key, "<absent>"))
        for n, (exp, rec) in enumerate(zip(expected, got))
        for key in dict.fromkeys([*exp, *rec])
        if exp.get(key, "<absent>") != rec.get(key, "<absent>")
    ]
    assert [] == mismatches, "(record, field, expected, got)"
    contract = [[k for k in RECORD_KEYS if k in rec or k not in OPTIONAL_KEYS] for rec in whole]
    assert contract == [list(rec) for rec in whole], "record keys not in the contract's order"


@pytest.mark.parametrize("pcap", PAIRS, ids=[p.stem for p in PAIRS])
def test_expected_records_carry_reference_community_ids(pcap):
    """Guards the hand-written .jsonl: its community_id values match the reference."""
    for rec in load_jsonl(pcap.with_suffix(".jsonl")):
        c, s = rec["client"], rec["server"]
        assert community_id(c["ip"], c["port"], s["ip"], s["port"]) == rec["community_id"]


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_clean_capture_raises_no_anomaly(name, tmp_path):
    pcap = tmp_path / f"{name}.pcap"
    pcap.write_bytes((CAPTURES / f"{name}.pcap").read_bytes())
    expected = load_jsonl(CAPTURES / f"{name}.jsonl")
    got = read_records(pcap)
    assert ([[]] * len(expected), [[]] * len(got)) == (
        [r["anomalies"] for r in expected],
        [r["anomalies"] for r in got],
    )


def test_make_fixtures_recreates_the_shipped_captures_byte_for_byte(tmp_path):
    script = Path(__file__).with_name("make_fixtures.py")
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True, timeout=60)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f"{name}{ext}" for name in FIXTURES for ext in (".pcap", ".jsonl"))
    for name in written:
        assert (CAPTURES / name).read_bytes() == (tmp_path / name).read_bytes(), f"captures/{name} is stale"
