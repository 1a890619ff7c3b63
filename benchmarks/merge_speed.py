"""Merging duplicate detections: the compiled greedy pass (kernels/suppress.py) against the plain KD-tree loop
(kernels/reference.py), in the same run on the same detections, with identical results checked.

Detections: uniform over 2150×2650 planes at the density of the simulated benchmark volume (about 1,900 per
plane), a third with a second detection 1-3 voxels away (duplicates to merge); merge radius 1.5×4.5×4.5 voxels
(¾ of a 12 µm cell at 4×2×2 µm). Run: python benchmarks/merge_speed.py   (writes results/merge_speed.{json,md})
"""

from __future__ import annotations

import time

import numpy as np
import report

from clarity_fast.detection import merge_duplicates
from clarity_fast.kernels.reference import suppress_duplicates

RADIUS = (1.5, 4.5, 4.5)
PER_PLANE = 1900
SIZES = (10_000, 100_000, 1_000_000)


def detections(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    planes = max(n // PER_PLANE, 1)
    base = np.column_stack([rng.integers(0, planes, n), rng.integers(0, 2150, n), rng.integers(0, 2650, n)])
    twins = base[: n // 3] + rng.integers(-3, 4, size=(n // 3, 3)) * (0, 1, 1)
    zyx = np.concatenate([base, twins])[:n]
    return zyx, rng.random(len(zyx)).astype(np.float32)


def timed(fn, *args, **kwargs) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def main() -> None:
    rng = np.random.default_rng(0)
    merge_duplicates(*detections(100, rng), radius=RADIUS)  # compile (or load from the cache) first
    rows, runs = [], []
    for n in SIZES:
        zyx, scores = detections(n, rng)
        fast, kept = timed(merge_duplicates, zyx, scores, radius=RADIUS)
        slow, expected = timed(suppress_duplicates, zyx, scores, radius=RADIUS)
        assert np.array_equal(kept, expected)
        runs.append(dict(detections=n, kept=len(kept), compiled_s=fast, reference_s=slow, speedup=slow / fast))
        rows.append([f"{n:,}", f"{len(kept):,}", f"{fast:.3f}", f"{slow:.3f}", f"{slow / fast:.1f}×"])
        print(rows[-1], flush=True)
    md = report.write(
        "merge_speed",
        data=dict(radius=RADIUS, per_plane=PER_PLANE, runs=runs),
        columns=["detections", "kept", "compiled s", "reference s", "speed-up"],
        rows=rows,
        notes="Same detections, same run; identical kept sets checked. Times include the KD-tree and the sort (both versions).",
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
