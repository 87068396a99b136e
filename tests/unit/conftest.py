"""tests/unit: one processing stage per file, fed plain values, simulated time.

tests/ has no __init__.py, so pytest puts tests/unit (not tests/) on sys.path;
put tests/ there too so the frame-building helpers in tests/craft.py can be
imported as ``craft``, as tests/pcap does.
"""

import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
