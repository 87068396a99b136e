"""tests/fuzz: property-based fuzzing of every stage (hypothesis) and the
regression captures the coverage-guided fuzzer found (captures/fuzz/).

Put tests/ on the import path so tests/craft.py imports as ``craft``, as
tests/unit and tests/pcap do.
"""

import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
