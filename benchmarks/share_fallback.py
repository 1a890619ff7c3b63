"""What adapting does where the score mixture is not trusted (pipeline.Adaptation): the factor of EM's share, as
`detect` had from 2026-12-06 (adapt_rule.then); that of the share read no higher than the mixture's upper group wherever a mixture was
fitted, as `detect` has since 2026-12-07; or no adapting at all.

The share's EM assumes the network's probabilities keep their validation meaning. Where the clutter of a volume scores
higher than the validation clutter did (our generator at 6x1.62x1.62 um: EM read 0.67 cells among the candidates where
0.41 are, an odds factor of 4.8, precision 0.84 -> 0.60; benchmarks/results/prior_shift.md), EM counts it as cells.
This measures what the fallback gains and costs on every volume of adapt_rule.py's sets, scored once by the built-in
model, each rule applied as `detect` applies its factor. Matching: 3.5 voxels, z counted double.

Run: python benchmarks/share_fallback.py   (needs ../shared/data for the real rows; writes
results/share_fallback.{json,md}; candidates cached per model in benchmarks/out/clutter_bound, about an hour on 2
cores the first time)
"""

from __future__ import annotations

import adapt_rule
import report

from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.pipeline import adapting


def main() -> None:
    scorer = OnnxScorer(resolve_model("default"))
    cfg = scorer.config
    reference = cfg.calibration.reference_share
    rules = {
        "EM's share (before)": lambda counts: adapt_rule.then(adapting(counts, model=cfg), reference=reference),
        "none": lambda counts: (lambda a: a.factor if a.by == "mixture" else 1.0)(adapting(counts, model=cfg)),
        "the share capped by the mixture's upper group (detect's since 2026-12-07)": lambda counts: adapting(counts, model=cfg).factor,
    }
    results, rows = adapt_rule.compared(rules, scorer=scorer)
    md = report.write(
        "share_fallback",
        data=dict(threshold=cfg.threshold, sets=results),
        columns=adapt_rule.compared_columns(rules),
        rows=rows,
        notes="Built-in model; where the score mixture is trusted its factor applies under every rule; pooled over each "
        "set's volumes; candidates scored once per volume, each rule's odds factor applied as `detect` applies it; the "
        "F1 change is from EM's share to the capped share.",
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
