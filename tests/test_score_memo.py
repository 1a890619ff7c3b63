"""The score memo: positions scored in the first pass give the scorer's own logits when looked up in the second, and
only new positions reach the scorer then (the second pass scores only its new candidates)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from clarity_fast.score_memo import ScoreMemo

SHAPE = (6, 7, 8)


def position_sets(draw_count: int):
    return st.lists(st.tuples(st.integers(0, SHAPE[0] - 1), st.integers(0, SHAPE[1] - 1), st.integers(0, SHAPE[2] - 1)),
                    unique=True, max_size=draw_count)


@settings(max_examples=60, deadline=None)
@given(first=position_sets(40), second=position_sets(40))
def test_a_memo_returns_the_scorers_logits_and_scores_only_what_it_has_not_seen(first, second):
    def patches_at(positions):  # a patch per position, its value a function of the position alone, as a volume's patches are
        zyx = np.array(positions, np.int64).reshape(-1, 3)
        return zyx, (zyx @ np.array([100.0, 10.0, 1.0], np.float64)).astype(np.float32)[:, None]

    seen = []

    def scorer(patches):
        seen.append(len(patches))
        return np.sin(patches[:, 0]).astype(np.float32)

    memo = ScoreMemo(shape=SHAPE)
    for positions in (first, second):
        zyx, patches = patches_at(positions)
        before = sum(seen)
        logits = memo.scored(zyx, patches, scorer=scorer)
        np.testing.assert_array_equal(logits, np.sin(patches[:, 0]).astype(np.float32))
        new = len(set(positions) - set(first)) if positions is second else len(positions)
        assert sum(seen) - before == new
        memo.freeze()
    assert memo.reused == len(set(first) & set(second))
