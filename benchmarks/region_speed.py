"""What `detect --region` costs against detecting the whole volume, and that its cells are the whole run's there.

Run: python benchmarks/region_speed.py   (writes results/region_speed.{json,md}; a few minutes on 2 cores)
The volume is detect_speed's simulated 32×2150×2650 (difficulty 1, 4×2×2 µm, 12 µm cells), 3x deeper (mirrored,
as detect_speed's depth runs), read from .npy. Every run is its own process (its peak RSS its own), built-in model,
`--no-adapt` (adapting follows the candidates read, so only then are the two runs' probabilities comparable),
defaults otherwise. Blocks of several sizes; each block's cells are compared with the whole run's inside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import report
from detect_speed import deeper

from clarity_fast.io.points import read_points
from clarity_fast.region import parse_region, within

HERE = Path(__file__).resolve().parent
SHAPE = (32, 2150, 2650)
REGIONS = [None, "40:56x800:1312x1000:1512", "32:64x:x:", "0:96x0:1075x0:1325", "40:56x:x:"]  # None: the whole volume
CHILD = """
import json, sys
from pathlib import Path
from clarity_fast.region import parse_region
from clarity_fast.run_detect import DetectRequest, run_detection
from report import peak_rss_mb
volume, out, region = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
block = parse_region(region, name="--region") if region else None
report = run_detection(DetectRequest(volume=volume, out=out, voxel_size=(4.0, 2.0, 2.0), adapt=False, progress=False, region=block))
print(json.dumps(dict(summary=report.summary, peak_rss_mb=peak_rss_mb())))
"""


def run(volume: Path, region: str | None) -> tuple[dict, Path]:
    out = report.OUT / f"region_speed_{(region or 'whole').replace(':', '_')}.csv"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", CHILD, str(volume), str(out), region or ""], capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1]), out


def main() -> None:
    volume = deeper(report.simulated_volume(SHAPE), 3)
    shape = tuple(np.load(volume, mmap_mode="r").shape)
    run(report.simulated_volume((8, 256, 256)), None)  # compiles the kernels, untimed
    rows, results, everywhere = [], [], None
    for region in REGIONS:
        result, out = run(volume, region)
        summary, cells = result["summary"], read_points(out, shape=shape)
        bounds = parse_region(region, name="region").bounds(shape, source="") if region else tuple((0, n) for n in shape)
        if everywhere is None:
            everywhere, whole_seconds = cells, summary["seconds"]["total"]
        inside = within(everywhere.cells, bounds=bounds)
        same = bool(np.array_equal(cells.cells, everywhere.cells[inside]) and np.allclose(cells.score, everywhere.score[inside], atol=1e-6))
        voxels = int(np.prod([b - a for a, b in bounds]))
        read = summary["region"]["read"] if region else [[0, n] for n in shape]
        seconds = summary["seconds"]["total"]
        results.append(dict(region=region, bounds=bounds, read=read, voxels=voxels, seconds=seconds, peak_rss_mb=result["peak_rss_mb"],
                            cells=summary["cells"], whole_cells_there=int(inside.sum()), same_as_whole=same, seconds_share_of_whole=seconds / whole_seconds))
        rows.append([region or "whole volume", f"{voxels / np.prod(shape):.3f}", "×".join(str(b - a) for a, b in read), seconds,
                     seconds / whole_seconds, result["peak_rss_mb"], summary["cells"], int(inside.sum()), "yes" if same else "NO"])
    notes = (f"`clarity-fast detect --region` against the whole run on a simulated {'×'.join(map(str, shape))} volume (.npy; difficulty 1, "
             "4×2×2 µm, 12 µm cells), built-in model, --no-adapt, CPU, each run in its own process. Whole planes are read and cut, 16 "
             "at a time; the prefilter and scoring see the block and its context only.")
    report.write("region_speed", data=dict(shape=shape, runs=results),
                 columns=["region", "share of the volume", "voxels read", "seconds", "share of the whole run's seconds", "peak RSS MB",
                          "cells", "whole run's cells there", "identical"], rows=rows, notes=notes)


if __name__ == "__main__":
    main()
