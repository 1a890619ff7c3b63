"""How stable detect's calls are: the same volume mirrored along each axis, or cut by one column, or told a voxel
size 2% off, should give the same cells mirrored or shifted back.

It need not, exactly: the prefilter keeps the first of equal maxima, the model's grid is anchored at the volume's
first voxel (a mirrored volume is sampled up to half a native voxel elsewhere where it is resampled), the elongation
along z is measured on a block that a mirror moves by a voxel, and every candidate near the threshold can fall either
side. This measures how much that moves the calls: the built-in model through `detect`'s steps at its defaults on a
simulated brain like the test brains (4×2×2 µm, 12 µm cells: the model's own grid, nothing resampled), the
four delivr_cfos patches held out from its training (light-sheet, 6×1.62×1.62 µm, 8 µm nuclei) and on cellfinder's
real serial two-photon crop (5×2×2 µm, 16 µm somata, cellfinder's default), each variant's cells mapped back onto the
original's voxels and matched one to one within half a cell diameter (µm, Hungarian); and each variant's F1 against
the annotations where there are any, to tell calls that move from calls that get worse.

Run: python benchmarks/mirror_stability.py   (writes results/mirror_stability.{json,md}; a few minutes; needs ../shared/data)
"""

from __future__ import annotations

import numpy as np
import report
from odd_planes import DELIVR, HELD_OUT, cells

from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, match_points
from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.io.points import read_points
from clarity_fast.io.volumes import open_array, open_volume
from clarity_fast.simulate import SimulatedBrain, SimulationSettings


def variants(volume: np.ndarray, voxel_size: tuple[float, float, float]):
    """(name, volume, voxel size, a function mapping the variant's cells back onto the original's voxels)."""
    shape = np.asarray(volume.shape)
    yield "as stored", volume, voxel_size, lambda zyx: zyx
    for axis, name in enumerate("zyx"):
        def back(zyx, axis=axis):
            out = zyx.astype(np.float64).copy()
            out[:, axis] = shape[axis] - 1 - out[:, axis]
            return out
        yield f"mirrored along {name}", np.flip(volume, axis=axis).copy(), voxel_size, back
    yield "first x column cut", volume[:, :, 1:].copy(), voxel_size, lambda zyx: zyx + np.array([0, 0, 1])
    for factor in (0.98, 1.02):
        yield f"z voxel size told {factor:g}x", volume, (voxel_size[0] * factor, *voxel_size[1:]), lambda zyx: zyx


def main() -> None:
    scorer = OnnxScorer(resolve_model("default"))
    simulated = report.OUT / "mirror_stability_simulated.npy"
    report.OUT.mkdir(exist_ok=True)
    brain = SimulatedBrain(SimulationSettings(shape=(32, 256, 256), difficulty=1.0, seed=1))
    np.save(simulated, brain.volume())
    sets = [("simulated brain (difficulty 1, 32×256×256)", simulated, *report.SIMULATED, brain.cells.zyx)]
    sets += [(f"delivr_cfos {p} (held out)", DELIVR / "patches" / p / "volume.tif", (6.0, 1.62, 1.62), 8.0,
              read_points(DELIVR / "patches" / p / "points.csv").zyx) for p in HELD_OUT]
    sets.append(("cellfinder crop", report.CROP / "signal.tif", *report.CROP_SCALE, None))  # its points are cellfinder's calls
    rows, results = [], []
    for name, path, voxel_size, diameter, truth in sets:
        if not path.is_file():
            print(f"skipped {name}: {path} missing")
            continue
        with open_volume(path) as reader:
            volume = reader.read_slab(0, reader.shape[0])
        base = None
        for variant, data, told, back in variants(volume, voxel_size):
            found = back(cells(open_array(data), voxel_size=told, diameter=diameter, scorer=scorer))
            accuracy = None if truth is None else match_points(pred=found, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS).f1
            shown = "" if accuracy is None else f"{accuracy:.3f}"
            if base is None:
                base = found
                rows.append([name, variant, str(len(found)), "", "", shown])
                results.append(dict(volume=name, variant=variant, cells=len(found), f1_against_annotations=accuracy))
                continue
            m = match_points(pred=found, truth=base, radius=diameter / 2, axis_scale=voxel_size)
            rows.append([name, variant, str(len(found)), f"{m.tp / max(len(base), 1):.2f}", f"{m.f1:.3f}", shown])
            results.append(dict(volume=name, variant=variant, cells=len(found), kept=m.tp / max(len(base), 1), agreement_f1=m.f1,
                                f1_against_annotations=accuracy))
            print(rows[-1], flush=True)
    report.write(
        "mirror_stability",
        data=dict(results=results),
        columns=["volume", "variant", "cells", "share of the original's cells found again", "agreement F1", "F1 against the annotations"],
        rows=rows,
        notes=("The built-in model through `detect`'s steps at its defaults; a variant's cells mapped back onto the "
               "original's voxels and matched to the original's one to one within half a cell diameter (µm); against the "
               "annotations (simulated truth, delivr's human points; none for the crop) by the study's rule, 3.5 voxels "
               "with z counted double."),
    )


if __name__ == "__main__":
    main()
