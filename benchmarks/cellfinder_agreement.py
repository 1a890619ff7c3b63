"""How many of cellfinder's own calls on its real serial two-photon crop clarity-fast proposes and keeps.

cellfinder_crop's 56 points are an old cellfinder run's output (detection and its ResNet classifier), not manual
ground truth and far from exhaustive, so precision means nothing here; but each is a soma that a tool trained on
this kind of data accepted, so the share of them clarity-fast finds (as a candidate, and as a detection of the
built-in model at `detect`'s defaults) says whether it sees the cells such users count. Run at cellfinder's default
soma diameter (16 µm) and at two smaller ones (the somata read 10–14 µm across in the planes). It also records how
many planes each point's intensity stays above half its peak (over the median plane's level): the crop's somata run
into columns along z (apical dendrites, perhaps; cut by 10-plane physical sections whose brightness jumps at each cut), which
a prefilter that asks a cell to curve down along z reads as rods, or centres where a section cut ends the column.
Writes a montage of every point's plane, ordered by the best probability among detections within 10 µm at
threshold 0 (after merging), lowest first; red ticks around the point, a yellow dot on each candidate within a plane.

Run: python benchmarks/cellfinder_agreement.py   (needs ../shared/data; writes results/cellfinder_agreement.{json,md,png};
under a minute)
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import report
import tifffile

from clarity_fast.evaluate import match_points
from clarity_fast.io.png import write_png
from clarity_fast.io.points import read_points

VOXEL = report.CROP_SCALE[0]
DIAMETERS = (16.0, 12.0, 10.0)  # cellfinder's default first
RADIUS_UM = 10.0  # a match: within 10 µm (two planes along z)
OUT = report.OUT / "cellfinder_agreement"


def run(command: str, diameter: float, *extra: str):
    """`clarity-fast COMMAND` on the crop's signal channel; the points it wrote and its summary line."""
    out = OUT / f"{command}_{diameter:g}{'_all' if extra else ''}.csv"
    args = [command, str(report.CROP / "signal.tif"), "--out", str(out), "--voxel-size", ",".join(map(str, VOXEL)),
            "--cell-diameter", str(diameter), *extra]
    done = subprocess.run([sys.executable, "-m", "clarity_fast", *args], check=True, capture_output=True, text=True)
    return read_points(out), done.stdout.splitlines()


def planes_above_half(volume: np.ndarray, zyx: np.ndarray) -> np.ndarray:
    """For each point, how many planes in a row around it stay above half its peak over the median plane level."""
    level = np.median(volume.reshape(len(volume), -1), axis=1)
    counts = []
    for z, y, x in np.round(zyx).astype(int):
        profile = volume[:, y, x].astype(float) - level
        half = profile[z] / 2
        lo, hi = z, z
        while lo > 0 and profile[lo - 1] > half:
            lo -= 1
        while hi < len(profile) - 1 and profile[hi + 1] > half:
            hi += 1
        counts.append(hi - lo + 1)
    return np.asarray(counts)


def best_nearby(points, truth: np.ndarray) -> np.ndarray:
    """For each true point, the highest probability among `points` within RADIUS_UM (0 where none)."""
    scale = np.asarray(VOXEL)
    d = np.linalg.norm((points.zyx[None, :, :] - truth[:, None, :]) * scale, axis=2) if len(points.zyx) else np.full((len(truth), 0), np.inf)
    near = d <= RADIUS_UM
    return np.where(near, points.score[None, :], 0.0).max(axis=1, initial=0.0)


def montage(volume: np.ndarray, truth: np.ndarray, candidates: np.ndarray, best: np.ndarray) -> None:
    """Every cellfinder point's plane (41×41 voxels, 82×82 µm), weakest first, its candidates within a plane marked."""
    tile, cols = 41, 8
    order = np.argsort(best, kind="stable")
    rows = -(-len(order) // cols)
    lo, hi = np.percentile(volume, [1, 99.8])
    image = np.zeros((rows * (tile + 2), cols * (tile + 2), 3), np.uint8)
    for k, i in enumerate(order):
        z, y, x = np.round(truth[i]).astype(int)
        padded = np.pad(volume[z].astype(float), 20, mode="reflect")[y : y + tile, x : x + tile]
        grey = np.clip((padded - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
        cell = np.repeat(grey[:, :, None], 3, axis=2)
        for cz, cy, cx in candidates:
            dy, dx = int(cy) - y + 20, int(cx) - x + 20
            if abs(cz - z) <= 1 and 0 <= dy < tile and 0 <= dx < tile:
                cell[dy, dx] = (255, 220, 0)  # a candidate
        cell[20, 11:15] = cell[20, 27:31] = cell[11:15, 20] = cell[27:31, 20] = (255, 0, 0)  # ticks around the cellfinder point
        r, c = divmod(k, cols)
        image[r * (tile + 2) : r * (tile + 2) + tile, c * (tile + 2) : c * (tile + 2) + tile] = cell
    write_png(report.RESULTS / "cellfinder_agreement.png", np.repeat(np.repeat(image, 3, axis=0), 3, axis=1))


def main() -> None:
    if not (report.CROP / "points.csv").exists():
        sys.exit("needs ../shared/data/cellfinder_crop")
    OUT.mkdir(parents=True, exist_ok=True)
    volume = tifffile.imread(report.CROP / "signal.tif")
    truth = read_points(report.CROP / "points.csv").zyx
    extent = planes_above_half(volume, truth)
    rows, results = [], []
    for diameter in DIAMETERS:
        candidates, _ = run("candidates", diameter)
        cells, lines = run("detect", diameter)
        scored, _ = run("detect", diameter, "--threshold", "0")
        proposed = match_points(pred=candidates.zyx, truth=truth, radius=RADIUS_UM, axis_scale=VOXEL)
        kept = match_points(pred=cells.zyx, truth=truth, radius=RADIUS_UM, axis_scale=VOXEL)
        best = best_nearby(scored, truth)
        elongation = next((line for line in lines if line.startswith("cells look")), "")
        results.append(dict(
            cell_diameter_um=diameter, candidates=len(candidates), cells=len(cells),
            proposed=int(proposed.tp), kept=int(kept.tp), points=len(truth), best_probability=best.tolist(), elongation_line=elongation,
        ))
        rows.append([f"{diameter:g}", len(candidates), f"{proposed.tp} ({proposed.tp / len(truth):.2f})", len(cells),
                     f"{kept.tp} ({kept.tp / len(truth):.2f})", elongation or "round"])
        if diameter == DIAMETERS[0]:
            montage(volume, truth, candidates.zyx, best)
    report.write(
        "cellfinder_agreement",
        data=dict(voxel_um=VOXEL, radius_um=RADIUS_UM, planes_above_half_peak=extent.tolist(), results=results),
        columns=["cell diameter (µm)", "candidates", "cellfinder's 56 points proposed", "cells kept", "cellfinder's points kept",
                 "elongation `detect` measured"],
        rows=rows,
        notes=(
            "cellfinder's real serial two-photon crop (30×510×667 at 5×2×2 µm; `../shared/data/cellfinder_crop`), signal "
            "channel, built-in model at `detect`'s defaults. cellfinder's 56 points are its own earlier output (detection and "
            f"classification), not exhaustive ground truth: a point counts as found when a candidate or detection lies within {RADIUS_UM:g} µm. "
            f"Their intensity stays above half its peak over {np.median(extent):.0f} planes (median; {np.percentile(extent, 10):.0f}–"
            f"{np.percentile(extent, 90):.0f} from the 10th to the 90th percentile) of 5 µm: columns, not round cells."
        ),
    )


if __name__ == "__main__":
    main()
