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
from pathlib import Path

import default_model as dm
import fine_tune as ft
import foreign_synthetic as fs
import numpy as np
import report

from clarity_fast.io.points import read_points
from clarity_fast.model.config import DEFAULT_EPOCHS

OUT = report.OUT / "fine_tune_real"


def tests_of(rows: list[dict]) -> list[tuple[str, Path, Path, dict]]:
    """(name, volume, points, scale) of delivr patches, as default_model.evaluate takes them."""
    return [(r["patch_id"], dm.DELIVR / r["volume_file"], dm.DELIVR / r["points_file"], dm.REAL) for r in rows]


def fitted_threshold(model: str, block: dict, folder: Path) -> float:
    """The probability threshold with the best F1 on the block (every candidate's probability, not adapted)."""
    out = folder / f"{Path(model).stem}_block_all.csv"
    ft.cli("detect", dm.DELIVR / block["volume_file"], "--model", model, "--out", out, "--voxel-size", dm.REAL["voxel"].replace("x", ","),
           "--cell-diameter", dm.REAL["diameter"], "--threshold", 0, "--no-adapt")
    return float(fs.fitted_threshold(read_points(out), read_points(dm.DELIVR / block["points_file"]).zyx))


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
        ft.cli("train", "--manifest", manifest, "--out", base, "--epochs", DEFAULT_EPOCHS, "--seed", 0, "--cell-diameter", dm.SIM["diameter"])
    block_manifest = folder / "block.csv"
    block_manifest.write_text("volume,points,voxel_size,cell_diameter,annotations\n"
                              f"{dm.DELIVR / block['volume_file']},{dm.DELIVR / block['points_file']},{dm.REAL['voxel']},{dm.REAL['diameter']},partial\n")
    trained = {"fine-tuned on the block": ["--from", base], "new network on the block": []}
    for name, extra in trained.items():
        pt = folder / f"{name.replace(' ', '_')}.pt"
        if not pt.exists():
            ft.cli("train", "--manifest", block_manifest, "--out", pt, "--seed", 0, *extra)
    models = {f"recipe without brain {args.brain}": base, **{n: folder / f"{n.replace(' ', '_')}.pt" for n in trained}}
    for pt in models.values():
        ft.cli("export", "--onnx", pt)
    results = {name: dm.evaluate(pt.with_suffix(".onnx"), tests_of(tests), folder=folder / pt.stem) for name, pt in models.items()}
    base_onnx = str(base.with_suffix(".onnx"))
    threshold = fitted_threshold(base_onnx, block, folder)
    results[f"recipe without brain {args.brain}, threshold fitted on the block"] = dict(
        dm.evaluate(base_onnx, tests_of(tests), "--threshold", threshold, "--no-adapt", folder=folder / "fitted"), threshold=threshold)
    results["built-in model (trained on patches of this brain: reference only)"] = dm.evaluate("default", tests_of(tests), folder=folder / "default")
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
