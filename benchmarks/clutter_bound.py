"""What bounding the score mixture's lower (clutter) group does (score_mixture.CLUTTER_SD), against the unbounded fit
it replaced, on every kind of volume we have: the rule was chosen on one set of faint volumes and is checked here on
volumes it was not chosen on, and on volumes where it must change nothing (real tissue, simulated brains, volumes
without a cell). Each bound is applied as `detect` applies CLUTTER_SD: only where the bounded fit finds the clutter
a small minority (score_mixture.FEW_CLUTTER), the unbounded fit elsewhere. Since 2026-12-07 a fitted mixture also
caps the share adapting falls back to where the mixture is not trusted, so a bound moves that cap too, as in `detect`.

Each volume is scored once (the built-in model, candidates at detect's defaults, z rescaled where cells look
elongated, as `detect` does), keeping every candidate's probability, position and the whole volume's histogram;
adapting (pipeline.adapting with each bound), the threshold and merging (pipeline.kept_cells) are then applied to
them as `detect` applies them, so each bound is compared on the same candidates. 'best factor per volume' is the
F1 that the best of 30 odds factors from 1 to adapting's strongest would give each volume: what a perfect choice of
factor could reach. Matching: 3.5 voxels, z counted double. cellfinder's crop has no manual annotations (its points
are an old cellfinder run's), so only its odds factor is shown.

Run: python benchmarks/clutter_bound.py   (needs ../shared/data for the real rows; writes results/clutter_bound.{json,md};
about 10 minutes on 2 cores, candidates cached in benchmarks/out/clutter_bound)
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import foreign_seeds
import foreign_synthetic as fs
import numpy as np
import report
from default_model import DELIVR, REAL, held_out_patches, held_out_sets, voxel_size
from prior_shift import own_generator

import clarity_fast
from clarity_fast.candidates import slab_ranges
from clarity_fast.cell_shape import corrected_scale
from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, match_points
from clarity_fast.export.model_file import model_digest, resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.io.points import read_points
from clarity_fast.io.volumes import open_array, open_volume
from clarity_fast.noise_correlation import volume_noise
from clarity_fast.pipeline import DetectSettings, adapting, kept_cells, process_slabs
from clarity_fast.score_mixture import CLUTTER_SD, TRUST
from clarity_fast.settings import Scale
from clarity_fast.simulate import SimulatedBrain, SimulationSettings
from clarity_fast.volume_share import strongest_factor

OUT = report.OUT / "clutter_bound"
# The package's sources that make and score candidates: a change to any of them makes a fresh cache, so cached
# scores are never read as another version's.
CANDIDATE_CODE = ("kernels", "candidates.py", "settings.py", "pipeline.py", "noise_correlation.py", "cell_shape.py", "plane_levels.py",
                  "export/runtime.py")
BOUNDS = [np.inf, 1.25, CLUTTER_SD, 1.75, 2.0]  # logits; inf: the fit before the bound
KEEP_FROM = 1e-4  # every candidate at or above this probability is kept; no adapted threshold reaches below it
FACTORS = 30  # odds factors tried per volume for the best-factor column
MAJORITY_ONLY = replace(TRUST, minority=None)  # the mixture believed only as a majority, as when the bound was chosen
# (2026-12-06; minority_cells.py measures believing a far minority too)


def stored(path: Path, points: Path, geometry: dict) -> Callable[[], tuple]:
    """How to read a volume file and its points as (volume, truth, voxel size, cell diameter)."""
    def read() -> tuple:
        with open_volume(path) as reader:
            return reader.read_slab(0, reader.shape[0]), read_points(points).zyx, voxel_size(geometry), geometry["diameter"]
    return read


def made(condition, *, seed: int, make_volume=fs.make_volume) -> Callable[[], tuple]:
    """How to make a synthetic generator's volume (foreign_synthetic's by default) as (volume, truth, voxel size,
    stated cell diameter)."""
    return lambda: (*make_volume(condition, seed=seed), condition.voxel, condition.stated_diameter)


def volume_sets() -> dict[str, list[tuple[str, Callable[[], tuple]]]]:
    """By set: each volume's name and how to make or read it, as (volume, truth, voxel size, cell diameter)."""
    by_name = {c.name: c for c in fs.CONDITIONS}
    faint = [by_name[n] for n in foreign_seeds.CONDITIONS]
    with (DELIVR / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    held = held_out_sets(rows, held_out_patches(rows))
    own = own_generator()
    return {
        "six faint conditions, seeds 7000-7007 (the bound chosen on these)": [
            (f"{c.name} {s}", made(c, seed=s)) for c in faint for s in foreign_seeds.SEEDS
        ],
        "six faint conditions, seeds 8100-8107": [(f"{c.name} {s}", made(c, seed=s)) for c in faint for s in range(8100, 8108)],
        "foreign generator, 35 conditions, seeds 2000+i": [(c.name, made(c, seed=2000 + i)) for i, c in enumerate(fs.CONDITIONS)],
        "foreign generator, 35 conditions, seeds 8000+i": [(c.name, made(c, seed=8000 + i)) for i, c in enumerate(fs.CONDITIONS)],
        "foreign generator without cells (false cells)": [
            (f"{c.name} {s}", made(c, seed=s)) for c in foreign_seeds.EMPTY for s in foreign_seeds.SEEDS
        ],
        "our generator, 9 volumes": [(name, lambda v=(volume, truth, voxel, d): v) for name, volume, truth, voxel, d in own],
        "simulated held-out brains and geometries": [
            (name, stored(path, points, g)) for key in ("simulated", "simulated_geometries") for name, path, points, g in held[key]
        ],
        "delivr_cfos, all 25 patches": [
            (r["patch_id"], stored(DELIVR / r["volume_file"], DELIVR / r["points_file"], REAL)) for r in rows
        ],
        "small simulated brains, 30×96×96 voxels, difficulty 0.5 and 1": [
            (f"difficulty {d:g}, seed {seed}", small_brain(d, seed)) for d in (0.5, 1.0) for seed in range(21, 41)
        ],
    }


def small_brain(difficulty: float, seed: int) -> Callable[[], tuple]:
    """A brain the size the test suite detects in (where a bound on clutter first showed its cost)."""
    def make() -> tuple:
        brain = SimulatedBrain(SimulationSettings(shape=(30, 96, 96), difficulty=difficulty, seed=seed))
        return brain.volume(), brain.cells.zyx, brain.settings.scale.voxel_size, brain.settings.scale.cell_diameter
    return make


def code_digest() -> str:
    """A digest of the candidate and scoring code (CANDIDATE_CODE) as it is on disk."""
    root = Path(clarity_fast.__file__).parent
    digest = hashlib.sha256()
    for name in CANDIDATE_CODE:
        for path in sorted((root / name).rglob("*.py")) if (root / name).is_dir() else [root / name]:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def candidates(
    key: str, make: Callable[[], tuple], *, scorer: OnnxScorer, prefilter_threshold: float | None = None, drop_slopes: bool = True
) -> dict:
    """Every candidate's position and probability, the whole volume's histogram, the merge radius and the candidates
    left unscored on a slope (cached as `key` with a suffix saying which), with the prefilter at
    `prefilter_threshold` (None: the model's, as `detect` runs it)."""
    folder = OUT / f"{model_digest(scorer.path)[:12]}_{code_digest()[:12]}"  # scores of one model and code are never read as another's
    path = folder / f"{key}{'_without_slopes' if drop_slopes else '_keep_slopes'}.npz"
    if path.exists():
        return dict(np.load(path))
    volume, truth, voxel, diameter = make()
    cfg = scorer.config
    reader = open_array(volume)
    scale, _ = corrected_scale(reader, scale=Scale(voxel_size=voxel, cell_diameter=diameter))
    settings = DetectSettings(voxel_size=scale.voxel_size, cell_diameter=diameter, threshold=KEEP_FROM,
                              prefilter_threshold=cfg.prefilter_threshold if prefilter_threshold is None else prefilter_threshold, adapt=False,
                              drop_slopes=drop_slopes)
    settings = replace(settings, noise=volume_noise(reader))
    parts = []
    process_slabs(reader, scorer=scorer, model=cfg, settings=settings, slabs=slab_ranges(reader.shape[0], slab_depth=settings.slab_depth),
                  on_result=parts.append, seconds={})
    data = dict(
        zyx=np.concatenate([p.zyx for p in parts]), probability=np.concatenate([p.probability for p in parts]),
        counts=np.sum([p.histogram for p in parts], axis=0), truth=np.asarray(truth, float).reshape(-1, 3),
        radius=np.array(settings.scale.merge_radius_voxels), on_slope=np.array(sum(p.on_slope for p in parts)),
    )
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(path, **data)
    return data


def counted(data: dict, odds: float, *, threshold: float) -> np.ndarray:
    """(tp, fp, fn) of the volume's detections at this odds factor, thresholded and merged as `detect` does."""
    zyx, _, _ = kept_cells(data["zyx"], data["probability"], factor=odds, threshold=threshold, merge_radius=tuple(data["radius"]))
    m = match_points(pred=zyx, truth=data["truth"], radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
    return np.array([m.tp, m.fp, m.fn])


def f1(tp_fp_fn: np.ndarray) -> float:
    tp, fp, fn = tp_fp_fn
    return 2 * tp / max(2 * tp + fp + fn, 1)


def main() -> None:
    scorer = OnnxScorer(resolve_model("default"))
    cfg = scorer.config
    grid = np.geomspace(1.0, strongest_factor(cfg.calibration.reference_share), FACTORS)
    results, rows = [], []
    sets = volume_sets()
    from tifffile import imread

    (crop_voxel, crop_diameter) = report.CROP_SCALE
    crop = candidates("crop", lambda: (imread(report.CROP / "signal.tif"), np.empty((0, 3)), crop_voxel, crop_diameter), scorer=scorer)
    for i, (set_name, volumes) in enumerate(sets.items()):
        pooled = {b: np.zeros(3, int) for b in BOUNDS}
        best, trusted, changed, per_volume = np.zeros(3, int), dict.fromkeys(BOUNDS, 0), dict.fromkeys(BOUNDS, 0), []
        for k, (name, make) in enumerate(volumes):
            data = candidates(f"set{i}_{k}", make, scorer=scorer)
            record = dict(volume=name, candidates=int(data["counts"].sum()), cells=len(data["truth"]), bounds={})
            unbounded = adapting(data["counts"], model=cfg, clutter_sd=np.inf, rule=MAJORITY_ONLY).factor
            for bound in BOUNDS:
                adaptation = adapting(data["counts"], model=cfg, clutter_sd=bound, rule=MAJORITY_ONLY)
                odds, by_mixture = adaptation.factor, adaptation.mixture_factor > 1.0
                tp_fp_fn = counted(data, odds, threshold=cfg.threshold)
                pooled[bound] += tp_fp_fn
                trusted[bound] += by_mixture
                changed[bound] += odds != unbounded
                record["bounds"][str(bound)] = dict(odds_factor=odds, mixture_set_it=by_mixture, tp_fp_fn=tp_fp_fn.tolist())
            options = [counted(data, g, threshold=cfg.threshold) for g in grid]
            best += max(options, key=lambda c: (f1(c), -c[1]))
            per_volume.append(record)
            print(set_name, name, {b: r["tp_fp_fn"] for b, r in record["bounds"].items()}, flush=True)
        empty = "without cells" in set_name
        shown = (lambda c: str(int(c[1]))) if empty else (lambda c: f"{f1(c):.3f}")
        rows.append([set_name, str(len(volumes))] + [f"{shown(pooled[b])} ({trusted[b]}; {changed[b]})" for b in BOUNDS] + ["" if empty else shown(best)])
        results.append(dict(set=set_name, pooled={str(b): pooled[b].tolist() for b in BOUNDS}, best_factor_pooled=best.tolist(), volumes=per_volume))
    crop_factors = {str(b): adapting(crop["counts"], model=cfg, clutter_sd=b, rule=MAJORITY_ONLY).factor for b in BOUNDS}
    rows.append(["cellfinder's crop (odds factor; no manual annotations)", "1"] + [f"{crop_factors[str(b)]:.2f}" for b in BOUNDS] + [""])
    columns = ["set", "volumes"] + [("unbounded (before)" if b == np.inf else f"bound {b:g}" + (" (detect's)" if b == CLUTTER_SD else "")) for b in BOUNDS]
    md = report.write(
        "clutter_bound",
        data=dict(bounds=[str(b) for b in BOUNDS], threshold=cfg.threshold, sets=results, crop_odds_factors=crop_factors),
        columns=columns + ["best factor per volume"],
        rows=rows,
        notes=(
            "Built-in model; each cell: pooled F1 over the set (for the volumes without cells: false cells in all), then in "
            "brackets the volumes whose odds the score mixture raised, and the volumes whose odds factor differs from the "
            "unbounded fit's. Candidates scored once per volume, adapting applied to them as `detect` applies it (its "
            f"default bound is {CLUTTER_SD:g}). Foreign generator volumes 192×384×384 µm, 200 or 700 cells."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
