"""Random shapes, dtypes and values into the I/O layer, the kernels and the pipeline: each either works or
raises the project's own error type, never anything else."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from clarity_fast.candidates import find_candidates
from clarity_fast.errors import ClarityError
from clarity_fast.export.model_file import DEFAULT_MODEL
from clarity_fast.io.points import read_points
from clarity_fast.io.volumes import open_array, open_volume, write_tiff
from clarity_fast.kernels.gather import gather_patches, working_grid
from clarity_fast.settings import PrefilterSettings, Scale

DTYPES = st.sampled_from(["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "float16", "float32", "float64", "complex64"])
SHAPES = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6)
FUZZ = settings(max_examples=int(os.environ.get("CLARITY_FAST_FUZZ_EXAMPLES", 40)), deadline=None, derandomize="CLARITY_FAST_FUZZ_EXAMPLES" not in os.environ, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data(), dtype=DTYPES, shape=SHAPES)
def test_arrays_open_or_raise_our_error(data, dtype, shape):
    array = data.draw(hnp.arrays(dtype, shape))
    try:
        reader = open_array(array)
        reader.read_slab(0, reader.shape[0])
    except ClarityError:
        pass


@FUZZ
@given(data=st.data(), dtype=DTYPES, shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5))
def test_tiff_round_trip_or_our_error(tmp_path, data, dtype, shape):
    array = data.draw(hnp.arrays(dtype, shape))
    path = tmp_path / "v.tif"
    try:
        write_tiff(path, array)
    except ClarityError:
        return
    with open_volume(path) as reader:
        np.testing.assert_array_equal(reader.read_slab(0, reader.shape[0]).reshape(array.shape), array)


@FUZZ
@given(content=st.binary(max_size=300) | st.text(alphabet="zyx,score\n0123456789.-eE nan", max_size=200))
def test_points_files_parse_or_raise_our_error(tmp_path, content):
    path = tmp_path / "p.csv"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    try:
        points = read_points(path, shape=(10, 10, 10))
    except ClarityError:
        return
    assert points.zyx.shape[1] == 3 and np.isfinite(points.zyx).all()


@FUZZ
@given(
    data=st.data(),
    dtype=st.sampled_from(["uint8", "uint16", "int16", "float32"]),
    shape=st.tuples(st.integers(1, 6), st.integers(1, 20), st.integers(1, 20)),
    voxel=st.tuples(*[st.sampled_from([0.5, 1.0, 2.0, 4.0])] * 3),
    diameter=st.sampled_from([2.0, 6.0, 12.0]),
    slab=st.integers(1, 7),
)
def test_prefilter_on_anything_finite(data, dtype, shape, voxel, diameter, slab):
    assume(diameter >= min(voxel[1:]))  # a cell narrower than a voxel is refused before any work (tests/test_bad_input.py)
    elements = st.floats(-1e4, 1e4, width=32) if dtype == "float32" else None
    volume = data.draw(hnp.arrays(dtype, shape, elements=elements))
    settings_ = PrefilterSettings(scale=Scale(voxel_size=voxel, cell_diameter=diameter), slab_depth=slab)
    found = find_candidates(open_array(volume), settings=settings_)
    assert np.all((found.zyx >= 0) & (found.zyx < np.asarray(shape)))
    assert np.isfinite(found.response).all()


@FUZZ
@given(
    data=st.data(),
    shape=st.tuples(st.integers(1, 6), st.integers(1, 9), st.integers(1, 9)),
    factors=st.tuples(*[st.sampled_from([0.5, 1.0, 1.7])] * 3),
    size=st.integers(1, 8),
)
def test_gather_anywhere_is_finite(data, shape, factors, size):
    volume = data.draw(hnp.arrays("uint16", shape))
    grid = working_grid(shape, factors=factors)
    centres = np.stack([data.draw(st.integers(0, n - 1)) for n in grid.shape])[None]
    out = gather_patches(volume, centres=centres, grid=grid, out=np.empty((1, 1, size, size, size), np.float32))
    assert np.isfinite(out).all()


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="the built-in model is not in this checkout")
@settings(max_examples=15, deadline=None)
@given(
    data=st.data(),
    dtype=st.sampled_from(["uint8", "uint16", "float32"]),
    shape=st.tuples(st.integers(1, 5), st.integers(1, 40), st.integers(1, 40)),
)
def test_detect_on_anything_works_or_raises_our_error(data, dtype, shape):
    from clarity_fast.export.runtime import OnnxScorer
    from clarity_fast.pipeline import DetectSettings, detect

    elements = st.floats(0, 1e4, width=32) if dtype == "float32" else None
    volume = data.draw(hnp.arrays(dtype, shape, elements=elements))
    scorer = OnnxScorer(DEFAULT_MODEL)
    settings_ = DetectSettings(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0, threshold=0.5, prefilter_threshold=3.0, slab_depth=2, batch=3)
    try:
        result = detect(open_array(volume), scorer=scorer, model=scorer.config, settings=settings_)
    except ClarityError:
        return
    assert len(result.zyx) == len(result.probability)
