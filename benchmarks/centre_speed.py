"""What centring detections on their cells (kernels.centre) costs: its patches per second, the numpy reference's, and
scoring's (onnxruntime on the CPU, the built-in model), on the same candidate patches, in the same run. detect centres
only the candidates it keeps, so its cost per candidate scored is at most the ratio shown.

Run: python benchmarks/centre_speed.py [--shape 32,1024,1024] [--seconds 4]   (writes results/centre_speed.{json,md})
Volumes: as slope_speed.py's (the simulated volume at the model's own scale, cellfinder's real crop mirror-tiled).
"""

from __future__ import annotations

import numpy as np
import report
from slope_speed import BATCH, candidate_patches, measured

from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.kernels import reference
from clarity_fast.kernels.centre import BACKGROUND_PERCENTILE, STEPS, WEIGHT_SD, centre_shifts
from clarity_fast.settings import Scale


def measure(volume: np.ndarray, scale: Scale, *, scorer: OnnxScorer, seconds: float) -> dict:
    """Patches per second of centring, its reference and scoring, on (up to a batch of) the volume's candidates."""
    counts, patches = candidate_patches(volume, scale, scorer=scorer)
    diameter = scorer.config.scale.cell_diameter_voxels
    ours = centre_shifts(patches, diameter=diameter)
    theirs = reference.centre_shifts(patches, diameter=diameter, steps=STEPS, weight_sd=WEIGHT_SD, percentile=BACKGROUND_PERCENTILE)
    rate = report.calls_per_second(lambda: centre_shifts(patches, diameter=diameter), seconds) * len(patches)
    numpy = report.calls_per_second(
        lambda: reference.centre_shifts(patches, diameter=diameter, steps=STEPS, weight_sd=WEIGHT_SD, percentile=BACKGROUND_PERCENTILE), seconds
    ) * len(patches)
    score = report.calls_per_second(lambda: scorer(patches), seconds) * len(patches)
    return {
        **counts, "same_patches_without_estimate": bool(np.array_equal(np.isnan(ours), np.isnan(theirs))),
        "share_without_estimate": float(np.isnan(ours[:, 0]).mean()),
        "max_abs_difference_voxels": float(np.nanmax(np.abs(ours - theirs))), "mean_shift_voxels": np.nanmean(np.abs(ours), axis=0).tolist(),
        "centre_patches_per_s": rate, "reference_patches_per_s": numpy, "scoring_patches_per_s": score,
    }


def main() -> None:
    args, scorer, results = measured(__doc__.splitlines()[0], measure)
    shape, rows = args.shape, []
    for name, r in results.items():
        rows.append([
            name, r["timed"], f"{r['centre_patches_per_s'] / 1e3:.0f}", f"{r['reference_patches_per_s'] / 1e3:.1f}",
            f"{r['centre_patches_per_s'] / r['reference_patches_per_s']:.0f}×", f"{r['scoring_patches_per_s'] / 1e3:.1f}",
            f"{r['scoring_patches_per_s'] / r['centre_patches_per_s']:.1%}", f"{r['max_abs_difference_voxels']:.1e}",
            f"{r['share_without_estimate']:.1%} ({'the same' if r['same_patches_without_estimate'] else 'NOT the same'} as the reference's)",
        ])
    md = report.write(
        "centre_speed",
        data=dict(shape=shape, batch=BATCH, seconds=args.seconds, provider=scorer.provider, results=results),
        columns=["volume", "patches", "centring k patches/s", "numpy reference k patches/s", "speed-up", "scoring k patches/s (CPU)",
                 "centring's time per patch, of scoring's", "max |Δ| against the reference (voxels)",
                 "patches without an estimate (reported at the candidate)"],
        rows=rows,
        notes=(
            f"{'×'.join(map(str, shape))} voxels; up to {BATCH} of the prefilter's candidates, gathered once as the model's patches; "
            f"each of the three timed back to back on them for {args.seconds:g} s (centring with numba on all cores, the reference "
            "in numpy, scoring by onnxruntime on the CPU at batch 4096)."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
