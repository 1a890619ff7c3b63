"""Shared by the benchmark scripts: machine description and JSON + markdown output in benchmarks/results/."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

from clarity_fast.export.providers import available_cores
from clarity_fast.simulate.scene import CELLS_PER_MM3

RESULTS = Path(__file__).resolve().parent / "results"
OUT = Path(__file__).resolve().parent / "out"  # inputs the benchmarks make and cache (git-ignored)
SIMULATED = ((4.0, 2.0, 2.0), 12.0)  # simulated_volume's voxel size (µm) and cell diameter (µm)
CROP = Path(__file__).resolve().parents[2] / "shared" / "data" / "cellfinder_crop"  # real serial two-photon: signal.tif, background.tif
CROP_SCALE = ((5.0, 2.0, 2.0), 16.0)  # the voxel size cellfinder's tests give this crop, and its default soma diameter


def simulated_volume(shape: tuple[int, int, int], *, tile: tuple[int, int, int] | None = None, density: float = CELLS_PER_MM3) -> Path:
    """A simulated difficulty-1 volume of `shape` (seed 0, 4×2×2 µm, 12 µm cells), cached as .npy.

    With `tile`, a block of that shape is simulated and mirror-tiled out to `shape`: the same cell density and
    image statistics in a fraction of the time, for a machine lent briefly (a GPU lease, say). `density` is in
    labelled cells per mm³ (the simulator's default keeps the file name it always had)."""
    from clarity_fast.simulate import SimulatedBrain, SimulationSettings

    name = "x".join(map(str, shape)) + (f"_tiled{'x'.join(map(str, tile))}" if tile else "")
    name += f"_d{density:g}" if density != CELLS_PER_MM3 else ""
    path = OUT / f"sim_{name}.npy"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        block = SimulatedBrain(SimulationSettings(shape=tile or shape, seed=0, difficulty=1.0, density=density)).volume()
        np.save(path, mirror_tiled(block, shape) if tile else block)
    return path


def tiled_crop(shape: tuple[int, int, int], *, channel: str = "signal") -> Path | None:
    """A channel of cellfinder's real crop (CROP) mirror-tiled to `shape`, cached as .npy; None without ../shared/data."""
    path = OUT / f"cellfinder_crop_tiled_{'x'.join(map(str, shape))}{'' if channel == 'signal' else '_' + channel}.npy"
    if not path.exists():
        source = CROP / f"{channel}.tif"
        if not source.exists():
            return None
        OUT.mkdir(exist_ok=True)
        np.save(path, mirror_tiled(tifffile.imread(source), shape))
    return path


def mirror_tiled(block: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """`block` mirror-tiled out to `shape` (cropped to it): no seams in the image, the block's statistics throughout."""
    reps = [-(-s // t) for s, t in zip(shape, block.shape)]
    tiled = np.pad(block, [(0, (r - 1) * t) for r, t in zip(reps, block.shape)], mode="symmetric")
    return np.ascontiguousarray(tiled[: shape[0], : shape[1], : shape[2]])


def calls_per_second(call: Callable[[], object], seconds: float) -> float:
    """How often `call` runs per second, back to back for `seconds`, after one untimed warm-up call."""
    call()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        n += 1
    return n / (time.perf_counter() - start)


def peak_rss_mb() -> float:
    """This process's own peak resident memory, MB. Not ru_maxrss: a child started by vfork+exec inherits its
    parent's peak there (Linux keeps the larger), so a benchmark whose parent once held a big volume would see it
    in every child. VmHWM belongs to the process's own address space."""
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores_available": available_cores(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def write(name: str, *, data: dict, columns: list[str], rows: list[list[object]], notes: str = "") -> Path:
    """Write results/<name>.json (data + machine) and results/<name>.md (a table); return the .md path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    lines = [f"# {name}", "", f"Machine: {payload['machine']['cpu']}, {payload['machine']['cores_available']} cores.", ""]
    if notes:
        lines += [notes, ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |" for row in rows]
    md = RESULTS / f"{name}.md"
    md.write_text("\n".join(lines) + "\n")
    return md
