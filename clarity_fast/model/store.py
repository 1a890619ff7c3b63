"""model.pt: the state dict and the config as plain data, loadable with torch.load(weights_only=True)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from clarity_fast.errors import ModelError
from clarity_fast.io.atomic import atomic_path
from clarity_fast.model.config import ModelConfig
from clarity_fast.model.network import CellNet


def save_model(path: Path, *, net: CellNet, config: ModelConfig) -> None:
    """Atomically; through a file object, so the archive is not named after the random temporary file and one
    seed's training gives the same bytes every time."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save({"state_dict": net.state_dict(), "config": config.to_dict()}, f)


def load_model(path: Path) -> tuple[CellNet, ModelConfig]:
    """The network (in eval mode) and its config; never unpickles arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        config = ModelConfig.from_dict(data["config"])
        net = CellNet(config.network)
        net.load_state_dict(data["state_dict"])
    except pickle.UnpicklingError as exc:  # its message is torch's advice on weights_only, not about the file
        raise ModelError(f"{path}: not a clarity-fast model file (not PyTorch weights and config)") from exc
    except Exception as exc:  # torch and pickle raise many types for a bad file
        raise ModelError(f"{path}: not a clarity-fast model file ({type(exc).__name__}: {exc})") from exc
    return net.eval(), config


class TorchScorer:
    """A detection.Scorer backed by the PyTorch network (training, cross-validation, export's parity check).
    `batch`: at most this many patches per forward pass (None: all that are given at once)."""

    def __init__(self, net: CellNet, *, batch: int | None = None) -> None:
        self.net = net
        self.batch = batch

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        self.net.eval()  # training switches it back between calls
        step = self.batch or max(len(patches), 1)
        with torch.inference_mode():
            runs = [self.net(torch.from_numpy(patches[i : i + step])).numpy() for i in range(0, max(len(patches), 1), step)]
        return np.concatenate(runs)
