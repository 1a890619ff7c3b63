"""Generalisation check: the built-in model on synthetic volumes from a generator it was not trained on.

clarity_fast.simulate (the training generator) renders sigmoid-edged ellipsoids, vessels, stripes and haze through
a light-sheet model. The generator here shares no code or assumptions with it: cells are anisotropic Gaussian
blobs or blurred hard-edged balls, the background is flat or a linear gradient, the noise is Poisson shot noise
plus Gaussian read noise (or, in six conditions, photons counted alone, a fraction of one in the background), and the distractors are large dim blobs and small bright puncta; two conditions blur the finished image, noise
included, as resampling or a generator that blurs last would, and three stretch the cells along z, as the axial
point-spread function of a light-sheet or two-photon microscope does (the diameter given is still the true one); one
mixes cell sizes and two tell detect a diameter 25% below or 33% above the true one, as a user who misjudges it
would; one renders hollow balls, as a cytoplasmic label around a dark nucleus looks; others vary the voxel and cell
size, the density and the brightness. Each condition makes a
calibration volume and a test volume. Each model runs on the test volume through `clarity-fast detect` at its
defaults, once with its own threshold and once with the threshold that maximises F1 on the calibration volume
(`--threshold`); the LoG blob baseline gets the same kind of fitted threshold, and the prefilter's recall (what
detect's network is given) is recorded too. The first CNN figure is what a user gets; the second tells
ranking from threshold. Matching: the study's rule (3.5 voxels, z counted double).

Run: python benchmarks/foreign_synthetic.py [--models default,other.onnx]   (writes results/foreign_synthetic.{json,md};
about 30 minutes per model on 2 cores for the 35 conditions)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import report
from scipy.ndimage import gaussian_filter

from clarity_fast.baselines import log_blobs
from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, Match, best_threshold, match_points
from clarity_fast.io.points import Points, read_points
from clarity_fast.io.volumes import write_tiff
from clarity_fast.settings import Scale

OUT = report.OUT / "foreign_synthetic"
EXTENT_UM = (192.0, 384.0, 384.0)
BACKGROUND = 200.0  # photons per voxel; shot noise sd = sqrt(BACKGROUND)
READ_NOISE, OFFSET = 5.0, 100.0


@dataclass(frozen=True)
class Cells:
    """What a condition of either synthetic generator (this one, structured_background's) sets first: its name, the
    voxel size, and the cells' diameter (µm), number and median peak."""

    name: str
    voxel: tuple[float, float, float] = (4.0, 2.0, 2.0)
    diameter: float = 12.0
    cells: int = 200
    snr: float = 8.0  # median cell peak over the background's shot-noise sd

    @property
    def stated_diameter(self) -> float:
        """The cell diameter (µm) the user tells detect and the blob baseline."""
        return self.diameter

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        """Voxels of a volume spanning EXTENT_UM at this voxel size."""
        return tuple(int(round(e / v)) for e, v in zip(EXTENT_UM, self.voxel))


@dataclass(frozen=True)
class Condition(Cells):
    shape: str = "gaussian"  # gaussian | ball
    min_distance: float = 2.5  # cell radii between centres
    gradient: float = 1.0  # background at the far x edge over the near one
    distractors: bool = False
    noise_blur: float = 0.0  # Gaussian blur (voxels) of the whole image after the noise: a resampled or naively rendered volume
    axial: float = 1.0  # cells this many times longer along z than across: an axial point-spread function
    size_spread: float = 0.0  # sd of the log of each cell's size: a volume of mixed cell sizes
    stated: float = 1.0  # `--cell-diameter` given as this fraction of the true median diameter: a misjudged size
    hollow: float = 0.0  # balls dark inside this fraction of their radius: a cytoplasmic label around an unlabelled nucleus
    background: float = BACKGROUND  # photons per voxel
    read_noise: float = READ_NOISE  # sd of the camera's Gaussian read noise (counts); 0 with the offset: photon counting
    offset: float = OFFSET  # counts added to every voxel

    @property
    def stated_diameter(self) -> float:
        """The cell diameter (µm) the user tells detect and the blob baseline: `stated` of the true one."""
        return self.diameter * self.stated


CONDITIONS = [
    Condition("gaussian cells, high SNR"),
    Condition("gaussian cells, low SNR", snr=3.5),
    Condition("blurred balls", shape="ball", snr=5.0),
    Condition("dense, touching", cells=700, min_distance=1.7),
    Condition("gradient + distractors", gradient=4.0, distractors=True),
    Condition("5x1x1 um voxels, 10 um cells", voxel=(5.0, 1.0, 1.0), diameter=10.0),
    Condition("noise blurred by 0.7 voxel", noise_blur=0.7),
    Condition("noise blurred by 1 voxel", noise_blur=1.0),
    Condition("cells 2x longer along z", axial=2.0),
    Condition("cells 3x longer along z", axial=3.0),
    Condition("cell sizes varied (log sd 0.35)", size_spread=0.35),
    Condition("diameter stated 25% small", stated=0.75),
    Condition("hollow balls (dark nucleus 0.6 of the diameter)", shape="ball", hollow=0.6),
    # Added on 2026-12-05: geometries, sizes and noise levels none of the first thirteen covers. The threshold and
    # prefilter defaults were chosen before them; adapting probabilities by default was decided with them in view.
    Condition("1x1x1 um voxels, 16 um cells", voxel=(1.0, 1.0, 1.0), diameter=16.0),
    Condition("10x4x4 um voxels, 20 um cells", voxel=(10.0, 4.0, 4.0), diameter=20.0),
    Condition("2x1x1 um voxels, 7 um cells", voxel=(2.0, 1.0, 1.0), diameter=7.0),
    Condition("diameter stated 33% large", stated=1.33),
    Condition("low SNR + gradient + distractors", snr=4.0, gradient=4.0, distractors=True),
    Condition("dense, touching blurred balls", shape="ball", cells=700, min_distance=1.7, snr=5.0),
    Condition("balls 2x longer along z, 3.5x2x2 um voxels, 10 um cells", voxel=(3.5, 2.0, 2.0), diameter=10.0, shape="ball", axial=2.0),
    Condition("very low SNR (peak 2.5 noise sd)", snr=2.5),
    Condition("dense, touching, low SNR", cells=700, min_distance=1.7, snr=4.0),
    # Added later on 2026-12-05: photon counting (a detector that counts photons: no offset, no read noise) with
    # under a few photons per voxel, where shot noise is speckle; every default was chosen before these.
    Condition("photon counting, 0.5 photons background, peak 8 noise sd", background=0.5, read_noise=0.0, offset=0.0),
    Condition("photon counting, 0.1 photons background, peak 12 noise sd", background=0.1, snr=12.0, read_noise=0.0, offset=0.0),
    Condition("photon counting, 2 photons background, peak 5 noise sd", background=2.0, snr=5.0, read_noise=0.0, offset=0.0),
    # Added last on 2026-12-05 to test adapting by score mixture (score_mixture) on combinations none of the above
    # covers; its rule was set with the volumes above and other-seed volumes of these in view, not with these.
    Condition("photon counting balls, 1 photon background, peak 6 noise sd", shape="ball", background=1.0, snr=6.0, read_noise=0.0, offset=0.0),
    Condition("photon counting, 0.3 photons background, 5x1x1 um voxels, 10 um cells", voxel=(5.0, 1.0, 1.0), diameter=10.0, background=0.3, snr=10.0, read_noise=0.0, offset=0.0),
    Condition("blurred balls, low SNR (peak 3 noise sd)", shape="ball", snr=3.0),
    Condition("3x1.5x1.5 um voxels, 9 um cells, peak 5 noise sd", voxel=(3.0, 1.5, 1.5), diameter=9.0, snr=5.0),
    Condition("photon counting, dense, touching, 1 photon background", cells=700, min_distance=1.7, background=1.0, read_noise=0.0, offset=0.0),
    Condition("threefold gradient + distractors, blurred balls", shape="ball", gradient=3.0, distractors=True, snr=6.0),
    Condition("cells 2x longer along z, peak 4 noise sd", axial=2.0, snr=4.0),
    Condition("photon counting, sizes varied (log sd 0.25), 0.5 photons background", size_spread=0.25, background=0.5, snr=10.0, read_noise=0.0, offset=0.0),
    Condition("bright background (2000 photons), peak 4 noise sd", background=2000.0, snr=4.0),
    Condition("8x3x3 um voxels, 16 um cells, peak 6 noise sd", voxel=(8.0, 3.0, 3.0), diameter=16.0, snr=6.0),
]
FIRST = 13  # conditions before the first additions
PHOTON_COUNTING = 22  # conditions before the photon-counting ones
MIXTURE_TEST = 25  # conditions before those added to test the score mixture


def place(rng: np.random.Generator, n: int, extent: np.ndarray, min_dist: float) -> np.ndarray:
    """Up to n uniform centres (µm) no two closer than min_dist (dart throwing)."""
    kept: list[np.ndarray] = []
    for p in rng.uniform(0, 1, size=(n * 20, 3)) * extent:
        if not kept or np.min(np.sum((np.asarray(kept) - p) ** 2, axis=1)) >= min_dist**2:
            kept.append(p)
            if len(kept) == n:
                break
    return np.asarray(kept).reshape(-1, 3)  # (0, 3) for a volume without cells


def add_blob(image: np.ndarray, centre_um: np.ndarray, sigma_um: np.ndarray, amplitude: float, voxel: np.ndarray, *, ball: bool, hollow: float = 0.0) -> None:
    """Add a Gaussian (or a ball of radius 2·sigma, blurred by a 1-voxel PSF later, dark inside `hollow` of its radius)
    into image, in place."""
    reach = 3.0 * sigma_um if not ball else 2.0 * sigma_um + voxel
    lo = np.maximum(np.floor((centre_um - reach) / voxel).astype(int), 0)
    hi = np.minimum(np.ceil((centre_um + reach) / voxel).astype(int) + 1, image.shape)
    if np.any(hi <= lo):
        return
    grids = np.meshgrid(*[(np.arange(a, b) * v - c) / s for a, b, v, c, s in zip(lo, hi, voxel, centre_um, sigma_um)], indexing="ij")
    r2 = sum(g * g for g in grids)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    image[box] += amplitude * (((r2 <= 4.0) & (r2 >= 4.0 * hollow**2)) if ball else np.exp(-0.5 * r2))


def make_volume(condition: Condition, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint16 volume, true centres in voxels)."""
    rng = np.random.default_rng(seed)
    voxel = np.asarray(condition.voxel)
    extent, shape = np.asarray(EXTENT_UM), condition.volume_shape
    radius = condition.diameter / 2
    centres = place(rng, condition.cells, extent, condition.min_distance * radius)
    signal = np.zeros(shape, np.float32)
    noise_sd = np.sqrt(condition.background)
    for c in centres:
        sigma = radius * 0.7 * rng.uniform(0.8, 1.2, size=3) if condition.shape == "gaussian" else np.full(3, radius / 2)
        sigma *= rng.lognormal(0.0, condition.size_spread) if condition.size_spread else 1.0
        sigma[0] *= condition.axial
        add_blob(signal, c, sigma, condition.snr * noise_sd * rng.lognormal(0.0, 0.3), voxel, ball=condition.shape == "ball", hollow=condition.hollow)
    if condition.shape == "ball":
        signal = gaussian_filter(signal, sigma=1.0)
    if condition.distractors:
        for c in rng.uniform(0, 1, size=(40, 3)) * extent:  # large dim blobs: out-of-focus tissue, not cells
            add_blob(signal, c, np.full(3, 3.0 * radius), 2.0 * noise_sd, voxel, ball=False)
        for c in rng.uniform(0, 1, size=(150, 3)) * extent:  # bright puncta far smaller than a cell
            add_blob(signal, c, np.full(3, radius / 6), 6.0 * noise_sd, voxel, ball=False)
    background = condition.background * np.linspace(1.0, condition.gradient, shape[2], dtype=np.float32)[None, None, :]
    photons = rng.poisson(np.maximum(signal + background, 0.0)).astype(np.float32)
    counts = photons + condition.offset + rng.normal(0.0, condition.read_noise, size=shape).astype(np.float32)
    if condition.noise_blur:
        counts = gaussian_filter(counts, sigma=condition.noise_blur)
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16), centres / voxel


def detect_cnn(volume: Path, condition: Condition, model: str, *, threshold: float | None = None) -> Points:
    """Cells found by `clarity-fast detect` with `model` (voxels, with probabilities)."""
    extra = ["--model", model] + (["--threshold", str(threshold)] if threshold is not None else [])
    return _quietly("detect", volume, condition, volume.with_name(f"cells_{Path(model).stem}_{threshold}.csv"), *extra)


def prefilter_candidates(volume: Path, condition: Condition) -> Points:
    """The candidates `clarity-fast candidates` proposes (what detect's network is given to score)."""
    return _quietly("candidates", volume, condition, volume.with_name("candidates.csv"))


def _quietly(command: str, volume: Path, condition: Condition, out: Path, *extra: str) -> Points:
    """`clarity-fast COMMAND volume --out out` at the condition's stated diameter, output captured; what it wrote."""
    args = [command, volume, "--out", out, "--cell-diameter", str(condition.stated_diameter), *extra]
    subprocess.run([sys.executable, "-m", "clarity_fast", *map(str, args)], check=True, capture_output=True)
    return read_points(out)


def fitted_threshold(points: Points, truth: np.ndarray) -> float:
    """The threshold on `points`' scores that maximises F1 against `truth`."""
    threshold, _ = best_threshold(pred=points.zyx, scores=points.score, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
    return threshold


@dataclass(frozen=True)
class Outcome:
    """One condition's results: each model at its defaults and with a fitted threshold, the fitted LoG, the prefilter."""

    cells: int
    cnn: dict[str, Match]
    fitted: dict[str, Match]
    blob: Match
    prefilter: dict

    def record(self, condition: object) -> dict:
        return dict(
            condition=asdict(condition), cells=self.cells, cnn={m: v.summary() for m, v in self.cnn.items()},
            cnn_fitted_threshold={m: v.summary() for m, v in self.fitted.items()}, blob_calibrated=self.blob.summary(), prefilter=self.prefilter,
        )

    def row(self, name: str, *, blob_detail: bool) -> list:
        """The condition's table row (the LoG as F1 alone, or precision / recall / F1)."""
        blob = f"{self.blob.precision:.3f} / {self.blob.recall:.3f} / {self.blob.f1:.3f}" if blob_detail else f"{self.blob.f1:.3f}"
        return [name, self.cells, f"{self.prefilter['recall']:.3f} ({self.prefilter['candidates']})",
                *[f"{c.precision:.3f} / {c.recall:.3f} / {c.f1:.3f}; fitted {self.fitted[m].f1:.3f}" for m, c in self.cnn.items()], blob]


def assess_all(conditions: list[Cells], *, make, seeds: tuple[int, int], out: Path, models: list[str], blob_detail: bool = False) -> tuple[list[dict], list[list]]:
    """Each condition through assess, on make(condition, seed=...) at seeds[0] + i (calibration) and seeds[1] + i (test):
    the records and the table rows."""
    results, rows = [], []
    for i, condition in enumerate(conditions):
        outcome = assess(
            condition, calibration=make(condition, seed=seeds[0] + i), test=make(condition, seed=seeds[1] + i),
            folder=out / f"condition_{i}", models=models,
        )
        results.append(outcome.record(condition))
        rows.append(outcome.row(condition.name, blob_detail=blob_detail))
        print(rows[-1], flush=True)
    return results, rows


def assess(condition: Cells, *, calibration: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], folder: Path, models: list[str]) -> Outcome:
    """Run the models and the LoG on a condition's (volume, truth) pairs, written to `folder` for detect; the LoG's
    and each model's fitted threshold come from the calibration volume."""
    scale = Scale(voxel_size=condition.voxel, cell_diameter=condition.stated_diameter)
    (calibration, calibration_truth), (test, truth) = calibration, test
    centres, responses = log_blobs(calibration.astype(np.float32), scale=scale)
    threshold, _ = best_threshold(pred=centres, scores=responses, truth=calibration_truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
    centres, responses = log_blobs(test.astype(np.float32), scale=scale)
    blob = match_points(pred=centres[responses >= threshold], truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
    paths = {}
    for role, volume in (("calibration", calibration), ("test", test)):
        paths[role] = folder / f"{role}.tif"
        paths[role].parent.mkdir(parents=True, exist_ok=True)
        write_tiff(paths[role], volume, voxel_size=condition.voxel)
    candidates = prefilter_candidates(paths["test"], condition).zyx
    prefilter = dict(candidates=len(candidates), recall=match_points(pred=candidates, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS).recall)
    cnn, fitted = {}, {}
    for m in models:
        cnn[m] = match_points(pred=detect_cnn(paths["test"], condition, m).zyx, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
        t = fitted_threshold(detect_cnn(paths["calibration"], condition, m, threshold=0.0), calibration_truth)
        print(f"{condition.name}: {m} fitted threshold {t:.3f}", flush=True)
        fitted[m] = match_points(pred=detect_cnn(paths["test"], condition, m, threshold=t).zyx, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
    return Outcome(cells=len(truth), cnn=cnn, fitted=fitted, blob=blob, prefilter=prefilter)


def mean_row(label: str, results: list[dict], *, models: list[str]) -> tuple[dict, list]:
    """Mean F1 over `results` of each model at its defaults and with a fitted threshold, and of the LoG: the record and
    its table row (for this script, structured_background.py and neuron_shapes.py alike)."""
    mean = dict(
        cnn={m: float(np.mean([r["cnn"][m]["f1"] for r in results])) for m in models},
        cnn_fitted_threshold={m: float(np.mean([r["cnn_fitted_threshold"][m]["f1"] for r in results])) for m in models},
        blob=float(np.mean([r["blob_calibrated"]["f1"] for r in results])),
    )
    return mean, [label, "", "", *[f"{mean['cnn'][m]:.3f}; fitted {mean['cnn_fitted_threshold'][m]:.3f}" for m in models], f"{mean['blob']:.3f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default", help="comma-separated models for detect --model")
    models = parser.parse_args().models.split(",")
    results, rows = assess_all(CONDITIONS, make=make_volume, seeds=(1000, 2000), out=OUT, models=models)
    means = {}
    groups = (
        (f"mean F1, the {PHOTON_COUNTING} before photon counting", results[:PHOTON_COUNTING]),
        (f"mean F1, first {FIRST}", results[:FIRST]),
        (f"mean F1, the {PHOTON_COUNTING - FIRST} added", results[FIRST:PHOTON_COUNTING]),
        (f"mean F1, the {MIXTURE_TEST - PHOTON_COUNTING} photon counting", results[PHOTON_COUNTING:MIXTURE_TEST]),
        (f"mean F1, the first {MIXTURE_TEST}", results[:MIXTURE_TEST]),
        (f"mean F1, the {len(results) - MIXTURE_TEST} added to test the score mixture", results[MIXTURE_TEST:]),
        ("mean F1, all", results),
    )
    for label, part in groups:
        means[label], row = mean_row(label, part, models=models)
        rows.append(row)
    md = report.write(
        "foreign_synthetic",
        data=dict(extent_um=EXTENT_UM, background_photons=BACKGROUND, read_noise=READ_NOISE, conditions=results, means=means),
        columns=["condition", "cells", "prefilter recall (candidates)", *[f"CNN `{m}`: precision / recall / F1 at its threshold, with a fitted threshold F1" for m in models], "LoG F1 (threshold fitted on a calibration volume)"],
        rows=rows,
        notes=(
            "Models through `clarity-fast detect` at its defaults (each model's own threshold, probabilities adapted to the "
            "volume's share of cells; `--cell-diameter` given) on volumes of "
            f"{EXTENT_UM[0]:g}×{EXTENT_UM[1]:g}×{EXTENT_UM[2]:g} µm from a generator unrelated to the training one "
            "(Gaussian or ball cells, Poisson + read noise, no vessels or stripes); matched within 3.5 voxels, z counted double."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
