"""The compiled EM over binned logits (kernels.binned_em) against its numpy reference, on histograms of known
mixtures and on random ones, with the starts and bounds the score mixture uses."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clarity_fast.kernels import reference
from clarity_fast.kernels.binned_em import bin_moments, binned_em
from clarity_fast.score_mixture import _EDGES, LOGIT_SPAN, MIN_SD, STARTS, _Bins
from clarity_fast.volume_share import BINS, histogram


def binned(logits: np.ndarray) -> _Bins:
    counts = histogram(1.0 / (1.0 + np.exp(-logits))).astype(np.float64)
    filled = np.flatnonzero(counts)
    return _Bins(counts=counts[filled], low=_EDGES[filled], high=_EDGES[filled + 1])


def both(bins: _Bins, start, largest_sd):
    """The kernel's and the reference's fits from the same start."""
    ours = binned_em(bins.counts, bins.low, bins.high, bins.middle, start, largest_sd, MIN_SD, LOGIT_SPAN, 200)
    theirs = reference.binned_em(bins.counts, bins.low, bins.high, middle=bins.middle, start=start, largest_sd=largest_sd, min_sd=MIN_SD,
                                 span=LOGIT_SPAN, iterations=200)
    return ours, theirs


def assert_same(ours, theirs):
    (params, loglik, ok), (ref_params, ref_loglik, ref_ok) = ours, theirs
    assert ok == ref_ok
    if ok:
        np.testing.assert_allclose(params, ref_params, rtol=1e-7, atol=1e-7)  # EM stops at a step of 1e-7
        assert loglik == pytest.approx(ref_loglik, rel=1e-9, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    cells=st.integers(0, 3000), clutter=st.integers(0, 3000), cell_mean=st.floats(-4, 8), cell_sd=st.floats(0.3, 4),
    clutter_mean=st.floats(-10, 2), clutter_sd=st.floats(0.3, 4), start=st.sampled_from(STARTS), bounded=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_the_kernel_fits_as_the_reference(cells, clutter, cell_mean, cell_sd, clutter_mean, clutter_sd, start, bounded, seed):
    rng = np.random.default_rng(seed)
    logits = np.concatenate([rng.normal(cell_mean, cell_sd, cells), rng.normal(clutter_mean, clutter_sd, clutter)])
    if len(logits) == 0:
        return
    bins = binned(logits)
    above = (bins.middle >= start).astype(np.float64)
    largest = np.array([np.inf, 1.5 if bounded else np.inf])
    assert_same(*both(bins, np.stack([above, 1.0 - above]), largest))
    assert_same(*both(bins, np.ones((1, len(bins.counts))), np.array([np.inf])))


def test_a_group_that_empties_is_reported():
    bins = binned(np.random.default_rng(0).normal(2.0, 1.0, 500))
    nothing = np.zeros((2, len(bins.counts)))
    nothing[0] = 1.0  # the second group starts (and stays) empty
    ours, theirs = both(bins, nothing, np.array([np.inf, np.inf]))
    assert not ours[2] and not theirs[2]


def test_bin_moments_match_the_reference_and_hold_far_into_either_tail():
    """Each bin's mass under a group, from the nearer tail: far above the mean it must not cancel to 0 (a candidate
    there would then belong to no group and swamp the likelihood); its mean lies within the bin."""
    from scipy.stats import norm

    low, high = _EDGES[:-1].copy(), _EDGES[1:].copy()
    for mean, sd in ((-5.0, 1.0), (5.0, 1.0), (0.0, 3.0), (-30.0, 0.5)):
        mass, ex, ex2 = np.empty(BINS), np.empty(BINS), np.empty(BINS)
        bin_moments(low, high, mean, sd, LOGIT_SPAN, mass, ex, ex2)
        ref = reference.bin_moments(low, high, mean=mean, sd=sd, span=LOGIT_SPAN)
        np.testing.assert_allclose(mass, ref[0], rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(ex, ref[1], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(ex2, ref[2], rtol=1e-10, atol=1e-10)
        if mean > -20:
            assert mass.sum() == pytest.approx(1.0) and np.all(mass > 0)
            assert mass[-1] == pytest.approx(norm.sf(_EDGES[-2], mean, sd), rel=1e-6)
            assert np.all((ex >= np.maximum(low, -20)) & (ex <= np.minimum(high, 20)))
        else:  # a group far below every bin's end: its open lowest bin holds it all, at its own mean
            assert mass[0] == pytest.approx(1.0) and ex[0] == pytest.approx(mean)
