"""Default redaction on real traffic: every shape of tests/sent_secrets.py
(``SHAPES``: the places issue 11 found secrets getting through) goes over
kernel TCP on 127.0.0.1, tcpdump captures it and the installed ``sniffd read``
writes the log.  The records hold keyed tokens where the secrets were, and
the session-end scan (tests/conftest.py) finds none of the secrets in it.

Expected tokens come from hmac with the key the test configures, never from
sniffd.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests import sent_secrets as S
from tests.live.conftest import CAPTURE_SETTLE_S, SNIFFD_TIMEOUT_S, TcpdumpCapture

pytestmark = pytest.mark.live

KEY_HEX = "8899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677"

# Per socket operation: loopback answers in microseconds.
TIMEOUT_S = 10.0


def tok(secret: str) -> str:
    return "hmac:" + hmac.new(bytes.fromhex(KEY_HEX), secret.encode(), hashlib.sha256).hexdigest()[:16]


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


class ScriptedServer:
    """Accepts one connection on an ephemeral 127.0.0.1 port and plays
    ``script``: for each (request, response), reads exactly the request's
    bytes and answers with the response's.  No HTTP parsing: the script is the
    answer key."""

    def __init__(self, script: list[tuple[bytes, bytes]]) -> None:
        self.script = script
        self.errors: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TIMEOUT_S)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
            with conn:
                conn.settimeout(TIMEOUT_S)
                for request, response in self.script:
                    got = recv_exactly(conn, len(request))
                    if got != request:
                        self.errors.append(f"expected {request[:60]!r}, got {got[:60]!r}")
                        return
                    conn.sendall(response)
                recv_exactly(conn, 1)  # the client's FIN
        except OSError as exc:
            self.errors.append(repr(exc))
        finally:
            self._listener.close()

    def join(self) -> None:
        self._thread.join(TIMEOUT_S)


def test_default_redaction_of_every_secret_shape_on_loopback(tmp_path: Path, sniffd_exe: Path) -> None:
    script = [(req, resp) for _, req, resp, _ in S.SHAPES] + [S.TUNNEL_BYTES]
    server = ScriptedServer(script).start()
    pcap = tmp_path / "secrets.pcap"
    capture = TcpdumpCapture(pcap, f"tcp port {server.port}").start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as client:
            for request, response in script:
                client.sendall(request)
                assert response == recv_exactly(client, len(response))
        server.join()
        time.sleep(CAPTURE_SETTLE_S)
    finally:
        counters = capture.stop()
    assert [] == server.errors, "the scripted server failed; this is not a sniffd result"
    assert 0 == counters.get("dropped", 0), f"tcpdump dropped packets: {capture.stderr_text()}"

    config = tmp_path / "sniffd.toml"
    config.write_text(f'[privacy]\nredact_key = "{KEY_HEX}"\n[bodies]\ncapture_bodies = true\n')
    out = tmp_path / "records.jsonl"
    proc = subprocess.run([str(sniffd_exe), "read", "-c", str(config), str(pcap), "-o", str(out)],
                          capture_output=True, text=True, timeout=SNIFFD_TIMEOUT_S, check=False)
    assert (0, "") == (proc.returncode, proc.stderr)
    text = out.read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines()]
    # The CONNECT tunnel's bytes are a TLS hello and the server's alert: a TLS record (issue 12).
    tls = [r["tls"]["starttls"] for r in records if r["kind"] == "tls"]
    records = sorted((r for r in records if r["kind"] == "http"), key=lambda r: r["trans_depth"])
    assert (len(S.SHAPES), ["http"]) == (len(records), tls)
    expected, actual = S.expected_and_actual(records, tok)
    assert expected == actual
    assert [] == [s for s in S.ALL if s in text]
