#!/usr/bin/env python3
"""Record captures/tls/starttls.pcap and its answer key starttls.json (needs root and tcpdump).

    .venv/bin/python tests/make_starttls_capture.py [OUTDIR]     (default: captures/tls/)

Real kernel TCP on loopback, made by tests/starttls.py: one connection per
cleartext protocol that upgrades to TLS (``FIXTURE_VARIANTS``: SMTP, IMAP,
POP3, FTP, XMPP, LDAP, IRC, PostgreSQL, MySQL, RDP and an HTTP CONNECT
tunnel), under one tcpdump.  Keys are random, so a new run gives other bytes:
the committed files are the fixture, this script is how they were made.

The answer key is written from the two ends' own knowledge and the capture
read with dpkt (see ``tests.starttls.ground_truth`` for each field); sniffd is
never run.  Its shape::

    {"made_by": "tests/make_starttls_capture.py",
     "connections": [
       {"protocol": "smtp",
        "client": {"ip": "127.0.0.1", "port": 51234}, "server": {"ip": "127.0.0.1", "port": 40001},
        "ts": "...Z",                  the packet carrying the ClientHello's first byte
        "end_reason": "fin",
        "tls": {...},                  what the record's tls object must say, field by field
        "ends": {"variant": ..., "client": ..., "server": ..., "hello_in_segment_with_cleartext": false},
        "http": null},                 for the CONNECT tunnel: {"method", "uri", "host", "status", "ts"}
       ...]}
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.starttls import FIXTURE_VARIANTS, capture_variants, ground_truth  # noqa: E402


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    pcap = outdir / "starttls.pcap"
    with tempfile.TemporaryDirectory() as tmp:
        runs = capture_variants(FIXTURE_VARIANTS, pcap, Path(tmp))
    truth = {"made_by": "tests/make_starttls_capture.py", "connections": ground_truth(pcap, runs)}
    (outdir / "starttls.json").write_text(json.dumps(truth, indent=1) + "\n")
    for row in truth["connections"]:
        print(row["protocol"], row["client"]["port"], "->", row["server"]["port"], row["tls"]["version"], row["tls"]["sni"], row["tls"]["alpn_offered"])


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "captures" / "tls")
