"""Any readable volume -> a chunked OME-Zarr store (one resolution level), written slab by slab.

Chunked Zarr lets cluster workers read just the planes their slabs need. The store is built under a
temporary name beside the target and renamed when complete, so an interrupted conversion leaves nothing
that looks finished.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from clarity_fast.errors import InputError, OutputError
from clarity_fast.io.atomic import check_output_path
from clarity_fast.io.volumes import VolumeReader, _import_zarr, is_zarr_store

DEFAULT_CHUNKS = (32, 512, 512)


def ngff_attributes(*, voxel_size: tuple[float, float, float] | None, zarr_format: int) -> dict:
    """OME-NGFF multiscales metadata for one (z, y, x) level at path "0" (0.4 on Zarr v2, 0.5 on v3). An unknown
    voxel size is a unit-less scale of 1, which readers take as unknown, not as 1 µm."""
    version = "0.4" if zarr_format == 2 else "0.5"
    unit = {} if voxel_size is None else {"unit": "micrometer"}
    multiscale = {
        "version": version,
        "name": "volume",
        "axes": [{"name": a, "type": "space", **unit} for a in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": list(voxel_size or (1.0, 1.0, 1.0))}]}],
    }
    if zarr_format == 2:
        return {"multiscales": [multiscale]}
    del multiscale["version"]
    return {"ome": {"version": version, "multiscales": [multiscale]}}


def written_chunks(chunks: tuple[int, int, int], *, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The chunk shape a store of `shape` gets when `chunks` is asked for: never larger than the volume."""
    return tuple(min(c, n) for c, n in zip(chunks, shape))


def convert_to_zarr(
    reader: VolumeReader,
    target: Path,
    *,
    chunks: tuple[int, int, int] = DEFAULT_CHUNKS,
    voxel_size: tuple[float, float, float] | None = None,
    zarr_format: int = 2,
    on_slab: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the volume as OME-Zarr at `target` (which must not exist), one chunk-deep slab at a time; the voxel
    size recorded is `voxel_size`, else the reader's."""
    zarr = _import_zarr()
    target = Path(target)
    if zarr_format not in (2, 3):
        raise InputError(f"--zarr-format must be 2 or 3, got {zarr_format}")
    if any(c < 1 for c in chunks):
        raise InputError(f"--chunks must be positive, got {chunks}")
    if target.exists():
        raise OutputError(f"{target} exists; remove it or choose another name")
    if target.suffix.lower() in (".tif", ".tiff", ".npy"):  # a folder so named would be read as neither
        raise OutputError(f"{target}: convert writes an OME-Zarr store (a folder); give it a .zarr name")
    parent = check_output_path(target).parent
    if any(is_zarr_store(folder) for folder in (parent, *parent.resolve().parents)):
        raise OutputError(f"{target}: inside the Zarr store {parent}; write the new store beside it")
    chunks = written_chunks(chunks, shape=reader.shape)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=parent))
    try:
        group = zarr.open_group(str(building), mode="w", zarr_format=zarr_format)
        group.attrs.update(ngff_attributes(voxel_size=voxel_size or reader.voxel_size, zarr_format=zarr_format))
        array = group.create_array("0", shape=reader.shape, chunks=chunks, dtype=reader.dtype)
        for z0 in range(0, reader.shape[0], chunks[0]):
            z1 = min(z0 + chunks[0], reader.shape[0])
            array[z0:z1] = reader.read_slab(z0, z1)
            if on_slab is not None:
                on_slab(z0, z1)
        os.replace(building, target)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        _remove(building)
    return target


def _remove(folder: Path, *, attempts: int = 40, pause: float = 0.05) -> None:
    """Remove a folder that zarr may still be writing into: an interrupt stops our call, not the chunk writes zarr's
    event-loop thread has in flight, which would recreate what one rmtree removed and leave a hidden partial store."""
    for _ in range(attempts):
        if not folder.exists():
            return
        shutil.rmtree(folder, ignore_errors=True)
        time.sleep(pause)  # a write in flight may yet recreate it
