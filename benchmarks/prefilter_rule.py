"""Which rule the prefilter should keep a point by: candidate recall of each against the non-cell candidates it
proposes, on faint and clean volumes, on structured backgrounds, and on cluttered and real ones.

The prefilter keeps points whose smallest curvature along z, y and x is high (in noise units). Two other rules
are natural: the LoG's sum of the three, the more efficient statistic in white noise (a LoG with a fitted
threshold finds faint cells the prefilter misses, foreign_synthetic.md), alone or with each curvature held to a
fraction of the mean; and the smallest eigenvalue of the (scale-normalised) Hessian, the curvature along the
least curved direction whatever it is, which cuts tubes and sheets at any angle where the axis rule cuts only
those along an axis (an axis curvature is never below it). All share the prefilter's smoothing, noise map and
candidate spacing; each volume's candidates are compared with its annotations (3.5 voxels, z counted double), and
one threshold per rule serves a whole set. The prefilter's rule at its default threshold of 3 sets the bar: each
other rule is shown at the threshold that gives as many non-cell candidates per annotated cell or fewer (compare
recall) and at the one that gives the same recall or more (compare non-cell candidates). Elongated cells are
searched on the volume's own grid (detect would first rescale z).

Run: python benchmarks/prefilter_rule.py   (the delivr rows need ../shared/data, the simulated rows the test brains
that benchmarks/default_model.py made in benchmarks/out; about 20 minutes on 2 cores; writes
results/prefilter_rule.{json,md})
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import report
import structured_background
from foreign_synthetic import CONDITIONS, make_volume
from scipy.ndimage import gaussian_filter

from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, match_points
from clarity_fast.io.points import read_points
from clarity_fast.io.volumes import open_volume
from clarity_fast.kernels.maxima import footprint_offsets, local_maxima
from clarity_fast.kernels.reference import axis_curvatures, noise_map
from clarity_fast.settings import PrefilterSettings, Scale

DEFAULT = 3.0  # the prefilter's threshold (noise units)
THRESHOLDS = np.round(np.arange(1.0, 8.01, 0.05), 2)  # searched for each other rule, in its own noise units
GATES = (0.3, 0.5)  # gated sums keep points whose smallest curvature is at least this fraction of their mean
FAINT_SNR = 4.0  # foreign-generator conditions whose median cell peaks at this many noise sd or less count as faint
TEST_BRAINS = report.OUT / "default_model"
DELIVR = Path(__file__).resolve().parents[2] / "shared" / "data" / "delivr_cfos"
DELIVR_SCALE = Scale(voxel_size=(6.0, 1.62, 1.62), cell_diameter=8.0)
PRESENT = "smallest axis curvature (the prefilter)"
RULES = (PRESENT, "sum of the curvatures (LoG), all three > 0", *[f"sum, smallest >= {g:g} × mean" for g in GATES], "smallest Hessian eigenvalue")


def hessian_floor(volume: np.ndarray, sigma: tuple[float, float, float], diagonal: np.ndarray) -> np.ndarray:
    """The smallest eigenvalue of the scale-normalised negative Hessian (its diagonal: `diagonal`, the axis
    curvatures): how much the image curves down along its least curved direction, whatever that direction is. An
    axis curvature is never below it, so an oblique tube or sheet that curves down along every axis but not along
    itself is cut here and not by the axis rule."""
    matrix = np.empty(volume.shape + (3, 3), np.float32)
    for a in range(3):
        matrix[..., a, a] = diagonal[a]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        order = [0, 0, 0]
        order[a] = order[b] = 1
        matrix[..., a, b] = matrix[..., b, a] = -sigma[a] * sigma[b] * gaussian_filter(volume, sigma, order=order, mode="reflect")
    flat = matrix.reshape(-1, 3, 3)
    out = np.empty(len(flat), np.float32)
    for i in range(0, len(flat), 1 << 20):  # in pieces: eigvalsh works in float64
        out[i : i + (1 << 20)] = np.linalg.eigvalsh(flat[i : i + (1 << 20)].astype(np.float64))[:, 0]
    return out.reshape(volume.shape)


def peaks(volume: np.ndarray, scale: Scale) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each rule's local maxima (candidate spacing as the prefilter's) above the lowest threshold looked at, with
    their values in noise units."""
    settings = PrefilterSettings(scale=scale)
    v = np.asarray(volume, dtype=np.float32)
    noise = noise_map(v, sigma=settings.sigma, noise_half_width=settings.noise_half_width, noise_floor=0.5)
    curvatures = axis_curvatures(v, sigma=settings.sigma)
    smallest = curvatures.min(axis=0) / noise
    mean = curvatures.mean(axis=0) / noise
    responses = {PRESENT: smallest, RULES[1]: np.where(smallest > 0, mean, -np.inf)}
    for gate, rule in zip(GATES, RULES[2:]):
        responses[rule] = np.where(smallest > gate * np.maximum(mean, 0.0), mean, -np.inf)
    responses[RULES[-1]] = hessian_floor(v, settings.sigma, curvatures) / noise
    offsets = footprint_offsets(settings.min_separation)
    return {rule: local_maxima(r.astype(np.float32), offsets=offsets, threshold=DEFAULT if rule == PRESENT else THRESHOLDS[0]) for rule, r in responses.items()}


def counts(zyx: np.ndarray, values: np.ndarray, truth: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(len(thresholds), 2): cells found and non-cell candidates above each threshold."""
    out = np.zeros((len(thresholds), 2))
    for i, t in enumerate(thresholds):
        match = match_points(pred=zyx[values > t], truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
        out[i] = match.tp, match.fp
    return out


def compare(volumes) -> dict:
    """Pooled over (name, volume, truth, scale): the prefilter's rule at DEFAULT, and each other rule at the threshold
    that matches its non-cell candidates (recall compared) and at the one that matches its recall (non-cell
    candidates compared)."""
    cells, present = 0, np.zeros(2)
    pooled = {rule: np.zeros((len(THRESHOLDS), 2)) for rule in RULES[1:]}
    for name, volume, truth, scale in volumes:
        found = peaks(volume, scale)
        cells += len(truth)
        present += counts(*found[PRESENT], truth, np.array([DEFAULT]))[0]
        for rule in RULES[1:]:
            pooled[rule] += counts(*found[rule], truth, THRESHOLDS)
        print(f"  {name}", flush=True)

    def at(c: np.ndarray, i: int) -> dict:
        return dict(threshold=float(THRESHOLDS[i]), recall=c[i, 0] / cells, noncell_per_cell=c[i, 1] / cells)

    out = {PRESENT: dict(threshold=DEFAULT, recall=present[0] / cells, noncell_per_cell=present[1] / cells)}
    for rule, c in pooled.items():
        within, as_good = np.flatnonzero(c[:, 1] <= present[1]), np.flatnonzero(c[:, 0] >= present[0])
        out[rule] = dict(
            same_noncell=at(c, within[0] if len(within) else len(THRESHOLDS) - 1),
            same_recall=at(c, as_good[-1] if len(as_good) else 0),
        )
    return dict(cells=cells, rules=out)


def foreign(faint: bool):
    for i, condition in enumerate(CONDITIONS):
        if (condition.snr <= FAINT_SNR) == faint:
            volume, truth = make_volume(condition, seed=2000 + i)  # foreign_synthetic's test volume
            yield condition.name, volume, truth, Scale(voxel_size=condition.voxel, cell_diameter=condition.stated_diameter)


def structured():
    for i, condition in enumerate(structured_background.CONDITIONS):
        volume, truth = structured_background.make_volume(condition, seed=4000 + i)  # structured_background's test volume
        yield condition.name, volume, truth, Scale(voxel_size=condition.voxel, cell_diameter=condition.diameter)


def test_brains():
    """The built-in model's held-out simulated brains (3 at 4×2×2 µm, one at each of 8 geometries)."""
    for folder in sorted(TEST_BRAINS.glob("test_sims/brain_*")) + sorted(TEST_BRAINS.glob("test_geometries/*/brain_00")):
        found = re.search(r"sim_([\d.]+)x([\d.]+)x([\d.]+)um_([\d.]+)um", str(folder))
        voxel, diameter = ((float(found[1]), float(found[2]), float(found[3])), float(found[4])) if found else report.SIMULATED
        with open_volume(folder / "volume.tif") as reader:
            volume = reader.read_slab(0, reader.shape[0])
        yield folder.relative_to(TEST_BRAINS), volume, read_points(folder / "cells.csv").zyx, Scale(voxel_size=voxel, cell_diameter=diameter)


def delivr():
    with (DELIVR / "index.csv").open() as f:
        for row in csv.DictReader(f):
            with open_volume(DELIVR / row["volume_file"]) as reader:
                volume = reader.read_slab(0, reader.shape[0])
            yield row["patch_id"], volume, read_points(DELIVR / row["points_file"]).zyx, DELIVR_SCALE


def main() -> None:
    sets = [
        (f"foreign generator, faint (median peak <= {FAINT_SNR:g} noise sd)", lambda: foreign(True)),
        ("foreign generator, the other conditions", lambda: foreign(False)),
        ("structured backgrounds (structured_background.py: texture, fibres, textured nuclei)", structured),
    ]
    if any(TEST_BRAINS.glob("test_sims/brain_*")):
        sets.append(("simulated test brains (3 at 4×2×2 µm, 8 geometries; vessels, stripes, haze)", test_brains))
    if DELIVR.exists():
        sets.append(("delivr_cfos, 25 real patches (annotations partial)", delivr))
    results, rows = {}, []
    for label, volumes in sets:
        print(label, flush=True)
        r = results[label] = compare(volumes())
        p = r["rules"][PRESENT]
        rows.append([label, r["cells"], PRESENT, f"{p['recall']:.3f} / {p['noncell_per_cell']:.2f} (at {DEFAULT:g})", ""])
        for rule in RULES[1:]:
            a, b = r["rules"][rule]["same_noncell"], r["rules"][rule]["same_recall"]
            rows.append(["", "", rule, f"{a['recall']:.3f} / {a['noncell_per_cell']:.2f} (at {a['threshold']:g})",
                         f"{b['recall']:.3f} / {b['noncell_per_cell']:.2f} (at {b['threshold']:g})"])
    md = report.write(
        "prefilter_rule",
        data=dict(default_threshold=DEFAULT, faint_snr=FAINT_SNR, gates=GATES, sets=results),
        columns=["volumes", "annotated cells", "rule", "recall / non-cell candidates per cell, as many non-cell candidates or fewer",
                 "recall / non-cell candidates per cell, the same recall or more"],
        rows=rows,
        notes=(
            "Each rule over the prefilter's own smoothing, noise map and candidate spacing; one threshold per rule and set, pooled "
            "over the set's volumes; matched within 3.5 voxels, z counted double. The prefilter's rule at its threshold of 3 sets "
            "the numbers the others are held to. Non-cell candidates: those matched to no annotation (on delivr_cfos, whose "
            "annotations are partial, some are cells). Sums are the mean of the three curvatures over the same noise."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
