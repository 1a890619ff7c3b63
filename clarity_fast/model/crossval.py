"""Cross-validation: the study's protocols (leave one group out, random group splits) for the CNN and
the baselines, all scored by the same code: patch AUC on one shared example set per fold, and detection
precision / recall / F1 with the study's matching.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from clarity_fast.baselines import log_map, mean_template, ncc_map, peaks_of
from clarity_fast.errors import InputError
from clarity_fast.evaluate import (
    AXIS_WEIGHTS,
    RADIUS_VOXELS,
    Scored,
    pool_volumes,
    roc_auc,
    roc_curve,
)
from clarity_fast.kernels.gather import to_voxels
from clarity_fast.model.samples import AnnotatedVolume, cut

if TYPE_CHECKING:
    from clarity_fast.model.start import StartingModel
    from clarity_fast.model.train import TrainSettings

METHODS = ("cnn", "blob", "template")
METRICS = ("patch_auc", "precision", "recall", "f1", "f1_test_tuned")  # per fold and method, summarised over folds


@dataclass(frozen=True)
class Fold:
    """One split: the groups held out for testing (the rest train)."""

    index: int
    test_groups: tuple[str, ...]


def check_fold_options(*, scheme: str, splits: int, test_frac: float) -> None:
    """Fail on a bad scheme before any volume is loaded (loading a manifest can take minutes)."""
    if scheme not in ("loo", "random"):
        raise InputError(f"--scheme must be loo or random, got {scheme!r}")
    if scheme == "random" and splits < 1:
        raise InputError(f"--splits must be >= 1, got {splits}")
    if scheme == "random" and not 0 < test_frac < 1:
        raise InputError(f"--test-frac must be between 0 and 1, got {test_frac}")


def make_folds(groups: list[str], *, scheme: str, splits: int, test_frac: float, seed: int) -> list[Fold]:
    """loo: each group once as the test set; random: `splits` draws of round(test_frac x groups) test groups."""
    check_fold_options(scheme=scheme, splits=splits, test_frac=test_frac)
    unique = sorted(set(groups))
    if len(unique) < 2:
        raise InputError(f"cross-validation needs at least 2 groups, got {len(unique)}")
    if scheme == "loo":
        return [Fold(i, (g,)) for i, g in enumerate(unique)]
    n_test = min(max(1, int(round(test_frac * len(unique)))), len(unique) - 1)
    distinct = math.comb(len(unique), n_test)
    if splits > distinct:  # a test set drawn twice would count one split twice in the mean and sd
        raise InputError(f"--splits {splits}: {len(unique)} groups give only {distinct} distinct test sets of {n_test}; use --splits {distinct} or fewer")
    rng, drawn = np.random.default_rng(seed), []
    while len(drawn) < splits:
        test = tuple(sorted(rng.choice(unique, n_test, replace=False)))
        if test not in drawn:
            drawn.append(test)
    return [Fold(i, test) for i, test in enumerate(drawn)]


def _test_positions(volume: AnnotatedVolume, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shared patch-AUC examples: annotated centres (1), hard negatives and random background (0)."""
    neg = volume.assessment_negatives(rng)
    positions = to_voxels(np.concatenate([volume.truth, neg]), shape=volume.grid.shape)
    return positions, np.concatenate([np.ones(len(volume.truth)), np.zeros(len(neg))])


class _MapMethod:
    """A score map per volume, its local maxima as detections, one threshold chosen on training F1."""

    def fit(self, train: list[AnnotatedVolume]) -> None:
        pooled = pool_volumes([self.scored(v) for v in train])
        self.threshold, _ = pooled.best_threshold(radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)

    def scored(self, volume: AnnotatedVolume) -> Scored:
        return self._peaks(self.score_map(volume), volume)

    def assess(self, volume: AnnotatedVolume, positions: np.ndarray) -> tuple[np.ndarray, Scored]:
        """Scores at `positions` and the scored detections, from one score map."""
        score_map = self.score_map(volume)
        return score_map[tuple(positions.T)], self._peaks(score_map, volume)

    @staticmethod
    def _peaks(score_map: np.ndarray, volume: AnnotatedVolume) -> Scored:
        """The map's peaks, scored in the volume's annotated block, in the file's voxels."""
        zyx, score = peaks_of(score_map, scale=volume.scale)
        return volume.scored(zyx, score, native=True)


class BlobMethod(_MapMethod):
    """The blob-detection baseline: a scale-matched LoG's local maxima."""

    name = "blob"

    def score_map(self, volume: AnnotatedVolume) -> np.ndarray:
        return log_map(volume.volume, scale=volume.scale)


class TemplateMethod(_MapMethod):
    """The template-matching baseline: correlation with the mean annotated cell of the training folds."""

    name = "template"

    def __init__(self, *, patch: int) -> None:
        self.patch = patch

    def fit(self, train: list[AnnotatedVolume]) -> None:
        cells = np.concatenate([cut(v, v.truth, patch=self.patch) for v in train])
        if not len(cells):  # a mean of no patches is NaN everywhere: no peaks, a silent F1 of 0
            raise InputError("no annotated cells in its training volumes: template matching has no cell to average")
        self.template = mean_template(cells)
        super().fit(train)

    def score_map(self, volume: AnnotatedVolume) -> np.ndarray:
        return ncc_map(volume.volume, template=self.template)


class CnnMethod:
    """The pipeline: prefilter candidates, CNN probabilities, merged duplicates, the validation threshold."""

    name = "cnn"

    def __init__(self, *, settings: TrainSettings, prefilter_threshold: float, start: StartingModel | None = None) -> None:
        self.settings = settings
        self.prefilter_threshold = prefilter_threshold
        self.start = start  # each fold fine-tunes this model instead of training a new network

    def fit(self, train: list[AnnotatedVolume]) -> None:
        from clarity_fast.model.store import TorchScorer
        from clarity_fast.model.train import train as train_cnn

        trained = train_cnn(train, settings=self.settings, prefilter_threshold=self.prefilter_threshold, start=self.start, progress=False)
        self.scorer = TorchScorer(trained.net)
        self.calibration = trained.config.calibration
        self.threshold = trained.config.threshold

    def assess(self, volume: AnnotatedVolume, positions: np.ndarray) -> tuple[np.ndarray, Scored]:
        """The network's logits at `positions` (patch AUC), and the merged candidates with their probabilities,
        scored in the file's voxels."""
        from clarity_fast.detection import logits_at

        patch = self.settings.network.patch
        at_positions = logits_at(volume.native, centres=positions, scorer=self.scorer, patch=patch, grid=volume.grid)
        logits = logits_at(volume.native, centres=volume.detectable.zyx, scorer=self.scorer, patch=patch, grid=volume.grid)
        return at_positions, volume.detected(logits, calibration=self.calibration, native=True)


@dataclass(frozen=True)
class CVReport:
    """Per fold and method: patch AUC and detection scores (rows), and ROC curves."""

    scheme: str
    rows: list[dict] = field(default_factory=list)
    roc: dict = field(default_factory=dict)  # method -> list of (fpr, tpr) per fold

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Mean and (population) standard deviation over the folds where a metric is defined (a fold whose test volumes
        hold no cells has no patch AUC, recall or F1), per method and metric; NaN where no fold defines it."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for method in dict.fromkeys(r["method"] for r in self.rows):
            rows = [r for r in self.rows if r["method"] == method]
            out[method] = {}
            for k in METRICS:
                values = np.array([r[k] for r in rows], dtype=float)
                values = values[np.isfinite(values)]
                out[method][k] = (float(np.mean(values)), float(np.std(values))) if len(values) else (math.nan, math.nan)
        return out

    def to_dict(self, **extra: object) -> dict:
        """The summary and the fold rows (an undefined metric stays NaN: io.atomic.write_json writes it as null)."""
        return dict(scheme=self.scheme, **extra, summary=self.summary(), folds=self.rows)

    def markdown(self) -> str:
        lines = [
            f"Cross-validation ({self.scheme}, {len({r['fold'] for r in self.rows})} folds): mean ± sd over folds",
            "",
            "| method | patch AUC | precision | recall | F1 | F1 at the test-tuned threshold |",
            "|---|---|---|---|---|---|",
        ]
        for method, m in self.summary().items():
            cells = " | ".join(f"{m[k][0]:.3f} ± {m[k][1]:.3f}" for k in METRICS)
            lines.append(f"| {method} | {cells} |")
        undefined = sorted({r["fold"] for r in self.rows if not all(np.isfinite(r[k]) for k in METRICS)})
        if undefined:  # the columns' means are then over different folds: said, not left to be guessed
            lines += ["", f"Fold{'s' if len(undefined) > 1 else ''} {', '.join(map(str, undefined))} leave{'' if len(undefined) > 1 else 's'} a metric undefined (no cells "
                      "in the test volumes: no patch AUC, recall or F1); each mean and sd is over the folds that define it."]
        lines += ["", "| fold | test groups | method | patch AUC | precision | recall | F1 | TP | FP | FN |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(
                f"| {r['fold']} | {' '.join(r['test_groups'])} | {r['method']} | {r['patch_auc']:.3f} | {r['precision']:.3f} | "
                f"{r['recall']:.3f} | {r['f1']:.3f} | {r['tp']} | {r['fp']} | {r['fn']} |"
            )
        return "\n".join(lines) + "\n"


def cross_validate(
    volumes: list[AnnotatedVolume], *, folds: list[Fold], methods: list, scheme: str, seed: int = 0,
    on_fold: Callable[[dict], None] | None = None,
) -> CVReport:
    """Fit each method on each fold's training groups; score patch AUC and detection on its test groups."""
    rows: list[dict] = []
    roc: dict[str, list] = {}
    for fold in folds:
        train = [v for v in volumes if v.group not in fold.test_groups]
        test = [v for v in volumes if v.group in fold.test_groups]
        rng = np.random.default_rng(seed + fold.index)
        examples = [_test_positions(v, rng) for v in test]
        for method in methods:
            try:
                method.fit(train)
            except InputError as exc:  # the manifest may be fine; this fold's training groups are not
                training = ", ".join(sorted({v.group for v in train}))
                raise InputError(f"fold {fold.index} ({method.name}, trained on {training}): {exc}") from exc
            assessed = [method.assess(v, pos) for v, (pos, _) in zip(test, examples)]
            scores = np.concatenate([a[0] for a in assessed])
            labels = np.concatenate([lab for _, lab in examples])
            # Scored in the file's own voxels, against its own points, whatever the working scale.
            pooled = pool_volumes([detections for _, detections in assessed])
            m = pooled.match(threshold=method.threshold, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
            # What a threshold tuned on the test data itself would give: separates ranking from calibration.
            _, oracle = pooled.best_threshold(radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
            cells = m.tp + m.fn > 0  # without any, recall and F1 are undefined, not 0: left out of the means, as the AUC
            row = dict(
                fold=fold.index,
                test_groups=list(fold.test_groups),
                method=method.name,
                patch_auc=roc_auc(scores, labels),
                precision=m.precision,
                recall=m.recall if cells else math.nan,
                f1=m.f1 if cells else math.nan,
                f1_test_tuned=oracle.f1 if cells else math.nan,
                tp=m.tp,
                fp=m.fp,
                fn=m.fn,
            )
            rows.append(row)
            roc.setdefault(method.name, []).append(roc_curve(scores, labels))
            if on_fold is not None:
                on_fold(row)
    return CVReport(scheme=scheme, rows=rows, roc=roc)
