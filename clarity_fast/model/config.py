"""What a trained model carries besides its weights: everything detection needs to use it correctly."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from clarity_fast import __version__
from clarity_fast.model.network import NetworkConfig
from clarity_fast.settings import Scale, VoxelSize

NORMALISATION = "zscore"  # per-patch zero mean, unit std (kernels.gather)


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
