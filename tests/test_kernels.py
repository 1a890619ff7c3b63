"""The compiled kernels against the plain numpy/scipy reference of the same maths."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.ndimage import correlate1d, gaussian_filter1d

from clarity_fast.kernels import reference
from clarity_fast.kernels.filters import add_rows, axis_fold_scales, blob_snr, correlate_x, gaussian_kernel, reflect, y_pass_response, z_halo, z_pass
from clarity_fast.kernels.gather import STD_FLOOR, TINY, gather_patches, working_grid
from clarity_fast.kernels.maxima import footprint_offsets, local_maxima

DTYPES = [np.uint8, np.uint16, np.int16, np.float32, np.float64]



def numba_snr(volume, sigma, half_width, floor=0.5, noise_gain=1.0):
    if volume.shape[0] == 1:
        return blob_snr(volume, pad=0, sigma=sigma, noise_half_width=half_width, noise_floor=floor, planar=True, noise_gain=noise_gain)
    pad = z_halo(sigma_z=sigma[0], noise_half_width_z=half_width[0])
    stack = [reflect(p, volume.shape[0]) for p in range(-pad, volume.shape[0] + pad)]  # the ends reflected, as detect does
    return blob_snr(
        volume, stack=np.array(stack), pad=pad, sigma=sigma, noise_half_width=half_width, noise_floor=floor, planar=False,
        noise_gain=noise_gain,
    )


@settings(max_examples=25, deadline=None)
@given(depth=st.integers(2, 9), dtype=st.sampled_from([np.uint16, np.float32]), sigma_z=st.sampled_from([0.5, 0.75, 1.6]), seed=st.integers(0, 1000))
def test_the_z_pass_gives_the_same_bits_however_many_planes_it_makes_at_once(depth, dtype, sigma_z, seed):
    """The z pass makes Z_PLANES neighbouring outputs per sweep; their ring of noise planes and slots must line up."""
    from unittest import mock

    from clarity_fast.kernels import filters

    volume = (np.random.default_rng(seed).random((depth, 17, 23)) * 1000).astype(dtype)
    results = []
    for planes in (1, 2, 3):
        with mock.patch.object(filters, "Z_PLANES", planes):
            results.append(numba_snr(volume, (sigma_z, 1.5, 1.5), (3, 4, 4)))
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def tap_by_tap(rows_of_taps, weights, start=None):
    """sum_j weights[j] * rows_of_taps[j], one tap at a time in float32: the order the filter passes must keep."""
    acc = np.zeros(rows_of_taps[0].shape, np.float32) if start is None else start.astype(np.float32).copy()
    for w, row in zip(np.asarray(weights, np.float32), rows_of_taps):
        acc += w * row.astype(np.float32)
    return acc


@settings(max_examples=30, deadline=None)
@given(taps=st.integers(1, 31), rows=st.integers(1, 9), cols=st.integers(1, 40), seed=st.integers(0, 1000))
def test_x_pass_and_row_sums_add_tap_by_tap_bit_for_bit(taps, rows, cols, seed):
    """Summing four taps per sweep keeps the one-tap-per-sweep order, so the float32 result is the same to the bit."""
    rng = np.random.default_rng(seed)
    src = (rng.standard_normal((rows, cols)) * 100).astype(np.float32)
    weights = rng.standard_normal((2, taps)).astype(np.float32)
    r = taps // 2
    got = np.empty((2, rows, cols), np.float32)
    correlate_x(src, weights, got)
    padded = src[:, [reflect(i, cols) for i in range(-r, cols + r)]]
    for k in range(2):
        np.testing.assert_array_equal(got[k], tap_by_tap([padded[:, j : j + cols] for j in range(taps)], weights[k]))
    index = rng.integers(0, rows, size=taps)
    start = (rng.standard_normal(cols) * 100).astype(np.float32)
    acc = start.copy()
    add_rows(acc, src, index, weights[0])
    np.testing.assert_array_equal(acc, tap_by_tap([src[i] for i in index], weights[0], start))


@settings(max_examples=30, deadline=None)
@given(taps=st.integers(1, 13), box=st.integers(1, 13), rows=st.integers(1, 8), planes=st.integers(1, 3),
       dtype=st.sampled_from([np.uint16, np.float32, np.float64]), planar=st.booleans(), seed=st.integers(0, 1000))
def test_z_and_y_passes_add_tap_by_tap_bit_for_bit(taps, box, rows, planes, dtype, planar, seed):
    """The z pass (any input dtype, taken as float32) and the y pass (rows reflected at the ends, fewer rows than
    taps included) sum in the one-tap-per-sweep order."""
    rng = np.random.default_rng(seed)
    cols = 11
    depth = taps + planes - 1 + 3
    block = (rng.random((depth, rows, cols)) * 1000).astype(dtype)
    stack = rng.permutation(depth)
    ring = (rng.random((box + planes - 1 + 2, rows, cols)) * 10).astype(np.float32)
    slots = rng.permutation(len(ring))[: box + planes - 1]
    gz0, gz2, boxz = (rng.standard_normal(taps).astype(np.float32), rng.standard_normal(taps).astype(np.float32),
                      rng.random(box).astype(np.float32))
    centre = taps // 2 + 1
    out = np.empty((planes, 3, rows, cols), np.float32)
    z_pass(block, stack, ring, slots, centre, gz0, gz2, boxz, out)
    for k in range(planes):
        window = [block[stack[centre + k - taps // 2 + j]] for j in range(taps)]
        np.testing.assert_array_equal(out[k, 0], tap_by_tap(window, gz0))
        np.testing.assert_array_equal(out[k, 1], tap_by_tap(window, gz2))
        np.testing.assert_array_equal(out[k, 2], tap_by_tap([ring[slots[k + j]] for j in range(box)], boxz))
    xo = (rng.standard_normal((4, rows, cols)) * 100).astype(np.float32)
    xo[3] = np.abs(xo[3]) + 1
    scale = np.asarray([0.5, 2.0, 2.0], np.float32)
    fold_z, fold_y, fold_x = (rng.uniform(0.7, 1.0, (2, *n)).astype(np.float32) for n in ((), (rows,), (cols,)))
    got = np.empty((rows, cols), np.float32)
    y_pass_response(xo, gz0, gz2, boxz, scale, fold_z, fold_y, fold_x, np.float32(0.7), np.float32(0.1), planar, got)
    rg, rb = taps // 2, box // 2
    acc = {name: np.stack([tap_by_tap([xo[c, reflect(y - rg + j, rows)] for j in range(taps)], w) for y in range(rows)])
           for name, c, w in (("x", 1, gz0), ("y", 0, gz2), ("z", 2, gz0))}
    noise = np.stack([tap_by_tap([xo[3, reflect(y - rb + j, rows)] for j in range(box)], boxz) for y in range(rows)])
    fy, fx = fold_y[:, :, None], fold_x[:, None, :]
    response = np.minimum(-(scale[2] * fy[0] * fold_z[0] * fx[1]) * acc["x"], -(scale[1] * fy[1] * fold_z[0] * fx[0]) * acc["y"])
    if not planar:
        response = np.minimum(response, -(scale[0] * fy[0] * fold_z[1] * fx[0]) * acc["z"])
    np.testing.assert_array_equal(got, response / np.maximum(np.float32(0.7) * noise, np.float32(0.1)))


def test_blob_snr_refuses_a_halo_shorter_than_its_z_passes():
    block = np.zeros((9, 20, 20), np.float32)
    with pytest.raises(ValueError, match="halo"):
        blob_snr(block, pad=2, sigma=(1.0, 2.0, 2.0), noise_half_width=(2, 4, 4), noise_floor=0.5, planar=False)


def test_blob_snr_reads_a_plane_map_as_a_padded_copy_but_knows_its_reflections():
    """Reflections given as a map of planes (what detect passes) equal a block that carries them as copies, but
    within the z kernel's reach of the ends: only the map tells that a plane is read twice (fold_scale)."""
    volume = np.random.default_rng(3).integers(0, 4000, (14, 30, 40)).astype(np.uint16)
    sigma, half_width = (1.0, 2.0, 2.0), (2, 4, 4)
    pad = z_halo(sigma_z=sigma[0], noise_half_width_z=half_width[0])
    padded = np.pad(volume, ((pad, pad), (0, 0), (0, 0)), mode="symmetric")
    copied = blob_snr(padded, pad=pad, sigma=sigma, noise_half_width=half_width, noise_floor=0.5, planar=False)
    mapped = numba_snr(volume, sigma, half_width)
    reach = len(gaussian_kernel(sigma[0], 0)) // 2
    np.testing.assert_array_equal(mapped[reach:-reach], copied[reach:-reach])
    assert not np.array_equal(mapped[0], copied[0]) and np.abs(mapped[0]).mean() < np.abs(copied[0]).mean()


def test_fold_scales_bring_the_noise_at_the_faces_back_to_the_inside_level():
    """White noise: the curvature's spread at a face (where reflection reads samples twice) is some 30% above that
    inside, and the fold scale takes it back."""
    kernels = np.stack([gaussian_kernel(2.0, 0), gaussian_kernel(2.0, 2)]).astype(np.float32)
    scales = axis_fold_scales(kernels, 40)
    assert (scales[:, 8:-8] == 1).all() and (scales <= 1).all() and 0.6 < scales[0, 0] < 0.8 and 0.6 < scales[1, -1] < 0.8
    noise = np.random.default_rng(0).standard_normal((20000, 40))
    smoothed = correlate1d(noise, kernels[1].astype(float), axis=1, mode="reflect")
    ratio = smoothed[:, 0].std() / smoothed[:, 20].std()
    assert 1.2 < ratio < 1.5 and (smoothed[:, 0] * scales[1, 0]).std() / smoothed[:, 20].std() == pytest.approx(1.0, abs=0.03)


def scipy_kernel(sigma: float, order: int, taps: int) -> np.ndarray:
    impulse = np.zeros(2 * taps + 1)
    impulse[taps] = 1.0
    return gaussian_filter1d(impulse, sigma, order=order, mode="constant")[taps - taps // 2 : taps + taps // 2 + 1]


@pytest.mark.parametrize("sigma", [0.5, 0.9, 1.5, 3.2])
def test_gaussian_matches_scipy(sigma):
    kernel = gaussian_kernel(sigma, 0)
    np.testing.assert_allclose(kernel, scipy_kernel(sigma, 0, len(kernel)), atol=1e-12)


@pytest.mark.parametrize("sigma", [0.5, 0.6, 0.75, 0.9, 1.5, 3.2])
def test_second_derivative_reads_no_curvature_on_a_constant_and_exact_curvature_on_a_parabola(sigma):
    """scipy's sampled kernel sums to -0.56 at sigma 0.5 (a flat image looked curved in proportion to its
    brightness); ours sums to zero and reads x^2 / 2 as curvature 1, and stays scipy's shape where that was sound."""
    kernel = gaussian_kernel(sigma, 2)
    x = np.arange(len(kernel)) - len(kernel) // 2
    assert abs(kernel.sum()) < 1e-12 and np.sum(kernel * x**2 / 2) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(kernel, kernel[::-1], atol=1e-15)
    if sigma >= 0.9:
        np.testing.assert_allclose(kernel, scipy_kernel(sigma, 2, len(kernel)), atol=3e-3 / sigma**2)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    depth=st.integers(1, 9),
    rows=st.integers(2, 30),
    cols=st.integers(2, 30),
    dtype=st.sampled_from(DTYPES),
    sigma=st.tuples(st.floats(0.5, 2.0), st.floats(0.5, 2.5), st.floats(0.5, 2.5)),
    half_width=st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)),
    seed=st.integers(0, 2**16),
    noise_gain=st.sampled_from([1.0, 3.7]),
)
def test_blob_snr_matches_reference(depth, rows, cols, dtype, sigma, half_width, seed, noise_gain):
    rng = np.random.default_rng(seed)
    volume = (rng.random((depth, rows, cols)) * 200).astype(dtype)
    got = numba_snr(volume, sigma, half_width, noise_gain=noise_gain)
    expected = reference.blob_snr(volume, sigma=sigma, noise_half_width=half_width, noise_floor=0.5, noise_gain=noise_gain)
    scale = max(float(np.abs(expected).max()), 1.0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 8), st.integers(1, 16), st.integers(1, 16)),
    radius=st.tuples(st.floats(0.5, 3.0), st.floats(0.5, 3.0), st.floats(0.5, 3.0)),
    integer_values=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_local_maxima_match_reference(shape, radius, integer_values, seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape).astype(np.float32)
    if integer_values:  # plateaus: ties must be handled the same way
        values = np.round(values * 2).astype(np.float32)
    coords, found = local_maxima(values, offsets=footprint_offsets(radius), threshold=0.0)
    expected = reference.local_maxima(values, radius=radius, threshold=0.0)
    np.testing.assert_array_equal(coords, expected)
    np.testing.assert_array_equal(found, values[tuple(expected.T)])
    # however values tie, no maximum has another inside its neighbourhood
    gaps = (coords[:, None, :] - coords[None, :, :]) / np.maximum(np.asarray(radius), 1e-9)
    inside = (np.sum(gaps**2, axis=-1) <= 1.0) & ~np.eye(len(coords), dtype=bool)
    inside &= np.all(np.abs(coords[:, None, :] - coords[None, :, :]) <= np.floor(radius), axis=-1)
    assert not inside.any()


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("size", [12, 9])
def test_gather_matches_reference_including_edges(dtype, size):
    rng = np.random.default_rng(0)
    volume = (rng.random((10, 20, 24)) * 1000).astype(dtype)
    centres = np.array([[0, 0, 0], [9, 19, 23], [5, 10, 12], [1, 18, 2], [4, 3, 22]])
    out = np.empty((8, 1, size, size, size), dtype=np.float32)
    got = gather_patches(volume, centres=centres, out=out)
    expected = reference.gather_patches(volume, centres=centres, size=size)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.allclose(got.reshape(len(centres), -1).mean(axis=1), 0, atol=1e-5)


def test_gather_from_a_sub_block_equals_the_whole_volume():
    rng = np.random.default_rng(1)
    volume = rng.integers(0, 4000, size=(30, 16, 16)).astype(np.uint16)
    centres = np.array([[10, 5, 5], [12, 0, 15], [14, 8, 8]])
    whole = gather_patches(volume, centres=centres, out=np.empty((3, 1, 12, 12, 12), np.float32))
    grid = working_grid(volume.shape)
    part = gather_patches(volume[4:21], centres=centres, src_z0=4, grid=grid, out=np.empty((3, 1, 12, 12, 12), np.float32))
    np.testing.assert_array_equal(whole, part)
    with pytest.raises(ValueError, match="planes"):
        gather_patches(volume[6:21], centres=centres, src_z0=6, grid=grid, out=np.empty((3, 1, 12, 12, 12), np.float32))


@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(st.integers(3, 12), st.integers(3, 14), st.integers(3, 14)),
    factors=st.tuples(*[st.sampled_from([1.0, 0.5, 0.81, 1.5, 2.0])] * 3),
    seed=st.integers(0, 1000),
)
def test_resampling_gather_matches_scipy_interpolation(shape, factors, seed):
    rng = np.random.default_rng(seed)
    volume = rng.random(shape).astype(np.float32) * 100
    grid = working_grid(shape, factors=factors)
    centres = (rng.random((6, 3)) * np.asarray(grid.shape)).astype(np.int64)
    got = gather_patches(volume, centres=centres, grid=grid, out=np.empty((6, 1, 6, 6, 6), np.float32))
    expected = reference.resampled_patches(volume, centres=centres, size=6, factors=factors, working_shape=grid.shape)
    np.testing.assert_allclose(got, expected, atol=2e-4)


def _patch_by_voxel(volume, grid, centre, size):
    """One patch in plain Python, each working voxel interpolated from its eight native neighbours (x, then y,
    then z; a zero weight skips its neighbour) and normalised by sequential float64 sums: the gatherer's arithmetic,
    step for step, so the compiled kernel must match it bit for bit."""
    axes = [[reflect(c - size // 2 + k, n) for k in range(size)] for c, n in zip(centre, grid.shape)]

    def along(axis, w):
        return int(grid.lo[axis][w]), int(grid.hi[axis][w]), float(grid.weight[axis][w])

    values = []
    for wz in axes[0]:
        z0, z1, tz = along(0, wz)
        for wy in axes[1]:
            y0, y1, ty = along(1, wy)
            for wx in axes[2]:
                x0, x1, tx = along(2, wx)

                def row(z, y):
                    v = (1.0 - tx) * float(volume[z, y, x0])
                    return v + tx * float(volume[z, y, x1]) if tx != 0.0 else v

                def plane(z):
                    v = row(z, y0)
                    return (1.0 - ty) * v + ty * row(z, y1) if ty != 0.0 else v

                v = plane(z0)
                values.append(float(np.float32((1.0 - tz) * v + tz * plane(z1) if tz != 0.0 else v)))
    mean = 0.0
    for v in values:
        mean += v
    mean /= len(values)
    var = 0.0
    for v in values:
        var += (v - mean) * (v - mean)
    scale = 1.0 / max(math.sqrt(var / len(values)), STD_FLOOR * abs(mean), TINY)
    return np.array([np.float32((v - mean) * scale) for v in values], np.float32).reshape(size, size, size)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
    factors=st.tuples(*[st.sampled_from([1.0, 0.5, 0.81, 1.5, 2.0, 3.7])] * 3),
    dtype=st.sampled_from([np.uint16, np.float32]),
    seed=st.integers(0, 1000),
)
def test_interpolating_gather_equals_per_voxel_arithmetic_bit_for_bit(shape, factors, dtype, seed):
    """The separable kernel reuses each native row's x interpolation; that must not change a single bit."""
    rng = np.random.default_rng(seed)
    volume = (rng.random(shape) * 4000).astype(dtype)
    grid = working_grid(shape, factors=factors)
    centres = (rng.random((2, 3)) * np.asarray(grid.shape)).astype(np.int64)
    got = gather_patches(volume, centres=centres, grid=grid, out=np.empty((2, 1, 5, 5, 5), np.float32))
    for patch, centre in zip(got, centres):
        np.testing.assert_array_equal(patch[0], _patch_by_voxel(volume, grid, centre, 5))


def test_identity_grid_copies_exactly():
    volume = np.random.default_rng(2).integers(0, 60000, size=(9, 11, 13)).astype(np.uint16)
    grid = working_grid(volume.shape, factors=(1.0, 1.0, 1.0))
    assert grid.identity and not working_grid(volume.shape, factors=(1.0, 0.81, 1.0)).identity
    centres = np.array([[4, 5, 6], [0, 0, 0]])
    a = gather_patches(volume, centres=centres, grid=grid, out=np.empty((2, 1, 8, 8, 8), np.float32))
    np.testing.assert_array_equal(a, gather_patches(volume, centres=centres, out=np.empty((2, 1, 8, 8, 8), np.float32)))
    np.testing.assert_allclose(a, reference.gather_patches(volume, centres=centres, size=8), atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 14), st.integers(1, 14), st.integers(1, 14)),
    size=st.sampled_from([5, 6, 12]),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 1000),
)
def test_native_copy_equals_the_interpolating_kernel_bit_for_bit(shape, size, dtype, seed):
    """On an identity grid gather_patches takes a plain-copy kernel; it must give exactly the interpolating
    kernel's arithmetic (pinned to _patch_by_voxel above), from a sub-block and with patches reaching past every face."""
    rng = np.random.default_rng(seed)
    volume = (rng.random(shape) * 1000).astype(dtype)
    grid = working_grid(shape)
    centres = (rng.random((5, 3)) * (np.asarray(shape) + 6) - 3).astype(np.int64).clip(0, np.asarray(shape) - 1)
    first, last = grid.native_rows(int(centres[:, 0].min()) - size // 2, int(centres[:, 0].max()) + size - size // 2)
    fast = gather_patches(volume[first:last], centres=centres, grid=grid, src_z0=first, out=np.empty((5, 1, size, size, size), np.float32))
    for patch, centre in zip(fast, centres):
        np.testing.assert_array_equal(patch[0], _patch_by_voxel(volume, grid, centre, size))


def test_flat_patch_is_zero_not_nan():
    out = gather_patches(np.full((4, 8, 8), 7, np.uint16), centres=np.array([[2, 4, 4]]), out=np.empty((1, 1, 6, 6, 6), np.float32))
    assert np.all(out == 0)


def test_gather_rejects_a_wrong_buffer():
    with pytest.raises(ValueError):
        gather_patches(np.zeros((4, 8, 8)), centres=np.zeros((2, 3), int), out=np.empty((1, 1, 6, 6, 6), np.float32))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 300),
    extent=st.integers(3, 40),
    radius=st.one_of(
        st.sampled_from([(1.0, 1.0, 1.0), (1.5, 4.5, 4.5), (2.0, 3.0, 3.0)]),  # integer distances land on the radius
        st.tuples(st.floats(0.5, 4.0), st.floats(0.5, 6.0), st.floats(0.5, 6.0)),
    ),
    levels=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_compiled_suppression_matches_the_kd_tree_loop(n, extent, radius, levels, seed):
    """Crowded integer positions with few score levels, so ties and exact-radius distances both occur."""
    from clarity_fast.detection import merge_duplicates

    rng = np.random.default_rng(seed)
    zyx = rng.integers(0, extent, size=(n, 3))
    scores = rng.integers(0, levels, size=n).astype(np.float32)
    expected = reference.suppress_duplicates(zyx, scores, radius=radius)
    np.testing.assert_array_equal(merge_duplicates(zyx, scores, radius=radius), expected)


def test_blob_snr_with_reused_work_arrays_equals_a_fresh_run():
    """A streamed volume's slabs share one Scratch: nothing of one call may leak into the next."""
    from clarity_fast.kernels.filters import Scratch

    rng = np.random.default_rng(11)
    sigma, half_width = (1.0, 2.0, 2.0), (2, 4, 4)
    pad = z_halo(sigma_z=sigma[0], noise_half_width_z=half_width[0])
    scratch = Scratch()
    for depth in (9, 12, 7):
        block = rng.integers(0, 3000, (depth + 2 * pad, 40, 50)).astype(np.uint16)
        kw = dict(pad=pad, sigma=sigma, noise_half_width=half_width, noise_floor=0.5, planar=False)
        out = scratch.array("response", (12, 40, 50))[:depth]
        np.testing.assert_array_equal(blob_snr(block, out=out, scratch=scratch, **kw), blob_snr(block, **kw))
    assert np.shares_memory(scratch.array("zo", (3, 40, 50)), scratch.array("zo", (3, 40, 50)))  # kept, not fresh
