"""A simulated brain: scene + microscope, produced slab by slab so any size fits in memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from clarity_fast.errors import InputError
from clarity_fast.export.providers import physical_memory
from clarity_fast.io.points import Points
from clarity_fast.settings import Scale
from clarity_fast.simulate.imaging import Microscope, sample_imaging
from clarity_fast.simulate.render import render_foreground
from clarity_fast.simulate.scene import CELLS_PER_MM3, MAX_PROCESSES, SIZE_SPREAD, Scene, make_scene

# Cells are spaced by the nominal diameter: far wider spreads would overlap neighbours and shrink some below a voxel.
MAX_SIZE_SPREAD = 0.5
MAX_DENSITY = 1e6  # somata per mm³: about what 8 µm cells at their spacing can hold; beyond, placement only wastes memory
RENDER_DEPTH = 8  # planes per rendered slab; fixed, so the noise (seeded per slab) never depends on memory
RENDER_BYTES_PER_PLANE_VOXEL = 500  # peak memory per voxel of a plane while rendering (peak RSS 116 MB at 256², 212 MB at 512², the same at 4x the depth: slabs stream)


@dataclass(frozen=True)
class SimulationSettings:
    """Everything that fixes a simulated brain: the same settings give the same volume, bit for bit."""

    shape: tuple[int, int, int]
    scale: Scale = field(default_factory=lambda: Scale(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0))
    difficulty: float = 0.5
    seed: int = 0
    size_spread: float = SIZE_SPREAD  # sd of the log of each soma's size: wider for a population of mixed sizes
    density: float = CELLS_PER_MM3  # labelled somata per mm³ on average (cell-sized clutter scales with it): lower for sparse labels
    processes: int = 0  # dendrites leaving each soma, 0 to this many (a cytoplasmic or membrane label); 0: a stub on some

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise InputError(f"shape must be three positive sizes Z,Y,X, got {self.shape}")
        if not 0.0 <= self.difficulty <= 1.0:
            raise InputError(f"difficulty must be between 0 and 1, got {self.difficulty}")
        if self.seed < 0:
            raise InputError(f"seed must be >= 0, got {self.seed}")
        if not 0.0 <= self.size_spread <= MAX_SIZE_SPREAD:
            raise InputError(f"size spread (sd of log soma size) must be between 0 and {MAX_SIZE_SPREAD}, got {self.size_spread}")
        if not 0 <= self.processes <= MAX_PROCESSES:
            raise InputError(f"processes per soma must be between 0 and {MAX_PROCESSES}, got {self.processes}")
        if not 0 < self.density <= MAX_DENSITY:
            raise InputError(f"density must be > 0 and at most {MAX_DENSITY:.0f} cells per mm³, got {self.density}")
        needed = RENDER_BYTES_PER_PLANE_VOXEL * self.shape[1] * self.shape[2]
        if (physical := physical_memory()) is not None and needed > physical / 2:
            raise InputError(
                f"planes of {self.shape[1]}×{self.shape[2]} voxels need about {needed / 2**30:.0f} GB to render, more than half "
                f"this machine's {physical / 2**30:.0f} GB; simulate smaller planes"
            )


class SimulatedBrain:
    """One brain: its ground-truth cells, and its volume delivered in z-slabs of RENDER_DEPTH planes."""

    def __init__(self, settings: SimulationSettings) -> None:
        self.settings = settings
        seeds = np.random.SeedSequence(settings.seed)
        scene_seed, imaging_seed, self._noise_seed = seeds.spawn(3)
        self.scene: Scene = make_scene(
            shape=settings.shape,
            scale=settings.scale,
            difficulty=settings.difficulty,
            size_spread=settings.size_spread,
            density=settings.density,
            processes=settings.processes,
            rng=np.random.default_rng(scene_seed),
        )
        imaging_rng = np.random.default_rng(imaging_seed)
        self.imaging = sample_imaging(difficulty=settings.difficulty, rng=imaging_rng)
        self._microscope = Microscope(
            imaging=self.imaging, shape=settings.shape, voxel_size=settings.scale.voxel_size, rng=imaging_rng
        )

    @property
    def cells(self) -> Points:
        """Ground-truth centres in voxels (z, y, x), 0-based."""
        zyx = self.scene.cells.centre / np.asarray(self.settings.scale.voxel_size)
        return Points(zyx=zyx)

    @property
    def n_slabs(self) -> int:
        return -(-self.settings.shape[0] // RENDER_DEPTH)

    def slab(self, index: int) -> np.ndarray:
        """Planes [index * RENDER_DEPTH, ...) as uint16 counts."""
        depth, *yx = self.settings.shape
        z0 = index * RENDER_DEPTH
        z1 = min(z0 + RENDER_DEPTH, depth)
        halo = self._microscope.halo
        foreground = render_foreground(
            self.scene, voxel_size=self.settings.scale.voxel_size, shape_yx=tuple(yx), z0=z0 - halo, z1=z1 + halo
        )
        seed = np.random.SeedSequence(self._noise_seed.entropy, spawn_key=(*self._noise_seed.spawn_key, index))
        rng = np.random.default_rng(seed)
        return self._microscope.expose(foreground, z0=z0, z1=z1, rng=rng)

    def slabs(self) -> Iterator[np.ndarray]:
        for index in range(self.n_slabs):
            yield self.slab(index)

    def volume(self) -> np.ndarray:
        """The whole volume in memory: for small shapes (tests, demos)."""
        return np.concatenate(list(self.slabs()), axis=0)
