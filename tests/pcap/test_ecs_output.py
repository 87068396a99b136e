"""ECS output (``sniffd read --format ecs``, ``[output] format = "ecs"``): the
real CLI on the shipped captures and on crafted ones (HTTP/1, h2c, TLS, VLAN
and IPv6, fuzz findings full of anomalies, redaction with body capture, wire
bytes that are not UTF-8).

Every capture is read twice, natively and as ECS; for each pair of records of
one transaction the test checks, with rules written here by hand:

- ``native_from_ecs``: the native record made again from the ECS document
  equals the native record (so every native value is in the document, under
  its ECS name or in ``sniffd.*``, unchanged);
- ``check_derived``: the values ECS adds (event.end, url.path/query/domain/
  port, tls.version_protocol, network.type, related.*, ...) are what the
  native record says, computed here independently (datetime, a regex);
- ``check_types``: every ECS field written is in ECS_TYPES, the table of the
  ECS reference's types below, and its value has that type;
- the document is valid for schema/ecs.schema.json (jsonschema, draft 2020-12).
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import craft
import pytest
import sent_secrets as S
from craft import TcpConversation
from ecscheck import check_types, expected_url, native_from_ecs
from pcapcheck import T0, load_jsonl, run_sniffd

REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO / "captures"

# ------------------------------------------------------------ what ECS adds, by hand

def check_derived(native: dict, doc: dict) -> None:
    event, net = doc["event"], doc["network"]
    assert ("8.11.0", "event", "sniffd", "sniffd." + native["kind"], native["ts"], native["ts"]) == (
        doc["ecs"]["version"], event["kind"], event["module"], event["dataset"], event["start"], doc["@timestamp"])
    if native["kind"] == "http":
        assert (["network", "web"], ["access", "protocol"]) == (event["category"], event["type"])
    else:
        assert (["network"], ["connection", "protocol"]) == (event["category"], event["type"])
    if native["duration_ms"] is None:
        assert "end" not in event and "duration" not in event
    else:
        assert round(native["duration_ms"] * 1_000_000) == event["duration"]
        start = datetime.strptime(native["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        end = start + timedelta(microseconds=round(native["duration_ms"] * 1000))
        assert end.strftime("%Y-%m-%dT%H:%M:%S.%fZ") == event["end"]
    version = ipaddress.ip_address(native["client"]["ip"]).version
    assert ("tcp", "6", f"ipv{version}", native["kind"]) == (
        net["transport"], net["iana_number"], net["type"], net["protocol"])
    assert ("sniffd", "sensor") == (doc["observer"]["product"], doc["observer"]["type"])
    ips = list(dict.fromkeys([native["client"]["ip"], native["server"]["ip"]]))
    hosts = []
    if native["kind"] == "http":
        req = native["request"]
        url = expected_url(req) if req is not None else {}
        assert url == doc.get("url", {})
        if "domain" in url:
            hosts.append(url["domain"])
        headers = req["headers"] if req is not None else {}
        assert headers.get("user-agent") == doc.get("user_agent", {}).get("original")
        assert headers.get("referer") == doc["http"].get("request", {}).get("referrer")
        if req is None and native["response"] is not None and native["response"]["version"] is not None:
            assert native["response"]["version"] == doc["http"]["version"]
    else:
        t, tls = native["tls"], doc["tls"]
        if t["sni"] is not None:
            hosts.append(t["sni"])
        named = {"SSLv2": ("ssl", "2.0"), "SSLv3": ("ssl", "3.0"), "TLSv1.0": ("tls", "1.0"),
                 "TLSv1.1": ("tls", "1.1"), "TLSv1.2": ("tls", "1.2"), "TLSv1.3": ("tls", "1.3")}
        if t["version"] in named:
            assert named[t["version"]] == (tls["version_protocol"], tls["version"])
            assert "version" not in doc["sniffd"]["tls"]
        else:
            assert "version" not in tls and t["version"] == doc["sniffd"]["tls"]["version"]
        assert t["client_bytes"] + t["server_bytes"] == net["bytes"]
        if t["server_cert"] is not None:
            assert t["server_cert"]["sha256"].upper() == tls["server"]["hash"]["sha256"]
    assert {"ip": ips, **({"hosts": hosts} if hosts else {})} == doc["related"]


# ------------------------------------------------------------ running it


# One redaction key for both runs, so that they write the same tokens.
KEY_CONFIG = f'[privacy]\nredact_key = "{"ab" * 32}"\n'


def read_both(tmp_path: Path, pcap: Path, config: str = KEY_CONFIG) -> tuple[list[dict], list[dict], Path]:
    """The native and the ECS records of one capture (``sniffd read -c`` a
    file holding ``config``), and the ECS file."""
    cfg = tmp_path / f"{pcap.stem}.toml"
    cfg.write_text(config)
    out = {}
    for fmt in ("json", "ecs"):
        path = tmp_path / f"{pcap.stem}.{fmt}.jsonl"
        proc = run_sniffd("read", pcap, "-o", path, "--format", fmt, "-c", cfg)
        assert (0, "") == (proc.returncode, proc.stderr)
        out[fmt] = path
    return load_jsonl(out["json"]), load_jsonl(out["ecs"]), out["ecs"]


def assert_same_records(native: list[dict], ecs: list[dict]) -> None:
    """Pairwise: the ECS document of each native record, checked as the module
    docstring says.  uids are random per run: the two runs must name the
    same connections alike (a one-to-one renaming)."""
    from jsonschema import Draft202012Validator

    schema = json.loads((REPO / "schema" / "ecs.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert len(native) == len(ecs)
    renamed: dict[str, str] = {}
    for n, doc in zip(native, ecs):
        assert [] == check_types(doc), doc
        assert [] == [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
        back = native_from_ecs(doc)
        assert renamed.setdefault(back["uid"], n["uid"]) == n["uid"]
        back["uid"] = n["uid"]
        assert n == back
        check_derived(n, doc)
    assert len(set(renamed.values())) == len(renamed)


SHIPPED = [
    "sample.pcap",
    "vlan_ipv6.pcap",
    "pipeline_head.pcap",
    "h2c/loopback_h2c.pcap",
    "tls/loopback_handshakes.pcap",
    "tls/starttls.pcap",
    # The fuzz findings with records (crash-003 gives none), full of anomalies.
    *(f"fuzz/crash-00{i}.pcap" for i in (1, 2, 4, 5, 6, 7)),
]


@pytest.mark.parametrize("name", SHIPPED)
def test_ecs_document_of_each_shipped_capture_record_holds_the_native_record_typed_as_ecs(tmp_path, name):
    native, ecs, _ = read_both(tmp_path, CAPTURES / name)
    assert native, "the capture gave no record"
    assert_same_records(native, ecs)


def test_shipped_captures_cover_every_kind_and_the_optional_fields(tmp_path):
    """The captures above hold what the mapping has branches for: both kinds,
    HTTP/2, VLAN tags, IPv6, anomalies, a server certificate, a record
    without a response."""
    seen = set()
    for name in SHIPPED:
        _, ecs, _ = read_both(tmp_path, CAPTURES / name)
        for doc in ecs:
            seen.add(doc["event"]["dataset"])
            seen |= {k for k in ("stream_id", "vlan") if k in doc["sniffd"]}
            seen |= {f"network.{k}" for k in ("vlan",) if k in doc["network"]}
            seen |= {"ipv6"} if doc["network"]["type"] == "ipv6" else set()
            seen |= {"anomalies"} if doc["sniffd"]["anomalies"] else set()
            seen |= {"x509"} if "x509" in doc.get("tls", {}).get("server", {}) else set()
            seen |= {"no response"} if doc["sniffd"].get("response", 0) is None else set()
    assert {"sniffd.http", "sniffd.tls", "stream_id", "network.vlan", "ipv6", "anomalies", "x509",
            "no response"} <= seen


def conversation(path: Path, exchanges: list[tuple[bytes, bytes]], client=("10.0.0.1", 40000),
                 server=("10.0.0.2", 80), **capture_kw) -> None:
    c = TcpConversation(client, server)
    segs = c.handshake()
    for req, resp in exchanges:
        segs += c.client_data(req) + c.server_data(resp) + [c.client_ack()]
    segs += c.close()
    craft.capture(path, [(T0 + i * 0.001, s) for i, s in enumerate(segs)], **capture_kw)


def test_redaction_applies_to_the_ecs_document_with_bodies_captured(tmp_path):
    """sent_secrets.SHAPES (tests/privacy's capture of every secret shape) with
    redaction on and body capture: the ECS documents hold the redacted native
    records, and no secret (nor its base64) appears anywhere in the file."""
    import base64

    pcap = tmp_path / "shapes.pcap"
    conversation(pcap, [(req, resp) for _, req, resp, _ in S.SHAPES] + [S.TUNNEL_BYTES])
    native, ecs, path = read_both(tmp_path, pcap, KEY_CONFIG + "[bodies]\ncapture_bodies = true\nmax_body_bytes = 4096\n")
    assert len(S.SHAPES) + 1 == len(ecs)
    text = path.read_text()
    assert [] == [s for s in S.ALL if s in text or base64.b64encode(s.encode()).decode() in text]
    assert "hmac:" in text
    assert_same_records(native, ecs)
    # A captured (and redacted) body stays in sniffd.request.body.
    assert [] != [d for d in ecs if "http" in d and d["sniffd"]["request"] and d["sniffd"]["request"].get("body")]


def test_wire_bytes_and_every_target_form_map_as_the_native_record_writes_them(tmp_path):
    """Bytes that are not UTF-8 and a backslash in the target and in a header
    (written \\xNN and \\\\ as in the native record), absolute-form and
    CONNECT targets, an IPv6 Host with a port, a bad port, a parse error's
    start line, a response without a request, IPv6 endpoints."""
    pcap = tmp_path / "odd.pcap"
    conversation(pcap, [
        (b"GET /a\x80b\\c?q=\xff&r=1 HTTP/1.1\r\nHost: odd.test\r\nUser-Agent: ag\xe9nt\\1\r\n"
         b"Referer: http://ref.test/x\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        (b"GET http://Abs.Example:8080/p/q?x=1 HTTP/1.1\r\nHost: other.test\r\n\r\n",
         b"HTTP/1.1 204 No Content\r\n\r\n"),
        (b"OPTIONS * HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"),
        (b"GET /p HTTP/1.1\r\nHost: bad.port:99999\r\n\r\n", b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        (b"GET /q HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"),
        (b"CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n",
         b"HTTP/1.1 200 Connection established\r\n\r\n"),
    ])
    native, ecs, path = read_both(tmp_path, pcap)
    assert 6 == len(native)
    assert_same_records(native, ecs)
    first = ecs[0]
    assert ("/a\\x80b\\\\c?q=\\xff&r=1", "/a\\x80b\\\\c", "q=\\xff&r=1", "ag\\xe9nt\\\\1") == (
        first["url"]["original"], first["url"]["path"], first["url"]["query"], first["user_agent"]["original"])
    assert {"original": "http://Abs.Example:8080/p/q?x=1", "scheme": "http", "domain": "Abs.Example", "port": 8080,
            "path": "/p/q", "query": "x=1"} == ecs[1]["url"]
    assert {"original": "*", "domain": "[2001:db8::1]", "port": 8443} == ecs[2]["url"]
    assert {"original": "/p", "path": "/p", "domain": "bad.port:99999"} == ecs[3]["url"]
    assert {"original": "tunnel.test:443", "domain": "tunnel.test", "port": 443} == ecs[5]["url"]
    assert path.read_bytes().isascii()

    v6 = tmp_path / "v6.pcap"
    conversation(v6, [(b"GARBAGE\x01 LINE\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")],
                 client=("2001:db8::10", 40000), server=("2001:db8::20", 80))
    native, ecs, _ = read_both(tmp_path, v6)
    assert_same_records(native, ecs)
    assert ["2001:db8::10", "2001:db8::20"] == ecs[0]["related"]["ip"]


def test_response_without_request_and_qinq_plus_one_tag(tmp_path):
    """Three VLAN tags: the outer two in network.vlan / network.inner.vlan
    (keyword ids), the whole stack in sniffd.vlan; a response seen without
    its request (the request's segment lost) has no url and takes http.version
    from the response."""
    c = TcpConversation()
    segs = c.handshake() + c.client_data(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    segs = segs[:3] + c.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx") + [c.client_ack()] + c.close()
    pcap = tmp_path / "qinq.pcap"
    craft.capture(pcap, [(T0 + i * 0.001, s) for i, s in enumerate(segs)],
                  tags=craft.qinq(300, 100) + craft.dot1q(7))
    native, ecs, _ = read_both(tmp_path, pcap)
    assert_same_records(native, ecs)
    (doc,) = ecs
    assert ({"id": "300"}, {"vlan": {"id": "100"}}, [300, 100, 7]) == (
        doc["network"]["vlan"], doc["network"]["inner"], doc["sniffd"]["vlan"])
    assert (None, "1.1", False) == (doc["sniffd"]["request"], doc["http"]["version"], "url" in doc)


def test_config_format_is_taken_by_read_and_a_bad_value_is_one_line_exit_2(tmp_path):
    pcap = CAPTURES / "sample.pcap"
    cfg = tmp_path / "ecs.toml"
    cfg.write_text('[output]\nformat = "ecs"\n')
    out = tmp_path / "from-config.jsonl"
    proc = run_sniffd("read", "-c", cfg, pcap, "-o", out)
    assert (0, "") == (proc.returncode, proc.stderr)
    docs = load_jsonl(out)
    assert docs and all("8.11.0" == d["ecs"]["version"] for d in docs)
    # --format wins over the file.
    out2 = tmp_path / "flag-wins.jsonl"
    proc = run_sniffd("read", "-c", cfg, "--format", "json", pcap, "-o", out2)
    assert (0, {"http"}) == (proc.returncode, {r["kind"] for r in load_jsonl(out2)})

    bad = tmp_path / "bad.toml"
    bad.write_text('[output]\nformat = "elastic"\n')
    for argv, line in [
        (("read", "-c", bad, pcap, "-o", tmp_path / "x.jsonl"),
         f"sniffd: error: {bad}: [output] format: must be one of json, ecs, got 'elastic'"),
        (("check", "-c", bad), f"sniffd: error: {bad}: [output] format: must be one of json, ecs, got 'elastic'"),
        (("run", "-c", bad), f"sniffd: error: {bad}: [output] format: must be one of json, ecs, got 'elastic'"),
        (("read", "--format", "ECS", pcap, "-o", tmp_path / "y.jsonl"),
         "sniffd: error: --format: must be one of json, ecs, got 'ECS'"),
    ]:
        proc = run_sniffd(*argv)
        assert (2, [line], "") == (proc.returncode, proc.stderr.splitlines(), proc.stdout), argv
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "y.jsonl").exists()


def test_read_workers_write_the_same_ecs_lines_as_one_process(tmp_path):
    """--workers shards and merges the serialised lines: the ECS output of
    two workers is one process's, line for line (uids renamed)."""
    pcap = CAPTURES / "tls" / "loopback_handshakes.pcap"
    outs = []
    for n in ("1", "2"):
        out = tmp_path / f"w{n}.jsonl"
        proc = run_sniffd("read", "--format", "ecs", "-w", n, pcap, "-o", out)
        assert (0, "") == (proc.returncode, proc.stderr)
        docs = load_jsonl(out)
        names: dict[str, str] = {}
        for d in docs:
            d["sniffd"]["uid"] = names.setdefault(d["sniffd"]["uid"], f"u{len(names)}")
        outs.append(docs)
    assert outs[0] == outs[1] and outs[0]


DROP_CHILD = r"""
import sys
# As if sniffd were installed there (not editable): no fallback to the checkout.
sys.meta_path = [f for f in sys.meta_path if "_EditableFinder" not in repr(f)]
import sniffd
from sniffd import config as configmod, live
from sniffd.capture import OfflineCapture
from sniffd.pipeline import Pipeline

out_dir, pcap, user = sys.argv[1], sys.argv[2], sys.argv[3]
assert sniffd.__file__.startswith(sys.argv[4]), sniffd.__file__  # the private copy
p = Pipeline(redact_key=b"k" * 32)
cap = OfflineCapture(pcap)
recs = [r for b in cap.batches() for r in p.feed_batch(cap.linktype, b)] + p.flush()
cfg = configmod.defaults()
cfg.capture.update(interface="lo", bpf_filter="tcp port 9")
cfg.values["output"].update(path=out_dir + "/http.jsonl", format="ecs")
cfg.values["privileges"].update(user=user)
opened = live.start_up(cfg, cfg.settings(), 1)  # opens lo, drops to user, opens the sink
from sniffd.records import serializer
dumps = serializer(cfg.settings().format)
for r in recs:
    print("RECORD " + dumps(r))
opened.captures[0].close()
"""


def test_daemon_start_up_loads_the_ecs_writer_before_it_drops_privileges(tmp_path):
    """sniffd run drops to an unprivileged user before the first record, and
    the package may be unreadable after it (installed under /root, say):
    start-up must import the ECS writer as root.  sniffd is copied under
    pytest's private temporary directory (mode 0700, root's), started from
    there, drops to nobody and writes the records of a capture: the same
    lines as without the drop.  (Before start_up loaded it: the first record
    raised ModuleNotFoundError.)"""
    import os
    import pwd
    import shutil
    import subprocess
    import sys
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    pwd.getpwnam("nobody")
    private = tmp_path / "private"
    shutil.copytree(REPO / "sniffd", private / "sniffd", ignore=shutil.ignore_patterns("__pycache__"))
    assert 0o700 == os.stat(Path(tempfile.gettempdir()) / f"pytest-of-{pwd.getpwuid(0).pw_name}").st_mode & 0o777
    out_dir = tempfile.mkdtemp(prefix="sniffd-ecs-drop-")  # the sink's directory, writable after the drop
    lines = {}
    try:
        for user in ("", "nobody"):
            os.chmod(out_dir, 0o777)
            for f in Path(out_dir).iterdir():
                f.unlink()
            env = dict(os.environ, PYTHONPATH=str(private), SNIFFD_STRICT="1")
            proc = subprocess.run([sys.executable, "-c", DROP_CHILD, out_dir, str(CAPTURES / "tls" / "loopback_handshakes.pcap"),
                                   user, str(private)], env=env, cwd=out_dir, capture_output=True, text=True, timeout=120)
            assert 0 == proc.returncode, proc.stderr[-3000:]
            lines[user] = [re.sub(r'"uid":"C[0-9A-Za-z]{17}"', '"uid":""', line.removeprefix("RECORD "))
                           for line in proc.stdout.splitlines() if line.startswith("RECORD ")]
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    assert lines[""] and lines[""] == lines["nobody"]
    assert all(json.loads(line)["ecs"]["version"] == "8.11.0" for line in lines["nobody"])
