"""clarity-fast with test-time augmentation: logits averaged over in-plane dihedral views (and a z flip)."""
import os
import numpy as np
from clarity_fast.export import runtime

K = int(os.environ.get("TTA", "16"))
_orig = runtime.OnnxScorer.__call__


def _views(p):
    for zflip in (False, True):
        q = p[:, :, ::-1] if zflip else p
        for k in range(4):
            r = np.rot90(q, k, axes=(3, 4))
            yield r
            yield r[..., ::-1]


def _call(self, patches):
    views = list(_views(patches))
    order = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    if K == 2:
        order = [0, 8]
    elif K == 4:
        order = [0, 3, 8, 11]
    chosen = [views[i] for i in order[:K]] if K not in (2, 4) else [views[i] for i in order]
    return np.mean([_orig(self, np.ascontiguousarray(v)) for v in chosen], axis=0).astype(np.float32)


runtime.OnnxScorer.__call__ = _call
from clarity_fast.cli import main  # noqa: E402

main()
