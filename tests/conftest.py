"""Suite-wide settings.

SNIFFD_STRICT=1 makes the pipeline re-raise internal errors instead of
counting them (``internal_error``), so a bug shows up as a failing test, in
this process and in every ``sniffd`` subprocess the tests start.
"""

import base64
import os
import sys
from pathlib import Path

import pytest

os.environ["SNIFFD_STRICT"] = "1"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _fail_on_skips(session)
    _secret_scan(session)
    _strict_json_scan(session)


def _fail_on_skips(session) -> None:
    """A skipped test is not a pass: every test needs only what scripts/install
    sets up, so a skip means the machine or the set-up is wrong, and the run
    fails (SNIFFD_ALLOW_SKIPS=1 for a developer's partial run).  The one
    exception: a checkout without ../shared/conformance beside it skips the
    layers that read Zeek's traces (CI always has them)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or os.environ.get("SNIFFD_ALLOW_SKIPS") == "1":
        return
    failed = False
    for rep in reporter.stats.get("skipped", []):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        if "../shared/conformance not present" not in reason:
            reporter.write_line(f"SKIPPED (a failure here): {rep.nodeid}: {reason}", red=True)
            failed = True
    if failed:
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _basetemp(session):
    """pytest's basetemp for this run, or None when the run made none."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return None
    try:
        return factory.getbasetemp()
    except Exception:
        return None


def _files(base, wanted):
    """Regular files under ``base`` whose name ``wanted`` accepts; a directory
    that disappears during the walk is skipped (os.walk ignores the error)."""
    for root, _dirs, names in os.walk(base):
        for name in names:
            path = Path(root, name)
            if wanted(name) and path.is_file():
                yield path


def _secret_scan(session) -> None:
    """Scan every JSON-lines file the tests wrote (under pytest's basetemp)
    for the credentials tests/sent_secrets.py lists; one found fails the run."""
    base = _basetemp(session)
    if base is None:
        return
    import importlib.util
    spec = importlib.util.spec_from_file_location("sent_secrets", Path(__file__).with_name("sent_secrets.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    forms = []
    for s in mod.ALL:
        forms += [s, base64.b64encode(s.encode()).decode()]
    found = []
    scanned = 0
    for path in _files(base, lambda name: name.endswith((".jsonl", ".log")) or ".jsonl" in name):
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue  # removed meanwhile (another pytest run's cleanup)
        scanned += 1
        found += [(str(path), s) for s in forms if s in text]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"secret scan: {scanned} log files under {base}, {len(found)} secrets found")
    if found:
        if reporter is not None:
            for path, s in found:
                reporter.write_line(f"SECRET LEAKED: {s!r} in {path}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _strict_json_scan(session) -> None:
    """Every line of every JSON-lines file the tests wrote (under pytest's
    basetemp) must parse with orjson, which is strict (it rejects the lone
    surrogate escapes a lenient parser such as Python's json accepts), and
    with Python's json; one that does not fails the run.  Files the tests
    wrote as input on purpose (torn or hostile lines) end in ``.input.jsonl``.

    In the same pass, every sniffd record among them (an object with
    ``kind``) is checked against schema/record.schema.json: each new shape
    and a sample of each file (tests/recordschema.py says which and why);
    one invalid record fails the run, named by file, line and field.  An
    ECS document ([output] format = "ecs") is checked against
    schema/ecs.schema.json, every one."""
    import json
    import time

    import orjson

    if str(Path(__file__).parent) not in sys.path:
        sys.path.insert(0, str(Path(__file__).parent))
    from recordschema import RecordScan

    base = _basetemp(session)
    if base is None:
        return
    expected = _expected_files()
    scan = RecordScan()
    scan_s = 0.0
    bad = []
    files = lines = 0
    for path in _files(base, lambda name: name.endswith(".jsonl") and not name.endswith(".input.jsonl")):
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            continue  # removed meanwhile (another pytest run's cleanup)
        files += 1
        records = not _is_expected_file(path, expected)
        with f:
            for n, line in enumerate(f, 1):
                lines += 1
                try:
                    rec = orjson.loads(line)
                    json.loads(line.decode("utf-8"))
                except ValueError as e:
                    bad.append(f"{path}:{n}: {e}: {line[:120]!r}")
                    break
                if records:
                    t = time.perf_counter()
                    scan.line(path, n, rec)
                    scan_s += time.perf_counter() - t
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"strict JSON scan: {lines} lines in {files} JSON-lines files, {len(bad)} files with an invalid line")
        for b in bad:
            reporter.write_line(f"NOT STRICT JSON: {b}", red=True)
        reporter.write_line(
            f"record schema scan: {scan.records} records, {scan.validated} validated ({len(scan.seen)} shapes "
            f"and a sample), {scan.ecs_documents} ECS documents, {len(scan.invalid)} invalid, {scan_s:.1f} s")
        for b in scan.invalid[:50]:
            reporter.write_line(f"NOT A VALID RECORD (schema/record.schema.json): {b}", red=True)
    if bad or scan.invalid:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _expected_files() -> dict[int, set[str]]:
    """The hand-written expected records shipped in captures/ (sha256 by
    size): they leave out what varies per run (uid, sensor) and are not
    sniffd's output, so a copy a test writes (make_fixtures.py's) is not
    checked against the record schema."""
    import hashlib

    out: dict[int, set[str]] = {}
    for path in Path(__file__).resolve().parent.parent.joinpath("captures").glob("**/*.jsonl"):
        data = path.read_bytes()
        out.setdefault(len(data), set()).add(hashlib.sha256(data).hexdigest())
    return out


def _is_expected_file(path: Path, expected: dict[int, set[str]]) -> bool:
    import hashlib

    try:
        size = path.stat().st_size
        return size in expected and hashlib.sha256(path.read_bytes()).hexdigest() in expected[size]
    except FileNotFoundError:
        return False


@pytest.fixture(scope="session")
def sniffd_exe() -> Path:
    """The sniffd console script installed next to the running interpreter (the venv's)."""
    path = Path(sys.executable).parent / "sniffd"
    if not path.exists():
        pytest.fail(f"{path} does not exist: run scripts/install")
    return path
