"""sniffd.redact's module patterns are compiled at their first use (redact._Pattern).

Run in a fresh interpreter: in the test process other tests have compiled
them already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = r"""
import re
from sniffd import redact

lazy = {k: v for k, v in vars(redact).items() if isinstance(v, redact._Pattern)}
print(len(lazy), sorted(k for k, v in lazy.items() if v.name != k))
print(redact._AUTH.fullmatch("Bearer abc").group(1, 3))
print(type(redact._AUTH) is re.Pattern, type(redact._XML_REF) is redact._Pattern)
"""


def test_patterns_compile_at_first_use_under_their_own_name():
    """All 22 patterns are lazy at import, each named after the global it is
    bound to (the first use replaces that global); the first use matches as
    the compiled pattern does and leaves an re.Pattern in its place, the
    others still lazy."""
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert 0 == proc.returncode, proc.stderr
    assert ["22 []", "('Bearer', 'abc')", "True True"] == proc.stdout.splitlines()
