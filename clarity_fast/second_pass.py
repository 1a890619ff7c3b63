"""The second prefilter pass: where the first pass's score mixture reads the volume as clean (the cells a majority
of the candidates, apart from the rest), faint cells the prefilter's threshold lost are worth a second look at a
lower one; that pass is kept only where it too reads as clean, else its extra candidates were clutter
(benchmarks/results/second_pass.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from clarity_fast.pipeline import DetectSettings, Result
from clarity_fast.score_memo import ScoreMemo

SECOND_PASS_THRESHOLD = 2.5  # noise units: on clean volumes it finds faint cells that 3 loses


@dataclass(frozen=True)
class SecondPass:
    """What the second pass found beside the first, and which of the two stands."""

    kept: bool
    first_prefilter_threshold: float
    first_candidates: int
    first_cells: int
    first_cell_share: float
    second_candidates: int
    second_cells: int
    scores_reused: int  # of the second pass's candidates, those scored by the first (score_memo)


def with_second_pass(
    first: Result, *, settings: DetectSettings, scan: Callable[[DetectSettings], Result], memo: ScoreMemo | None = None
) -> tuple[Result, DetectSettings, SecondPass | None]:
    """The result that stands, the settings that gave it, and the second pass's record (None where it did not run:
    a first pass not clean, or already at or below SECOND_PASS_THRESHOLD). `scan` runs a pass with the settings given,
    scoring through `memo` where the first did (then only the candidates new to the second pass are scored); the
    result's busy seconds are both passes'."""
    if settings.prefilter_threshold <= SECOND_PASS_THRESHOLD or first.adaptation is None or not first.adaptation.clean:
        return first, settings, None
    lower = replace(settings, prefilter_threshold=SECOND_PASS_THRESHOLD)
    reused = 0 if memo is None else memo.reused
    if memo is not None:
        memo.settle()
    second = scan(lower)
    kept = second.adaptation is not None and second.adaptation.clean
    result, used = (second, lower) if kept else (first, settings)
    seconds = {k: first.seconds.get(k, 0.0) + second.seconds.get(k, 0.0) for k in result.seconds}
    record = SecondPass(
        kept=kept, first_prefilter_threshold=settings.prefilter_threshold, first_candidates=first.candidates, first_cells=len(first.zyx),
        first_cell_share=first.mixture.cell_share, second_candidates=second.candidates, second_cells=len(second.zyx),
        scores_reused=0 if memo is None else memo.reused - reused,
    )
    return replace(result, seconds=seconds), used, record


def second_pass_line(record: dict) -> str:
    """What the second pass did (a SecondPass as the summary JSON holds it), where the first found the volume clean."""
    why = (f"the volume reads as clean ({record['first_cell_share']:.0%} of the first pass's candidates score as cells apart from the rest): "
           f"prefiltered again at {SECOND_PASS_THRESHOLD:g} noise units instead of {record['first_prefilter_threshold']:g} for faint cells")
    if record["kept"]:
        return f"{why} (first pass: {record['first_candidates']} candidates, {record['first_cells']} cells)"
    return (f"{why}, but its {record['second_candidates']} candidates no longer read as clean: the first pass's "
            f"{record['first_cells']} cells are kept")
