"""Build the built-in model (clarity_fast/data/default.onnx) reproducibly, and measure it on held-out data.

Training data: 18 simulated brains (difficulty 1, varied imaging conditions, cells 12 µm, voxels 4×2×2 µm) and
the real delivr_cfos patches (c-Fos nuclei, about 8 µm, voxels 6×1.62×1.62 µm; annotations partial) except one held-out patch per
group: the last one listed in index.csv with at least 20 annotations (or the last one, if none has).
Evaluation: `clarity-fast detect` with the exported model on the held-out delivr patches and on 3 fresh
simulated brains (another seed), matched with the study's rule (3.5 voxels, z counted double).

Run: python benchmarks/default_model.py --install   (needs ../shared/data; writes results/default_model.{json,md})
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import report

from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, match_points
from clarity_fast.io.points import read_points
from clarity_fast.model.config import DEFAULT_EPOCHS

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "default_model"
DELIVR = HERE.parents[1] / "shared" / "data" / "delivr_cfos"
PACKAGED = HERE.parent / "clarity_fast" / "data" / "default.onnx"
SIM = dict(voxel="4x2x2", diameter=12.0)
REAL = dict(voxel="6x1.62x1.62", diameter=8.0)


def cli(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "clarity_fast", *map(str, args)], check=True)


def held_out_patches(rows: list[dict]) -> set[str]:
    chosen = set()
    for group in dict.fromkeys(r["group"] for r in rows):
        mine = [r for r in rows if r["group"] == group]
        substantial = [r for r in mine if int(r["n_points"]) >= 20]
        chosen.add((substantial or mine)[-1]["patch_id"])
    return chosen


def simulated(folder: Path, *, seed: int, n: int) -> Path:
    if not (folder / "manifest.csv").exists():
        cli("simulate", folder, "--shape", "48,192,192", "--difficulty", 1, "--brains", n, "--seed", seed)
    return folder / "manifest.csv"


def training_manifest(rows: list[dict], held_out: set[str], *, sim_brains: int) -> Path:
    sims = simulated(OUT / f"sims{sim_brains}", seed=100, n=sim_brains)
    path = OUT / "train.csv"
    with path.open("w") as out, sims.open() as f:
        out.write("volume,points,group,voxel_size,cell_diameter,annotations\n")
        for row in csv.DictReader(f):
            out.write(f"{sims.parent / row['volume']},{sims.parent / row['points']},sim-{row['group']},{SIM['voxel']},{SIM['diameter']},complete\n")
        for row in rows:
            if row["patch_id"] not in held_out:
                out.write(f"{DELIVR / row['volume_file']},{DELIVR / row['points_file']},{row['group']},{REAL['voxel']},{REAL['diameter']},partial\n")
    return path


def evaluate(model: Path, volumes: list[tuple[str, Path, Path, dict]]) -> dict:
    """Detect in each volume with the exported model; pooled and per-volume precision / recall / F1."""
    per, tp, fp, fn = [], 0, 0, 0
    for name, volume, truth, scale in volumes:
        out = OUT / "detections" / f"{name}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        cli("detect", volume, "--model", model, "--out", out, "--voxel-size", scale["voxel"].replace("x", ","), "--cell-diameter", scale["diameter"])
        m = match_points(pred=read_points(out).zyx, truth=read_points(truth).zyx, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
        per.append(dict(volume=name, **m.summary()))
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return dict(precision=precision, recall=recall, f1=2 * precision * recall / max(precision + recall, 1e-12), tp=tp, fp=fp, fn=fn, volumes=per)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--sim-brains", type=int, default=18)
    parser.add_argument("--install", action="store_true", help="copy the model into the package as the built-in one")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with (DELIVR / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    held_out = held_out_patches(rows)
    manifest = training_manifest(rows, held_out, sim_brains=args.sim_brains)
    model_pt = OUT / f"default_e{args.epochs}_s{args.sim_brains}.pt"
    if not model_pt.exists():  # delete benchmarks/out/default_model to train again
        cli("train", "--manifest", manifest, "--out", model_pt, "--epochs", args.epochs, "--seed", 0, "--cell-diameter", SIM["diameter"])
    cli("export", "--onnx", model_pt, "--out", OUT / "default.onnx")
    tests = simulated(OUT / "test_sims", seed=300, n=3)
    with tests.open() as f:
        sims = [(f"sim-{r['group']}", tests.parent / r["volume"], tests.parent / r["points"], SIM) for r in csv.DictReader(f)]
    real = [(r["patch_id"], DELIVR / r["volume_file"], DELIVR / r["points_file"], REAL) for r in rows if r["patch_id"] in held_out]
    results = dict(simulated=evaluate(OUT / "default.onnx", sims), delivr_held_out=evaluate(OUT / "default.onnx", real))
    if args.install:
        shutil.copy(OUT / "default.onnx", PACKAGED)
    training = json.loads(model_pt.with_suffix(".train.json").read_text())["config"]
    md = report.write(
        "default_model",
        data=dict(held_out=sorted(held_out), epochs=args.epochs, sim_brains=args.sim_brains, training=training, **results),
        columns=["test set", "volumes", "precision", "recall", "F1", "TP", "FP", "FN"],
        rows=[[k, len(v["volumes"]), v["precision"], v["recall"], v["f1"], v["tp"], v["fp"], v["fn"]] for k, v in results.items()],
        notes=(
            f"The built-in model, evaluated by `clarity-fast detect` on data it never saw: 3 simulated difficulty-1 brains "
            f"(48×192×192, seed 300) and the held-out delivr_cfos patches {', '.join(sorted(held_out))}. "
            f"Validation AUC {training['training']['best_val_auc']:.4f}, threshold {training['threshold']:.3f}."
        ),
    )
    print(md.read_text())
    print(np.round([results["simulated"]["f1"], results["delivr_held_out"]["f1"]], 3))


if __name__ == "__main__":
    main()
