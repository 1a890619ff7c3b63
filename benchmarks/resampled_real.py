"""Real data, resampled: the built-in model on its held-out delivr_cfos patches upsampled in-plane, with the
prefilter's noise-correlation correction and without it (white-noise units), in the same run.

Resampling to a finer grid (to isotropic voxels, to an atlas, after registration) interpolates the noise, which
correlates it between neighbouring voxels; the prefilter then measures too little noise unless it corrects for
that (clarity_fast.noise_correlation). Each held-out patch (one per group, as benchmarks/default_model.py holds
them out) is zoomed by 1.5 and 2 in y and x (linear interpolation), detected at its new voxel size, and the
detections are mapped back and matched against the annotations by the study's rule (3.5 native voxels, z
counted double), pooled over the four patches.

Run: python benchmarks/resampled_real.py   (writes results/resampled_real.{json,md}; about a minute)
"""

from __future__ import annotations

import csv

import numpy as np
import report
from default_model import DELIVR, held_out_patches
from scipy.ndimage import zoom

from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, match_points
from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.io.points import read_points
from clarity_fast.io.volumes import open_array, open_volume
from clarity_fast.noise_correlation import NoiseModel
from clarity_fast.pipeline import DetectSettings, detect

VOXEL = (6.0, 1.62, 1.62)
DIAMETER = 8.0
ZOOMS = (1.0, 1.5, 2.0)


def main() -> None:
    with (DELIVR / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    patches = [r for r in rows if r["patch_id"] in held_out_patches(rows)]
    scorer = OnnxScorer(resolve_model("default"))
    model = scorer.config
    counts: dict[tuple[float, str], np.ndarray] = {}
    candidates: dict[tuple[float, str], int] = {}
    for row in patches:
        with open_volume(DELIVR / row["volume_file"]) as reader:
            volume = reader.read_slab(0, reader.shape[0]).astype(np.float32)
        truth = read_points(DELIVR / row["points_file"]).zyx
        for factor in ZOOMS:
            data = volume if factor == 1.0 else zoom(volume, (1.0, factor, factor), order=1)
            data = np.rint(data).astype(np.uint16)
            for mode, noise in (("corrected", None), ("white-noise units", NoiseModel())):
                settings = DetectSettings(
                    voxel_size=(VOXEL[0], VOXEL[1] / factor, VOXEL[2] / factor), cell_diameter=DIAMETER,
                    threshold=model.threshold, prefilter_threshold=model.prefilter_threshold, noise=noise,
                )
                result = detect(open_array(data), scorer=scorer, model=model, settings=settings)
                native = result.zyx.astype(float)
                native[:, 1:] = (native[:, 1:] + 0.5) / factor - 0.5
                m = match_points(pred=native, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
                key = (factor, mode)
                counts[key] = counts.get(key, np.zeros(3, np.int64)) + (m.tp, m.fp, m.fn)
                candidates[key] = candidates.get(key, 0) + result.candidates
                print(row["patch_id"], factor, mode, f"F1 {m.f1:.3f}", flush=True)
    table, out = [], {}
    for (factor, mode), (tp, fp, fn) in counts.items():
        precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        f1 = 2 * tp / max(2 * tp + fp + fn, 1)
        out[f"{factor}x, {mode}"] = dict(tp=int(tp), fp=int(fp), fn=int(fn), precision=precision, recall=recall, f1=f1,
                                         candidates=candidates[(factor, mode)])
        table.append([f"{factor:g}×", mode, candidates[(factor, mode)], f"{precision:.3f}", f"{recall:.3f}", f"{f1:.3f}"])
    md = report.write(
        "resampled_real",
        data=dict(patches=[r["patch_id"] for r in patches], zooms=ZOOMS, results=out),
        columns=["in-plane zoom", "prefilter noise", "candidates", "precision", "recall", "F1"],
        rows=table,
        notes=(
            f"The built-in model's held-out delivr_cfos patches ({', '.join(r['patch_id'] for r in patches)}; "
            f"voxel {VOXEL} µm, --cell-diameter {DIAMETER:g}) zoomed in y and x by linear interpolation and detected "
            "at their new voxel size, with the noise correlation measured and corrected, and with white-noise units "
            "(no correction); pooled over the patches, matched in native voxels (3.5, z counted double). "
            "Annotations are partial, so precision reads low throughout; compare the rows."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
