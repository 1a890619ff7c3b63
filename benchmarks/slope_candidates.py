"""Whether detect should leave unscored the candidates dimmer than their surround on some side (kernels.slope).

A tissue edge sharper than a few µm proposes a shell of candidates along it (a foreign-generator volume cut to 0.26 mm²
of tissue surface around 64 cells: about 1,200 at 2 µm of edge blur, 600 at 5 µm). The network rejects them, but
they make the cells too small a share of the candidates for adapting (at most a fifth of them, where the score mixture
needs more), and the faint cells that only adapting keeps are lost. Such a candidate is as bright as, or dimmer than,
the tissue on one side of it; a cell is brighter than its surround on every side.

Both ways are run through detect's own slab pipeline (clutter_bound.candidates) on every volume of adapt_rule.py's
sets, minority_cells.py's new sets and foreign-generator volumes cut to tissue with an edge of 2, 5 and 10 µm, then
adapted, thresholded and merged as detect does. Matching: 3.5 voxels, z counted double.

Run: python benchmarks/slope_candidates.py   (needs ../shared/data for the real rows; writes
results/slope_candidates.{json,md}; about 30 minutes on 2 cores uncached, a minute cached)
"""

from __future__ import annotations

import clutter_bound
import foreign_synthetic as fs
import minority_cells
import numpy as np
import report
from adapt_rule import every_set, pooled_cells

from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.pipeline import adapting

WAYS = {"every candidate scored (before)": False, "those on a slope left out (detect's)": True}
SHARP_EDGE = 2.0  # µm: an edge sharper than minority_cells.py's


def sets() -> dict:
    """adapt_rule's and minority_cells' sets, and tissue cut with a sharp edge."""
    sharp = [
        (f"{fs.CONDITIONS[i].name}, edge {SHARP_EDGE:g} µm", f"slope_edge_{i}_{SHARP_EDGE:g}",
         minority_cells.edged(fs.CONDITIONS[i], seed=9200 + i, soft=SHARP_EDGE))
        for i in minority_cells.EDGE_CONDITIONS
    ]
    return {**every_set(), **minority_cells.new_sets(), f"foreign generator cut to tissue with a sharp edge ({SHARP_EDGE:g} µm)": sharp}


def main() -> None:
    scorer = OnnxScorer(resolve_model("default"))
    cfg = scorer.config
    results, rows = [], []
    for set_name, entries in sets().items():
        pooled = {w: np.zeros(3, int) for w in WAYS}
        candidates = {w: 0 for w in WAYS}
        left_out, changed, deltas = 0, [], []
        for name, key, make in entries:
            counted = {}
            for w, drop in WAYS.items():
                data = clutter_bound.candidates(key, make, scorer=scorer, drop_slopes=drop)
                counted[w] = clutter_bound.counted(data, adapting(data["counts"], model=cfg).factor, threshold=cfg.threshold)
                pooled[w] += counted[w]
                candidates[w] += int(data["counts"].sum()) + int(data.get("on_slope", 0))
                left_out += int(data["on_slope"]) if drop else 0
            before, after = counted.values()
            if np.any(before != after):
                changed.append(dict(volume=name, tp_fp_fn={w: c.tolist() for w, c in counted.items()}))
                deltas.append(clutter_bound.f1(after) - clutter_bound.f1(before))
        shown, spread = pooled_cells(set_name, [pooled[w] for w in WAYS], deltas)
        total = candidates[list(WAYS)[-1]]
        rows.append([set_name, len(entries), *shown, f"{left_out / max(total, 1):.1%}", len(changed), spread])
        results.append(dict(set=set_name, volumes=len(entries), pooled={w: c.tolist() for w, c in pooled.items()},
                            candidates=total, left_out=left_out, changed=changed))
        print(rows[-1], flush=True)
    md = report.write(
        "slope_candidates",
        data=dict(threshold=cfg.threshold, sets=results),
        columns=["set", "volumes", *[f"{w}: F1 (false / missed cells)" for w in WAYS], "candidates left out",
                 "volumes changed", "their F1 change"],
        rows=rows,
        notes=(
            "Built-in model, adapting as detect's; pooled over each set's volumes (for the volumes without cells: false cells "
            "in all). A candidate is left out where its patch's core (within 0.6 cell radii) is dimmer than the median of the "
            "patch's shell (1.4-2 cell radii) on one of its 26 sides, and than the shell's mean on one of them (kernels/slope.py)."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
