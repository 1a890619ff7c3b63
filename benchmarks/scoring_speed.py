"""Patch-scoring throughput: torch eager against onnxruntime (fp32, fp16, int8 on the CPU; CUDA and
TensorRT where a GPU is present), batch 64..4096, measured in the same run on the same patches. The exported
graph (2D convolutions over z windows, export/planar.py) is timed against the plain 3D graph of the same network.
A float32 matrix multiply on the same threads, timed in the same run, gives the CPU's arithmetic roof: the
GFLOP/s column (2 x the network's multiply-accumulates x patches/s at the largest batch) reads against it.

Run: python benchmarks/scoring_speed.py [--model model.pt] [--batches 64,256,1024,4096] [--seconds 4]
(writes results/scoring_speed[_gpu].{json,md}; the ratio column is at the largest batch).
Without --model the default-width network is initialised and its batch-norm statistics set on random patches
(speed does not depend on the weights; the int8 accuracy column is only meaningful with a trained model).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import report
import torch

from clarity_fast.export.parity import random_patches
from clarity_fast.export.providers import cuda_device_count
from clarity_fast.export.runtime import OnnxScorer, RuntimeSettings
from clarity_fast.export.to_onnx import export_onnx
from clarity_fast.model.config import ModelConfig, NetworkConfig, multiply_accumulates
from clarity_fast.model.network import CellNet
from clarity_fast.model.store import load_model



def throughput(score, patches: np.ndarray, batch: int, seconds: float) -> float:
    """Patches per second over `seconds` of back-to-back calls, after one warm-up call."""
    x = patches[:batch]
    return batch * report.calls_per_second(lambda: score(x), seconds)


def matmul_gflops(seconds: float, *, size: int = 2048) -> float:
    """GFLOP/s of torch's float32 matrix multiply on the current threads: what dense arithmetic reaches here."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 * report.calls_per_second(lambda: a @ b, seconds) / 1e9


def quantised(fp32: Path, out: Path, calibration: np.ndarray) -> Path:
    """Static int8 (QDQ) quantisation calibrated on the given patches."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"patches": calibration[i : i + 64]} for i in range(0, len(calibration), 64)])

        def get_next(self):
            return next(self.batches, None)

    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    return out


def default_network() -> tuple[CellNet, ModelConfig]:
    torch.manual_seed(0)
    net = CellNet(NetworkConfig()).train()
    with torch.no_grad():
        net(torch.from_numpy(random_patches(512, patch=12)))
    config = ModelConfig(network=net.config, voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0, threshold=0.5, prefilter_threshold=3.0)
    return net.eval(), config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a trained model.pt (default: an untrained default-width network)")
    parser.add_argument("--batches", default="64,256,1024,4096", help="batch sizes to time, comma-separated")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per measurement")
    args = parser.parse_args()
    batches = tuple(int(b) for b in args.batches.split(","))
    largest = max(batches)
    net, config = load_model(args.model) if args.model else default_network()
    gpus = cuda_device_count()
    patches = random_patches(largest, patch=config.network.patch, seed=1)
    with torch.inference_mode():
        reference = net(torch.from_numpy(patches)).numpy()
    workdir = Path(tempfile.mkdtemp(prefix="clarity-fast-bench-"))
    export_onnx(workdir / "fp32.onnx", net=net, config=config)
    export_onnx(workdir / "fp32_3d.onnx", net=net, config=config, planar=False)
    export_onnx(workdir / "fp16.onnx", net=net, config=config, fp16=True)
    variants: dict[str, object] = {}
    variants["torch eager"] = lambda x: net(torch.from_numpy(x)).numpy()
    variants["onnxruntime cpu fp32, 3D graph"] = OnnxScorer(workdir / "fp32_3d.onnx", settings=RuntimeSettings(device="cpu"))
    variants["onnxruntime cpu fp32"] = OnnxScorer(workdir / "fp32.onnx", settings=RuntimeSettings(device="cpu"))
    variants["onnxruntime cpu fp16"] = OnnxScorer(workdir / "fp16.onnx", settings=RuntimeSettings(device="cpu"))
    try:
        if gpus:  # int8 is a CPU option (no faster than fp32 there); on a GPU machine it only costs lease time
            raise RuntimeError("not timed on a GPU machine")
        int8 = quantised(workdir / "fp32.onnx", workdir / "int8.onnx", random_patches(512, patch=config.network.patch, seed=2))
        session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
        variants["onnxruntime cpu int8"] = lambda x: session.run(None, {"patches": x})[0]
    except Exception as exc:  # quantisation tooling varies between onnxruntime releases
        print(f"int8 skipped: {type(exc).__name__}: {exc}")
    if gpus and torch.cuda.is_available():  # the same network in PyTorch on the GPU, copies in and out included
        on_gpu = copy.deepcopy(net).cuda()
        variants["torch cuda eager"] = lambda x: on_gpu(torch.from_numpy(x).cuda()).cpu().numpy()
    if gpus:
        for device in ("cuda", "tensorrt"):
            for graph, suffix in (("fp32_3d", ", 3D graph"), ("fp32", "")):
                scorer = OnnxScorer(workdir / f"{graph}.onnx", settings=RuntimeSettings(device=device, cache_dir=workdir))
                if scorer.device == device:  # a fallback would only time the same provider twice
                    variants[f"onnxruntime {device}{suffix}"] = scorer
    runs, rows = [], []
    for name, score in variants.items():
        with torch.inference_mode():
            logits = np.asarray(score(patches))
            delta = float(np.abs(logits - reference).max())
            agree = float(np.mean((logits > 0) == (reference > 0)))
            speeds = {b: throughput(score, patches, b, args.seconds) for b in batches}
        provider = getattr(score, "provider", "torch" if name.startswith("torch") else "CPUExecutionProvider")
        runs.append(dict(name=name, provider=provider, max_abs_logit_diff=delta, decision_agreement=agree, patches_per_s=speeds))
        print(name, {b: round(v) for b, v in speeds.items()}, f"max|Δ| {delta:.2e}", flush=True)
    roof = matmul_gflops(args.seconds)
    flops = 2 * multiply_accumulates(config.network)
    eager = runs[0]["patches_per_s"]
    for r in runs:
        r["ratio_to_torch_eager"] = {b: r["patches_per_s"][b] / eager[b] for b in batches}
        r["gflops_at_largest_batch"] = flops * r["patches_per_s"][largest] / 1e9
        rows.append([r["name"], *[f"{r['patches_per_s'][b]:.0f}" for b in batches], f"{r['ratio_to_torch_eager'][largest]:.2f}×", f"{r['gflops_at_largest_batch']:.0f}", f"{r['max_abs_logit_diff']:.1e}", f"{r['decision_agreement']:.4f}"])
    device = torch.cuda.get_device_name(0) if gpus and torch.cuda.is_available() else f"{gpus} CUDA devices" if gpus else "CPU only"
    name = "scoring_speed_gpu" if gpus else "scoring_speed"
    md = report.write(
        name,
        data=dict(device=device, onnxruntime=ort.__version__, torch=torch.__version__, threads=torch.get_num_threads(), network=asdict(config.network), trained_model=str(args.model) if args.model else None, batches=list(batches), seconds=args.seconds, matmul_gflops=roof, runs=runs),
        columns=["runtime", *[f"batch {b}" for b in batches], f"vs eager @{largest}", f"GFLOP/s @{largest}", "max abs Δlogit", "same decision"],
        rows=rows,
        notes=f"Patches/s on {device}; {config.network.patch}³ patches, width {config.network.width}; torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}; {args.seconds:g} s per cell after a warm-up call. Δlogit and decisions against torch eager fp32 on {largest} patches. {flops / 1e6:.1f} MFLOP per patch; torch's float32 2048² matrix multiply on the same threads: {roof:.0f} GFLOP/s.",
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
