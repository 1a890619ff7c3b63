"""The detectors the CNN must beat, scored by the same code: blob detection (LoG) with one global threshold."""

from __future__ import annotations

import numpy as np

from clarity_fast.kernels.reference import local_maxima, log_response
from clarity_fast.settings import Scale


def log_blobs(volume: np.ndarray, *, scale: Scale) -> tuple[np.ndarray, np.ndarray]:
    """Every local maximum of a scale-matched LoG: centres (N, 3) voxels and their responses, strongest first."""
    radius = np.asarray(scale.cell_radius_voxels)
    response = log_response(volume, sigma=tuple(radius / np.sqrt(3.0)))
    peaks = local_maxima(response, radius=tuple(radius), threshold=-np.inf)
    values = response[tuple(peaks.T)]
    order = np.argsort(-values, kind="stable")
    return peaks[order], values[order]
