"""model.pt -> model.onnx: a dynamic batch axis, the model's config in the ONNX metadata, checked on write.

The .onnx file is then all `detect` needs: onnxruntime runs it, and the metadata says at which scale,
patch size and threshold.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from clarity_fast import __version__
from clarity_fast.errors import InputError
from clarity_fast.export.model_file import CONFIG_KEY
from clarity_fast.export.planar import PlanarCellNet
from clarity_fast.io.atomic import atomic_path
from clarity_fast.model.config import ModelConfig
from clarity_fast.model.network import CellNet

EXPORT_KEY = "clarity_fast.export"
INPUT_NAME, OUTPUT_NAME = "patches", "logits"
DEFAULT_OPSET = 17
MAX_IR_VERSION = 10  # onnxruntime >= 1.17 reads IR 10; newer onnx writes newer IRs by default


class _Half(nn.Module):
    """fp16 weights and arithmetic behind fp32 inputs and outputs, so callers never change."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.half()).float()


def onnx_bytes(
    *, net: CellNet, config: ModelConfig, opset: int = DEFAULT_OPSET, fp16: bool = False, planar: bool = True
) -> bytes:
    """The serialised, checked ONNX model of `net` (in eval mode) with `config` in its metadata; `planar`: its 3D
    convolutions written as 2D ones over z windows (same logits, faster on onnxruntime's CPU kernels)."""
    patch = config.network.patch
    module = PlanarCellNet(_copy(net)) if planar else _copy(net)
    module = _Half(module) if fp16 else module
    example = torch.zeros(2, 1, patch, patch, patch)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice: it needs no onnxscript
        torch.onnx.export(
            module.eval(),
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buffer.getvalue())
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    model.producer_name, model.producer_version = "clarity-fast", __version__
    model.doc_string = f"clarity-fast cell classifier: (N, 1, {patch}, {patch}, {patch}) z-scored patches -> N logits"
    metadata = {CONFIG_KEY: json.dumps(config.to_dict()), EXPORT_KEY: json.dumps(dict(fp16=fp16, opset=opset, planar=planar))}
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def check_opset(opset: int) -> None:
    """Refuse an opset the export is not tested with, before any model is loaded (bad input: exit 2)."""
    if not 13 <= opset <= 21:
        raise InputError(f"--opset must be between 13 and 21, got {opset}")


def export_onnx(
    path: Path, *, net: CellNet, config: ModelConfig, opset: int = DEFAULT_OPSET, fp16: bool = False, planar: bool = True
) -> None:
    """Write the ONNX model atomically (see onnx_bytes)."""
    check_opset(opset)
    data = onnx_bytes(net=net, config=config, opset=opset, fp16=fp16, planar=planar)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _copy(net: CellNet) -> CellNet:
    """An eval-mode copy, so exporting (and halving) never changes the caller's network."""
    clone = CellNet(net.config)
    clone.load_state_dict(net.state_dict())
    return clone.eval()
