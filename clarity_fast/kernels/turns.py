"""Turn-taking for parallel kernels launched from several threads, where numba's threading layer needs it.

detect's prefilter and gather stages run in threads of their own and both launch parallel kernels. OpenMP and TBB
take that; numba's workqueue layer, its fallback where neither can load (some macOS installs), aborts the whole
process instead. There the stages, and the tasks of a Dask worker's threads, take turns through one lock.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import numba
import numpy as np

_WORKQUEUE_TURNS = threading.Lock()


def kernel_turns() -> contextlib.AbstractContextManager:
    """What a thread holds while its parallel kernels run: nothing, unless numba runs on the workqueue layer."""
    return _WORKQUEUE_TURNS if threading_layer() == "workqueue" else contextlib.nullcontext()


@functools.cache
def threading_layer() -> str:
    """The layer numba chose, which it does on the first parallel launch."""
    _touch(np.zeros(2))
    return numba.threading_layer()


@numba.njit(parallel=True, cache=True)
def _touch(a: np.ndarray) -> None:
    for i in numba.prange(a.shape[0]):
        a[i] = 0.0
