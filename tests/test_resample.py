"""Resampling to the working scale keeps images and points aligned."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clarity_fast.kernels.gather import gather_patches, resample_volume, working_grid
from clarity_fast.resample import points_from, points_to
from clarity_fast.settings import WORKING_CELL_VOXELS, Scale


def test_points_round_trip():
    p = np.random.default_rng(0).uniform(0, 50, size=(20, 3))
    f = (2.25, 1.2, 0.8)
    np.testing.assert_allclose(points_from(points_to(p, factors=f), factors=f), p)


def test_a_bright_voxel_lands_where_its_point_maps():
    v = np.zeros((12, 30, 30), np.uint16)
    v[6, 14, 9] = 1000
    f = (2.0, 1.5, 1.5)
    out = resample_volume(v, grid=working_grid(v.shape, factors=f))
    assert out.shape == (24, 45, 45)
    peak = np.array(np.unravel_index(out.argmax(), out.shape))
    assert np.all(np.abs(peak - points_to(np.array([6, 14, 9]), factors=f)) <= 0.75)


def test_identity_factors_return_the_input():
    v = np.ones((3, 4, 5), np.uint16)
    assert resample_volume(v, grid=working_grid(v.shape)) is v


@pytest.mark.parametrize("factors", [(0.25, 1.0, 1.0), (2.25, 1.2, 0.8), (1.0, 0.5, 2.0)])
def test_the_resampled_volume_holds_the_values_the_gatherer_cuts(factors):
    """The baselines filter the resampled volume, the CNN sees gathered patches: both on one grid (the volume once
    came from scipy's zoom, whose grid differs from the patches' and points' by up to half a working voxel)."""
    v = np.random.default_rng(1).random((12, 17, 23)).astype(np.float32)
    grid = working_grid(v.shape, factors=factors)
    whole = resample_volume(v, grid=grid)
    assert whole.shape == grid.shape
    size = 2
    centres = np.array([[z, y, x] for z in range(1, grid.shape[0] - 1) for y in range(1, grid.shape[1] - 1, 3) for x in range(1, grid.shape[2] - 1, 4)])
    patches = gather_patches(v, centres=centres, out=np.empty((len(centres), 1, size, size, size), np.float32), grid=grid)
    for (z, y, x), patch in zip(centres, patches):
        box = whole[z - 1 : z + 1, y - 1 : y + 1, x - 1 : x + 1]
        np.testing.assert_allclose(patch[0], (box - box.mean()) / box.std(), atol=2e-4)


def test_working_scale_spans_the_cell():
    s = Scale(voxel_size=(6.0, 1.62, 1.62), cell_diameter=8.0)
    assert np.allclose(s.working.cell_diameter_voxels, WORKING_CELL_VOXELS)
    assert Scale(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0).to_working == (1.0, 1.0, 1.0)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 60)] * 3),
    factors=st.tuples(*[st.sampled_from([1.0, 0.5, 0.75, 0.8, 1.25, 1.325, 0.865, 2.0, 1 / 3])] * 3),
    cut=st.tuples(*[st.tuples(st.floats(0, 1), st.floats(0, 1))] * 3),
)
def test_a_blocks_grid_is_the_whole_volumes_cut_to_it(shape, factors, cut):
    """Its working voxels sample the native points the whole volume's do (shifted by the block's start), and its
    points map to the whole's working voxels less the block's first; at the volume's far end both grids end alike."""
    block = tuple((int(a * (n - 1)), max(int(a * (n - 1)) + 1, int(b * n))) for (a, b), n in zip(cut, shape))
    whole = working_grid(shape, factors=factors)
    try:
        part = working_grid(shape, factors=factors, block=block)
    except ValueError:  # a block thinner than one working voxel's samples
        assert any(not np.any((lo >= a) & (hi < b)) for lo, hi, (a, b) in zip(whole.lo, whole.hi, block))
        return
    for axis, (a, b) in enumerate(block):
        w0 = part.first[axis]
        n = len(part.lo[axis])
        np.testing.assert_array_equal(part.lo[axis] + a, whole.lo[axis][w0 : w0 + n])
        np.testing.assert_array_equal(part.hi[axis] + a, whole.hi[axis][w0 : w0 + n])
        np.testing.assert_array_equal(part.weight[axis], whole.weight[axis][w0 : w0 + n])
        assert (w0 + n == len(whole.lo[axis])) == (whole.hi[axis][-1] < b)  # so always where the block reaches the far end
    points = np.array([[a for a, _ in block], [b - 1 for _, b in block]], dtype=float)
    np.testing.assert_allclose(part.to_working(points - part.origin), whole.to_working(points) - part.first, atol=1e-9)
    np.testing.assert_allclose(part.to_native(part.to_working(points - part.origin)), points - part.origin, atol=1e-9)
    inside = np.stack([np.rint(np.linspace(a, b - 1, 7)) for a, b in block], axis=1)  # candidates: whole voxels
    n = np.array([len(lo) for lo in part.lo])
    np.testing.assert_array_equal(part.nearest(inside - part.origin), np.clip(whole.nearest(inside) - part.first, 0, n - 1))
