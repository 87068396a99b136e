"""README's *Querying the records (jq cookbook)*: every query, run as written by
the real jq over the real `sniffd read` of the section's captures, gives the
answer counted by hand from the traffic (tests/pcap/make_cookbook_capture.py's
table for captures/cookbook.pcap; tshark's dissection for the TLS capture),
and the output the README shows is that answer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CAPTURE = ROOT / "captures" / "cookbook.pcap"
TLS_CAPTURE = ROOT / "captures" / "tls" / "loopback_handshakes.pcap"
BIN = Path(sys.executable).parent  # sniffd

SECTION = README.split("## Querying the records (jq cookbook)\n", 1)[1].split("\n## ", 1)[0]
# **Title** ... ```sh query ``` then ```text output ```
QUERIES = {
    title: (query, shown)
    for title, query, shown in re.findall(r"\*\*([^*\n]+)\*\*(?:(?!\*\*).)*?```sh\n(.*?)```\n\n```text\n(.*?)```", SECTION, flags=re.S)
}

# Counted by hand from the table in make_cookbook_capture.py (ten requests: www.example.com
# on connections 1, 3, 5, 6; api.example.com on 2 and 4; the unanswered /hang has no
# response and no duration) and, for TLS, from tshark's dissection of the five hellos
# (tls.handshake.extensions_server_name; JA4 per FoxIO's JA4.md from tshark's cipher,
# extension and signature-algorithm fields: t + version + d + counts + ALPN's first and
# last character, then sha256 of the sorted ciphers, then of the sorted extensions
# without SNI and ALPN joined to the signature algorithms, each cut to 12 hex digits).
EXPECTED = {
    "Top hosts": "6\twww.example.com\n4\tapi.example.com\n",
    "5xx rate": "2 of 9 responses were 5xx (22.2%)\n",  # 500 /report.pdf, 503 /v1/items/7
    "Slow requests": (
        '{"ts":"2026-11-21T12:00:00.020000Z","client":"192.0.2.10","host":"www.example.com",'
        '"uri":"/search?q=sniffd","status":200,"duration_ms":850}\n'
        '{"ts":"2026-11-21T12:00:00.900000Z","client":"192.0.2.10","host":"www.example.com",'
        '"uri":"/report.pdf","status":500,"duration_ms":1200}\n'
    ),
    "Requests per client": "4\t192.0.2.11\n3\t192.0.2.10\n2\t192.0.2.12\n1\t192.0.2.13\n",
    "Damaged records, by anomaly name": (
        "2\thttp_ambiguous_framing\n1\thttp_cl_conflict\n1\thttp_te_and_cl\n1\tresponse_missing\n"
    ),
    "Request-smuggling flags": (
        '{"ts":"2026-11-21T12:00:00.500000Z","client":"192.0.2.12","host":"api.example.com","method":"POST",'
        '"uri":"/upload","anomalies":["http_ambiguous_framing","http_te_and_cl"]}\n'
        '{"ts":"2026-11-21T12:00:00.600000Z","client":"192.0.2.12","host":"www.example.com","method":"POST",'
        '"uri":"/comment","anomalies":["http_ambiguous_framing","http_cl_conflict"]}\n'
    ),
    "Top TLS server names": "4\ttls.test\n1\tcurl.test\n",
    "TLS clients by JA4": (
        "1\tt12d1508h2_d68b136fe8d9_e7e480e5a997\ttls.test\n"
        "1\tt12d1509h2_d68b136fe8d9_8932e62835fd\ttls.test\n"
        "1\tt13d1812h2_85036bcba153_d41ae481755e\ttls.test\n"
        "1\tt13d1812h2_85036bcba153_dbd39dd1d406\ttls.test\n"
        "1\tt13d3112h1_e8f1e7e78f70_b26ce05bbdd6\tcurl.test\n"
    ),
}


def test_cookbook_has_the_queries_operators_asked_for():
    assert sorted(EXPECTED) == sorted(QUERIES)


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory) -> Path:
    """A directory holding the section's http.jsonl, made by the section's own `sniffd read` command."""
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed (scripts/install installs it)")
    work = tmp_path_factory.mktemp("cookbook")
    (work / "captures").symlink_to(ROOT / "captures")
    commands = re.findall(r"```sh\n(sniffd read .*?)```", SECTION, flags=re.S)
    assert ["sniffd read captures/cookbook.pcap captures/tls/loopback_handshakes.pcap > http.jsonl\n"] == commands
    subprocess.run(["bash", "-euo", "pipefail", "-c", commands[0]], cwd=work, check=True, timeout=60,
                   env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    return work


@pytest.mark.parametrize("title", sorted(EXPECTED))
def test_cookbook_query_gives_the_hand_counted_answer_and_the_readme_shows_it(title, records_dir):
    query, shown = QUERIES[title]
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", query], cwd=records_dir, capture_output=True, text=True,
                          timeout=60)
    assert (0, "") == (proc.returncode, proc.stderr)
    assert (EXPECTED[title], EXPECTED[title]) == (proc.stdout, shown)


def test_cookbook_capture_is_what_make_cookbook_capture_writes(tmp_path):
    script = ROOT / "tests" / "pcap" / "make_cookbook_capture.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True, timeout=60)
    assert CAPTURE.read_bytes() == (tmp_path / "cookbook.pcap").read_bytes(), "captures/cookbook.pcap is stale"


def tshark(capture: Path, *args: str) -> list[list[str]]:
    out = subprocess.run(["tshark", "-r", str(capture), *args], capture_output=True, text=True, check=True, timeout=60)
    return [line.split("\t") for line in out.stdout.splitlines()]


def test_tshark_finds_the_requests_and_responses_the_capture_is_said_to_hold():
    """An independent dissector reads the traffic the expected answers were counted from.
    POST /comment is missing from its requests: it takes the second of the two
    Content-Length values (5) and waits for two more body bytes that never come, which is
    the disagreement http_cl_conflict flags.  Its response (200, 2 bytes) is there."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (scripts/install installs it)")
    requests = tshark(CAPTURE, "-Y", "http.request", "-T", "fields", "-e", "ip.src", "-e", "http.host",
                      "-e", "http.request.method", "-e", "http.request.uri")
    assert sorted([
        ["192.0.2.10", "www.example.com", "GET", "/"],
        ["192.0.2.10", "www.example.com", "GET", "/search?q=sniffd"],
        ["192.0.2.10", "www.example.com", "GET", "/report.pdf"],
        ["192.0.2.11", "api.example.com", "GET", "/v1/items"],
        ["192.0.2.11", "api.example.com", "POST", "/v1/items"],
        ["192.0.2.11", "api.example.com", "GET", "/v1/items/7"],
        ["192.0.2.13", "www.example.com", "GET", "/logo.png"],
        ["192.0.2.12", "api.example.com", "POST", "/upload"],
        ["192.0.2.11", "www.example.com", "GET", "/hang"],
    ]) == sorted(requests)
    responses = tshark(CAPTURE, "-Y", "http.response", "-T", "fields", "-e", "ip.dst", "-e", "http.response.code", "-e", "http.time")
    assert sorted([
        ["192.0.2.10", "200", "0.012000000"],
        ["192.0.2.10", "200", "0.850000000"],
        ["192.0.2.10", "500", "1.200000000"],
        ["192.0.2.11", "200", "0.030000000"],
        ["192.0.2.11", "201", "0.045000000"],
        ["192.0.2.11", "503", "0.005000000"],
        ["192.0.2.13", "200", "0.003000000"],
        ["192.0.2.12", "400", "0.002000000"],
        ["192.0.2.12", "200", ""],  # /comment's: tshark has no request to time it from
    ]) == sorted(responses)


def test_tshark_finds_the_server_names_the_tls_queries_count():
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (scripts/install installs it)")
    names = tshark(TLS_CAPTURE, "-Y", "tls.handshake.type == 1", "-T", "fields", "-e", "tls.handshake.extensions_server_name")
    assert sorted([["tls.test"]] * 4 + [["curl.test"]]) == sorted(names)
