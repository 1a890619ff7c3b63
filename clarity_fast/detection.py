"""Stages 2 and 3 on candidates: score their patches in batches, keep the confident ones, centre them on their cells,
merge duplicates."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree

from clarity_fast.candidates import Candidates
from clarity_fast.kernels.centre import centre_shifts
from clarity_fast.kernels.gather import Grid, gather_patches
from clarity_fast.kernels.slope import SlopeTest
from clarity_fast.kernels.suppress import suppress
from clarity_fast.model.config import Calibration

Scorer = Callable[[np.ndarray], np.ndarray]
"""Maps a float32 (N, 1, P, P, P) batch of normalised patches to N logits."""


BATCH = 4096  # patches gathered at once


def _per_patch(
    volume: np.ndarray, *, centres: np.ndarray, judge: Callable[[np.ndarray], np.ndarray], patch: int, grid: Grid | None, batch: int,
    dtype: type, width: tuple[int, ...] = (),
) -> np.ndarray:
    """judge(patches) for the patch around each centre (working-grid voxels), gathered `batch` at a time; `width`: the
    shape of what it gives per patch."""
    centres = np.rint(np.asarray(centres)).astype(np.int64).reshape(-1, 3)
    out = np.empty((len(centres), *width), dtype=dtype)
    buffer = np.empty((min(batch, max(len(centres), 1)), 1, patch, patch, patch), dtype=np.float32)
    for start in range(0, len(centres), batch):
        chunk = centres[start : start + batch]
        out[start : start + len(chunk)] = judge(gather_patches(volume, centres=chunk, out=buffer, grid=grid))
    return out


def logits_at(
    volume: np.ndarray, *, centres: np.ndarray, scorer: Scorer, patch: int, grid: Grid | None = None, batch: int = BATCH
) -> np.ndarray:
    """The network's logit for the patch around each centre (working-grid voxels), gathered and scored `batch` at a time."""
    return _per_patch(volume, centres=centres, judge=scorer, patch=patch, grid=grid, batch=batch, dtype=np.float32)


def centred(
    volume: np.ndarray, *, zyx: np.ndarray, patch: int, diameter: tuple[float, float, float], grid: Grid, batch: int = BATCH
) -> np.ndarray:
    """Where detect reports each candidate at native position `zyx` (cell_positions): the centre of the cell in its
    patch on `grid` (kernels.centre), for cells `diameter` working voxels across."""
    centres = grid.nearest(np.asarray(zyx).reshape(-1, 3))
    shifts = _per_patch(volume, centres=centres, judge=lambda p: centre_shifts(p, diameter=diameter), patch=patch, grid=grid, batch=batch,
                        dtype=np.float64, width=(3,))
    return cell_positions(zyx, centres=centres, shifts=shifts, grid=grid)


def cell_positions(zyx: np.ndarray, *, centres: np.ndarray, shifts: np.ndarray, grid: Grid) -> np.ndarray:
    """Native positions to report for candidates at `zyx` (native) whose patches were cut around `centres` (working
    voxels): the cell's centre, held inside the volume, where centring found one (a finite shift); else the candidate's
    own position, which rounding it to a coarser working grid would blur."""
    zyx = np.asarray(zyx, dtype=float).reshape(-1, 3)
    found = np.all(np.isfinite(shifts), axis=1)
    return np.where(found[:, None], grid.to_native(grid.clamped(centres + np.nan_to_num(shifts))), zyx)


def off_slope(candidates: Candidates, *, volume: np.ndarray, grid: Grid, patch: int, radius: tuple[float, float, float]) -> Candidates:
    """The candidates (in `volume`'s voxels) detect scores: those whose patch on `grid` is not on a slope
    (kernels.slope) for cells of `radius` working voxels; all where the patch cannot hold the test."""
    test = SlopeTest.for_patch(patch=patch, radius=radius)
    if test is None or not len(candidates):
        return candidates
    keep = ~_per_patch(volume, centres=grid.nearest(candidates.zyx), judge=test.on_slope, patch=patch, grid=grid, batch=BATCH, dtype=bool)
    return Candidates(candidates.zyx[keep], candidates.response[keep])


def merge_duplicates(zyx: np.ndarray, scores: np.ndarray, *, radius: tuple[float, float, float]) -> np.ndarray:
    """Indices of the detections kept when each suppresses weaker ones within `radius` (voxels, per axis).

    Greedy by score (ties by position), so keeping those above a threshold after merging equals merging
    those above it: one merge serves a whole threshold sweep.
    """
    zyx = np.asarray(zyx, dtype=float).reshape(-1, 3)
    if len(zyx) == 0:
        return np.empty(0, dtype=np.int64)
    order = np.lexsort((zyx[:, 2], zyx[:, 1], zyx[:, 0], -np.asarray(scores)))
    pairs = cKDTree(zyx / np.asarray(radius, dtype=float)).query_pairs(1.0, output_type="ndarray")
    return np.flatnonzero(suppress(order, pairs.astype(np.int64).reshape(-1, 2), len(zyx)))


def calibrated_detections(
    candidates: Candidates, logits: np.ndarray, *, at: np.ndarray, calibration: Calibration, merge_radius: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The indices of the candidates that survive duplicate merging at positions `at` (theirs, centred), and their
    cell probabilities (threshold them to detect)."""
    probs = calibration.probability(logits, candidates.response)
    keep = merge_duplicates(at, probs, radius=merge_radius)
    return keep, probs[keep]
