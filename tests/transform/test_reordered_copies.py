"""Issue 10, reordering: a copy of a real capture with each direction shuffled in windows of 1-6
packets (handshake included), 5% of data packets duplicated 1-12 packets later and 2% re-sent cut
at other offsets holds exactly the same HTTP exchanges, so every transaction must come out exact.

Nothing is lost in these copies: every byte of every stream is still there, in the right
sequence space, and a receiving TCP stack would deliver the same two byte streams.  The
expected records are the ground truth's (tests/httpgen.py), never sniffd's own output.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.live


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_duplicated_resegmented_copy_is_read_exactly(read_copy, seed):
    run = read_copy(["shuffle", "duplicate", "resegment"], seed=seed)
    assert run.verdict.ok, run.report()


@pytest.mark.parametrize("transforms", [["shuffle"], ["duplicate"], ["resegment"]])
def test_each_reordering_alone_is_read_exactly(read_copy, transforms):
    """One damage at a time, so a failure says which one sniffd does not cope with."""
    run = read_copy(transforms, seed=11)
    assert run.verdict.ok, run.report()
