"""Cut the P×P×P patch around each candidate into a preallocated (N, 1, P, P, P) float32 batch, compiled.

Patches are cut on the model's working grid: each working voxel is linearly interpolated from the native
voxels around it (a Grid says which, along each axis), so a volume of any voxel size is resampled only
where patches need it, slab by slab, with no whole-volume copy. On an identity grid this is a plain copy (its own kernel);
elsewhere each native row a patch reads is interpolated once (separably: x, then y, then z).
Patches reach past the volume's faces by reflection (scipy 'reflect') on the working grid, and each is
normalised to zero mean and unit standard deviation, the input the network was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np

from clarity_fast.kernels.filters import reflect, reflected_rows
from clarity_fast.resample import points_from, points_to, resampled_shape

# A patch whose spread is within float32 rounding of its level is flat and stays all zeros, instead of its rounding
# being blown up to unit variance; relative, so that a float volume's units do not matter (a fixed 1e-6 flattened
# every patch of a volume in units of 1e-6). Integer data never come near it: their patches vary by a count or not at all.
STD_FLOOR = 1e-7  # of the patch's mean magnitude
TINY = 1e-30  # ... and at least this, so that a patch of zeros is not divided by zero


def to_voxels(points: np.ndarray, *, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest voxel indices inside a volume of `shape`."""
    return np.clip(np.rint(points).astype(np.int64), 0, np.asarray(shape) - 1).reshape(-1, 3)


@dataclass(frozen=True)
class Grid:
    """Per axis (z, y, x) and per working index: the native voxels below and above it and the weight of the
    one above (0 on an identity axis). Working voxel w sits at native coordinate (w + 0.5) / f - 0.5,
    clamped to the volume (scipy 'nearest'), as resample.points_to maps points; on a block's grid (the whole
    volume's cut to a block) at (w + first + 0.5) / f - 0.5 - origin, in the block's voxels (to_native)."""

    lo: tuple[np.ndarray, np.ndarray, np.ndarray]
    hi: tuple[np.ndarray, np.ndarray, np.ndarray]
    weight: tuple[np.ndarray, np.ndarray, np.ndarray]
    factors: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[int, int, int] = (0, 0, 0)  # a block's: the whole volume's native voxel where its native voxels start
    first: tuple[int, int, int] = (0, 0, 0)  # ... and the whole volume's working voxel where its working voxels start

    def to_working(self, points: np.ndarray) -> np.ndarray:
        """Native voxel coordinates (of the block, for a block's grid) -> this grid's working voxel coordinates."""
        return points_to(np.asarray(points, dtype=float) + self.origin, factors=self.factors) - self.first

    def nearest(self, points: np.ndarray) -> np.ndarray:
        """Native voxel coordinates -> the nearest working voxels inside the grid: where a candidate's patch is cut,
        in detect and in training alike. Rounded in the whole volume's working voxels, so that a block's patches are
        the whole volume's: at a zoom of 2 every native voxel falls half-way between two working ones, and rounding
        half to even after taking off an odd `first` would cut them one voxel over."""
        whole = np.rint(points_to(np.asarray(points, dtype=float) + self.origin, factors=self.factors))
        return to_voxels(whole - self.first, shape=self.shape)

    def clamped(self, points: np.ndarray) -> np.ndarray:
        """Working voxel coordinates held between the grid's first and last samples of the volume, so that a cell at a
        face is never reported beyond it (working voxel 0 maps beyond native voxel 0 where f > 1; where f < 1, the
        first sample lies within half a working voxel of the face)."""
        first_sample = np.array([lo[0] + w[0] for lo, w in zip(self.lo, self.weight)])
        last_sample = np.array([lo[-1] + w[-1] for lo, w in zip(self.lo, self.weight)])
        lower = np.maximum(self.to_working(first_sample), 0)
        upper = np.maximum(np.minimum(self.to_working(last_sample), np.asarray(self.shape) - 1), lower)
        return np.clip(points, lower, upper)

    def to_native(self, points: np.ndarray) -> np.ndarray:
        """This grid's working voxel coordinates -> native voxel coordinates (of the block, for a block's grid)."""
        return points_from(np.asarray(points, dtype=float) + self.first, factors=self.factors) - self.origin

    @cached_property
    def identity(self) -> bool:
        """Whether working voxels are the native ones (patches are then plain copies)."""
        return all(np.array_equal(lo, np.arange(len(lo))) and not np.any(w) for lo, w in zip(self.lo, self.weight))

    @property
    def shape(self) -> tuple[int, int, int]:
        """The volume's shape on the working grid."""
        return tuple(len(a) for a in self.lo)

    def native_rows(self, start: int, stop: int) -> tuple[int, int]:
        """Native planes [a, b) that working planes [start, stop) (reflected into the volume) read."""
        n = self.shape[0]
        rows = np.asarray([reflect(w, n) for w in range(start, stop)], dtype=np.int64)
        return int(self.lo[0][rows].min()), int(self.hi[0][rows].max()) + 1


def working_grid(
    native_shape: tuple[int, int, int], *, factors: tuple[float, float, float] = (1.0, 1.0, 1.0), block: tuple[tuple[int, int], ...] | None = None
) -> Grid:
    """The working grid of a volume of `native_shape` zoomed by `factors` (1: the native voxels themselves). With
    `block` (start, end per axis, end exclusive), the part of it that samples the block only, in the block's voxels:
    a block read out of a volume is sampled where the volume is, and ends where it ends, whatever the factors."""
    lo, hi, weight = [], [], []
    for n, f, m in zip(native_shape, factors, resampled_shape(native_shape, factors=factors)):
        if f == 1.0:
            w = np.arange(n, dtype=np.int64)
            lo.append(w), hi.append(w), weight.append(np.zeros(n))
            continue
        u = np.clip((np.arange(m) + 0.5) / f - 0.5, 0, n - 1)
        below = np.floor(u).astype(np.int64)
        lo.append(below), hi.append(np.minimum(below + 1, n - 1)), weight.append(u - below)
    if block is None:
        return Grid(tuple(lo), tuple(hi), tuple(weight), factors=tuple(factors))
    cuts = [np.flatnonzero((low >= a) & (high < b)) for low, high, (a, b) in zip(lo, hi, block)]  # contiguous: lo, hi rise
    if any(not len(c) for c in cuts):
        raise ValueError(f"the block {block} holds no working voxel")
    return Grid(
        tuple(low[c[0] : c[-1] + 1] - a for low, c, (a, _) in zip(lo, cuts, block)),
        tuple(high[c[0] : c[-1] + 1] - a for high, c, (a, _) in zip(hi, cuts, block)),
        tuple(w[c[0] : c[-1] + 1] for w, c in zip(weight, cuts)),
        factors=tuple(factors), origin=tuple(int(a) for a, _ in block), first=tuple(int(c[0]) for c in cuts),
    )


def resample_volume(volume: np.ndarray, *, grid: Grid) -> np.ndarray:
    """The whole volume on the working grid (trilinear, float32; the input itself on an identity grid), sampled
    where the gatherer samples patches and points_to maps points: what the baselines' filters run on."""
    if grid.shape == volume.shape and grid.identity:
        return volume
    out = np.asarray(volume, dtype=np.float32)
    for axis, (lo, hi, weight) in enumerate(zip(grid.lo, grid.hi, grid.weight)):
        w = weight.astype(np.float32).reshape([-1 if a == axis else 1 for a in range(3)])
        out = np.take(out, lo, axis=axis) * (1.0 - w) + np.take(out, hi, axis=axis) * w
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _normalise(patch, total):
    """Zero mean, unit standard deviation, in place (two passes: the variance of values near their mean)."""
    n_vox = patch.size
    mean = total / n_vox
    var = 0.0
    for v in patch.ravel():
        dv = v - mean
        var += dv * dv
    scale = 1.0 / max(np.sqrt(var / n_vox), STD_FLOOR * abs(mean), TINY)
    for a in range(patch.shape[0]):
        for b in range(patch.shape[1]):
            for c in range(patch.shape[2]):
                patch[a, b, c] = np.float32((patch[a, b, c] - mean) * scale)


@numba.njit(cache=True, nogil=True)
def _needed(lo, hi, weight, index, span_lo, span):
    """Native positions that working positions `index` read, as a map from position - span_lo to a compact slot
    (-1 where unused), and the positions in slot order."""
    slot = np.full(span, -1, np.int64)
    used = np.empty(2 * index.shape[0], np.int64)
    n = 0
    for k in index:
        if slot[lo[k] - span_lo] < 0:
            slot[lo[k] - span_lo] = n
            used[n] = lo[k]
            n += 1
        if weight[k] != 0.0 and slot[hi[k] - span_lo] < 0:  # a zero weight never reads its upper neighbour
            slot[hi[k] - span_lo] = n
            used[n] = hi[k]
            n += 1
    return slot, used[:n]


@numba.njit(parallel=True, cache=True, nogil=True)
def _gather(src, src_z0, lz, hz, wz, ly, hy, wy, lx, hx, wx, centres, out):
    """Separably: each native row the patch reads is interpolated along x once, those rows along y, then z
    (the same arithmetic, in the same order, as interpolating each working voxel from its eight neighbours)."""
    size = out.shape[2]
    half = size // 2
    nz, ny, nx = lz.shape[0], ly.shape[0], lx.shape[0]
    for i in numba.prange(centres.shape[0]):  # each patch allocates its own small tables: threads share nothing
        planes = reflected_rows(centres[i, 0] - half, size, nz)
        rows, cols = reflected_rows(centres[i, 1] - half, size, ny), reflected_rows(centres[i, 2] - half, size, nx)
        x0, x1, tx = lx[cols], hx[cols], wx[cols]
        z_lo, y_lo = lz[planes].min(), ly[rows].min()
        z_slot, z_used = _needed(lz, hz, wz, planes, z_lo, hz[planes].max() - z_lo + 1)
        y_slot, y_used = _needed(ly, hy, wy, rows, y_lo, hy[rows].max() - y_lo + 1)
        along_x = np.empty((z_used.shape[0], y_used.shape[0], size))
        for p in range(z_used.shape[0]):
            plane = src[z_used[p] - src_z0]
            for q in range(y_used.shape[0]):
                row = plane[y_used[q]]
                for c in range(size):
                    v = (1.0 - tx[c]) * row[x0[c]]
                    if tx[c] != 0.0:
                        v += tx[c] * row[x1[c]]
                    along_x[p, q, c] = v
        along_y = np.empty((z_used.shape[0], size, size))
        for b in range(size):
            j = rows[b]
            q0, q1, ty = y_slot[ly[j] - y_lo], y_slot[hy[j] - y_lo], wy[j]
            for p in range(z_used.shape[0]):
                for c in range(size):
                    v = along_x[p, q0, c]
                    if ty != 0.0:
                        v = (1.0 - ty) * v + ty * along_x[p, q1, c]
                    along_y[p, b, c] = v
        patch = out[i, 0]
        total = 0.0
        for a in range(size):
            k = planes[a]
            p0, p1, tz = z_slot[lz[k] - z_lo], z_slot[hz[k] - z_lo], wz[k]
            for b in range(size):
                for c in range(size):
                    v = along_y[p0, b, c]
                    if tz != 0.0:
                        v = (1.0 - tz) * v + tz * along_y[p1, b, c]
                    v = np.float32(v)
                    patch[a, b, c] = v
                    total += v
        _normalise(patch, total)


@numba.njit(parallel=True, cache=True, nogil=True)
def _gather_native(src, src_z0, nz, centres, out):
    """_gather on an identity grid: a plain copy, without the interpolation tables (2-3x faster)."""
    size = out.shape[2]
    half = size // 2
    ny, nx = src.shape[1], src.shape[2]
    for i in numba.prange(centres.shape[0]):
        planes = reflected_rows(centres[i, 0] - half, size, nz)
        rows, cols = reflected_rows(centres[i, 1] - half, size, ny), reflected_rows(centres[i, 2] - half, size, nx)
        patch = out[i, 0]
        total = 0.0
        for a in range(size):
            plane = src[planes[a] - src_z0]
            for b in range(size):
                row = plane[rows[b]]
                for c in range(size):
                    v = np.float32(row[cols[c]])
                    patch[a, b, c] = v
                    total += v
        _normalise(patch, total)


def gather_patches(
    src: np.ndarray, *, centres: np.ndarray, out: np.ndarray, grid: Grid | None = None, src_z0: int = 0
) -> np.ndarray:
    """Fill out[:len(centres)] with normalised patches centred on `centres` (working-grid voxels, int).

    `src` holds native planes src_z0.. of the volume whose working grid is `grid` (default: src is the whole
    volume and its own grid); every native plane the patches read must lie in `src` (Grid.native_rows).
    The patch of size P covers centre - P//2 .. centre + P - P//2 - 1 on each axis.
    """
    grid = working_grid(src.shape) if grid is None else grid
    centres = np.ascontiguousarray(centres, dtype=np.int64).reshape(-1, 3)
    n = len(centres)
    if out.ndim != 5 or out.shape[0] < n or out.shape[1] != 1 or len(set(out.shape[2:])) != 1:
        raise ValueError(f"out must be (>= {n}, 1, P, P, P), got {out.shape}")
    if out.dtype != np.float32:
        raise ValueError(f"out must be float32, got {out.dtype}")
    if any(int(grid.hi[axis].max()) >= src.shape[axis] for axis in (1, 2)):
        raise ValueError(f"the grid reads past planes of shape {src.shape[1:]}")
    if n:
        size = out.shape[2]
        first, last = grid.native_rows(int(centres[:, 0].min()) - size // 2, int(centres[:, 0].max()) + size - size // 2)
        if first < src_z0 or last > src_z0 + src.shape[0]:
            raise ValueError(f"patches read planes {first}..{last - 1}, src holds {src_z0}..{src_z0 + src.shape[0] - 1}")
    if grid.identity and grid.shape[1:] == src.shape[1:]:
        _gather_native(src, src_z0, grid.shape[0], centres, out)
    else:
        tables = [t for axis in range(3) for t in (grid.lo[axis], grid.hi[axis], grid.weight[axis])]
        _gather(src, src_z0, *tables, centres, out)
    return out[:n]
