"""Physical scale: voxel sizes and cell diameters in µm, and the conversions to voxels, in one place."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

from clarity_fast.errors import InputError

VoxelSize = tuple[float, float, float]  # (z, y, x) µm
log = logging.getLogger("clarity_fast")


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
        raise InputError(f"{name} must be Z,Y,X {'whole ' if integer else ''}numbers, got {text!r}") from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"{name} must be positive, finite numbers, got {text!r}")
    return values


def parse_positive(text: str, *, name: str) -> float:
    """Parse one positive, finite number (a cell diameter in µm, say)."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise InputError(f"{name} must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a positive, finite number, got {text!r}")
    return value


# A cell's diameter in voxels at the scale the CNN works at: a 12³ patch then spans 4 cell diameters in z and
# 2 in y and x, and every dataset, whatever its voxel size, is resampled to look the same to the network.
WORKING_CELL_VOXELS = (3.0, 6.0, 6.0)


def snap_factors(factors: Iterable[float]) -> tuple[float, float, float]:
    """Zoom factors within 1% of 1 become exactly 1: no resampling where it would only blur."""
    return tuple(1.0 if abs(f - 1.0) < 0.01 else float(f) for f in factors)


# A stack whose cells span more than this many times its planes is refused (Scale.check_fits): a slip of units in
# --voxel-size's z, mostly; cells that long show no curvature along z in it, so nothing would be found.
Z_SPAN_LIMIT = 4
Z_SPAN_MAX = 500  # ... or this many planes, however deep the stack: a 30 µm cell at 0.06 µm planes, far finer than any microscope's


@dataclass(frozen=True)
class Scale:
    """A voxel size and a cell diameter, both in µm: everything size-dependent derives from these."""

    voxel_size: VoxelSize
    cell_diameter: float

    def __post_init__(self) -> None:
        if len(self.voxel_size) != 3 or not all(0 < v < math.inf for v in self.voxel_size):
            raise InputError(f"voxel size must be three positive, finite numbers (µm), got {self.voxel_size}")
        if not 0 < self.cell_diameter < math.inf:
            raise InputError(f"cell diameter must be a positive, finite number (µm), got {self.cell_diameter}")
        finest = min(self.voxel_size[1:])
        if self.cell_diameter < finest:  # a cell inside one pixel has no shape to find; usually a unit slip
            raise InputError(
                f"a cell diameter of {self.cell_diameter:g} µm is less than one voxel across (voxel {finest:g} µm in y and x), "
                "too small to find; check --voxel-size and --cell-diameter (both in µm)"
            )

    def check_fits(self, shape: tuple[int, int, int], *, source: object) -> None:
        """Refuse a volume whose planes are narrower than one cell, or a stack of planes a small part of one cell's
        length: nothing can be found there (the prefilter asks a cell to curve down along every axis of a stack), and
        the prefilter's neighbourhoods, sized by the cell, might not fit in memory (a voxel size given in mm, say)."""
        dz, dy, dx = self.cell_diameter_voxels
        if dy > shape[1] or dx > shape[2]:
            raise InputError(
                f"{source}: a cell of {self.cell_diameter:g} µm is {dy:.0f}×{dx:.0f} voxels across at voxel size "
                f"{self.voxel_size[1]:g}×{self.voxel_size[2]:g} µm, wider than the planes ({shape[1]}×{shape[2]} voxels); "
                "check --voxel-size and --cell-diameter (both in µm)"
            )
        if shape[0] > 1 and dz > min(Z_SPAN_LIMIT * shape[0], Z_SPAN_MAX):
            raise InputError(
                f"{source}: a cell of {self.cell_diameter:g} µm spans {dz:.0f} planes at {self.voxel_size[0]:g} µm per plane, "
                f"more than {min(Z_SPAN_LIMIT * shape[0], Z_SPAN_MAX)} (the lesser of {Z_SPAN_LIMIT}× the volume's {shape[0]} planes and "
                f"{Z_SPAN_MAX}); check --voxel-size (Z first, in µm), or give one plane, which is searched in y and x only"
            )

    @property
    def cell_diameter_voxels(self) -> tuple[float, float, float]:
        """The cell diameter along (z, y, x) in voxels."""
        return tuple(self.cell_diameter / v for v in self.voxel_size)

    @property
    def cell_radius_voxels(self) -> tuple[float, float, float]:
        return tuple(d / 2 for d in self.cell_diameter_voxels)

    @property
    def merge_radius_voxels(self) -> tuple[float, float, float]:
        """Detections closer than this (per axis) are one cell: MERGE_DIAMETERS of a diameter."""
        return tuple(MERGE_DIAMETERS * d for d in self.cell_diameter_voxels)

    @property
    def working(self) -> Scale:
        """The scale models see: voxels sized so that a cell spans WORKING_CELL_VOXELS (z, y, x)."""
        return Scale(voxel_size=tuple(self.cell_diameter / n for n in WORKING_CELL_VOXELS), cell_diameter=self.cell_diameter)

    @property
    def to_working(self) -> tuple[float, float, float]:
        """Zoom factors from this scale's voxels to the working scale's (1 where they already agree)."""
        factors = [v / w for v, w in zip(self.voxel_size, self.working.voxel_size)]
        return snap_factors(factors)


def resolve_voxel_size(
    *, from_file: VoxelSize | None, from_user: VoxelSize | None, source: object, given_as: str = "--voxel-size"
) -> VoxelSize:
    """The user's voxel size (`given_as`: the option, or a manifest's column) wins, as metadata is often a writer's
    default; without either, fail clearly."""
    if from_user is not None:
        if from_file is not None and not all(math.isclose(a, b, rel_tol=1e-3) for a, b in zip(from_file, from_user)):
            log.warning("%s: file says voxel size %s µm; using %s %s", source, from_file, given_as, from_user)
        return tuple(from_user)
    if from_file is not None:
        return tuple(from_file)
    raise InputError(f"{source}: no voxel size is recorded in it; pass {given_as} Z,Y,X (µm)")


# Two detections closer than this many cell diameters are one cell. Touching cells of the stated size sit a
# full diameter apart; one elongated cell (up to about 1.5 times as long as wide) can show two maxima this far
# apart. Merging at half a diameter left such pairs as duplicates, most of the false positives on held-out
# simulated brains (built-in model: F1 0.874 -> 0.909; delivr_cfos 0.539 -> 0.540; benchmarks/detection_geometry.py).
MERGE_DIAMETERS = 0.75

# Prefilter geometry, as fractions of the cell radius along each axis (chosen on simulated and real data,
# see benchmarks/prefilter_quality.py).
SIGMA_PER_RADIUS = 0.5  # Gaussian scale of the curvature filter
# Two candidates closer than SEPARATION_PER_RADIUS are one. One radius instead of half: 20% fewer patches to score
# on dense simulated brains, F1 0.911 against 0.909 held out (delivr_cfos 0.549 against 0.540; same benchmark).
SEPARATION_PER_RADIUS = 1.0
MIN_SEPARATION_VOXELS = 1.5  # ... and candidates are never closer than this, so a cell one plane thick gives one candidate
NOISE_WINDOW_PER_RADIUS = 3.0  # half-width of the window that measures the local noise
MIN_SIGMA_VOXELS = 0.5  # below this a sampled Gaussian stops being one


def check_noise_threshold(value: float, *, name: str) -> None:
    """A prefilter threshold is a positive, finite number of noise units: at 0 or below, every wrinkle of flat
    noise is a candidate."""
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a positive, finite number of noise units, got {value}")


@dataclass(frozen=True)
class PrefilterSettings:
    """Everything the candidate prefilter needs; derived sizes are in voxels."""

    scale: Scale
    threshold: float = 3.0  # in units of the local noise of the response
    slab_depth: int = 32

    def __post_init__(self) -> None:
        check_noise_threshold(self.threshold, name="the prefilter threshold")
        if self.slab_depth < 1:
            raise InputError(f"--slab-depth must be >= 1, got {self.slab_depth}")

    @property
    def sigma(self) -> tuple[float, float, float]:
        return tuple(max(SIGMA_PER_RADIUS * r, MIN_SIGMA_VOXELS) for r in self.scale.cell_radius_voxels)

    @property
    def min_separation(self) -> tuple[float, float, float]:
        return tuple(max(SEPARATION_PER_RADIUS * r, MIN_SEPARATION_VOXELS) for r in self.scale.cell_radius_voxels)

    @property
    def noise_half_width(self) -> tuple[int, int, int]:
        return tuple(max(int(round(NOISE_WINDOW_PER_RADIUS * r)), 1) for r in self.scale.cell_radius_voxels)
