"""Whether a candidate's patch is brighter at its centre than its surround on every side, compiled.

A cell is brighter than what lies around it in every direction. The prefilter also proposes maxima along a bright
region's edge (the edge of the tissue, of a ventricle, of a bright nucleus seen off-centre): there the surround on the
region's side is as bright as the centre or brighter. On the model's grid (every cell the same size in voxels) the
test reads the patch's shell between SHELL_INNER and SHELL_OUTER cell radii from the centre in each of the 26
half-shells facing a neighbour direction, and compares it with the mean of the centre's core (within CORE cell
radii). A candidate is on a slope where the core is dimmer than some half-shell's mean and also than some half-shell's
median: the median, so that a neighbouring cell filling part of a half-shell does not make it a bright side; the
mean first, because it is cheap and clears most candidates (a median per half-shell costs about 20 µs a patch on 2
cores, a quarter of scoring it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

CORE = 0.6  # cell radii: the centre whose mean brightness is compared
SHELL_INNER = 1.4  # cell radii: the surround read on each side ...
SHELL_OUTER = 2.0  # ... out to this
MIN_SIDE = 16  # voxels: a half-shell with fewer (a patch too small for its cells) cannot be judged, and the test is off
ON_THE_PLANE = 1e-9  # a voxel this close to the plane between two opposite sides (0, but for rounding) is on neither
_DIRECTIONS = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)], float)


@dataclass(frozen=True)
class SlopeTest:
    """The voxels of a P³ patch the test reads (flat indices), for cells of `radius` (z, y, x) patch voxels."""

    core: np.ndarray  # (n_core,)
    shell: np.ndarray  # (n_shell,)
    sides: np.ndarray  # (26, n_side): positions in `shell` of each half-shell's voxels, padded with -1
    counts: np.ndarray  # (26,): each half-shell's voxel count

    @staticmethod
    def for_patch(*, patch: int, radius: tuple[float, float, float]) -> SlopeTest | None:
        """The test's voxels; None where the patch is too small for its cells: the shell's inner surface reaches past the
        patch along an axis, or a half-shell holds fewer than MIN_SIDE voxels."""
        if any(SHELL_INNER * r > patch - patch // 2 - 1 for r in radius):
            return None
        offsets = np.stack(np.meshgrid(*[np.arange(patch) - patch // 2] * 3, indexing="ij"), -1).reshape(-1, 3)
        scaled = offsets / np.asarray(radius, dtype=float)
        distance = np.linalg.norm(scaled, axis=1)
        in_shell = (distance >= SHELL_INNER) & (distance <= SHELL_OUTER)
        facing = scaled[in_shell] @ _DIRECTIONS.T > ON_THE_PLANE  # the sides a voxel lies on
        counts = facing.sum(axis=0)
        if counts.min() < MIN_SIDE:
            return None
        sides = np.full((len(_DIRECTIONS), int(counts.max())), -1, dtype=np.int64)
        for d in range(len(_DIRECTIONS)):
            members = np.flatnonzero(facing[:, d])
            sides[d, : len(members)] = members
        return SlopeTest(
            core=np.flatnonzero(distance <= CORE), shell=np.flatnonzero(in_shell), sides=sides, counts=counts.astype(np.int64)
        )

    def on_slope(self, patches: np.ndarray) -> np.ndarray:
        """Which of (N, 1, P, P, P) or (N, P, P, P) patches have a centre dimmer than their surround on some side."""
        flat = np.ascontiguousarray(patches, dtype=np.float32).reshape(len(patches), int(np.prod(patches.shape[1:])))
        out = np.zeros(len(flat), dtype=np.bool_)
        if len(flat):
            _on_slope(flat, self.core, self.shell, self.sides, self.counts, out)
        return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _on_slope(flat, core, shell, sides, counts, out):
    for i in numba.prange(flat.shape[0]):
        p = flat[i]
        centre = 0.0
        for k in core:
            centre += p[k]
        centre /= len(core)
        values = np.empty(len(shell), dtype=np.float64)
        for j in range(len(shell)):
            values[j] = p[shell[j]]
        brighter_mean = False
        for d in range(sides.shape[0]):
            total = 0.0
            for j in range(counts[d]):
                total += values[sides[d, j]]
            if centre < total / counts[d]:
                brighter_mean = True
                break
        if not brighter_mean:
            continue
        side = np.empty(sides.shape[1], dtype=np.float64)
        for d in range(sides.shape[0]):
            n = counts[d]
            for j in range(n):
                side[j] = values[sides[d, j]]
            if centre < np.median(side[:n]):
                out[i] = True
                break
