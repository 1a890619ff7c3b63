"""A volume's candidates split into cells and the rest by a two-Gaussian mixture of their logits, without labels.

Adapting by share (volume_share) assumes the network's probabilities mean in a new volume what they meant in
validation. Where cells are unlike the training cells (photon-limited speckle, faint or mixed-size cells), the
network still ranks them far above the clutter but calls them unlikely, so EM finds no more cells than
validation had and they are lost at the threshold. The logits of such a volume form two groups, the cells' and
the clutter's, which a mixture finds; where it puts most candidates among the cells (a clean volume, unlike the
cluttered validation volumes), the cut that maximises the mixture's own expected F1 replaces the threshold if it
is lower. Where clutter is the majority, the cells' group is believed only where the groups lie far apart (Ashman's
D above 3) and it holds a fifth of the candidates or more: the network's own kind of clutter overlaps its cells
(D 1.4-2.8 on every real patch and held-out simulated brain measured), while clutter it finds nothing like cells
(fibres, cell-scale texture, smoothed noise, the edge of the tissue) lies far below them and says nothing of how
faint the cells are; a spurious split of one group of logits, or of a volume without cells, puts only a few percent
of the candidates in its upper group where it lies that far (benchmarks/results/minority_cells.md). Elsewhere
nothing changes. Real tissue told too small a cell diameter can look like a clean volume of faint cells here, and
is then adapted to its cost (benchmarks/results/stated_diameter.md).

The lower group may spread no more than CLUTTER_SD: what the network calls clutter it scores tightly (the lower
group's sd is 0.5-1.6 logits in the fits to every simulated, real and cell-free volume measured), while faint cells
spread widely. Where clutter is only a few percent of the candidates (the faintest clean volumes, whose
candidates are almost all cells), the most likely unbounded fit splits the cells' broad group in two instead (a
broad lower group, Ashman's D under 2) and such a volume was left unadapted, keeping half its cells
(benchmarks/results/foreign_seeds.md); bounded, EM finds the small clutter group below them. The bounded fit is
kept only where it finds clutter a small minority (at most a fifth): where clutter is common, bounding it moves its
upper tail into the cells' group and the cut down (on small simulated brains of 40% cells, false positives), and the
unbounded fit stands.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from clarity_fast.kernels.binned_em import binned_em
from clarity_fast.volume_share import BINS, odds, strongest_factor

MIN_CANDIDATES = 50  # fewer cannot shape two groups
MIN_SD = 0.5  # logits; keeps a group from shrinking onto one bin
CLUTTER_SD = 1.5  # logits: the most the lower group may spread (see above) ...
FEW_CLUTTER = 0.8  # ... in a fit that puts at least this share of the candidates among the cells; else unbounded
STARTS = (-6.0, -4.0, -2.0, 0.0, 2.0)  # logits: EM starts with the candidates above each as the cells
F1_TOLERANCE = 1e-3
CUTS = np.linspace(-10.0, 10.0, 801)  # logits searched for the best cut
LOGIT_SPAN = 12.0  # where an open end bin's logits are taken to stop, for EM's start and a far-tail bin's moments
with np.errstate(divide="ignore"):
    _EDGES = np.log(np.arange(BINS + 1) / (BINS - np.arange(BINS + 1)))  # logits bounding each probability bin: -inf ... inf


@dataclass(frozen=True)
class Mixture:
    """Two Gaussian groups of logits: the cells' (the higher) and the rest."""

    cell_share: float
    cell_mean: float
    cell_sd: float
    other_mean: float
    other_sd: float
    gain: float  # log-likelihood per candidate over one Gaussian group: how much a second group explains

    @property
    def separation(self) -> float:
        """Ashman's D: the gap between the groups' means over their pooled sd; above 2 they are cleanly apart."""
        return float(np.sqrt(2.0) * (self.cell_mean - self.other_mean) / np.hypot(self.cell_sd, self.other_sd))

    def expected_f1(self, cuts: np.ndarray) -> np.ndarray:
        """F1 the mixture expects from keeping the candidates whose logit is at or above each cut."""
        from scipy.stats import norm

        kept_cells = self.cell_share * norm.sf(cuts, self.cell_mean, self.cell_sd)
        kept_other = (1.0 - self.cell_share) * norm.sf(cuts, self.other_mean, self.other_sd)
        return 2.0 * kept_cells / np.maximum(kept_cells + kept_other + self.cell_share, 1e-300)

    def summary(self) -> dict:
        """Its fields and separation, for a summary JSON."""
        return dict(asdict(self), separation=self.separation)

    def best_cut(self) -> float:
        """The highest logit cut whose expected F1 is within F1_TOLERANCE of the best: where groups lie far apart the
        best is a plateau, and the threshold should move no further down it than it must."""
        f1 = self.expected_f1(CUTS)
        return float(CUTS[np.flatnonzero(f1 >= f1.max() - F1_TOLERANCE)[-1]])


def fit_mixture(counts: np.ndarray, *, clutter_sd: float = CLUTTER_SD) -> Mixture | None:
    """The most likely of the two-Gaussian fits to the logits that `counts` (volume_share.histogram) bins, started
    from each split in STARTS (EM finds local optima): with the lower group's sd at most `clutter_sd` where that fit
    finds the clutter a small minority (FEW_CLUTTER), else unbounded (inf: always unbounded, as
    benchmarks/clutter_bound.py compares); None where there are too few candidates."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() < MIN_CANDIDATES:
        return None
    filled = np.flatnonzero(counts)  # empty bins add nothing to any sum
    bins = _Bins(counts=counts[filled], low=_EDGES[filled], high=_EDGES[filled + 1])
    _, one_group_loglik = _em(bins, start=[np.ones_like(bins.counts)])
    bounded = _most_likely(bins, clutter_sd=clutter_sd, one_group_loglik=one_group_loglik)
    if clutter_sd == np.inf or (bounded is not None and bounded.cell_share >= FEW_CLUTTER):
        return bounded  # unbounded already, or kept
    return _most_likely(bins, clutter_sd=np.inf, one_group_loglik=one_group_loglik)


def _most_likely(bins: _Bins, *, clutter_sd: float, one_group_loglik: float) -> Mixture | None:
    """The most likely two-group fit from STARTS whose lower group's sd is at most `clutter_sd`."""
    starts = ((bins.middle >= s).astype(np.float64) for s in STARTS)
    fits = [_em(bins, start=[above, 1.0 - above], largest_sd=(np.inf, clutter_sd)) for above in starts]
    fits = [(sorted(groups, key=lambda g: -g[1]), loglik) for groups, loglik in filter(None, fits)]  # the cells' group first
    fits = [f for f in fits if f[0][1][2] <= clutter_sd]  # EM bounded one group: it must have ended the lower
    if not fits:
        return None
    ((share, m1, s1), (_, m0, s0)), loglik = max(fits, key=lambda f: f[1])
    gain = (loglik - one_group_loglik) / bins.counts.sum()
    return Mixture(cell_share=share, cell_mean=m1, cell_sd=s1, other_mean=m0, other_sd=s0, gain=float(gain))


@dataclass(frozen=True)
class _Bins:
    """The filled bins of a histogram: candidates in each, and the logits bounding it (the ends are infinite)."""

    counts: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def middle(self) -> np.ndarray:
        """Each bin's middle logit, the open end bins taken to stop at ±LOGIT_SPAN: where EM starts."""
        return np.clip(self.low, -LOGIT_SPAN, None) / 2 + np.clip(self.high, None, LOGIT_SPAN) / 2


def _em(
    bins: _Bins, *, start: list[np.ndarray], largest_sd: tuple[float, ...] | None = None, iterations: int = 200
) -> tuple[list[tuple[float, float, float]], float] | None:
    """EM over binned logits for as many Gaussian groups as `start` holds, each bin's initial weight in each group
    (and each group's sd at most its `largest_sd`, if given): the groups' (share, mean, sd) and the log-likelihood;
    None where a group empties.

    Each bin is an interval of logits (its probability bin's), not a point: the lowest bins span whole units of
    logit, and a group fitted to their centres as points could lock onto the tail of one broad group
    (kernels.binned_em does the arithmetic)."""
    weights = np.asarray(start, dtype=np.float64).reshape(len(start), len(bins.counts))
    largest = np.full(len(start), np.inf) if largest_sd is None else np.asarray(largest_sd, dtype=np.float64)
    params, loglik, ok = binned_em(bins.counts, bins.low, bins.high, bins.middle, weights, largest, MIN_SD, LOGIT_SPAN, iterations)
    if not ok:
        return None
    return [(float(share), float(mean), float(sd)) for share, mean, sd in params], float(loglik)


@dataclass(frozen=True)
class Trust:
    """When a mixture's split is believed (benchmarks/mixture_gain.py and minority_cells.py vary it)."""

    majority: float = 0.5  # the cells' group more than this share of the candidates ...
    separation: float = 2.0  # ... and cleanly apart from the rest (Ashman's D; 2 is the usual bound)
    minority: float | None = 0.2  # or at least this share (None: never a minority) ...
    far_apart: float = 3.0  # ... and further apart than the network's own clutter lies from its cells (D 1.4-2.8 on
    # real patches and held-out simulated brains; 3.0-3.8 on a few small simulated brains, which change by -0.01 to +0.02)
    min_gain: float = 0.01  # and, either way, two groups explain the logits clearly better than one (nats per
    # candidate; a small group on the tail of one broad Gaussian, which EM also finds, gains 0.0002-0.0015 with 2,000
    # candidates, up to 0.01 with 200; lower gates trust such splits twice as often: benchmarks/results/mixture_gain.md)


TRUST = Trust()  # detect's


def trusted(mixture: Mixture | None, *, rule: Trust = TRUST) -> bool:
    """Whether the mixture's split is believed: the cells' group a majority cleanly apart from the rest, or a fifth of
    the candidates far apart from it, and two groups clearly better than one."""
    if mixture is None or mixture.gain < rule.min_gain:
        return False
    if mixture.cell_share > rule.majority and mixture.separation > rule.separation:
        return True
    return rule.minority is not None and mixture.cell_share >= rule.minority and mixture.separation > rule.far_apart


def mixture_factor(mixture: Mixture | None, *, threshold: float, reference: float, rule: Trust = TRUST) -> float:
    """How much the odds rise so that `threshold` (the model's, chosen on validation data) falls at the mixture's best
    cut: 1 where the mixture is not trusted (by `rule`) or its cut is higher, at most volume_share's strongest factor."""
    if not trusted(mixture, rule=rule) or not 0.0 < threshold < 1.0:
        return 1.0
    factor = odds(threshold) / float(np.exp(mixture.best_cut()))
    return float(min(max(factor, 1.0), strongest_factor(reference)))
