"""tests/pcap: the real sniffd CLI on crafted captures and on captures/*.pcap.

The crafting library lives in tests/craft.py; put tests/ on the import path so
every file here can ``import craft``.
"""

import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
