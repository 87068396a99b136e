"""Issue 10, loss: with 1% of data packets dropped, sniffd must never pair a request with another
transaction's response, must flag every transaction whose bytes were lost, and must get every
other transaction exact, including those that follow the loss on the same connection.

Which transactions a dropped packet damaged is computed by bench/damage.py from the clean
capture (httpgen's own HTTP reader maps stream bytes to transactions) and the sidecar of
bench/transform.py listing every dropped packet, never from sniffd.

One allowance, the issue's own fallback: where the acknowledgements cannot decide which request
a response answers, sniffd writes both unpaired, flagged ``pairing_uncertain``, rather than
guess; and every record so written takes a number, so a transaction after them on that
connection may differ in ``trans_depth`` alone.  Such a copy passes ``ok_unless_undecided``
(nothing mispaired, every damaged transaction flagged, no unflagged extra record, every other
undamaged transaction exact), and the undecided ones must stay few (at most a tenth of those
that follow a loss).  These copies are made from a corpus captured afresh each run, so which
windows the marks cannot decide differs from run to run; ``bench/run.py`` and bench/damage.py
report them as not exact.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.live


def check(run) -> None:
    v = run.verdict
    assert v.dropped_packets > 0 and v.damaged > 0, run.report()
    assert v.ok_unless_undecided, run.report()
    assert v.unpaired + v.renumbered <= v.after_loss // 10, run.report()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_percent_loss_is_flagged_never_mispaired_and_the_rest_exact(read_copy, seed):
    check(read_copy(["loss"], seed=seed))


def test_loss_on_a_reordered_copy_meets_the_same_targets(read_copy):
    """Loss and reordering together: what a receiving stack could deliver is the same as with loss alone."""
    check(read_copy(["loss", "shuffle", "duplicate", "resegment"], seed=4))
