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
from dataclasses import replace

import foreign_seeds
import foreign_synthetic as fs
import numpy as np
import report
from default_model import DELIVR, REAL, voxel_size

from clarity_fast.candidates import slab_ranges
from clarity_fast.cell_shape import corrected_scale
from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, match_points
from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.io.points import read_points
from clarity_fast.io.volumes import open_array, open_volume
from clarity_fast.noise_correlation import volume_noise
from clarity_fast.pipeline import DetectSettings, adapting, kept_cells, process_slabs
from clarity_fast.settings import Scale

THRESHOLDS = (2.0, 2.5, 3.0)  # noise units; 3 is the prefilter's default
KEEP_FROM = 1e-4  # candidates at or above this probability are kept for thresholding; no adapted threshold goes lower


def counted(volume: np.ndarray, truth: np.ndarray, *, voxel: tuple, diameter: float, scorer: OnnxScorer) -> dict[float, np.ndarray]:
    """(tp, fp, fn) of `detect`'s result on the volume at each prefilter threshold."""
    cfg = scorer.config
    reader = open_array(volume)
    noise = volume_noise(reader)
    scale, _ = corrected_scale(reader, scale=Scale(voxel_size=voxel, cell_diameter=diameter), noise=noise)
    out = {}
    for threshold in THRESHOLDS:
        settings = replace(
            DetectSettings(voxel_size=scale.voxel_size, cell_diameter=diameter, threshold=KEEP_FROM, prefilter_threshold=threshold, adapt=False),
            noise=noise,
        )
        parts = []
        process_slabs(reader, scorer=scorer, model=cfg, settings=settings, slabs=slab_ranges(reader.shape[0], slab_depth=settings.slab_depth),
                      on_result=parts.append, seconds={})
        counts = np.sum([p.histogram for p in parts], axis=0)
        zyx, _, _ = kept_cells(np.concatenate([p.zyx for p in parts]), np.concatenate([p.probability for p in parts]),
                               factor=adapting(counts, model=cfg).factor, threshold=cfg.threshold, merge_radius=settings.scale.merge_radius_voxels)
        m = match_points(pred=zyx, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
        out[threshold] = np.array([m.tp, m.fp, m.fn, int(counts.sum())])
    return out


def f1(tp_fp_fn: np.ndarray) -> float:
    tp, fp, fn = tp_fp_fn[:3]
    return 2 * tp / max(2 * tp + fp + fn, 1)


def main() -> None:
    scorer = OnnxScorer(resolve_model("default"))
    by_name = {c.name: c for c in fs.CONDITIONS}
    sets: dict[str, list] = {}
    for name in foreign_seeds.CONDITIONS:
        condition = by_name[name]
        sets[f"foreign: {name}"] = [
            lambda c=condition, s=seed: (*fs.make_volume(c, seed=s), c.voxel, c.stated_diameter) for seed in foreign_seeds.SEEDS
        ]
    with (DELIVR / "index.csv").open() as f:
        rows_csv = list(csv.DictReader(f))

    def real(row: dict):
        with open_volume(DELIVR / row["volume_file"]) as reader:
            volume = reader.read_slab(0, reader.shape[0])
        return volume, read_points(DELIVR / row["points_file"]).zyx, voxel_size(REAL), REAL["diameter"]

    sets["delivr_cfos, all 25 patches (annotations partial)"] = [lambda r=r: real(r) for r in rows_csv]
    results, rows = [], []
    for set_name, volumes in sets.items():
        pooled = {t: np.zeros(4, int) for t in THRESHOLDS}
        for make in volumes:
            volume, truth, voxel, diameter = make()
            for t, c in counted(volume, np.asarray(truth, float).reshape(-1, 3), voxel=voxel, diameter=diameter, scorer=scorer).items():
                pooled[t] += c
        results.append(dict(set=set_name, volumes=len(volumes), pooled={str(t): c.tolist() for t, c in pooled.items()}))
        rows.append([set_name, len(volumes), *[f"{f1(pooled[t]):.3f} ({pooled[t][1]} / {pooled[t][2]}; {pooled[t][3]})" for t in THRESHOLDS]])
        print(rows[-1], flush=True)
    md = report.write(
        "prefilter_threshold",
        data=dict(thresholds=THRESHOLDS, model_threshold=scorer.config.threshold, sets=results),
        columns=["volumes", "n", *[f"threshold {t:g}{' (default)' if t == 3.0 else ''}: F1 (false / missed cells; candidates)" for t in THRESHOLDS]],
        rows=rows,
        notes=(
            "Built-in model, each volume's candidates at each prefilter threshold scored and adapted as `detect` does; "
            "pooled over the set's volumes (foreign generator: 192×384×384 µm, 200 cells each)."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
