"""clarity-fast with test-time augmentation, for the measurement in tta_results.json only.

TTA=2: each logit is the mean over the patch and its z flip; TTA=16: over the 8 in-plane rotations and mirrorings,
each also flipped along z. Run as `TTA=2 python tta_main.py detect ...` (tta_eval.py does).
"""

import os

import numpy as np

from clarity_fast.export import runtime

VIEWS = int(os.environ.get("TTA", "16"))
_score = runtime.OnnxScorer.__call__


def _views(patches: np.ndarray) -> list[np.ndarray]:
    if VIEWS == 2:
        return [patches, patches[:, :, ::-1]]
    out = []
    for p in (patches, patches[:, :, ::-1]):
        for k in range(4):
            r = np.rot90(p, k, axes=(3, 4))
            out += [r, r[..., ::-1]]
    return out


def _averaged(self, patches: np.ndarray) -> np.ndarray:
    return np.mean([_score(self, np.ascontiguousarray(v)) for v in _views(patches)], axis=0).astype(np.float32)


runtime.OnnxScorer.__call__ = _averaged
from clarity_fast.cli import main  # noqa: E402

main()
