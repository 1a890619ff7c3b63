"""The detectors the CNN must beat, scored by the same code: blob detection (a scale-matched LoG) and
template matching (normalised cross-correlation with a mean cell learned from training annotations).
Each proposes local maxima of its score map; one global threshold, chosen on training data, decides.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.signal import fftconvolve

from clarity_fast.kernels.reference import local_maxima, log_response
from clarity_fast.settings import Scale


def log_map(volume: np.ndarray, *, scale: Scale) -> np.ndarray:
    """Scale-normalised LoG response with sigma = r / sqrt(3) (a ball of radius r peaks there)."""
    return log_response(volume, sigma=tuple(np.asarray(scale.cell_radius_voxels) / np.sqrt(3.0)))


def peaks_of(score_map: np.ndarray, *, scale: Scale) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima over the distance that merges the CNN's duplicates, with their scores, strongest first."""
    peaks = local_maxima(score_map, radius=scale.merge_radius_voxels, threshold=-np.inf)
    values = score_map[tuple(peaks.T)]
    order = np.argsort(-values, kind="stable")
    return peaks[order], values[order]


def log_blobs(volume: np.ndarray, *, scale: Scale) -> tuple[np.ndarray, np.ndarray]:
    """Every local maximum of the LoG: centres (N, 3) voxels and responses, strongest first."""
    return peaks_of(log_map(volume, scale=scale), scale=scale)


def mean_template(patches: np.ndarray) -> np.ndarray:
    """The mean of normalised patches around annotated cells, itself normalised to zero mean, unit std."""
    mean = patches.mean(axis=(0, 1)).astype(np.float64)
    return (mean - mean.mean()) / max(mean.std(), 1e-12)


def ncc_map(volume: np.ndarray, *, template: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of the template placed as the patch gatherer places patches."""
    size = template.shape[0]
    half = size // 2
    v = np.pad(np.asarray(volume, dtype=np.float64), size, mode="symmetric")
    n = template.size
    full = fftconvolve(v, template[::-1, ::-1, ::-1], mode="full")
    # full[k] sums v[k - size + 1 + j] * template[j]; the patch at c starts at c - half.
    lo = size - 1 - half + size
    corr = full[lo : lo + volume.shape[0], lo : lo + volume.shape[1], lo : lo + volume.shape[2]]
    inner = tuple(slice(size, size + s) for s in volume.shape)
    # uniform_filter's window for an even size also starts at c - size // 2, as the patch does.
    mean = uniform_filter(v, size, mode="reflect")[inner]
    mean_sq = uniform_filter(v * v, size, mode="reflect")[inner]
    std = np.sqrt(np.maximum(mean_sq - mean**2, 0.0))
    return (corr / (n * np.maximum(std, 1e-9))).astype(np.float32)
