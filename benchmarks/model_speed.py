"""The patch classifier's size and CPU speed per width: parameters, multiply-accumulates per patch,
torch eager inference and training throughput.

Run: python benchmarks/model_speed.py   (writes results/model_speed.{json,md})
"""

from __future__ import annotations

import time

import report
import torch

from clarity_fast.model.config import NetworkConfig, multiply_accumulates
from clarity_fast.model.network import CellNet

WIDTHS = (16, 32, 64)
INFER_BATCH, TRAIN_BATCH = 1024, 256


def main() -> None:
    torch.manual_seed(0)
    rows, runs = [], []
    for width in WIDTHS:
        config = NetworkConfig(width=width)
        net = CellNet(config).eval()
        x = torch.randn(INFER_BATCH, 1, 12, 12, 12)
        with torch.inference_mode():
            net(x)
            start = time.perf_counter()
            for _ in range(3):
                net(x)
            infer = 3 * INFER_BATCH / (time.perf_counter() - start)
        net.train()
        opt = torch.optim.AdamW(net.parameters())
        xb, yb = torch.randn(TRAIN_BATCH, 1, 12, 12, 12), torch.rand(TRAIN_BATCH)
        start = time.perf_counter()
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(net(xb), yb).backward()
            opt.step()
        trained = 5 * TRAIN_BATCH / (time.perf_counter() - start)
        params = sum(p.numel() for p in net.parameters())
        macs = multiply_accumulates(config)
        runs.append(dict(width=width, parameters=params, macs_per_patch=macs, infer_patches_per_s=infer, train_patches_per_s=trained))
        rows.append([width, params, f"{macs / 1e6:.1f} M", f"{infer:.0f}", f"{trained:.0f}"])
        print(rows[-1], flush=True)
    md = report.write(
        "model_speed",
        data=dict(patch=12, threads=torch.get_num_threads(), torch=torch.__version__, runs=runs),
        columns=["width", "parameters", "MACs per patch", "eager inference patches/s", "training patches/s"],
        rows=rows,
        notes=f"torch {torch.__version__} eager on the CPU, {torch.get_num_threads()} threads, 12³ patches, inference batch {INFER_BATCH}, training batch {TRAIN_BATCH}. Default width: 32.",
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
