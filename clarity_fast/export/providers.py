"""What this machine can run: the cores this process may use, its memory, onnxruntime's providers, and whether a GPU is
really there."""

from __future__ import annotations

import ctypes
import os


def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports; 0 without a driver (no CUDA toolkit needed)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def built_providers() -> list[str]:
    """Execution providers compiled into the installed onnxruntime, in its preference order."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the OS does not say: Windows)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
