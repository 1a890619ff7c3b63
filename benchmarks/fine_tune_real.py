"""Fine-tuning on real data, honestly: a model made by the built-in model's recipe without one delivr_cfos brain,
then adapted to that brain from one of its annotated patches, and tested on the brain's other patches.

The built-in model has seen a patch of every delivr brain, so it cannot be tested this way itself. Here the
recipe (default_model.py: 18 simulated brains and the delivr patches, seed 0, train's defaults) is run with every
patch of brain BRAIN left out. The lab's "annotated block" is the brain's first listed patch with at least 20
annotations; the test is all its other patches, pooled. Compared, each through `clarity-fast detect` at its
defaults: the model as it is; with a threshold fitted on the block; fine-tuned on the block (`train --from`);
a new network trained on the block alone; and, for reference only, the built-in model (which trained on patches
of this brain, some of them test patches here). delivr's annotations are partial and drawn to no one rule
(README, "Cross-validation results"), so the block is marked `annotations=partial`, as the recipe marks them.
Run: python benchmarks/fine_tune_real.py [--brain 1147]   (needs ../shared/data; about 40 minutes alone on 2 cores,
most of it training the model without the brain; writes results/fine_tune_real.{json,md})
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import default_model as dm
import numpy as np
import report

from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, best_threshold, match_points
from clarity_fast.io.points import read_points
from clarity_fast.model.config import DEFAULT_EPOCHS

OUT = report.OUT / "fine_tune_real"


def cli(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "clarity_fast", *map(str, args)], check=True, capture_output=True)


def detect(model: str, volume: Path, out: Path, *extra: object) -> Path:
    """`clarity-fast detect` at delivr's scale; the detections file."""
    cli("detect", volume, "--model", model, "--out", out, "--voxel-size", dm.REAL["voxel"].replace("x", ","),
        "--cell-diameter", dm.REAL["diameter"], *extra)
    return out


def pooled(model: str, tests: list[dict], folder: Path, *extra: object) -> dict:
    """Detections in every test patch, matched to its annotations and pooled."""
    tp = fp = fn = 0
    for row in tests:
        found = detect(model, dm.DELIVR / row["volume_file"], folder / f"{Path(model).stem}_{row['patch_id']}{'_fitted' if extra else ''}.csv", *extra)
        m = match_points(pred=read_points(found).zyx, truth=read_points(dm.DELIVR / row["points_file"]).zyx, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return dict(precision=precision, recall=recall, f1=2 * precision * recall / max(precision + recall, 1e-12), tp=tp, fp=fp, fn=fn)


def fitted_threshold(model: str, block: dict, folder: Path) -> float:
    """The probability threshold with the best F1 on the block (every candidate's probability, not adapted)."""
    found = read_points(detect(model, dm.DELIVR / block["volume_file"], folder / f"{Path(model).stem}_block_all.csv", "--threshold", 0, "--no-adapt"))
    threshold, _ = best_threshold(pred=found.zyx, scores=found.score, truth=read_points(dm.DELIVR / block["points_file"]).zyx,
                                  radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
    return float(threshold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brain", default="1147")
    args = parser.parse_args()
    folder = OUT / args.brain
    folder.mkdir(parents=True, exist_ok=True)
    with (dm.DELIVR / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    mine = [r for r in rows if r["group"] == args.brain]
    block = next(r for r in mine if int(r["n_points"]) >= 20)
    tests = [r for r in mine if r is not block]
    left_out = dm.held_out_patches(rows) | {r["patch_id"] for r in mine}
    manifest = dm.training_manifest(rows, left_out, sim_brains=dm.SIM_BRAINS, size_spread=dm.TRAINING_SIZE_SPREAD, path=dm.OUT / f"train_without_{args.brain}.csv")
    base = folder / f"without_{args.brain}.pt"
    if not base.exists():  # the recipe's training, as default_model.py runs it
        cli("train", "--manifest", manifest, "--out", base, "--epochs", DEFAULT_EPOCHS, "--seed", 0, "--cell-diameter", dm.SIM["diameter"])
    block_manifest = folder / "block.csv"
    block_manifest.write_text("volume,points,voxel_size,cell_diameter,annotations\n"
                              f"{dm.DELIVR / block['volume_file']},{dm.DELIVR / block['points_file']},{dm.REAL['voxel']},{dm.REAL['diameter']},partial\n")
    trained = {"fine-tuned on the block": ["--from", base], "new network on the block": []}
    for name, extra in trained.items():
        pt = folder / f"{name.replace(' ', '_')}.pt"
        if not pt.exists():
            cli("train", "--manifest", block_manifest, "--out", pt, "--seed", 0, *extra)
    models = {f"recipe without brain {args.brain}": base, **{n: folder / f"{n.replace(' ', '_')}.pt" for n in trained}}
    for pt in models.values():
        cli("export", "--onnx", pt)
    results = {name: pooled(str(pt.with_suffix(".onnx")), tests, folder) for name, pt in models.items()}
    base_onnx = str(base.with_suffix(".onnx"))
    threshold = fitted_threshold(base_onnx, block, folder)
    results[f"recipe without brain {args.brain}, threshold fitted on the block"] = dict(
        pooled(base_onnx, tests, folder, "--threshold", threshold, "--no-adapt"), threshold=threshold)
    results["built-in model (trained on patches of this brain: reference only)"] = pooled("default", tests, folder)
    logs = {n: json.loads(pt.with_suffix(".train.json").read_text())["config"].get("training") for n, pt in models.items()}
    md = report.write(
        "fine_tune_real",
        data=dict(brain=args.brain, block=block["patch_id"], block_cells=int(block["n_points"]), tests=[r["patch_id"] for r in tests],
                  test_cells=sum(int(r["n_points"]) for r in tests), left_out_of_the_recipe=sorted(left_out), results=results, training=logs),
        columns=["model", "precision", "recall", "F1", "TP", "FP", "FN"],
        rows=[[n, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["tp"], r["fp"], r["fn"]] for n, r in results.items()],
        notes=(
            f"delivr_cfos brain {args.brain}: the block is patch {block['patch_id']} ({block['n_points']} annotations, "
            f"partial), the test its other {len(tests)} patches ({sum(int(r['n_points']) for r in tests)} annotations), "
            "pooled; every model through `clarity-fast detect` at its defaults (6×1.62×1.62 µm, 8 µm cells), matched "
            "within 3.5 voxels, z counted double. The recipe: default_model.py's training data and settings with every "
            f"patch of brain {args.brain} left out. The fitted threshold is the best on the block's candidates' "
            "probabilities, not adapted (`detect --threshold T --no-adapt`)."
        ),
    )
    print(md.read_text())
    print(np.round([r["f1"] for r in results.values()], 3))


if __name__ == "__main__":
    main()
