"""Resampling between a volume's own voxels and the working scale: shapes and points (images: kernels.gather).

Voxel centres stay aligned: a point at native voxel p sits at (p + 0.5) * f - 0.5 in a volume zoomed by f along
that axis.
"""

from __future__ import annotations

import numpy as np


def resampled_shape(shape: tuple[int, ...], *, factors: tuple[float, float, float]) -> tuple[int, int, int]:
    """A grid's shape zoomed by `factors` (at least one voxel along each axis)."""
    return tuple(max(1, int(round(n * f))) for n, f in zip(shape, factors))


def points_to(points: np.ndarray, *, factors: tuple[float, float, float]) -> np.ndarray:
    """Native voxel coordinates -> resampled voxel coordinates."""
    f = np.asarray(factors)
    return (np.asarray(points, dtype=float) + 0.5) * f - 0.5


def points_from(points: np.ndarray, *, factors: tuple[float, float, float]) -> np.ndarray:
    """Resampled voxel coordinates -> native voxel coordinates."""
    f = np.asarray(factors)
    return (np.asarray(points, dtype=float) + 0.5) / f - 0.5
