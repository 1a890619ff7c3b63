"""How the built-in model's detection threshold trades one kind of data against another.

The model's threshold was chosen on its validation volumes: simulated brains and real delivr_cfos patches,
whose annotations are partial. On clean volumes from another generator its recall falls (foreign_synthetic.md),
which asks whether a lower threshold would serve everyone better. Here each held-out set of default_model.py and
the test volume of each foreign_synthetic.py condition are detected once at a low threshold (otherwise at detect's
defaults: probabilities adapted to each volume's share of cells, a factor that does not depend on the threshold); since duplicates are
merged greedily by score, keeping the detections above T afterwards equals detecting at T, so one run per volume
serves the whole sweep (but for the second prefilter pass on clean volumes, detect's default since 2026-12-07, whose
cells are added where they lie a diameter from the first pass's cells at the threshold of the run: there it is
close, not exact). A last row lets each volume choose its own threshold without labels: the one that
maximises the F1 its own probabilities expect, were they calibrated for it (the F1-optimal rule for calibrated
scores); it shows whether a per-volume threshold could stand in for the model's one.

Run: python benchmarks/threshold_sweep.py   (needs ../shared/data; writes results/threshold_sweep.{json,md}; a few minutes)
"""

from __future__ import annotations

import csv

import default_model as dm
import foreign_synthetic as fs
import numpy as np
import report

from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, Scored, pool_volumes
from clarity_fast.export.model_file import DEFAULT_MODEL
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.io.points import read_points
from clarity_fast.io.volumes import write_tiff

OUT = report.OUT / "threshold_sweep"
FLOOR = 0.01  # every threshold swept is above it
# the built-in model's own threshold joins these
THRESHOLDS = [0.05, 0.08, 0.1, 0.12, 0.15, 0.18, 0.2, 0.23, 0.27, 0.3, 0.35, 0.4]


def sweep(items: list[Scored], thresholds: list[float]) -> np.ndarray:
    """F1 at each threshold of the detections pooled over volumes."""
    return pool_volumes(items).f1_by_threshold(np.asarray(thresholds), radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)


def expected_f1_threshold(scores: np.ndarray) -> float:
    """The threshold at which a volume's detections, taken at their probabilities, expect the best F1."""
    p = np.sort(np.asarray(scores, dtype=float))[::-1]
    if len(p) == 0:
        return 1.0
    expected_tp = np.cumsum(p)  # keeping the k most probable: expected F1 = 2 TP / (k + expected cells)
    return float(p[np.argmax(2 * expected_tp / (np.arange(1, len(p) + 1) + p.sum()))])


def own_thresholds_f1(items: list[Scored]) -> tuple[float, list[float]]:
    """Pooled F1 when each volume keeps its detections above its own expected-F1 threshold, and those thresholds."""
    thresholds = [expected_f1_threshold(item.scores) for item in items]
    kept = [Scored(item.pred[item.scores >= t], item.scores[item.scores >= t], item.truth) for item, t in zip(items, thresholds)]
    return pool_volumes(kept).match(radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS).f1, thresholds


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    threshold = OnnxScorer(DEFAULT_MODEL).config.threshold
    swept = sorted([*THRESHOLDS, threshold])
    with (dm.DELIVR / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    pooled, own, own_thresholds = {}, {}, {}
    for name, volumes in dm.held_out_sets(rows, dm.held_out_patches(rows)).items():
        items = []
        for volume_name, volume, truth, geometry in volumes:
            out = OUT / f"{volume_name}.csv"
            dm.cli("detect", volume, "--out", out, "--threshold", FLOOR, "--voxel-size", geometry["voxel"].replace("x", ","),
                   "--cell-diameter", geometry["diameter"])
            found = read_points(out)
            items.append(Scored(found.zyx, found.score, read_points(truth).zyx))
        pooled[name] = sweep(items, swept)
        own[name], own_thresholds[name] = own_thresholds_f1(items)
    foreign, foreign_own = [], []
    for i, condition in enumerate(fs.CONDITIONS):
        volume, truth = fs.make_volume(condition, seed=2000 + i)  # foreign_synthetic's test volume
        path = OUT / f"foreign_{i}.tif"
        write_tiff(path, volume, voxel_size=condition.voxel)
        found = fs.detect_cnn(path, condition, "default", threshold=FLOOR)
        foreign.append(sweep([Scored(found.zyx, found.score, truth)], swept))
        f1, (t,) = own_thresholds_f1([Scored(found.zyx, found.score, truth)])
        foreign_own.append(f1)
        own_thresholds.setdefault("foreign", []).append(t)
    foreign = np.asarray(foreign)
    sets = {**{k: v.tolist() for k, v in pooled.items()}, "foreign_mean": foreign.mean(axis=0).tolist(), "foreign_min": foreign.min(axis=0).tolist()}
    own |= {"foreign_mean": float(np.mean(foreign_own)), "foreign_min": float(np.min(foreign_own))}
    labels = {
        "simulated": "3 simulated brains, 4×2×2 µm",
        "simulated_geometries": "8 simulated brains, 8 geometries",
        "delivr_held_out": "4 held-out delivr patches (partial annotations)",
        "foreign_mean": f"foreign generator, mean of {len(fs.CONDITIONS)} conditions",
        "foreign_min": "foreign generator, worst condition",
    }
    md = report.write(
        "threshold_sweep",
        data=dict(model_threshold=threshold, thresholds=swept, f1=sets, f1_own_expected_f1_thresholds=own, own_thresholds=own_thresholds,
                  foreign_conditions=[c.name for c in fs.CONDITIONS], foreign_f1=foreign.tolist(), foreign_f1_own_thresholds=foreign_own),
        columns=["threshold", *labels.values()],
        rows=[[f"{t:.3g}" + (" (model)" if t == threshold else ""), *[f"{sets[k][j]:.3f}" for k in labels]] for j, t in enumerate(swept)]
        + [["each volume's own expected-F1 threshold", *[f"{own[k]:.3f}" for k in labels]]],
        notes=(
            f"The built-in model (threshold {threshold:.3f}) through `clarity-fast detect` at threshold {FLOOR}, its "
            "detections then kept above each threshold; pooled F1 per set (matched within 3.5 voxels, z counted double), "
            "and the mean and the worst F1 over the foreign generator's conditions. Last row: each volume keeps the detections "
            "above the threshold that maximises the F1 its own probabilities expect (no labels used)."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
