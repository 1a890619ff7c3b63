"""Which of adapting's two odds factors applies (pipeline.Adaptation.factor): the larger of the share's (volume_share)
and the score mixture's (score_mixture), as from 2026-12-05, or the mixture's wherever it is trusted and EM's share's
elsewhere, as from 2026-12-06 (since 2026-12-07 that share is capped by the mixture's cells' group: share_fallback.py). On clean volumes of confidently scored cells the share's EM counts most candidates
as cells and raises the odds up to its cap (x39.8), letting the clutter's upper tail through, while the mixture,
fitted to the volume's own logits, finds its best cut near the model's threshold.

Every volume of benchmarks/clutter_bound.py's sets (foreign generator, faint foreign conditions at other seeds,
volumes without cells, our generator, simulated held-out brains, delivr_cfos, small simulated brains), plus the
test volumes of structured_background.py and neuron_shapes.py, is scored once (clutter_bound.candidates: the
built-in model on every candidate, as `detect` scores them), and each rule's factor applied as `detect` applies it
(pipeline.kept_cells), both with the mixture believed only as a majority, as then (minority_cells.py measures
believing a far minority too). Matching: 3.5 voxels, z counted double.

Run: python benchmarks/adapt_rule.py   (needs ../shared/data for the real rows; writes results/adapt_rule.{json,md};
about 15 minutes on 2 cores, candidates cached in benchmarks/out/clutter_bound)
"""

from __future__ import annotations

from collections.abc import Callable

import clutter_bound
import neuron_shapes
import numpy as np
import report
import structured_background

from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.pipeline import Adaptation, adapting
from clarity_fast.volume_share import odds_factor


def em_factor(adaptation: Adaptation, *, reference: float) -> float:
    """The share's factor from EM's own estimate, as before 2026-12-07, when the mixture's cells' group came to cap
    the share (share_fallback.py)."""
    return odds_factor(adaptation.em_share, reference=reference)


def previous(adaptation: Adaptation, *, reference: float) -> float:
    """The factor before 2026-12-06: the larger of the two."""
    return max(em_factor(adaptation, reference=reference), adaptation.mixture_factor)


def then(adaptation: Adaptation, *, reference: float) -> float:
    """The factor from 2026-12-06 to 2026-12-07: the mixture's where trusted, elsewhere EM's share's."""
    return adaptation.mixture_factor if adaptation.by == "mixture" else em_factor(adaptation, reference=reference)


def generated(module, *, seed: int) -> list:
    """(name, make) of a generator module's test volumes: seed + condition index, as its assess_all call makes them."""
    return [(c.name, clutter_bound.made(c, seed=seed + i, make_volume=module.make_volume)) for i, c in enumerate(module.CONDITIONS)]


def every_set() -> dict[str, list[tuple[str, str, Callable[[], tuple]]]]:
    """By set: each volume's name, its cache key for clutter_bound.candidates, and how to make or read it: clutter_bound's
    sets, then the test volumes of structured_background.py and neuron_shapes.py."""
    sets = {name: [(v, f"set{i}_{k}", make) for k, (v, make) in enumerate(volumes)] for i, (name, volumes) in enumerate(clutter_bound.volume_sets().items())}
    for name, module, seed in (("structured backgrounds (structured_background.py)", structured_background, 4000),
                               ("neuron shapes (neuron_shapes.py)", neuron_shapes, 600)):
        sets[name] = [(v, f"adapt_rule_{module.__name__}_{seed}_{k}", make) for k, (v, make) in enumerate(generated(module, seed=seed))]
    return sets


def compared(rules: dict[str, Callable[[np.ndarray], float]], *, scorer: OnnxScorer, sets: dict | None = None) -> tuple[list, list]:
    """Each rule's odds factor (a function of a volume's probability histogram) applied as `detect` applies it to every
    volume of `sets` (every_set's by default), each scored once: per set, the pooled (tp, fp, fn) under each rule, each
    volume whose factor any two rules set differently, and the count of those the first rule and the last set
    differently with their F1 change from the one to the other (report rows for compared_columns)."""
    cfg = scorer.config
    first, last = list(rules)[0], list(rules)[-1]
    results, rows = [], []
    for set_name, entries in (every_set() if sets is None else sets).items():
        pooled = {r: np.zeros(3, int) for r in rules}
        changed = []
        for name, key, make in entries:
            data = clutter_bound.candidates(key, make, scorer=scorer)
            factors = {r: factor(data["counts"]) for r, factor in rules.items()}
            counted = {r: clutter_bound.counted(data, f, threshold=cfg.threshold) for r, f in factors.items()}
            for r in rules:
                pooled[r] += counted[r]
            if len(set(factors.values())) > 1:  # recorded where any rule differs; counted where the first and last do
                mixture = adapting(data["counts"], model=cfg).mixture
                changed.append(dict(volume=name, mixture=None if mixture is None else mixture.summary(), factors=factors,
                                    tp_fp_fn={r: c.tolist() for r, c in counted.items()}))
        moved = [c for c in changed if c["factors"][first] != c["factors"][last]]
        deltas = [clutter_bound.f1(np.array(c["tp_fp_fn"][last])) - clutter_bound.f1(np.array(c["tp_fp_fn"][first])) for c in moved]
        shown, spread = pooled_cells(set_name, [pooled[r] for r in rules], deltas)
        rows.append([set_name, len(entries), *shown, len(moved), spread])
        results.append(dict(set=set_name, volumes=len(entries), pooled={r: c.tolist() for r, c in pooled.items()}, changed=changed))
        print(rows[-1], flush=True)
    return results, rows


def pooled_cells(set_name: str, pooled: list[np.ndarray], deltas: list[float]) -> tuple[list[str], str]:
    """A set's report cells: each way's pooled (tp, fp, fn) as F1 (false / missed cells), or false cells alone for a set
    without cells; and the spread of its changed volumes' F1 change."""
    empty = "without cells" in set_name
    shown = [f"{c[1]} false cells" if empty else f"{clutter_bound.f1(c):.3f} ({c[1]} / {c[2]})" for c in pooled]
    return shown, f"{min(deltas):+.3f} to {max(deltas):+.3f}" if deltas and not empty else ""


def compared_columns(rules: dict) -> list[str]:
    return ["set", "volumes", *[f"{r}: F1 (false / missed cells)" for r in rules], "volumes whose factor changed", "their F1 change"]


def main() -> None:
    scorer = OnnxScorer(resolve_model("default"))
    cfg = scorer.config
    trust, reference = clutter_bound.MAJORITY_ONLY, cfg.calibration.reference_share  # the mixture believed as then
    rules = {
        "larger factor (before)": lambda counts: previous(adapting(counts, model=cfg, rule=trust), reference=reference),
        "the mixture's where trusted (detect's from 2026-12-06)": lambda counts: then(adapting(counts, model=cfg, rule=trust), reference=reference),
    }
    results, rows = compared(rules, scorer=scorer)
    md = report.write(
        "adapt_rule",
        data=dict(threshold=cfg.threshold, sets=results),
        columns=compared_columns(rules),
        rows=rows,
        notes="Built-in model; pooled over each set's volumes; candidates scored once per volume, each rule's odds factor applied as `detect` applies it.",
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
