"""A second prefilter pass at a lower threshold, only on volumes whose first pass the score mixture finds clean.

At 2.5 noise units instead of 3 the prefilter proposes the faint cells of clean volumes that it otherwise loses, but
on smoothed noise and real tissue the extra candidates are clutter (benchmarks/results/prefilter_threshold.md). The
score mixture of the first pass tells the two apart without labels: where it is trusted with the cells a majority
of the candidates, the volume is clean. This measures, offline, which first passes should get a second pass at 2.5
against 3 everywhere (`detect` without it) and 2.5 everywhere, on every volume of adapt_rule.py's sets and
minority_cells.py's new ones (structured backgrounds and neuron shapes at new seeds, tissue with a soft edge), each
scored once at each threshold and adapted, thresholded and merged as `detect` does. Each trigger keeps the second
pass only where it too reads as clean (where its extra candidates make the volume read as cluttered, they were
clutter) and then adds to the first pass's cells the second's that lie a cell diameter or more from all of them
(clarity_fast/second_pass.py). The triggers: the first pass clean (`detect`'s until the faces' fix of 2026-12-07,
which took the noise candidates of clean volumes' faces away and with them, on the faintest, the clutter that let
the mixture be trusted); the mixture's upper group a majority, trusted or not; that, or its lower group above
-3 logits, where the network's clutter never scores, so that even it is cells (a clean faint volume whose fit, with
no clutter to find, split the cells' group); the same with the upper group also cleanly apart (Ashman's D above
2, trusted or untrusted for its gain alone: second_pass.calls_for_second_pass, `detect`'s since; without that, real
tissue whose upper group is a majority, cellfinder's crop among them, was rescanned at 1.6x the time for nothing);
every volume, which reads every volume twice (15-45% more candidates and a second prefilter on cluttered volumes
that never keep it). Candidates counts every candidate of each pass a rule runs (`detect` itself scores only the second pass's
new ones, clarity_fast/score_memo.py: 5-40% of that pass's in second_pass_speed.md). Matching: 3.5 voxels, z
counted double.

Run: python benchmarks/second_pass.py   (needs ../shared/data for the real rows; writes results/second_pass.{json,md};
about 10 minutes on 2 cores with adapt_rule.py's candidates cached)
"""

from __future__ import annotations

import adapt_rule
import clutter_bound
import minority_cells
import numpy as np
import report

from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, match_points
from clarity_fast.pipeline import Result, adapting, kept_cells
from clarity_fast.second_pass import CELL_LIKE_LOGIT, SECOND_PASS_THRESHOLD, calls_for_second_pass, with_cells
from clarity_fast.settings import MERGE_DIAMETERS

LOWER = SECOND_PASS_THRESHOLD  # noise units: the second pass's prefilter threshold
TRIGGERS = {  # which first passes get the second, the second's cells added where it reads clean (with_cells)
    "where the first pass is clean (before the faces' fix)": lambda a: a.clean,
    "where the mixture's upper group is the majority, trusted or not": lambda a: a.mixture is not None and a.mixture.cell_share > a.rule.majority,
    "where its upper group is the majority or its lower group scores as cells": lambda a: a.mixture is not None and (
        a.mixture.cell_share > a.rule.majority or a.mixture.other_mean > CELL_LIKE_LOGIT),
    "where its upper group is the majority cleanly apart or its lower group scores as cells (`detect`)": calls_for_second_pass,
    "everywhere": lambda a: True,
}
RULES = ("3 (the first pass alone)", f"{LOWER:g} everywhere", *(f"second pass {t}" for t in TRIGGERS))


def added(first: dict, second: dict, *, factors: tuple[float, float], threshold: float) -> np.ndarray:
    """(tp, fp, fn) of the first pass's cells with the second's a cell diameter or more from them, as `detect` adds them."""
    passes = [Result(*kept_cells(d["zyx"], d["probability"], factor=f, threshold=threshold, merge_radius=tuple(d["radius"]))[:2])
              for d, f in zip((first, second), factors)]
    cells = with_cells(passes[0], added=passes[1], diameter_voxels=np.asarray(first["radius"]) / MERGE_DIAMETERS).zyx
    m = match_points(pred=cells, truth=first["truth"], radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
    return np.array([m.tp, m.fp, m.fn])


def main() -> None:
    scorer = OnnxScorer(resolve_model("default"))
    cfg = scorer.config
    results, rows = [], []
    for set_name, entries in {**adapt_rule.every_set(), **minority_cells.new_sets()}.items():
        pooled = {r: np.zeros(4, int) for r in RULES}  # tp, fp, fn, candidates scored
        second = dict.fromkeys(RULES[2:], 0)  # volumes each trigger gives the second pass
        for name, key, make in entries:
            passes = []  # the model's prefilter threshold (as `detect` runs it), then LOWER
            for suffix, threshold in (("", None), (f"_prefilter{LOWER:g}", LOWER)):
                data = clutter_bound.candidates(key + suffix, make, scorer=scorer, prefilter_threshold=threshold)
                adaptation = adapting(data["counts"], model=cfg)
                passes.append((clutter_bound.counted(data, adaptation.factor, threshold=cfg.threshold), int(data["counts"].sum()), adaptation, data))
            first, lower = passes
            pooled[RULES[0]] += np.append(first[0], first[1])
            pooled[RULES[1]] += np.append(lower[0], lower[1])
            union = added(first[3], lower[3], factors=(first[2].factor, lower[2].factor), threshold=cfg.threshold) if lower[2].clean else first[0]
            for rule, trigger in zip(RULES[2:], TRIGGERS.values()):
                again = trigger(first[2])
                second[rule] += again
                pooled[rule] += np.append(union if again else first[0], first[1] + lower[1] * again)
        empty = "without cells" in set_name
        shown = [(f"{c[1]} false cells ({c[3]}" if empty else f"{clutter_bound.f1(c[:3]):.3f} ({c[1]} / {c[2]}; {c[3]}")
                 + (f"; {second[r]} rescanned)" if r in second else ")") for r, c in pooled.items()]
        rows.append([set_name, len(entries), *shown])
        results.append(dict(set=set_name, volumes=len(entries), second_pass=second, pooled={r: c.tolist() for r, c in pooled.items()}))
        print(rows[-1], flush=True)
    md = report.write(
        "second_pass",
        data=dict(lower=LOWER, model_threshold=cfg.threshold, sets=results),
        columns=["set", "volumes", *[f"{r}: F1 (false / missed cells; candidates scored; volumes given the second pass)" for r in RULES]],
        rows=rows,
        notes="Built-in model; each volume's candidates at each prefilter threshold scored once and adapted, thresholded "
        "and merged as `detect` does; pooled over each set's volumes; candidates scored: every candidate of each pass a rule "
        "runs (`detect` scores only the second pass's new ones). Offline; `detect` runs the sixth rule by default.",
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
