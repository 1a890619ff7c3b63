"""The second prefilter pass: where the first pass's score mixture reads the volume as clean (the cells a majority
of the candidates, apart from the rest), faint cells the prefilter's threshold lost are worth a second look at a
lower one. So too where the mixture would read the volume clean but for too little clutter to show the split (its
upper group most of the candidates, cleanly apart, but two groups explain the logits no better than one), or where
its lower group scores above anything the network calls clutter (the fit split the cells' own group): on a clean
volume whose noise seldom passes the first threshold (pure noise gave 0-8 candidates in 4 million voxels at 3 noise
units, 13-133 at 2.5: benchmarks/results/face_candidates.md), the lower pass's noise candidates show the split.
The second pass's cells are added where they lie at least a cell diameter from every cell of the first, and only
where that pass too reads as clean (else its extra candidates were clutter): near a cell already found, a new
maximum is more likely a second one of that cell (a large or elongated soma) than a faint neighbour
(benchmarks/results/second_pass.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial import cKDTree

from clarity_fast.pipeline import Adaptation, DetectSettings, Result
from clarity_fast.score_memo import ScoreMemo

SECOND_PASS_THRESHOLD = 2.5  # noise units: on clean volumes it finds faint cells that 3 loses
NEW_CELL_DIAMETERS = 1.0  # a second-pass cell closer than this to a first-pass one is taken for a second maximum of it
# Logits: a mixture's lower group scoring above this is cells too. The network's clutter groups lie at -4 to -7 on the
# cluttered, real and cell-free volumes measured; the lower groups of clean faint volumes split in two at -1.8 to +1.3
# (benchmarks/results/second_pass.md: -2.5 to -3.5 give the same figures).
CELL_LIKE_LOGIT = -3.0


@dataclass(frozen=True)
class SecondPass:
    """What the second pass found beside the first, and whether its cells were added (the rest of a run's summary
    describes the first pass, whose cells and probabilities stand)."""

    kept: bool
    first_clean: bool  # whether the first pass read clean (else its mixture was not trusted, too little clutter or its cells split, or trusted with the cells a minority)
    first_prefilter_threshold: float
    first_candidates: int
    first_cells: int
    first_cell_share: float
    second_prefilter_threshold: float
    second_candidates: int
    second_cells: int
    second_odds_factor: float  # what adapting multiplied the second pass's odds by: its added cells' probabilities carry it
    added_cells: int  # of the second pass's cells, those added to the first's (0 where it was not kept)
    scores_reused: int  # of the second pass's candidates, those scored by the first (score_memo)


def with_second_pass(
    first: Result, *, settings: DetectSettings, scan: Callable[[DetectSettings], Result], memo: ScoreMemo | None = None
) -> tuple[Result, SecondPass | None]:
    """The result that stands (the first pass's, with the second's new cells added where it is kept) and the second
    pass's record (None where it did not run: a first pass that does not call for it, calls_for_second_pass, or one
    already at or below SECOND_PASS_THRESHOLD).
    `scan` runs a pass with the settings given, scoring through `memo` where the first did (then only the candidates
    new to the second pass are scored); the result's busy seconds are both passes'."""
    if settings.prefilter_threshold <= SECOND_PASS_THRESHOLD or not calls_for_second_pass(first.adaptation):
        return first, None
    if memo is not None:
        memo.freeze()
    reused = 0 if memo is None else memo.reused
    second = scan(replace(settings, prefilter_threshold=SECOND_PASS_THRESHOLD))
    kept = second.adaptation is not None and second.adaptation.clean
    result = with_cells(first, added=second, diameter_voxels=np.asarray(settings.scale.cell_diameter_voxels)) if kept else first
    seconds = {k: first.seconds.get(k, 0.0) + second.seconds.get(k, 0.0) for k in first.seconds}
    record = SecondPass(
        kept=kept, first_clean=first.adaptation.clean, first_prefilter_threshold=settings.prefilter_threshold, first_candidates=first.candidates, first_cells=len(first.zyx),
        first_cell_share=first.mixture.cell_share, second_prefilter_threshold=SECOND_PASS_THRESHOLD, second_candidates=second.candidates,
        second_cells=len(second.zyx), second_odds_factor=second.odds_factor, added_cells=len(result.zyx) - len(first.zyx),
        scores_reused=0 if memo is None else memo.reused - reused,
    )
    return replace(result, seconds=seconds), record


def calls_for_second_pass(adaptation: Adaptation | None) -> bool:
    """Whether a first pass adapted so calls for the second: its mixture's upper group holds most of the candidates
    cleanly apart from the rest, trusted (the volume reads clean) or not for its gain, or its lower group scores as
    cells (CELL_LIKE_LOGIT); the 2.5 pass decides (benchmarks/results/second_pass.md). An upper group not cleanly
    apart is left alone: real tissue's often is one, and rescanning it cost 1.6x for nothing (second_pass_speed.md)."""
    mixture = None if adaptation is None else adaptation.mixture
    if mixture is None:
        return False
    rule = adaptation.rule
    return (mixture.cell_share > rule.majority and mixture.separation > rule.separation) or mixture.other_mean > CELL_LIKE_LOGIT


def far_from(points: np.ndarray, others: np.ndarray, *, diameter_voxels: np.ndarray) -> np.ndarray:
    """Which of `points` lie NEW_CELL_DIAMETERS cell diameters or more from every one of `others` (voxels, per axis)."""
    if len(points) == 0 or len(others) == 0:
        return np.ones(len(points), bool)
    unit = NEW_CELL_DIAMETERS * diameter_voxels
    distance, _ = cKDTree(np.asarray(others, float) / unit).query(np.asarray(points, float) / unit)
    return distance >= 1.0


def with_cells(first: Result, *, added: Result, diameter_voxels: np.ndarray) -> Result:
    """The first pass's result holding its cells and those of `added` far from them (far_from), in z, y, x order."""
    new = far_from(added.zyx, first.zyx, diameter_voxels=diameter_voxels)
    if not new.any():
        return first
    zyx = np.concatenate([first.zyx, added.zyx[new]])
    probability = np.concatenate([first.probability, added.probability[new]])
    order = np.lexsort(zyx.T[::-1])
    return replace(first, zyx=zyx[order], probability=probability[order], above_threshold=first.above_threshold + int(new.sum()))


def second_pass_line(record: dict) -> str:
    """What the second pass did (a SecondPass as the summary JSON holds it), where the first found the volume clean."""
    seen = (f"the volume reads as clean ({record['first_cell_share']:.0%} of the first pass's candidates score as cells apart from the rest)"
            if record["first_clean"] else
            f"the first pass does not read as clean (its score mixture untrusted, or its cells a minority), but its upper group "
            f"({record['first_cell_share']:.0%} of the candidates) or its lower group scores as cells")
    why = f"{seen}: prefiltered again at {SECOND_PASS_THRESHOLD:g} noise units instead of {record['first_prefilter_threshold']:g} for faint cells"
    if record["kept"]:
        return (f"{why}: {record['added_cells']} cells added to the first pass's {record['first_cells']} "
                f"({record['first_candidates']} candidates, {record['second_candidates']} in the second; "
                f"the added cells' odds multiplied by {record['second_odds_factor']:.2f})")
    return (f"{why}, but its {record['second_candidates']} candidates no longer read as clean: the first pass's "
            f"{record['first_cells']} cells are kept")
