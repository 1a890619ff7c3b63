"""What a trained model carries besides its weights: everything detection needs to use it correctly.

Plain data, no torch: detection reads it from an ONNX file's metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from clarity_fast import __version__
from clarity_fast.settings import Scale, VoxelSize

NORMALISATION = "zscore"  # per-patch zero mean, unit std (kernels.gather)
# Most training epochs: held-out F1 on simulated brains rose from 0.83 (30 epochs, 3 folds) to 0.86 (100, the same
# 3 folds); on one of them from 0.82 to 0.88 at 200 (benchmarks/results/training_ablation_raw).
DEFAULT_EPOCHS = 200


@dataclass(frozen=True)
class NetworkConfig:
    """The study's design (conv 5³, max-pool, two conv 3³, a dense layer, dropout), with a width knob."""

    patch: int = 12
    width: int = 32
    hidden: int = 150
    dropout: float = 0.3
    batch_norm: bool = True


def multiply_accumulates(config: NetworkConfig) -> int:
    """Multiply-accumulates per patch (convolutions and dense layers)."""
    w, p = config.width, config.patch
    c1 = (p - 4) ** 3
    pooled = (p - 4) // 2
    convs = c1 * w * 125 + 2 * pooled**3 * w * w * 27
    dense = w * pooled**3 * config.hidden + config.hidden
    return convs + dense


RESPONSE_FLOOR = 1e-3  # responses are above the prefilter threshold; the floor only guards the logarithm


def log_response(response: np.ndarray) -> np.ndarray:
    """The calibration's second feature: ln of the prefilter response (float64)."""
    return np.log(np.maximum(np.asarray(response, dtype=np.float64), RESPONSE_FLOOR))


@dataclass(frozen=True)
class Calibration:
    """Cell probability from the network's logit and the candidate's prefilter response (in noise units).

    Patches are normalised to their own contrast, so the network judges shape; how far a candidate stands above
    the local noise, which annotators of graded markers (c-Fos) judge by, comes back through the response.
    Fitted on validation candidates; the default is the network's own probability.
    """

    logit_weight: float = 1.0
    response_weight: float = 0.0  # per natural log of the response
    bias: float = 0.0
    # For adapting to a volume's share of cells (volume_share); 0 in models made before it: no adapting.
    share: float = 0.0  # mean probability over all validation candidates: the share they are calibrated at
    reference_share: float = 0.0  # the largest share among the validation volumes, estimated as detect does (EM)

    @property
    def adapts(self) -> bool:
        return 0.0 < self.share < 1.0 and 0.0 < self.reference_share < 1.0

    def probability(self, logits: np.ndarray, response: np.ndarray) -> np.ndarray:
        """sigmoid(logit_weight * logit + response_weight * ln(response) + bias), float32."""
        z = self.logit_weight * np.asarray(logits, dtype=np.float64) + self.bias
        if self.response_weight:
            z = z + self.response_weight * log_response(response)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


@dataclass(frozen=True)
class ModelConfig:
    """What a model carries besides its weights to be used right: its network, the scale it was trained at, its
    threshold and calibration, and its training record."""

    network: NetworkConfig
    voxel_size: VoxelSize  # the scale the model was trained at ...
    cell_diameter: float  # ... cells of this diameter (µm) at this voxel size
    threshold: float  # cell probability above which a candidate is a detection (chosen on validation data)
    prefilter_threshold: float
    normalisation: str = NORMALISATION
    calibration: Calibration = field(default_factory=Calibration)
    training: dict = field(default_factory=dict)  # a summary: data, epochs, validation metrics
    version: str = __version__

    @property
    def scale(self) -> Scale:
        return Scale(voxel_size=self.voxel_size, cell_diameter=self.cell_diameter)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict) -> ModelConfig:
        fields = dict(data)
        fields["network"] = NetworkConfig(**fields["network"])
        fields["voxel_size"] = tuple(fields["voxel_size"])
        fields["calibration"] = Calibration(**fields.get("calibration", {}))  # models saved before it: the identity
        return ModelConfig(**fields)
