"""Plain numpy/scipy versions of the kernels' maths: the yardstick the compiled kernels are tested against."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d, gaussian_filter, gaussian_filter1d, map_coordinates, maximum_filter
from scipy.spatial import cKDTree


def log_response(volume: np.ndarray, *, sigma: tuple[float, float, float]) -> np.ndarray:
    """Scale-normalised negative Laplacian of Gaussian (the plain LoG baseline)."""
    return np.sum(axis_curvatures(volume, sigma), axis=0)


def blob_response(volume: np.ndarray, *, sigma: tuple[float, float, float]) -> np.ndarray:
    """The prefilter's response: the smallest of the scale-normalised curvatures along z, y and x.

    A cell curves down along every axis; a stripe, a vessel or a rod seen end-on does not along at least one,
    so taking the minimum rejects them where the plain LoG sum would not. A single plane uses y and x only.
    """
    return np.min(axis_curvatures(volume, sigma), axis=0)


def axis_curvatures(volume: np.ndarray, sigma: tuple[float, float, float]) -> np.ndarray:
    """The scale-normalised curvature along each axis, -sigma_a^2 * d2/da2 of the smoothed image (z, y, x stacked
    first; a single plane: y and x), with the sampled kernel's defects taken out as the compiled filters do."""
    v = np.asarray(volume, dtype=np.float32)
    planar = v.shape[0] == 1
    if planar:
        v, sigma = v[0], tuple(sigma[1:])
    smooth = gaussian_filter(v, sigma, mode="reflect")
    terms = []
    for axis in range(v.ndim):
        order = [0] * v.ndim
        order[axis] = 2
        leak, moment = _second_derivative_defects(sigma[axis])
        raw = gaussian_filter(v, sigma, order=order, mode="reflect")
        terms.append(-np.float32(sigma[axis] ** 2) * ((raw - leak * smooth) / moment).astype(np.float32))
    out = np.stack(terms)
    return out[:, None] if planar else out


def _second_derivative_defects(sigma: float) -> tuple[float, float]:
    """What scipy's sampled second-derivative kernel k reads on a constant 1 (its sum, s), and what k - s * g (g
    the sampled Gaussian) reads on x^2 / 2 at x = 0 (1 for an exact second derivative): measured by filtering."""
    half = int(4.0 * sigma + 0.5)
    x = np.arange(-2 * half - 1, 2 * half + 2, dtype=np.float64)
    leak = float(gaussian_filter1d(np.ones_like(x), sigma, order=2, mode="constant", cval=1.0)[0])
    centre = len(x) // 2
    parabola = x**2 / 2.0
    moment = gaussian_filter1d(parabola, sigma, order=2)[centre] - leak * gaussian_filter1d(parabola, sigma)[centre]
    return leak, float(moment)


def ellipsoid_footprint(radius: tuple[float, float, float]) -> np.ndarray:
    """Boolean ellipsoid of the given semi-axes (voxels), odd-sized, centred."""
    half = [int(np.floor(r)) for r in radius]
    grids = np.meshgrid(*[np.arange(-h, h + 1) / max(r, 1e-9) for h, r in zip(half, radius)], indexing="ij")
    return sum(g**2 for g in grids) <= 1.0


def local_maxima(response: np.ndarray, *, radius: tuple[float, float, float], threshold: float) -> np.ndarray:
    """(N, 3) voxel indices, in C order, where `response` exceeds `threshold` and is the maximum of its ellipsoid."""
    footprint = ellipsoid_footprint(radius)
    peak = (response == maximum_filter(response, footprint=footprint, mode="constant", cval=-np.inf)) & (response > threshold)
    centre = np.array(footprint.shape) // 2
    padded = np.pad(response, [(c, c) for c in centre], constant_values=-np.inf)
    for offset in np.argwhere(footprint) - centre:  # of equal neighbours the first in C order stays
        if tuple(offset) < (0, 0, 0):
            window = tuple(slice(c + o, c + o + n) for c, o, n in zip(centre, offset, response.shape))
            peak &= padded[window] != response
    return np.argwhere(peak)


def blob_snr(
    volume: np.ndarray,
    *,
    sigma: tuple[float, float, float],
    noise_half_width: tuple[int, int, int],
    noise_floor: float,
    noise_gain: float = 1.0,
) -> np.ndarray:
    """The prefilter's response (see kernels.filters) for a whole volume, with scipy: the smallest curvature, each
    scaled to the noise it carries away from the faces (fold_scales), over the local noise."""
    noise = noise_map(volume, sigma=sigma, noise_half_width=noise_half_width, noise_floor=noise_floor, noise_gain=noise_gain)
    terms = axis_curvatures(volume, sigma)
    axes = len(terms)  # 2 for a single plane: y and x
    shape = terms.shape[-axes:]
    for a in range(axes):
        for b, s in enumerate(sigma[-axes:]):
            along = [1] * axes
            along[b] = shape[b]
            terms[a] *= fold_scales(s, order=2 if a == b else 0, n=shape[b]).reshape(along)
    return np.min(terms, axis=0) / noise


def fold_scales(sigma: float, *, order: int, n: int) -> np.ndarray:
    """At each of n positions along an axis filtered with reflection, the factor (at most 1) that brings the noise
    a Gaussian (order 0) or its curvature kernel (order 2) passes back to its own: the folded weights are a reflected
    filter's matrix, read off by filtering the identity."""
    impulse = np.zeros(2 * int(4.0 * sigma + 0.5) + 1)
    impulse[len(impulse) // 2] = 1.0
    kernel = gaussian_filter1d(impulse, sigma, order=order, mode="constant")
    if order == 2:  # as the compiled kernel: the Gaussian's share of the derivative's sum taken out
        kernel = kernel - _second_derivative_defects(sigma)[0] * gaussian_filter1d(impulse, sigma, mode="constant")
    folded = np.linalg.norm(correlate1d(np.eye(n), kernel, axis=0, mode="reflect"), axis=1)
    return np.minimum(1.0, np.linalg.norm(kernel) / np.maximum(folded, 1e-30)).astype(np.float32)


def noise_map(
    volume: np.ndarray,
    *,
    sigma: tuple[float, float, float],
    noise_half_width: tuple[int, int, int],
    noise_floor: float,
    noise_gain: float = 1.0,
) -> np.ndarray:
    """The local noise the prefilter divides its response by, in the response's units (z, y, x; one plane for a
    single plane)."""
    from scipy.ndimage import uniform_filter

    from clarity_fast.kernels.filters import MEAN_ABS_DIFF_PER_STD, white_noise_gain

    v = np.asarray(volume, dtype=np.float32)
    planar = v.shape[0] == 1
    plane = v[0] if planar else v
    padded = np.pad(plane, [(0, 0)] * (plane.ndim - 1) + [(1, 1)], mode="symmetric")
    proxy = np.abs(plane - np.float32(0.5) * (padded[..., :-2] + padded[..., 2:]))
    sizes = [2 * w + 1 for w in noise_half_width]
    box = uniform_filter(proxy, size=sizes[1:] if planar else sizes, mode="reflect")
    gain = white_noise_gain(sigma[1:] if planar else sigma)
    noise = np.maximum(np.float32(noise_gain * gain / MEAN_ABS_DIFF_PER_STD) * box, gain * noise_floor)
    return noise[None] if planar else noise


def gather_patches(volume: np.ndarray, *, centres: np.ndarray, size: int) -> np.ndarray:
    """(N, 1, P, P, P) float32 z-scored patches, reflect-padded: the gatherer's reference."""
    half = size // 2
    padded = np.pad(np.asarray(volume, dtype=np.float32), [(half, size)] * 3, mode="symmetric")
    out = np.empty((len(centres), 1, size, size, size), dtype=np.float32)
    for i, (z, y, x) in enumerate(np.asarray(centres, dtype=int)):
        out[i, 0] = zscored(padded[z : z + size, y : y + size, x : x + size].astype(np.float64))
    return out


def zscored(patch: np.ndarray) -> np.ndarray:
    """Zero mean, unit sd; flat (zeros) where the spread is within float32 rounding of the level (kernels.gather)."""
    from clarity_fast.kernels.gather import STD_FLOOR, TINY

    return (patch - patch.mean()) / max(patch.std(), STD_FLOOR * abs(patch.mean()), TINY)


def reflected(index: np.ndarray, n: int) -> np.ndarray:
    """Indices folded into 0..n-1 as scipy 'reflect' does (d c b a | a b c d | d c b a), for any overhang."""
    index = np.asarray(index) % (2 * n)
    return np.where(index >= n, 2 * n - 1 - index, index)


def resampled_patches(
    volume: np.ndarray, *, centres: np.ndarray, size: int, factors: tuple[float, float, float], working_shape: tuple[int, int, int]
) -> np.ndarray:
    """Patches on the working grid by scipy linear interpolation: the resampling gatherer's reference."""
    half = size // 2
    out = np.empty((len(centres), 1, size, size, size), dtype=np.float32)
    for i, centre in enumerate(np.asarray(centres, dtype=int)):
        axes = []
        for c, n, f in zip(centre, working_shape, factors):
            w = reflected(np.arange(c - half, c - half + size), n)
            axes.append((w + 0.5) / f - 0.5)
        coords = np.stack(np.meshgrid(*axes, indexing="ij"))
        out[i, 0] = zscored(map_coordinates(np.asarray(volume, dtype=np.float64), coords, order=1, mode="nearest"))
    return out


def suppress_duplicates(zyx: np.ndarray, scores: np.ndarray, *, radius: tuple[float, float, float]) -> np.ndarray:
    """Indices kept when, strongest first (ties by position), each keeper removes all within `radius` per axis."""
    zyx = np.asarray(zyx, dtype=float).reshape(-1, 3)
    if len(zyx) == 0:
        return np.empty(0, dtype=np.int64)
    order = np.lexsort((zyx[:, 2], zyx[:, 1], zyx[:, 0], -np.asarray(scores)))
    tree = cKDTree(zyx / np.asarray(radius, dtype=float))
    alive = np.ones(len(zyx), dtype=bool)
    kept = []
    for i in order:
        if alive[i]:
            kept.append(i)
            alive[tree.query_ball_point(tree.data[i], 1.0)] = False
    return np.sort(np.asarray(kept, dtype=np.int64))


def on_slope(patches: np.ndarray, *, radius: tuple[float, float, float]) -> np.ndarray:
    """Patches whose core is dimmer than some half-shell's mean and some half-shell's median: the slope test's
    reference, its voxels chosen from distances afresh (kernels.slope)."""
    from clarity_fast.kernels.slope import CORE, ON_THE_PLANE, SHELL_INNER, SHELL_OUTER

    size = patches.shape[-1]
    grids = np.meshgrid(*[(np.arange(size) - size // 2) / r for r in radius], indexing="ij")
    scaled = np.stack([g.ravel() for g in grids], axis=1)
    distance = np.sqrt(np.sum(scaled**2, axis=1))
    shell = (distance >= SHELL_INNER) & (distance <= SHELL_OUTER)
    directions = [np.array(d, float) - 1.0 for d in np.ndindex(3, 3, 3) if d != (1, 1, 1)]
    sides = [scaled[shell] @ d > ON_THE_PLANE for d in directions]
    flat = np.asarray(patches, dtype=np.float64).reshape(len(patches), -1)
    centre = flat[:, distance <= CORE].mean(axis=1)
    values = flat[:, shell]
    means = np.stack([values[:, s].mean(axis=1) for s in sides], axis=1)
    medians = np.stack([np.median(values[:, s], axis=1) for s in sides], axis=1)
    return np.any(centre[:, None] < means, axis=1) & np.any(centre[:, None] < medians, axis=1)


def centre_shifts(
    patches: np.ndarray, *, diameter: tuple[float, float, float], steps: int, weight_sd: float, percentile: float
) -> np.ndarray:
    """Mean-shift offsets from each patch's centre voxel to its cell's centre: kernels.centre's reference, every
    patch at once."""
    size = patches.shape[-1]
    offsets = np.stack(np.meshgrid(*[np.arange(size) - size // 2] * 3, indexing="ij"), -1).reshape(-1, 3).astype(float)
    diameter = np.asarray(diameter, dtype=float)
    radius = diameter / 2
    inside = np.sum((offsets / radius) ** 2, axis=1) <= 1.0
    flat = np.asarray(patches, dtype=np.float64).reshape(len(patches), -1)
    above = np.maximum(flat - np.percentile(flat[:, inside], percentile, axis=1, keepdims=True), 0.0)
    shift = np.zeros((len(flat), 3))
    estimated = np.zeros(len(flat), dtype=bool)
    for _ in range(steps):
        weights = above * np.exp(-0.5 * np.sum(((offsets[None] - shift[:, None]) / (weight_sd * diameter)) ** 2, axis=2))
        total = weights.sum(axis=1)
        moved = total > 0
        shift[moved] = (weights[moved] @ offsets) / total[moved, None]
        estimated |= moved
    shift[~estimated | (np.sum((shift / radius) ** 2, axis=1) > 1.0)] = np.nan
    return shift


def bin_moments(low: np.ndarray, high: np.ndarray, *, mean: float, sd: float, span: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a Gaussian: each bin's mass (from the nearer tail) and the mean and mean square of its logits within the
    bin (a bin with no mass: its nearest end, open ends stopping at ±span): kernels.binned_em's reference."""
    from scipy.special import ndtr

    def pdf(z: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * np.square(np.where(np.isfinite(z), z, 0.0))) * np.isfinite(z) / np.sqrt(2.0 * np.pi)

    a, b = (low - mean) / sd, (high - mean) / sd
    mass = np.where(a > 0.0, ndtr(-a) - ndtr(-b), ndtr(b) - ndtr(a))
    pa, pb = pdf(a), pdf(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = (pa - pb) / mass
        spread = (np.where(np.isfinite(a), a * pa, 0.0) - np.where(np.isfinite(b), b * pb, 0.0)) / mass
    ok = mass > 1e-12
    nearest = np.clip(mean, np.maximum(low, -span), np.minimum(high, span))
    ex = np.where(ok, mean + sd * np.where(ok, shift, 0.0), nearest)
    ex2 = np.where(ok, mean**2 + 2.0 * mean * sd * np.where(ok, shift, 0.0) + sd**2 * (1.0 + np.where(ok, spread, 0.0)), nearest**2)
    return mass, ex, ex2


def binned_em(
    counts: np.ndarray, low: np.ndarray, high: np.ndarray, *, middle: np.ndarray, start: np.ndarray, largest_sd: np.ndarray, min_sd: float,
    span: float, iterations: int,
) -> tuple[np.ndarray, float, bool]:
    """EM for Gaussian groups over binned logits, every bin at once: kernels.binned_em's reference."""
    groups = [(np.asarray(r, dtype=float), middle, middle**2) for r in start]
    total, params = counts.sum(), None
    for _ in range(iterations):
        new = []
        for (r, ex, ex2), most in zip(groups, largest_sd):
            weight = np.sum(counts * r)
            if weight < 1.0:
                return np.zeros((len(start), 3)), 0.0, False
            mean = np.sum(counts * r * ex) / weight
            var = np.sum(counts * r * (ex2 - 2.0 * mean * ex + mean**2)) / weight
            new.append((weight / total, mean, min(max(np.sqrt(max(var, 0.0)), min_sd), most)))
        converged = params is not None and np.max(np.abs(np.subtract(new, params))) < 1e-7
        params = new
        moments = [bin_moments(low, high, mean=mean, sd=sd, span=span) for _, mean, sd in params]
        mass = [share * m[0] for (share, _, _), m in zip(params, moments)]
        every = np.maximum(np.sum(mass, axis=0), 1e-300)
        if converged:
            break
        groups = [(m / every, ex, ex2) for m, (_, ex, ex2) in zip(mass, moments)]
    return np.array(params, dtype=float), float(np.sum(counts * np.log(every))), True
