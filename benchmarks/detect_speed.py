"""End-to-end `clarity-fast detect` throughput and peak memory, against cellfinder's detection stage.

Run: python benchmarks/detect_speed.py [--shape 32,2150,2650] [--cellfinder ../cellfinder-venv/bin/python]
[--devices cuda,cpu] [--cellfinder-devices cpu,cuda] [--tile 32,540,540] [--depths 2,3]
(writes results/detect_speed[_gpu].{json,md}). Each run is its own process, so its peak RSS is its own.
The volume is simulated (difficulty 1, 4×2×2 µm voxels, 12 µm cells) and cached as .npy in benchmarks/out. A
small volume runs first, untimed, so that no timed run compiles kernels. Memory is measured at several depths
(by default 2x and 3x, both several slabs deep) to show it does not grow with the depth. cellfinder runs, when
its environment exists (see cellfinder_detect.py), on the same .npy volumes with the same voxel and cell size: at every
depth, as its throughput grows with the depth too (--cellfinder-base-only: on the base volume alone, for a short lease).
With several --devices the volume runs once on each (the first one also does the depth and plane runs), so a
GPU's end-to-end figure has a CPU reference from the same machine and run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import report

from clarity_fast.export.providers import cuda_device_count

HERE = Path(__file__).resolve().parent
OUT = report.OUT
CHILD = """
import json, sys
from pathlib import Path
from clarity_fast.run_detect import DetectRequest, run_detection
from report import peak_rss_mb
volume, out, batch, device, voxel, diameter = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], float(sys.argv[6])
voxel_size = tuple(float(v) for v in voxel.split(","))
report = run_detection(DetectRequest(volume=Path(volume), out=out, batch=batch, device=device, voxel_size=voxel_size, cell_diameter=diameter, progress=False))
print(json.dumps(dict(summary=report.summary, peak_rss_mb=peak_rss_mb())))
"""

Scale = tuple[tuple[float, float, float], float]  # (voxel size, cell diameter) in µm, as report.SIMULATED


def deeper(path: Path, times: int) -> Path:
    """The volume stacked `times` deep (alternately mirrored, so planes stay continuous), for the memory test."""
    out = path.with_name(path.stem + f"_x{times}.npy")
    if not out.exists():
        volume = np.load(path, mmap_mode="r")
        stacked = np.lib.format.open_memmap(out, mode="w+", dtype=volume.dtype, shape=(volume.shape[0] * times, *volume.shape[1:]))
        for i in range(times):
            stacked[i * volume.shape[0] : (i + 1) * volume.shape[0]] = volume if i % 2 == 0 else volume[::-1]
        stacked.flush()
    return out


def scale_args(scale: Scale) -> list[str]:
    """A (voxel size, cell diameter) pair as the two command-line arguments both child scripts take."""
    voxel, diameter = scale
    return [",".join(map(str, voxel)), str(diameter)]


def run_detect(volume: Path, *, batch: int, device: str, scale: Scale = report.SIMULATED) -> dict:
    out = OUT / f"{volume.stem}_cells.csv"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}  # for report
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(volume), str(out), str(batch), device, *scale_args(scale)], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cellfinder(
    python: Path, volume: Path, *, device: str, scale: Scale = report.SIMULATED, background: Path | None = None
) -> dict | None:
    """cellfinder_detect.py's JSON (its detection stage; with `background`, its classification too); None without it."""
    if not python.exists():
        return None
    classify = ["--background", str(background)] if background else []
    done = subprocess.run([str(python), str(HERE / "cellfinder_detect.py"), str(volume), *scale_args(scale), device, *classify], capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-2000:])
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def comparison_args(parser: argparse.ArgumentParser, *, option: str, default: str, help: str, kind: type) -> tuple[argparse.Namespace, list]:
    """The options every round-based comparison with cellfinder takes (--rounds, --batch, --cellfinder), plus one
    comma-separated list of positive `kind` values; parsed, checked, and with cellfinder's environment required."""
    parser.add_argument(option, default=default, help=help)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--cellfinder", type=Path, default=HERE.parents[1] / "cellfinder-venv" / "bin" / "python")
    args = parser.parse_args()
    text = getattr(args, option.lstrip("-").replace("-", "_"))
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        parser.error(f"{option} must be comma-separated {kind.__name__} values, got {text!r}")
    if args.rounds < 1 or not all(v > 0 for v in values):
        parser.error(f"--rounds must be >= 1 and every {option} value > 0")
    if not args.cellfinder.exists():
        raise SystemExit(f"error: no cellfinder environment at {args.cellfinder} (see cellfinder_detect.py): nothing to compare with")
    return args, values


def comparison_rounds(volumes: dict[str, tuple[Path, Scale, Path | None]], *, args: argparse.Namespace) -> tuple[list[dict[str, dict]], str]:
    """args.rounds rounds, each running every (volume, scale, background) through `clarity-fast detect` and then through
    cellfinder (classifying too where a background channel is given), after an untimed run that fills numba's cache;
    the rounds' runs by volume name, and the detect device used."""
    device = "auto" if cuda_device_count() else "cpu"
    run_detect(report.simulated_volume((8, 200, 200)), batch=args.batch, device=device)
    rounds = []
    for _ in range(args.rounds):
        runs = {}
        for name, (path, scale, background) in volumes.items():
            clarity = run_detect(path, batch=args.batch, device=device, scale=scale)
            cellfinder = run_cellfinder(args.cellfinder, path, device="cpu", scale=scale, background=background)
            if cellfinder is None:
                raise SystemExit(f"error: cellfinder failed on {path.name} (its stderr is printed above)")
            runs[name] = dict(clarity_fast=clarity, cellfinder=cellfinder)
        rounds.append(runs)
    return rounds, device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="32,2150,2650")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--cellfinder", type=Path, default=HERE.parents[1] / "cellfinder-venv" / "bin" / "python")
    parser.add_argument("--cellfinder-devices", default="cpu", help="comma-separated torch devices for cellfinder's filters")
    parser.add_argument("--devices", help="comma-separated detect --device values (default: auto with a GPU, else cpu)")
    parser.add_argument("--tile", help="simulate a block of this shape and mirror-tile it out to --shape (faster to make)")
    parser.add_argument("--depths", default="2,3", help="comma-separated multiples of --shape's depth for the memory runs")
    parser.add_argument("--cellfinder-base-only", action="store_true", help="run cellfinder on the base volume only, not on the deeper ones")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    gpus = cuda_device_count()
    devices = args.devices.split(",") if args.devices else ["auto" if gpus else "cpu"]
    device = devices[0]
    base = report.simulated_volume(shape, tile=tuple(int(v) for v in args.tile.split(",")) if args.tile else None)
    run_detect(report.simulated_volume((8, 200, 200)), batch=args.batch, device=device)  # fills numba's on-disk cache
    runs = {"volume": run_detect(base, batch=args.batch, device=device)}
    for other in devices[1:]:
        runs[f"volume, --device {other}"] = run_detect(base, batch=args.batch, device=other)
    paths = {"volume": base}
    for times in (int(v) for v in args.depths.split(",")):  # from 2x on several slabs deep: the most the pipeline holds at once
        paths[f"volume, {times}x deeper"] = deeper(base, times)
        runs[f"volume, {times}x deeper"] = run_detect(paths[f"volume, {times}x deeper"], batch=args.batch, device=device)
    plane = OUT / f"plane_{shape[1]}x{shape[2]}.npy"
    if not plane.exists():
        np.save(plane, np.load(base, mmap_mode="r")[shape[0] // 2 : shape[0] // 2 + 1])
    runs["single plane"] = run_detect(plane, batch=args.batch, device=device)
    compared = ["volume"] if args.cellfinder_base_only else list(paths)
    cellfinder = {}  # torch device -> volume name -> cellfinder_detect.py's JSON
    for where in args.cellfinder_devices.split(","):
        by_volume = {name: r for name in compared if (r := run_cellfinder(args.cellfinder, paths[name], device=where))}
        if by_volume:
            cellfinder[where] = by_volume
    rows = []
    for name, r in runs.items():
        s = r["summary"]
        busy = {k: s["seconds"][k] for k in ("read", "prefilter", "gather", "score", "centre", "merge")}
        share = ", ".join(f"{k} {v / max(sum(busy.values()), 1e-9):.0%}" for k, v in busy.items())
        rows.append([f"{name} [{s['provider'].removesuffix('ExecutionProvider')}]", "×".join(map(str, s["shape"])), f"{s['seconds']['total']:.1f}", f"{s['voxels_per_s'] / 1e6:.1f}", f"{r['peak_rss_mb']:.0f}", s["cells"], share])
    data = dict(device=runs["volume"]["summary"]["provider"], batch=args.batch, volume=base.name, runs=runs, cellfinder=cellfinder)
    notes = f"clarity-fast detect (built-in model, --batch {args.batch}, scoring on {data['device']}) on {base.name}; busy seconds per stage overlap (three threads: read+prefilter, gather, score), so shares are of busy time."
    for other in devices[1:]:
        ratio = runs["volume"]["summary"]["voxels_per_s"] / runs[f"volume, --device {other}"]["summary"]["voxels_per_s"]
        data[f"speedup_vs_{other}"] = ratio
        notes += f" The same volume with --device {other} on this machine: {ratio:.1f}× slower."
    data["speedup_vs_cellfinder"], data["speedup_vs_cellfinder_by_run"] = {}, {}
    volumes = [name for name in runs if name.startswith("volume") and "--device" not in name]
    for where, by_volume in cellfinder.items():
        rates = {name: np.prod(r["shape"]) / r["seconds"] for name, r in by_volume.items()}
        # each volume against cellfinder on the same volume; one it did not run on (--cellfinder-base-only), against its
        # rate on the base volume
        compared_on = {name: name if name in rates else "volume" for name in volumes if name in rates or "volume" in rates}
        ratios = {name: runs[name]["summary"]["voxels_per_s"] / rates[on] for name, on in compared_on.items()}
        data["speedup_vs_cellfinder"][where] = ratios.get("volume")
        data["speedup_vs_cellfinder_by_run"][where] = ratios
        data.setdefault("cellfinder_compared_on", {})[where] = compared_on
        for name, result in by_volume.items():
            rows.append([f"cellfinder {result['cellfinder']} detection stage [torch {where}], {name}", "×".join(map(str, result["shape"])), f"{result['seconds']:.1f}", f"{rates[name] / 1e6:.2f}", "", result["candidates"], "candidates, no classification"])
        by_depth = " / ".join(f"{ratios[name]:.1f}×" for name in ratios)
        notes += (f" The same volumes through cellfinder's detection stage (filters on torch {where}, all CPU cores): clarity-fast is "
                  f"{by_depth} as fast ({'; '.join(ratios)}; each against cellfinder on the same volume"
                  f"{'' if all(on == name for name, on in compared_on.items()) else ' where it ran, else on the base volume'}).")
    md = report.write(
        "detect_speed_gpu" if gpus else "detect_speed",
        data=data,
        columns=["run", "shape", "seconds", "Mvoxel/s", "peak RSS MB", "cells", "share of busy time"],
        rows=rows,
        notes=notes,
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
