"""Reading a clarity-fast .onnx file: its config from the metadata and the checks that it fits it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from clarity_fast.errors import ModelError
from clarity_fast.model.config import NORMALISATION, ModelConfig

CONFIG_KEY = "clarity_fast.config"  # the exporter writes this key (export.to_onnx)


def model_digest(path: Path) -> str:
    """The SHA-256 of a model file: what tells two models apart where a name would not (a model retrained into the
    same file) in a checkpoint's fingerprint, a worker's sessions and TensorRT's engine cache."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_config(session, *, source: Path) -> ModelConfig:
    """The ModelConfig stored in a loaded session's metadata; checks that the graph takes its patch size."""
    config = config_from_metadata(session.get_modelmeta().custom_metadata_map, source=source)
    p = config.network.patch
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or list(inputs[0].shape[1:]) != [1, p, p, p]:
        shape = [i.shape for i in inputs]
        raise ModelError(f"{source}: the graph takes {shape}, but its metadata says (N, 1, {p}, {p}, {p}) patches")
    if isinstance(inputs[0].shape[0], int) or inputs[0].type != "tensor(float)":
        raise ModelError(
            f"{source}: the graph takes {inputs[0].type} patches in batches of {inputs[0].shape[0]}; detect needs float32 "
            "patches in batches of any size (export it with `clarity-fast export --onnx`)"
        )
    if len(outputs) != 1 or len(outputs[0].shape) != 1:
        raise ModelError(f"{source}: the graph gives {[o.shape for o in outputs]}; detect needs one logit per patch")
    return config


def config_from_metadata(metadata: dict[str, str], *, source: Path) -> ModelConfig:
    """The ModelConfig in an ONNX model's metadata (detect's session, or fine-tuning's starting model), checked to
    be one this version can cut patches for."""
    if CONFIG_KEY not in metadata:
        raise ModelError(f"{source}: an ONNX model without clarity-fast metadata (export it with `clarity-fast export --onnx`)")
    try:
        config = ModelConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelError(f"{source}: unreadable clarity-fast metadata ({exc})") from exc
    p = config.network.patch
    if not isinstance(p, int) or isinstance(p, bool):
        raise ModelError(f"{source}: unreadable clarity-fast metadata (patch size {p!r} is not a whole number)")
    if config.normalisation != NORMALISATION:
        raise ModelError(f"{source}: patches normalised by {config.normalisation!r}; this version cuts {NORMALISATION!r} patches only")
    return config


DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "default.onnx"


def resolve_model(spec: str | Path) -> Path:
    """`default` -> the model shipped in the package; otherwise a path to an exported .onnx file."""
    if str(spec) == "default":
        if not DEFAULT_MODEL.is_file():
            raise ModelError(f"the built-in model is missing from this installation ({DEFAULT_MODEL}); pass --model M.onnx")
        return DEFAULT_MODEL
    path = Path(spec)
    if path.suffix == ".pt":
        raise ModelError(f"{path} is a PyTorch model; export it first: clarity-fast export --onnx {path}")
    return path
