"""How correlated a volume's noise is between neighbouring voxels, and what that does to the prefilter's noise units.

The prefilter measures noise at the pixel scale (|I - (left + right) / 2|, which cells barely touch) and converts
it to the noise of its cell-sized curvature response as if the noise were white. Noise that was smoothed (a volume
that was resampled, registered or deconvolved, or rendered with the blur applied after the noise) has little power
at the pixel scale and much at the cell scale: a blur of one voxel inflates the response of pure noise about
eightfold in those units, every noise bump becomes a candidate, and precision collapses (F1 0.98 -> 0.23 on a
foreign generator's volume blurred by one voxel). So each volume's in-plane noise is measured once, before
streaming, on 9 planes from its middle (so streamed results stay independent of the slabs): the ratio of its second
differences at lags 2 and 1 along y and x (1 for white noise, rising with smoothing; trimmed means, so that cells
and edges do not count) is read as a Gaussian blur of white noise, and the noise units are scaled by how much that
blur inflates the response. Real and simulated volumes show some correlation too (signal texture, the optics):
TOLERATED - 1 of the inflation is left alone (the built-in model's training and test volumes stay below
TOLERATED, so nothing it was fitted or measured on changes); the rest is corrected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from clarity_fast.io.volumes import VolumeReader
from clarity_fast.kernels.filters import blur_kernel, white_noise_gain

SAMPLE_PLANES = 9  # consecutive planes from the middle of the volume
SAMPLES = 250_000  # about this many differences per axis (every k-th row or column): a trimmed mean to 0.2%
BLURS = np.round(np.arange(0.0, 4.0001, 0.01), 2)  # voxels: the noise's Gaussian blur, interpolated on this grid
MIN_SAMPLES = 1000  # differences needed along an axis for a measurement; fewer: taken as white noise
TRIM = 0.9  # the trimmed means leave out the largest 10% of differences
TOLERATED = 2.5  # inflations up to this get no correction: the built-in model's 96 training and test volumes reach 2.31


@dataclass(frozen=True)
class NoiseModel:
    """In-plane noise as white noise smoothed by a Gaussian of `blur` voxels along y and x (0: white noise), and its
    typical size in the volume's own units (`level`: the trimmed mean |I - (left + right) / 2| along x, the proxy the
    prefilter's noise map averages; 0 where not measured), which sets the floor of float volumes' noise map."""

    blur: tuple[float, float] = (0.0, 0.0)
    level: float = 0.0

    def raw_inflation(self, *, sigma: tuple[float, ...]) -> float:
        """How many times the prefilter's white-noise units understate the noise of its response (1 for white
        noise). `sigma`: the curvature filter's, z first, or y and x only for a single plane."""
        if max(self.blur) <= 0.0:
            return 1.0
        blurs = tuple(self.blur) if len(sigma) == 2 else (0.0, *self.blur)
        white = white_noise_gain(sigma) / _lag_sd(1, 0.0)
        norm = math.prod(np.linalg.norm(blur_kernel(b)) for b in blurs)  # a voxel's sd after the blur
        return float(white_noise_gain(sigma, blurs=blurs) / norm / _lag_sd(1, self.blur[1]) / white)  # the proxy runs along x

    def gain(self, *, sigma: tuple[float, ...]) -> float:
        """The factor the prefilter's noise units are scaled by: the inflation less the tolerated TOLERATED - 1, at
        least 1."""
        return max(1.0, self.raw_inflation(sigma=sigma) - (TOLERATED - 1.0))


def _second_difference(lag: int) -> np.ndarray:
    h = np.zeros(2 * lag + 1)
    h[lag], h[0], h[-1] = 1.0, -0.5, -0.5
    return h


@lru_cache(maxsize=None)
def _lag_sd(lag: int, blur: float) -> float:
    """sd of the lag-`lag` second difference of unit-variance noise smoothed by `blur` voxels."""
    g = blur_kernel(blur)
    return float(np.linalg.norm(np.convolve(_second_difference(lag), g)) / np.linalg.norm(g))


def blur_for_ratio(ratio: float) -> float:
    """The Gaussian blur (voxels) of white noise whose second differences at lags 2 and 1 have this ratio of
    spreads; 0 at or below white noise's 1, BLURS' last at or beyond its ratio."""
    if not math.isfinite(ratio) or ratio <= 1.0:
        return 0.0
    ratios = np.array([_lag_sd(2, float(b)) / _lag_sd(1, float(b)) for b in BLURS])
    rising = np.flatnonzero(np.diff(ratios) > 0)[0]  # below a few hundredths of a voxel the sampled kernel is a delta
    return float(np.interp(ratio, ratios[rising:], BLURS[rising:]))


def fit(lag_sds: np.ndarray) -> NoiseModel:
    """The noise model whose second differences have these spreads: rows y and x, columns lags 1 and 2 (NaN where
    unmeasured)."""
    lag_sds = np.asarray(lag_sds, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = lag_sds[:, 1] / lag_sds[:, 0]
    level = float(lag_sds[1, 0]) if np.isfinite(lag_sds[1, 0]) else 0.0
    return NoiseModel(blur=(blur_for_ratio(float(ratios[0])), blur_for_ratio(float(ratios[1]))), level=level)


def lag_spreads(planes: np.ndarray) -> np.ndarray:
    """Trimmed mean |second difference| at lags 1 and 2 (columns) along y and along x (rows) of a stack of planes,
    at the voxels where either is non-zero (a clipped or masked background has no noise to measure) and both are
    finite; NaN where too few."""
    out = np.full((2, 2), np.nan)
    stride = max(1, planes.size // SAMPLES)
    for row, v in enumerate((np.swapaxes(planes[:, :, ::stride], 1, 2), planes[:, ::stride, :])):
        v = np.asarray(v, dtype=np.float32)
        if v.shape[-1] < 5:
            continue
        with np.errstate(invalid="ignore"):
            a = np.abs(v[..., 2:-2] - 0.5 * (v[..., 1:-3] + v[..., 3:-1]))
            b = np.abs(v[..., 2:-2] - 0.5 * (v[..., :-4] + v[..., 4:]))
        varied = ((a > 0) | (b > 0)) & np.isfinite(a) & np.isfinite(b)
        if varied.sum() >= MIN_SAMPLES:
            out[row] = _trimmed_mean(a[varied]), _trimmed_mean(b[varied])
    return out


def _trimmed_mean(values: np.ndarray) -> float:
    """Mean of the values up to their TRIM quantile: proportional to the sd for noise, blind to the few large
    differences cells and edges make, and not stepped like a median of integer data."""
    cut = np.quantile(values, TRIM)
    return float(values[values <= cut].mean())


def volume_noise(reader: VolumeReader) -> NoiseModel:
    """The noise model of a volume, from up to SAMPLE_PLANES consecutive planes from its middle."""
    depth = reader.shape[0]
    start = max((depth - SAMPLE_PLANES) // 2, 0)
    return fit(lag_spreads(reader.read_slab(start, min(start + SAMPLE_PLANES, depth))))
