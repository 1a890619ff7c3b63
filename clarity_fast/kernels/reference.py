"""Plain numpy/scipy versions of the kernels' maths: the yardstick the compiled kernels are tested against."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, maximum_filter


def log_response(volume: np.ndarray, *, sigma: tuple[float, float, float]) -> np.ndarray:
    """Scale-normalised negative Laplacian of Gaussian (the plain LoG baseline)."""
    return np.sum(_curvatures(volume, sigma), axis=0)


def blob_response(volume: np.ndarray, *, sigma: tuple[float, float, float]) -> np.ndarray:
    """The prefilter's response: the smallest of the scale-normalised curvatures along z, y and x.

    A cell curves down along every axis; a stripe, a vessel or a rod seen end-on does not along at least one,
    so taking the minimum rejects them where the plain LoG sum would not. A single plane uses y and x only.
    """
    return np.min(_curvatures(volume, sigma), axis=0)


def _curvatures(volume: np.ndarray, sigma: tuple[float, float, float]) -> np.ndarray:
    v = np.asarray(volume, dtype=np.float32)
    planar = v.shape[0] == 1
    if planar:
        v, sigma = v[0], tuple(sigma[1:])
    terms = []
    for axis in range(v.ndim):
        order = [0] * v.ndim
        order[axis] = 2
        terms.append(-np.float32(sigma[axis] ** 2) * gaussian_filter(v, sigma, order=order, mode="reflect"))
    out = np.stack(terms)
    return out[:, None] if planar else out


def ellipsoid_footprint(radius: tuple[float, float, float]) -> np.ndarray:
    """Boolean ellipsoid of the given semi-axes (voxels), odd-sized, centred."""
    half = [int(np.floor(r)) for r in radius]
    grids = np.meshgrid(*[np.arange(-h, h + 1) / max(r, 1e-9) for h, r in zip(half, radius)], indexing="ij")
    return sum(g**2 for g in grids) <= 1.0


def local_maxima(response: np.ndarray, *, radius: tuple[float, float, float], threshold: float) -> np.ndarray:
    """(N, 3) voxel indices, in C order, where `response` exceeds `threshold` and is the maximum of its ellipsoid."""
    peak = maximum_filter(response, footprint=ellipsoid_footprint(radius), mode="constant", cval=-np.inf)
    return np.argwhere((response == peak) & (response > threshold))


def noise_level(response: np.ndarray) -> tuple[float, float]:
    """Median and robust standard deviation (1.4826 x MAD) of a response."""
    median = float(np.median(response))
    return median, 1.4826 * float(np.median(np.abs(response - median)))
