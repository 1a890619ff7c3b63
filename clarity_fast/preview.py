"""The QC picture: a maximum projection along z with each detection circled."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clarity_fast.io.png import write_png

MAX_SIDE = 2048  # larger projections are max-pooled down to this, so small cells stay visible
MIN_SIDE = 512  # smaller ones are enlarged (nearest neighbour) by the whole factor that brings them nearest this without passing it
RING = np.array([255, 64, 32], np.uint8)


def write_preview(path: Path, *, projection: np.ndarray, zyx: np.ndarray, radius_yx: tuple[float, float]) -> None:
    """Write the projection (contrast from its 0.5-99.8 percentiles) with rings at the detections' (y, x)."""
    step = max(1, int(np.ceil(max(projection.shape) / MAX_SIDE)))
    h, w = (-(-n // step) for n in projection.shape)
    padded = np.full((h * step, w * step), projection.min(), dtype=projection.dtype)
    padded[: projection.shape[0], : projection.shape[1]] = projection
    image = padded.reshape(h, step, w, step).max(axis=(1, 3)).astype(np.float64)
    lo, hi = np.percentile(image, [0.5, 99.8])
    grey = (np.clip((image - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)
    grow = max(1, MIN_SIDE // max(grey.shape))
    grey = np.kron(grey, np.ones((grow, grow), np.uint8))
    h, w = grey.shape
    rgb = np.repeat(grey[..., None], 3, axis=2)
    ry, rx = (max(r * grow / step, 2.0) for r in radius_yx)
    angles = np.linspace(0, 2 * np.pi, max(16, int(4 * (ry + rx))), endpoint=False)
    for y, x in (np.asarray(zyx, dtype=float).reshape(-1, 3)[:, 1:] + 0.5) * grow / step - 0.5:
        yy = np.clip(np.rint(y + 1.5 * ry * np.sin(angles)).astype(int), 0, h - 1)
        xx = np.clip(np.rint(x + 1.5 * rx * np.cos(angles)).astype(int), 0, w - 1)
        rgb[yy, xx] = RING
    write_png(path, rgb)
