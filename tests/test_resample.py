"""Resampling to the working scale keeps images and points aligned."""

import numpy as np

from clarity_fast.resample import points_from, points_to, resample
from clarity_fast.settings import WORKING_CELL_VOXELS, Scale


def test_points_round_trip():
    p = np.random.default_rng(0).uniform(0, 50, size=(20, 3))
    f = (2.25, 1.2, 0.8)
    np.testing.assert_allclose(points_from(points_to(p, factors=f), factors=f), p)


def test_a_bright_voxel_lands_where_its_point_maps():
    v = np.zeros((12, 30, 30), np.uint16)
    v[6, 14, 9] = 1000
    f = (2.0, 1.5, 1.5)
    out = resample(v, factors=f)
    assert out.shape == (24, 45, 45)
    peak = np.array(np.unravel_index(out.argmax(), out.shape))
    assert np.all(np.abs(peak - points_to(np.array([6, 14, 9]), factors=f)) <= 0.75)


def test_identity_factors_return_the_input():
    v = np.ones((3, 4, 5), np.uint16)
    assert resample(v, factors=(1.0, 1.0, 1.0)) is v


def test_working_scale_spans_the_cell():
    s = Scale(voxel_size=(6.0, 1.62, 1.62), cell_diameter=8.0)
    assert np.allclose(s.working.cell_diameter_voxels, WORKING_CELL_VOXELS)
    assert Scale(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0).to_working == (1.0, 1.0, 1.0)
