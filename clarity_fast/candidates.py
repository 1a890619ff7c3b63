"""Stage 1: candidate centres from the compiled prefilter, streamed over a volume in z-slabs.

Each slab is read with enough neighbouring planes (reflected at the volume's ends, by a map of planes
rather than a padded copy) that its response, and so its local maxima, equal those of the whole volume
exactly: a candidate belongs to the slab whose planes hold it, so slabs never disagree at their seams.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from clarity_fast.errors import InputError
from clarity_fast.io.volumes import VolumeReader
from clarity_fast.kernels.filters import Scratch, blob_snr, reflect, z_halo
from clarity_fast.kernels.maxima import footprint_offsets, local_maxima
from clarity_fast.messages import listed
from clarity_fast.noise_correlation import NoiseModel, volume_noise
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


# The least noise the prefilter's noise map may read (it divides by it): half a count for integer data, where
# rounding hides anything smaller; for float data, which come in any units (0-1, photons, a deconvolution's), a
# millionth of the volume's own pixel noise, so that scaling a float volume changes nothing (a fixed 1e-6 turned
# every response of a volume in units of 1e-6 into noise).
INTEGER_NOISE_FLOOR = 0.5
FLOAT_NOISE_FLOOR = 1e-6


def float_noise_floor(noise: NoiseModel) -> float:
    """The noise map's floor for a float volume with this noise (the smallest positive float32 where none was
    measured: a flat window is linear along x, so its response is at most 0 and never a candidate)."""
    return max(FLOAT_NOISE_FLOOR * noise.level, float(np.finfo(np.float32).tiny))


def noise_gain(settings: PrefilterSettings, *, noise: NoiseModel, planar: bool) -> float:
    """What the prefilter scales its noise units by for a volume with this noise (a single plane: y and x only)."""
    return noise.gain(sigma=settings.sigma[1:] if planar else settings.sigma)


def slab_ranges(depth: int, *, slab_depth: int) -> list[tuple[int, int]]:
    """The (z0, z1) plane ranges of the slabs a volume `depth` planes deep is cut into, in z order."""
    return [(z0, min(z0 + slab_depth, depth)) for z0 in range(0, depth, slab_depth)]


def all_finite(values: np.ndarray) -> bool:
    """Whether no value is NaN or infinite, in two reductions and no mask (NaN wins min and max)."""
    return bool(np.isfinite(values.min()) and np.isfinite(values.max()))


class SlabPrefilter:
    """The prefilter of one volume, slab by slab: which planes a slab needs, and its candidates from them. Its
    work arrays are kept from slab to slab, so one instance serves one thread."""

    def __init__(
        self, *, settings: PrefilterSettings, shape: tuple[int, int, int], dtype: np.dtype, noise: NoiseModel, source: object = "volume"
    ) -> None:
        """noise: the volume's, measured once (noise_correlation.volume_noise); source: what error messages name."""
        self.settings = settings
        self.source = source
        self.exact = np.issubdtype(dtype, np.integer)  # no NaN or infinity to look for
        self.depth = shape[0]
        self.offsets = footprint_offsets(settings.min_separation)
        self.reach = int(np.abs(self.offsets[:, 0]).max()) if len(self.offsets) else 0
        self.planar = self.depth == 1  # a single plane: a 2D response, no halo
        pad = z_halo(sigma_z=settings.sigma[0], noise_half_width_z=settings.noise_half_width[0])
        self.halo = 0 if self.planar else pad
        self.floor = INTEGER_NOISE_FLOOR if self.exact else float_noise_floor(noise)
        self.noise_gain = noise_gain(settings, noise=noise, planar=self.planar)
        self.scratch = Scratch()
        self.most_planes = min(settings.slab_depth + 2 * self.reach, self.depth)  # response planes a slab can need

    def release(self) -> None:
        """Drop the kept work arrays (after a volume's last slab: the later stages need the memory more)."""
        self.scratch = Scratch()

    def _stack(self, z0: int, z1: int) -> np.ndarray:
        """The volume's plane behind each plane of the stack the response of planes z0..z1 (and their
        neighbours within reach) is computed from: a halo each side, reflected at the volume's ends."""
        a, b = max(z0 - self.reach, 0) - self.halo, min(z1 + self.reach, self.depth) + self.halo
        return np.asarray([reflect(p, self.depth) for p in range(a, b)], dtype=np.int64)

    def planes_needed(self, z0: int, z1: int) -> tuple[int, int]:
        """The volume's planes [a, b) the candidates of planes z0..z1 depend on."""
        stack = self._stack(z0, z1)
        return int(stack.min()), int(stack.max()) + 1

    def run(self, planes: np.ndarray, *, first: int, z0: int, z1: int) -> Candidates:
        """Candidates of planes z0..z1 from `planes`, which hold planes first.. and cover planes_needed(z0, z1)."""
        if not self.exact and not all_finite(planes):
            bad = first + np.flatnonzero(~np.isfinite(planes).all(axis=(1, 2)))
            named = listed(bad, shown=5)
            raise InputError(
                f"{self.source}: NaN or infinite values in plane{'s' if len(bad) > 1 else ''} {named}; replace them first "
                "(a NaN spreads along its rows through the noise map's running sums and silently removes cells)"
            )
        stack = self._stack(z0, z1)
        response = self.scratch.array("response", (self.most_planes, *planes.shape[1:]))[: len(stack) - 2 * self.halo]
        snr = blob_snr(
            planes,
            stack=stack - first,
            pad=self.halo,
            sigma=self.settings.sigma,
            noise_half_width=self.settings.noise_half_width,
            noise_floor=self.floor,
            planar=self.planar,
            noise_gain=self.noise_gain,
            out=response,
            scratch=self.scratch,
        )
        r0 = max(z0 - self.reach, 0)  # the volume's plane behind the response's first plane
        coords, values = local_maxima(snr, offsets=self.offsets, threshold=self.settings.threshold, z_range=(z0 - r0, z1 - r0))
        coords[:, 0] += r0
        return Candidates(coords, values)


def prefilter_reach(settings: PrefilterSettings) -> tuple[int, int, int]:
    """Voxels each side, per axis, that the candidates at a voxel depend on: the filters' halo (as along z for a
    slab; along x the noise window's reach one more, as the noise proxy differences neighbours along x) and the
    neighbourhood a maximum is compared with."""
    offsets = footprint_offsets(settings.min_separation)
    reach = np.abs(offsets).max(axis=0) if len(offsets) else np.zeros(3, np.int64)
    proxy = (0, 0, 1)  # abs_second_difference_x reads x - 1 and x + 1
    return tuple(
        z_halo(sigma_z=s, noise_half_width_z=h + d) + int(r) for s, h, d, r in zip(settings.sigma, settings.noise_half_width, proxy, reach)
    )


def iter_slabs(
    reader: VolumeReader, *, settings: PrefilterSettings, noise: NoiseModel | None = None
) -> Iterator[Slab]:
    """Candidates slab by slab, in z order; noise None: measured from the volume."""
    noise = volume_noise(reader) if noise is None else noise
    prefilter = SlabPrefilter(settings=settings, shape=reader.shape, dtype=reader.dtype, noise=noise, source=reader.path)
    for z0, z1 in slab_ranges(reader.shape[0], slab_depth=settings.slab_depth):
        a, b = prefilter.planes_needed(z0, z1)
        yield Slab(z0, z1, prefilter.run(reader.read_slab(a, b), first=a, z0=z0, z1=z1))


def find_candidates(
    reader: VolumeReader, *, settings: PrefilterSettings, noise: NoiseModel | None = None
) -> Candidates:
    """All candidates of a volume (streamed: memory depends on the slab depth, not the volume depth)."""
    return Candidates.concat([slab.candidates for slab in iter_slabs(reader, settings=settings, noise=noise)])
