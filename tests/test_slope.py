"""The slope test (kernels.slope): the compiled kernel against the numpy reference, and what it leaves out."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter

from clarity_fast.kernels import reference
from clarity_fast.kernels.slope import SlopeTest

RADIUS = (1.5, 3.0, 3.0)  # the built-in model's cells, in its patch voxels
PATCH = 12
TEST = SlopeTest.for_patch(patch=PATCH, radius=RADIUS)


def blob(centre: tuple[float, float, float], *, size: int = PATCH, radius=RADIUS) -> np.ndarray:
    grids = np.meshgrid(*[(np.arange(size) - c) / r for c, r in zip(centre, radius)], indexing="ij")
    return np.exp(-sum(g * g for g in grids))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), integer=st.booleans(), smooth=st.sampled_from([0.0, 1.0, 2.5]),
       radius=st.sampled_from([RADIUS, (2.0, 2.0, 2.0), (1.0, 2.5, 2.5)]))
def test_the_kernel_matches_the_reference(seed, integer, smooth, radius):
    rng = np.random.default_rng(seed)
    patches = rng.normal(size=(16, 1, PATCH, PATCH, PATCH))
    if smooth:
        patches = gaussian_filter(patches, (0, 0, smooth, smooth, smooth))
    patches += rng.uniform(-1, 1, size=(16, 1, 1, 1, 1)) * np.linspace(-1, 1, PATCH)[None, None, None, None, :]  # some slopes
    patches = np.round(patches * 3) if integer else patches  # ties
    test = SlopeTest.for_patch(patch=PATCH, radius=radius)
    expected = reference.on_slope(patches.astype(np.float32), radius=radius)
    np.testing.assert_array_equal(test.on_slope(patches.astype(np.float32)), expected)


def test_a_cell_is_not_on_a_slope_even_beside_a_brighter_one():
    alone = blob((6, 6, 6))
    beside = alone + 1.5 * blob((6, 6, 12))  # touching, brighter
    crowded = alone + sum(blob((6, 6 + dy, 6 + dx)) for dy, dx in ((0, 6), (6, 0)))  # two neighbours
    assert not TEST.on_slope(np.stack([alone, beside, crowded]).astype(np.float32)).any()


def test_the_bright_side_of_an_edge_is_on_a_slope():
    """A maximum just inside a bright region's edge is no brighter than the region beside it."""
    x = np.arange(PATCH)
    tissue = gaussian_filter(np.broadcast_to((x < 9).astype(float), (PATCH, PATCH, PATCH)), 1.0)
    noisy = tissue + np.random.default_rng(0).normal(0.0, 0.02, tissue.shape)
    assert TEST.on_slope(np.stack([tissue, noisy]).astype(np.float32)).all()


def test_a_flat_patch_and_no_patches():
    assert not TEST.on_slope(np.zeros((1, 1, PATCH, PATCH, PATCH), np.float32)).any()
    assert TEST.on_slope(np.zeros((0, 1, PATCH, PATCH, PATCH), np.float32)).shape == (0,)


@pytest.mark.parametrize("patch, radius", [(8, (3.0, 3.0, 3.0)), (PATCH, (0.5, 0.5, 0.5))], ids=["shell past the patch", "half-shells too small"])
def test_a_patch_that_cannot_hold_the_test_has_none(patch, radius):
    assert SlopeTest.for_patch(patch=patch, radius=radius) is None


def test_a_voxel_between_two_opposite_sides_is_on_neither():
    """(-2, -3, -1) at radii (1.5, 3, 3) lies on the plane between sides (1, -1, -1) and (-1, 1, 1); rounding put it on one."""
    scaled = np.array([-2.0, -3.0, -1.0]) / np.array(RADIUS)
    index = int(np.ravel_multi_index(tuple(np.array([-2, -3, -1]) + PATCH // 2), (PATCH,) * 3))
    position = int(np.flatnonzero(TEST.shell == index)[0])
    members = [set(TEST.sides[d, : TEST.counts[d]]) for d in range(26)]
    facing = [d for d, m in enumerate(members) if position in m]
    assert 1.4 <= np.linalg.norm(scaled) <= 2.0 and len(facing) > 0
    directions = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)])
    assert not any(tuple(directions[d]) in {(1, -1, -1), (-1, 1, 1)} for d in facing)
