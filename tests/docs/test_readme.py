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


def _table_names(text: str, heading: str) -> set[str]:
    """First-column `names` of the table under a '## heading'."""
    return set(re.findall(r"^\| `([a-z_.]+)` \|", _section(text, heading), flags=re.M))


def _optional_names(text: str, heading: str) -> set[str]:
    """The names whose meaning starts with "Only": written on some records only."""
    return set(re.findall(r"^\| `([a-z_.]+)` \| Only ", _section(text, heading), flags=re.M))


def test_readme_anomaly_table_lists_exactly_the_anomalies_in_the_code():
    assert set(ANOMALIES) == _table_names(README, "Anomalies")


def _field_paths(record: dict) -> set[str]:
    paths = set()
    for key, value in record.items():
        paths.add(key)
        if key in ("request", "response") and isinstance(value, dict):
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
