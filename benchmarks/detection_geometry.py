"""The experiment behind two detection constants: how far apart prefilter candidates must be
(settings.SEPARATION_PER_RADIUS) and how close two detections must be to count as one cell
(settings.MERGE_DIAMETERS). The built-in model, through `detect`, on the data default_model.py holds out
(3 new simulated brains and the held-out delivr_cfos patches), at the model's own threshold.

Run: python benchmarks/detection_geometry.py   (after default_model.py; writes results/detection_geometry.{json,md})
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import default_model
import report

import clarity_fast.settings as geometry
from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, match_points
from clarity_fast.io.points import read_points
from clarity_fast.run_detect import DetectRequest, run_detection

SEPARATIONS = (0.5, 1.0, 1.5)  # cell radii
MERGES = (0.5, 0.75, 1.0)  # cell diameters


def test_sets() -> dict[str, list[tuple[str, Path, Path, dict]]]:
    with (default_model.DELIVR / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    sets = default_model.held_out_sets(rows, default_model.held_out_patches(rows))
    return {name: sets[name] for name in ("simulated", "delivr_held_out")}


def score(volumes: list[tuple[str, Path, Path, dict]]) -> dict:
    out = default_model.OUT / "geometry.csv"
    tp = fp = fn = candidates = 0
    for _, volume, truth, scale in volumes:
        voxel = default_model.voxel_size(scale)
        run_detection(DetectRequest(volume=volume, out=out, voxel_size=voxel, cell_diameter=scale["diameter"], progress=False))
        candidates += json.loads(out.with_suffix(".summary.json").read_text())["candidates"]
        m = match_points(pred=read_points(out).zyx, truth=read_points(truth).zyx, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    return dict(candidates=candidates, precision=tp / max(tp + fp, 1), recall=tp / max(tp + fn, 1), f1=2 * tp / max(2 * tp + fp + fn, 1))


def main() -> None:
    sets = test_sets()
    results = []
    for separation in SEPARATIONS:
        for merge in MERGES:
            geometry.SEPARATION_PER_RADIUS, geometry.MERGE_DIAMETERS = separation, merge
            for name, volumes in sets.items():
                results.append(dict(set=name, separation_radii=separation, merge_diameters=merge, **score(volumes)))
                print(results[-1], flush=True)
    md = report.write(
        "detection_geometry",
        data=dict(results=results),
        columns=["test set", "candidate separation (radii)", "merge distance (diameters)", "candidates", "precision", "recall", "F1"],
        rows=[[r["set"], r["separation_radii"], r["merge_diameters"], r["candidates"], r["precision"], r["recall"], r["f1"]] for r in results],
        notes=(
            "The built-in model through `detect` at its own threshold, on 3 new simulated brains (48×192×192, seed 300) "
            "and the held-out delivr_cfos patches; matched within 3.5 voxels, z counted double. Defaults: separation "
            "1 radius, merge 0.75 diameters."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
