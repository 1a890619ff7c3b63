"""Resampling between a volume's own voxels and the working scale, for images and for points.

Voxel centres stay aligned (scipy's grid_mode): a point at native voxel p sits at (p + 0.5) * f - 0.5
in a volume zoomed by f along that axis.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import zoom


def resampled_shape(shape: tuple[int, ...], factors: tuple[float, float, float]) -> tuple[int, int, int]:
    return tuple(max(1, int(round(n * f))) for n, f in zip(shape, factors))


def resample(volume: np.ndarray, *, factors: tuple[float, float, float]) -> np.ndarray:
    """Linear resampling to round(shape x factors) voxels, as float32; the input itself where factors are 1."""
    if all(f == 1.0 for f in factors):
        return volume
    out = np.empty(resampled_shape(volume.shape, factors), dtype=np.float32)
    zoom(np.asarray(volume, dtype=np.float32), factors, output=out, order=1, mode="nearest", grid_mode=True)
    return out


def points_to(points: np.ndarray, *, factors: tuple[float, float, float]) -> np.ndarray:
    """Native voxel coordinates -> resampled voxel coordinates."""
    f = np.asarray(factors)
    return (np.asarray(points, dtype=float) + 0.5) * f - 0.5


def points_from(points: np.ndarray, *, factors: tuple[float, float, float]) -> np.ndarray:
    """Resampled voxel coordinates -> native voxel coordinates."""
    f = np.asarray(factors)
    return (np.asarray(points, dtype=float) + 0.5) / f - 0.5
