"""The real `sniffd run` with ``[output] format = "ecs"`` on the namespace
gateway of test_daemon_gateway.py (its fixtures, reused): HTTP and TLS
through the gateway, the log file read as Filebeat's ndjson parser would
(strict JSON, one document a line), every document typed as ECS says and
valid for schema/ecs.schema.json, its values those the client saw (the
answer key comes from the client, never from sniffd)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_daemon_gateway import (  # noqa: F401  (fixtures, used by name)
    CLIENT_IP,
    HTTP_PORT,
    PYTHON,
    RECORD_LATENCY_S,
    SERVER_IP,
    SETTLE_S,
    TLS_CLIENT,
    TLS_PORT,
    TLS_SERVER,
    TLS_SNI,
    connections,
    gateway,
    in_ns,
    log_dir,
    read_records,
    run,
    run_client,
    sniffd_user,
    start_sniffd,
    wait_for,
)

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from ecscheck import check_types  # noqa: E402
from recordschema import ecs_problems  # noqa: E402

pytestmark = pytest.mark.live


def test_daemon_with_ecs_format_writes_typed_ecs_documents_of_http_and_tls(gateway, start_sniffd, log_dir, tmp_path):
    cert, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key_file), "-out", str(cert), "-days", "1", "-subj", f"/CN={TLS_SNI}")
    gateway.start(gateway.server, [PYTHON, "-c", TLS_SERVER, SERVER_IP, str(TLS_PORT), str(cert), str(key_file)],
                  "listening")
    daemon = start_sniffd(f"tcp port {HTTP_PORT} or tcp port {TLS_PORT}", output={"format": "ecs", "sensor": "gw-ecs"})
    truth = run_client(gateway, {"server": SERVER_IP, "connections": connections(HTTP_PORT, 2, 2)})
    proc = subprocess.run(in_ns(gateway.client, PYTHON, "-c", TLS_CLIENT, SERVER_IP, str(TLS_PORT), TLS_SNI),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"client failed: {proc.stderr}"
    tls_truth = json.loads(proc.stdout)
    out = log_dir / "http.jsonl"
    assert wait_for(lambda: out.exists() and len(read_records([out])) >= 5, RECORD_LATENCY_S + 3), daemon.stderr()
    time.sleep(SETTLE_S)
    docs = read_records([out])  # strict JSON, no torn line
    rc, _ = daemon.stop()
    assert 0 == rc, daemon.stderr()

    assert [] == [(d.get("event", {}).get("dataset"), p) for d in docs for p in check_types(d) + ecs_problems(d)]
    assert {("gw-ecs", "g1", "sniffd", "sensor")} == {
        (d["observer"]["hostname"], d["observer"]["ingress"]["interface"]["name"], d["observer"]["product"],
         d["observer"]["type"]) for d in docs}
    http = [d for d in docs if d["event"]["dataset"] == "sniffd.http"]
    tls = [d for d in docs if d["event"]["dataset"] == "sniffd.tls"]
    assert sorted(
        (t["client_port"], t["trans_depth"], t["method"], t["uri"], t["host"], t["status"], t["response_body_len"],
         "httpgen/1", CLIENT_IP, SERVER_IP, HTTP_PORT)
        for t in truth
    ) == sorted(
        (d["source"]["port"], d["sniffd"]["trans_depth"], d["http"]["request"]["method"], d["url"]["original"],
         d["url"]["domain"], d["http"]["response"]["status_code"], d["http"]["response"]["body"]["bytes"],
         d["user_agent"]["original"], d["source"]["ip"], d["destination"]["ip"], d["destination"]["port"])
        for d in http
    )
    # event.duration is in nanoseconds: the gateway saw each transaction inside
    # the interval the client measured around it (the same clock; 10 ms for
    # the capture's time stamping).
    measured = {(t["client_port"], t["trans_depth"]): (t["t_response_end_s"] - t["t_request_s"]) * 1e9 for t in truth}
    for d in http:
        client_ns = measured[(d["source"]["port"], d["sniffd"]["trans_depth"])]
        assert 0 < d["event"]["duration"] <= client_ns + 10_000_000, (d["event"], client_ns)
    ((doc,),) = [tls]
    version = {"TLSv1.3": ("tls", "1.3"), "TLSv1.2": ("tls", "1.2")}[tls_truth["version"]]
    assert (CLIENT_IP, tls_truth["client_port"], SERVER_IP, TLS_PORT, version, tls_truth["cipher"], TLS_SNI, True,
            ["h2", "http/1.1"], "fin") == (
        doc["source"]["ip"], doc["source"]["port"], doc["destination"]["ip"], doc["destination"]["port"],
        (doc["tls"]["version_protocol"], doc["tls"]["version"]), doc["tls"]["cipher"],
        doc["tls"]["client"]["server_name"], doc["tls"]["established"], doc["sniffd"]["tls"]["alpn_offered"],
        doc["sniffd"]["end_reason"])
    assert doc["source"]["bytes"] > 0 and doc["destination"]["bytes"] > 0
    assert doc["source"]["bytes"] + doc["destination"]["bytes"] == doc["network"]["bytes"]
