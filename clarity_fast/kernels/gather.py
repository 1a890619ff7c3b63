"""Cut the P×P×P patch around each candidate into a preallocated (N, 1, P, P, P) float32 batch, compiled.

Patches reach past the volume's faces by reflection (scipy 'reflect'), and each is normalised to zero
mean and unit standard deviation, the input the network was trained on.
"""

from __future__ import annotations

import numba
import numpy as np

from clarity_fast.kernels.filters import _reflect

STD_FLOOR = 1e-6  # a flat patch stays flat (all zeros) instead of dividing by zero


@numba.njit(parallel=True, cache=True, nogil=True)
def _gather(src, src_z0, depth, centres, out):
    size = out.shape[2]
    half = size // 2
    rows, cols = src.shape[1], src.shape[2]
    n_vox = size * size * size
    for i in numba.prange(centres.shape[0]):
        cz, cy, cx = centres[i, 0], centres[i, 1], centres[i, 2]
        total = 0.0
        for a in range(size):
            z = _reflect(cz - half + a, depth) - src_z0
            for b in range(size):
                y = _reflect(cy - half + b, rows)
                for c in range(size):
                    v = np.float32(src[z, y, _reflect(cx - half + c, cols)])
                    out[i, 0, a, b, c] = v
                    total += v
        mean = total / n_vox
        var = 0.0
        for a in range(size):
            for b in range(size):
                for c in range(size):
                    dv = out[i, 0, a, b, c] - mean
                    var += dv * dv
        scale = 1.0 / max(np.sqrt(var / n_vox), STD_FLOOR)
        for a in range(size):
            for b in range(size):
                for c in range(size):
                    out[i, 0, a, b, c] = np.float32((out[i, 0, a, b, c] - mean) * scale)


def gather_patches(
    src: np.ndarray, *, centres: np.ndarray, out: np.ndarray, src_z0: int = 0, depth: int | None = None
) -> np.ndarray:
    """Fill out[:len(centres)] with normalised patches centred on `centres` (volume voxels, int).

    `src` holds planes src_z0.. of a volume `depth` planes deep (default: src is the whole volume); every
    plane a patch needs, after reflection at the volume's ends, must lie in `src`. The patch of size P
    covers centre - P//2 .. centre + P - P//2 - 1 on each axis.
    """
    depth = src.shape[0] if depth is None else depth
    n = len(centres)
    if out.ndim != 5 or out.shape[0] < n or out.shape[1] != 1 or len(set(out.shape[2:])) != 1:
        raise ValueError(f"out must be (>= {n}, 1, P, P, P), got {out.shape}")
    if out.dtype != np.float32:
        raise ValueError(f"out must be float32, got {out.dtype}")
    _gather(src, src_z0, depth, np.ascontiguousarray(centres, dtype=np.int64), out)
    return out[:n]
