"""Suite-wide settings.

SNIFFD_STRICT=1 makes the pipeline re-raise internal errors instead of
counting them (``internal_error``), so a bug shows up as a failing test, in
this process and in every ``sniffd`` subprocess the tests start.
"""

import base64
import os
from pathlib import Path

import pytest

os.environ["SNIFFD_STRICT"] = "1"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """Scan every JSON-lines file the tests wrote (under pytest's basetemp)
    for the credentials tests/sent_secrets.py lists; one found fails the run."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    try:
        base = factory.getbasetemp()
    except Exception:
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
    for path in Path(base).rglob("*"):
        if not path.is_file() or not (path.suffix in (".jsonl", ".log") or ".jsonl" in path.name):
            continue
        scanned += 1
        text = path.read_text(errors="replace")
        found += [(str(path), s) for s in forms if s in text]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"secret scan: {scanned} log files under {base}, {len(found)} secrets found")
    if found:
        if reporter is not None:
            for path, s in found:
                reporter.write_line(f"SECRET LEAKED: {s!r} in {path}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
