"""The README documents every anomaly name and every record field sniffd
writes: operators read the README, not the code."""

import json
import re
import subprocess
import sys
from pathlib import Path

from sniffd.anomalies import ANOMALIES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _section(text: str, heading: str) -> str:
    return text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


# "## The record" documents the HTTP record, then the TLS record under this heading.
TLS_HEADING = "### The TLS record\n"


def _table_names(text: str, heading: str) -> set[str]:
    """First-column `names` of the table under a '## heading' (for "The record": the HTTP
    record's table, before the TLS record's)."""
    return set(re.findall(r"^\| `([a-z0-9_.]+)` \|", _section(text, heading).split(TLS_HEADING)[0], flags=re.M))


def _optional_names(text: str, heading: str) -> set[str]:
    """The names whose meaning starts with "Only": written on some records only."""
    return set(re.findall(r"^\| `([a-z0-9_.]+)` \| Only ", _section(text, heading).split(TLS_HEADING)[0], flags=re.M))


def _tls_table_names(text: str) -> set[str]:
    """The TLS record's table: first-column names, several to a row ("`client`, `server`")."""
    table = _section(text, "The record").split(TLS_HEADING)[1].split("\n### ", 1)[0]
    names = set()
    for first in re.findall(r"^\| ((?:`[a-z0-9_.]+`(?:, )?)+) \|", table, flags=re.M):
        names |= set(re.findall(r"`([a-z0-9_.]+)`", first))
    return names


def test_readme_anomaly_table_lists_exactly_the_anomalies_in_the_code():
    assert set(ANOMALIES) == _table_names(README, "Anomalies")


def _field_paths(record: dict) -> set[str]:
    paths = set()
    for key, value in record.items():
        paths.add(key)
        if key in ("request", "response", "tls") and isinstance(value, dict):
            paths |= {f"{key}.{sub}" for sub in value}
    return paths


def test_readme_record_table_documents_every_field_sniffd_writes(tmp_path):
    """Every field written on captures/sample.pcap (with body capture on, so
    the body fields are written too) is documented, and every documented
    field is written, but those documented as written "Only" in some cases
    (vlan, tunnel, start_line, ...), which a plain capture need not show."""
    config = tmp_path / "sniffd.toml"
    config.write_text("[bodies]\ncapture_bodies = true\n")
    out = subprocess.run(
        [str(Path(sys.executable).parent / "sniffd"), "read", "-c", str(config), str(ROOT / "captures" / "sample.pcap")],
        capture_output=True, text=True, check=True,
    ).stdout
    written = set()
    for line in out.splitlines():
        written |= _field_paths(json.loads(line))
    documented = _table_names(README, "The record")
    optional = _optional_names(README, "The record")
    assert (set(), set()) == (written - documented, documented - optional - written)
    assert {"vlan", "tunnel"} <= optional


def test_readme_record_table_documents_every_field_of_http2_records():
    """Every field of the records written on captures/h2c/loopback_h2c.pcap (real h2c
    traffic) is in the HTTP record's table, and the four only HTTP/2 records have are
    documented as written "Only" on them."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "sniffd"), "read", str(ROOT / "captures" / "h2c" / "loopback_h2c.pcap")],
        capture_output=True, text=True, check=True,
    ).stdout
    written = set()
    for line in out.splitlines():
        written |= _field_paths(json.loads(line))
    h2_only = {"stream_id", "pushed_by", "h2_error", "grpc"}
    assert (set(), h2_only) == (written - _table_names(README, "The record"),
                                h2_only & written & _optional_names(README, "The record"))


def test_readme_tls_record_table_documents_every_field_of_the_tls_record():
    """Every field of the TLS records written on captures/tls/loopback_handshakes.pcap is in
    the TLS record's table, and the table names nothing else (but vlan and tunnel)."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "sniffd"), "read", str(ROOT / "captures" / "tls" / "loopback_handshakes.pcap")],
        capture_output=True, text=True, check=True,
    ).stdout
    written = set()
    for line in out.splitlines():
        written |= _field_paths(json.loads(line))
    assert written - {"vlan", "tunnel"} == _tls_table_names(README) - {"vlan", "tunnel"}
