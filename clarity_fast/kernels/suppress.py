"""Greedy suppression of duplicate detections, compiled: the strongest first, each removing the others it touches.

The pairs that touch come from scipy's KD-tree (in C); the greedy pass over them is a numba loop, so merging a
whole brain's detections takes a fraction of a second per million instead of a Python iteration per detection
(kernels.reference.suppress_duplicates is the plain version it is tested against).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def suppress(order: np.ndarray, pairs: np.ndarray, n: int) -> np.ndarray:
    """Which of n items survive when, visited in `order`, each survivor removes its partners in `pairs` (K, 2)."""
    start = np.zeros(n + 1, np.int64)
    for k in range(pairs.shape[0]):
        start[pairs[k, 0] + 1] += 1
        start[pairs[k, 1] + 1] += 1
    for i in range(n):
        start[i + 1] += start[i]
    fill = start[:-1].copy()
    partners = np.empty(2 * pairs.shape[0], np.int64)
    for k in range(pairs.shape[0]):
        a, b = pairs[k, 0], pairs[k, 1]
        partners[fill[a]] = b
        fill[a] += 1
        partners[fill[b]] = a
        fill[b] += 1
    alive = np.ones(n, np.bool_)
    kept = np.zeros(n, np.bool_)
    for i in order:
        if alive[i]:
            kept[i] = True
            for m in range(start[i], start[i + 1]):
                alive[partners[m]] = False
    return kept
