"""Generalisation check on what tissue adds around cells: background texture at and above the cell scale, fibre
bundles, textured nuclei and a wide range of brightness, from a third generator.

foreign_synthetic.py's generator puts cells on a flat or sloping background; real tissue is not flat
(autofluorescence, neuropil, out-of-focus light vary at the cell scale, see background_texture.md) and holds
bright fibres. Here cells are foreign_synthetic's anisotropic Gaussians (same placement and noise model), and the
background is its photons times a smooth random field, or crossed by fibres (straight bundles of Gaussian
profile), or the nuclei carry a chromatin-like texture, or their brightness spreads widely. Each condition makes
a calibration and a test volume; the built-in model runs through `clarity-fast detect` at its defaults, and a LoG
with the threshold that maximises F1 on the calibration volume is the reference, as in foreign_synthetic.py.
Matching: the study's rule (3.5 voxels, z counted double).

Run: python benchmarks/structured_background.py [--models default,other.onnx]
(writes results/structured_background.{json,md}; about a minute per condition on 2 cores)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import report
from foreign_synthetic import EXTENT_UM, OFFSET, READ_NOISE, Cells, add_blob, assess_all, mean_row, place
from scipy.ndimage import gaussian_filter


OUT = report.OUT / "structured_background"
BACKGROUND = 200.0  # photons per voxel before the texture
FIBRE_SIGMA_UM = 1.5  # Gaussian profile of a fibre bundle (about 3.5 µm across at half its peak)


@dataclass(frozen=True)
class Condition(Cells):
    brightness_sd: float = 0.3  # sd of the log of each cell's peak
    texture: float = 0.0  # sd of the background's random field, as a fraction of the median cell peak
    texture_diameters: float = 1.0  # the field's Gaussian smoothing, in cell diameters
    fibres: int = 0  # straight bundles crossing the volume
    fibre_peak: float = 1.0  # a fibre's peak, as a fraction of the median cell peak
    chromatin: float = 0.0  # sd of the nuclei's texture (fraction of their brightness), at a sixth of a diameter


CONDITIONS = [
    Condition("flat background (reference)"),
    Condition("background texture at the cell scale, 0.15 of a cell's peak", texture=0.15),
    Condition("background texture at the cell scale, 0.3 of a cell's peak", texture=0.3),
    Condition("coarse background texture (3 diameters), 1.0 of a cell's peak", texture=1.0, texture_diameters=3.0),
    Condition("40 fibre bundles as bright as the cells", fibres=40),
    Condition("40 fibre bundles twice as bright as the cells", fibres=40, fibre_peak=2.0),
    Condition("textured nuclei (±40% chromatin texture)", chromatin=0.4),
    Condition("wide brightness range (log sd 0.8)", brightness_sd=0.8),
    Condition("all at once (texture 0.15, 40 fibres, chromatin, log sd 0.8)", texture=0.15, fibres=40, chromatin=0.4, brightness_sd=0.8),
    Condition("all at once, 5×1.5×1.5 µm voxels, 10 µm cells", voxel=(5.0, 1.5, 1.5), diameter=10.0, texture=0.15, fibres=40, chromatin=0.4, brightness_sd=0.8),
]


def random_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_voxels: np.ndarray) -> np.ndarray:
    """A smooth Gaussian random field of unit sd."""
    field = gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma=sigma_voxels)
    return field / max(float(field.std()), 1e-12)


def add_fibre(image: np.ndarray, rng: np.random.Generator, extent: np.ndarray, voxel: np.ndarray, peak: float) -> None:
    """A straight bundle through a random point in a random direction, across the whole volume, drawn as Gaussian
    beads a third of its sigma apart (so its profile is smooth along it)."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    centre = rng.uniform(0, 1, size=3) * extent
    half = float(np.linalg.norm(extent))
    step = FIBRE_SIGMA_UM / 3.0
    # Overlapping beads sum: a bead's amplitude times the beads per sigma-width along the line gives the peak.
    bead = peak / (np.sqrt(2 * np.pi) * FIBRE_SIGMA_UM / step)
    for t in np.arange(-half, half, step):
        p = centre + t * direction
        if np.all(p >= -3 * FIBRE_SIGMA_UM) and np.all(p <= extent + 3 * FIBRE_SIGMA_UM):
            add_blob(image, p, np.full(3, FIBRE_SIGMA_UM), bead, voxel, ball=False)


def make_volume(condition: Condition, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint16 volume, true centres in voxels)."""
    rng = np.random.default_rng(seed)
    voxel = np.asarray(condition.voxel)
    extent, shape = np.asarray(EXTENT_UM), condition.volume_shape
    radius = condition.diameter / 2
    centres = place(rng, condition.cells, extent, 2.5 * radius)
    peak = condition.snr * np.sqrt(BACKGROUND)  # the median cell's
    cells = np.zeros(shape, np.float32)
    for c in centres:
        sigma = radius * 0.7 * rng.uniform(0.8, 1.2, size=3)
        add_blob(cells, c, sigma, peak * rng.lognormal(0.0, condition.brightness_sd), voxel, ball=False)
    if condition.chromatin:
        cells *= np.clip(1.0 + condition.chromatin * random_field(rng, shape, condition.diameter / 6 / voxel), 0.0, None)
    background = np.full(shape, BACKGROUND, np.float32)
    if condition.texture:
        background += condition.texture * peak * random_field(rng, shape, condition.texture_diameters * condition.diameter / voxel)
    for _ in range(condition.fibres):
        add_fibre(background, rng, extent, voxel, condition.fibre_peak * peak)
    photons = rng.poisson(np.maximum(cells + background, 0.0)).astype(np.float32)
    counts = photons + OFFSET + rng.normal(0.0, READ_NOISE, size=shape).astype(np.float32)
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16), centres / voxel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default", help="comma-separated models for detect --model")
    models = parser.parse_args().models.split(",")
    results, rows = assess_all(CONDITIONS, make=make_volume, seeds=(3000, 4000), out=OUT, models=models, blob_detail=True)
    mean, row = mean_row("mean F1", results, models=models)
    rows.append(row)
    md = report.write(
        "structured_background",
        data=dict(extent_um=EXTENT_UM, background_photons=BACKGROUND, read_noise=READ_NOISE, conditions=results, mean_f1=mean["cnn"]),
        columns=["condition", "cells", "prefilter recall (candidates)", *[f"CNN `{m}`: precision / recall / F1 at its defaults; F1 with a fitted threshold" for m in models],
                 "LoG, threshold fitted on a calibration volume: precision / recall / F1"],
        rows=rows,
        notes=(
            "Models through `clarity-fast detect` at its defaults (`--cell-diameter` given) on volumes of "
            f"{EXTENT_UM[0]:g}×{EXTENT_UM[1]:g}×{EXTENT_UM[2]:g} µm: foreign_synthetic's Gaussian cells (peak 8 shot-noise sd, "
            f"{BACKGROUND:g} photons of background, read noise {READ_NOISE:g}) on a background made structured; matched within 3.5 voxels, z counted double."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
