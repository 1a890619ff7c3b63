"""Candidates and detections where real tissue is dark and sparse: background texture the noise units miss.

The prefilter measures noise at the pixel scale and converts it to the noise of its cell-sized response as if it
were (possibly smoothed) white noise. Real tissue also varies at the cell scale (autofluorescence, neuropil,
out-of-focus light), which that measure does not see, so noise bumps there read as several noise units and become
candidates, and the CNN, which sees z-scored patches, keeps some of them. This counts candidates and detections per
Mvoxel in a dark, sparsely labelled region and a dense one of cellfinder's real serial two-photon crop
(../shared/data/cellfinder_crop, 5×2×2 µm, 16 µm somata, the built-in model at `detect`'s defaults) against white
Gaussian noise of the same shape, and writes a montage of 16 random detections of the dark region (each: its plane,
then the mean of its three planes smoothed at a quarter of the cell diameter, each tile scaled to its own 1–99.5th
percentiles; 80×80 µm) so that anyone can judge which hold a cell. The crop has no ground truth. A second table gives
percentiles of the prefilter's response (noise units) there, in white noise, in a simulated brain like the model's
test brains and in a real delivr_cfos patch: whether the response's own spread (its negative side, which cells do
not reach) could tell texture from the noise the units assume.

Run: python benchmarks/background_texture.py   (needs ../shared/data; writes results/background_texture.{json,md,png};
under a minute)
"""

from __future__ import annotations

import numpy as np
import report
import tifffile
from scipy.ndimage import gaussian_filter

from clarity_fast.candidates import find_candidates
from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.io.png import write_png
from clarity_fast.io.volumes import open_array
from clarity_fast.noise_correlation import volume_noise
from clarity_fast.kernels.reference import blob_snr
from clarity_fast.pipeline import DetectSettings, detect
from clarity_fast.settings import PrefilterSettings, Scale
from clarity_fast.simulate import SimulatedBrain, SimulationSettings

# (y, x) slices of the crop's planes: the dark cortex-free right side with scattered cells, and the dense cortex
REGIONS = {"dark, sparse (y 150-450, x 450-640)": (slice(150, 450), slice(450, 640)),
           "dense cortex (y 150-450, x 60-250)": (slice(150, 450), slice(60, 250))}
HALF = 20  # montage tiles are 2 * HALF pixels square
SAMPLE = 16
PERCENTILES = (1, 5, 50, 95, 99)
DELIVR_PATCH = report.CROP.parent / "delivr_cfos" / "patches" / "1147_1" / "volume.tif"


def counts(volume: np.ndarray, *, scale: Scale, scorer: OnnxScorer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate positions, detection positions and their probabilities at `detect`'s defaults."""
    cfg = scorer.config
    reader = open_array(volume)
    found = find_candidates(reader, settings=PrefilterSettings(scale=scale, threshold=cfg.prefilter_threshold), noise=volume_noise(reader))
    result = detect(open_array(volume), scorer=scorer, model=cfg,
                    settings=DetectSettings(voxel_size=scale.voxel_size, cell_diameter=scale.cell_diameter, threshold=cfg.threshold,
                                            prefilter_threshold=cfg.prefilter_threshold))
    return np.asarray(found.zyx), np.asarray(result.zyx), np.asarray(result.probability)


def response_percentiles(volume: np.ndarray, *, scale: Scale, region: tuple[slice, slice] = (slice(None), slice(None))) -> list[float]:
    """PERCENTILES of the prefilter's response, in its noise units, over `region` of every plane (scipy reference)."""
    settings = PrefilterSettings(scale=scale)
    snr = blob_snr(np.asarray(volume, np.float32), sigma=settings.sigma, noise_half_width=settings.noise_half_width, noise_floor=1e-3)
    return np.percentile(snr[(slice(None), *region)], PERCENTILES).round(2).tolist()


def inside(zyx: np.ndarray, region: tuple[slice, slice]) -> np.ndarray:
    ys, xs = region
    return (zyx[:, 1] >= ys.start) & (zyx[:, 1] < ys.stop) & (zyx[:, 2] >= xs.start) & (zyx[:, 2] < xs.stop)


def montage(volume: np.ndarray, centres: np.ndarray, *, smooth: float) -> np.ndarray:
    """Two rows of tiles around each centre: its plane, and its three planes' mean smoothed by `smooth` pixels."""
    rows = []
    for three in (False, True):
        tiles = []
        for z, y, x in centres:
            if three:
                tile = gaussian_filter(volume[max(z - 1, 0) : z + 2, y - HALF : y + HALF, x - HALF : x + HALF].mean(axis=0), smooth)
            else:
                tile = volume[z, y - HALF : y + HALF, x - HALF : x + HALF]
            lo, hi = np.percentile(tile, [1, 99.5])
            tiles.append(np.pad(np.clip((tile - lo) / max(hi - lo, 1e-6), 0, 1), 2, constant_values=1))
        rows.append(np.concatenate(tiles, axis=1))
    image = (np.concatenate(rows, axis=0) * 255).astype(np.uint8)
    return np.kron(image, np.ones((3, 3), np.uint8))


def main() -> None:
    path = report.CROP / "signal.tif"
    if not path.exists():
        raise SystemExit(f"error: no cellfinder crop at {path}: nothing to run on")
    volume = tifffile.imread(path)
    (voxel, diameter) = report.CROP_SCALE
    scale = Scale(voxel_size=voxel, cell_diameter=diameter)
    scorer = OnnxScorer(resolve_model("default"))
    cands, cells, prob = counts(volume, scale=scale, scorer=scorer)
    noise = (1000.0 + 50.0 * np.random.default_rng(0).standard_normal(volume.shape)).astype(np.float32)
    noise_cands, noise_cells, _ = counts(noise, scale=scale, scorer=scorer)
    rows, data = [], {}
    mvox_noise = noise.size / 1e6
    rows.append(["white Gaussian noise, same shape", f"{len(noise_cands) / mvox_noise:.1f}", f"{len(noise_cells) / mvox_noise:.2f}", ""])
    data["white noise"] = dict(candidates=len(noise_cands), detections=len(noise_cells), mvoxel=mvox_noise)
    for name, region in REGIONS.items():
        mvox = volume.shape[0] * (region[0].stop - region[0].start) * (region[1].stop - region[1].start) / 1e6
        c, m = inside(cands, region), inside(cells, region)
        data[name] = dict(candidates=int(c.sum()), detections=int(m.sum()), mvoxel=mvox, probabilities=np.sort(prob[m]).round(3).tolist())
        rows.append([name, f"{c.sum() / mvox:.1f}", f"{m.sum() / mvox:.2f}", f"{np.median(prob[m]):.2f}" if m.any() else ""])
    dark = np.flatnonzero(inside(cells, REGIONS[next(iter(REGIONS))]))
    chosen = np.random.default_rng(0).choice(dark, size=min(SAMPLE, len(dark)), replace=False)
    centres = np.rint(cells[chosen]).astype(int)
    write_png(report.RESULTS / "background_texture.png", montage(volume.astype(np.float32), centres, smooth=diameter / voxel[1] / 4))
    data["montage"] = dict(centres=centres.tolist(), probabilities=prob[chosen].round(3).tolist())
    md = report.write(
        "background_texture",
        data=data,
        columns=["where", "candidates per Mvoxel", "detections per Mvoxel", "median probability of its detections"],
        rows=rows,
        notes=(f"cellfinder_crop signal {volume.shape}, {voxel} µm, {diameter:g} µm somata; built-in model at detect's defaults. "
               f"Montage (background_texture.png): {len(chosen)} random detections of the dark region, left to right with probabilities "
               f"{', '.join(f'{p:.2f}' for p in prob[chosen])}; top row their plane, bottom row three planes' mean, smoothed."),
    )
    print(md.read_text())
    spreads = {f"crop, {name}": response_percentiles(volume, scale=scale, region=region) for name, region in REGIONS.items()}
    spreads["white Gaussian noise"] = response_percentiles(noise, scale=scale)
    sim = SimulatedBrain(SimulationSettings(shape=(48, 192, 192), seed=300, difficulty=1.0)).volume()
    spreads["simulated brain, 4×2×2 µm, 12 µm (difficulty 1, seed 300)"] = response_percentiles(sim, scale=Scale(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0))
    if DELIVR_PATCH.exists():
        spreads["delivr_cfos patch 1147_1, 6×1.62×1.62 µm, 8 µm"] = response_percentiles(tifffile.imread(DELIVR_PATCH), scale=Scale(voxel_size=(6.0, 1.62, 1.62), cell_diameter=8.0))
    md = report.write(
        "background_texture_response",
        data=dict(percentiles=PERCENTILES, response=spreads),
        columns=["volume", *[f"response, percentile {q}" for q in PERCENTILES]],
        rows=[[name, *values] for name, values in spreads.items()],
        notes="The prefilter's response in its noise units (scipy reference of the compiled kernels), every voxel of each volume or region.",
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
