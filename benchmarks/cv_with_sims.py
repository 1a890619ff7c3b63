"""Do simulated brains help the CNN on real brains it never saw? delivr_cfos leave one group out, as in
cross_validation.py (same folds, same test patches and AUC examples), but each fold's CNN trains on the built-in
model's recipe: its 18 simulated brains at six geometries plus the other three groups' patches. Set against
cross_validation.py's committed rows (every method trained on the real patches alone).

Each finished fold is kept in out/ and the results rewritten, so a run cut short leaves what it finished and a
rerun goes on from there.

Run: python benchmarks/cv_with_sims.py [GROUP ...]   (only those test groups' folds, if named; needs ../shared/data; about 40 minutes per fold on 2 cores;
writes results/cv_with_sims.{json,md})
"""

from __future__ import annotations

import csv
import json
import sys

import report
from default_model import DELIVR, OUT, SIM, SIM_BRAINS, TRAINING_SIZE_SPREAD, training_manifest

from clarity_fast.manifest import read_manifest
from clarity_fast.model.crossval import METRICS, CnnMethod, CVReport, cross_validate, make_folds
from clarity_fast.model.samples import load_annotated
from clarity_fast.model.train import TrainSettings
from clarity_fast.settings import PrefilterSettings

FINISHED = OUT / "cv_with_sims_folds.jsonl"  # one finished fold's row per line


def write_results(rows: list[dict], *, folds: int) -> None:
    with_sims = CVReport(scheme="loo", rows=sorted(rows, key=lambda r: r["fold"]))
    real_only = json.loads((report.RESULTS / "cv_delivr.json").read_text())["folds"]
    table = []
    for fold in sorted({r["fold"] for r in real_only}):
        table += [["cnn, simulated + real", *r["test_groups"], *(r[k] for k in METRICS)] for r in with_sims.rows if r["fold"] == fold]
        table += [[f"{r['method']}, real only (cv_delivr)", *r["test_groups"], *(r[k] for k in METRICS)] for r in real_only if r["fold"] == fold]
    summary = with_sims.summary()["cnn"]
    table.append(["cnn, simulated + real: mean ± sd", "all", *(f"{summary[k][0]:.3f} ± {summary[k][1]:.3f}" for k in METRICS)])
    report.write(
        "cv_with_sims",
        data=dict(sim_brains=SIM_BRAINS, folds_done=len(rows), folds=folds, with_sims=with_sims.to_dict(by="group"),
                  real_only_source="results/cv_delivr.json"),
        columns=["training", "test group", "patch AUC", "precision", "recall", "F1", "F1 at the test-tuned threshold"],
        rows=table,
        notes=(
            f"delivr_cfos leave one group out (25 patches, 4 groups, annotations partial; matched within 3.5 voxels, z "
            f"counted double); {len(rows)} of {folds} folds run. The CNN rows with simulated brains train on the "
            f"built-in model's {SIM_BRAINS} simulated brains and the other groups' patches (defaults: width 32, up to 200 "
            "epochs, seed 0, validation volumes drawn from both); the real-only rows are cross_validation.py's "
            "committed results on the same folds."
        ),
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with (DELIVR / "index.csv").open() as f:
        index = list(csv.DictReader(f))
    manifest = training_manifest(index, set(), sim_brains=SIM_BRAINS, size_spread=TRAINING_SIZE_SPREAD, path=OUT / "train_all_delivr.csv")
    threshold = PrefilterSettings.threshold
    groups = {r["group"] for r in index}
    # cv numbers its folds over the sorted groups; here only the real ones are tested, in the same order
    folds = make_folds(sorted(groups), scheme="loo", splits=1, test_frac=0.5, seed=0)
    rows = [json.loads(line) for line in FINISHED.read_text().splitlines()] if FINISHED.exists() else []
    wanted = set(sys.argv[1:]) or groups  # test groups to run now (default: every one)
    if wanted - groups:
        sys.exit(f"no delivr_cfos group {', '.join(sorted(wanted - groups))}; the groups are {', '.join(sorted(groups))}")
    todo = [f for f in folds if f.index not in {r["fold"] for r in rows} and f.test_groups[0] in wanted]

    def keep(row: dict) -> None:
        with FINISHED.open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
        write_results(rows, folds=len(folds))
        print(json.dumps(row), flush=True)

    if todo:
        volumes = load_annotated(read_manifest(manifest), cell_diameter=SIM["diameter"], voxel_size=None, prefilter_threshold=threshold)
        cnn = CnnMethod(settings=TrainSettings(), prefilter_threshold=threshold)
        cross_validate(volumes, folds=todo, methods=[cnn], scheme="loo", seed=0, on_fold=keep)
    write_results(rows, folds=len(folds))
    print((report.RESULTS / "cv_with_sims.md").read_text())


if __name__ == "__main__":
    main()
