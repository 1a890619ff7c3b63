"""What a lab gains from annotating one small block of its own data: the built-in model as it is, with a threshold
fitted on the block, fine-tuned on the block (`train --from default`; the block cut out as a volume of its own, and
the block named by a manifest region in the whole volume), and a new network trained on the block alone.

Volumes from the two generators the built-in model never saw (structured_background.py, all ten conditions, and
foreign_synthetic.py, its weakest conditions and two easy ones), and from our own simulator at the two geometries
it was not trained at (default_model.py's UNSEEN_GEOMETRIES, where it reads F1 0.83 and 0.71). For each condition a block, a quarter of one volume
(half its extent in y and x, all planes: about 50 cells, 175 in the dense ones), is the annotated data; the test
is another volume of the same condition (another seed). Every model runs through `clarity-fast detect` at its
defaults; matched within 3.5 voxels, z counted double.
Run: python benchmarks/fine_tune.py   (writes results/fine_tune.{json,md}; about an hour on 2 cores)
     python benchmarks/fine_tune.py --neuron-shapes   (neuron_shapes.py's conditions, the built-in and fine-tuned
     models only; writes results/fine_tune_neuron_shapes.{json,md}; about 10 minutes)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import default_model as dm
import foreign_synthetic as fs
import neuron_shapes
import numpy as np
import report
import structured_background as sb

from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, Match, match_points
from clarity_fast.io.points import Points, read_points, write_points
from clarity_fast.io.volumes import open_volume, write_tiff

OUT = report.OUT / "fine_tune"
FOREIGN = [  # the built-in model's weakest foreign conditions at its defaults, and two it finds almost perfectly
    "low SNR + gradient + distractors",
    "very low SNR (peak 2.5 noise sd)",
    "blurred balls, low SNR (peak 3 noise sd)",
    "cells 2x longer along z, peak 4 noise sd",
    "noise blurred by 0.7 voxel",
    "2x1x1 um voxels, 7 um cells",
    "gaussian cells, high SNR",
    "dense, touching",
]
MODELS = {  # name: the manifest trained on and train's arguments (None: the built-in model itself)
    "built-in": None,
    "fine-tuned": ("block.csv", ["--from", "default"]),
    "fine-tuned, 60 epochs": ("block.csv", ["--from", "default", "--epochs", "60"]),
    "new network": ("block.csv", []),
    # the same block marked in the whole volume, a manifest region naming it (context read around it, not cropped)
    "fine-tuned, block as a region": ("region.csv", ["--from", "default"]),
}


def simulated(geometry: fs.Cells, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(volume, true centres in voxels) of one simulated difficulty-1 brain at the geometry."""
    spec = dict(voxel="x".join(f"{v:g}" for v in geometry.voxel), diameter=geometry.diameter)
    _, volume, points, _ = dm.simulated_volumes(OUT / "simulated" / f"{dm.geometry_name(spec)}_{seed}", seed=seed, n=1, geometry=spec)[0]
    with open_volume(volume) as reader:
        return np.asarray(reader.read_slab(0, reader.shape[0])), read_points(points).cells


def cases() -> list[tuple[str, object, object]]:
    """(generator, condition, make_volume) for every condition measured."""
    foreign = {c.name: c for c in fs.CONDITIONS}
    own = [fs.Cells(f"{g['voxel']} µm voxels, {g['diameter']:g} µm cells", voxel=dm.voxel_size(g), diameter=g["diameter"]) for g in dm.UNSEEN_GEOMETRIES]
    return ([("structured", c, sb.make_volume) for c in sb.CONDITIONS] + [("foreign", foreign[n], fs.make_volume) for n in FOREIGN]
            + [("own simulator", g, simulated) for g in own])


def neuron_cases() -> list[tuple[str, object, object]]:
    """(generator, condition, make_volume) for the fourth generator's conditions (neuron_shapes.py)."""
    return [("neuron shapes", c, neuron_shapes.make_volume) for c in neuron_shapes.CONDITIONS]


def cli(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "clarity_fast", *map(str, args)], check=True, capture_output=True)


def block(volume: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """A quarter of the volume (half its y and x extent), the cells inside it, and the manifest region that names it."""
    h, w = volume.shape[1] // 2, volume.shape[2] // 2
    inside = (truth[:, 1] < h - 0.5) & (truth[:, 2] < w - 0.5)
    return volume[:, :h, :w], truth[inside], f":x:{h}x:{w}"


def model_for(name: str, folder: Path, condition) -> str:
    """The .onnx to detect with: the built-in model, or one trained on the block as MODELS[name] says."""
    if MODELS[name] is None:
        return "default"
    manifest, args = MODELS[name]
    pt = folder / f"{name.replace(' ', '_').replace(',', '')}.pt"
    if not pt.with_suffix(".onnx").exists():
        cli("train", "--manifest", folder / manifest, "--out", pt, "--cell-diameter", condition.stated_diameter, *args)
        cli("export", "--onnx", pt)
    return str(pt.with_suffix(".onnx"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neuron-shapes", action="store_true",
                        help="neuron_shapes.py's conditions, the built-in and fine-tuned models only (results/fine_tune_neuron_shapes.*)")
    shapes = parser.parse_args().neuron_shapes
    chosen, models = (neuron_cases(), ["built-in", "fine-tuned"]) if shapes else (cases(), list(MODELS))
    out = OUT.with_name("fine_tune_neuron_shapes") if shapes else OUT
    results, rows = [], []
    for i, (generator, condition, make) in enumerate(chosen):
        folder = out / f"condition_{i}"
        folder.mkdir(parents=True, exist_ok=True)
        whole, whole_truth = make(condition, seed=5000 + i)
        volume, truth, region = block(whole, whole_truth)
        test, test_truth = make(condition, seed=6000 + i)
        write_tiff(folder / "block.tif", volume, voxel_size=condition.voxel)
        write_tiff(folder / "whole.tif", whole, voxel_size=condition.voxel)
        write_tiff(folder / "test.tif", test, voxel_size=condition.voxel)
        write_points(folder / "block_cells.csv", Points(zyx=truth))
        write_points(folder / "whole_cells.csv", Points(zyx=whole_truth))  # marked everywhere; the region keeps the block's
        (folder / "block.csv").write_text("volume,points\nblock.tif,block_cells.csv\n")
        (folder / "region.csv").write_text(f"volume,points,region\nwhole.tif,whole_cells.csv,{region}\n")
        scores: dict[str, Match] = {}
        for name in models:
            model = model_for(name, folder, condition)
            scores[name] = score(fs.detect_cnn(folder / "test.tif", condition, model), test_truth)
            if name == "built-in":
                threshold = fs.fitted_threshold(fs.detect_cnn(folder / "block.tif", condition, model, threshold=0.0), truth)
                scores["built-in, threshold fitted on the block"] = score(
                    fs.detect_cnn(folder / "test.tif", condition, model, threshold=threshold), test_truth
                )
        results.append(dict(generator=generator, condition=condition.name, block_cells=len(truth), test_cells=len(test_truth),
                            models={k: m.summary() for k, m in scores.items()}))
        rows.append([f"{generator}: {condition.name}", len(truth), *[f"{m.f1:.3f}" for m in scores.values()]])
        print(rows[-1], flush=True)
    names = list(results[0]["models"])
    for generator in dict.fromkeys(r["generator"] for r in results):
        part = [r for r in results if r["generator"] == generator]
        rows.append([f"mean, {generator}", "", *[f"{np.mean([r['models'][n]['f1'] for r in part]):.3f}" for n in names]])
    rows.append(["mean, all", "", *[f"{np.mean([r['models'][n]['f1'] for r in results]):.3f}" for n in names]])
    md = report.write(
        out.name,
        data=dict(block="a quarter of one volume: half its y and x extent, all planes", results=results),
        columns=["condition", "cells in the block", *[f"F1: {n}" for n in names]],
        rows=rows,
        notes=(
            "One annotated block (a quarter of a 192×384×384 µm volume) per condition; F1 on another volume of the "
            "condition, each model through `clarity-fast detect` at its defaults. fine-tuned: `train --from default` "
            "(its defaults: 30 epochs, learning rate 1e-4, batch norm's statistics kept); new network: `train` at its "
            "defaults (200 epochs at most, learning rate 1e-3). With one annotated volume, validation (early stopping, "
            "calibration, threshold) runs on the block itself. block as a region: the same block's cells marked in "
            "the whole volume and a manifest `region` naming the block (read with context around it, not cropped)."
        ),
    )
    print(md.read_text())


def score(points, truth: np.ndarray) -> Match:
    return match_points(pred=points.zyx, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)


if __name__ == "__main__":
    main()
