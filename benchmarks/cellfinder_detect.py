"""Run brainglobe cellfinder's detection stage (no classifier) on a .npy volume and print JSON timings.

Runs in its own environment, never clarity-fast's: cellfinder is not a dependency. Set it up with
    python3 -m venv ../cellfinder-venv
    ../cellfinder-venv/bin/pip install torch==2.13.0   # the CPU build first, or pip pulls a CUDA one
    ../cellfinder-venv/bin/pip install cellfinder
Usage: python cellfinder_detect.py VOLUME.npy Z,Y,X SOMA_DIAMETER_UM [TORCH_DEVICE (cpu | cuda; default cpu)]
"""

from __future__ import annotations

import json
import sys
import time

if __name__ == "__main__":  # cellfinder spawns worker processes that re-import this module
    import numpy as np
    from cellfinder.core.detect import detect
    from importlib.metadata import version

    path, voxel, diameter = sys.argv[1], tuple(float(v) for v in sys.argv[2].split(",")), float(sys.argv[3])
    device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    volume = np.load(path)
    start = time.perf_counter()
    cells = detect.main(volume, voxel_sizes=voxel, soma_diameter=diameter, torch_device=device, n_free_cpus=0)
    seconds = time.perf_counter() - start
    print(json.dumps(dict(cellfinder=version("cellfinder"), torch_device=device, seconds=seconds, candidates=len(cells), shape=list(volume.shape))))
