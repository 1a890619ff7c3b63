"""Synthetic cleared-brain volumes with ground truth, hard enough that a detector has something to prove."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from clarity_fast.io.atomic import atomic_path, make_output_dir, undone_on_failure
from clarity_fast.io.points import write_points
from clarity_fast.io.volumes import write_tiff
from clarity_fast.progress import progress_bar, step
from clarity_fast.simulate.brain import SimulatedBrain, SimulationSettings

__all__ = ["CELLS_NAME", "VOLUME_NAME", "SimulatedBrain", "SimulationSettings", "brain_files", "write_brain", "write_brains"]

VOLUME_NAME = "volume.tif"
CELLS_NAME = "cells.csv"


def write_brain(out_dir: Path, *, settings: SimulationSettings, progress: bool | None = None) -> SimulatedBrain:
    """Write `volume.tif` (with its voxel size) and `cells.csv` (z,y,x voxels) into out_dir (both or neither)."""
    with undone_on_failure(*brain_files(out_dir)):
        make_output_dir(out_dir)
        brain = SimulatedBrain(settings)
        with progress_bar(total=brain.n_slabs, description=f"simulating {out_dir.name}", enabled=progress) as bar:

            def slabs():
                for slab in brain.slabs():
                    yield slab
                    step(bar)

            write_tiff(
                out_dir / VOLUME_NAME,
                slabs(),
                shape=settings.shape,
                dtype=np.uint16,
                voxel_size=settings.scale.voxel_size,
                compression="zlib",
            )
        write_points(out_dir / CELLS_NAME, brain.cells)
    return brain


def brain_files(out_dir: Path) -> tuple[Path, Path, Path]:
    """What write_brain makes: the volume, its cells and their folder."""
    return out_dir / VOLUME_NAME, out_dir / CELLS_NAME, out_dir


def write_brains(out_dir: Path, *, settings: SimulationSettings, n: int, progress: bool | None = None) -> Path:
    """N brains of varied imaging conditions in out_dir/brain_KK/, plus manifest.csv (volume,points,group); all or
    none of them."""
    names = [f"brain_{k:02d}" for k in range(n)]
    manifest = out_dir / "manifest.csv"
    with undone_on_failure(*[p for name in names for p in brain_files(out_dir / name)], manifest, out_dir):
        make_output_dir(out_dir)
        seeds = np.random.SeedSequence(settings.seed).generate_state(n, dtype=np.uint32)
        rows = ["volume,points,group"]
        for name, seed in zip(names, seeds):
            write_brain(out_dir / name, settings=replace(settings, seed=int(seed)), progress=progress)
            rows.append(f"{name}/{VOLUME_NAME},{name}/{CELLS_NAME},{name}")
        with atomic_path(manifest) as tmp:
            tmp.write_text("\n".join(rows) + "\n")
    return manifest
