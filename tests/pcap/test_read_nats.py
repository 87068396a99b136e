"""`sniffd read -o nats://HOST:PORT/SUBJECT` against a real `nats-server -js`.

The server is the Debian package's (scripts/install), started by each test on
a free port with its own store; what sniffd published is read back by a real
JetStream pull consumer (nats-py, tests/natsserver.py) and compared with the
JSON-lines file that `sniffd read` writes of the same captures.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.natsserver import NatsServer, add_stream, fetch_all, free_port, stream_names  # noqa: E402

SNIFFD = Path(sys.executable).parent / "sniffd"
# Several captures read as one run: HTTP/1, h2c, TLS records, a VLAN/IPv6 one.
CAPTURES = [ROOT / "captures" / name for name in
            ("sample.pcap", "pipeline_head.pcap", "vlan_ipv6.pcap", "h2c/loopback_h2c.pcap", "tls/loopback_handshakes.pcap")]
SUBJECT = "sniffd.http"
# A fixed token key: redaction tokens are then the same in both reads.
CONFIG = "[privacy]\nredact_key = '000102030405060708090a0b0c0d0e0f'\n"

pytestmark = pytest.mark.skipif(NatsServer.available() is not None, reason=str(NatsServer.available()))

_UID = re.compile(r'"uid":"C[0-9A-Za-z]{17}"')


def same_uids(lines: list[str]) -> list[str]:
    """Each connection's uid renamed by its first appearance (U1, U2, ...): a
    uid is drawn afresh each run, so two reads agree on which records share
    one, not on its value (as tests/pcap/test_read_streams.py)."""
    seen: dict[str, str] = {}
    return [_UID.sub(lambda m: seen.setdefault(m.group(), f'"uid":"U{len(seen) + 1}"'), line) for line in lines]


@pytest.fixture
def server(tmp_path):
    srv = NatsServer(tmp_path / "store").start()
    yield srv
    srv.stop()


def sniffd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(SNIFFD), *args], capture_output=True, text=True, timeout=timeout)


def config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "sniffd.toml"
    path.write_text(CONFIG + extra)
    return path


def file_lines(tmp_path: Path, cfg: Path) -> list[str]:
    out = tmp_path / "records.jsonl"
    proc = sniffd("read", "-c", str(cfg), *map(str, CAPTURES), "-o", str(out))
    assert 0 == proc.returncode, proc.stderr
    return out.read_text(encoding="utf-8").split("\n")[:-1]


def by_sequence(msgs: list[dict]) -> list[str]:
    """Payloads in the order of the output (the sequence after the run id in Nats-Msg-Id)."""
    return [m["data"] for m in sorted(msgs, key=lambda m: int(m["msg_id"].rsplit("-", 1)[1]))]


def test_read_publishes_every_record_unchanged_as_one_message(server, tmp_path):
    cfg = config(tmp_path)
    expected = file_lines(tmp_path, cfg)
    assert len(expected) > 20, "the captures give a few dozen records"
    add_stream(server.url, "RECORDS", [SUBJECT])
    proc = sniffd("read", "-c", str(cfg), *map(str, CAPTURES), "-o", f"{server.url}/{SUBJECT}")
    assert (0, "") == (proc.returncode, proc.stderr)

    msgs = fetch_all(server.url, "RECORDS", SUBJECT)
    ids = [m["msg_id"] for m in msgs]
    # One message per record, each with its own id: one run id, sequence 1..N.
    assert len(expected) == len(msgs) == len(set(ids))
    run_ids = {i.rsplit("-", 1)[0] for i in ids}
    assert 1 == len(run_ids)
    assert list(range(1, len(expected) + 1)) == sorted(int(i.rsplit("-", 1)[1]) for i in ids)
    # Byte for byte the file's lines, in the file's order.
    assert same_uids(expected) == same_uids(by_sequence(msgs))


def test_read_with_one_ack_in_flight_stores_the_records_in_output_order(server, tmp_path):
    cfg = config(tmp_path, "[nats]\nmax_pending_acks = 1\n")
    expected = file_lines(tmp_path, cfg)
    add_stream(server.url, "RECORDS", [SUBJECT])
    proc = sniffd("read", "-c", str(cfg), *map(str, CAPTURES), "-o", f"{server.url}/{SUBJECT}", "--stats")
    assert 0 == proc.returncode, proc.stderr
    msgs = fetch_all(server.url, "RECORDS", SUBJECT)
    # The stream's own order (its sequence numbers), not re-sorted.
    assert same_uids(expected) == same_uids([m["data"] for m in sorted(msgs, key=lambda m: m["seq"])])
    assert f'"output": {{"output_state": "ok", "records_held": 0, "records_lost": 0, "records_written": {len(expected)},' in proc.stderr


def test_read_without_a_stream_for_the_subject_fails_with_one_line_and_publishes_nothing(server, tmp_path):
    add_stream(server.url, "OTHER", ["other.>"])
    proc = sniffd("read", str(CAPTURES[0]), "-o", f"{server.url}/{SUBJECT}")
    assert 2 == proc.returncode
    assert [f"sniffd: error: {server.url}/{SUBJECT}: no JetStream stream takes subject '{SUBJECT}' "
            f"(create one, e.g. `nats stream add --subjects {SUBJECT} SNIFFD`, or set [nats] create_stream = true)"] == proc.stderr.splitlines()
    assert "" == proc.stdout
    assert ["OTHER"] == stream_names(server.url)
    assert [] == fetch_all(server.url, "OTHER", "other.>")


def test_read_creates_the_stream_only_when_asked(server, tmp_path):
    cfg = config(tmp_path, "[nats]\ncreate_stream = true\nstream = 'HTTP_RECORDS'\n")
    expected = file_lines(tmp_path, cfg)
    proc = sniffd("read", "-c", str(cfg), *map(str, CAPTURES), "-o", f"{server.url}/{SUBJECT}")
    assert (0, "") == (proc.returncode, proc.stderr)
    assert ["HTTP_RECORDS"] == stream_names(server.url)
    assert same_uids(expected) == same_uids(by_sequence(fetch_all(server.url, "HTTP_RECORDS", SUBJECT)))


def test_read_to_a_stream_of_another_name_than_configured_fails(server, tmp_path):
    add_stream(server.url, "RECORDS", [SUBJECT])
    cfg = config(tmp_path, "[nats]\nstream = 'SNIFFD'\n")
    proc = sniffd("read", "-c", str(cfg), str(CAPTURES[0]), "-o", f"{server.url}/{SUBJECT}")
    assert 2 == proc.returncode
    assert [f"sniffd: error: {server.url}/{SUBJECT}: subject '{SUBJECT}' is taken by stream 'RECORDS', not 'SNIFFD' ([nats] stream)"] == proc.stderr.splitlines()
    assert [] == fetch_all(server.url, "RECORDS", SUBJECT)


def test_read_to_an_unreachable_server_fails_within_the_connect_timeout(tmp_path):
    port = free_port()
    cfg = config(tmp_path, "[nats]\nconnect_timeout_s = 1.0\n")
    t0 = time.monotonic()
    proc = sniffd("read", "-c", str(cfg), str(CAPTURES[0]), "-o", f"nats://127.0.0.1:{port}/{SUBJECT}")
    elapsed = time.monotonic() - t0
    assert 2 == proc.returncode
    assert [f"sniffd: error: nats://127.0.0.1:{port}/{SUBJECT}: cannot connect within 1 s: "
            f"ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', {port})"] == proc.stderr.splitlines()
    assert elapsed < 5, "gave up after connect_timeout_s, not nats-py's endless retries"


def test_read_with_credentials_in_the_url_and_without_them(tmp_path):
    srv = NatsServer(tmp_path / "store", extra=["--user", "shipper", "--pass", "s3cret"]).start()
    try:
        authed = f"nats://shipper:s3cret@127.0.0.1:{srv.port}"
        add_stream(authed, "RECORDS", [SUBJECT])
        proc = sniffd("read", str(CAPTURES[0]), "-o", f"{authed}/{SUBJECT}")
        assert (0, "") == (proc.returncode, proc.stderr)
        assert 3 == len(fetch_all(authed, "RECORDS", SUBJECT))

        cfg = config(tmp_path, "[nats]\nconnect_timeout_s = 1.0\n")
        proc = sniffd("read", "-c", str(cfg), str(CAPTURES[0]), "-o", f"nats://shipper:wrong@127.0.0.1:{srv.port}/{SUBJECT}")
        assert 2 == proc.returncode
        lines = proc.stderr.splitlines()
        assert 1 == len(lines) and "wrong" not in lines[0], lines
        assert lines[0].startswith(f"sniffd: error: nats://127.0.0.1:{srv.port}/{SUBJECT}: cannot connect within 1 s: "), lines
        assert "Authorization" in lines[0], lines
        assert 3 == len(fetch_all(authed, "RECORDS", SUBJECT))
    finally:
        srv.stop()


@pytest.mark.parametrize("url,problem", [
    ("nats://127.0.0.1:4222/", "no subject (nats://HOST:PORT/SUBJECT)"),
    ("nats://127.0.0.1:4222/sniffd.>", "the subject must not hold wildcards (* or >): records are published to one subject, got 'sniffd.>'"),
    ("nats://127.0.0.1:99999/sniffd", "not a nats:// URL (Port out of range 0-65535)"),
    ("nats://user:pw@/sniffd", "no host (nats://HOST:PORT/SUBJECT)"),
    ("http://127.0.0.1:4222/sniffd", "the scheme must be nats://, got http://"),
])
def test_read_with_a_bad_nats_url_gives_one_line_and_exit_2(url, problem):
    proc = sniffd("read", str(CAPTURES[0]), "-o", url)
    shown = url.replace("user:pw@", "")
    assert (2, "", [f"sniffd: error: -o: bad NATS URL {shown!r}: {problem}"]) == (proc.returncode, proc.stdout, proc.stderr.splitlines())


def readme_consumer() -> str:
    """The consumer snippet of README's *Shipping records (NATS JetStream)*."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Shipping records (NATS JetStream)"):]
    section = section[section.index("#### The consumer side"):]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_consumer_prints_every_record_sniffd_published(server, tmp_path):
    cfg = config(tmp_path, "[nats]\nmax_pending_acks = 1\n")
    expected = file_lines(tmp_path, cfg)
    add_stream(server.url, "SNIFFD", [SUBJECT])
    proc = sniffd("read", "-c", str(cfg), *map(str, CAPTURES), "-o", f"{server.url}/{SUBJECT}")
    assert 0 == proc.returncode, proc.stderr
    script = tmp_path / "consume.py"
    script.write_text(readme_consumer())
    consumer = subprocess.run([sys.executable, str(script), server.url, "SNIFFD", SUBJECT],
                              capture_output=True, text=True, timeout=60)
    assert 0 == consumer.returncode, consumer.stderr
    assert same_uids(expected) == same_uids(consumer.stdout.split("\n")[:-1])
    # Durable and acknowledged: run again, it has nothing left to print.
    again = subprocess.run([sys.executable, str(script), server.url, "SNIFFD", SUBJECT],
                           capture_output=True, text=True, timeout=60)
    assert (0, "") == (again.returncode, again.stdout), again.stderr


def test_read_into_a_full_stream_counts_the_refused_records_lost_and_exits_1(server, tmp_path):
    """A stream that takes 2 messages and refuses the rest (discard new): the
    refused records are re-sent until close_timeout_s, then counted lost, said
    on stderr, and the exit status is 1: a loss is never silent."""
    add_stream(server.url, "SMALL", [SUBJECT], max_msgs=2, discard="new")
    cfg = config(tmp_path, "[nats]\nclose_timeout_s = 1.0\nmax_pending_acks = 1\n")
    expected = file_lines(tmp_path, cfg)
    proc = sniffd("read", "-c", str(cfg), *map(str, CAPTURES), "-o", f"{server.url}/{SUBJECT}")
    assert 1 == proc.returncode, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"sniffd: warning: {server.url}/{SUBJECT}: output_blocked: error=publish not acknowledged: "
                               "JetStream error 503 (10077): maximum messages exceeded"), lines
    assert lines[-2].startswith(f"sniffd: warning: {server.url}/{SUBJECT}: output_lost_at_exit: records_lost={len(expected) - 2}, "), lines
    assert f"sniffd: error: {server.url}/{SUBJECT}: {len(expected) - 2} records lost (not acknowledged by JetStream), 2 acknowledged" == lines[-1]
    assert same_uids(expected[:2]) == same_uids(by_sequence(fetch_all(server.url, "SMALL", SUBJECT)))
