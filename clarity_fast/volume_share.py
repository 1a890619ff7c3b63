"""Cell probabilities adapted to a volume's own share of cells among its candidates (label shift).

A model's calibrated probabilities hold for candidates mixed as in its validation volumes, where about a fifth
were cells. In a clean volume most candidates are cells, and the same probability means more: faint cells there
were missed at the model's threshold (benchmarks/results/prior_shift.md). The share is estimated by EM (Saerens,
Latinne and Decaestecker, Neural Computation 2002) over every candidate of the whole volume, from a histogram, so
slabs, batches and workers do not change it. Up to the largest share among the validation volumes the
probabilities are used as they are; beyond it their odds are multiplied by how far the share exceeds it. They are
only ever raised: in a sparse volume EM can drive the share, and with it every detection, to zero.
"""

from __future__ import annotations

import numpy as np

BINS = 4096  # equal bins of calibrated probability over [0, 1]
SHARE_CAP = 0.95  # the largest share adapted to; it bounds how low a kept probability can be


def histogram(probability: np.ndarray) -> np.ndarray:
    """Counts of `probability` in BINS equal bins over [0, 1] (int64); sums of these are exact."""
    index = np.minimum((np.asarray(probability, dtype=np.float64) * BINS).astype(np.int64), BINS - 1)
    return np.bincount(index, minlength=BINS).astype(np.int64)


def estimate_share(counts: np.ndarray, *, prior: float, iterations: int = 500) -> float:
    """The share of cells among the candidates whose probabilities (calibrated at `prior`) `counts` bins."""
    centres = (np.arange(BINS) + 0.5) / BINS
    total = counts.sum()
    if total == 0:
        return prior
    share = prior
    for _ in range(iterations):
        up, down = share / prior * centres, (1 - share) / (1 - prior) * (1 - centres)
        new = float(np.sum(counts * up / (up + down)) / total)
        if abs(new - share) < 1e-9:
            break
        share = new
    return share


def odds(p: float) -> float:
    """p / (1 - p): the scale on which a share of cells multiplies probabilities."""
    return p / (1.0 - p)


def odds_factor(share: float, *, reference: float) -> float:
    """How much the odds of each probability rise in a volume with this share of cells (1: not at all)."""
    return max(1.0, odds(min(share, SHARE_CAP)) / odds(reference))


def strongest_factor(reference: float) -> float:
    """The largest odds factor adapting applies: that of a volume whose candidates are SHARE_CAP cells."""
    return odds_factor(SHARE_CAP, reference=reference)


def adjusted(probability: np.ndarray, *, factor: float) -> np.ndarray:
    """Probabilities with their odds multiplied by `factor` (float64: compare these, not a float32 rounding)."""
    p = np.asarray(probability, dtype=np.float64)
    return factor * p / (factor * p + 1.0 - p)


def lowest_kept(threshold: float, *, reference: float) -> float:
    """The smallest probability that can still reach `threshold` once adjusted: what slabs must keep."""
    if threshold >= 1.0:
        return threshold  # only certainty reaches certainty
    scaled = odds(threshold) / strongest_factor(reference)
    return scaled / (1.0 + scaled)
