"""How much one volume per condition says: the built-in model through `detect` at its defaults on several volumes
(seeds) of the foreign generator's weakest conditions, where adapting the probabilities decides how many faint
cells are kept (whether the score mixture is trusted, see clarity_fast/score_mixture.py); and on volumes of the
same generator without a cell, where every detection is false.

Run: python benchmarks/foreign_seeds.py   (writes results/foreign_{seeds,empty}.{json,md}; about 10 minutes on 2 cores)
"""

from __future__ import annotations

import json

import foreign_synthetic as fs
import numpy as np
import report

from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, match_points
from clarity_fast.io.volumes import write_tiff

OUT = report.OUT / "foreign_seeds"
SEEDS = range(7000, 7008)  # not used by foreign_synthetic.py (1000 + i, 2000 + i) or fine_tune.py (5000 + i, 6000 + i)
CONDITIONS = [  # foreign_synthetic.py's weakest at detect's defaults, and one in between
    "low SNR + gradient + distractors",
    "very low SNR (peak 2.5 noise sd)",
    "blurred balls, low SNR (peak 3 noise sd)",
    "cells 2x longer along z, peak 4 noise sd",
    "noise blurred by 0.7 voxel",
    "gaussian cells, low SNR",
]


EMPTY = [  # volumes without a cell: what detect calls cells there is all false
    fs.Condition("no cells, flat background", cells=0),
    fs.Condition("no cells, fourfold gradient + distractors", cells=0, gradient=4.0, distractors=True),
    fs.Condition("no cells, photon counting, 0.5 photons background", cells=0, background=0.5, read_noise=0.0, offset=0.0),
    fs.Condition("no cells, noise blurred by 0.7 voxel", cells=0, noise_blur=0.7),
]


def empty_rows() -> tuple[list[dict], list[list]]:
    """Cells detect finds in volumes without any, per condition and seed."""
    results, rows = [], []
    for condition in EMPTY:
        found = []
        for seed in SEEDS:
            volume, _ = fs.make_volume(condition, seed=seed)
            path = OUT / "empty.tif"
            write_tiff(path, volume, voxel_size=condition.voxel)
            found.append(len(fs.detect_cnn(path, condition, "default").zyx))
        results.append(dict(condition=condition.name, cells_found=found))
        rows.append([condition.name, f"{np.mean(found):.1f}", f"{min(found)}–{max(found)}"])
        print(rows[-1], flush=True)
    return results, rows


def main() -> None:
    by_name = {c.name: c for c in fs.CONDITIONS}
    results, rows = [], []
    for name in CONDITIONS:
        condition = by_name[name]
        runs = []
        for seed in SEEDS:
            volume, truth = fs.make_volume(condition, seed=seed)
            path = OUT / f"{fs.CONDITIONS.index(condition)}_{seed}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_tiff(path, volume, voxel_size=condition.voxel)
            found = fs.detect_cnn(path, condition, "default")
            m = match_points(pred=found.zyx, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
            summary = json.loads(path.with_name("cells_default_None.summary.json").read_text())
            trusted = summary["adapted_by"] == "mixture"
            runs.append(dict(seed=seed, cells=len(truth), mixture_trusted=trusted, cell_share=summary["cell_share"],
                             mixture=summary["mixture"], **m.summary()))  # the mixture's fit, to study the decision
            print(name, seed, f"F1 {m.f1:.3f} P {m.precision:.3f} R {m.recall:.3f} mixture {'trusted' if trusted else 'not trusted'}", flush=True)
        f1 = np.array([r["f1"] for r in runs])
        precision = np.array([r["precision"] for r in runs])
        trusted = sum(r["mixture_trusted"] for r in runs)
        results.append(dict(condition=name, runs=runs, f1_mean=float(f1.mean()), f1_sd=float(f1.std()), f1_min=float(f1.min()),
                            f1_max=float(f1.max()), mixture_trusted=trusted))
        with_mixture = [r["f1"] for r in runs if r["mixture_trusted"]]
        without = [r["f1"] for r in runs if not r["mixture_trusted"]]
        rows.append([name, f"{f1.mean():.3f} ± {f1.std():.3f}", f"{f1.min():.3f}–{f1.max():.3f}",
                     f"{precision.min():.3f}–{precision.max():.3f}", f"{trusted} of {len(runs)}",
                     f"{np.mean(with_mixture):.3f}" if with_mixture else "", f"{np.mean(without):.3f}" if without else ""])
    empty, empty_table = empty_rows()
    md = report.write(
        "foreign_seeds",
        data=dict(seeds=list(SEEDS), conditions=results),
        columns=["condition", "F1 mean ± sd", "F1 range", "precision range", "mixture trusted", "mean F1 where trusted", "mean F1 where not"],
        rows=rows,
        notes=(
            f"The built-in model through `clarity-fast detect` at its defaults on {len(SEEDS)} volumes per condition "
            f"(seeds {SEEDS.start}–{SEEDS.stop - 1}) of foreign_synthetic.py's generator, 192×384×384 µm, 200 cells each; "
            "matched within 3.5 voxels, z counted double. 'mixture trusted': the score mixture set the odds "
            "factor (summary JSON `adapted_by`: mixture), raising it or leaving it at 1."
        ),
    )
    print(md.read_text())
    md = report.write(
        "foreign_empty",
        data=dict(seeds=list(SEEDS), conditions=empty),
        columns=["volume", "cells found, mean", "range"],
        rows=empty_table,
        notes=(
            f"The built-in model through `clarity-fast detect` at its defaults on {len(SEEDS)} volumes per condition "
            f"(seeds {SEEDS.start}–{SEEDS.stop - 1}) of foreign_synthetic.py's generator without a single cell, "
            "192×384×384 µm: every cell found is false."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
