"""onnxruntime's CUDA provider: patches/s by provider option and batch size, to choose the options and batch
that OnnxScorer uses on a GPU. Needs a CUDA GPU and onnxruntime-gpu; writes results/cuda_options.{json,md}.

Run: python benchmarks/cuda_options.py [--batches 512,1024,2048,4096,8192,16384] [--seconds 1]
Each option set is timed through I/O binding (device buffers reused, as OnnxScorer does); the default set is
also timed through plain session.run, and timed twice, so the spread between its two runs shows the noise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import report
from scoring_speed import throughput

from clarity_fast.export.parity import random_patches
from clarity_fast.export.providers import cuda_device_count

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "clarity_fast" / "data" / "default.onnx"
OPTION_SETS = {
    "defaults": {},
    "algo search HEURISTIC": {"cudnn_conv_algo_search": "HEURISTIC"},
    "algo search DEFAULT": {"cudnn_conv_algo_search": "DEFAULT"},
    "no max workspace": {"cudnn_conv_use_max_workspace": "0"},
    "tf32 off": {"use_tf32": "0"},
}


def bound_runner(session: ort.InferenceSession, n: int, patch: int):
    binding = session.io_binding()
    x = ort.OrtValue.ortvalue_from_shape_and_type((n, 1, patch, patch, patch), np.float32, "cuda", 0)
    y = ort.OrtValue.ortvalue_from_shape_and_type((n,), np.float32, "cuda", 0)
    binding.bind_ortvalue_input(session.get_inputs()[0].name, x)
    binding.bind_ortvalue_output(session.get_outputs()[0].name, y)

    def run(patches: np.ndarray) -> np.ndarray:
        x.update_inplace(patches)
        session.run_with_iobinding(binding)
        return y.numpy()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="512,1024,2048,4096,8192,16384")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    if cuda_device_count() == 0 or "CUDAExecutionProvider" not in ort.get_available_providers():
        raise SystemExit("error: needs a CUDA GPU and onnxruntime-gpu")
    batches = [int(b) for b in args.batches.split(",")]
    patch = 12
    patches = random_patches(max(batches), patch=patch, seed=3)
    cpu = ort.InferenceSession(str(DEFAULT_MODEL), providers=["CPUExecutionProvider"])
    check = min(4096, len(patches))
    reference = cpu.run(None, {"patches": patches[:check]})[0]
    runs = []
    plan = [(name, opts, "bound") for name, opts in OPTION_SETS.items()] + [("defaults", {}, "plain"), ("defaults", {}, "bound")]
    for name, options, path in plan:
        session = ort.InferenceSession(str(DEFAULT_MODEL), providers=[("CUDAExecutionProvider", options), "CPUExecutionProvider"])
        assert session.get_providers()[0] == "CUDAExecutionProvider", session.get_providers()

        def runner(n: int, session=session, path=path):
            return bound_runner(session, n, patch) if path == "bound" else (lambda p: session.run(None, {"patches": p})[0])

        speeds = {b: throughput(runner(b), patches, b, args.seconds) for b in batches}
        diff = float(np.abs(runner(check)(patches[:check]) - reference).max())
        runs.append(dict(options=name, provider_options=options, path=path, patches_per_s=speeds, max_abs_logit_diff_vs_cpu=diff))
        print(name, path, {b: round(v) for b, v in speeds.items()}, f"max|Δ| {diff:.1e}", flush=True)
    rows = [[r["options"], r["path"], *[f"{r['patches_per_s'][b]:.0f}" for b in batches], f"{r['max_abs_logit_diff_vs_cpu']:.1e}"] for r in runs]
    import torch  # only to name the card

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CUDA device"
    md = report.write(
        "cuda_options",
        data=dict(device=device, onnxruntime=ort.__version__, model=DEFAULT_MODEL.name, seconds=args.seconds, batches=batches, runs=runs),
        columns=["CUDA provider options", "path", *[f"batch {b}" for b in batches], "max abs Δlogit vs CPU"],
        rows=rows,
        notes=f"Patches/s, built-in model (12³ patches), onnxruntime {ort.__version__} CUDAExecutionProvider on {device}; {args.seconds:g} s per cell after a warm-up call; 'bound': inputs copied into reused device buffers, 'plain': session.run on numpy arrays. The last row repeats the first: their spread is the noise.",
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
