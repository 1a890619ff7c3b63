"""What the calibration and the training length buy, on held-out folds: for each fold one network is trained
(`--epochs`), then the test F1 is measured with the network's own probability (threshold chosen on the validation
volumes, as before the calibration existed) and with the fitted calibration (threshold chosen the same way).

Run: python benchmarks/training_ablation.py [--epochs 30] [--folds 0,3,7] sim|delivr
(needs benchmarks/out/sims from cross_validation.py, or ../shared/data; writes results/training_ablation_<set>_e<N>.*)
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

import numpy as np
import report
from cross_validation import delivr_manifest, sim_manifest

from clarity_fast.detection import logits_at
from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, pool_volumes
from clarity_fast.manifest import read_manifest
from clarity_fast.model.config import Calibration
from clarity_fast.model.crossval import make_folds
from clarity_fast.model.samples import AnnotatedVolume, load_annotated
from clarity_fast.model.store import TorchScorer
from clarity_fast.model.train import TrainSettings, choose_threshold, split_validation, train
from clarity_fast.settings import PrefilterSettings

SETS = {"sim": (sim_manifest, 12.0), "delivr": (delivr_manifest, 8.0)}


def test_scores(volumes: list[AnnotatedVolume], logits: list[np.ndarray], *, calibration: Calibration, threshold: float) -> dict:
    """Pooled test detection at `threshold`, and at the threshold best for the test data itself; `logits`: the
    network's for each volume's `detectable` candidates."""
    pooled = pool_volumes([v.detected(logit, calibration=calibration, native=True) for v, logit in zip(volumes, logits)])
    m = pooled.match(threshold=threshold, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
    _, tuned = pooled.best_threshold(radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
    return dict(f1=m.f1, precision=m.precision, recall=m.recall, f1_test_tuned=tuned.f1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", choices=sorted(SETS))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--folds", default="", help="comma-separated fold indices (default: all, leave one group out)")
    args = parser.parse_args()
    make_manifest, diameter = SETS[args.set]
    volumes = load_annotated(read_manifest(make_manifest()), cell_diameter=diameter, voxel_size=None, prefilter_threshold=PrefilterSettings.threshold)
    folds = make_folds([v.group for v in volumes], scheme="loo", splits=1, test_frac=0.5, seed=0)
    if args.folds:
        folds = [f for f in folds if str(f.index) in args.folds.split(",")]
    settings = TrainSettings(epochs=args.epochs, seed=0)
    rows = []
    for fold in folds:
        start = time.perf_counter()
        train_set = [v for v in volumes if v.group not in fold.test_groups]
        test_set = [v for v in volumes if v.group in fold.test_groups]
        trained = train(train_set, settings=settings, prefilter_threshold=PrefilterSettings.threshold, progress=False)
        scorer = TorchScorer(trained.net)
        _, val_set = split_validation(train_set, fraction=settings.validation_fraction, seed=settings.seed)
        patch = settings.network.patch
        val_logits = [logits_at(v.native, centres=v.detectable.zyx, scorer=scorer, patch=patch, grid=v.grid) for v in val_set]
        test_logits = [logits_at(v.native, centres=v.detectable.zyx, scorer=scorer, patch=patch, grid=v.grid) for v in test_set]
        plain_threshold, _ = choose_threshold(val_set, logits=val_logits, calibration=Calibration())
        plain = test_scores(test_set, test_logits, calibration=Calibration(), threshold=plain_threshold)
        calibrated = test_scores(test_set, test_logits, calibration=trained.config.calibration, threshold=trained.config.threshold)
        rows.append(dict(fold=fold.index, test=list(fold.test_groups), epochs_run=len(trained.history), plain=plain,
                         calibrated=calibrated, calibration=asdict(trained.config.calibration), seconds=time.perf_counter() - start))
        print(rows[-1], flush=True)
    mean = {k: {m: float(np.mean([r[k][m] for r in rows])) for m in rows[0][k]} for k in ("plain", "calibrated")}
    md = report.write(
        f"training_ablation_{args.set}_e{args.epochs}",
        data=dict(set=args.set, epochs=args.epochs, folds=rows, mean=mean),
        columns=["fold", "test", "F1 network only", "F1 calibrated", "test-tuned F1 network only", "test-tuned F1 calibrated"],
        rows=[[r["fold"], " ".join(r["test"]), r["plain"]["f1"], r["calibrated"]["f1"], r["plain"]["f1_test_tuned"],
               r["calibrated"]["f1_test_tuned"]] for r in rows]
        + [["mean", "", mean["plain"]["f1"], mean["calibrated"]["f1"], mean["plain"]["f1_test_tuned"], mean["calibrated"]["f1_test_tuned"]]],
        notes=(f"{args.set}: leave one group out, up to {args.epochs} epochs, seed 0, one network per fold; 'network only' is "
               "its own sigmoid with the validation-chosen threshold, 'calibrated' adds the fitted ln(response) term."),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
