"""Run brainglobe cellfinder's detection stage, and optionally its classification, on a .npy volume; print JSON timings.

Runs in its own environment, never clarity-fast's: cellfinder is not a dependency. Set it up with
    python3 -m venv ../cellfinder-venv
    ../cellfinder-venv/bin/pip install torch==2.13.0   # the CPU build first, or pip pulls a CUDA one
    ../cellfinder-venv/bin/pip install cellfinder
Usage: python cellfinder_detect.py VOLUME.npy Z,Y,X SOMA_DIAMETER_UM [TORCH_DEVICE (cpu | cuda; default cpu)]
       [--background BACKGROUND.npy]
With --background, the detected candidates are then classified as cellfinder does (its default ResNet-50 on 50×50×20
two-channel cubes at its default network voxel size and batch). Its trained weights are a download and no network is
reachable here, so the network is cellfinder's own, randomly initialised: the time does not depend on the weights,
the cell/non-cell calls are meaningless and are not reported.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

if __name__ == "__main__":  # cellfinder spawns worker processes that re-import this module
    import numpy as np
    from cellfinder.core.classify import classify
    from cellfinder.core.classify.resnet import build_model
    from cellfinder.core.detect import detect
    from importlib.metadata import version

    parser = argparse.ArgumentParser()
    parser.add_argument("volume")
    parser.add_argument("voxel")
    parser.add_argument("diameter", type=float)
    parser.add_argument("device", nargs="?", default="cpu")
    parser.add_argument("--background")
    args = parser.parse_args()
    voxel = tuple(float(v) for v in args.voxel.split(","))
    volume = np.load(args.volume)
    start = time.perf_counter()
    cells = detect.main(volume, voxel_sizes=voxel, soma_diameter=args.diameter, torch_device=args.device, n_free_cpus=0)
    seconds = time.perf_counter() - start
    result = dict(cellfinder=version("cellfinder"), torch_device=args.device, seconds=seconds, candidates=len(cells), shape=list(volume.shape))
    if args.background and cells:
        weights = os.path.join(tempfile.mkdtemp(), "random.weights.h5")
        build_model(network_depth="50-layer").save_weights(weights)  # untimed: cellfinder would load its trained file instead
        background = np.load(args.background)
        start = time.perf_counter()
        # cellfinder.core.main's defaults (network voxels (5, 1, 1) µm, batch 64, cubes 50×50×20, depth "50", at most 3
        # loader workers: 2 on 2 cores), with every core free for it, as for its detection above (n_free_cpus=0)
        classified = classify.main(cells, volume, background, 0, voxel, (5, 1, 1), 64, 50, 50, 20, None, weights, "50")
        result.update(classify_seconds=time.perf_counter() - start, classified=len(classified))
    print(json.dumps(result))
