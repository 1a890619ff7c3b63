"""The network a fine-tuning starts from: the built-in model, an exported .onnx file, or a model.pt.

A lab with a few dozen annotated cells of its own does better training on from a model that has already learnt
what cells and clutter look like than training a new one on those cells alone (README, "Fine-tuning").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from clarity_fast.errors import ModelError
from clarity_fast.export.model_file import config_from_metadata, model_digest, resolve_model
from clarity_fast.export.to_onnx import EXPORT_KEY
from clarity_fast.model.config import ModelConfig
from clarity_fast.model.network import CellNet


@dataclass(frozen=True)
class StartingModel:
    """A trained network to train on, its config, and what it was (recorded in the new model's training record)."""

    net: CellNet
    config: ModelConfig
    source: str  # "default" or the file given
    sha256: str

    def record(self) -> dict:
        return dict(model=self.source, sha256=self.sha256, threshold=self.config.threshold)


def load_start(spec: str | Path) -> StartingModel:
    """`default` (the built-in model), a model.pt, or an .onnx file exported by clarity-fast with its planar fp32
    graph (the default export), whose weights are turned back into a CellNet."""
    if Path(spec).suffix.lower() == ".pt":
        from clarity_fast.model.store import load_model

        net, config = load_model(Path(spec))
        return StartingModel(net=net, config=config, source=str(spec), sha256=model_digest(Path(spec)))
    path = resolve_model(spec)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    net, config = _from_onnx(path)
    return StartingModel(net=net, config=config, source=str(spec), sha256=model_digest(path))


def _from_onnx(path: Path) -> tuple[CellNet, ModelConfig]:
    import onnx
    from onnx import numpy_helper

    from clarity_fast.export.planar import cellnet_from_planar

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises protobuf's DecodeError and others for a file that is not ONNX
        raise ModelError(f"{path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from exc
    metadata = {p.key: p.value for p in model.metadata_props}
    config = config_from_metadata(metadata, source=path)
    try:
        graph = json.loads(metadata.get(EXPORT_KEY, "{}"))
    except ValueError as exc:
        raise ModelError(f"{path}: unreadable clarity-fast export metadata ({exc})") from exc
    graph = graph if isinstance(graph, dict) else {}
    if not graph.get("planar") or graph.get("fp16"):
        kind = "an fp16" if graph.get("fp16") else "a 3d"
        raise ModelError(f"{path}: {kind} graph; train on from the model.pt it was exported from, or from a default (planar, fp32) export")
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    try:
        return cellnet_from_planar(weights, config=config.network), config
    except ValueError as exc:
        raise ModelError(f"{path}: {exc}") from exc
