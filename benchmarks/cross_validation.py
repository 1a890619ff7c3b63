"""The issue's cross-validation results: 9 simulated difficulty-1 brains (leave one out) and delivr_cfos
(leave one group out), CNN against blob detection and template matching, via the `cv` command.

Run: python benchmarks/cross_validation.py [sim|delivr|delivr_validate_by_group ...]   (writes results/cv_<set>.{md,json} and _roc.png)
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS = HERE / "results"
DELIVR = HERE.parents[1] / "shared" / "data" / "delivr_cfos"


def sim_manifest() -> Path:
    root = OUT / "sims"
    if not (root / "manifest.csv").exists():
        subprocess.run(
            ["clarity-fast", "simulate", str(root), "--shape", "48,192,192", "--difficulty", "1", "--brains", "9", "--seed", "7"],
            check=True,
        )
    return root / "manifest.csv"


def delivr_manifest() -> Path:
    path = OUT / "delivr_manifest.csv"
    with (DELIVR / "index.csv").open() as f, path.open("w") as out:
        out.write("volume,points,group,voxel_size,annotations\n")
        for row in csv.DictReader(f):
            out.write(f"{DELIVR / row['volume_file']},{DELIVR / row['points_file']},{row['group']},6x1.62x1.62,partial\n")
    return path


RUNS = {
    "sim": (sim_manifest, ["--scheme", "loo", "--cell-diameter", "12"]),
    "delivr": (delivr_manifest, ["--scheme", "loo", "--cell-diameter", "8"]),
    # the CNN again, its validation held out by brain rather than by patch (the baselines choose no validation set)
    "delivr_validate_by_group": (delivr_manifest, ["--scheme", "loo", "--cell-diameter", "8", "--method", "cnn", "--validate-by", "group"]),
    # the CNN again on patches of 16 working voxels, a third more context on each axis (the architecture question)
    "delivr_patch16": (delivr_manifest, ["--scheme", "loo", "--cell-diameter", "8", "--method", "cnn", "--patch", "16"]),
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    for name in sys.argv[1:] or list(RUNS):
        make_manifest, args = RUNS[name]
        folder = OUT / f"cv_{name}"
        subprocess.run(["clarity-fast", "cv", "--manifest", str(make_manifest()), *args, "--out", str(folder)], check=True)
        shutil.copy(folder / "cv.md", RESULTS / f"cv_{name}.md")
        shutil.copy(folder / "cv.json", RESULTS / f"cv_{name}.json")
        shutil.copy(folder / "roc.png", RESULTS / f"cv_{name}_roc.png")


if __name__ == "__main__":
    main()
