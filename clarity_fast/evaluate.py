"""Detection scoring: one-to-one matching of predicted to true centres within a radius.

Matching is optimal (the most pairs, then the shortest in sum), solved in each cluster of mutually reachable points:
lone pairs directly, clusters by scipy's dense assignment, and one too large for a dense cost matrix by its sparse
solver, so that a whole brain's points take seconds and a dense cluster of any size fits in memory.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, maximum_bipartite_matching, min_weight_full_bipartite_matching
from scipy.spatial import cKDTree
from scipy.stats import rankdata

from clarity_fast.errors import InputError
from clarity_fast.kernels.matching import prefix_matches
from clarity_fast.region import within

# The study's matching rule for voxel coordinates: within 3.5 voxels, z distances counted double
# (z is sampled coarser than y and x in cleared-brain stacks).
RADIUS_VOXELS = 3.5
AXIS_WEIGHTS = (2.0, 1.0, 1.0)

RELIABILITY_CELLS = 20  # cells at which an item's F1 counts half in a threshold choice (reliability_weight)

@dataclass(frozen=True)
class Match:
    """Counts and the matched index pairs (pred, truth)."""

    tp: int
    fp: int
    fn: int
    pairs: np.ndarray  # (tp, 2) int

    # No predictions and no cells agree perfectly: precision, recall and F1 are all 1 then; with cells but no
    # predictions (or the reverse) the undefined one is 0, as is F1.
    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float(self.fn == 0)

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float(self.fp == 0)

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 1.0

    def summary(self) -> dict[str, float | int]:
        out = {k: v for k, v in asdict(self).items() if k != "pairs"}
        out.update(precision=self.precision, recall=self.recall, f1=self.f1)
        return out


@dataclass(frozen=True)
class Scored:
    """Detections (z, y, x) with their scores, and the true centres to score them against. Where the annotations
    are those of a block in a larger volume, the counted masks (match_points) say which points are scored: those
    beside the block are context; None: all."""

    pred: np.ndarray
    scores: np.ndarray | None  # None: detections without scores (evaluate's files may have none): no threshold applies
    truth: np.ndarray
    pred_counted: np.ndarray | None = None
    truth_counted: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pred", np.asarray(self.pred, dtype=float).reshape(-1, 3))
        if self.scores is not None:
            object.__setattr__(self, "scores", np.asarray(self.scores, dtype=float).reshape(-1))
        object.__setattr__(self, "truth", np.asarray(self.truth, dtype=float).reshape(-1, 3))

    @property
    def cells(self) -> int:
        """The cells that count."""
        return int(_counted(self.truth_counted, len(self.truth)).sum())

    def match(self, *, radius: float, axis_scale: tuple[float, float, float] = (1.0, 1.0, 1.0), threshold: float = -math.inf) -> Match:
        """The matching of the detections scoring at least `threshold` (default: all, which needs no scores)."""
        if self.scores is None and threshold > -math.inf:
            raise ValueError("detections without scores have no threshold")
        keep = np.ones(len(self.pred), bool) if self.scores is None else self.scores >= threshold
        return match_points(pred=self.pred[keep], truth=self.truth, radius=radius, axis_scale=axis_scale,
                            pred_counted=_counted(self.pred_counted, len(keep))[keep], truth_counted=self.truth_counted)

    def best_threshold(self, *, radius: float, axis_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> tuple[float, Match]:
        """best_threshold over these detections."""
        return best_threshold(pred=self.pred, scores=self.scores, truth=self.truth, radius=radius, axis_scale=axis_scale,
                              pred_counted=self.pred_counted, truth_counted=self.truth_counted)

    def f1_by_threshold(self, thresholds: np.ndarray, *, radius: float, axis_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
        """f1_by_threshold over these detections."""
        return f1_by_threshold(pred=self.pred, scores=self.scores, truth=self.truth, thresholds=thresholds, radius=radius,
                               axis_scale=axis_scale, pred_counted=self.pred_counted, truth_counted=self.truth_counted)


def _close_pairs(
    *, pred: np.ndarray, truth: np.ndarray, radius: float, axis_scale: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Scaled predictions and truth, and every (prediction, truth, distance) within `radius`."""
    if not (radius > 0 and math.isfinite(radius)):
        raise InputError(f"match radius must be a positive number, got {radius}")
    scale = np.asarray(axis_scale, dtype=float)
    p = np.asarray(pred, dtype=float).reshape(-1, 3) * scale
    t = np.asarray(truth, dtype=float).reshape(-1, 3) * scale
    if len(p) == 0 or len(t) == 0:
        return p, t, (np.empty(0, int), np.empty(0, int), np.empty(0))
    close = cKDTree(p).sparse_distance_matrix(cKDTree(t), radius, output_type="ndarray")
    return p, t, (close["i"], close["j"], close["v"])


def match_points(
    *,
    pred: np.ndarray,
    truth: np.ndarray,
    radius: float,
    axis_scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
    pred_counted: np.ndarray | None = None,
    truth_counted: np.ndarray | None = None,
) -> Match:
    """Pair each prediction with at most one true centre within `radius` (a distance of exactly `radius` matches).

    Coordinates are (z, y, x) voxels, multiplied by `axis_scale` before measuring distance: pass the voxel
    size to work in µm, or weights such as (2, 1, 1) to count z distances double. The counted masks (default: all)
    score an annotated block of a larger volume: only its cells (truth_counted) are found or missed, and only its
    detections (pred_counted) can be false positives; a pair with a cell outside it is neither right nor wrong, as
    are detections outside it that find none of its cells.
    """
    p, t, (i, j, distance) = _close_pairs(pred=pred, truth=truth, radius=radius, axis_scale=axis_scale)
    n, m = len(p), len(t)
    pred_counted, truth_counted = _counted(pred_counted, n), _counted(truth_counted, m)
    if n == 0 or m == 0:
        return Match(tp=0, fp=int(pred_counted.sum()), fn=int(truth_counted.sum()), pairs=np.empty((0, 2), dtype=int))
    # Matching decomposes over clusters of points within reach of each other. A cluster of one pair needs no
    # solver (most, where cells lie apart); a larger one gets scipy's dense assignment, and one too large for a
    # dense cost matrix the sparse solver.
    graph = coo_matrix((np.ones(len(i)), (i, n + j)), shape=(n + m,) * 2)
    _, component = connected_components(graph, directed=False)
    edge_component = component[i]
    lone = np.bincount(edge_component)[edge_component] == 1  # a cluster of one edge: one prediction, one truth
    pairs = [np.stack([i[lone], j[lone]], axis=1)]
    rest = np.flatnonzero(~lone)
    order = rest[np.argsort(edge_component[rest], kind="stable")]
    for group in np.split(order, np.flatnonzero(np.diff(edge_component[order])) + 1):
        if len(group):
            pairs.append(_cluster_pairs(i[group], j[group], distance[group]))
    return scored(np.concatenate(pairs), pred_counted=pred_counted, truth_counted=truth_counted)


def scored(pairs: np.ndarray, *, pred_counted: np.ndarray, truth_counted: np.ndarray) -> Match:
    """A matching's counts where only the marked points are scored (match_points): of one block, say, of the several
    a matching was made over at once. The pairs are kept whole."""
    tp = int(truth_counted[pairs[:, 1]].sum())
    fp = int(pred_counted.sum() - pred_counted[pairs[:, 0]].sum())
    return Match(tp=tp, fp=fp, fn=int(truth_counted.sum()) - tp, pairs=pairs)


@dataclass(frozen=True)
class BlockMatch:
    """A matching scored in annotated blocks of a larger volume (match_in_blocks): the points within reach of the
    blocks with which of them count, the pooled counts, and each block's from the same matching."""

    match: Match
    points: Scored  # the detections and cells within reach of a block; counted: those in one
    per_block: list[tuple[Match, int]]  # per block: its counts and the detections in it (several blocks only)

    @property
    def found_from_outside(self) -> int:
        """Pairs of a detection beside the blocks with a cell in one: neither right nor wrong (match_points)."""
        pairs = self.match.pairs
        return int(np.sum(~self.points.pred_counted[pairs[:, 0]] & self.points.truth_counted[pairs[:, 1]]))


def match_in_blocks(
    points: Scored,
    *,
    blocks: list[tuple[tuple[float, float], ...]],
    radius: float,
    axis_scale: tuple[float, float, float],
) -> BlockMatch:
    """One matching of a volume's `points` (their counted masks unread) scored in the blocks (each (lo, hi) per axis,
    voxels): their cells, and the detections in them or finding them. Points farther out than can pair with a
    block's, or compete for their partners, are left out."""

    def inside(points: np.ndarray, *, radii: int = 0) -> np.ndarray:
        """Per block, per point: whether it lies in the block grown by `radii` match radii."""
        return np.array([
            within(points, bounds=tuple((lo - radii * radius / s, hi + radii * radius / s) for (lo, hi), s in zip(limits, axis_scale)))
            for limits in blocks
        ]).reshape(len(blocks), len(points))

    keep = inside(points.pred, radii=3).any(axis=0)
    pred, truth = points.pred[keep], points.truth[inside(points.truth, radii=4).any(axis=0)]
    pred_in, truth_in = inside(pred), inside(truth)
    near = Scored(pred, None if points.scores is None else points.scores[keep], truth,
                  pred_counted=pred_in.any(axis=0), truth_counted=truth_in.any(axis=0))
    match = near.match(radius=radius, axis_scale=axis_scale)
    per_block = [(scored(match.pairs, pred_counted=p, truth_counted=t), int(p.sum())) for p, t in zip(pred_in, truth_in)] if len(blocks) > 1 else []
    return BlockMatch(match=match, points=near, per_block=per_block)


def _counted(counted: np.ndarray | None, n: int) -> np.ndarray:
    """Which points are scored (match_points): all by default."""
    if counted is None:
        return np.ones(n, bool)
    counted = np.asarray(counted, dtype=bool).reshape(-1)
    if len(counted) != n:
        raise ValueError(f"{len(counted)} counted flags for {n} points")
    return counted


DENSE_CELLS = 36_000_000  # entries of a cluster's cost matrix (288 MB; 6,000 × 6,000 points) beyond which the sparse solver takes it


def _cluster_pairs(i: np.ndarray, j: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """The (prediction, truth) pairs of one cluster's edges: the most pairs, then the shortest in sum."""
    rows, row = np.unique(i, return_inverse=True)
    cols, col = np.unique(j, return_inverse=True)
    if len(rows) * len(cols) <= DENSE_CELLS:
        # A missing pair costs more than any set of real ones: the most pairs first, then the shortest in sum.
        cost = np.full((len(rows), len(cols)), (float(distance.max()) + 1.0) * (min(len(rows), len(cols)) + 1))
        cost[row, col] = distance
        present = np.zeros(cost.shape, dtype=bool)
        present[row, col] = True
        r, c = linear_sum_assignment(cost)
        real = present[r, c]
        return np.stack([rows[r[real]], cols[c[real]]], axis=1)
    # The sparse solver needs a full matching: each prediction may take its own stand-in truth and each truth its own
    # stand-in prediction at a cost, and two stand-ins pair up at no cost where their prediction and truth do. A cost
    # above twice the longest pair makes the most pairs (Hopcroft-Karp's count) in most cases; where it does not (a
    # long chain of pairs to reshuffle) it is raised until it does, as larger ones slow the solver down. Weights are
    # shifted by 1: all full matchings have the same number of edges, and a zero is no edge.
    n, m = len(rows), len(cols)
    most = int((maximum_bipartite_matching(csr_matrix((np.ones(len(row)), (row, col)), shape=(n, m)), perm_type="column") >= 0).sum())
    rows_all = np.concatenate([row, np.arange(n), n + np.arange(m), n + col])
    cols_all = np.concatenate([col, m + np.arange(n), np.arange(m), m + row])
    unpaired = 2.0 * float(distance.max()) + 1.0
    while True:
        weights = np.concatenate([distance, np.full(n + m, unpaired), np.zeros(len(row))]) + 1.0
        r, c = min_weight_full_bipartite_matching(coo_matrix((weights, (rows_all, cols_all)), shape=(n + m, n + m)).tocsr())
        real = (r < n) & (c < m)
        if real.sum() == most:
            return np.stack([rows[r[real]], cols[c[real]]], axis=1)
        unpaired *= 8.0


THRESHOLD_STEPS = 64  # quantiles, and as many evenly spaced values, that a threshold search tries


def threshold_grid(scores: np.ndarray) -> np.ndarray:
    """The thresholds a search tries: the scores' quantiles and an even grid over their range (quantiles alone crowd
    where most scores are, e.g. near 0 for a classifier's many easy rejects)."""
    quantiles = np.quantile(scores, np.linspace(0.0, 1.0, THRESHOLD_STEPS))
    return np.unique(np.concatenate([quantiles, np.linspace(scores.min(), scores.max(), THRESHOLD_STEPS)]))


def f1_by_threshold(
    *,
    pred: np.ndarray,
    scores: np.ndarray,
    truth: np.ndarray,
    thresholds: np.ndarray,
    radius: float,
    axis_scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
    pred_counted: np.ndarray | None = None,
    truth_counted: np.ndarray | None = None,
) -> np.ndarray:
    """F1 at each threshold (keep score >= t), the same as match_points gives on the kept predictions.

    Only the number of pairs matters to F1, and match_points makes as many as can be made; those counts for every
    threshold come from one pass over the predictions in falling score order (kernels.matching), not a matching
    per threshold: seconds, not minutes, for 100,000 detections. With counted masks (match_points) the pairs that
    count depend on the matching too: this one pairs predictions in falling score order, so where an uncounted
    point competes with a counted one for a partner, its counts can differ from match_points' by such a pair."""
    scores = np.asarray(scores, dtype=float).reshape(-1)
    thresholds = np.asarray(thresholds, dtype=float).reshape(-1)
    p, t, (rows, cols, _) = _close_pairs(pred=pred, truth=truth, radius=radius, axis_scale=axis_scale)
    if len(scores) != len(p):
        raise ValueError(f"{len(scores)} scores for {len(p)} predictions")
    if not np.isfinite(scores).all():  # a NaN is kept at no threshold, but would sort among the kept
        raise ValueError("scores must be finite numbers")
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    by_rank = np.argsort(rank[rows], kind="stable")
    indptr = np.zeros(len(p) + 1, np.int64)
    np.cumsum(np.bincount(rank[rows], minlength=len(p)), out=indptr[1:])
    # per prediction in score order, the true centre it newly matches (-1: none); a prefix's matched predictions
    # are those that matched when added, its matched centres those newly matched so far
    newly = prefix_matches(indptr, cols[by_rank].astype(np.int64), len(t))
    pred_counted, truth_counted = _counted(pred_counted, len(p))[order], _counted(truth_counted, len(t))
    found = np.concatenate([[0], np.cumsum(np.append(truth_counted, False)[newly])])  # newly -1 reads the False
    false = np.concatenate([[0], np.cumsum(pred_counted & (newly < 0))])
    # a threshold keeps the first `kept` predictions in score order, those scoring at least it
    kept = len(scores) - np.searchsorted(scores[order[::-1]], thresholds, side="left")
    tp = found[kept]
    denom = tp + false[kept] + truth_counted.sum()
    return np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 1.0)


def best_threshold(
    *,
    pred: np.ndarray,
    scores: np.ndarray,
    truth: np.ndarray,
    radius: float,
    axis_scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
    pred_counted: np.ndarray | None = None,
    truth_counted: np.ndarray | None = None,
) -> tuple[float, Match]:
    """The score threshold (keep score >= t) that maximises F1, searched over threshold_grid (the lowest of equals);
    the counted masks as for match_points."""
    scores = np.asarray(scores, dtype=float)
    rule = dict(radius=radius, axis_scale=axis_scale, truth_counted=truth_counted)
    if len(scores) == 0:
        return float("inf"), match_points(pred=pred, truth=truth, **rule)
    pred_counted = _counted(pred_counted, len(scores))
    grid = threshold_grid(scores)
    f1 = f1_by_threshold(pred=pred, scores=scores, truth=truth, thresholds=grid, pred_counted=pred_counted, **rule)
    threshold = float(grid[int(np.argmax(f1))])
    keep = scores >= threshold
    return threshold, match_points(pred=np.asarray(pred)[keep], truth=truth, pred_counted=pred_counted[keep], **rule)


def typed_threshold(scores: np.ndarray, threshold: float) -> float:
    """The shortest decimal that keeps the same scores as `threshold` does (score >= it), for a person to pass on: a
    threshold rounded to a few digits could otherwise land above the lowest score it is meant to keep."""
    scores = np.asarray(scores, dtype=float)
    kept, below = scores[scores >= threshold], scores[scores < threshold]
    if not len(kept):
        return threshold
    low, high = (below.max() if len(below) else -math.inf), kept.min()
    for digits in range(1, 18):
        value = math.floor(high * 10**digits) / 10**digits
        if low < value <= high:
            return value
    return float(high)


def balanced_threshold(
    items: list[Scored],
    *,
    radius: float,
    axis_scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> tuple[float, float]:
    """The score threshold that maximises the weighted mean F1 over `items`, and that mean.

    An item (a dataset, say) with many cells counts about the same however many it holds, so one dense set
    cannot pull the threshold to where it alone does well. One with few cells counts less (reliability_weight):
    its F1 jumps with each cell, and weighing as much as a whole brain it could pull the threshold to where its
    handful of cells happen to do best."""
    scores = np.concatenate([np.empty(0)] + [item.scores for item in items])
    if len(scores) == 0:
        return float("inf"), 0.0
    weights = np.array([reliability_weight(item.cells) for item in items])
    if weights.sum() == 0:  # no item holds cells: each counts the same (any threshold above every score wins)
        weights = np.ones(len(items))
    grid = threshold_grid(scores)
    f1 = np.array([item.f1_by_threshold(grid, radius=radius, axis_scale=axis_scale) for item in items])
    means = [float(weights @ np.ascontiguousarray(f1[:, k]) / weights.sum()) for k in range(len(grid))]
    best = int(np.argmax(means))
    return float(grid[best]), means[best]


def reliability_weight(cells: int) -> float:
    """How much an item's F1 counts in a threshold choice: cells / (cells + RELIABILITY_CELLS).

    Proportional to the inverse variance of an item's F1 as an estimate of the items' mean: between-item sd
    about 0.1, plus a binomial sd about 0.45 / sqrt(cells) (F1 near 0.7), so RELIABILITY_CELLS = 0.45² / 0.1².
    Past a few dozen cells every item counts nearly the same, a 5-cell one a fifth as much.
    """
    return cells / (cells + RELIABILITY_CELLS)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); nan without both classes."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # ties share their average rank
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates over all thresholds, from (0, 0) to (1, 1): one point per distinct score, so
    tied scores make one diagonal step whatever their order (the curve whose area roc_auc gives)."""
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], np.asarray(labels).astype(bool)[order]
    last_of_tie = np.concatenate([scores[1:] != scores[:-1], [True]]) if len(scores) else np.zeros(0, dtype=bool)
    tps = np.concatenate([[0], np.cumsum(labels)[last_of_tie]])
    fps = np.concatenate([[0], np.cumsum(~labels)[last_of_tie]])
    return fps / max(fps[-1], 1), tps / max(tps[-1], 1)


def pool_volumes(items: list[Scored]) -> Scored:
    """Several volumes' detections and truth in one coordinate space, each far from the others, so that one
    matching (or one threshold sweep) covers them all; without scores where one volume has none."""
    preds, scores, truths = [np.empty((0, 3))], [np.empty(0)], [np.empty((0, 3))]
    pred_counted, truth_counted = [np.empty(0, bool)], [np.empty(0, bool)]
    for i, item in enumerate(items):
        offset = np.array([i * 1_000_000, 0, 0])
        preds.append(item.pred + offset)
        scores.append(item.scores)
        truths.append(item.truth + offset)
        pred_counted.append(_counted(item.pred_counted, len(item.pred)))
        truth_counted.append(_counted(item.truth_counted, len(item.truth)))
    unscored = any(item.scores is None for item in items)
    return Scored(np.concatenate(preds), None if unscored else np.concatenate(scores), np.concatenate(truths),
                  pred_counted=np.concatenate(pred_counted), truth_counted=np.concatenate(truth_counted))
