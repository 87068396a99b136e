"""Real traces from Zeek's test suite: the real ``sniffd read`` against hand-written records.

``../shared/conformance/zeek/index.json`` (beside the project root) lists traces from
zeek/zeek ``testing/btest/Traces`` with the ``http.log`` Zeek wrote for each.  For every case,
``expected/<case>.json`` holds, written by hand from the bytes of the trace (tshark's
``follow,tcp,raw`` and ``-V`` views) and the contract in README *What sniffd accepts*:

- ``records``: EVERY record sniffd must write for the trace, as a projection (``project``
  below), each with ``zeek_row``: the 1-based data row of Zeek's log it corresponds to, or
  ``null``.  Records are matched whatever their order: they come in the order their
  transactions finished, which depends on packet timing and is tested by tests/pcap;
  ``trans_depth`` fixes the order within a connection.
- ``notes``: why the expected records differ from Zeek's rows, one entry per difference
  (``rows`` + a Zeek field, or ``row`` for a Zeek row with no record, ``records`` + ``row``
  for a record with no Zeek row), and ``reading`` entries where the contract needed reading.
- ``tshark``: the options tshark needs for the trace and ``exceptions``, each request where
  tshark's list of requests and the expected one differ, with why.

Three checks per case: sniffd writes exactly the expected records; the expected records differ
from Zeek's rows only where a note says why (so no divergence from Zeek is added silently, and
no note outlives its divergence); tshark's requests agree with the expected ones except where
an exception says why.  Without ../shared/conformance the whole layer is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote_to_bytes

import orjson
import pytest

from sniffd.anomalies import ANOMALIES

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "conformance"
INDEX = SHARED / "zeek" / "index.json"
EXPECTED = Path(__file__).resolve().parent / "expected"
SNIFFD = Path(sys.executable).parent / "sniffd"

if not INDEX.is_file():
    pytest.skip(f"../shared/conformance not present: no {INDEX} (the Zeek conformance traces live "
                "beside the project checkout; CI always has them)", allow_module_level=True)

CASES = json.loads(INDEX.read_text())
CASE_NAMES = [case["name"] for case in CASES]

# The fields of a message kept by the projection; optional ones appear only when they say
# something (start_line when the line could not be parsed, missed_bytes above 0, interim 1xx).
REQUEST_FIELDS = ("method", "uri", "version", "host", "body_len")
RESPONSE_FIELDS = ("status", "reason", "version", "body_len")

# Zeek's http.log columns compared with the expected records (when the log has them), and
# the other names a note's "field" may take.
ZEEK_FIELDS = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "trans_depth", "method", "uri",
               "host", "version", "status_code", "request_body_len", "response_body_len")
NOTE_FIELDS = set(ZEEK_FIELDS) | {"row", "reading"}


def _message(msg: dict | None, fields: tuple[str, ...]) -> dict | None:
    if msg is None:
        return None
    out = {name: msg.get(name, "<missing>") for name in fields}
    if "start_line" in msg:
        out["start_line"] = msg["start_line"]
    if msg.get("missed_bytes"):
        out["missed_bytes"] = msg["missed_bytes"]
    if msg.get("interim"):
        out["interim"] = msg["interim"]
    return out


def project(record: dict) -> dict:
    """The part of a record the expected files pin down (no ts, headers, community_id, tunnel...)."""
    out = {"client": record["client"], "server": record["server"], "trans_depth": record["trans_depth"],
           "request": _message(record["request"], REQUEST_FIELDS),
           "response": _message(record["response"], RESPONSE_FIELDS)}
    if "connect_tunnel" in record:
        out["connect_tunnel"] = record["connect_tunnel"]
    out["anomalies"] = record["anomalies"]
    return out


def _expected(name: str) -> dict:
    return json.loads((EXPECTED / f"{name}.json").read_text())


def _case(name: str) -> dict:
    return next(case for case in CASES if case["name"] == name)


def _trace(name: str) -> Path:
    return SHARED / "zeek" / name / _case(name)["trace"]


def _conn(r: dict) -> tuple:
    return (r["client"]["ip"], r["client"]["port"], r["server"]["ip"], r["server"]["port"], r["trans_depth"])


def _sorted(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (_conn(r), json.dumps(r, sort_keys=True)))


def _describe(expected: list[dict], actual: list[dict]) -> str:
    """Per transaction (connection + trans_depth): what was expected and what sniffd wrote."""
    keys = sorted({_conn(r) for r in expected + actual}, key=str)
    lines = []
    for key in keys:
        e = [r for r in expected if _conn(r) == key]
        a = [r for r in actual if _conn(r) == key]
        if _sorted(e) != _sorted(a):
            lines.append(f"{key[0]}:{key[1]} -> {key[2]}:{key[3]} depth {key[4]}")
            lines += [f"  expected {json.dumps(r)}" for r in e] or ["  expected nothing"]
            lines += [f"  sniffd   {json.dumps(r)}" for r in a] or ["  sniffd   nothing"]
    return "\n".join(lines)


# --- the expected files themselves ---------------------------------------------------------


def test_every_case_has_an_expected_file_and_no_other():
    assert sorted(f"{name}.json" for name in CASE_NAMES) == sorted(p.name for p in EXPECTED.glob("*.json"))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_expected_file_is_well_formed(name):
    doc = _expected(name)
    assert (name, _case(name)["trace"]) == (doc["case"], doc["trace"])
    assert ["case", "trace", "records", "notes", "tshark"] == list(doc)
    for r in doc["records"]:
        assert ["zeek_row", "client", "server", "trans_depth", "request", "response", "anomalies"] == [
            k for k in r if k != "connect_tunnel"], r
        assert sorted(set(r["anomalies"])) == r["anomalies"], f"anomalies not sorted and unique: {r}"
        unknown = [n for n in r["anomalies"] if n not in ANOMALIES]
        assert [] == unknown, f"not anomaly names in sniffd/anomalies.py: {unknown}"
    rows = [r["zeek_row"] for r in doc["records"] if r["zeek_row"] is not None]
    assert len(set(rows)) == len(rows), "a Zeek row is claimed by two records"
    for note in doc["notes"]:
        assert note["field"] in NOTE_FIELDS, note
        assert note.get("why", "").strip(), note
        assert ("rows" in note) != ("records" in note), note


# --- 1. sniffd writes exactly the expected records ----------------------------------------------


@pytest.fixture(scope="module")
def pool():
    """The subprocesses (one sniffd and one tshark per trace) run on every CPU at once: the
    layer takes half the time on two cores."""
    with ThreadPoolExecutor(os.cpu_count() or 1) as executor:
        yield executor


@pytest.fixture(scope="module")
def sniffd_runs(pool, tmp_path_factory):
    """{case: future of (CompletedProcess, output path)} of ``sniffd read TRACE -o OUT``."""
    out_dir = tmp_path_factory.mktemp("conformance")

    def run(name: str):
        out = out_dir / f"{name}.jsonl"
        return subprocess.run([str(SNIFFD), "read", str(_trace(name)), "-o", str(out)], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL), out
    return {name: pool.submit(run, name) for name in CASE_NAMES}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_sniffd_writes_the_expected_records(name, sniffd_runs):
    proc, out = sniffd_runs[name].result()
    assert 0 == proc.returncode, f"sniffd exited {proc.returncode}\nstderr:\n{proc.stderr}"
    with open(out, encoding="utf-8") as f:
        records = [orjson.loads(line) for line in f if line.strip()]  # strict: what shippers parse
    assert {"http", "tls"} >= {r["kind"] for r in records}
    actual = [project(r) for r in records if r["kind"] == "http"]  # TLS records: test_tls_records_agree_with_tshark
    expected = [{k: v for k, v in r.items() if k != "zeek_row"} for r in _expected(name)["records"]]
    assert _sorted(expected) == _sorted(actual), "\n" + _describe(expected, actual)


def tshark_hellos(trace: Path, options: list[str]) -> dict[int, dict]:
    """{client port: what tshark's TLS dissector read from the hellos of that connection}: the
    ClientHello's server name and JA3, the ServerHello's JA3S and cipher suite (tshark 4.0
    follows TLS through CONNECT tunnels and on its registered ports)."""
    out = subprocess.run(
        [shutil.which("tshark"), "-n", *options, "-r", str(trace), "-Y", "tls.handshake.type == 1 || tls.handshake.type == 2",
         "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tls.handshake.type", "-e",
         "tls.handshake.extensions_server_name", "-e", "tls.handshake.ja3", "-e", "tls.handshake.ja3s",
         "-e", "tls.handshake.ciphersuite"], capture_output=True, text=True, timeout=60, check=True).stdout
    found: dict[int, dict] = {}
    for line in out.splitlines():
        sport, dport, types, sni, ja3, ja3s, suites = line.split("\t")
        if types.split(",")[0] == "1":
            found.setdefault(int(sport), {}).update(sni=sni or None, ja3=ja3)
        else:
            found.setdefault(int(dport), {}).update(ja3s=ja3s, cipher=int(suites.split(",")[0], 16))
    return found


@pytest.mark.parametrize("name", CASE_NAMES)
def test_tls_records_agree_with_tshark(name, sniffd_runs):
    """Every connection where tshark reads a ClientHello has one TLS record saying the same
    server name, JA3 and (with a ServerHello) JA3S and cipher; and sniffd writes no TLS record
    where tshark reads no hello."""
    from sniffd.tls.ciphers import cipher_name

    _proc, out = sniffd_runs[name].result()
    with open(out, encoding="utf-8") as f:
        tls = [r for r in (orjson.loads(line) for line in f if line.strip()) if r["kind"] == "tls"]
    ours = {r["client"]["port"]: {"sni": r["tls"]["sni"], "ja3": r["tls"]["ja3"],
                                  **({"ja3s": r["tls"]["ja3s"], "cipher": r["tls"]["cipher"]} if r["tls"]["negotiated"] else {})}
            for r in tls}
    assert len(ours) == len(tls), "one TLS record per connection"
    theirs = {port: {**h, **({"cipher": cipher_name(h["cipher"])} if "cipher" in h else {})}
              for port, h in tshark_hellos(_trace(name), _expected(name)["tshark"]["options"]).items()}
    assert theirs == ours


# --- 2. the expected records differ from Zeek's rows only where a note says why --------------


def zeek_rows(path: Path) -> list[dict]:
    """Data rows of a Zeek ASCII log: '#fields' header, or a cut log's plain header line."""
    fields, rows = None, []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("#fields\t"):
            fields = line.split("\t")[1:]
        elif line.startswith("#") or not line:
            continue
        elif fields is None:
            fields = line.split("\t")
        else:
            rows.append(dict(zip(fields, line.split("\t"))))
    return rows


def _zeek_value(field: str, value: str):
    """Zeek's text to a comparable value: '-' is unset, '(empty)' the empty string; the URI
    is percent-decoded with bytes >= 0x80 written \\xNN (read back one char per byte)."""
    if value == "-":
        return None
    if value == "(empty)":
        return ""
    if field == "uri":
        return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)
    return value


def _our_value(field: str, r: dict):
    req, resp = r["request"], r["response"]
    value = {
        "id.orig_h": r["client"]["ip"], "id.orig_p": r["client"]["port"],
        "id.resp_h": r["server"]["ip"], "id.resp_p": r["server"]["port"],
        "trans_depth": r["trans_depth"],
        "method": req and req["method"], "uri": req and req["uri"], "host": req and req["host"],
        # Zeek's version column is the reply's (opt.basic: HTTP/1.1 requests, "1.0" logged).
        "version": resp and resp["version"],
        "status_code": resp and resp["status"],
        "request_body_len": req and req["body_len"], "response_body_len": resp and resp["body_len"],
    }[field]
    if value is None:
        return None
    if field == "uri":  # Zeek logs the percent-decoded target (unescaped_URI)
        return unquote_to_bytes(value.encode("utf-8", "surrogateescape")).decode("latin-1")
    return str(value)


def zeek_differences(doc: dict, rows: list[dict]) -> dict[tuple, str]:
    """{(where, index, field): description} for every way the expected records differ from Zeek."""
    diffs = {}
    claimed = set()
    for i, r in enumerate(doc["records"], 1):
        k = r["zeek_row"]
        if k is None:
            diffs[("records", i, "row")] = f"record {i} ({_conn(r)}) has no Zeek row"
            continue
        assert 1 <= k <= len(rows), f"record {i}: zeek_row {k} but Zeek's log has {len(rows)} rows"
        claimed.add(k)
        for field in ZEEK_FIELDS:
            if field in rows[k - 1]:
                zeek, ours = _zeek_value(field, rows[k - 1][field]), _our_value(field, r)
                if zeek != ours:
                    diffs[("rows", k, field)] = f"row {k} {field}: Zeek {zeek!r}, expected {ours!r}"
    for k in range(1, len(rows) + 1):
        if k not in claimed:
            diffs[("rows", k, "row")] = f"Zeek row {k} has no record: {rows[k - 1]}"
    return diffs


@pytest.mark.parametrize("name", CASE_NAMES)
def test_expected_differs_from_zeek_only_where_noted(name):
    doc = _expected(name)
    diffs = zeek_differences(doc, zeek_rows(SHARED / "zeek" / name / _case(name)["baseline"]))
    noted = {(where, i, note["field"]) for note in doc["notes"] if note["field"] != "reading"
             for where in ("rows", "records") for i in note.get(where, [])}
    unexplained = sorted(set(diffs) - noted)
    stale = sorted(noted - set(diffs))
    assert ([], []) == (unexplained, stale), (
        "\nunexplained differences from Zeek (add a note with the evidence):\n  "
        + "\n  ".join(diffs[d] for d in unexplained)
        + "\nnotes that explain no difference:\n  " + "\n  ".join(map(str, stale)))


# --- 3. tshark's requests agree with the expected ones, except where noted ----------------------


@pytest.fixture(scope="module")
def tshark_runs(pool):
    """{case: future of tshark_requests(...)}."""
    return {name: pool.submit(tshark_requests, _trace(name), _expected(name)["tshark"]["options"])
            for name in CASE_NAMES}


def tshark_requests(trace: Path, options: list[str]) -> Counter:
    """(client port, server port, method, uri) of every request tshark dissects."""
    tshark = shutil.which("tshark")
    assert tshark, "tshark is not installed (scripts/install installs it)"
    sep = "\x1f"  # several requests in one frame: one value each, joined by this
    out = subprocess.run(
        [tshark, "-n", *options, "-r", str(trace), "-Y", "http.request", "-T", "fields", "-E", "occurrence=a",
         "-E", f"aggregator={sep}", "-e", "tcp.srcport", "-e", "tcp.dstport",
         "-e", "http.request.method", "-e", "http.request.uri"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    found = Counter()
    for line in out.splitlines():
        sport, dport, methods, uris = line.split("\t")
        methods, uris = methods.split(sep), uris.split(sep)
        assert len(methods) == len(uris), f"tshark gave {methods} and {uris} in one frame"
        found.update((int(sport), int(dport), m, u) for m, u in zip(methods, uris))
    return found


@pytest.mark.parametrize("name", CASE_NAMES)
def test_tshark_sees_the_expected_requests(name, tshark_runs):
    doc = _expected(name)
    records = doc["records"]
    hosts = {}
    for r in records:  # tshark's lines are keyed by ports alone: they must name one connection
        hosts.setdefault((r["client"]["port"], r["server"]["port"]), set()).add((r["client"]["ip"], r["server"]["ip"]))
    assert [] == [ports for ports, pairs in hosts.items() if len(pairs) > 1]
    expected = Counter((r["client"]["port"], r["server"]["port"], r["request"]["method"], r["request"]["uri"])
                       for r in records if r["request"] is not None and r["request"]["method"] is not None)
    seen = tshark_runs[name].result()
    for exc in doc["tshark"]["exceptions"]:
        for side, counter in (("expected", expected), ("tshark", seen)):
            if exc[side] is not None:
                key = (exc["client_port"], exc["server_port"], *exc[side])
                assert counter[key] > 0, f"exception names a request the {side} list does not have: {exc}"
                counter[key] -= 1
    assert +expected == +seen, (
        f"\nexpected, not listed by tshark: {sorted((+expected - seen).elements(), key=str)}"
        f"\nlisted by tshark, not expected: {sorted((+seen - expected).elements(), key=str)}")
