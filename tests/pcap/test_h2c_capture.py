"""The real ``sniffd read`` on captures/h2c/loopback_h2c.pcap: real h2c traffic
between Hypercorn and curl (prior knowledge; Upgrade: h2c) and a python-hyper
h2 client (nine streams at once, gRPC trailers, a stream it cancelled), made
by tests/pcap/make_h2c_fixtures.py.  Every record is held to the answer key
beside it, which the two ends wrote (tests/h2truth.py)."""

import json
import subprocess
import sys
from pathlib import Path

from pcapcheck import read_records

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.h2truth import NO_REDACTION, check_against_key  # noqa: E402

H2C = Path(__file__).resolve().parents[2] / "captures" / "h2c"
KEY = json.loads((H2C / "loopback_h2c.json").read_text())


def test_the_key_holds_every_shape_the_capture_was_made_for():
    """Prior knowledge, an upgrade (stream 1 sent in HTTP/1.1, its 101 interim),
    streams open at once, gRPC's status in trailers, a stream reset: so that a
    capture made again cannot lose one unnoticed."""
    conns = {c["name"]: c["streams"] for c in KEY["connections"].values()}
    upgraded = conns["curl_upgrade"]["1"]
    assert ({"curl_prior_knowledge", "curl_upgrade", "h2_client_concurrent"}, "1.1", 101) == (
        set(conns), upgraded["request"]["version"], upgraded["response"]["interim"][0]["status"])
    concurrent = conns["h2_client_concurrent"].values()
    assert (9, 1, 1) == (len(concurrent), sum(v["grpc"] is not None for v in concurrent),
                         sum(v["end_reason"] == "rst_stream" for v in concurrent))


def test_every_stream_gives_the_record_the_ends_say(tmp_path):
    pcap = tmp_path / "loopback_h2c.pcap"
    pcap.write_bytes((H2C / "loopback_h2c.pcap").read_bytes())
    config = tmp_path / "sniffd.toml"
    config.write_text(NO_REDACTION)
    check_against_key(read_records(pcap, "-c", str(config)), KEY)


def test_a_run_without_http2_does_not_load_the_stage(tmp_path):
    """sniffd.http2 loads the stage (and hpack) at the first HTTP/2 connection:
    reading HTTP/1 and TLS alone does not pay for it; reading h2c does; the
    daemon's preload (before it drops privileges) loads it."""
    probe = (
        "import sys\n"
        "from sniffd import cli, privileges\n"
        "cli.main(['read', '-q', sys.argv[1], '-o', sys.argv[2]])\n"
        "print(sorted(m for m in ('hpack', 'sniffd.http2.connection', 'sniffd.http2.flow') if m in sys.modules))\n"
        "privileges.preload()\n"
        "print(sorted(m for m in ('hpack', 'sniffd.http2.connection', 'sniffd.http2.flow') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    seen = []
    for pcap in (root / "captures" / "sample.pcap", H2C / "loopback_h2c.pcap"):
        proc = subprocess.run([sys.executable, "-c", probe, str(pcap), str(tmp_path / "out.jsonl")], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert 0 == proc.returncode, proc.stderr
        seen.append(proc.stdout.splitlines())
    everything = "['hpack', 'sniffd.http2.connection', 'sniffd.http2.flow']"
    assert [["[]", everything], [everything, everything]] == seen
