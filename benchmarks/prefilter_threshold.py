"""Whether a lower prefilter threshold pays end to end: where faint cells are lost, the prefilter's recall caps
`detect` (it passes 70-76% of the faintest foreign conditions' cells at its threshold of 3, while a LoG with a
fitted threshold finds 92-95%), so the built-in model is run on the candidates of thresholds 2, 2.5 and 3 (noise
units), everything else as `detect` does it: z rescaled where cells look elongated, every candidate scored,
probabilities adapted from that threshold's own histogram (pipeline.adapting), then threshold and merge
(pipeline.kept_cells). Volumes: the six faint foreign conditions of foreign_seeds.py at seeds 7000-7007 (where a
lower threshold could help) and the 25 real delivr_cfos patches (where it could hurt). Matching: 3.5 voxels, z
counted double.

Run: python benchmarks/prefilter_threshold.py   (needs ../shared/data for the real rows; writes
results/prefilter_threshold.{json,md}; about 10 minutes on 2 cores)
"""

from __future__ import annotations

import csv

import clutter_bound
import foreign_seeds
import foreign_synthetic as fs
import numpy as np
import report
from default_model import DELIVR, REAL

from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.pipeline import adapting

THRESHOLDS = (2.0, 2.5, 3.0)  # noise units; 3 is the prefilter's default


def counted(key: str, make, *, scorer: OnnxScorer) -> dict[float, np.ndarray]:
    """(tp, fp, fn, candidates) of `detect`'s result on the volume at each prefilter threshold (candidates scored once
    per threshold by clutter_bound.candidates, cached under `key`)."""
    out = {}
    for threshold in THRESHOLDS:
        data = clutter_bound.candidates(f"{key}_threshold{threshold:g}", make, scorer=scorer, prefilter_threshold=threshold)
        factor = adapting(data["counts"], model=scorer.config).factor
        out[threshold] = np.append(clutter_bound.counted(data, factor, threshold=scorer.config.threshold), data["counts"].sum())
    return out


def main() -> None:
    scorer = OnnxScorer(resolve_model("default"))
    by_name = {c.name: c for c in fs.CONDITIONS}
    sets: dict[str, list] = {}
    for name in foreign_seeds.CONDITIONS:
        condition = by_name[name]
        sets[f"foreign: {name}"] = [clutter_bound.made(condition, seed=seed) for seed in foreign_seeds.SEEDS]
    with (DELIVR / "index.csv").open() as f:
        sets["delivr_cfos, all 25 patches (annotations partial)"] = [
            clutter_bound.stored(DELIVR / r["volume_file"], DELIVR / r["points_file"], REAL) for r in csv.DictReader(f)
        ]
    results, rows = [], []
    for set_name, volumes in sets.items():
        pooled = {t: np.zeros(4, int) for t in THRESHOLDS}
        for k, make in enumerate(volumes):
            for t, c in counted(f"prefilter_threshold_{len(results)}_{k}", make, scorer=scorer).items():
                pooled[t] += c
        results.append(dict(set=set_name, volumes=len(volumes), pooled={str(t): c.tolist() for t, c in pooled.items()}))
        rows.append([set_name, len(volumes), *[f"{clutter_bound.f1(pooled[t][:3]):.3f} ({pooled[t][1]} / {pooled[t][2]}; {pooled[t][3]})" for t in THRESHOLDS]])
        print(rows[-1], flush=True)
    md = report.write(
        "prefilter_threshold",
        data=dict(thresholds=THRESHOLDS, model_threshold=scorer.config.threshold, sets=results),
        columns=["set", "volumes", *[f"threshold {t:g}{' (default)' if t == 3.0 else ''}: F1 (false / missed cells; candidates)" for t in THRESHOLDS]],
        rows=rows,
        notes=(
            "Built-in model, each volume's candidates at each prefilter threshold scored and adapted as `detect` does; "
            "pooled over the set's volumes (foreign generator: 192×384×384 µm, 200 cells each)."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
