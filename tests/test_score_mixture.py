"""The two-group mixture of a volume's candidate logits (score_mixture), on histograms of known mixtures."""

import dataclasses

import numpy as np
import pytest

from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.pipeline import SHARE_CANDIDATES, Adaptation, adapting
from clarity_fast.score_mixture import (
    _EDGES, CLUTTER_SD, FEW_CLUTTER, MIN_CANDIDATES, TRUST, _Bins, _most_likely, fit_mixture, mixture_factor, trusted,
)
from clarity_fast.volume_share import histogram, odds_factor, strongest_factor

THRESHOLD, REFERENCE = 0.33, 0.32


def counts(*groups: tuple[int, float, float], seed: int = 0) -> np.ndarray:
    """Histogram of the probabilities of (n, mean, sd) groups of Gaussian logits."""
    rng = np.random.default_rng(seed)
    logits = np.concatenate([rng.normal(mean, sd, n) for n, mean, sd in groups])
    return histogram(1.0 / (1.0 + np.exp(-logits)))


def test_two_groups_apart_are_recovered():
    mixture = fit_mixture(counts((1600, -1.0, 1.5), (400, -7.0, 1.0)))
    assert mixture.cell_share == pytest.approx(0.8, abs=0.03)
    assert mixture.cell_mean == pytest.approx(-1.0, abs=0.2) and mixture.other_mean == pytest.approx(-7.0, abs=0.3)
    assert mixture.separation > 3 and -7.0 < mixture.best_cut() < -1.0


def test_a_clean_volume_of_faint_cells_lowers_the_cut():
    """Cells the majority, apart from the rest but below the threshold: their odds rise, within adapting's bound."""
    mixture = fit_mixture(counts((1600, -1.5, 1.5), (400, -7.0, 1.0)))
    factor = mixture_factor(mixture, threshold=THRESHOLD, reference=REFERENCE)
    assert 1.0 < factor <= strongest_factor(REFERENCE)
    cut_probability = 1.0 / (1.0 + np.exp(-mixture.best_cut()))
    assert factor == pytest.approx(min((THRESHOLD / (1 - THRESHOLD)) / (cut_probability / (1 - cut_probability)), strongest_factor(REFERENCE)))


@pytest.mark.parametrize("seed", range(8))
def test_a_few_percent_of_clutter_below_broad_faint_cells_is_found(seed):
    """The faintest clean volumes: about 200 cells whose logits spread widely and lean to the low side, and a dozen
    clutter candidates in a tight group far below. Unbounded, the most likely fit often split the cells' group (six
    of these eight seeds failed so); the lower group's bound (CLUTTER_SD) finds the clutter."""
    mixture = fit_mixture(counts((140, -0.5, 1.2), (60, -3.0, 1.5), (12, -7.0, 0.8), seed=seed))
    assert mixture.cell_share > 0.75 and mixture.other_mean < -4.5
    assert mixture_factor(mixture, threshold=THRESHOLD, reference=REFERENCE) > 10


def test_common_clutter_is_fitted_unbounded():
    """Clutter the majority and broader than the bound: bounded, its upper tail would join the cells' group and move
    the cut; where the bounded fit finds clutter more than a small minority (FEW_CLUTTER), the unbounded fit stands."""
    histogram_ = counts((800, 3.0, 4.5), (1200, -5.5, 1.8))
    unbounded = fit_mixture(histogram_, clutter_sd=np.inf)
    assert unbounded.other_sd > CLUTTER_SD and fit_mixture(histogram_) == unbounded
    filled = np.flatnonzero(histogram_)
    bins = _Bins(counts=histogram_[filled].astype(float), low=_EDGES[filled], high=_EDGES[filled + 1])
    bounded = _most_likely(bins, clutter_sd=CLUTTER_SD, one_group_loglik=0.0)
    assert bounded.other_sd <= CLUTTER_SD and unbounded.cell_share < bounded.cell_share < FEW_CLUTTER


def test_broad_clutter_is_not_taken_for_cells():
    """The bound makes a broad group of clutter the higher one; it is still not trusted without a group apart."""
    assert mixture_factor(fit_mixture(counts((2000, -4.0, 2.5), (60, 1.0, 1.0))), threshold=THRESHOLD, reference=REFERENCE) == 1.0


@pytest.mark.parametrize(
    "groups",
    [
        ((600, 1.0, 2.0), (1400, -3.5, 1.5)),  # clutter the majority and overlapping the cells (D about 2.5), as in validation and real volumes
        ((2000, -2.0, 2.0),),  # one broad group: nothing to split
        ((1200, -1.0, 2.0), (800, -3.0, 2.0)),  # two groups, overlapping (Ashman's D about 1)
        ((1600, 4.0, 1.0), (400, -5.0, 1.0)),  # cells the majority but already above the threshold
        ((1600, 4.0, 0.5), (400, -9.0, 1.0)),  # ... and far from the rest: the best cut is a plateau, whose top is kept
    ],
)
def test_nothing_changes_unless_the_cells_form_a_trusted_group_below_the_threshold(groups):
    assert mixture_factor(fit_mixture(counts(*groups)), threshold=THRESHOLD, reference=REFERENCE) == 1.0


def test_too_few_candidates_give_no_mixture():
    assert fit_mixture(counts((MIN_CANDIDATES - 1, 0.0, 1.0))) is None
    assert mixture_factor(None, threshold=THRESHOLD, reference=REFERENCE) == 1.0


def test_expected_f1_keeping_everything():
    """Keeping every candidate: recall 1, precision the cells' share."""
    mixture = fit_mixture(counts((1500, 0.0, 1.0), (500, -6.0, 1.0)))
    share = mixture.cell_share
    assert mixture.expected_f1(np.array([-1e3]))[0] == pytest.approx(2 * share / (1 + share))


def test_a_trusted_mixture_sets_the_factor_even_below_the_shares():
    """Cells scored confidently and far above a small clutter group: the mixture's cut lies near the threshold, so the
    odds barely rise, however many cells the share's EM counts (its factor would let the clutter's upper tail in)."""
    mixture = fit_mixture(counts((1700, 3.0, 1.5), (300, -4.5, 1.0)))
    factor = mixture_factor(mixture, threshold=THRESHOLD, reference=REFERENCE)
    share_factor = odds_factor(0.85, reference=REFERENCE)
    assert trusted(mixture) and 1.0 <= factor < 2.0 < share_factor
    assert Adaptation(share=0.85, em_share=0.85, share_factor=share_factor, mixture=mixture, mixture_factor=factor).factor == factor
    clutter_majority = fit_mixture(counts((600, 1.5, 1.5), (1400, -3.0, 1.5)))  # not trusted: the share's factor stands
    assert not trusted(clutter_majority)
    assert Adaptation(share=0.3, em_share=0.3, share_factor=2.0, mixture=clutter_majority, mixture_factor=1.0).factor == 2.0


def test_an_untrusted_mixture_still_bounds_the_share():
    """Where the mixture is not trusted the share's factor applies, but from a share no higher than the mixture's upper
    group: EM, assuming validation's calibration, reads clutter that scores high as cells. (The share is capped by any
    fitted mixture, trusted or not; only where it is not does the share's factor apply.)"""
    model = OnnxScorer(resolve_model("default")).config
    overlapping = adapting(counts((900, 0.5, 1.5), (1100, -2.5, 1.2)), model=model)
    assert not trusted(overlapping.mixture) and overlapping.em_share > overlapping.mixture.cell_share
    assert overlapping.share == overlapping.mixture.cell_share and overlapping.by == "share"
    assert overlapping.factor == odds_factor(overlapping.mixture.cell_share, reference=model.calibration.reference_share)
    above = adapting(counts((700, 1.0, 1.5), (1300, -3.5, 1.5)), model=model)  # EM reads less: it stands
    assert not trusted(above.mixture) and above.share == above.em_share < above.mixture.cell_share



def test_too_few_candidates_leave_the_probabilities_as_they_are():
    """From a handful of candidates EM cannot tell a volume's share of cells: one candidate scoring 0.3 read as a
    volume of 100% cells raised its odds 45-fold, past the threshold (a sparse volume, a small region)."""
    model = OnnxScorer(resolve_model("default")).config
    for probabilities in ([0.3], [0.3, 0.3], np.full(SHARE_CANDIDATES - 1, 0.9)):
        few = adapting(histogram(np.asarray(probabilities)), model=model)
        assert few.mixture is None and few.em_share > model.calibration.reference_share and few.factor == 1.0
    enough = adapting(histogram(np.full(SHARE_CANDIDATES, 0.9)), model=model)  # no mixture under MIN_CANDIDATES: EM alone
    assert enough.mixture is None and enough.share == enough.em_share and enough.factor > 1.0


def test_the_gain_gate_decides_between_the_estimates():
    """A split explaining the logits by less than the gate is not trusted, and the share's factor stands; below a gate
    set lower (benchmarks/mixture_gain.py) the same split sets the factor."""
    weak = dataclasses.replace(fit_mixture(counts((1600, -1.5, 1.5), (400, -7.0, 1.0))), gain=TRUST.min_gain / 2)
    lower = dataclasses.replace(TRUST, min_gain=TRUST.min_gain / 4)
    assert not trusted(weak) and trusted(weak, rule=lower)
    assert mixture_factor(weak, threshold=THRESHOLD, reference=REFERENCE) == 1.0
    lowered = mixture_factor(weak, threshold=THRESHOLD, reference=REFERENCE, rule=lower)
    assert lowered > 1.0
    assert Adaptation(share=0.5, em_share=0.5, share_factor=2.0, mixture=weak, mixture_factor=1.0).by == "share"
    assert Adaptation(share=0.5, em_share=0.5, share_factor=2.0, mixture=weak, mixture_factor=lowered, rule=lower).factor == lowered


def test_a_minority_of_cells_far_apart_from_the_clutter_is_trusted():
    """Clutter the network finds nothing like cells (a tissue edge, fibres) lies far below faint cells: a third of
    the candidates, D about 4, sets the factor. The network's own kind of clutter overlaps its cells (D 1.4-2.8 on
    every real patch and held-out simulated brain): not trusted, nor a few percent far above the rest (a spurious split)."""
    far = fit_mixture(counts((700, -1.0, 1.5), (1300, -8.0, 1.0)))
    assert far.cell_share < 0.5 and far.separation > 3 and trusted(far)
    assert mixture_factor(far, threshold=THRESHOLD, reference=REFERENCE) > 5
    overlapping = fit_mixture(counts((700, 1.0, 1.5), (1300, -3.5, 1.5)))
    assert overlapping.cell_share < 0.5 and 2 < overlapping.separation < 3 and not trusted(overlapping)
    few = fit_mixture(counts((60, 0.0, 1.0), (1940, -7.0, 1.0)))
    assert few.separation > 3 and few.cell_share < 0.2 and not trusted(few)
