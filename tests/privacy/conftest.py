"""tests/privacy: secrets sent through the real pipeline must not come out.

tests/sent_secrets.py lists the credentials these tests (and the live redaction test) put on
the wire.  After the whole session, every JSON-lines file under pytest's
temporary directory is scanned for them: finding one fails the run, so a
redaction rule that silently stops working cannot pass unnoticed.
"""

import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
