"""What a trained model carries besides its weights: everything detection needs to use it correctly.

Plain data, no torch: detection reads it from an ONNX file's metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from clarity_fast import __version__
from clarity_fast.settings import Scale, VoxelSize

NORMALISATION = "zscore"  # per-patch zero mean, unit std (kernels.gather)


@dataclass(frozen=True)
class NetworkConfig:
    """The study's design (conv 5³, max-pool, two conv 3³, a dense layer, dropout), with a width knob."""

    patch: int = 12
    width: int = 32
    hidden: int = 150
    dropout: float = 0.3
    batch_norm: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def multiply_accumulates(config: NetworkConfig) -> int:
    """Multiply-accumulates per patch (convolutions and dense layers)."""
    w, p = config.width, config.patch
    c1 = (p - 4) ** 3
    pooled = (p - 4) // 2
    convs = c1 * w * 125 + 2 * pooled**3 * w * w * 27
    dense = w * pooled**3 * config.hidden + config.hidden
    return convs + dense


@dataclass(frozen=True)
class ModelConfig:
    network: NetworkConfig
    voxel_size: VoxelSize  # the scale the model was trained at ...
    cell_diameter: float  # ... cells of this diameter (µm) at this voxel size
    threshold: float  # cell probability above which a candidate is a detection (chosen on validation data)
    prefilter_threshold: float
    normalisation: str = NORMALISATION
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
        return ModelConfig(**fields)
