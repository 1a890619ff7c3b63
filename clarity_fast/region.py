"""Blocks of a volume, in its voxels: the annotated part of a larger volume, for training on it in place and for
scoring detections against it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clarity_fast.errors import InputError


@dataclass(frozen=True)
class Region:
    """A block of a volume in its own voxels, per axis z, y, x a start and an end (exclusive, as in numpy); None:
    the volume's edge. Written `100:164x0:512x512:1024` (or with commas, quoted), `:` for a whole axis."""

    spans: tuple[tuple[int | None, int | None], ...]
    text: str

    @property
    def limits(self) -> tuple[tuple[float, float], ...]:
        """Start and end per axis, an open end as 0 or infinity (the volume's edge, whatever its size)."""
        return tuple((start or 0, math.inf if end is None else end) for start, end in self.spans)

    def bounds(self, shape: tuple[int, int, int], *, source: str) -> tuple[tuple[int, int], ...]:
        """The block's start and end per axis in a volume of `shape`; a block past the volume's edge is refused."""
        out = []
        for axis, (start, end), size in zip("zyx", self.limits, shape):
            end = size if math.isinf(end) else end
            if end > size:
                raise InputError(f"{source}: region {self.text!r} ends at {axis} = {end}, past the volume's {size} voxels along {axis}")
            if start >= end:
                raise InputError(f"{source}: region {self.text!r} holds no voxel along {axis} (from {start} to {end})")
            out.append((start, end))
        return tuple(out)

    def overlaps(self, other: Region) -> bool:
        """Whether the two blocks could share a voxel."""
        return all(max(a, c) < min(b, d) for (a, b), (c, d) in zip(self.limits, other.limits))


def parse_region(text: str, *, name: str) -> Region:
    """`Z0:Z1xY0:Y1xX0:X1` (or comma-separated) in voxels, each end a whole number >= 0 or left out."""
    parts = [p.strip() for p in text.lower().replace("x", ",").split(",")]
    spans = []
    for part in parts:
        ends = [e.strip() for e in part.split(":")]
        if len(parts) != 3 or len(ends) != 2 or not all(e == "" or (e.isascii() and e.isdigit()) for e in ends):
            raise InputError(f"{name} must be Z0:Z1xY0:Y1xX0:X1 in voxels (whole numbers, end exclusive, : for a whole axis), got {text!r}")
        start, end = (int(e) if e else None for e in ends)
        if start is not None and end is not None and start >= end:
            raise InputError(f"{name} {text!r} holds no voxel along {'zyx'[len(spans)]} (from {start} to {end}; the end is exclusive)")
        spans.append((start, end))
    return Region(tuple(spans), text)


def within(points: np.ndarray, *, bounds: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Per point (voxel coordinates), whether it lies in the block `bounds` (start, end exclusive, per axis): a
    point rounds to one of its voxels."""
    lo, hi = (np.array(b, dtype=float) - 0.5 for b in zip(*bounds))
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    return np.all((points >= lo) & (points < hi), axis=1)


def in_whole(zyx: np.ndarray, *, origin: np.ndarray, bounds: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Points found in a block read from `origin` (its context included), in the whole volume's voxels, and per point
    whether it lies in the block `bounds` asked for (the context's are dropped by the caller)."""
    zyx = np.asarray(zyx) + origin
    return zyx, within(zyx, bounds=bounds)
