"""Cut the P×P×P patch around each candidate into a preallocated (N, 1, P, P, P) float32 batch, compiled.

Patches are cut on the model's working grid: each working voxel is linearly interpolated from the native
voxels around it (a Grid says which, along each axis), so a volume of any voxel size is resampled only
where patches need it, slab by slab, with no whole-volume copy. On an identity grid this is a plain copy.
Patches reach past the volume's faces by reflection (scipy 'reflect') on the working grid, and each is
normalised to zero mean and unit standard deviation, the input the network was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from clarity_fast.kernels.filters import reflect
from clarity_fast.resample import resampled_shape

STD_FLOOR = 1e-6  # a flat patch stays flat (all zeros) instead of dividing by zero


@dataclass(frozen=True)
class Grid:
    """Per axis (z, y, x) and per working index: the native voxels below and above it and the weight of the
    one above (0 on an identity axis). Working voxel w sits at native coordinate (w + 0.5) / f - 0.5,
    clamped to the volume (scipy 'nearest'), as resample.points_to maps points."""

    lo: tuple[np.ndarray, np.ndarray, np.ndarray]
    hi: tuple[np.ndarray, np.ndarray, np.ndarray]
    weight: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def shape(self) -> tuple[int, int, int]:
        """The volume's shape on the working grid."""
        return tuple(len(a) for a in self.lo)

    def native_rows(self, start: int, stop: int) -> tuple[int, int]:
        """Native planes [a, b) that working planes [start, stop) (reflected into the volume) read."""
        n = self.shape[0]
        rows = np.asarray([reflect(w, n) for w in range(start, stop)], dtype=np.int64)
        return int(self.lo[0][rows].min()), int(self.hi[0][rows].max()) + 1


def working_grid(native_shape: tuple[int, int, int], *, factors: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Grid:
    """The working grid of a volume of `native_shape` zoomed by `factors` (1: the native voxels themselves)."""
    lo, hi, weight = [], [], []
    for n, f, m in zip(native_shape, factors, resampled_shape(native_shape, factors)):
        if f == 1.0:
            w = np.arange(n, dtype=np.int64)
            lo.append(w), hi.append(w), weight.append(np.zeros(n))
            continue
        u = np.clip((np.arange(m) + 0.5) / f - 0.5, 0, n - 1)
        below = np.floor(u).astype(np.int64)
        lo.append(below), hi.append(np.minimum(below + 1, n - 1)), weight.append(u - below)
    return Grid(tuple(lo), tuple(hi), tuple(weight))


def resample_volume(volume: np.ndarray, *, grid: Grid) -> np.ndarray:
    """The whole volume on the working grid (trilinear, float32; the input itself on an identity grid), sampled
    where the gatherer samples patches and points_to maps points: what the baselines' filters run on."""
    if grid.shape == volume.shape and not any(np.any(w) for w in grid.weight):
        return volume
    out = np.asarray(volume, dtype=np.float32)
    for axis, (lo, hi, weight) in enumerate(zip(grid.lo, grid.hi, grid.weight)):
        w = weight.astype(np.float32).reshape([-1 if a == axis else 1 for a in range(3)])
        out = np.take(out, lo, axis=axis) * (1.0 - w) + np.take(out, hi, axis=axis) * w
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _lerp_plane(src, z, y0, y1, ty, x0, x1, tx):
    """Bilinear in plane z; a zero weight skips its neighbour (so identity grids copy exactly)."""
    v = (1.0 - tx) * src[z, y0, x0]
    if tx != 0.0:
        v += tx * src[z, y0, x1]
    if ty != 0.0:
        w = (1.0 - tx) * src[z, y1, x0]
        if tx != 0.0:
            w += tx * src[z, y1, x1]
        v = (1.0 - ty) * v + ty * w
    return v


@numba.njit(cache=True, nogil=True, inline="always")
def _lerp(src, z0, z1, tz, y0, y1, ty, x0, x1, tx):
    v = _lerp_plane(src, z0, y0, y1, ty, x0, x1, tx)
    if tz != 0.0:
        v = (1.0 - tz) * v + tz * _lerp_plane(src, z1, y0, y1, ty, x0, x1, tx)
    return v


@numba.njit(parallel=True, cache=True, nogil=True)
def _gather(src, src_z0, lz, hz, wz, ly, hy, wy, lx, hx, wx, centres, out):
    size = out.shape[2]
    half = size // 2
    nz, ny, nx = lz.shape[0], ly.shape[0], lx.shape[0]
    n_vox = size * size * size
    for i in numba.prange(centres.shape[0]):
        cz, cy, cx = centres[i, 0], centres[i, 1], centres[i, 2]
        rows, cols = np.empty(size, np.int64), np.empty(size, np.int64)  # reflected once per patch, not per voxel
        for c in range(size):
            rows[c], cols[c] = reflect(cy - half + c, ny), reflect(cx - half + c, nx)
        total = 0.0
        for a in range(size):
            k = reflect(cz - half + a, nz)
            z0, z1, tz = lz[k] - src_z0, hz[k] - src_z0, wz[k]
            for b in range(size):
                j = rows[b]
                y0, y1, ty = ly[j], hy[j], wy[j]
                for c in range(size):
                    m = cols[c]
                    v = np.float32(_lerp(src, z0, z1, tz, y0, y1, ty, lx[m], hx[m], wx[m]))
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
    src: np.ndarray, *, centres: np.ndarray, out: np.ndarray, grid: Grid | None = None, src_z0: int = 0
) -> np.ndarray:
    """Fill out[:len(centres)] with normalised patches centred on `centres` (working-grid voxels, int).

    `src` holds native planes src_z0.. of the volume whose working grid is `grid` (default: src is the whole
    volume and its own grid); every native plane the patches read must lie in `src` (Grid.native_rows).
    The patch of size P covers centre - P//2 .. centre + P - P//2 - 1 on each axis.
    """
    grid = working_grid(src.shape) if grid is None else grid
    n = len(centres)
    if out.ndim != 5 or out.shape[0] < n or out.shape[1] != 1 or len(set(out.shape[2:])) != 1:
        raise ValueError(f"out must be (>= {n}, 1, P, P, P), got {out.shape}")
    if out.dtype != np.float32:
        raise ValueError(f"out must be float32, got {out.dtype}")
    if any(int(grid.hi[axis].max()) >= src.shape[axis] for axis in (1, 2)):
        raise ValueError(f"the grid reads past planes of shape {src.shape[1:]}")
    if n:
        size, centres = out.shape[2], np.ascontiguousarray(centres, dtype=np.int64)
        first, last = grid.native_rows(int(centres[:, 0].min()) - size // 2, int(centres[:, 0].max()) + size - size // 2)
        if first < src_z0 or last > src_z0 + src.shape[0]:
            raise ValueError(f"patches read planes {first}..{last - 1}, src holds {src_z0}..{src_z0 + src.shape[0] - 1}")
    tables = [t for axis in range(3) for t in (grid.lo[axis], grid.hi[axis], grid.weight[axis])]
    _gather(src, src_z0, *tables, np.ascontiguousarray(centres, dtype=np.int64).reshape(-1, 3), out)
    return out[:n]
