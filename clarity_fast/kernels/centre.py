"""Where the cell in a patch is centred, compiled: a few mean-shift steps of its brightness.

A candidate sits where the prefilter's response peaks, the smallest of three axis curvatures, which on a large,
irregular or long cell can lie a few voxels off the cell's centre (the response peaks where its weakest axis curves
most). The patch the network scores holds the whole cell, so the centre of its brightness above the local
background, weighted by a Gaussian around the current estimate and found again around each new one, says where the
cell is. The weight keeps the estimate on this cell and off its neighbours: at a quarter of a diameter it reaches the
cell's edge at two standard deviations. A shift that would leave the cell's own sphere around the patch's centre is not
made (the patch's brightest thing is then something else). Working on the patches already gathered for scoring, it
reads nothing more and gives the same positions whatever the slabs or batches.
"""

from __future__ import annotations

import math

import numba
import numpy as np

STEPS = 3  # mean-shift steps: most of the way there by the second
WEIGHT_SD = 0.25  # cell diameters: the Gaussian weight around the current estimate
BACKGROUND_PERCENTILE = 30.0  # of the voxels within the cell's sphere around the patch centre: what counts as background


def centre_shifts(patches: np.ndarray, *, diameter: tuple[float, float, float]) -> np.ndarray:
    """(N, 3) float64 offsets, in patch voxels (z, y, x), from the centre voxel (P // 2) of each of (N, 1, P, P, P)
    patches to the centre of the cell in it, for cells `diameter` patch voxels across; NaN where there is no estimate
    (it would leave the cell's sphere, or the patch is flat)."""
    size = patches.shape[-1]
    flat = np.ascontiguousarray(patches, dtype=np.float32).reshape(len(patches), size**3)
    diameter = np.asarray(diameter, dtype=np.float64)
    offsets = np.stack(np.meshgrid(*[np.arange(size) - size // 2] * 3, indexing="ij"), -1).reshape(-1, 3)
    sphere = np.flatnonzero(np.sum((offsets / (diameter / 2)) ** 2, axis=1) <= 1.0)  # the cell's, around the patch centre
    out = np.full((len(flat), 3), np.nan, dtype=np.float64)
    if len(flat):
        _shifts(flat, size, sphere, diameter, STEPS, WEIGHT_SD, BACKGROUND_PERCENTILE, out)
    return out


@numba.njit(cache=True, nogil=True)
def _percentile(values: np.ndarray, q: float) -> float:
    """numpy's default ('linear') percentile of a 1D array."""
    s = np.sort(values)
    position = q / 100.0 * (len(s) - 1)
    below = int(math.floor(position))
    above = min(below + 1, len(s) - 1)
    return s[below] + (position - below) * (s[above] - s[below])


@numba.njit(cache=True, nogil=True, parallel=True)
def _shifts(flat, size, sphere, diameter, steps, weight_sd, percentile, out):
    half = size // 2
    radius = 0.5 * diameter
    sd = weight_sd * diameter
    for i in numba.prange(flat.shape[0]):
        p = flat[i]
        core = np.empty(len(sphere), dtype=np.float64)
        for k in range(len(sphere)):
            core[k] = p[sphere[k]]
        background = _percentile(core, percentile)
        shift = np.zeros(3)
        estimated = False
        weights = np.empty((3, size))
        for _ in range(steps):
            for a in range(3):
                for j in range(size):
                    weights[a, j] = math.exp(-0.5 * ((j - half - shift[a]) / sd[a]) ** 2)
            total = 0.0
            moment = np.zeros(3)
            for z in range(size):
                for y in range(size):
                    wzy = weights[0, z] * weights[1, y]
                    for x in range(size):
                        above = p[(z * size + y) * size + x] - background
                        if above > 0.0:
                            w = above * wzy * weights[2, x]
                            total += w
                            moment[0] += w * (z - half)
                            moment[1] += w * (y - half)
                            moment[2] += w * (x - half)
            if total <= 0.0:
                break
            estimated = True
            for a in range(3):
                shift[a] = moment[a] / total
        if estimated and (shift[0] / radius[0]) ** 2 + (shift[1] / radius[1]) ** 2 + (shift[2] / radius[2]) ** 2 <= 1.0:
            for a in range(3):
                out[i, a] = shift[a]
