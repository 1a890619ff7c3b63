"""What levelling odd planes (plane_levels.py) costs: reading every slab, and `detect` end to end, with and without.

The simulated 32×2150×2650 volume of detect_speed.py (4×2×2 µm, 12 µm cells; no plane is odd, so this is the cost of
looking). Each slab is read as detect reads it (slab depth 32 plus the prefilter's halo), by the plain reader and by
the levelled one, alternately, ROUNDS times; then the built-in model through `detect`'s steps, alternately.

Run: python benchmarks/odd_planes_speed.py   (writes results/odd_planes_speed.{json,md}; a few minutes, most of them
simulating the volume the first time)
"""

from __future__ import annotations

import time

import numpy as np
import report
from odd_planes import cells

from clarity_fast.candidates import SlabPrefilter, slab_ranges
from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.io.volumes import open_volume
from clarity_fast.noise_correlation import NoiseModel
from clarity_fast.plane_levels import LevelledReader
from clarity_fast.settings import PrefilterSettings, Scale

SHAPE = (32, 2150, 2650)
ROUNDS = 2


def read_seconds(path, *, levelled: bool) -> float:
    """Seconds to read every slab as detect reads it."""
    with open_volume(path) as plain:
        reader = LevelledReader(plain) if levelled else plain
        settings = PrefilterSettings(scale=Scale(voxel_size=report.SIMULATED[0], cell_diameter=report.SIMULATED[1]))
        prefilter = SlabPrefilter(settings=settings, shape=reader.shape, dtype=reader.dtype, noise=NoiseModel())
        start = time.perf_counter()
        for z0, z1 in slab_ranges(reader.shape[0], slab_depth=settings.slab_depth):
            reader.read_slab(*prefilter.planes_needed(z0, z1))
        return time.perf_counter() - start


def detect_seconds(path, scorer, *, levelled: bool) -> tuple[float, int]:
    with open_volume(path) as plain:
        start = time.perf_counter()
        found = cells(LevelledReader(plain) if levelled else plain, voxel_size=report.SIMULATED[0], diameter=report.SIMULATED[1], scorer=scorer)
        return time.perf_counter() - start, len(found)


def main() -> None:
    path = report.simulated_volume(SHAPE)
    scorer = OnnxScorer(resolve_model("default"))
    reads = {False: [], True: []}
    runs = {False: [], True: []}
    counts = {}
    for _ in range(ROUNDS):
        for levelled in (False, True):
            reads[levelled].append(read_seconds(path, levelled=levelled))
    for _ in range(ROUNDS):
        for levelled in (False, True):
            seconds, counts[levelled] = detect_seconds(path, scorer, levelled=levelled)
            runs[levelled].append(seconds)
    rows = [[name, " / ".join(f"{s:.2f}" for s in reads[lev]), " / ".join(f"{s:.1f}" for s in runs[lev]), counts[lev]]
            for name, lev in (("plain reader", False), ("levelled reader", True))]
    report.write(
        "odd_planes_speed",
        data=dict(shape=SHAPE, rounds=ROUNDS, read_s={str(k): v for k, v in reads.items()},
                  detect_s={str(k): v for k, v in runs.items()}, cells={str(k): v for k, v in counts.items()},
                  read_ratio=float(np.median(reads[True]) / np.median(reads[False])),
                  detect_ratio=float(np.median(runs[True]) / np.median(runs[False]))),
        columns=["reader", f"reading every slab, s ({ROUNDS} rounds, alternated)", "detect's steps end to end, s", "cells"],
        rows=rows,
        notes=(f"Simulated {SHAPE[0]}×{SHAPE[1]}×{SHAPE[2]} uint16 volume (.npy, memory-mapped), 4×2×2 µm, 12 µm cells; slab depth 32; "
               "built-in model, its planar ONNX graph, batch 4096, CPU."),
    )


if __name__ == "__main__":
    main()
