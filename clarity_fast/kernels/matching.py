"""Which one-to-one pairs each prefix of a list of predictions makes with the true centres, compiled.

A threshold search needs the best matching at every threshold; each threshold keeps a prefix of the predictions
sorted by falling score. Adding predictions one at a time and looking for one augmenting path from each (Kuhn's
algorithm) keeps the matching maximum for every prefix, so one pass gives all the counts. An augmenting path
re-pairs the predictions along it but unmatches none, so a prediction is matched from the step that adds it
(where the matching grows) on, and a true centre from the step whose path ends at it. A search that fails
leaves every true centre it reached matched to a prediction whose neighbours it also reached, and no later
augmenting path can pass through that set (it would never get out of it), so those centres are skipped from then
on: the failed searches together cost one pass over the edges. evaluate.match_points (an optimal assignment) is the
reference the counts are tested against.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def prefix_matches(indptr: np.ndarray, indices: np.ndarray, n_truth: int) -> np.ndarray:
    """Per prediction k = 0, 1, ..., the true centre that adding it to a maximum matching of predictions 0..k-1
    newly matches (-1 where the matching cannot grow), given each prediction's reachable centres as CSR rows
    (`indices[indptr[k]:indptr[k + 1]]`); the matching of the first k has as many pairs as entries >= 0 among them."""
    n_pred = indptr.shape[0] - 1
    newly = np.full(n_pred, -1, np.int64)
    mate = np.full(n_truth, -1, np.int64)  # the prediction each true centre is matched to
    dead = np.zeros(n_truth, np.bool_)
    seen = np.full(n_truth, -1, np.int64)  # the search that last reached each centre
    reached = np.empty(n_truth, np.int64)
    stack_pred = np.empty(n_pred, np.int64)
    stack_edge = np.empty(n_pred, np.int64)
    stack_truth = np.empty(n_pred, np.int64)
    for start in range(n_pred):
        top, n_reached, found = 0, 0, False
        stack_pred[0], stack_edge[0] = start, indptr[start]
        while top >= 0 and not found:
            v, e = stack_pred[top], stack_edge[top]
            if e == indptr[v + 1]:
                top -= 1
                continue
            stack_edge[top] = e + 1
            w = indices[e]
            if dead[w] or seen[w] == start:
                continue
            seen[w] = start
            reached[n_reached] = w
            n_reached += 1
            stack_truth[top] = w
            if mate[w] < 0:
                for level in range(top + 1):  # each prediction on the path takes the centre it reached next
                    mate[stack_truth[level]] = stack_pred[level]
                newly[start] = w
                found = True
            else:
                top += 1
                stack_pred[top], stack_edge[top] = mate[w], indptr[mate[w]]
        if not found:
            for k in range(n_reached):
                dead[reached[k]] = True
    return newly
