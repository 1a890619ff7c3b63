"""Physical scale: voxel sizes and cell diameters in µm, and the conversions to voxels, in one place."""

from __future__ import annotations

import math
from dataclasses import dataclass

from clarity_fast.errors import InputError

VoxelSize = tuple[float, float, float]


def parse_triple(text: str, *, name: str, integer: bool = False) -> tuple:
    """Parse 'Z,Y,X' (or one number for all three) into a tuple of positive numbers."""
    parts = [p.strip() for p in str(text).replace("x", ",").split(",") if p.strip()]
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise InputError(f"{name} must be Z,Y,X (three numbers), got {text!r}")
    try:
        values = tuple(int(p) if integer else float(p) for p in parts)
    except ValueError:
        raise InputError(f"{name} must be Z,Y,X numbers, got {text!r}") from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"{name} must be positive, got {text!r}")
    return values


@dataclass(frozen=True)
class Scale:
    """A voxel size and a cell diameter, both in µm: everything size-dependent derives from these."""

    voxel_size: VoxelSize
    cell_diameter: float

    def __post_init__(self) -> None:
        if len(self.voxel_size) != 3 or not all(v > 0 for v in self.voxel_size):
            raise InputError(f"voxel size must be three positive numbers (µm), got {self.voxel_size}")
        if not self.cell_diameter > 0:
            raise InputError(f"cell diameter must be positive (µm), got {self.cell_diameter}")

    @property
    def cell_diameter_voxels(self) -> tuple[float, float, float]:
        """The cell diameter along (z, y, x) in voxels."""
        return tuple(self.cell_diameter / v for v in self.voxel_size)

    @property
    def cell_radius_voxels(self) -> tuple[float, float, float]:
        return tuple(d / 2 for d in self.cell_diameter_voxels)
