"""Centring detections on their cells (kernels.centre): the compiled kernel against the numpy reference, what it
finds, and where detect and training use it."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter

from clarity_fast.detection import cell_positions, centred
from clarity_fast.kernels import reference
from clarity_fast.kernels.centre import BACKGROUND_PERCENTILE, STEPS, WEIGHT_SD, centre_shifts
from clarity_fast.kernels.gather import working_grid

DIAMETER = (3.0, 6.0, 6.0)  # the built-in model's cells, in its patch voxels
PATCH = 12


def cell(offset, *, size: int = PATCH, diameter=DIAMETER, length: float = 1.0) -> np.ndarray:
    """A blurred ball of `diameter` (stretched `length` times along x) centred `offset` voxels from the patch centre."""
    grids = np.meshgrid(*[np.arange(size) - size // 2 - o for o in offset], indexing="ij")
    semi = np.array(diameter) / 2 * [1.0, 1.0, length]
    ball = sum((g / s) ** 2 for g, s in zip(grids, semi)) <= 1.0
    return gaussian_filter(ball.astype(float), (0.5, 0.8, 0.8))


def shifted(offsets, **kwargs) -> np.ndarray:
    return centre_shifts(np.stack([cell(o, **kwargs) for o in offsets])[:, None].astype(np.float32), diameter=DIAMETER)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), noise=st.sampled_from([0.0, 0.3, 1.0]), integer=st.booleans(),
       diameter=st.sampled_from([DIAMETER, (6.0, 6.0, 6.0), (2.0, 4.0, 5.0)]))
def test_the_kernel_matches_the_reference(seed, noise, integer, diameter):
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-1, 1, size=(12, 3)) * np.array(diameter) / 3
    patches = np.stack([cell(o, diameter=diameter) for o in offsets]) + rng.normal(0.0, noise, (12, PATCH, PATCH, PATCH))
    patches = (np.round(patches * 4) if integer else patches)[:, None].astype(np.float32)  # ties in the background
    expected = reference.centre_shifts(patches, diameter=diameter, steps=STEPS, weight_sd=WEIGHT_SD, percentile=BACKGROUND_PERCENTILE)
    np.testing.assert_allclose(centre_shifts(patches, diameter=diameter), expected, atol=1e-9)


def test_goes_most_of_the_way_to_the_centre_of_a_cell_off_the_patch_centre():
    """Three steps from the patch centre, weighted around each estimate, recover about four fifths of an offset."""
    offsets = np.array([(0.5, 1.5, -1.0), (-0.7, -2.0, 0.5), (0.3, 0.4, 2.2), (0.0, 2.5, 0.0)])
    error = np.linalg.norm(shifted(offsets) - offsets, axis=1)
    assert np.all(error < 0.3 * np.linalg.norm(offsets, axis=1))
    assert np.abs(shifted([(0.0, 0.0, 0.0)])).max() < 1e-9  # a centred cell stays


def test_both_ends_of_a_long_cell_move_towards_its_middle():
    """The prefilter can propose a long cell twice, near its ends; centred, the two come closer than the merge reach."""
    ends = np.array([(0.0, 0.0, 2.5), (0.0, 0.0, -2.5)])
    moved = shifted(ends, length=1.8)
    assert np.all(np.abs(ends[:, 2] - moved[:, 2]) < np.abs(ends[:, 2]))  # both towards the middle
    assert np.abs((ends[0, 2] - moved[0, 2]) - (ends[1, 2] - moved[1, 2])) < 3.0  # 5 voxels apart before


def test_a_flat_patch_or_a_brighter_thing_beyond_the_cell_gives_no_estimate():
    flat = np.zeros((1, 1, PATCH, PATCH, PATCH), np.float32)
    assert np.all(np.isnan(centre_shifts(flat, diameter=DIAMETER)))
    corner = np.zeros((PATCH, PATCH, PATCH))
    corner[-3:, -3:, -3:] = 10.0  # nothing in the cell's sphere, everything bright at a corner
    assert np.all(np.isnan(centre_shifts(corner[None, None].astype(np.float32), diameter=DIAMETER)))
    assert centre_shifts(np.zeros((0, 1, PATCH, PATCH, PATCH), np.float32), diameter=DIAMETER).shape == (0, 3)


def test_centred_positions_do_not_depend_on_the_batch_and_stay_in_the_volume():
    rng = np.random.default_rng(3)
    volume = rng.normal(100, 5, (20, 40, 40)).astype(np.float32)
    for z, y, x in [(0, 10, 10), (10, 20, 20), (19, 39, 5)]:  # two at the volume's faces
        volume[max(z - 1, 0) : z + 2, max(y - 3, 0) : y + 3, max(x - 3, 0) : x + 3] += 60
    centres = np.array([(0, 11, 9), (10, 21, 19), (19, 39, 6), (5, 5, 30)])
    grid = working_grid(volume.shape)
    whole = centred(volume, zyx=centres, patch=PATCH, diameter=DIAMETER, grid=grid)
    assert np.array_equal(whole, centred(volume, zyx=centres, patch=PATCH, diameter=DIAMETER, grid=grid, batch=3))
    assert np.all(whole >= 0) and np.all(whole <= np.array(volume.shape) - 1)
    assert np.linalg.norm(whole[1] - (10, 20, 20) + (0, 0.5, 0.5)) < np.linalg.norm(centres[1] - (10, 20, 20) + (0, 0.5, 0.5))


def test_a_cell_at_a_face_is_reported_on_it_not_beyond_on_a_resampled_grid():
    """Working voxel 0 lies half a working voxel beyond native voxel 0 where the grid is finer than the file."""
    volume = np.random.default_rng(4).normal(100, 5, (12, 40, 40)).astype(np.float32)
    volume[0, 18:24, 18:24] += 80  # a cell in the first plane: its centre lies beyond the first working voxels
    grid = working_grid(volume.shape, factors=(2.5, 1.0, 1.0))
    native = centred(volume, zyx=np.array([[0.0, 21.0, 21.0], [11.0, 5.0, 5.0]]), patch=PATCH, diameter=DIAMETER, grid=grid)
    assert np.all(native >= 0) and np.all(native <= np.array(volume.shape) - 1)
    assert native[0, 0] == 0.0  # pulled to the face, held on it


def test_a_candidate_centring_cannot_place_keeps_its_own_position_not_the_working_grids():
    """Where centring gives no estimate (NaN: a flat patch), the native peak is reported, not its voxel on a coarser
    working grid; an estimate of no shift at all is the cell's centre like any other."""
    grid = working_grid((20, 40, 40), factors=(0.5, 0.5, 0.5))
    zyx = np.array([[10.0, 11.0, 12.0], [3.0, 7.0, 9.0], [5.0, 5.0, 5.0]])
    centres = grid.nearest(zyx)
    assert not np.allclose(grid.to_native(centres[:2]), zyx[:2])  # the working grid alone would move them
    shifts = np.array([[np.nan] * 3, [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
    at = cell_positions(zyx, centres=centres, shifts=shifts, grid=grid)
    assert np.array_equal(at[0], zyx[0]) and np.allclose(at[1:], grid.to_native(centres[1:] + shifts[1:]))


def test_clamping_keeps_a_one_voxel_axis_on_its_voxel():
    grid = working_grid((1, 30, 30), factors=(1.2, 1.0, 1.0))
    points = grid.clamped(np.array([[-1.0, 3.0, 3.0], [5.0, 3.0, 3.0]]))
    assert np.allclose(grid.to_native(points)[:, 0], 0.0)
