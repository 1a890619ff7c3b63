"""Whether the score mixture's gain gate (score_mixture.Trust.min_gain: two groups must explain the logits by at least 0.01
nats per candidate over one before the mixture sets the odds) should be lower. It is the only thing keeping the
mixture from a few faint clean volumes, where the share's factor then keeps too few cells: on the foreign generator's
'low SNR + gradient + distractors' the mixture finds 96% cells (Ashman's D 2.7) with a gain of 0.006, and the
share's factor of 1.4 keeps 69 of 200 cells where the mixture's would keep 143. But a gate in nats per candidate is
what stops a split of one group: EM also finds a small group on the tail of one broad Gaussian of logits, whose gain
shrinks with the number of candidates (0.0002-0.0015 for 2,000, up to 0.01 for 200).

Two measurements, each at gates 0.01 (detect's), 0.005, 0.003 and 0:
1. every volume of adapt_rule.py's sets (foreign generator, faint foreign conditions at other seeds, volumes without
   cells, our generator, simulated held-out brains, delivr_cfos, small simulated brains, structured backgrounds,
   neuron shapes), scored once (clutter_bound.candidates), adapted at each gate and thresholded and merged as
   `detect` does; matching 3.5 voxels, z counted double;
2. histograms of one Gaussian group of logits alone (no second group, so any split is spurious), SEEDS draws of each
   of GROUPS: how often each gate trusts a split, and so would raise the odds of what may be clutter alone.

Run: python benchmarks/mixture_gain.py   (needs ../shared/data for the real rows; writes results/mixture_gain.{json,md};
a few minutes on 2 cores with adapt_rule.py's candidates cached in benchmarks/out/clutter_bound, about 15 without)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import report
from adapt_rule import compared, compared_columns

from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.pipeline import adapting
from clarity_fast.score_mixture import TRUST, fit_mixture, trusted
from clarity_fast.volume_share import histogram

GATES = (TRUST.min_gain, 0.005, 0.003, 0.0)  # nats per candidate
GROUPS = [  # (candidates, mean logit, sd): one group of logits, in the range clutter and faint cells are scored in
    (100, -6.0, 1.2), (150, -4.0, 1.0), (200, -6.0, 1.0), (200, -6.0, 1.5), (200, -5.0, 2.0), (200, -4.0, 1.5),
    (300, -4.5, 1.3), (400, -3.0, 2.0), (500, -6.0, 1.2), (1000, -5.0, 1.5),
]
SEEDS = 60


def one_group(candidates: int, mean: float, sd: float, *, seed: int) -> np.ndarray:
    """The probability histogram (volume_share.histogram) of `candidates` logits drawn from one Gaussian."""
    logits = np.random.default_rng(seed).normal(mean, sd, candidates)
    return histogram(1.0 / (1.0 + np.exp(-logits)))


def gate_label(gate: float) -> str:
    return f"gate {gate:g}" + (" (detect's)" if gate == TRUST.min_gain else "")


def one_group_fits() -> dict[tuple[float, float, float], list]:
    """Measurement 2's mixtures: per group of GROUPS, the fits to SEEDS draws of it alone."""
    return {group: [fit_mixture(one_group(*group, seed=seed)) for seed in range(SEEDS)] for group in GROUPS}


def spurious() -> tuple[list, list]:
    """Measurement 2: per group, the draws whose split each gate trusts (rows for the volumes' columns: the gates in
    the rules' place)."""
    results, rows = [], []
    for (candidates, mean, sd), fits in one_group_fits().items():
        counts = {g: sum(trusted(m, rule=replace(TRUST, min_gain=g)) for m in fits) for g in GATES}
        results.append(dict(candidates=candidates, mean=mean, sd=sd, seeds=SEEDS, trusted={str(g): c for g, c in counts.items()}))
        rows.append([f"{candidates} logits, mean {mean:g}, sd {sd:g}", "", *[f"{counts[g]} / {SEEDS}" for g in GATES], "", ""])
    totals = {g: sum(r["trusted"][str(g)] for r in results) for g in GATES}
    rows.append(["all", "", *[f"{totals[g]} / {SEEDS * len(GROUPS)} ({totals[g] / (SEEDS * len(GROUPS)):.1%})" for g in GATES], "", ""])
    return results, rows


def main() -> None:
    scorer = OnnxScorer(resolve_model("default"))
    cfg = scorer.config
    rules = {gate_label(g): (lambda counts, g=g: adapting(counts, model=cfg, rule=replace(TRUST, min_gain=g)).factor) for g in GATES}
    measured, rows = compared(rules, scorer=scorer)
    split, split_rows = spurious()
    md = report.write(
        "mixture_gain",
        data=dict(gates=GATES, threshold=cfg.threshold, sets=measured, one_group=split),
        columns=compared_columns(rules),
        rows=rows + [["**one group of logits alone: draws whose split is trusted**", "", *[""] * len(GATES), "", ""]] + split_rows,
        notes=(
            "Built-in model. Above: pooled F1 (false / missed cells) over each set's volumes, each scored once and adapted "
            "at each gate as `detect` adapts (for the volumes without cells: false cells in all); the F1 change is from "
            "detect's gate to no gate. Below: histograms of one Gaussian group of logits, "
            f"{SEEDS} draws each, where a trusted split would raise the odds of a group that may be clutter alone."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
