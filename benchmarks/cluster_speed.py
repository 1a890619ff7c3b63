"""Detection on a Dask LocalCluster of 1 and 2 worker processes against the single-process path, on the same
chunked OME-Zarr volume, in the same run (writes results/cluster_speed.{json,md}).

Run: python benchmarks/cluster_speed.py [--shape 128,1024,1024]
Each configuration runs in its own process; the cluster times include starting the LocalCluster.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import report

CHILD = """
import json, sys
from pathlib import Path
from clarity_fast.run_detect import DetectRequest, run_detection
volume, out, workers = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
r = run_detection(DetectRequest(volume=Path(volume), out=out, workers=workers or None, progress=False))
print(json.dumps(r.summary))
"""


def zarr_volume(shape: tuple[int, int, int]):
    from clarity_fast.io.convert import convert_to_zarr
    from clarity_fast.io.volumes import open_array

    path = report.OUT / f"sim_{'x'.join(map(str, shape))}.zarr"
    if not path.exists():
        volume = np.load(report.simulated_volume(shape))
        convert_to_zarr(open_array(volume, voxel_size=(4.0, 2.0, 2.0)), path, chunks=(32, 512, 512))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="128,1024,1024")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    volume = zarr_volume(shape)
    runs, outputs = {}, {}
    for workers in (0, 1, 2):
        out = report.OUT / f"cluster_{workers}.csv"
        done = subprocess.run([sys.executable, "-c", CHILD, str(volume), str(out), str(workers)], capture_output=True, text=True, check=True)
        runs[workers] = json.loads(done.stdout.strip().splitlines()[-1])
        outputs[workers] = out.read_bytes()
        print(workers, round(runs[workers]["seconds"]["total"], 1), flush=True)
    single = runs[0]["seconds"]["total"]
    rows = [
        ["single process" if w == 0 else f"LocalCluster, {w} worker{'s' * (w > 1)}", f"{r['seconds']['total']:.1f}",
         f"{r['voxels_per_s'] / 1e6:.2f}", f"{r['seconds']['total'] / single:.2f}", r["cells"], "yes" if outputs[w] == outputs[0] else "NO"]
        for w, r in runs.items()
    ]
    md = report.write(
        "cluster_speed",
        data=dict(shape=list(shape), chunks=[32, 512, 512], runs={str(k): v for k, v in runs.items()}),
        columns=["run", "seconds", "Mvoxel/s", "time vs single process", "cells", "same CSV bytes"],
        rows=rows,
        notes=(f"`clarity-fast detect` on a simulated {shape[0]}×{shape[1]}×{shape[2]} OME-Zarr volume (chunks 32×512×512), built-in "
               "model, CPU; default slab depth 32 (one task per slab). Cluster times include starting the LocalCluster; "
               "workers are single-threaded processes, the single process uses both cores."),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
