"""Suite-wide settings.

SNIFFD_STRICT=1 makes the pipeline re-raise internal errors instead of
counting them (``internal_error``), so a bug shows up as a failing test, in
this process and in every ``sniffd`` subprocess the tests start.
"""

import os

os.environ["SNIFFD_STRICT"] = "1"
