"""Logits remembered by candidate position across passes over one volume: a second prefilter pass at a lower
threshold (second_pass) proposes the first pass's candidates again, whose patches, read from the same planes, are
the same; scoring only the new ones saves most of the second pass's scoring, the pipeline's costliest stage."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class ScoreMemo:
    """Logits by voxel position (z, y, x) in a volume of `shape`: 12 bytes a candidate of the first pass.

    While recording (the first pass), `scored` scores every patch and remembers it; after `freeze` (the second
    pass), it looks positions up among those remembered and scores only the others, remembering nothing more."""

    def __init__(self, *, shape: tuple[int, int, int]) -> None:
        self._strides = np.array([shape[1] * shape[2], shape[2], 1], np.int64)
        self._keys, self._logits = np.empty(0, np.int64), np.empty(0, np.float32)  # sorted by key
        self._new_keys: list[np.ndarray] = []
        self._new_logits: list[np.ndarray] = []
        self._recording = True
        self.reused = 0  # candidates whose logits were looked up, not scored

    def scored(self, zyx: np.ndarray, patches: np.ndarray, *, scorer: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The logits of the patches at positions `zyx`: remembered ones looked up, the rest scored by `scorer`."""
        keys = np.asarray(zyx, np.int64) @ self._strides
        at = np.minimum(np.searchsorted(self._keys, keys), max(len(self._keys) - 1, 0))
        known = self._keys[at] == keys if len(self._keys) else np.zeros(len(keys), bool)
        if known.all():
            logits = self._logits[at]
        else:
            fresh = scorer(patches if not known.any() else patches[~known])
            logits = np.empty(len(keys), np.float32)
            logits[~known], logits[known] = fresh, self._logits[at[known]]
            if self._recording:
                self._new_keys.append(keys[~known]), self._new_logits.append(np.asarray(fresh, np.float32))
        self.reused += int(known.sum())
        return logits

    def freeze(self) -> None:
        """Make the logits scored so far available to lookups, and stop remembering (between the passes)."""
        if self._new_keys:
            keys, logits = np.concatenate(self._new_keys), np.concatenate(self._new_logits)
            self._new_keys, self._new_logits = [], []
            order = np.argsort(keys)
            self._keys, self._logits = keys[order], logits[order]
        self._recording = False
