"""Adapting probabilities to a volume's share of cells: EM recovers a known share, adjustments only raise,
and what slabs keep is exactly what can pass."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clarity_fast.volume_share import BINS, SHARE_CAP, adjusted, estimate_share, histogram, lowest_kept, odds_factor


def calibrated_posteriors(share: float, prior: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Posteriors a classifier calibrated at `prior` gives to a volume where cells are `share` of candidates.

    Scores are N(+1.5, 1) for cells and N(-1.5, 1) otherwise; the Bayes posterior at `prior` is the calibration.
    """
    cells = rng.random(n) < share
    s = np.where(cells, rng.normal(1.5, 1.0, n), rng.normal(-1.5, 1.0, n))
    likelihood_ratio = np.exp(3.0 * s)  # N(1.5,1) / N(-1.5,1)
    return prior * likelihood_ratio / (prior * likelihood_ratio + 1 - prior)


@pytest.mark.parametrize("share", [0.05, 0.2, 0.5, 0.9])
def test_em_recovers_the_share_of_cells(share):
    p = calibrated_posteriors(share, prior=0.2, n=200_000, rng=np.random.default_rng(0))
    assert estimate_share(histogram(p), prior=0.2) == pytest.approx(share, abs=0.01)


def test_histograms_of_parts_add_up_to_the_whole():
    p = np.random.default_rng(1).random(10_000).astype(np.float32)
    assert np.array_equal(histogram(p[:3000]) + histogram(p[3000:]), histogram(p))
    assert histogram(np.array([0.0, 1.0])).sum() == 2 and len(histogram(p)) == BINS


def test_only_volumes_with_more_cells_than_validation_are_adjusted():
    assert odds_factor(0.1, reference=0.3) == 1.0 and odds_factor(0.3, reference=0.3) == 1.0
    assert odds_factor(0.6, reference=0.3) == pytest.approx((0.6 / 0.4) / (0.3 / 0.7))
    assert odds_factor(0.999, reference=0.3) == odds_factor(SHARE_CAP, reference=0.3)


@settings(max_examples=40, deadline=None)
@given(threshold=st.floats(0.01, 0.99), reference=st.floats(0.01, 0.9))
def test_what_slabs_keep_is_exactly_what_can_pass(threshold, reference):
    floor = lowest_kept(threshold, reference=reference)
    strongest = odds_factor(1.0, reference=reference)
    assert floor <= threshold
    assert adjusted(np.array([floor]), factor=strongest)[0] == pytest.approx(threshold, rel=1e-5)


def test_adjusting_keeps_the_order_and_never_lowers():
    p = np.sort(np.random.default_rng(2).random(1000)).astype(np.float32)
    q = adjusted(p, factor=5.0)
    assert np.all(np.diff(q) >= 0) and np.all(q >= p - 1e-7)
    assert np.array_equal(adjusted(p, factor=1.0), p)


def test_a_threshold_of_one_keeps_only_certainty():
    assert lowest_kept(1.0, reference=0.3) == 1.0
