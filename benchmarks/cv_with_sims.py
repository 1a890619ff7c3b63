"""Do simulated brains help the CNN on real brains it never saw? delivr_cfos leave one group out, as in
cross_validation.py (same folds, same test patches and AUC examples), but each fold's CNN trains on the built-in
model's recipe: its 18 simulated brains at six geometries plus the other three groups' patches. Set against
cross_validation.py's committed rows (every method trained on the real patches alone).

Run: python benchmarks/cv_with_sims.py   (needs ../shared/data; about 25 minutes per fold on 2 cores;
writes results/cv_with_sims.{json,md})
"""

from __future__ import annotations

import csv
import json

import report
from default_model import DELIVR, OUT, SIM, SIM_BRAINS, TRAINING_SIZE_SPREAD, training_manifest

from clarity_fast.manifest import read_manifest
from clarity_fast.model.crossval import CnnMethod, cross_validate, make_folds
from clarity_fast.model.samples import load_annotated
from clarity_fast.model.train import TrainSettings
from clarity_fast.settings import PrefilterSettings


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with (DELIVR / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    manifest = training_manifest(rows, set(), sim_brains=SIM_BRAINS, size_spread=TRAINING_SIZE_SPREAD, path=OUT / "train_all_delivr.csv")
    threshold = PrefilterSettings.threshold
    volumes = load_annotated(read_manifest(manifest), cell_diameter=SIM["diameter"], voxel_size=None, prefilter_threshold=threshold)
    real = sorted({r["group"] for r in rows})
    # cv numbers its folds over the sorted groups; here only the real ones are tested, in the same order
    folds = make_folds(real, scheme="loo", splits=1, test_frac=0.5, seed=0)
    cnn = CnnMethod(settings=TrainSettings(), prefilter_threshold=threshold)
    with_sims = cross_validate(volumes, folds=folds, methods=[cnn], scheme="loo", seed=0, on_fold=lambda r: print(json.dumps(r), flush=True))
    real_only = json.loads((report.RESULTS / "cv_delivr.json").read_text())["folds"]
    keys = ["patch_auc", "precision", "recall", "f1", "f1_test_tuned"]
    table = [["cnn, simulated + real", *r["test_groups"], *(r[k] for k in keys)] for r in with_sims.rows]
    table += [[f"{r['method']}, real only (cv_delivr)", *r["test_groups"], *(r[k] for k in keys)] for r in real_only]
    summary = with_sims.summary()["cnn"]
    table.append(["cnn, simulated + real: mean ± sd", "all", *(f"{summary[k][0]:.3f} ± {summary[k][1]:.3f}" for k in keys)])
    md = report.write(
        "cv_with_sims",
        data=dict(sim_brains=SIM_BRAINS, with_sims=with_sims.to_dict(by="group"), real_only_source="results/cv_delivr.json"),
        columns=["training", "test group", "patch AUC", "precision", "recall", "F1", "F1 at the test-tuned threshold"],
        rows=table,
        notes=(
            "delivr_cfos leave one group out (25 patches, 4 groups, annotations partial; matched within 3.5 voxels, z "
            "counted double). The CNN rows with simulated brains train on the built-in model's 18 simulated brains "
            "and the other groups' patches (defaults: width 32, up to 200 epochs, seed 0, validation volumes drawn "
            "from both); the real-only rows are cross_validation.py's committed results on the same folds."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
