"""How much a misjudged `--cell-diameter` costs: the built-in model through `clarity-fast detect`, told a diameter
from 0.67x to 1.5x the true one, on four kinds of volume: the foreign generator's high-SNR Gaussian cells and its
thin-rimmed hollow balls (benchmarks/foreign_synthetic.py, 12 µm; dark inside 0.7 of the diameter, as a cytoplasmic
label around a large nucleus looks), one of our own held-out difficulty-1 brains (4×2×2 µm, 12 µm; from
benchmarks/default_model.py) and the four held-out delivr_cfos patches (nuclei taken as 8 µm: there the "true"
size is itself a judgement). Nothing is tuned on the result; it backs the advice in the README's "Choosing the
cell size". Matching: the study's rule (3.5 voxels, z counted double), in each file's own voxels.

Run: python benchmarks/stated_diameter.py   (needs ../shared/data for the delivr rows; writes
results/stated_diameter.{json,md}; about 5 minutes on 2 cores)
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import report
from default_model import DELIVR, cli, held_out_patches, held_out_sets
from foreign_synthetic import CONDITIONS, Condition, make_volume

from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, Scored, pool_volumes
from clarity_fast.io.points import read_points
from clarity_fast.io.volumes import write_tiff

OUT = report.OUT / "stated_diameter"
FRACTIONS = (0.67, 0.75, 0.83, 1.0, 1.17, 1.33, 1.5)


def test_sets() -> dict[str, list[tuple[Path, np.ndarray, str, float]]]:
    """(volume file, true centres, voxel size "Z,Y,X", true diameter µm) of each volume, by set."""
    def foreign(condition: Condition, *, seed: int) -> list[tuple[Path, np.ndarray, str, float]]:
        volume, truth = make_volume(condition, seed=seed)
        path = OUT / f"foreign_{seed}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_tiff(path, volume, voxel_size=condition.voxel)
        return [(path, truth, ",".join(f"{v:g}" for v in condition.voxel), condition.diameter)]

    with (DELIVR / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    held = held_out_sets(rows, held_out_patches(rows))

    def listed(entries: list) -> list[tuple[Path, np.ndarray, str, float]]:
        return [(v, read_points(p).zyx, g["voxel"].replace("x", ","), g["diameter"]) for _, v, p, g in entries]

    return {
        "foreign generator, high SNR": foreign(CONDITIONS[0], seed=2000),
        "foreign generator, thin hollow balls": foreign(
            dataclasses.replace(CONDITIONS[0], name="thin hollow balls", shape="ball", hollow=0.7), seed=2100
        ),
        "our generator, held-out brain": listed(held["simulated"][:1]),
        "delivr_cfos, held-out patches": listed(held["delivr_held_out"]),
    }


def detect(volume: Path, *, voxel: str, diameter: float) -> np.ndarray:
    out = OUT / "cells.csv"
    cli("detect", volume, "--out", out, "--voxel-size", voxel, "--cell-diameter", f"{diameter:.3f}")
    return read_points(out).zyx


def main() -> None:
    results, rows = [], []
    for name, volumes in test_sets().items():
        for fraction in FRACTIONS:
            found = [detect(volume, voxel=voxel, diameter=diameter * fraction) for volume, _, voxel, diameter in volumes]
            pooled = pool_volumes([Scored(p, None, v[1]) for p, v in zip(found, volumes)])
            m = pooled.match(radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
            results.append(dict(set=name, fraction=fraction, diameter=volumes[0][3] * fraction, **m.summary()))
            rows.append([name, f"{fraction:g}×", f"{volumes[0][3] * fraction:.1f}", m.precision, m.recall, m.f1])
            print(rows[-1], flush=True)
    md = report.write(
        "stated_diameter",
        data=dict(fractions=FRACTIONS, results=results),
        columns=["volume", "stated / true diameter", "stated µm", "precision", "recall", "F1"],
        rows=rows,
        notes=(
            "Built-in model through `clarity-fast detect` at its own threshold, told each diameter; pooled over the "
            "set's volumes; matched within 3.5 voxels, z counted double."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
