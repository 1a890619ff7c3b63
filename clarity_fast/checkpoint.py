"""Per-slab results on disk, so an interrupted `detect --resume` continues from the last finished slab.

The folder sits beside the output (`<out>.partial/`) and records a fingerprint of the run: a different
volume, model or setting starts afresh instead of mixing results. It is removed once the output is written.
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np

from clarity_fast.errors import OutputError
from clarity_fast.io.atomic import atomic_path, make_output_dir
from clarity_fast.pipeline import SlabResult

FINGERPRINT = "run.json"
CHECKPOINT_FORMAT = 5  # 2: one running projection, 3: odd planes, 4: candidates on a slope, 5: centred positions; in a fingerprint, so an older layout is never resumed
PROJECTION = "projection.npy"  # the maximum over the finished slabs' projections: one plane, not one per slab
log = logging.getLogger("clarity_fast")


class Checkpoint:
    """A run's finished slabs on disk until it ends, for `--resume`; only a run of the same fingerprint (input, model,
    settings, release) may take them up."""

    def __init__(self, folder: Path, *, fingerprint: dict, resume: bool) -> None:
        self.folder = Path(folder)
        stored = self._stored()
        text = json.dumps(fingerprint, indent=2, sort_keys=True) + "\n"
        # Compared as stored: JSON has no tuples, so a fingerprint holding one would never equal its own reading.
        if not resume or stored != json.loads(text):
            if resume and stored is not None:
                fresh = json.loads(text)
                changed = sorted(k for k in stored.keys() | fresh.keys() if stored.get(k) != fresh.get(k))
                log.warning("%s was made by a different run (changed: %s); starting afresh", self.folder, ", ".join(changed))
            elif resume:  # finished runs remove theirs: --resume of one computes it again, and says so
                log.warning("--resume: no interrupted run to continue (no readable %s); starting from the first slab", self.folder / FINGERPRINT)
            self.clear()
            make_output_dir(self.folder)
            with atomic_path(self.folder / FINGERPRINT) as tmp:
                tmp.write_text(text)

    def _stored(self) -> dict | None:
        try:
            stored = json.loads((self.folder / FINGERPRINT).read_text())
        except (OSError, ValueError):
            return None
        return stored if isinstance(stored, dict) else None

    def _slab(self, z0: int) -> Path:
        return self.folder / f"slab-{z0:08d}.npz"

    def finished(self, z0: int) -> bool:
        """Whether slab z0 is saved whole: a file cut short (a power loss after the rename, before the data reached
        the disk) lacks the zip directory at its end, and the slab is computed again."""
        path = self._slab(z0)
        return path.is_file() and zipfile.is_zipfile(path)

    def holds_slabs(self) -> bool:
        """Whether any slab was saved: a checkpoint without one has nothing to resume from."""
        return any(self.folder.glob("slab-*.npz"))

    def save(self, result: SlabResult, *, projection: np.ndarray | None = None) -> None:
        """Save a finished slab, and `projection`, the running maximum that already holds its projection, first:
        should the run stop between the two, the slab is computed again and folded in again, which the maximum
        forgives."""
        if projection is not None:
            with atomic_path(self.folder / PROJECTION) as tmp, open(tmp, "wb") as f:
                # np.save's own write reports a full disk as a short write, without its errno: the file's write keeps it
                projection = np.ascontiguousarray(projection)
                np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(projection))
                f.write(memoryview(projection).cast("B"))
        with atomic_path(self._slab(result.z0)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f, zyx=result.zyx, probability=result.probability, counts=np.array([result.candidates]),
                    range=np.array([result.low, result.high]), histogram=result.histogram,
                    odd_planes=np.array(sorted(result.odd_planes.items()), np.int64).reshape(-1, 2), on_slope=np.array([result.on_slope]),
                )

    def projection(self) -> np.ndarray | None:
        """The maximum projection of the slabs saved so far (None when none was kept)."""
        path = self.folder / PROJECTION
        if not path.is_file():
            return None
        try:
            return np.load(path)
        except (OSError, ValueError, EOFError) as exc:
            raise OutputError(f"{path}: unreadable checkpoint ({exc}); rerun without --resume") from exc

    def load(self, z0: int, z1: int) -> SlabResult:
        try:
            with np.load(self._slab(z0)) as data:
                low, high = data["range"]
                odd = {int(k): bool(flat) for k, flat in data["odd_planes"]}
                return SlabResult(z0, z1, data["zyx"], data["probability"], int(data["counts"][0]), float(low), float(high), None, data["histogram"], odd,
                                  int(data["on_slope"][0]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise OutputError(f"{self._slab(z0)}: unreadable checkpoint ({exc}); rerun without --resume") from exc

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
