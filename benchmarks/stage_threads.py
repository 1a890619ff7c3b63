"""GPU-scored detect with the CPU stages' cores split different ways: how to share a server's cores between the
prefilter and patch gathering while a GPU scores.

Run on a GPU machine: python benchmarks/stage_threads.py [--shape 32,2150,2650] [--tile 32,540,540] [--times 3]
(writes results/stage_threads.{json,md}). Each setting runs in its own process (OMP_WAIT_POLICY is read when
numba's OpenMP starts), in two rounds, and the faster time counts. Settings: `split` is the numba threads
(prefilter, gathering) while both work (`all`: every core for each, as before), `ort` onnxruntime's intra-op
threads, `wait` OpenMP's wait policy, `slab` the slab depth; the deep volume is --times the --shape depth.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import report
from detect_speed import deeper

HERE = Path(__file__).resolve().parent
CONFIGS = (
    "split=all ort=all",
    "split=all ort=1",
    "split=auto ort=all",
    "split=auto ort=1",
    "split=7,8 ort=all",
    "split=11,4 ort=all",
    "split=auto ort=all wait=passive",
    "split=all ort=all volume=base",
    "split=auto ort=all volume=base",
    "split=auto ort=all slab=16 volume=base",
)


def measure(path: str, config: dict[str, str]) -> dict:
    """One detect of the volume on the GPU after an untimed small run (kernels compiled, session warm)."""
    import numba
    import numpy as np

    from clarity_fast.export.model_file import resolve_model
    from clarity_fast.export.providers import available_cores
    from clarity_fast.export.runtime import OnnxScorer, RuntimeSettings
    from clarity_fast.io.volumes import open_array, open_volume
    from clarity_fast.pipeline import DetectSettings, detect, shared_cores

    split = config.get("split", "all")
    stage_threads = None if split == "all" else shared_cores(available_cores()) if split == "auto" else tuple(map(int, split.split(",")))
    ort = config.get("ort", "all")
    scorer = OnnxScorer(resolve_model("default"), settings=RuntimeSettings(device="cuda", threads=None if ort == "all" else int(ort)))
    settings = DetectSettings(
        voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0, threshold=scorer.config.threshold,
        prefilter_threshold=scorer.config.prefilter_threshold, slab_depth=int(config.get("slab", 32)), stage_threads=stage_threads,
    )
    volume = np.load(path, mmap_mode="r")
    detect(open_array(np.asarray(volume[:40, :300, :300])), scorer=scorer, model=scorer.config, settings=settings)
    with open_volume(Path(path)) as reader:
        result = detect(reader, scorer=scorer, model=scorer.config, settings=settings)
    seconds = result.seconds
    return dict(
        shape=list(volume.shape), cells=len(result.zyx), seconds=seconds, mvoxel_s=volume.size / seconds["total"] / 1e6,
        stage_threads=stage_threads, provider=scorer.provider, threading_layer=numba.threading_layer(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="32,2150,2650")
    parser.add_argument("--tile", default="32,540,540")
    parser.add_argument("--times", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], dict(kv.split("=") for kv in args.measure[1].split()))))
        return
    base = report.simulated_volume(tuple(int(v) for v in args.shape.split(",")), tile=tuple(int(v) for v in args.tile.split(",")))
    deep = deeper(base, args.times)
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for config in CONFIGS:
            settings = dict(kv.split("=") for kv in config.split())
            env = {**os.environ, **({"OMP_WAIT_POLICY": settings["wait"]} if "wait" in settings else {})}
            path = base if settings.get("volume") == "base" else deep
            done = subprocess.run(
                [sys.executable, __file__, "--measure", str(path), config], capture_output=True, text=True, env=env
            )
            if done.returncode != 0:
                print(config, done.stderr[-1500:])
                continue
            run = json.loads(done.stdout.strip().splitlines()[-1])
            print(config, f"{run['mvoxel_s']:.1f} Mvoxel/s", {k: round(v, 2) for k, v in run["seconds"].items()}, flush=True)
            if config not in best or run["seconds"]["total"] < best[config]["seconds"]["total"]:
                best[config] = run
    rows = []
    for config, run in best.items():
        s = run["seconds"]
        rows.append([config, "×".join(map(str, run["shape"])), str(run["stage_threads"]), f"{s['total']:.2f}", f"{run['mvoxel_s']:.1f}",
                     *(f"{s[k]:.2f}" for k in ("prefilter", "gather", "score")), run["cells"]])
    any_run = next(iter(best.values()))
    md = report.write(
        "stage_threads",
        data=dict(runs=best, provider=any_run["provider"], threading_layer=any_run["threading_layer"], volume=deep.name),
        columns=["setting", "shape", "stage threads", "seconds", "Mvoxel/s", "prefilter busy s", "gather busy s", "score busy s", "cells"],
        rows=rows,
        notes=(f"detect's pipeline (built-in model, batch 4096, scoring on {any_run['provider']}, numba threading layer "
               f"{any_run['threading_layer']}) on a simulated volume ({base.name}, and {args.times}x as deep); each setting in its own "
               f"process, best of {args.rounds} rounds. `auto` is pipeline.shared_cores for this machine's cores."),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
