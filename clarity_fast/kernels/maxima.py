"""3D local maxima above a threshold, each the largest value of its ellipsoidal neighbourhood, compiled.

Equal values within a neighbourhood keep only the first in C order (z, then y, then x), so two candidates are never
closer than the neighbourhood however the response ties (a plateau, a blob centred between two voxels)."""

from __future__ import annotations

import numba
import numpy as np


def footprint_offsets(radius: tuple[float, float, float]) -> np.ndarray:
    """(M, 3) integer offsets inside the ellipsoid of semi-axes `radius` (voxels), the centre excluded, nearest
    first: most voxels above the threshold sit on a slope, and a near neighbour rules them out soonest (a third
    less time than in raster order; which voxels are peaks does not depend on the order)."""
    half = [int(np.floor(r)) for r in radius]
    grid = np.stack(np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij"), axis=-1).reshape(-1, 3)
    distance = np.sum((grid / np.maximum(np.asarray(radius), 1e-9)) ** 2, axis=1)
    inside = (distance <= 1.0) & np.any(grid != 0, axis=1)
    order = np.argsort(distance[inside], kind="stable")
    return np.ascontiguousarray(grid[inside][order], dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _is_peak(values: np.ndarray, z: int, y: int, x: int, offsets: np.ndarray) -> bool:
    v = values[z, y, x]
    planes, rows, cols = values.shape
    for m in range(offsets.shape[0]):
        zz = z + offsets[m, 0]
        yy = y + offsets[m, 1]
        xx = x + offsets[m, 2]
        if 0 <= zz < planes and 0 <= yy < rows and 0 <= xx < cols:
            w = values[zz, yy, xx]
            if w > v or (w == v and _earlier(offsets[m, 0], offsets[m, 1], offsets[m, 2])):
                return False
    return True


@numba.njit(cache=True, nogil=True)
def _earlier(dz: int, dy: int, dx: int) -> bool:
    """Whether the neighbour at this offset comes first in C order: of two equal maxima the first is kept."""
    return dz < 0 or (dz == 0 and (dy < 0 or (dy == 0 and dx < 0)))


@numba.njit(parallel=True, cache=True, nogil=True)
def _mark_rows(values, offsets, z_lo, z_hi, threshold, counts, marks):
    """Per row of planes z_lo..z_hi: how many peaks, and where (a bit per voxel), so the second pass need not
    test them again."""
    rows, cols = values.shape[1], values.shape[2]
    for qy in numba.prange((z_hi - z_lo) * rows):
        z = z_lo + qy // rows
        y = qy % rows
        c = 0
        for x in range(cols):
            if values[z, y, x] > threshold and _is_peak(values, z, y, x, offsets):
                marks[qy, x >> 3] |= np.uint8(1 << (x & 7))
                c += 1
        counts[qy] = c


@numba.njit(parallel=True, cache=True, nogil=True)
def _fill_rows(values, marks, z_lo, starts, coords, found):
    rows = values.shape[1]
    for qy in numba.prange(starts.shape[0] - 1):
        if starts[qy + 1] == starts[qy]:
            continue
        z = z_lo + qy // rows
        y = qy % rows
        i = starts[qy]
        for byte in range(marks.shape[1]):
            bits = marks[qy, byte]
            if bits == 0:
                continue
            for bit in range(8):
                if bits & (1 << bit):
                    x = byte * 8 + bit
                    coords[i, 0] = z
                    coords[i, 1] = y
                    coords[i, 2] = x
                    found[i] = values[z, y, x]
                    i += 1


def local_maxima(
    values: np.ndarray, *, offsets: np.ndarray, threshold: float, z_range: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Voxels of planes z_range (default all) above `threshold` that no neighbour in `offsets` exceeds or, earlier in
    C order, equals.

    Neighbours outside `values` do not count, so pass a block that holds every plane a neighbourhood may
    reach inside the volume. Returns (N, 3) int64 block coordinates in C order and their values.
    """
    z_lo, z_hi = z_range if z_range is not None else (0, values.shape[0])
    rows = values.shape[1]
    counts = np.zeros((z_hi - z_lo) * rows, dtype=np.int64)
    marks = np.zeros((len(counts), -(-values.shape[2] // 8)), dtype=np.uint8)
    _mark_rows(values, offsets, z_lo, z_hi, np.float32(threshold), counts, marks)
    starts = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    coords = np.empty((starts[-1], 3), dtype=np.int64)
    found = np.empty(starts[-1], dtype=np.float32)
    _fill_rows(values, marks, z_lo, starts, coords, found)
    return coords, found
