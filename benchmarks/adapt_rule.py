"""Which of adapting's two odds factors applies (pipeline.Adaptation.factor): the larger of the share's (volume_share)
and the score mixture's (score_mixture), as from 2026-12-05, or the mixture's wherever it is trusted and the share's
elsewhere, as since 2026-12-06. On clean volumes of confidently scored cells the share's EM counts most candidates
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


def previous(adaptation: Adaptation) -> float:
    """The factor before 2026-12-06: the larger of the two."""
    return max(adaptation.share_factor, adaptation.mixture_factor)


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


def main() -> None:
    scorer = OnnxScorer(resolve_model("default"))
    cfg = scorer.config
    results, rows = [], []
    for set_name, volumes in every_set().items():
        pooled = {"previous": np.zeros(3, int), "current": np.zeros(3, int)}
        changed = []
        for name, key, make in volumes:
            data = clutter_bound.candidates(key, make, scorer=scorer)
            adaptation = adapting(data["counts"], model=cfg, rule=clutter_bound.MAJORITY_ONLY)
            factors = {"previous": previous(adaptation), "current": adaptation.factor}
            counted = {rule: clutter_bound.counted(data, f, threshold=cfg.threshold) for rule, f in factors.items()}
            for rule in pooled:
                pooled[rule] += counted[rule]
            if factors["previous"] != factors["current"]:
                changed.append(dict(volume=name, factors=factors, tp_fp_fn={r: c.tolist() for r, c in counted.items()}))
        f1 = {rule: clutter_bound.f1(c) for rule, c in pooled.items()}
        per_volume = [clutter_bound.f1(np.array(c["tp_fp_fn"]["current"])) - clutter_bound.f1(np.array(c["tp_fp_fn"]["previous"])) for c in changed]
        empty = "without cells" in set_name
        shown = (lambda r: f"{pooled[r][1]} false cells") if empty else (lambda r: f"{f1[r]:.3f} ({pooled[r][1]} / {pooled[r][2]})")
        spread = f"{min(per_volume):+.3f} to {max(per_volume):+.3f}" if per_volume and not empty else ""
        rows.append([set_name, len(volumes), shown("previous"), shown("current"), len(changed), spread])
        results.append(dict(set=set_name, volumes=len(volumes), pooled={r: c.tolist() for r, c in pooled.items()}, changed=changed))
        print(rows[-1], flush=True)
    md = report.write(
        "adapt_rule",
        data=dict(threshold=cfg.threshold, sets=results),
        columns=["set", "volumes", "larger factor (before): F1 (false / missed cells)", "the mixture's where trusted (detect's): F1 (false / missed cells)",
                 "volumes whose factor changed", "their F1 change"],
        rows=rows,
        notes="Built-in model; pooled over each set's volumes; candidates scored once per volume, each rule's odds factor applied as `detect` applies it.",
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
