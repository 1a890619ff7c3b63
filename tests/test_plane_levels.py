"""Odd planes (far brighter or dimmer, dead, saturated) are levelled with their neighbours as they are read; every
other plane is returned as stored, and slabs of any depth read the same volume."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clarity_fast.io.volumes import open_array
from clarity_fast.plane_levels import LevelledReader, plane_percentiles
from clarity_fast.simulate import SimulatedBrain, SimulationSettings


@pytest.fixture(scope="module")
def volume():
    return SimulatedBrain(SimulationSettings(shape=(16, 64, 64), difficulty=1.0, seed=4)).volume()


def odd(volume, plane, value):
    out = volume.astype(np.float64)
    out[plane] = value if np.isscalar(value) and value > 10 else out[plane] * value
    return np.clip(np.rint(out), 0, 65535).astype(volume.dtype)


def test_ordinary_planes_are_returned_as_stored(volume):
    levelled = LevelledReader(open_array(volume)).read_slab(0, len(volume))
    assert levelled.dtype == volume.dtype and np.array_equal(levelled, volume)


@pytest.mark.parametrize("plane", [0, 7, 15])
@pytest.mark.parametrize("factor", [3.0, 0.2])
def test_a_plane_far_brighter_or_dimmer_is_mapped_onto_its_neighbours(volume, plane, factor):
    levelled = LevelledReader(open_array(odd(volume, plane, factor))).read_slab(0, len(volume))
    others = [k for k in range(len(volume)) if k != plane]
    assert np.array_equal(levelled[others], volume[others])
    lo, hi = plane_percentiles(levelled)
    near = [k for k in (plane - 1, plane + 1) if 0 <= k < len(volume)]
    assert np.allclose([lo[plane], hi[plane]], [np.mean(lo[near]), np.mean(hi[near])], rtol=0.05)
    unclipped = odd(volume, plane, factor)[plane] < 65535
    assert np.corrcoef(levelled[plane][unclipped], volume[plane][unclipped])[0, 1] > 0.999  # the image itself is kept


@pytest.mark.parametrize("plane, value", [(9, 65535), (9, 0), (0, 65535)])
def test_a_dead_or_saturated_plane_becomes_the_mean_of_the_planes_beside_it(volume, plane, value):
    data = volume.copy()
    data[plane] = value
    levelled = LevelledReader(open_array(data)).read_slab(0, len(volume))
    beside = [k for k in (plane - 1, plane + 1) if 0 <= k < len(volume)]
    expected = np.rint(np.mean(volume[beside].astype(np.float64), axis=0)).astype(volume.dtype)
    assert np.array_equal(levelled[plane], expected)


@pytest.mark.parametrize("planes, value", [((9, 10), 65535), ((9, 10), 0), ((14, 15), 0), ((0, 1), 65535), ((9,), "background")])
def test_adjacent_odd_planes_and_dead_frames_at_the_background_level_are_filled_too(volume, planes, value):
    """Two odd planes side by side (at an end too) are outvoted by the three others, and filled from the nearest
    planes with an image; a dead frame reading the camera's level, close to the background's, is flat all the same."""
    data = volume.copy()
    level = int(np.percentile(volume[8], 20)) if value == "background" else value
    data[list(planes)] = level
    levelled = LevelledReader(open_array(data)).read_slab(0, len(volume))
    near = [k for k in (min(planes) - 1, max(planes) + 1) if 0 <= k < len(volume)]
    expected = np.rint(np.mean(volume[near].astype(np.float64), axis=0)).astype(volume.dtype)
    for k in planes:
        assert np.array_equal(levelled[k], expected)


@pytest.mark.parametrize("bright", [8, 10])
def test_a_dead_plane_beside_an_odd_one_is_filled_at_its_neighbours_level(volume, bright):
    """The mean of a doubled plane and a usual one would leave the dead plane's fill half again as bright as every
    plane around it: it is filled from the nearest usual planes instead."""
    data = odd(volume, bright, 2.0)
    data[9] = 0
    levelled = LevelledReader(open_array(data)).read_slab(0, len(volume))
    beside = [7, 10] if bright == 8 else [8, 11]  # the nearest usual planes
    assert np.array_equal(levelled[9], np.rint(np.mean(volume[beside].astype(np.float64), axis=0)).astype(volume.dtype))


def test_mild_flicker_is_left_as_it_is(volume):
    data = odd(volume, 8, 1.2)
    assert np.array_equal(LevelledReader(open_array(data)).read_slab(0, len(volume)), data)


def test_float_volumes_keep_their_dtype(volume):
    data = odd(volume, 5, 4.0).astype(np.float32)
    levelled = LevelledReader(open_array(data)).read_slab(0, len(volume))
    assert levelled.dtype == np.float32 and not np.array_equal(levelled[5], data[5])


@settings(max_examples=25, deadline=None)
@given(
    odd_planes=st.lists(st.tuples(st.integers(0, 15), st.sampled_from([0.0, 0.3, 2.5, 65535.0])), max_size=3),
    cuts=st.lists(st.integers(1, 15), max_size=4, unique=True),
)
def test_slabs_of_any_depth_read_the_same_volume(volume, odd_planes, cuts):
    data = volume.copy()
    for plane, value in odd_planes:
        data = odd(data, plane, value) if value else np.where(np.arange(len(data))[:, None, None] == plane, 0, data).astype(data.dtype)
    reader = LevelledReader(open_array(data))
    whole = reader.read_slab(0, len(data))
    bounds = [0, *sorted(cuts), len(data)]
    pieces = np.concatenate([reader.read_slab(a, b) for a, b in zip(bounds, bounds[1:])])
    assert np.array_equal(pieces, whole)


def test_the_stored_data_are_never_written(volume):
    data = odd(volume, 3, 5.0)
    before = data.copy()
    LevelledReader(open_array(data)).read_slab(0, len(data))
    assert np.array_equal(data, before)


def test_each_levelled_plane_is_named_once_in_a_warning(volume, caplog):
    data = odd(volume, 6, 4.0)
    data[11] = 0
    reader = LevelledReader(open_array(data, name="v.tif"))
    with caplog.at_level("WARNING", logger="clarity_fast"):
        for z0 in range(0, len(data), 4):  # slabs read planes beside them too: each plane is still named once
            reader.read_slab(z0, min(z0 + 4, len(data)))
    assert caplog.text.count("plane 6 is far off its neighbours' brightness") == 1
    assert caplog.text.count("plane 11 is flat (dead or saturated)") == 1
    assert reader.levelled == {6: False, 11: True} and reader.odd_planes(0, 8) == {6: False}
