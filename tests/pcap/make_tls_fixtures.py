#!/usr/bin/env python3
"""Record captures/tls/loopback_handshakes.pcap and its answer key (needs root, tcpdump, tshark, openssl).

    .venv/bin/python tests/pcap/make_tls_fixtures.py [OUTDIR]     (default: captures/tls/)

Real TLS over loopback, made the way tests/live/test_tls_loopback.py makes it
(python ``ssl`` server with a throwaway self-signed certificate; python
clients and curl), five connections:

    tls12       TLS 1.2, SNI tls.test, ALPN h2,http/1.1 (server certificate in clear)
    tls12_resumed  the same client resuming that session (ticket)
    tls13       TLS 1.3, SNI tls.test, ALPN h2,http/1.1
    tls13_resumed  the same client resuming with a PSK
    curl        curl -k --http1.1, SNI curl.test

Keys are random, so a new run gives other bytes: the committed files are the
fixture, this script is how they were made.  The answer key
(loopback_handshakes.json, by client port) is written from the two ends'
own knowledge (python ssl, curl -v), tshark's dissection of the capture
(JA3, JA3S) and ``openssl x509`` on the certificate; sniffd is never run.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.live.conftest import CAPTURE_SETTLE_S, TcpdumpCapture  # noqa: E402
from tests.live.test_tls_loopback import (  # noqa: E402
    ALPN,
    SNI,
    TIMEOUT_S,
    TlsServer,
    make_certificate,
    openssl_certificate_fields,
    openssl_iana_names,
    python_client,
    server_context,
    tshark_rows,
)


def main(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    tmp = outdir / ".work"
    tmp.mkdir(exist_ok=True)
    cert, key = make_certificate(tmp)
    iana = openssl_iana_names()
    server = TlsServer(server_context(cert, key))
    web = TlsServer(server_context(cert, key, alpn=False), http=True)
    pcap = outdir / "loopback_handshakes.pcap"
    capture = TcpdumpCapture(pcap, f"tcp port {server.port} or tcp port {web.port}").start()
    key_rows = {}
    try:
        v12 = ssl.TLSVersion.TLSv1_2

        def note(name, known, srv, **extra):
            conn = srv.next_conn()
            key_rows[conn.client_port] = {
                "name": name,
                "version": known["version"],
                "cipher": iana.get(known["cipher"], known["cipher"]),
                "alpn": known["alpn"] if known["version"] != "TLSv1.3" else None,
                "resumed": known["reused"],
                **extra,
            }

        known, session, ctx, _ = python_client(server.port, max_version=v12, sni=SNI, alpn=ALPN)
        note("tls12", known, server, sni=SNI, server_cert=openssl_certificate_fields(cert))
        known, *_ = python_client(server.port, ctx=ctx, sni=SNI, session=session)
        note("tls12_resumed", known, server, sni=SNI, server_cert=None)
        known, session, ctx, _ = python_client(server.port, sni=SNI, alpn=ALPN)
        note("tls13", known, server, sni=SNI, server_cert=None)
        known, *_ = python_client(server.port, ctx=ctx, sni=SNI, session=session)
        note("tls13_resumed", known, server, sni=SNI, server_cert=None)
        proc = subprocess.run(["curl", "-k", "-sS", "-v", "--http1.1", "--resolve", f"curl.test:{web.port}:127.0.0.1", f"https://curl.test:{web.port}/"],
                              capture_output=True, text=True, timeout=TIMEOUT_S)  # fmt: skip
        m = re.search(r"SSL connection using (TLSv1\.[23]) / (\S+)", proc.stderr)
        note("curl", {"version": m[1], "cipher": m[2], "alpn": None, "reused": False}, web, sni="curl.test", server_cert=None)
        time.sleep(CAPTURE_SETTLE_S)
    finally:
        capture.stop()
        server.stop()
        web.stop()
    rows = tshark_rows(pcap, [server.port, web.port])
    for port, row in key_rows.items():
        row["ja3"] = rows[(port, 1)]["tls.handshake.ja3"]
        row["ja3s"] = rows[(port, 2)]["tls.handshake.ja3s"]
    answer = {"server_ports": [server.port, web.port], "connections": {str(p): r for p, r in sorted(key_rows.items())}}
    (outdir / "loopback_handshakes.json").write_text(json.dumps(answer, indent=1) + "\n")
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "captures" / "tls")
