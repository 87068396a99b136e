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

import transform

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


# The start segments of two transactions in a row: each one's request line and status line
# (its first 1xx, if any), lost in every combination.
STARTS = ["request 1", "response 1", "request 2", "response 2"]
PATTERNS = [k for k in range(1, 16)]


@pytest.mark.parametrize("pattern", PATTERNS, ids=["+".join(n for b, n in enumerate(STARTS) if k >> b & 1) for k in PATTERNS])
def test_losing_the_starts_of_two_transactions_in_a_row_meets_the_same_targets(read_copy, corpus, segment_spans, pattern):
    """On every connection at once, at its 1st, 2nd or 3rd transaction (by its order in the
    capture), the segments holding the first byte of the chosen messages are lost.  Where
    requests and answers go missing together, what may be counted, what may be paired and
    what is whose loss are decided by the acknowledgements and by what is skipped
    (requests lost with the rest of a body, 100 Continue, answers lost whole), where
    sweeps of seeded loss found sniffd wrong.  A segment a retransmission also carries
    is not dropped (that loses nothing); such a connection is left whole."""
    def holders(c, direction: int, offset: int) -> list[int]:
        return [index for s, e, index in segment_spans.get((id(c), direction), ()) if s <= offset < e]

    drop = []
    for n, c in enumerate(corpus.ref.conns):
        if len(c.exchanges) < 2:
            continue
        i = n % min(3, len(c.exchanges) - 1)
        chosen = [(transform.C2S, c.exchanges[i + b // 2].req[0]) if b % 2 == 0 else (transform.S2C, c.exchanges[i + b // 2].resp[0])
                  for b in range(4) if pattern >> b & 1]
        found = [holders(c, d, off) for d, off in chosen]
        if all(len(h) == 1 for h in found):
            drop += [h[0] for h in found]
    assert drop, "no connection of the corpus has those segments held once (a corpus problem, not a sniffd result)"
    check(read_copy([], drop_packets=tuple(sorted(set(drop)))))
