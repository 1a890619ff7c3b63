"""clarity-fast end to end against cellfinder's whole pipeline (detection and classification) on real data.

detect_speed.py and density_speed.py compare with cellfinder's detection stage alone, as the issue asks; but
clarity-fast's figure includes scoring every candidate with its CNN, and cellfinder's candidates still need its
classifier (a ResNet-50 on 50×50×20 two-channel cubes) before they are cells. Here both tools go from the image to
classified cells on cellfinder's own real serial two-photon crop (../shared/data/cellfinder_crop, signal and
background channels, 5×2×2 µm, cellfinder's default 16 µm somata), mirror-tiled to 2150×2650 planes at three depths.
cellfinder's trained weights are a download (no network here), so its classifier runs with its own network randomly
initialised: the time does not depend on the weights (see cellfinder_detect.py). Its cubes span 20 planes, so
candidates within 10 planes of either end of a thin volume cannot be classified and cost nothing: on these volumes
its classification time covers only the candidates it could classify (the table counts them), which flatters it
more the thinner the volume.

Run: python benchmarks/cellfinder_pipeline.py [--depths 32,64,128] [--rounds 2]
(writes results/cellfinder_pipeline.{json,md}; about 13 minutes per round on 2 cores)
"""

from __future__ import annotations

import argparse

import report
from detect_speed import comparison_args, comparison_rounds


PLANE = (2150, 2650)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args, depths = comparison_args(parser, option="--depths", default="32,64,128", help="comma-separated plane counts", kind=int)
    volumes, shapes = {}, {}
    for depth in depths:
        shape = (depth, *PLANE)
        signal, background = report.tiled_crop(shape), report.tiled_crop(shape, channel="background")
        if signal is None or background is None:
            raise SystemExit(f"error: no cellfinder crop under {report.CROP}: nothing to run on")
        name = "x".join(map(str, shape))
        volumes[name], shapes[name] = (signal, report.CROP_SCALE, background), shape
    rounds, device = comparison_rounds(volumes, args=args)
    rows, ratios = [], {}
    for name, shape in shapes.items():
        per_round = [r[name] for r in rounds]
        ours = [r["clarity_fast"]["summary"]["seconds"]["total"] for r in per_round]
        theirs = [(r["cellfinder"]["seconds"], r["cellfinder"].get("classify_seconds", 0.0)) for r in per_round]
        ratios[name] = dict(detection=[d / o for (d, _), o in zip(theirs, ours)], pipeline=[(d + c) / o for (d, c), o in zip(theirs, ours)])
        last = per_round[-1]
        cf, s = last["cellfinder"], last["clarity_fast"]["summary"]
        rows.append([
            "×".join(map(str, shape)),
            " / ".join(f"{o:.1f}" for o in ours),
            f"{s['candidates']} → {s['cells']}",
            " / ".join(f"{d:.1f}" for d, _ in theirs),
            " / ".join(f"{c:.1f}" for _, c in theirs),
            f"{cf['candidates']} ({cf.get('classified', 0)} classifiable)",
            f"{cf.get('classified', 0) / max(cf.get('classify_seconds', 0.0), 1e-9):.1f}",
            " / ".join(f"{x:.1f}×" for x in ratios[name]["detection"]),
            " / ".join(f"{x:.1f}×" for x in ratios[name]["pipeline"]),
        ])
    md = report.write(
        "cellfinder_pipeline",
        data=dict(plane=PLANE, depths=depths, batch=args.batch, device=device, voxel_size=report.CROP_SCALE[0], cell_diameter=report.CROP_SCALE[1],
                  rounds=rounds, speedup=ratios),
        columns=["volume (planes × 2150 × 2650)", "clarity-fast detect s (each round)", "clarity-fast candidates → cells (last round)",
                 "cellfinder detection s", "cellfinder classification s", "cellfinder candidates", "cellfinder cubes classified per s",
                 "clarity-fast / cellfinder detection", "clarity-fast / cellfinder detection + classification"],
        rows=rows,
        notes=(f"cellfinder_crop (real serial two-photon, signal + background) mirror-tiled, {report.CROP_SCALE[0]} µm voxels, "
               f"{report.CROP_SCALE[1]:g} µm somata for both tools. clarity-fast: detect with the built-in model (--batch {args.batch}, "
               f"scoring on {device}), image to cells. cellfinder 1.10.1: detection stage (torch cpu, all cores), then its "
               "classification (ResNet-50, cubes 50×50×20 at 5×1×1 µm, batch 64, at most 3 loader workers; all cores; randomly initialised weights, "
               "timing only). Each round runs every volume through both tools, one after the other; ratios within a round."),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
