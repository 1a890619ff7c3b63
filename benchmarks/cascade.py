"""Would a cascade pay on CPUs? A width-8 network screens the candidates and only those it passes go to the
built-in width-32 one: what share passes, what share of the big network's acceptances survives, and what the two
networks cost per patch (onnxruntime, planar graphs, same run).

Run: python benchmarks/cascade.py   (after benchmarks/default_model.py, whose training manifest, held-out sets and
built-in .pt it reuses; trains the width-8 network once, about 7 minutes on 2 cores; writes results/cascade.{json,md})
The screening cut is chosen on the held-out simulated brains to keep a share of the big network's acceptances
(probability >= its threshold, before merging) and applied unchanged to the other sets. Relative scoring cost =
big/small patch rate (every candidate through the small network) + the share passed (those through the big one).
"""

from __future__ import annotations

import argparse
import csv

import numpy as np
import report
from default_model import DELIVR, OUT, SIM_BRAINS, TRAINING_SIZE_SPREAD, cli, held_out_patches, held_out_sets, model_file, training_manifest, voxel_size

from clarity_fast.detection import logits_at
from clarity_fast.export.parity import random_patches
from clarity_fast.export.runtime import OnnxScorer, RuntimeSettings
from clarity_fast.manifest import Entry
from clarity_fast.model.samples import load_annotated
from clarity_fast.model.store import TorchScorer, load_model

KEEP = (0.99, 0.995, 0.999)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8, help="width of the screening network")
    parser.add_argument("--epochs", type=int, default=100, help="epochs for the screening network (early stopping as train)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per speed measurement")
    args = parser.parse_args()
    with (DELIVR / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    held_out = held_out_patches(rows)
    big_pt = model_file()
    if not big_pt.exists():
        raise SystemExit(f"{big_pt} not found: run benchmarks/default_model.py first")
    small_pt = OUT / f"screen_w{args.width}_e{args.epochs}.pt"
    if not small_pt.exists():
        manifest = training_manifest(rows, held_out, sim_brains=SIM_BRAINS, size_spread=TRAINING_SIZE_SPREAD)
        cli("train", "--manifest", manifest, "--out", small_pt, "--epochs", args.epochs, "--seed", 0, "--width", args.width, "--cell-diameter", 12.0)
    for pt in (big_pt, small_pt):
        cli("export", "--onnx", pt, "--out", pt.with_suffix(".onnx"))
    (big, big_config), (small, small_config) = load_model(big_pt), load_model(small_pt)

    patches = random_patches(4096, patch=big_config.network.patch, seed=1)
    scorers = {name: OnnxScorer(pt.with_suffix(".onnx"), settings=RuntimeSettings(device="cpu")) for name, pt in (("big", big_pt), ("small", small_pt))}
    rates: dict[str, list[float]] = {"big": [], "small": []}
    for _ in range(2):  # alternated, so a drift of the machine touches both
        for name, scorer in scorers.items():
            rates[name].append(len(patches) * report.calls_per_second(lambda: scorer(patches), args.seconds))
    ratio = float(np.mean(rates["big"]) / np.mean(rates["small"]))

    passed: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    clutter: dict[str, list[np.ndarray]] = {}
    for set_name, volumes in held_out_sets(rows, held_out).items():
        entries = [
            Entry(volume=v, points=p, name=n, group=n, voxel_size=voxel_size(g), cell_diameter=g["diameter"], partial=set_name.startswith("delivr"))
            for n, v, p, g in volumes
        ]
        for volume in load_annotated(entries, cell_diameter=12.0, voxel_size=None, prefilter_threshold=big_config.prefilter_threshold):
            found = volume.candidates
            probs = {}
            for name, net, config in (("big", big, big_config), ("small", small, small_config)):
                logits = logits_at(volume.native, centres=found.zyx, scorer=TorchScorer(net), patch=config.network.patch, grid=volume.grid)
                probs[name] = config.calibration.probability(logits, found.response)
            passed.setdefault(set_name, []).append((probs["big"] >= big_config.threshold, probs["small"]))
            clutter.setdefault(set_name, []).append(volume.distance_in_radii(found.zyx) > 2)  # a diameter from every annotation

    pooled = {name: (np.concatenate([a for a, _ in items]), np.concatenate([s for _, s in items])) for name, items in passed.items()}
    accepted, screened = pooled["simulated"]
    runs, table = [], []
    for keep in KEEP:
        cut = float(np.quantile(screened[accepted], 1 - keep))
        for name, (acc, score) in pooled.items():
            share, kept = float(np.mean(score >= cut)), float(np.mean(score[acc] >= cut))
            far = float(np.concatenate(clutter[name]).mean())
            runs.append(dict(keep_target=keep, cut=cut, set=name, candidates=len(score), far_from_annotations=far, accepted=int(acc.sum()), passed=share, kept=kept, relative_cost=ratio + share))
            table.append([keep, name, len(score), f"{far:.2f}", f"{share:.2f}", f"{kept:.4f}", f"{ratio + share:.2f}"])
    md = report.write(
        "cascade",
        data=dict(width=args.width, small_model=small_pt.name, big_model=big_pt.name, patch_rates=rates, cost_ratio_small_to_big=ratio, runs=runs),
        columns=["acceptances kept (target, on simulated)", "held-out set", "candidates", "share > 1 diameter from annotations", "share passed", "acceptances kept", "scoring cost vs big alone"],
        rows=table,
        notes=(
            f"Screening network width {args.width} ({small_pt.name}) before the built-in width-32 one. onnxruntime CPU, planar graphs, batch 4096, "
            f"alternated twice: width 32 {np.mean(rates['big']):.0f} patches/s, width {args.width} {np.mean(rates['small']):.0f} patches/s, "
            f"so screening costs {ratio:.2f} of a big-network pass per candidate. "
            "Candidates more than a cell diameter from every annotation are clutter in the simulated sets; delivr's annotations are partial."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
