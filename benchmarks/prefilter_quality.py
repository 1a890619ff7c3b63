"""Candidate recall against candidates per true cell, on simulated difficulty-1 brains and on delivr_cfos.

Run: python benchmarks/prefilter_quality.py [--delivr ../shared/data/delivr_cfos]
Matching follows the issue: within 3.5 voxels, z distances counted double (Hungarian, one-to-one).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import report

from clarity_fast.candidates import find_candidates
from clarity_fast.evaluate import AXIS_WEIGHTS as AXIS_SCALE
from clarity_fast.evaluate import RADIUS_VOXELS as RADIUS
from clarity_fast.evaluate import match_points
from clarity_fast.io.points import read_points
from clarity_fast.io.volumes import open_array, open_volume
from clarity_fast.settings import PrefilterSettings, Scale
from clarity_fast.simulate import SimulatedBrain, SimulationSettings

THRESHOLDS = (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
SIM_SHAPE = (48, 192, 192)
SIM_SEEDS = (1, 2, 3)
DELIVR_SCALE = Scale(voxel_size=(6.0, 1.62, 1.62), cell_diameter=8.0)



def curve(items) -> list[dict]:
    """items: (reader, truth zyx, scale). Recall and candidates per cell at each threshold."""
    tp = np.zeros(len(THRESHOLDS))
    n_cand = np.zeros(len(THRESHOLDS))
    n_true = 0
    for reader, truth, scale in items:
        cands = find_candidates(reader, settings=PrefilterSettings(scale=scale, threshold=min(THRESHOLDS)))
        n_true += len(truth)
        for i, t in enumerate(THRESHOLDS):
            keep = cands.response > t
            n_cand[i] += keep.sum()
            tp[i] += match_points(pred=cands.zyx[keep], truth=truth, radius=RADIUS, axis_scale=AXIS_SCALE).tp
    return [dict(threshold=t, recall=tp[i] / n_true, candidates_per_cell=n_cand[i] / n_true) for i, t in enumerate(THRESHOLDS)]


def simulated():
    for seed in SIM_SEEDS:
        brain = SimulatedBrain(SimulationSettings(shape=SIM_SHAPE, seed=seed, difficulty=1.0))
        yield open_array(brain.volume()), brain.cells.zyx, brain.settings.scale


def delivr(root: Path):
    with (root / "index.csv").open() as f:
        for row in csv.DictReader(f):
            reader = open_volume(root / row["volume_file"])
            yield reader, read_points(root / row["points_file"]).zyx, DELIVR_SCALE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delivr", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/delivr_cfos")
    args = parser.parse_args()
    results = {"simulated_difficulty_1": curve(simulated())}
    if args.delivr.is_dir():
        results["delivr_cfos"] = curve(delivr(args.delivr))
    rows = [[name, r["threshold"], r["recall"], r["candidates_per_cell"]] for name, rs in results.items() for r in rs]
    for row in rows:
        print(row)
    md = report.write(
        "prefilter_quality",
        data=dict(
            simulated=dict(shape=SIM_SHAPE, seeds=SIM_SEEDS, voxel_size=(4, 2, 2), cell_diameter_um=12),
            delivr=dict(voxel_size=DELIVR_SCALE.voxel_size, cell_diameter_um=DELIVR_SCALE.cell_diameter, patches=25),
            match=dict(radius_voxels=RADIUS, axis_weights=AXIS_SCALE),
            results=results,
        ),
        columns=["data", "threshold (noise units)", "recall", "candidates per true cell"],
        rows=rows,
        notes=(
            f"Simulated: {len(SIM_SEEDS)} brains {SIM_SHAPE} at difficulty 1, (4, 2, 2) µm, 12 µm cells. "
            "delivr_cfos: all 25 annotated patches (2,918 cells), voxel (6, 1.62, 1.62) µm, --cell-diameter 8. "
            "Matching within 3.5 voxels, z counted double. Default threshold: 3."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
