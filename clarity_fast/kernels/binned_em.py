"""EM for a mixture of Gaussian groups over binned logits, compiled.

`detect` fits the score mixture (score_mixture) to every volume, from several starts, bounded and unbounded, and
again on a second pass: thousands of EM steps over a histogram of hundreds to thousands of filled bins. In numpy each step
is dozens of small array operations, about a second per `detect` run whatever the volume's size, which on small
volumes, a region or a single plane was most of the run. Here the same arithmetic is a loop over the bins
(kernels.reference.binned_em is the numpy version it is tested against).

Each bin is an interval of logits, not a point: its mass under a group, and the mean and mean square of the
group's logits within it, come from the Gaussian's integrals over the interval.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_SQRT_HALF = math.sqrt(0.5)
_ROOT_TWO_PI = math.sqrt(2.0 * math.pi)


@numba.njit(cache=True, nogil=True)
def _edge(z: float) -> tuple[float, float, float]:
    """At a bin's edge, z standard deviations from a group's mean: the standard normal's mass below it and above it,
    each accurate in its own tail (as scipy.special.ndtr of z and of -z), and its density there (0 at ±inf)."""
    if z == -np.inf:
        return 0.0, 1.0, 0.0
    if z == np.inf:
        return 1.0, 0.0, 0.0
    x = z * _SQRT_HALF
    if abs(x) < _SQRT_HALF:
        half = 0.5 * math.erf(x)
        below, above = 0.5 + half, 0.5 - half
    else:
        tail = 0.5 * math.erfc(abs(x))
        below, above = (1.0 - tail, tail) if x > 0.0 else (tail, 1.0 - tail)
    return below, above, math.exp(-0.5 * z * z) / _ROOT_TWO_PI


@numba.njit(cache=True, nogil=True)
def bin_moments(low: np.ndarray, high: np.ndarray, mean: float, sd: float, span: float, mass: np.ndarray, ex: np.ndarray, ex2: np.ndarray) -> None:
    """For a Gaussian (mean, sd): each bin's mass, and the mean and mean square of its logits within the bin, written
    into `mass`, `ex` and `ex2`. The mass is taken from the nearer tail (no cancellation far above the mean); a bin so
    far out in a tail that it holds no mass gets its nearest end, the open ends taken to stop at ±`span`. An edge
    two filled bins share is evaluated once."""
    b_below = b_above = pb = 0.0
    for k in range(len(low)):
        a = (low[k] - mean) / sd
        b = (high[k] - mean) / sd
        if k > 0 and low[k] == high[k - 1]:
            a_below, a_above, pa = b_below, b_above, pb
        else:
            a_below, a_above, pa = _edge(a)
        b_below, b_above, pb = _edge(b)
        m = a_above - b_above if a > 0.0 else b_below - a_below
        mass[k] = m
        if m > 1e-12:
            shift = (pa - pb) / m
            spread = ((a * pa if math.isfinite(a) else 0.0) - (b * pb if math.isfinite(b) else 0.0)) / m
            ex[k] = mean + sd * shift
            ex2[k] = mean * mean + 2.0 * mean * sd * shift + sd * sd * (1.0 + spread)
        else:
            nearest = min(max(mean, max(low[k], -span)), min(high[k], span))
            ex[k] = nearest
            ex2[k] = nearest * nearest


@numba.njit(cache=True, nogil=True)
def binned_em(
    counts: np.ndarray, low: np.ndarray, high: np.ndarray, middle: np.ndarray, start: np.ndarray, largest_sd: np.ndarray, min_sd: float,
    span: float, iterations: int,
) -> tuple[np.ndarray, float, bool]:
    """EM for len(start) Gaussian groups over bins holding `counts` candidates between logits `low` and `high`,
    each bin's logits first taken at its `middle`, `start` (groups, bins) each bin's initial weight in each group,
    each group's sd held to [min_sd, largest_sd]:
    the groups' (share, mean, sd) rows, the log-likelihood, and False where a group emptied (fewer than one
    candidate), when the other two mean nothing."""
    groups, n = start.shape
    total = 0.0
    for k in range(n):
        total += counts[k]
    r = start.copy()
    ex = np.empty((groups, n))
    ex2 = np.empty((groups, n))
    for g in range(groups):
        for k in range(n):
            ex[g, k] = middle[k]
            ex2[g, k] = middle[k] * middle[k]
    params = np.zeros((groups, 3))
    new = np.zeros((groups, 3))
    mass = np.empty((groups, n))
    every = np.empty(n)
    started = False
    for _ in range(iterations):
        for g in range(groups):
            weight = 0.0
            first = 0.0
            for k in range(n):
                weight += counts[k] * r[g, k]
                first += counts[k] * r[g, k] * ex[g, k]
            if weight < 1.0:
                return params, 0.0, False
            mean = first / weight
            second = 0.0
            for k in range(n):
                second += counts[k] * r[g, k] * (ex2[g, k] - 2.0 * mean * ex[g, k] + mean * mean)
            new[g, 0] = weight / total
            new[g, 1] = mean
            new[g, 2] = min(max(math.sqrt(max(second / weight, 0.0)), min_sd), largest_sd[g])
        converged = started and np.max(np.abs(new - params)) < 1e-7
        params[:] = new
        started = True
        for g in range(groups):
            bin_moments(low, high, params[g, 1], params[g, 2], span, mass[g], ex[g], ex2[g])
        for k in range(n):
            every[k] = 0.0
            for g in range(groups):
                mass[g, k] *= params[g, 0]
                every[k] += mass[g, k]
            every[k] = max(every[k], 1e-300)
        if converged:
            break
        for g in range(groups):
            for k in range(n):
                r[g, k] = mass[g, k] / every[k]
    loglik = 0.0
    for k in range(n):
        loglik += counts[k] * math.log(every[k])
    return params, loglik, True
