"""Single planes far brighter or dimmer than their neighbours, dead or saturated: levelled as they are read.

A camera drops or saturates a frame; a laser or shutter fails for a plane. One plane twice as bright as its
neighbours makes every texture bump on it curve down along z, so the prefilter proposes a band of false cells
there, and a dead or saturated plane hides the cells of the planes beside it (a simulated brain of 32×128×128: F1
0.920 as simulated, 0.824 with one plane doubled, 0.714 with one saturated; benchmarks/odd_planes.py). So each
plane's level and spread are read as its 20th and 80th percentiles (on a subsample); where they depart from the
median of the plane's and its WINDOW neighbours' on each side (shifted inwards at the volume's ends) by more than
TOLERATED times that median spread, the plane is mapped linearly onto the neighbours' percentiles, and a flat plane
(dead or saturated, even at the background's level) is replaced by the mean of the nearest planes with an image on
either side that are not odd themselves. A running median follows steady trends and steps along z as they are, so only departures of one or
two planes are touched. Milder flicker is left alone: the real light-sheet patches the
built-in model learned from depart by up to 1.84 (flicker, and the content of planes only 100×100 voxels), and
levelling them from 0.3 cost its held-out patches F1 (0.565 -> 0.552), so TOLERATED sits above every volume we
have (simulated brains, the delivr patches, the foreign generator's volumes, cellfinder's crop): not one of their
planes changes. Each
plane's correction depends on the planes around it only, read with the slab, so streamed results stay independent
of the slabs; corrected planes keep the volume's dtype (rounded for integers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from clarity_fast.io.volumes import VolumeReader

if TYPE_CHECKING:
    from clarity_fast.kernels.gather import Grid

WINDOW = 2  # neighbours each side: up to two adjacent odd planes are outvoted (shifted inwards at the ends)
TOLERATED = 2.0  # departures up to this many times the neighbours' spread are left as they are
QUANTILES = (20.0, 80.0)
SAMPLES = 65_536  # about this many voxels per plane for its percentiles
FLAT = 1e-3  # a plane whose spread is under this share of its neighbours' has no image left: dead or saturated
REPORTED = 5  # planes named in a warning each; beyond, one line says the rest are levelled without a word
log = logging.getLogger("clarity_fast")


class LevelledReader(VolumeReader):
    """A volume whose odd planes are levelled with their neighbours as they are read (see the module)."""

    def __init__(self, inner: VolumeReader) -> None:
        super().__init__(inner.path, inner.shape, inner.dtype, inner.voxel_size)
        self.inner = inner
        self.levelled: dict[int, bool] = {}  # planes levelled so far, True where replaced as flat (a slab's halo reads some twice)

    def _read(self, z0: int, z1: int) -> np.ndarray:
        depth, span = self.shape[0], 2 * WINDOW + 1
        if depth < span:  # too few planes to tell an odd one
            return self.inner.read_slab(z0, z1)

        def first(k: int) -> int:
            """The first of the `span` distinct planes plane k is compared with: centred on it, shifted inwards at
            the volume's ends (reflected, two odd end planes would count twice and outvote the rest)."""
            return min(max(k - WINDOW, 0), depth - span)

        a, b = first(z0), first(z1 - 1) + span
        planes = self.inner.read_slab(a, b)
        lo, hi = plane_percentiles(planes)
        out, copied = planes[z0 - a : z1 - a], False
        for k in range(z0, z1):
            window = slice(first(k) - a, first(k) - a + span)
            ref_lo, ref_hi = float(np.median(lo[window])), float(np.median(hi[window]))
            # A flat plane is filled from the nearest plane on each side within WINDOW that is neither flat nor odd
            # itself (a doubled plane beside a dead one would make its fill half again as bright as the rest).
            spread = ref_hi - ref_lo
            image = [j for j in range(first(k), first(k) + span) if hi[j - a] - lo[j - a] > FLAT * spread]
            usual = [j for j in image if max(abs(lo[j - a] - ref_lo), abs(hi[j - a] - ref_hi)) <= TOLERATED * spread]
            source = usual or image
            beside = [j for j in source if j < k][-1:] + [j for j in source if j > k][:1]
            done = levelled(
                out[k - z0], lo=lo[k - a], hi=hi[k - a], ref_lo=ref_lo, ref_hi=ref_hi,
                fill=(lambda: np.mean([planes[j - a] for j in beside], axis=0, dtype=np.float64)) if beside else None,
            )
            if done is None:
                continue
            if not copied:  # never write into the reader's own data (a memory map, say)
                out, copied = out.copy(), True
            mapped, flat = done
            out[k - z0] = _as(mapped, out.dtype)
            self._report(k, flat=flat)
        return out

    def _report(self, plane: int, *, flat: bool) -> None:
        """One warning line per plane levelled, for the first REPORTED of them."""
        if plane in self.levelled:
            return
        self.levelled[plane] = flat
        if len(self.levelled) <= REPORTED:
            what = "flat (dead or saturated): replaced by the mean of the planes beside it" if flat else "far off its neighbours' brightness: levelled with them"
            log.warning("%s: plane %d is %s", self.path, plane, what)
        if len(self.levelled) == REPORTED:
            log.warning("%s: further odd planes are levelled without a warning", self.path)

    def odd_planes(self, z0: int, z1: int) -> dict[int, bool]:
        return {k: flat for k, flat in self.levelled.items() if z0 <= k < z1}

    def working_grid(self, factors: tuple[float, float, float]) -> Grid:
        return self.inner.working_grid(factors)  # where the inner reader samples (a block's, say), levelling changes nothing

    def close(self) -> None:
        self.inner.close()


def plane_percentiles(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each plane's QUANTILES (float64), from about SAMPLES voxels on a regular grid."""
    stride = max(1, int(np.ceil(np.sqrt(planes.shape[1] * planes.shape[2] / SAMPLES))))
    sample = np.asarray(planes[:, ::stride, ::stride], dtype=np.float64).reshape(len(planes), -1)
    lo, hi = np.percentile(sample, QUANTILES, axis=1)
    return lo, hi


def levelled(
    plane: np.ndarray, *, lo: float, hi: float, ref_lo: float, ref_hi: float, fill: Callable[[], np.ndarray] | None
) -> tuple[np.ndarray, bool] | None:
    """The plane mapped onto its neighbours' percentiles (float64), and False; `fill()` and True where it is flat
    and departs from them or holds one value throughout (dead or saturated, even at the background's level: the
    mean of the nearest planes with an image on either side, as a missing plane is best guessed; a plane flat only
    in its percentiles, mostly masked say, is left); None where it is within TOLERATED of them, or they have no
    spread to compare with, or its percentiles are not finite."""
    spread = ref_hi - ref_lo
    if not (np.isfinite(lo) and np.isfinite(hi) and spread > 0):
        return None
    departs = max(abs(lo - ref_lo), abs(hi - ref_hi)) > TOLERATED * spread
    if hi - lo <= FLAT * spread:
        return (fill(), True) if fill is not None and (departs or plane.min() == plane.max()) else None
    if not departs:
        return None
    return ref_lo + (plane.astype(np.float64) - lo) * (spread / (hi - lo)), False


def _as(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Values in the volume's dtype: rounded and clipped to its range for integers."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)
