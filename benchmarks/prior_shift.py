"""`detect`, which adapts probabilities to each volume's share of cells (volume_share, score_mixture), against `detect --no-adapt`.

The built-in model's probabilities are calibrated on validation candidates of which a fifth are cells. In a
clean volume most candidates are cells; `detect` (unless `--no-adapt`) estimates that share by EM over the whole volume and raises
the probabilities' odds where it exceeds the largest share among the validation volumes; where a two-group mixture
of the candidates' logits finds the cells a majority cleanly apart from the rest, or a fifth or more far apart from
it (score_mixture), the mixture's best cut sets the factor instead, and elsewhere a fitted mixture's cells' group
caps the share (since 2026-12-07, share_fallback.py). Measured through
`detect` itself, with and without it, and with the second prefilter pass that `detect` adds by default where the
adapted first pass reads clean (clarity_fast/second_pass.py, since 2026-12-07), on: the foreign-generator volumes (benchmarks/foreign_synthetic.py), our own
generator at difficulty 0, 0.5 and 1 at three voxel sizes, the held-out simulated brains, the eight simulated
geometries of default_model.py and the held-out delivr patches. Matching: the study's rule (3.5 voxels, z counted double).

Run: python benchmarks/prior_shift.py   (needs ../shared/data for the delivr rows; writes results/prior_shift.{json,md})
"""

from __future__ import annotations

import csv
from dataclasses import asdict

import numpy as np
import report
from default_model import DELIVR, SIM, held_out_patches, held_out_sets, voxel_size
from foreign_synthetic import CONDITIONS, make_volume

from clarity_fast.cell_shape import corrected_scale
from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, match_points
from clarity_fast.export.model_file import resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.io.points import read_points
from clarity_fast.io.volumes import open_array, open_volume
from clarity_fast.pipeline import DetectSettings, Result, detect
from clarity_fast.second_pass import with_second_pass
from clarity_fast.settings import Scale
from clarity_fast.simulate import SimulatedBrain, SimulationSettings

OWN_GEOMETRIES = [((4.0, 2.0, 2.0), 12.0), ((2.5, 1.25, 1.25), 12.0), ((6.0, 1.62, 1.62), 8.0)]
OWN_EXTENT_UM = (128.0, 256.0, 256.0)


def own_generator() -> list[tuple]:
    """(name, volume, truth, voxel, diameter) from clarity_fast.simulate at three difficulties and geometries."""
    out = []
    for voxel, diameter in OWN_GEOMETRIES:
        shape = tuple(int(round(e / v)) for e, v in zip(OWN_EXTENT_UM, voxel))
        for difficulty in (0.0, 0.5, 1.0):
            sim = SimulatedBrain(SimulationSettings(shape=shape, scale=Scale(voxel_size=voxel, cell_diameter=diameter), difficulty=difficulty, seed=5))
            name = f"{'x'.join(f'{v:g}' for v in voxel)} µm, {diameter:g} µm cells, difficulty {difficulty:g}"
            out.append((name, sim.volume(), sim.cells.zyx, voxel, diameter))
    return out


def mixture_text(mixture: dict | None) -> str:
    """The score mixture's share of cells, separation (Ashman's D) and gain (nats per candidate); "" where none was fitted."""
    return "" if mixture is None else f"{mixture['cell_share']:.2f}, D {mixture['separation']:.1f}, {mixture['gain']:.3f}"


def main() -> None:
    scorer = OnnxScorer(resolve_model("default"))
    cfg = scorer.config
    with (DELIVR / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    held = held_out_sets(rows, held_out_patches(rows))
    sets = {
        "foreign generator": [(c.name, *make_volume(c, seed=2000 + i), c.voxel, c.stated_diameter) for i, c in enumerate(CONDITIONS)],
        "our generator": own_generator(),
    }
    for key in ("simulated", "simulated_geometries", "delivr_held_out"):
        sets[key] = []
        for name, path, points, g in held[key]:
            with open_volume(path) as reader:
                data = reader.read_slab(0, reader.shape[0])
            sets[key].append((name, data, read_points(points).zyx, voxel_size(g), g["diameter"]))
    results, table = [], []
    for key, volumes in sets.items():
        pooled = {k: np.zeros(3, int) for k in ("no_adapt", "adapt", "default")}
        for name, volume, truth, voxel, diameter in volumes:
            row = dict(set=key, volume=name)
            # z rescaled where cells look elongated along it, as `clarity-fast detect` does
            scale, _ = corrected_scale(open_array(volume), scale=Scale(voxel_size=voxel, cell_diameter=diameter))

            def scan(settings: DetectSettings) -> Result:
                return detect(open_array(volume), scorer=scorer, model=cfg, settings=settings)

            for adapt in (False, True):
                settings = DetectSettings(voxel_size=scale.voxel_size, cell_diameter=diameter, threshold=cfg.threshold,
                                          prefilter_threshold=cfg.prefilter_threshold, adapt=adapt)
                result = scan(settings)
                runs = {"adapt" if adapt else "no_adapt": (result, None)}
                if adapt:  # and detect's default, the second pass where this one reads clean
                    second, record = with_second_pass(result, settings=settings, scan=scan)
                    runs["default"] = (second, record)
                for label, (result, record) in runs.items():
                    m = match_points(pred=result.zyx, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
                    row[label] = dict(
                        m.summary(), cell_share=result.cell_share,
                        em_cell_share=result.em_cell_share, odds_factor=result.odds_factor, mixture_odds_factor=result.mixture_factor,
                        mixture=None if result.mixture is None else result.mixture.summary(),
                        **({} if label != "default" else dict(second_pass=None if record is None else asdict(record))),
                    )
                    pooled[label] += (m.tp, m.fp, m.fn)
            results.append(row)
            d, a, b = row["no_adapt"], row["adapt"], row["default"]
            table.append([f"{key}: {name}", *(f"{r['precision']:.3f} / {r['recall']:.3f} / {r['f1']:.3f}" for r in (d, a, b)),
                          {None: "", True: "kept", False: "run, not kept"}[None if b["second_pass"] is None else b["second_pass"]["kept"]],
                          f"{a['em_cell_share']:.2f} / {a['cell_share']:.2f}", mixture_text(a['mixture']), f"{a['odds_factor']:.2f}"])
            print(table[-1], flush=True)
        f1 = {k: 2 * tp / max(2 * tp + fp + fn, 1) for k, (tp, fp, fn) in pooled.items()}
        table.append([f"**{key}, pooled F1**", *(f"**{f1[k]:.3f}**" for k in ("no_adapt", "adapt", "default")), "", "", "", ""])
    md = report.write(
        "prior_shift",
        data=dict(calibration=dict(share=cfg.calibration.share, reference_share=cfg.calibration.reference_share), volumes=results),
        columns=["volume", "--no-adapt: precision / recall / F1", "adapted, first pass (--no-second-pass): precision / recall / F1",
                 "default (adapted, second pass where clean): precision / recall / F1", "second pass", "share of cells: EM's / as adapting reads it (at most the mixture's cells' share)", "score mixture: cells' share, D, gain", "odds factor"],
        rows=table,
        notes=(
            f"Built-in model through `detect` (threshold {cfg.threshold:.3f}); validation share {cfg.calibration.share:.3f}, "
            f"largest validation-volume share {cfg.calibration.reference_share:.3f} (no adjustment up to it). Our generator: "
            f"{OWN_EXTENT_UM[0]:g}×{OWN_EXTENT_UM[1]:g}×{OWN_EXTENT_UM[2]:g} µm, seed 5; simulated held-out: 3 brains at {SIM['voxel']} µm; simulated_geometries: one brain at each of default_model.py's eight geometries."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
