"""The prefilter's blob response, compiled: separable Gaussian passes and a local noise map.

The response at a voxel is the smallest of the scale-normalised curvatures along z, y and x (a cell
curves down along all three; stripes, vessels and rods do not), divided by the local noise level, so
that one threshold, in units of noise, serves dim and bright regions alike. Flat and linearly sloping
background has no curvature and drops out, which is the background removal.

Every function here works on a stack of planes that carries its z-halo (real neighbouring planes, or
reflections at the volume's ends, given as a map of planes rather than copies), so a volume streamed in
slabs gives the same numbers, bit for bit, as the whole volume at once. Boundary handling in y and x is
scipy's 'reflect'. Within a kernel's reach of the volume's faces, where reflection makes a window read samples
twice, each curvature is scaled back to the noise it carries inside (fold_scale). Inputs of any real dtype are
read as they are, each value cast to float32.
"""

from __future__ import annotations

import math

import numba
import numpy as np

TRUNCATE = 4.0  # Gaussian kernels reach this many sigmas, as scipy's default
Z_PLANES = 2  # planes the z pass makes at once (more hold more work arrays for little more gain)
# A white-noise voxel of std s gives |I - (left + right) / 2| a mean of s * sqrt(1.5) * sqrt(2 / pi).
MEAN_ABS_DIFF_PER_STD = math.sqrt(1.5) * math.sqrt(2.0 / math.pi)


def gaussian_kernel(sigma: float, order: int) -> np.ndarray:
    """Sampled, normalised 1D Gaussian (order 0, as scipy builds it) or its second derivative (order 2).

    The sampled derivative scipy uses, cut at 4 sigma, does not sum to zero: a flat image of brightness I reads a
    curvature of -1e-4 * I per sigma^-2, -0.56 * I at sigma 0.5, so bright background looked like cells and one-voxel
    sigmas (thick planes) saw every plane curve. Ours takes out the Gaussian's share of that sum (zero on a
    constant) and is scaled to be exact on x^2 / 2, so each axis reads true curvature."""
    radius = int(TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * x**2 / sigma**2)
    phi /= phi.sum()
    if order == 0:
        return phi
    if order == 2:
        second = phi * (x**2 / sigma**4 - 1.0 / sigma**2)
        second -= phi * second.sum()
        return second / np.sum(second * x**2 / 2.0)
    raise ValueError(f"order must be 0 or 2, got {order}")


def box_kernel(half_width: int) -> np.ndarray:
    """The running mean over 2 * half_width + 1 samples (the noise map's window)."""
    return np.full(2 * half_width + 1, 1.0 / (2 * half_width + 1))


@numba.njit(cache=True, nogil=True)
def reflect(i: int, n: int) -> int:
    """scipy 'reflect' (d c b a | a b c d | d c b a) for any overhang."""
    if n == 1:
        return 0
    period = 2 * n
    i = i % period
    if i >= n:
        i = period - 1 - i
    return i


@numba.njit(cache=True, nogil=True)
def fill_reflected(row: np.ndarray, r: int, buf: np.ndarray) -> None:
    """buf[i] = row[i - r] for i in 0 .. len(row) + 2r (reflect beyond the ends), each value cast to buf's dtype.
    Only the 2r end values need `reflect`: calling it for every value cost more than the filtering itself."""
    n = row.shape[0]
    for i in range(min(r, buf.shape[0])):
        buf[i] = row[reflect(i - r, n)]
    for i in range(n):
        buf[i + r] = row[i]
    for i in range(n + r, buf.shape[0]):
        buf[i] = row[reflect(i - r, n)]


@numba.njit(cache=True, nogil=True)
def add_rows(acc: np.ndarray, src: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> None:
    """acc[x] += weights[j] * src[rows[j], x] for j = 0, 1, ... in turn.

    Four taps per sweep over acc, summed in the same order as one tap per sweep (so, with float32 operands
    throughout, the same float32 result), for a quarter of acc's loads and stores, which set the pace of a
    one-tap sweep. Rows of a strided view are not vectorised: callers pass rows of C-contiguous arrays."""
    n, taps = acc.shape[0], weights.shape[0]
    j = 0
    while j + 4 <= taps:
        a0, a1, a2, a3 = src[rows[j]], src[rows[j + 1]], src[rows[j + 2]], src[rows[j + 3]]
        w0, w1, w2, w3 = weights[j], weights[j + 1], weights[j + 2], weights[j + 3]
        for x in range(n):
            acc[x] = acc[x] + w0 * a0[x] + w1 * a1[x] + w2 * a2[x] + w3 * a3[x]
        j += 4
    while j < taps:
        a, w = src[rows[j]], weights[j]
        for x in range(n):
            acc[x] += w * a[x]
        j += 1


@numba.njit(cache=True, nogil=True)
def reflected_rows(first: int, count: int, n: int) -> np.ndarray:
    """reflect(first + j, n) for j < count: the rows a window starting at `first` reads."""
    out = np.empty(count, dtype=np.int64)
    for j in range(count):
        out[j] = reflect(first + j, n)
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def correlate_x(src: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """out[k, y, x] = sum_j weights[k, j] * src[y, x + j - r] for each of K same-length kernels."""
    rows, n = src.shape
    taps = weights.shape[1]
    r = taps // 2
    for y in numba.prange(rows):
        buf = np.empty(n + 2 * r, dtype=np.float32)
        fill_reflected(src[y], r, buf)
        for k in range(weights.shape[0]):
            o = out[k, y]
            o[:] = 0.0
            j = 0
            while j + 4 <= taps:  # four taps per sweep over o, as add_rows (written out here: vectorised, the call was not)
                w0, w1, w2, w3 = weights[k, j], weights[k, j + 1], weights[k, j + 2], weights[k, j + 3]
                for x in range(n):
                    o[x] = o[x] + w0 * buf[x + j] + w1 * buf[x + j + 1] + w2 * buf[x + j + 2] + w3 * buf[x + j + 3]
                j += 4
            while j < taps:
                w = weights[k, j]
                for x in range(n):
                    o[x] += w * buf[x + j]
                j += 1


@numba.njit(parallel=True, cache=True, nogil=True)
def box_mean_x(src: np.ndarray, half_width: int, out: np.ndarray) -> None:
    """Mean over x +- half_width (reflect), by a running sum: constant cost whatever the width."""
    rows, n = src.shape
    w = half_width
    inv = 1.0 / (2 * w + 1)
    for y in numba.prange(rows):
        buf = np.empty(n + 2 * w + 1, dtype=np.float64)  # buf[i] = src[i - w - 1], reflected
        fill_reflected(src[y], w + 1, buf)
        total = 0.0
        for i in range(2 * w + 1):  # the window of x = -1
            total += buf[i]
        o = out[y]
        for x in range(n):
            total += buf[x + 2 * w + 1] - buf[x]
            o[x] = total * inv


@numba.njit(parallel=True, cache=True, nogil=True)
def abs_second_difference_x(src: np.ndarray, out: np.ndarray) -> None:
    """|I(x) - (I(x-1) + I(x+1)) / 2| along x: mostly noise, little signal (the noise map's raw material).

    `src` may hold any real dtype; values are taken as float32 (exactly as astype would), so no converted
    copy of the input is ever made."""
    rows, n = src.shape
    half = np.float32(0.5)
    for y in numba.prange(rows):
        s = src[y]
        o = out[y]
        for x in range(1, n - 1):
            o[x] = abs(np.float32(s[x]) - half * (np.float32(s[x - 1]) + np.float32(s[x + 1])))
        for x in (0, n - 1):
            o[x] = abs(np.float32(s[x]) - half * (np.float32(s[reflect(x - 1, n)]) + np.float32(s[reflect(x + 1, n)])))


@numba.njit(parallel=True, cache=True, nogil=True)
def z_pass(
    block: np.ndarray,
    stack: np.ndarray,
    ring: np.ndarray,
    slots: np.ndarray,
    centre: int,
    gz0: np.ndarray,
    gz2: np.ndarray,
    boxz: np.ndarray,
    out: np.ndarray,
) -> None:
    """Around each plane centre + k of the stack whose plane i is block[stack[i]], for k < len(out):
    out[k, 0] = Gz I, out[k, 1] = Gz'' I, out[k, 2] = box-mean over z of the noise proxy, whose planes
    centre - r .. centre + len(out) - 1 + r are ring[slots[...]].

    Neighbouring centres share all but one of their planes, so each plane row comes from memory once for all of
    them (the memory traffic, not the arithmetic, sets this pass's pace; the next centre finds the rows in cache);
    four taps per sweep, each sum over its own taps in order, so the result does not depend on how many centres go
    together (nor on the four, as add_rows). `block` may hold any real dtype, taken as float32 (as
    abs_second_difference_x)."""
    planes, rows, n = out.shape[0], block.shape[1], block.shape[2]
    taps, box = gz0.shape[0], boxz.shape[0]
    rg = taps // 2
    for y in numba.prange(rows):
        for k in range(planes):
            a = out[k, 0, y]
            c = out[k, 1, y]
            a[:] = 0.0
            c[:] = 0.0
            first = centre + k - rg
            j = 0
            while j + 4 <= taps:  # as add_rows, written out: each row feeds two sums, cast from block's dtype
                r0, r1 = block[stack[first + j], y], block[stack[first + j + 1], y]
                r2, r3 = block[stack[first + j + 2], y], block[stack[first + j + 3], y]
                p0, p1, p2, p3 = gz0[j], gz0[j + 1], gz0[j + 2], gz0[j + 3]
                q0, q1, q2, q3 = gz2[j], gz2[j + 1], gz2[j + 2], gz2[j + 3]
                for x in range(n):
                    v0, v1, v2, v3 = np.float32(r0[x]), np.float32(r1[x]), np.float32(r2[x]), np.float32(r3[x])
                    a[x] = a[x] + p0 * v0 + p1 * v1 + p2 * v2 + p3 * v3
                    c[x] = c[x] + q0 * v0 + q1 * v1 + q2 * v2 + q3 * v3
                j += 4
            while j < taps:
                row = block[stack[first + j], y]
                p, q = gz0[j], gz2[j]
                for x in range(n):
                    v = np.float32(row[x])
                    a[x] += p * v
                    c[x] += q * v
                j += 1
            m = out[k, 2, y]  # add_rows(m, ring[:, y], ...) written out: rows of a strided view are not vectorised
            m[:] = 0.0
            j = 0
            while j + 4 <= box:
                s0, s1 = ring[slots[k + j], y], ring[slots[k + j + 1], y]
                s2, s3 = ring[slots[k + j + 2], y], ring[slots[k + j + 3], y]
                b0, b1, b2, b3 = boxz[j], boxz[j + 1], boxz[j + 2], boxz[j + 3]
                for x in range(n):
                    m[x] = m[x] + b0 * s0[x] + b1 * s1[x] + b2 * s2[x] + b3 * s3[x]
                j += 4
            while j < box:
                s, b = ring[slots[k + j], y], boxz[j]
                for x in range(n):
                    m[x] += b * s[x]
                j += 1


@numba.njit(parallel=True, cache=True, nogil=True)
def y_pass_response(
    xo: np.ndarray,
    gy0: np.ndarray,
    gy2: np.ndarray,
    boxy: np.ndarray,
    curvature_scale: np.ndarray,
    fold_z: np.ndarray,
    fold_y: np.ndarray,
    fold_x: np.ndarray,
    noise_scale: float,
    noise_floor: float,
    planar: bool,
    out: np.ndarray,
) -> None:
    """The last (y) pass fused with the response, one plane.

    xo[0] = Gx Gz I, xo[1] = Gx'' Gz I, xo[2] = Gx Gz'' I, xo[3] = x/z box mean of the noise proxy.
    out = min over axes of -sigma_a^2 * curvature_a, each curvature scaled by its fold_scales (the plane's fold_z,
    the row's fold_y and the column's fold_x: [0] of the smoothing kernel, [1] of the second derivative), divided by
    the local noise (scaled, floored); `planar` leaves z out.
    """
    rows, n = out.shape
    rg = gy0.shape[0] // 2
    rb = boxy.shape[0] // 2
    for y in numba.prange(rows):
        acc_x = np.zeros(n, dtype=np.float32)
        acc_y = np.zeros(n, dtype=np.float32)
        acc_z = np.zeros(n, dtype=np.float32)
        acc_n = np.zeros(n, dtype=np.float32)
        window = reflected_rows(y - rg, gy0.shape[0], rows)
        add_rows(acc_x, xo[1], window, gy0)
        add_rows(acc_y, xo[0], window, gy2)
        if not planar:  # (planar: xo[2] holds nothing)
            add_rows(acc_z, xo[2], window, gy0)
        add_rows(acc_n, xo[3], reflected_rows(y - rb, boxy.shape[0], rows), boxy)
        sx = curvature_scale[2] * fold_y[0, y] * fold_z[0]  # exactly sigma^2 away from the faces, where folds are 1
        sy = curvature_scale[1] * fold_y[1, y] * fold_z[0]
        sz = curvature_scale[0] * fold_y[0, y] * fold_z[1]
        o = out[y]
        for x in range(n):
            r = min(-(sx * fold_x[1, x]) * acc_x[x], -(sy * fold_x[0, x]) * acc_y[x])
            if not planar:
                r = min(r, -(sz * fold_x[0, x]) * acc_z[x])
            o[x] = r / max(noise_scale * acc_n[x], noise_floor)


def fold_scale(kernels: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """For each kernel (a row of `kernels`, its taps reading `samples`), what brings the noise it passes back to
    what it passes where every tap reads a sample of its own. Near a face, reflection makes taps read samples
    twice, which add up coherently: the output's noise grows (by 30-50% at the face) and pure noise gave candidates
    there at 5-15 times the rate inside. Never above 1: a fold that cancels weights is left alone."""
    _, which = np.unique(samples, return_inverse=True)
    folded = np.array([np.linalg.norm(np.bincount(which, weights=k)) for k in kernels])
    return np.minimum(1.0, np.linalg.norm(kernels, axis=1) / np.maximum(folded, 1e-30)).astype(np.float32)


def axis_fold_scales(kernels: np.ndarray, n: int) -> np.ndarray:
    """fold_scale of `kernels` (same taps each) at each of n positions along an axis read with reflection: 1 but
    within a kernel's reach of the ends."""
    taps = kernels.shape[1]
    r = taps // 2
    out = np.ones((len(kernels), n), dtype=np.float32)
    for p in {*range(min(r, n)), *range(max(n - r, 0), n)}:
        out[:, p] = fold_scale(kernels, reflected_rows(p - r, taps, n))
    return out


def _stack(*kernels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.stack(kernels), dtype=np.float32)


def blur_kernel(blur: float) -> np.ndarray:
    """A normalised Gaussian of `blur` voxels (a delta for 0): white noise smoothed by it is correlated noise."""
    return np.ones(1) if blur <= 0.0 else gaussian_kernel(blur, 0)


def white_noise_gain(sigma: tuple[float, ...], *, blurs: tuple[float, ...] | None = None) -> float:
    """Std of the scale-normalised curvature response (RMS over the axes) to unit white noise, smoothed first by a
    Gaussian of `blurs` voxels along each axis (None: as it is): what turns pixel noise into the response's units."""
    kernels = [blur_kernel(b) for b in (blurs if blurs is not None else (0.0,) * len(sigma))]
    norms0 = [np.linalg.norm(np.convolve(gaussian_kernel(s, 0), k)) for s, k in zip(sigma, kernels)]
    gains = []
    for a, (s, k) in enumerate(zip(sigma, kernels)):
        others = np.prod([n for b, n in enumerate(norms0) if b != a])
        gains.append(s**2 * np.linalg.norm(np.convolve(gaussian_kernel(s, 2), k)) * others)
    return float(np.sqrt(np.mean(np.square(gains))))


class Scratch:
    """Float32 work arrays kept from one blob_snr call to the next (a streamed volume's slabs, one thread). A fresh
    array is zero-filled by the OS page by page as it is first written: on a 2150×2650 plane that cost 29 ms, against
    10 ms for the pass that wrote it."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of `shape`: a view of the kept one where its planes match and it has as many."""
        kept = self._arrays.get(name)
        if kept is None or kept.shape[1:] != tuple(shape[1:]) or kept.shape[0] < shape[0]:
            kept = self._arrays[name] = np.empty(shape, dtype=np.float32)
        return kept[: shape[0]]


def blob_snr(
    block: np.ndarray,
    *,
    pad: int,
    sigma: tuple[float, float, float],
    noise_half_width: tuple[int, int, int],
    noise_floor: float,
    planar: bool,
    stack: np.ndarray | None = None,
    noise_gain: float = 1.0,
    out: np.ndarray | None = None,
    scratch: Scratch | None = None,
) -> np.ndarray:
    """Response / local noise (float32) for the core planes of a stack of planes with a halo of `pad` planes each
    side: block itself (any real dtype), or, with `stack`, the planes block[stack[0]], block[stack[1]], ... (so
    reflections at a volume's ends need no padded copy).

    Passes run z first (Z_PLANES planes at a time), then x, then y fused with the response, plane by plane, and
    the noise proxy is kept for the planes the z box spans only, so the working set beyond the input and the
    result is a few planes.
    `planar` treats a single plane as 2D (y and x curvatures only); then `block` is that one plane and pad is 0.
    `noise_gain` scales the noise units for noise that is not white (noise_correlation.NoiseModel.gain).
    `out` (float32, one plane per core plane) receives the result; `scratch` keeps the work arrays between calls.
    """
    scratch = Scratch() if scratch is None else scratch
    block = np.ascontiguousarray(block)
    stack = np.arange(len(block)) if stack is None else np.ascontiguousarray(stack, dtype=np.int64)
    planes, (rows, cols) = len(stack), block.shape[1:]
    gain = white_noise_gain(sigma[1:] if planar else sigma)
    noise_scale = np.float32(noise_gain * gain / MEAN_ABS_DIFF_PER_STD)
    floor = np.float32(gain * noise_floor)
    scales = np.asarray([s**2 for s in sigma], dtype=np.float32)
    gz = [gaussian_kernel(sigma[0], o).astype(np.float32) for o in (0, 2)]
    bz = box_kernel(noise_half_width[0]).astype(np.float32)
    wx = _stack(gaussian_kernel(sigma[2], 0), gaussian_kernel(sigma[2], 2))
    gy = [gaussian_kernel(sigma[1], o).astype(np.float32) for o in (0, 2)]
    by = box_kernel(noise_half_width[1]).astype(np.float32)
    fold_y, fold_x = axis_fold_scales(np.stack(gy), rows), axis_fold_scales(wx, cols)
    out = np.empty((planes - 2 * pad, rows, cols), dtype=np.float32) if out is None else out
    step = 1 if planar else Z_PLANES
    zo = scratch.array("zo", (step, 3, rows, cols))
    xo = scratch.array("xo", (4, rows, cols))
    rb = bz.shape[0] // 2
    if not planar and pad < (needed := z_halo(sigma_z=sigma[0], noise_half_width_z=noise_half_width[0])):
        raise ValueError(f"a halo of {pad} planes is less than the {needed} the z passes reach (z_halo)")
    fold_z = np.ones((2, planes - 2 * pad), dtype=np.float32)  # the planes' fold_scales, read from the planes each z window holds
    if not planar:
        kz, rz = np.stack(gz), len(gz[0]) // 2
        for q in range(planes - 2 * pad):
            fold_z[:, q] = fold_scale(kz, stack[q + pad - rz : q + pad + rz + 1])
    ring = scratch.array("ring", (0 if planar else bz.shape[0] + step - 1, rows, cols))  # proxy plane p in slot p % len
    for q in range(0, planes - 2 * pad, step):
        count = min(step, planes - 2 * pad - q)
        if planar:
            zo[0, 0] = block[stack[q]]
            abs_second_difference_x(block[stack[q]], zo[0, 2])
        else:
            centre = q + pad
            for p in range(centre - rb if q == 0 else centre + rb, centre + rb + count):
                abs_second_difference_x(block[stack[p]], ring[p % len(ring)])
            slots = np.arange(centre - rb, centre + rb + count) % len(ring)
            z_pass(block, stack, ring, slots, centre, gz[0], gz[1], bz, zo[:count])
        for k in range(count):
            if not planar:
                correlate_x(zo[k, 1], wx[:1], xo[2:3])
            correlate_x(zo[k, 0], wx, xo[:2])
            box_mean_x(zo[k, 2], noise_half_width[2], xo[3])
            y_pass_response(xo, gy[0], gy[1], by, scales, fold_z[:, q + k], fold_y, fold_x, noise_scale, floor, planar, out[q + k])
    return out


def z_halo(*, sigma_z: float, noise_half_width_z: int) -> int:
    """Planes of context a core plane needs on each side."""
    return max(int(TRUNCATE * sigma_z + 0.5), noise_half_width_z)
