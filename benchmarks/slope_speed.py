"""What the slope test (kernels.slope) costs against what it saves: its patches per second, the numpy reference's, and
scoring's (onnxruntime on the CPU, the built-in model), on the same patches, in the same run.

Run: python benchmarks/slope_speed.py [--shape 32,1024,1024] [--seconds 4]   (writes results/slope_speed.{json,md})
Volumes: the simulated volume at the model's own scale, and cellfinder's real crop, mirror-tiled to the same shape, at
5×2×2 µm with 16 µm cells. What the test leaves out where a tissue edge runs through a volume: slope_candidates.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import report

from clarity_fast.candidates import find_candidates
from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer, RuntimeSettings
from clarity_fast.io.volumes import open_array
from clarity_fast.kernels import reference
from clarity_fast.kernels.gather import gather_patches, working_grid
from clarity_fast.kernels.slope import SlopeTest
from clarity_fast.pipeline import DetectSettings
from clarity_fast.settings import PrefilterSettings, Scale

BATCH = 4096


def volumes(shape: tuple[int, int, int]) -> list[tuple[str, np.ndarray, Scale]]:
    out = [("simulated, 4×2×2 µm, 12 µm cells", np.load(report.simulated_volume(shape)),
            Scale(voxel_size=report.SIMULATED[0], cell_diameter=report.SIMULATED[1]))]
    if (crop := report.tiled_crop(shape)) is not None:
        out.append(("cellfinder_crop (real), mirror-tiled, 5×2×2 µm, 16 µm cells", np.load(crop),
                    Scale(voxel_size=report.CROP_SCALE[0], cell_diameter=report.CROP_SCALE[1])))
    return out


def candidate_patches(volume: np.ndarray, scale: Scale, *, scorer: OnnxScorer) -> tuple[dict, np.ndarray]:
    """The patches of (up to a batch of) the volume's candidates, cut as detect cuts them, and what it found."""
    cfg = scorer.config
    factors = DetectSettings(voxel_size=scale.voxel_size, cell_diameter=scale.cell_diameter, threshold=cfg.threshold,
                             prefilter_threshold=cfg.prefilter_threshold).zoom(cfg)  # detect's grid for these cells
    grid = working_grid(volume.shape, factors=factors)
    found = find_candidates(open_array(volume), settings=PrefilterSettings(scale=scale))
    centres = grid.nearest(found.zyx)[:BATCH]
    patch = cfg.network.patch
    patches = gather_patches(volume, centres=centres, out=np.empty((len(centres), 1, patch, patch, patch), np.float32), grid=grid)
    return {"factors": factors, "candidates": len(found), "timed": len(patches)}, patches


def measure(volume: np.ndarray, scale: Scale, *, scorer: OnnxScorer, seconds: float) -> dict:
    """Patches per second of the slope test, its reference and scoring, on (up to a batch of) the volume's candidates."""
    cfg = scorer.config
    counts, patches = candidate_patches(volume, scale, scorer=scorer)
    test = SlopeTest.for_patch(patch=cfg.network.patch, radius=cfg.scale.cell_radius_voxels)
    on_slope = test.on_slope(patches)
    slope = report.calls_per_second(lambda: test.on_slope(patches), seconds) * len(patches)
    numpy = report.calls_per_second(lambda: reference.on_slope(patches, radius=cfg.scale.cell_radius_voxels), seconds) * len(patches)
    score = report.calls_per_second(lambda: scorer(patches), seconds) * len(patches)
    return {
        **counts, "left_out": float(on_slope.mean()),
        "agrees_with_reference": bool(np.array_equal(on_slope, reference.on_slope(patches, radius=cfg.scale.cell_radius_voxels))),
        "slope_patches_per_s": slope, "reference_patches_per_s": numpy, "scoring_patches_per_s": score,
    }


def measured(description: str, measure: Callable[..., dict]) -> tuple[argparse.Namespace, OnnxScorer, dict[str, dict]]:
    """Read --shape and --seconds, and measure(volume, scale, scorer=, seconds=) each volume with the built-in model on
    the CPU: the arguments, the scorer and the results by volume."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--shape", default="32,1024,1024")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    args.shape = tuple(int(v) for v in args.shape.split(","))
    scorer = OnnxScorer(resolve_model("default"), settings=RuntimeSettings(device="cpu"))
    return args, scorer, {name: measure(volume, scale, scorer=scorer, seconds=args.seconds) for name, volume, scale in volumes(args.shape)}


def main() -> None:
    args, scorer, results = measured(__doc__.splitlines()[0], measure)
    shape, rows = args.shape, []
    for name, r in results.items():
        cost = r["scoring_patches_per_s"] / r["slope_patches_per_s"]  # the test's time per candidate, in scoring times
        rows.append([
            name, r["candidates"], f"{r['left_out']:.1%}", f"{r['slope_patches_per_s'] / 1e3:.0f}", f"{r['reference_patches_per_s'] / 1e3:.1f}",
            f"{r['scoring_patches_per_s'] / 1e3:.1f}", f"{cost:.1%}", f"{cost + 1 - r['left_out']:.2f}×", r["agrees_with_reference"],
        ])
    md = report.write(
        "slope_speed",
        data=dict(shape=shape, batch=BATCH, seconds=args.seconds, provider=scorer.provider, results=results),
        columns=["volume", "candidates", "left out", "slope test k patches/s", "numpy reference k patches/s", "scoring k patches/s (CPU)",
                 "test's time per candidate, of scoring's", "scoring time with the test, of without", "same as the reference"],
        rows=rows,
        notes=(
            f"{'×'.join(map(str, shape))} voxels; up to {BATCH} of the prefilter's candidates, gathered once as the model's patches; "
            f"each of the three timed back to back on them for {args.seconds:g} s (the test with numba on all cores, the reference "
            "in numpy, scoring by onnxruntime on the CPU at batch 4096). 'Scoring time with the test': the test on every "
            "candidate plus scoring those kept, over scoring every candidate."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
