"""What the daemon parses after it drops privileges, it parses as before.

``sniffd run`` drops to an unprivileged user before the first packet
(sniffd.privileges).  After the drop the Python installation may be
unreadable (an interpreter under /root, mode 0700, as on this machine), so a
module first imported on the packet path fails there; the pipeline counts
that as ``internal_error`` and discards the connection, a record silently
lost.  ``privileges.preload`` must load everything such a path reaches.

Each child below reads every capture of the repository and of the
conformance traces into memory, then (in the one case) calls ``preload``
and drops to nobody, then runs a fresh Pipeline over each; its records (all
but the per-pipeline ``uid``) and counters must equal those of the child
that never dropped.  Before ``preload`` warmed up ``cryptography``, the TLS
1.2 connection with a certificate in captures/tls gave no record after the
drop (``from cryptography import x509`` reached ``email.utils``: internal_error).
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT.parent / "shared" / "conformance"

CHILD = r"""
import json, re, sys
from sniffd import privileges
from sniffd.capture import OfflineCapture
from sniffd.pipeline import Pipeline
from sniffd.records import dumps

drop = sys.argv[1].startswith("drop")
paths = sys.argv[2:]
loaded = []
for path in paths:
    cap = OfflineCapture(path)
    loaded.append((path, cap.linktype, list(cap.batches())))
if drop:
    if sys.argv[1] != "drop-without-preload":
        privileges.preload()
    privileges.drop_privileges("nobody", "")
for path, linktype, batches in loaded:
    p = Pipeline()
    out = []
    for b in batches:
        out += p.feed_batch(linktype, b)
    out += p.flush()
    records = []
    for r in out:
        r.pop("uid", None)
        # The redaction key is random per process when none is configured.
        records.append(re.sub(r"hmac:[0-9a-f]+", "hmac:", dumps(r)))
    print(json.dumps({"path": path, "records": records, "counts": p.counts}))
"""


def _captures() -> list[str]:
    paths = sorted(str(p) for p in (ROOT / "captures").rglob("*.pcap"))
    if CONFORMANCE.is_dir():
        paths += sorted(str(p) for p in CONFORMANCE.rglob("*.pcap"))
    return paths


def _run(mode: str, paths: list[str], tmp_path: Path, strict: str = "1") -> dict:
    # cwd: a directory nobody may enter is fine for the child (it reads nothing
    # relative), but the interpreter must find sniffd: the checkout's path.
    env = dict(os.environ, PYTHONPATH=str(ROOT), SNIFFD_STRICT=strict)
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, *paths], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {d["path"]: d for d in map(json.loads, proc.stdout.splitlines())}


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_every_capture_gives_the_same_records_after_preload_and_the_drop(tmp_path):
    pwd.getpwnam("nobody")
    paths = _captures()
    assert len(paths) >= 40, paths  # the repository's captures and the conformance traces
    tmp_path.chmod(0o755)
    before = _run("stay", paths, tmp_path)
    after = _run("drop", paths, tmp_path)
    assert sorted(before) == sorted(after) == sorted(paths)
    lost = {p: after[p]["counts"] for p in paths if after[p]["counts"].get("internal_error")}
    assert lost == {}
    assert sum(len(d["records"]) for d in before.values()) > 150
    tls = str(ROOT / "captures" / "tls" / "loopback_handshakes.pcap")
    assert any('"server_cert":{"subject"' in r for r in after[tls]["records"])
    for p in paths:
        assert after[p] == before[p], p


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_without_preload_the_drop_loses_the_certificate_connection_where_python_is_unreadable(tmp_path):
    """The check above can fail: where nobody cannot read the standard library
    (this machine's interpreter lives under /root, 0700), skipping ``preload``
    loses the TLS 1.2 connection with a certificate (internal_error)."""
    stdlib_file = Path(os.__file__).resolve().parent / "email" / "utils.py"
    readable = subprocess.run(["runuser", "-u", "nobody", "--", "test", "-r", str(stdlib_file)]).returncode == 0
    if readable:
        pytest.skip(f"{stdlib_file} is readable by nobody here: a late import succeeds")
    tmp_path.chmod(0o755)
    tls = str(ROOT / "captures" / "tls" / "loopback_handshakes.pcap")
    before = _run("stay", [tls], tmp_path)[tls]
    # Not strict: the pipeline's guard counts the exception, as in the daemon.
    after = _run("drop-without-preload", [tls], tmp_path, strict="0")[tls]
    assert (len(before["records"]), before["counts"].get("internal_error")) == (5, None)
    assert (len(after["records"]), after["counts"].get("internal_error")) == (4, 1)
