"""Generalisation check on a fourth synthetic generator, written apart from the others (ours, foreign_synthetic's,
structured_background's), for kinds of cell none of them rendered when it was written: somata that are rotated ellipsoids (some long),
neurons with bright processes (a cytoplasmic or membrane label filling the proximal dendrites), a wide range of
brightness, pan-neuronal density (NeuN-like, 3-4x the foreign generator's densest), a saturated detector and
brightness falling with depth. The whole scene, somata and processes, is blurred by an anisotropic Gaussian
point-spread function before Poisson shot noise, a camera offset and read noise are added.

The built-in model (since 2026-12-07 trained on simulated brains whose somata carry 0-4 processes of our own
simulator's rendering; before, at most one short dendrite stub) is run through `clarity-fast detect` at its defaults, then with the threshold that
maximises F1 on a calibration volume of the same condition; the LoG baseline gets a fitted threshold the same way
(foreign_synthetic.assess). Matching: the study's rule (3.5 voxels, z counted double).

Run: python benchmarks/neuron_shapes.py   (writes results/neuron_shapes.{json,md}; about 5 minutes on 2 cores;
--models default,other.onnx --name N compares models, written to results/N.{json,md})
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import report
from foreign_synthetic import EXTENT_UM, Cells, assess_all, mean_row, place
from scipy.ndimage import gaussian_filter

OUT = report.OUT / "neuron_shapes"
BACKGROUND = 200.0  # photons per voxel
OFFSET, READ_NOISE = 100.0, 5.0  # camera counts
PSF_SIGMA = (1.5, 0.6, 0.6)  # voxels (z, y, x): the optics' blur, applied before the noise
PROCESS_STEP = 1.0  # µm between the points a process is drawn from


@dataclass(frozen=True)
class Neurons(Cells):
    """A condition: solid ellipsoid somata at random orientations (semi-axes `aspect` x, 1 x and 1 x the radius, each
    varied by 0.85-1.15), optionally with processes."""

    cells: int = 300
    min_distance: float = 2.5  # cell radii between centres
    brightness_spread: float = 0.3  # sd of the log of each cell's brightness
    aspect: float = 1.0
    processes: int = 0  # per cell, leaving in random directions
    process_brightness: float = 0.8  # a process's blurred peak where it leaves the soma over the soma's brightness
    # before the blur (which dims a soma's centre to about 0.7 of it at these voxels); tapering to 0 along it
    process_length: tuple[float, float] = (2.0, 5.0)  # cell radii
    saturation: float = 0.0  # counts clipped at this many times the median cell's brightness before the blur, above the
    # background (0: none)
    depth_falloff: float = 1.0  # signal at the last plane over the first


CONDITIONS = [
    Neurons("round somata (the reference)"),
    Neurons("brightness varied widely (log sd 0.8)", brightness_spread=0.8),
    Neurons("long somata (1.8x, any orientation)", aspect=1.8),
    Neurons("one bright process per cell", processes=1),
    Neurons("two bright processes per cell", processes=2),
    Neurons("four bright processes per cell", processes=4),
    Neurons("four dim processes per cell (0.3 of the soma)", processes=4, process_brightness=0.3),
    Neurons("pan-neuronal density (2500 cells, 1.6 radii apart)", cells=2500, min_distance=1.6),
    Neurons("detector saturated at 1.5x the median cell", saturation=1.5, brightness_spread=0.6),
    Neurons("brightness falling to 0.3 with depth", depth_falloff=0.3, snr=10.0),
    Neurons("dim (peak 5 noise sd), 1.4x long, three processes", snr=5.0, aspect=1.4, processes=3),
]


def make_volume(condition: Neurons, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint16 volume, true soma centres in voxels)."""
    rng = np.random.default_rng(seed)
    voxel, extent, shape = np.asarray(condition.voxel), np.asarray(EXTENT_UM), condition.volume_shape
    radius = condition.diameter / 2
    centres = place(rng, condition.cells, extent, condition.min_distance * radius)
    noise_sd = np.sqrt(BACKGROUND)
    peaks = condition.snr * noise_sd * rng.lognormal(0.0, condition.brightness_spread, size=len(centres))
    somata = np.zeros(shape, np.float32)
    processes = np.zeros(shape, np.float32)
    for centre, peak in zip(centres, peaks):
        _add_soma(somata, centre, radius=radius, aspect=condition.aspect, peak=peak, voxel=voxel, rng=rng)
        for _ in range(condition.processes):
            _add_process(processes, centre, radius=radius, length=condition.process_length, peak=peak, voxel=voxel, rng=rng)
    signal = gaussian_filter(somata, PSF_SIGMA)
    signal += gaussian_filter(processes, PSF_SIGMA) * (condition.process_brightness / _line_peak(tuple(voxel)))
    signal *= np.linspace(1.0, condition.depth_falloff, shape[0], dtype=np.float32)[:, None, None]
    counts = rng.poisson(signal + BACKGROUND).astype(np.float32) + OFFSET + rng.normal(0.0, READ_NOISE, shape).astype(np.float32)
    if condition.saturation:
        counts = np.minimum(counts, OFFSET + BACKGROUND + condition.saturation * float(np.median(peaks)))
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16), centres / voxel


def _add_soma(image: np.ndarray, centre: np.ndarray, *, radius: float, aspect: float, peak: float, voxel: np.ndarray, rng: np.random.Generator) -> None:
    """A solid ellipsoid of brightness `peak`, randomly oriented, added in place."""
    semi = np.array([aspect, 1.0, 1.0]) * radius * rng.uniform(0.85, 1.15, size=3)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    reach = semi.max()
    lo = np.maximum(np.floor((centre - reach) / voxel).astype(int), 0)
    hi = np.minimum(np.ceil((centre + reach) / voxel).astype(int) + 1, image.shape)
    if np.any(hi <= lo):
        return
    grid = np.stack(np.meshgrid(*[np.arange(a, b) * v - c for a, b, v, c in zip(lo, hi, voxel, centre)], indexing="ij"), axis=-1)
    body = (grid @ rotation) / semi
    image[tuple(slice(a, b) for a, b in zip(lo, hi))] += peak * (np.sum(body * body, axis=-1) <= 1.0)


def _add_process(image: np.ndarray, centre: np.ndarray, *, radius: float, length: tuple[float, float], peak: float, voxel: np.ndarray, rng: np.random.Generator) -> None:
    """A gently curving process leaving the soma one radius out from its centre (inside a long soma), its brightness
    tapering linearly to 0, drawn as points PROCESS_STEP apart (weights in units of `peak`; make_volume scales the
    blurred lines to their brightness), added in place."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    steps = int(rng.uniform(*length) * radius / PROCESS_STEP)
    point = centre + direction * radius
    precision = 1.0 / (np.asarray(PSF_SIGMA) * voxel) ** 2  # the blur's inverse covariance (µm⁻², diagonal)
    for k in range(steps):
        index = np.round(point / voxel).astype(int)
        if np.all(index >= 0) and np.all(index < image.shape):
            # a line's blurred peak goes as 1 / sqrt(d' S⁻¹ d) along direction d: weighted so that every direction
            # peaks as an in-plane line does (a thin process along z would otherwise peak up to 5x brighter)
            image[tuple(index)] += peak * (1.0 - k / steps) * np.sqrt(direction**2 @ precision / precision[2])
        direction = direction + rng.normal(0.0, 0.1, size=3)
        direction /= np.linalg.norm(direction)
        point = point + direction * PROCESS_STEP


@lru_cache(maxsize=None)
def _line_peak(voxel: tuple[float, float, float]) -> float:
    """The peak of a straight in-plane line of unit points PROCESS_STEP apart after the point-spread function: what a
    process's blurred brightness is divided by so that `process_brightness` is its peak over the soma's brightness
    before the blur."""
    image = np.zeros((9, 9, 64), np.float32)
    image[4, 4, 12:52] = voxel[2] / PROCESS_STEP  # points per voxel along x, on average (rounded positions would alternate)
    return float(gaussian_filter(image, PSF_SIGMA)[4, 4, 32])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default", help="comma-separated models for detect --model")
    parser.add_argument("--name", default="neuron_shapes", help="results/<name>.{json,md}: another name for trying other models")
    args = parser.parse_args()
    models = args.models.split(",")
    results, rows = assess_all(CONDITIONS, make=make_volume, seeds=(500, 600), out=OUT, models=models, blob_detail=True)
    mean, row = mean_row("mean F1", results, models=models)
    rows.append(row)
    md = report.write(
        args.name,
        data=dict(extent_um=EXTENT_UM, background_photons=BACKGROUND, psf_sigma_voxels=PSF_SIGMA, models=models, conditions=results, mean=mean),
        columns=["condition", "cells", "prefilter recall (candidates)",
                 *[f"CNN `{m}`: precision / recall / F1 at its threshold, with a fitted threshold F1" for m in models],
                 "LoG: precision / recall / F1 (threshold fitted on a calibration volume)"],
        rows=rows,
        notes=(
            "Models through `clarity-fast detect` at their defaults on volumes of "
            f"{EXTENT_UM[0]:g}×{EXTENT_UM[1]:g}×{EXTENT_UM[2]:g} µm (4×2×2 µm voxels, 12 µm somata, median peak 8 noise sd unless "
            f"stated), blurred by a Gaussian point-spread function of {PSF_SIGMA} voxels before Poisson and read noise; "
            "the truth is the soma centres; matched within 3.5 voxels, z counted double."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
