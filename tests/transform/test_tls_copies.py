"""TLS and STARTTLS connections through seeded reordering, duplication and re-segmentation
(bench/transform.py): what a receiving stack would deliver is unchanged, so each connection's
TLS record must still say exactly what its two ends negotiated.

Input: captures/tls/starttls.pcap, real loopback traffic (one connection per cleartext
protocol, and a CONNECT tunnel), with its answer key captures/tls/starttls.json written from
what the client and server knew (tests/make_starttls_capture.py), never from sniffd.  The
handshakes are reordered, hellos split at other offsets and duplicated; the key's ``tls``
object (version, cipher, SNI, ALPN, established, starttls, byte counts) must come out whole,
with no anomaly.  Only ``ts`` is not compared: re-segmentation may move a hello's first byte
into a packet captured at another time.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import transform  # bench/transform.py (tests/transform/conftest.py puts bench/ on the path)

REPO = Path(__file__).resolve().parents[2]
KEY = json.loads((REPO / "captures" / "tls" / "starttls.json").read_text())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reordered_duplicated_resegmented_tls_copies_give_the_negotiated_records(seed, sniffd_exe, tmp_path):
    copy = tmp_path / f"starttls-{seed}.pcap"
    sidecar = transform.transform_file(REPO / "captures" / "tls" / "starttls.pcap", copy,
                                       ["shuffle", "duplicate", "resegment"], transform.Params(seed=seed))
    assert sidecar["transforms"] == ["shuffle", "duplicate", "resegment"]
    out = tmp_path / f"starttls-{seed}.jsonl"
    proc = subprocess.run([str(sniffd_exe), "read", str(copy), "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert 0 == proc.returncode, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    got = {}
    for r in records:
        if r["kind"] == "tls":
            assert (r["client"]["port"], r["server"]["port"]) not in got, "one TLS record per connection"
            got[(r["client"]["port"], r["server"]["port"])] = ({k: r["tls"].get(k) for k in KEY["connections"][0]["tls"]},
                                                               r["anomalies"], r["end_reason"])
    expected = {(row["client"]["port"], row["server"]["port"]): (row["tls"], [], row["end_reason"]) for row in KEY["connections"]}
    assert expected == got
