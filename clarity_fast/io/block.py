"""A block of a volume read as a volume of its own, with the context detection in it depends on around it: detection
and training on part of a whole brain, in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clarity_fast.candidates import prefilter_reach
from clarity_fast.io.volumes import VolumeReader
from clarity_fast.kernels.gather import Grid, working_grid
from clarity_fast.settings import PrefilterSettings

READ_PLANES = 16  # planes of the whole volume read at a time: a whole brain's planes are wide
BLANK_SAMPLES = 5  # planes, evenly spaced, read to tell a blank volume from a blank block of a volume with an image


class BlockReader(VolumeReader):
    """The voxels of `bounds` ((start, end) per axis, end exclusive) of `whole`, plane 0 being plane bounds[0][0].

    Whole planes are read (READ_PLANES at a time) and cut, so a reader that changes planes as it reads them (odd planes
    levelled) treats them as it does for the whole volume. Closing it leaves `whole` open: its owner closes it."""

    def __init__(self, whole: VolumeReader, *, bounds: tuple[tuple[int, int], ...], name: str) -> None:
        shape = tuple(hi - lo for lo, hi in bounds)
        super().__init__(Path(f"{whole.path}[{name}]"), shape, whole.dtype, whole.voxel_size)
        self.whole = whole
        self.bounds = bounds

    @property
    def origin(self) -> np.ndarray:
        """The block's first voxel in the whole volume's voxels: added to a position in the block, it gives the whole's."""
        return np.array([lo for lo, _ in self.bounds])

    def _read(self, z0: int, z1: int) -> np.ndarray:
        first, (rows, columns) = self.bounds[0][0], self.bounds[1:]
        out = np.empty((z1 - z0, *self.shape[1:]), self.dtype)
        for a in range(z0, z1, READ_PLANES):
            b = min(a + READ_PLANES, z1)
            out[a - z0 : b - z0] = self.whole.read_slab(first + a, first + b)[:, slice(*rows), slice(*columns)]
        return out

    def blank(self, value: float) -> str | None:
        """A block of background alone lies in a blank volume only if BLANK_SAMPLES planes through the volume hold
        `value` alone too (a block's run should not read every plane to say so)."""
        for z in np.unique(np.linspace(0, self.whole.shape[0] - 1, BLANK_SAMPLES).astype(int)):
            plane = self.whole.read_slab(int(z), int(z) + 1)
            if plane.min() != value or plane.max() != value:
                return None
        return f"{self.whole.path}: every voxel of the region and of the planes sampled through the volume"

    def working_grid(self, factors: tuple[float, float, float]) -> Grid:
        """The whole volume's working grid cut to the block: its patches sample the points the whole volume's do."""
        return working_grid(self.whole.shape, factors=factors, block=self.bounds)

    def odd_planes(self, z0: int, z1: int) -> dict[int, bool]:
        first = self.bounds[0][0]
        return {k - first: flat for k, flat in self.whole.odd_planes(first + z0, first + z1).items()}


def context_reach(
    prefilter: PrefilterSettings, *, factors: tuple[float, float, float], patch: int, jitter: np.ndarray | None = None
) -> np.ndarray:
    """Voxels of the file, per axis, each side of a block that detection in it depends on: its candidates' (the
    `prefilter`'s reach) and their patches' (`patch` voxels on the grid zoomed by `factors` from the file's, centres
    moved by up to `jitter` grid voxels in training; +1: the interpolation's neighbour)."""
    moved = np.zeros(3) if jitter is None else np.asarray(jitter)
    patch_reach = np.ceil((patch / 2 + moved + 1) / np.asarray(factors))
    return np.maximum(np.asarray(prefilter_reach(prefilter)), patch_reach).astype(int)


def grown(bounds: tuple[tuple[int, int], ...], *, shape: tuple[int, ...], reach: np.ndarray) -> tuple[tuple[int, int], ...]:
    """The block `bounds` grown by `reach` voxels each side, inside a volume of `shape`."""
    return tuple((max(lo - int(r), 0), min(hi + int(r), n)) for (lo, hi), r, n in zip(bounds, reach, shape))
