"""Stage 1: candidate centres from the compiled prefilter, streamed over a volume in z-slabs.

Each slab is read with enough neighbouring planes (or reflections at the volume's ends) that its
response, and so its local maxima, equal those of the whole volume exactly: a candidate belongs to
the slab whose planes hold it, so slabs never disagree at their seams.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from clarity_fast.io.volumes import VolumeReader
from clarity_fast.kernels.filters import blob_snr, z_halo
from clarity_fast.kernels.maxima import footprint_offsets, local_maxima
from clarity_fast.settings import PrefilterSettings


@dataclass(frozen=True)
class Candidates:
    """Candidate centres (voxels, int) and their prefilter response (in noise units), in z, y, x order."""

    zyx: np.ndarray
    response: np.ndarray

    def __len__(self) -> int:
        return len(self.zyx)

    @staticmethod
    def concat(parts: list[Candidates]) -> Candidates:
        if not parts:
            return Candidates(np.empty((0, 3), dtype=np.int64), np.empty(0, dtype=np.float32))
        return Candidates(np.concatenate([p.zyx for p in parts]), np.concatenate([p.response for p in parts]))


@dataclass(frozen=True)
class Slab:
    """The candidates of planes z0..z1."""

    z0: int
    z1: int
    candidates: Candidates


def read_planes(reader: VolumeReader, z0: int, z1: int) -> np.ndarray:
    """Planes z0..z1 of the volume, where those outside it are reflections (scipy 'reflect')."""
    depth = reader.shape[0]
    lo, hi = max(z0, 0), min(z1, depth)
    planes = reader.read_slab(lo, hi)
    if lo == z0 and hi == z1:
        return planes
    return np.pad(planes, ((lo - z0, z1 - hi), (0, 0), (0, 0)), mode="symmetric")


def iter_slabs(reader: VolumeReader, *, settings: PrefilterSettings) -> Iterator[Slab]:
    """Candidates slab by slab, in z order."""
    depth = reader.shape[0]
    offsets = footprint_offsets(settings.min_separation)
    reach = int(np.abs(offsets[:, 0]).max()) if len(offsets) else 0
    pad = z_halo(sigma_z=settings.sigma[0], noise_half_width_z=settings.noise_half_width[0])
    floor = 0.5 if np.issubdtype(reader.dtype, np.integer) else 1e-6
    planar = depth == 1  # a single plane: a 2D response, no halo
    halo = 0 if planar else pad
    for z0 in range(0, depth, settings.slab_depth):
        z1 = min(z0 + settings.slab_depth, depth)
        r0, r1 = max(z0 - reach, 0), min(z1 + reach, depth)
        snr = blob_snr(
            read_planes(reader, r0 - halo, r1 + halo),
            pad=halo,
            sigma=settings.sigma,
            noise_half_width=settings.noise_half_width,
            noise_floor=floor,
            planar=planar,
        )
        coords, values = local_maxima(snr, offsets=offsets, threshold=settings.threshold, z_range=(z0 - r0, z1 - r0))
        coords[:, 0] += r0
        yield Slab(z0, z1, Candidates(coords, values))


def find_candidates(reader: VolumeReader, *, settings: PrefilterSettings) -> Candidates:
    """All candidates of a volume (streamed: memory depends on the slab depth, not the volume depth)."""
    return Candidates.concat([slab.candidates for slab in iter_slabs(reader, settings=settings)])
