"""Rasterise a scene's objects into a range of z-planes, each object only inside its own bounding box.

Voxel (i, j, k) sits at (i, j, k) * voxel_size µm, so a truth centre in voxels is its µm position divided by
the voxel size. Rendering a range of planes gives exactly the planes of rendering the whole volume.
"""

from __future__ import annotations

import numpy as np

from clarity_fast.simulate.scene import Capsules, Ellipsoids, Scene

EDGE_UM = 0.6  # width of the soft edge of every object


def _box(lo_um: np.ndarray, hi_um: np.ndarray, voxel: np.ndarray, z0: int, z1: int, yx: tuple[int, int]):
    """Voxel index ranges (clipped to planes z0..z1 and the image) that cover [lo_um, hi_um], or None."""
    lo = np.maximum(np.floor(lo_um / voxel).astype(int), (z0, 0, 0))
    hi = np.minimum(np.ceil(hi_um / voxel).astype(int) + 1, (z1, *yx))
    if np.any(hi <= lo):
        return None
    return lo, hi


def _near_planes(z_lo_um: np.ndarray, z_hi_um: np.ndarray, voxel_z: float, z0: int, z1: int) -> np.ndarray:
    """Indices of objects whose z-extent reaches planes z0..z1."""
    return np.flatnonzero((z_hi_um >= (z0 - 1) * voxel_z) & (z_lo_um <= z1 * voxel_z))


def _grid(lo: np.ndarray, hi: np.ndarray, voxel: np.ndarray) -> np.ndarray:
    """µm coordinates (nz, ny, nx, 3) of the voxels in a box."""
    axes = [np.arange(a, b) * v for a, b, v in zip(lo, hi, voxel)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def _sigmoid_edge(distance_outside: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(np.clip(distance_outside / (EDGE_UM / 4), -40, 40)))


def _paint_ellipsoids(out: np.ndarray, objs: Ellipsoids, voxel: np.ndarray, z0: int, *, add: bool) -> None:
    z1 = z0 + out.shape[0]
    yx = out.shape[1:]
    reach = objs.semi_axes.max(axis=1) + 2 * EDGE_UM
    for i in _near_planes(objs.centre[:, 0] - reach, objs.centre[:, 0] + reach, voxel[0], z0, z1):
        box = _box(objs.centre[i] - reach[i], objs.centre[i] + reach[i], voxel, z0, z1, yx)
        if box is None:
            continue
        lo, hi = box
        body = (_grid(lo, hi, voxel) - objs.centre[i]) @ objs.rotation[i]
        semi = objs.semi_axes[i]
        r = np.sqrt(np.sum((body / semi) ** 2, axis=-1))
        # Distance outside the surface, approximated along the radial direction in µm.
        value = objs.contrast[i] * _sigmoid_edge((r - 1.0) * semi.min())
        if objs.hollow[i] > 0:
            r_nucleus = np.sqrt(np.sum((body / (0.55 * semi)) ** 2, axis=-1))
            value *= 1.0 - objs.hollow[i] * _sigmoid_edge((r_nucleus - 1.0) * 0.55 * semi.min())
        view = out[lo[0] - z0 : hi[0] - z0, lo[1] : hi[1], lo[2] : hi[2]]
        if add:
            view += value
        else:
            np.maximum(view, value, out=view)


def _paint_capsules(out: np.ndarray, objs: Capsules, voxel: np.ndarray, z0: int) -> None:
    z1 = z0 + out.shape[0]
    yx = out.shape[1:]
    reach_all = objs.radius + 2 * EDGE_UM
    z_lo = np.minimum(objs.start[:, 0], objs.end[:, 0]) - reach_all
    z_hi = np.maximum(objs.start[:, 0], objs.end[:, 0]) + reach_all
    for i in _near_planes(z_lo, z_hi, voxel[0], z0, z1):
        a, b, radius = objs.start[i], objs.end[i], objs.radius[i]
        reach = radius + 2 * EDGE_UM
        box = _box(np.minimum(a, b) - reach, np.maximum(a, b) + reach, voxel, z0, z1, yx)
        if box is None:
            continue
        lo, hi = box
        p = _grid(lo, hi, voxel) - a
        ab = b - a
        t = np.clip(p @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        dist = np.linalg.norm(p - t[..., None] * ab, axis=-1)
        if objs.wall[i]:
            value = objs.contrast[i] * np.exp(-(((dist - radius) / 0.9) ** 2))
        else:
            value = objs.contrast[i] * _sigmoid_edge(dist - radius)
        view = out[lo[0] - z0 : hi[0] - z0, lo[1] : hi[1], lo[2] : hi[2]]
        np.maximum(view, value, out=view)


def render_foreground(scene: Scene, *, voxel_size: tuple[float, float, float], shape_yx: tuple[int, int], z0: int, z1: int) -> np.ndarray:
    """Labelled and clutter objects in planes z0..z1 (float32, in units of the mean background), before blur."""
    voxel = np.asarray(voxel_size, dtype=float)
    out = np.zeros((z1 - z0, *shape_yx), dtype=np.float32)
    _paint_ellipsoids(out, scene.cells, voxel, z0, add=False)
    _paint_ellipsoids(out, scene.clutter, voxel, z0, add=False)
    _paint_capsules(out, scene.tubes, voxel, z0)
    _paint_ellipsoids(out, scene.haze, voxel, z0, add=True)
    return out
