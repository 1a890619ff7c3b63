"""How clarity-fast's end-to-end speed against cellfinder's detection stage depends on how many cells a volume holds.

detect_speed.py measures a dense, pan-neuronal label (the simulator's default 14,000 cells per mm³, about 340 per
Mvoxel at 4×2×2 µm), where scoring the CNN's patches sets the pace on a CPU. Here the same 32×2150×2650 simulated
volume (difficulty 1, seed 0) is made at lower densities, as a sparse label such as c-Fos gives, and cellfinder's
own real serial two-photon crop (../shared/data/cellfinder_crop, signal channel, 5×2×2 µm) is mirror-tiled to the
same size and run at cellfinder's default 16 µm somata. Each volume goes through `clarity-fast detect` (built-in
model, --batch 4096, each run its own process) and through cellfinder's detection stage (no classifier; its own
environment, see cellfinder_detect.py), one after the other; the rounds repeat the whole set so that drift on a
shared host shows, and the ratio is taken within each round.

Run: python benchmarks/density_speed.py [--densities 1400,4200,14000] [--rounds 2]
(writes results/density_speed.{json,md}; about 5 minutes per round on 2 cores, plus simulating each new volume once)
"""

from __future__ import annotations

import argparse

import numpy as np
import report
from detect_speed import comparison_args, comparison_rounds


SHAPE = (32, 2150, 2650)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args, densities = comparison_args(parser, option="--densities", default="1400,4200,14000", help="comma-separated simulated cells per mm³", kind=float)
    volumes = {}
    for density in densities:
        volumes[f"simulated, {density:g} cells/mm³"] = (report.simulated_volume(SHAPE, density=density), report.SIMULATED, None)
    if crop := report.tiled_crop(SHAPE):
        volumes["cellfinder_crop (real), mirror-tiled"] = (crop, report.CROP_SCALE, None)
    rounds, device = comparison_rounds(volumes, args=args)
    rows, ratios = [], {}
    voxels = float(np.prod(SHAPE))
    for name, (path, scale, _) in volumes.items():
        per_round = [r[name] for r in rounds]
        ratio = [r["cellfinder"]["seconds"] / r["clarity_fast"]["summary"]["seconds"]["total"] for r in per_round]
        ratios[name] = ratio
        s = per_round[-1]["clarity_fast"]["summary"]
        busy = {k: s["seconds"][k] for k in ("prefilter", "gather", "score")}
        rows.append([
            name,
            f"{scale[0][0]:g}×{scale[0][1]:g}×{scale[0][2]:g} µm, {scale[1]:g} µm",
            f"{s['candidates'] / voxels * 1e6:.0f}",
            f"{s['cells'] / voxels * 1e6:.0f}",
            " / ".join(f"{r['clarity_fast']['summary']['voxels_per_s'] / 1e6:.1f}" for r in per_round),
            " / ".join(f"{voxels / r['cellfinder']['seconds'] / 1e6:.2f}" for r in per_round),
            " / ".join(f"{x:.1f}×" for x in ratio),
            ", ".join(f"{k} {v / max(sum(busy.values()), 1e-9):.0%}" for k, v in busy.items()),
        ])
    md = report.write(
        "density_speed",
        data=dict(shape=SHAPE, batch=args.batch, device=device, volumes={n: dict(path=p.name, voxel_size=s[0], cell_diameter=s[1]) for n, (p, s, _) in volumes.items()},
                  rounds=rounds, speedup_vs_cellfinder=ratios),
        columns=["volume", "voxel, cell diameter", "candidates per Mvoxel", "cells found per Mvoxel", "clarity-fast Mvoxel/s (each round)",
                 "cellfinder detection stage Mvoxel/s", "clarity-fast / cellfinder", "clarity-fast busy time (last round)"],
        rows=rows,
        notes=(f"{'×'.join(map(str, SHAPE))} voxels, clarity-fast detect with the built-in model (--batch {args.batch}, scoring on "
               f"{device}) against cellfinder's detection stage (filters on torch cpu, all cores, no classification) on the same "
               "volume, voxel size and diameter; each round runs every volume through both, one after the other, and the ratio "
               "is taken within a round. Cells found: clarity-fast's detections; cellfinder's candidates are in the JSON."),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
