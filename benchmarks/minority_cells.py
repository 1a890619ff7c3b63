"""Whether the score mixture may set the odds where cells are a minority of the candidates (score_mixture.Trust:
`minority` and `far_apart`). Before 2026-12-07 it was believed only where it put most candidates among the cells, as
clutter the majority meant a volume like the cluttered validation volumes, where the calibration holds. But clutter
the network finds nothing like cells (a tissue edge, fibre bundles, cell-scale texture) also makes cells a minority,
and then faint cells that only a clean volume's adapting kept were lost: a foreign-generator volume of 200 cells
cut to an ellipsoid of tissue with a soft 10 µm edge (dark outside) kept 42 of the 64 cells inside where, uncut,
adapting keeps 63 (an exploration). The network's own kind of clutter overlaps its cells (Ashman's D 1.4-2.8 on every
real patch and held-out simulated brain); what it finds unlike cells lies far below them. So a cells' group holding a fifth of the
candidates or more and further than D 3 from the rest is believed too.

Both rules are applied, as `detect` applies them, to every volume of adapt_rule.py's sets (each scored once,
clutter_bound.candidates), to volumes the rule was not chosen on (the structured backgrounds and neuron shapes at new
seeds, and foreign-generator volumes cut to an ellipsoid of tissue with a soft edge), and, for the risk, to
histograms of one Gaussian group of logits alone (mixture_gain.py's), where any split believed is spurious.
Matching: 3.5 voxels, z counted double.

Run: python benchmarks/minority_cells.py   (needs ../shared/data for the real rows; writes
results/minority_cells.{json,md}; a few minutes on 2 cores with adapt_rule.py's candidates cached, about 25 without)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import clutter_bound
import foreign_synthetic as fs
import neuron_shapes
import numpy as np
import report
import structured_background
from adapt_rule import compared, compared_columns, every_set, generated
from mixture_gain import one_group_fits
from scipy.ndimage import gaussian_filter

from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.pipeline import adapting
from clarity_fast.score_mixture import TRUST, trusted

RULES = {"majority only (before)": clutter_bound.MAJORITY_ONLY, "or a far minority (detect's)": TRUST}
EDGE_CONDITIONS = (0, 1, 2, 20, 22)  # foreign_synthetic.CONDITIONS: high and low SNR, blurred balls, 2.5 sd, photon counting
EDGE_SOFTNESS = (5.0, 10.0)  # µm: the Gaussian blur of the tissue's edge
TISSUE = 0.9  # the tissue: an ellipsoid this far out towards the volume's faces


def edged(condition: fs.Condition, *, seed: int, soft: float) -> Callable[[], tuple]:
    """A foreign-generator volume cut to an ellipsoid of tissue with an edge blurred by `soft` µm: inside, its photons;
    outside, the camera's offset and read noise; the truth, the cells at least half inside."""
    def make() -> tuple:
        volume, truth = fs.make_volume(condition, seed=seed)
        voxel = np.asarray(condition.voxel)
        half = np.asarray(volume.shape) * voxel / 2
        grid = np.meshgrid(*[(np.arange(n) * v - h) / h for n, v, h in zip(volume.shape, voxel, half)], indexing="ij")
        tissue = gaussian_filter((sum(g * g for g in grid) < TISSUE**2).astype(np.float32), soft / voxel)
        rng = np.random.default_rng(seed + 1)
        photons = np.maximum(volume.astype(np.int64) - int(condition.offset), 0)
        counts = condition.offset + rng.binomial(photons, np.clip(tissue, 0.0, 1.0)) + rng.normal(0.0, condition.read_noise, volume.shape)
        inside = tissue[tuple(np.clip(np.round(truth).astype(int), 0, np.asarray(volume.shape) - 1).T)] >= 0.5
        return np.clip(np.rint(counts), 0, 65535).astype(np.uint16), truth[inside], condition.voxel, condition.stated_diameter
    return make


def new_sets() -> dict[str, list[tuple[str, str, Callable[[], tuple]]]]:
    """Volumes the rule was not chosen on, as every_set's entries."""
    sets = {}
    for name, module, seed in (("structured backgrounds, new seeds (9000+i)", structured_background, 9000),
                               ("neuron shapes, new seeds (9100+i)", neuron_shapes, 9100)):
        sets[name] = [(v, f"minority_{module.__name__}_{seed}_{k}", make) for k, (v, make) in enumerate(generated(module, seed=seed))]
    sets["foreign generator cut to tissue with a soft edge (5 and 10 µm), dark outside"] = [
        (f"{fs.CONDITIONS[i].name}, edge {soft:g} µm", f"minority_edge_{i}_{soft:g}", edged(fs.CONDITIONS[i], seed=9200 + i, soft=soft))
        for i in EDGE_CONDITIONS for soft in EDGE_SOFTNESS
    ]
    return sets


def spurious() -> list:
    """A report row: draws of one group of logits alone (mixture_gain's) whose split each rule believes."""
    fits = [m for group in one_group_fits().values() for m in group]
    believed = {r: sum(trusted(m, rule=rule) for m in fits) for r, rule in RULES.items()}
    return ["one Gaussian group of logits alone (mixture_gain.py's 10 groups): draws whose split is believed", len(fits),
            *[f"{believed[r]} ({believed[r] / len(fits):.1%})" for r in RULES], "", ""]


def main() -> None:
    scorer = OnnxScorer(resolve_model("default"))
    cfg = scorer.config
    rules = {r: (lambda counts, rule=rule: adapting(counts, model=cfg, rule=rule).factor) for r, rule in RULES.items()}
    measured, rows = compared(rules, scorer=scorer, sets={**every_set(), **new_sets()})
    split = spurious()
    md = report.write(
        "minority_cells",
        data=dict(rules={r: asdict(rule) for r, rule in RULES.items()}, threshold=cfg.threshold, sets=measured, one_group=split),
        columns=compared_columns(rules),
        rows=rows + [split],
        notes=(
            "Built-in model; pooled over each set's volumes (for the volumes without cells: false cells in all); candidates "
            "scored once per volume, each rule's odds factor applied as `detect` applies it. The minority rule: the cells' "
            f"group at least {TRUST.minority:g} of the candidates and further than Ashman's D {TRUST.far_apart:g} from the rest."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
