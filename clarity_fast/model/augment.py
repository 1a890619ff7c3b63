"""Augmentations of normalised patches: flips, in-plane quarter turns, intensity and noise changes."""

from __future__ import annotations

import numpy as np


def augment(patches: np.ndarray, *, rng: np.random.Generator, quarter_turns: bool) -> np.ndarray:
    """A new array: each (1, P, P, P) patch flipped, turned, re-contrasted and noised at random.

    Quarter turns in the y-x plane only make sense where y and x voxels are the same size.
    """
    out = np.empty_like(patches)
    for i, patch in enumerate(patches[:, 0]):
        for axis in range(3):
            if rng.random() < 0.5:
                patch = patch[(slice(None),) * axis + (slice(None, None, -1),)]
        if quarter_turns:
            patch = np.rot90(patch, k=int(rng.integers(4)), axes=(1, 2))
        # Gamma on the patch's own range, then back to zero mean, unit std: contrast shape changes.
        lo, hi = patch.min(), patch.max()
        if hi > lo:
            patch = ((patch - lo) / (hi - lo)) ** rng.uniform(0.7, 1.4)
            patch = (patch - patch.mean()) / max(patch.std(), 1e-6)
        patch = patch * rng.uniform(0.85, 1.15) + rng.uniform(-0.15, 0.15)
        patch = patch + rng.normal(0.0, rng.uniform(0.0, 0.2), size=patch.shape)
        out[i, 0] = patch
    return out
