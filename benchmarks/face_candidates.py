"""Candidates on pure noise at the volume's faces against inside, with the prefilter's fold scales (kernels.filters.
fold_scale: each curvature scaled back to the noise it carries inside where reflection reads samples twice) and
without them (the prefilter before 2026-12-07, the scales set to 1 in the same run).

Volumes: 64×256×256 voxels of white Gaussian noise (sd 3 counts on 100, uint16), three geometries, prefilter
thresholds 2.5 (the second pass's) and 3 (the model's). Per axis: candidates per plane on the two face planes,
within the Gaussian kernel's reach of a face (the face planes left out) and further inside.

Run: python benchmarks/face_candidates.py   (writes results/face_candidates.{json,md}; about a minute on 2 cores)
"""

from __future__ import annotations

from contextlib import contextmanager
from unittest import mock

import numpy as np
import report

from clarity_fast.candidates import find_candidates
from clarity_fast.io.volumes import open_array
from clarity_fast.kernels import filters
from clarity_fast.settings import PrefilterSettings, Scale

SHAPE = (64, 256, 256)
GEOMETRIES = {"4×2×2 µm, 12 µm cells": Scale(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0),
              "2×2×2 µm, 12 µm cells": Scale(voxel_size=(2.0, 2.0, 2.0), cell_diameter=12.0),
              "1×1×1 µm, 16 µm cells": Scale(voxel_size=(1.0, 1.0, 1.0), cell_diameter=16.0)}
THRESHOLDS = (2.5, 3.0)


@contextmanager
def without_fold_scales():
    """The prefilter with every fold scale 1: reflection read as if each tap read a sample of its own."""
    with mock.patch.object(filters, "fold_scale", lambda kernels, samples: np.ones(len(kernels), np.float32)), \
         mock.patch.object(filters, "axis_fold_scales", lambda kernels, n: np.ones((len(kernels), n), np.float32)):
        yield


def per_plane(zyx: np.ndarray, *, axis: int, n: int, reach: int) -> dict:
    """Candidates per plane along `axis`: on the face planes, within `reach` of a face (faces left out), inside."""
    d = np.minimum(zyx[:, axis], n - 1 - zyx[:, axis])
    return {"face": float(np.sum(d == 0)) / 2, "near": float(np.sum((d > 0) & (d <= reach))) / (2 * reach),
            "inside": float(np.sum(d > reach)) / (n - 2 * reach - 2)}


def main() -> None:
    volume = np.clip(np.rint(100 + np.random.default_rng(0).normal(0, 3, SHAPE)), 0, None).astype(np.uint16)
    rows, data = [], []
    for name, scale in GEOMETRIES.items():
        for threshold in THRESHOLDS:
            settings = PrefilterSettings(scale=scale, threshold=threshold)
            found = {"with fold scales": find_candidates(open_array(volume), settings=settings).zyx}
            with without_fold_scales():
                found["without (before)"] = find_candidates(open_array(volume), settings=settings).zyx
            for variant, zyx in found.items():
                axes = [per_plane(zyx, axis=a, n=n, reach=int(filters.TRUNCATE * s + 0.5)) for a, (n, s) in enumerate(zip(SHAPE, settings.sigma))]
                data.append(dict(geometry=name, threshold=threshold, variant=variant, candidates=len(zyx), axes=axes))
                rows.append([name, threshold, variant, len(zyx), *(" / ".join(f"{v:.2f}" for v in a.values()) for a in axes)])
    notes = (f"Pure white noise, {'×'.join(map(str, SHAPE))} voxels (sd 3 counts on 100, uint16), the same volume throughout. "
             "Per axis: candidates per plane on the face planes / within the Gaussian kernel's reach of a face / inside.")
    print(report.write("face_candidates", data=dict(shape=SHAPE, results=data),
                       columns=["geometry", "prefilter threshold", "prefilter", "candidates", "z: face / near / inside", "y", "x"],
                       rows=rows, notes=notes).read_text())


if __name__ == "__main__":
    main()
