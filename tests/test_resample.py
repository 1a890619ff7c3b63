"""Resampling to the working scale keeps images and points aligned."""

import numpy as np
import pytest

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
