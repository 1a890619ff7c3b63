"""What `detect`'s second pass (clarity_fast/second_pass.py) costs: `detect` at its defaults against `detect
--no-second-pass` (the first pass alone), in the same run, on the same volumes: clean ones, where it runs and is
kept, and the speed tables' simulated volume and cellfinder's real crop, where it should not run (a trigger that
once did run it on the crop, its upper group a majority but not cleanly apart, cost 1.63x for nothing). The second
pass scores only the candidates the first did not (clarity_fast/score_memo.py); what it would cost scoring them
all is the first pass plus a whole pass at 2.5 noise units (`--prefilter-threshold 2.5`), less the noise and cell
shape measurements the second pass does not repeat.

Run: python benchmarks/second_pass_speed.py [--shape 64,512,512] [--repeats 2]   (writes results/second_pass_speed.{json,md})
Volumes: clean conditions of the foreign generator (benchmarks/foreign_synthetic.py, seed 2000 + its index),
mirror-tiled out to --shape, the simulated difficulty-1 volume of --shape (report.simulated_volume) and cellfinder's
real crop mirror-tiled to it (report.tiled_crop, where ../shared/data has it); each run in this process through
run_detection, its total seconds as detect reports them, the fastest of --repeats.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import report
from foreign_synthetic import CONDITIONS, make_volume

from clarity_fast.run_detect import DetectRequest, run_detection

NAMES = ["gaussian cells, high SNR", "dense, touching", "very low SNR (peak 2.5 noise sd)"]
VARIANTS = {"first pass alone (--no-second-pass)": dict(second_pass=False), "default (second pass)": {},
            "one pass at 2.5 (--prefilter-threshold 2.5)": dict(prefilter_threshold=2.5)}


def volume(name: str, shape: tuple[int, int, int]) -> tuple[Path, tuple[float, float, float], float]:
    """The condition's volume mirror-tiled to `shape`, cached as .npy, with its voxel size and stated diameter."""
    index = [c.name for c in CONDITIONS].index(name)
    condition = CONDITIONS[index]
    path = report.OUT / f"second_pass_speed_{index}_{'x'.join(map(str, shape))}.npy"
    if not path.exists():
        report.OUT.mkdir(exist_ok=True)
        np.save(path, report.mirror_tiled(make_volume(condition, seed=2000 + index)[0], shape))
    return path, condition.voxel, condition.stated_diameter


def volumes(shape: tuple[int, int, int]) -> dict[str, tuple[Path, tuple[float, float, float], float]]:
    """Each volume's path, voxel size and cell diameter, by name."""
    out = {name: volume(name, shape) for name in NAMES}
    out["simulated, difficulty 1 (the speed tables')"] = (report.simulated_volume(shape), *report.SIMULATED)
    if (crop := report.tiled_crop(shape)) is not None:
        out["cellfinder_crop (real), mirror-tiled"] = (crop, *report.CROP_SCALE)
    return out


def timed(path: Path, voxel: tuple[float, float, float], diameter: float, *, repeats: int, options: dict) -> dict:
    """The fastest of `repeats` runs' summaries."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeats):
            runs.append(run_detection(DetectRequest(volume=path, out=Path(tmp) / f"cells{k}.csv", voxel_size=voxel,
                                                    cell_diameter=diameter, progress=False, **options)).summary)
    return min(runs, key=lambda s: s["seconds"]["total"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,512,512")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    inputs = volumes(shape)
    timed(*inputs[NAMES[0]], repeats=1, options={})  # kernels compiled and the model loaded before any timed run
    results, rows = {}, []
    for name, (path, voxel, diameter) in inputs.items():
        runs = {label: timed(path, voxel, diameter, repeats=args.repeats, options=options) for label, options in VARIANTS.items()}
        first, default, lower = runs.values()
        once = lower["seconds"]["total"] - lower["seconds"]["noise"] - lower["seconds"]["cell_shape"]
        passes = default["second_pass"]
        results[name] = dict(runs=runs, scoring_all_s=first["seconds"]["total"] + once)
        rows.append([
            name, first["candidates"], "not run" if passes is None else f"{passes['second_candidates']} ({passes['scores_reused']} reused; {'kept' if passes['kept'] else 'not kept'})",
            f"{first['seconds']['total']:.2f}", f"{default['seconds']['total']:.2f} ({default['seconds']['total'] / first['seconds']['total']:.2f}×)",
            f"{results[name]['scoring_all_s']:.2f} ({results[name]['scoring_all_s'] / first['seconds']['total']:.2f}×)",
            f"{first['seconds']['score']:.2f} / {default['seconds']['score']:.2f}",
        ])
        print(rows[-1], flush=True)
    md = report.write(
        "second_pass_speed",
        data=dict(shape=shape, repeats=args.repeats, results=results),
        columns=["volume", "first pass: candidates", "second pass: candidates (scores reused)", "first pass alone: s",
                 "default, second pass scoring only new candidates: s (of the first pass alone)",
                 "had it scored all its candidates: s (of the first pass alone)", "scoring busy s: first pass alone / default"],
        rows=rows,
        notes=(f"Built-in model on the CPU, `detect` through run_detection at batch 4096; volumes {shape[0]}×{shape[1]}×{shape[2]} voxels "
               f"(each condition's own voxel size), the fastest of {args.repeats} runs; a run's total includes measuring the noise and the cells' shape once."),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
