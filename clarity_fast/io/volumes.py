"""Lazy (z, y, x) access to volumes on disk, and TIFF writing that keeps the voxel size.

Whole-brain volumes are far larger than memory, so opening a volume reads only its metadata and
`read_slab` decodes only the planes asked for. Every way a file can be unusable ends in one
InputError line that names the file, never in a reader library's traceback.
"""

from __future__ import annotations

import contextlib
import logging
import math
import operator
import os
import re
import threading
import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from clarity_fast.errors import ClarityError, InputError
from clarity_fast.io.atomic import atomic_path
from clarity_fast.messages import listed
from clarity_fast.settings import VoxelSize

if TYPE_CHECKING:
    from clarity_fast.kernels.gather import Grid

log = logging.getLogger("clarity_fast")

_TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")  # the last three: BigTIFF's own names
_OTHER_FORMATS = {  # microscope formats users try, named in the refusal
    (".ims",): "Imaris", (".h5", ".hdf5", ".hdf"): "HDF5", (".czi",): "Zeiss CZI", (".lif", ".lof"): "Leica LIF",
    (".nd2",): "Nikon ND2", (".oib", ".oir"): "Olympus", (".vsi",): "Olympus VSI", (".n5",): "N5",
}
_OTHER_SUFFIXES = {suffix for suffixes in _OTHER_FORMATS for suffix in suffixes}
_ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")
_FORMATS = "a .tif/.tiff file, a folder of .tif/.tiff planes, a .zarr store or a .npy file"
_CHANNEL_AXES = "CS"
# Default axis names of Zarr and .npy arrays without axis metadata (OME-NGFF order).
_DEFAULT_AXES = {2: "YX", 3: "ZYX", 4: "CZYX", 5: "TCZYX"}
_FEW_CHANNELS = 4  # an axis this short beside a longer assumed channel axis is more likely the channels
_MICROMETRES_PER_UNIT = {
    "micrometer": 1.0,
    "micrometre": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "um": 1.0,
    "\u00b5m": 1.0,  # micro sign
    "\u03bcm": 1.0,  # Greek mu
    "\\u00b5m": 1.0,  # ImageJ's escaped micro sign
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "nm": 1e-3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "mm": 1e3,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "cm": 1e4,
    "meter": 1e6,
    "metre": 1e6,
    "m": 1e6,
    "picometer": 1e-6,
    "pm": 1e-6,
    "angstrom": 1e-4,
    "\u00c5": 1e-4,  # Å
}
_AXIS_LETTERS = {"z": "Z", "y": "Y", "x": "X", "c": "C", "channel": "C", "t": "T", "time": "T"}  # named axes of a Zarr array
_NGFF_TYPES = {"channel": "C", "time": "T"}  # OME-NGFF axis types that say what an axis of another name is
# ImageJ cannot read BigTIFF and only knows these types; other volumes are written as OME-TIFF.
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_CLASSIC_TIFF_LIMIT = 2**32 - 2**25  # bytes; tifffile's own margin below 4 GiB


class VolumeReader(ABC):
    """A lazy (z, y, x) view of a volume on disk; not safe to share between threads."""

    def __init__(
        self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, voxel_size: VoxelSize | None
    ) -> None:
        self.path = path
        self.shape = shape
        # Half floats are read as float32 (exactly): the compiled kernels have no float16.
        self.dtype = np.dtype(np.float32) if dtype == np.float16 else dtype
        self.voxel_size = voxel_size

    def read_slab(self, z0: int, z1: int) -> np.ndarray:
        """Planes z0..z1-1 as an in-memory (z1 - z0, Y, X) array of the reader's dtype."""
        z0, z1 = operator.index(z0), operator.index(z1)
        if not 0 <= z0 < z1 <= self.shape[0]:
            raise InputError(f"{self.path}: slab [{z0}, {z1}) is outside the volume's planes [0, {self.shape[0]})")
        return self._read(z0, z1).astype(self.dtype, copy=False)

    @abstractmethod
    def _read(self, z0: int, z1: int) -> np.ndarray:
        """Read a slab whose bounds are already checked."""

    def odd_planes(self, z0: int, z1: int) -> dict[int, bool]:
        """Planes of z0..z1-1 read so far that the reader changed from what is stored (True: replaced whole), for
        the record; a plain reader changes none."""
        return {}

    def blank(self, value: float) -> str | None:
        """Given that every voxel read through this reader is `value`: what is blank, for the error that says so, or
        None where the volume it reads holds more (a block's background in an image). A plain reader has read it all."""
        return f"{self.path}: every voxel"

    def working_grid(self, factors: tuple[float, float, float]) -> Grid:
        """The working grid its voxels are sampled on for the network, zoomed by `factors` (kernels.gather)."""
        from clarity_fast.kernels.gather import working_grid  # numba: not needed to read a volume

        return working_grid(self.shape, factors=factors)

    def close(self) -> None:
        """Release file handles; readers that hold none need not override this."""

    def __enter__(self) -> VolumeReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class _Layout:
    """How an n-D array maps onto (z, y, x): the z axis and a fixed index on channel and length-1 axes."""

    ndim: int
    z_axis: int | None
    fixed: tuple[tuple[int, int], ...]

    def index(self, z: int | slice) -> tuple[int | slice, ...]:
        fixed = dict(self.fixed)
        return tuple(z if axis == self.z_axis else fixed.get(axis, slice(None)) for axis in range(self.ndim))


MANY_CHANNELS = 8  # more channels than this (or samples), and no z axis: a stack saved without its axes, more likely


def _layout(
    name: object, shape: Sequence[int], axes: str, channel: int | None
) -> tuple[_Layout, tuple[int, int, int]]:
    """Pick the z axis and one channel of an array with named axes; return the layout and (Z, Y, X)."""
    shape = tuple(int(n) for n in shape)
    if 0 in shape:
        raise InputError(f"{name}: empty volume (shape {shape})")
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"{name}: no y and x axes (axes {axes}, shape {shape})")
    channel_axes = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES and shape[i] > 1]
    if len(channel_axes) > 1:
        raise InputError(f"{name}: more than one channel axis (axes {axes}, shape {shape}); not supported")
    n_channels = shape[channel_axes[0]] if channel_axes else 1
    if channel is None and n_channels > 1:
        samples = "S" in axes and n_channels not in (3, 4)  # not RGB(A): a stack's planes taken as samples
        hidden = (n_channels > MANY_CHANNELS or samples) and not any(a in "ZQ" for a in axes)
        planes = "" if not hidden else (
            "; if they are z planes, the file was written without naming its axes: save it again with axes ZYX"
        )
        raise InputError(f"{name}: has {n_channels} channels (axes {axes}); choose one with --channel{planes}")
    chosen = 0 if channel is None else channel
    if not 0 <= chosen < n_channels:
        raise InputError(f"{name}: channel {channel} is out of range; it has {n_channels} channel(s)")
    fixed = {i: chosen for i in channel_axes}
    fixed.update({i: 0 for i, n in enumerate(shape) if n == 1 and axes[i] not in "YX"})
    rest = [i for i, a in enumerate(axes) if i not in fixed and a not in "YX"]
    if len(rest) > 1:
        chose = "after choosing a channel " if channel_axes else ""
        raise InputError(
            f"{name}: has axes {axes} with shape {shape}; {chose}it must be 2D or 3D (one axis besides y and x longer than 1)"
        )
    z_axis = rest[0] if rest else None
    kept = [i for i in range(len(axes)) if i not in fixed]
    if [axes[i] for i in kept][-2:] != ["Y", "X"]:
        raise InputError(f"{name}: unsupported axis order {axes}; expected z before y before x")
    depth = shape[z_axis] if z_axis is not None else 1
    layout = _Layout(len(shape), z_axis, tuple(sorted(fixed.items())))
    return layout, (depth, shape[axes.index("Y")], shape[axes.index("X")])


def _native_dtype(name: object, dtype: Any) -> np.dtype:
    """Accept integer and float voxels only, in native byte order."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iuf":
        raise InputError(f"{name}: unsupported data type {dtype}; voxels must be integers or floats")
    return dtype.newbyteorder("=")


def _writable_dtype(name: object, dtype: Any) -> np.dtype:
    """The voxel types TIFF writers here can store (OME-TIFF has no 64-bit integers or half floats)."""
    dtype = _native_dtype(name, dtype)
    if dtype.itemsize == 8 and dtype.kind in "iu" or dtype == np.float16:
        raise InputError(f"{name}: cannot write {dtype} voxels as TIFF; convert to uint32, int32 or float32/64 first")
    return dtype


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines and lines[0] else type(exc).__name__


@contextlib.contextmanager
def _library_errors(message: str) -> Iterator[None]:
    """Turn a reader library's exception into one InputError line: '<message> (<reason>)'."""
    try:
        yield
    except (ClarityError, MemoryError):
        raise
    except Exception as exc:
        raise InputError(f"{message} ({_reason(exc)})") from exc


class _ErrorLog(logging.Handler):
    """Collect this thread's error records from tifffile's log."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.thread_id = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread_id:
            self.messages.append(re.sub(r"<[^>]*>\s*", "", record.getMessage()))


@contextlib.contextmanager
def _tiff_errors(message: str) -> Iterator[None]:
    """Like _library_errors, and also fail on errors tifffile only logs.

    tifffile reports the missing pages of a truncated file in its log and returns a shorter series;
    without this check a cut-off volume would open silently with fewer planes.
    """
    log = logging.getLogger("tifffile")
    errors = _ErrorLog()
    log.addHandler(errors)
    try:
        with _library_errors(message):
            yield
    finally:
        log.removeHandler(errors)
    if errors.messages:
        raise InputError(f"{message} ({errors.messages[0][:200]})")


class _ArrayVolume(VolumeReader):
    """A volume backed by anything numpy-indexable: a memmap, a Zarr array."""

    def __init__(
        self,
        path: Path,
        array: Any,
        layout: _Layout,
        shape: tuple[int, int, int],
        *,
        voxel_size: VoxelSize | None,
        error: str,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(path, shape, _native_dtype(path, array.dtype), voxel_size)
        self._array = array
        self._layout = layout
        self._error = error
        self._on_close = on_close

    def _read(self, z0: int, z1: int) -> np.ndarray:
        if self._array is None:
            raise ValueError(f"{self.path}: reader is closed")
        with _library_errors(f"{self.path}: {self._error}"):
            if isinstance(self._array, np.memmap):
                # A fresh map per read, unmapped after the copy: pages read stay in the page cache, not in this
                # process's resident memory, which would otherwise grow with every slab of a large file.
                a = self._array
                order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
                source = np.memmap(a.filename, dtype=a.dtype, mode="r", offset=a.offset, shape=a.shape, order=order)
                slab = np.array(source[self._layout.index(slice(z0, z1))], dtype=self.dtype, order="C")
                del source
            else:
                slab = np.asarray(self._array[self._layout.index(slice(z0, z1))], dtype=self.dtype)
        if self._layout.z_axis is None:
            slab = slab[np.newaxis]
        return np.ascontiguousarray(slab)

    def close(self) -> None:
        self._array = None
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


class _TiffPageVolume(VolumeReader):
    """A TIFF series whose pages are 2D planes: decode only the pages of the requested planes."""

    def __init__(
        self,
        path: Path,
        tif: tifffile.TiffFile,
        layout: _Layout,
        shape: tuple[int, int, int],
        *,
        voxel_size: VoxelSize | None,
        series: tifffile.TiffPageSeries,
    ) -> None:
        super().__init__(path, shape, _native_dtype(path, series.dtype), voxel_size)
        self._tif = tif
        self._series = series
        self._lead_shape = tuple(series.shape[: len(series.shape) - len(series.keyframe.shape)])
        self._layout = layout

    def _read(self, z0: int, z1: int) -> np.ndarray:
        out = np.empty((z1 - z0, *self.shape[1:]), dtype=self.dtype)
        n_lead = len(self._lead_shape)
        for i, z in enumerate(range(z0, z1)):
            index = self._layout.index(z)
            page_number = int(np.ravel_multi_index(index[:n_lead], self._lead_shape)) if n_lead else 0
            with _tiff_errors(f"{self.path}: not a readable TIFF at plane {z}"):
                page = self._series[page_number]
                if page is None:  # OME-TIFF may omit planes; they read as zeros
                    out[i] = 0
                else:
                    out[i] = page.asarray()[index[n_lead:]]
        return out

    def close(self) -> None:
        self._tif.close()


class _FolderVolume(VolumeReader):
    """A folder of 2D TIFF planes, one file per z, in natural file-name order."""

    def __init__(
        self,
        path: Path,
        files: list[Path],
        layout: _Layout,
        plane: tuple[tuple[int, ...], np.dtype],
        shape: tuple[int, int, int],
        *,
        voxel_size: VoxelSize | None,
    ) -> None:
        super().__init__(path, shape, _native_dtype(path, plane[1]), voxel_size)
        self._files = files
        self._layout = layout
        self._plane = plane

    def _read(self, z0: int, z1: int) -> np.ndarray:
        out = np.empty((z1 - z0, *self.shape[1:]), dtype=self.dtype)
        for i, file in enumerate(self._files[z0:z1]):
            with _tiff_errors(f"{file}: not a readable TIFF"), tifffile.TiffFile(file) as tif:
                series = tif.series[0]
                # A plane may carry singleton axes the first did not (a writer's (1, Y, X) among (Y, X)): same pixels.
                if _squeezed(series.shape) != _squeezed(self._plane[0]) or series.dtype != self._plane[1]:
                    raise InputError(
                        f"{file}: plane of shape {series.shape} and type {series.dtype} differs from the first plane "
                        f"({self._plane[0]}, {self._plane[1]}) of {self.path}"
                    )
                out[i] = series.asarray().reshape(self._plane[0])[self._layout.index(0)]
        return out


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)


def is_zarr_store(path: Path) -> bool:
    """Whether a folder is a Zarr array or group (v2 or v3), whatever its name."""
    return any((path / marker).exists() for marker in _ZARR_MARKERS)


def open_volume(path: str | os.PathLike[str], *, channel: int | None = None) -> VolumeReader:
    """Open a TIFF, folder of TIFF planes, Zarr/OME-Zarr store or .npy file as a lazy (z, y, x) volume."""
    path = Path(path)
    if channel is not None:
        try:
            channel = operator.index(channel)
        except TypeError:
            raise InputError(f"{path}: channel must be an integer, got {channel!r}") from None
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if path.is_dir():
        if suffix == ".zarr" or is_zarr_store(path):
            return _open_zarr(path, channel)
        if suffix not in _OTHER_SUFFIXES:
            return _open_folder(path, channel)
    elif suffix in _TIFF_SUFFIXES:
        return _open_tiff(path, channel)
    elif suffix == ".npy":
        return _open_npy(path, channel)
    known = next((what for suffixes, what in _OTHER_FORMATS.items() if suffix in suffixes), None)
    hint = f" ({known}: export it as OME-TIFF or OME-Zarr first, with Fiji or bioformats2raw, say)" if known else ""
    raise InputError(f"{path}: unsupported format{hint}; expected {_FORMATS}")


def open_array(array: np.ndarray, *, voxel_size: VoxelSize | None = None, name: str = "<array>") -> VolumeReader:
    """An in-memory (z, y, x) or (y, x) array as a volume: the Python API's way in."""
    array = np.asarray(array)
    layout, shape = _layout(name, array.shape, _DEFAULT_AXES.get(array.ndim, ""), None)
    return _ArrayVolume(Path(name), array, layout, shape, voxel_size=voxel_size, error="cannot read the array")


def _open_tiff(path: Path, channel: int | None) -> VolumeReader:
    """Memory-map uncompressed contiguous data; decode page by page otherwise; Zarr view as last resort."""
    error = "not a readable TIFF"
    resources = contextlib.ExitStack()  # what the returned reader must close, or we on failure
    try:
        with _tiff_errors(f"{path}: {error}"):
            tif = resources.enter_context(tifffile.TiffFile(path))
            if not tif.series:
                raise InputError(f"{path}: {error} (no image data)")
            series = _largest_series(tif, path)
            axes, array_shape, offset = series.axes, tuple(series.shape), series.dataoffset
            page_axes, page_shape = series.keyframe.axes, tuple(series.keyframe.shape)
            voxel_size = _tiff_voxel_size(tif, series)
        _native_dtype(path, series.dtype)
        layout, shape = _layout(path, array_shape, axes, channel)
        if offset is not None:
            resources.close()  # the memory map needs no open TiffFile
            with _library_errors(f"{path}: {error}"):
                dtype = np.dtype(tif.byteorder + series.dtype.char)
                array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=array_shape)
            return _ArrayVolume(path, array, layout, shape, voxel_size=voxel_size, error=error)
        n_page = len(page_shape)
        if (
            set(page_axes) <= set("YXS")
            and axes[-n_page:] == page_axes
            and array_shape[-n_page:] == page_shape
            and math.prod(array_shape[:-n_page]) == len(series)
        ):
            return _TiffPageVolume(path, tif, layout, shape, voxel_size=voxel_size, series=series)
        zarr = _import_zarr()
        with _tiff_errors(f"{path}: {error}"):
            store = series.aszarr(level=0)
            resources.callback(store.close)
            array = zarr.open(store, mode="r")
        return _ArrayVolume(path, array, layout, shape, voxel_size=voxel_size, error=error, on_close=resources.close)
    except BaseException:
        resources.close()
        raise


def _largest_series(tif: tifffile.TiffFile, path: Path) -> tifffile.TiffPageSeries:
    """The image series with the most voxels (the first of equals): a file may put an overview or a thumbnail
    before the volume. Where there are several, one warning says which was read."""
    # A multi-file OME-TIFF lists every file's images: those whose data lie in another file come after this one's.
    ranks = [(_in_file(series, tif), math.prod(series.shape)) for series in tif.series]
    chosen = ranks.index(max(ranks))
    if len(ranks) > 1:
        shapes = ", ".join(str(tuple(series.shape)) for series in tif.series)
        where = "the largest stored in this file" if not all(own for own, _ in ranks) else "the largest"
        log.warning("%s: holds %d image series (%s); reading series %d, %s", path, len(ranks), shapes, chosen, where)
    return tif.series[chosen]


def _in_file(series: tifffile.TiffPageSeries, tif: tifffile.TiffFile) -> bool:
    """Whether a series' pixels lie in this file (not in another file of a multi-file OME-TIFF)."""
    first = next((page for page in series.pages if page is not None), None)
    return first is not None and first.parent is tif


def _tiff_voxel_size(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries) -> VoxelSize | None:
    """Voxel size from OME-TIFF PhysicalSize (of the series' own image) or ImageJ spacing + resolution; None unless
    fully known."""
    if tif.is_ome:
        return _ome_voxel_size(tif.ome_metadata or "", series=series, index=next(i for i, s in enumerate(tif.series) if s is series))
    meta = tif.imagej_metadata
    if not meta:
        return None
    unit = str(meta.get("unit", "")).strip().lower()
    # Fiji records y and z units apart where they differ from x's; ImageJ leaves the spacing out where it is 1.
    factors = [_MICROMETRES_PER_UNIT.get(str(meta.get(key, unit)).strip().lower()) for key in ("zunit", "yunit", "unit")]
    tags = series.keyframe.tags
    x_res, y_res = tags.get("XResolution"), tags.get("YResolution")
    if None in factors or x_res is None or y_res is None:
        return None
    if "spacing" not in meta and "Z" not in series.axes:  # one plane (of a folder, say): it cannot know the planes' spacing
        return None
    try:
        sizes = (float(meta.get("spacing", 1.0)), y_res.value[1] / y_res.value[0], x_res.value[1] / x_res.value[0])
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    voxel_size = _positive_voxel_size(tuple(size * factor for size, factor in zip(sizes, factors)))
    if voxel_size is None:
        return None
    # ImageJ's own defaults, which are also what a script that forgot them writes: said, so that a wrong scale is seen.
    if "spacing" not in meta and "Z" in series.axes:
        guess = "records no z spacing, so ImageJ's default of 1 is taken"
    elif sizes[0] != 1 and tuple(x_res.value) == tuple(y_res.value) == (1, 1):
        guess = "has a z spacing but a pixel size of exactly 1, as a writer given none stores it"
    else:
        return voxel_size
    log.warning("%s: %s (voxel size %s µm); if that is wrong, pass --voxel-size Z,Y,X", tif.filehandle.path, guess,
                ", ".join(f"{v:g}" for v in voxel_size))
    return voxel_size


def _ome_voxel_size(xml: str, *, series: tifffile.TiffPageSeries, index: int) -> VoxelSize | None:
    """PhysicalSize of the OME Image the series shows: the one of its name and size (tifffile leaves out images it has
    no pixels for, so its series' positions need not be the images'), else the one at its position."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    images = [element for element in root if element.tag.rsplit("}", 1)[-1] == "Image"]  # not those quoted in annotations
    every = [next((c for c in image if c.tag.rsplit("}", 1)[-1] == "Pixels"), None) for image in images]
    extent = dict(zip("ZYX", (dict(zip(series.axes, series.shape)).get(a, 1) for a in "ZYX")))
    named = [pixels for image, pixels in zip(images, every) if pixels is not None and image.get("Name") == series.name
             and all(pixels.get(f"Size{a}") == str(n) for a, n in extent.items())]
    pixels = named[0] if len(named) == 1 else every[index] if index < len(every) else None
    if pixels is None:
        return None
    sizes = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        factor = _MICROMETRES_PER_UNIT.get(pixels.get(f"PhysicalSize{axis}Unit", "\u00b5m").strip().lower())
        if value is None or factor is None:
            return None
        try:
            sizes.append(float(value) * factor)
        except ValueError:
            return None
    return _positive_voxel_size(tuple(sizes))


def _positive_voxel_size(sizes: Sequence[float]) -> VoxelSize | None:
    if len(sizes) == 3 and all(math.isfinite(s) and s > 0 for s in sizes):
        return (float(sizes[0]), float(sizes[1]), float(sizes[2]))
    return None


def _natural_key(name: str) -> tuple[list[str | int], str]:
    """Sort plane_2 before plane_10: digit runs compare as numbers."""
    parts = re.split(r"(\d+)", name.casefold())
    return [int(part) if i % 2 else part for i, part in enumerate(parts)], name


# Labels of a numbered part of a plane file's name that tell series apart (channels, tiles, views, time points,
# light-sheet sides); others (a serial two-photon section and its optical layer) number the planes of one series.
_SERIES_LABEL = re.compile(r"(?:c|ch|chan|channel|t|tp|time|timepoint|tile|pos|position|view|sh|side|illumination|cam|camera)", re.I)


def _label(parts: list[str], i: int) -> str:
    """The letters naming a name's i-th number (C of C00, ch, Z), or "tile" for an UltraMicroscope's [00 x 01]."""
    before = parts[2 * i]
    if re.search(r"\[\s*$", before) or (i > 0 and re.fullmatch(r"\s*x\s*", before) and re.search(r"\[\s*$", parts[2 * i - 2])):
        return "tile"
    return re.search(r"[^\W\d_]*$", before).group()


def _several_series(names: list[str]) -> str | None:
    """Where the names' numbers form a product, a numbered part labelled as a channel, tile, view or time point (C00,
    C01) repeating the same others (Z0000..Z0031) for each of its values, that part's values; None for one series of
    planes. Stacked, two channels would read as one deep volume."""
    parts = [re.split(r"(\d+)", name) for name in names]
    if len(parts) < 4 or len({tuple(p[0::2]) for p in parts}) != 1:
        return None
    numbers = [tuple(int(n) for n in p[1::2]) for p in parts]
    varying = [i for i in range(len(numbers[0])) if len({n[i] for n in numbers}) > 1]
    if len(varying) < 2:
        return None
    labels = {i: _label(parts[0], i) for i in varying}
    for i in sorted(varying, key=lambda i: len({n[i] for n in numbers})):
        if not _SERIES_LABEL.fullmatch(labels[i]):
            continue
        groups: dict[int, set[tuple[int, ...]]] = {}
        for n in numbers:
            groups.setdefault(n[i], set()).add(tuple(n[j] for j in varying if j != i))
        rest = next(iter(groups.values()))
        if len(rest) > 1 and all(g == rest for g in groups.values()):
            shown = sorted({p[2 * i + 1] for p in parts}, key=int)
            return listed([f"{labels[i]} {v}" if labels[i] == "tile" else labels[i] + v for v in shown], shown=4)
    return None


def _open_folder(path: Path, channel: int | None) -> VolumeReader:
    # Names starting with "." are hidden files, such as macOS's ._plane.tif resource forks.
    planes = (f for f in path.iterdir() if f.suffix.lower() in _TIFF_SUFFIXES and not f.name.startswith("."))
    files = sorted((f for f in planes if f.is_file()), key=lambda f: _natural_key(f.name))
    if not files:
        raise InputError(f"{path}: folder holds no .tif/.tiff planes; expected {_FORMATS}")
    templates = dict.fromkeys(re.sub(r"\d+", "#", f.name.casefold()) for f in files)
    if len(templates) > 1:  # GFP_z#.tif beside RFP_z#.tif, or a max projection beside the planes: not one stack
        raise InputError(
            f"{path}: the plane files are named in {len(templates)} ways ({listed(list(templates), shown=3)}, # for a number), "
            "as a folder of several channels or with other images beside the planes is; put one series' planes in a folder of its own"
        )
    if (series := _several_series([f.name for f in files])) is not None:
        raise InputError(
            f"{path}: the plane names repeat the same numbers for each of {series}, as a folder of several channels, "
            "tiles or time points does; put one series' planes in a folder of its own"
        )
    first = files[0]
    with _tiff_errors(f"{first}: not a readable TIFF"), tifffile.TiffFile(first) as tif:
        series = tif.series[0]
        plane = (tuple(series.shape), series.dtype)
        axes = series.axes
        voxel_size = _tiff_voxel_size(tif, series)
    _native_dtype(first, plane[1])
    layout, (depth, height, width) = _layout(first, plane[0], axes, channel)
    if depth != 1:
        raise InputError(f"{first}: a plane in a folder must be 2D, got axes {axes} with shape {plane[0]}")
    return _FolderVolume(path, files, layout, plane, (len(files), height, width), voxel_size=voxel_size)


def _import_zarr() -> ModuleType:
    try:
        import zarr
    except ImportError:
        raise InputError("reading Zarr needs zarr: pip install 'clarity-fast[dask]'") from None
    return zarr


def _open_zarr(path: Path, channel: int | None) -> VolumeReader:
    """A Zarr array, or the highest-resolution level of an OME-NGFF multiscale group."""
    zarr = _import_zarr()
    error = "not a readable Zarr store"
    with _library_errors(f"{path}: {error}"):
        node = zarr.open(str(path), mode="r")
        attrs = dict(node.attrs)
    if isinstance(node, zarr.Group):
        with _library_errors(f"{path}: malformed OME-NGFF multiscales metadata"):
            multiscales = _multiscales(attrs)
            if not multiscales:
                raise InputError(
                    f"{path}: Zarr group without OME-NGFF multiscales metadata; give the path of an array in it"
                )
            multiscale = multiscales[0]
            # The levels are meant to be listed finest first; a writer that lists them otherwise loses no resolution.
            levels = [(dataset, level) for dataset in multiscale["datasets"] if (level := _level(node, dataset)) is not None]
            if not levels:
                raise InputError(f"{path}: none of the OME-NGFF levels {[d.get('path') for d in multiscale['datasets']]} is in the store")
            dataset, array = max(levels, key=lambda level: math.prod(level[1].shape))
            axes, voxel_size = _ngff_axes_and_voxel_size(multiscale, dataset, array.ndim)
    elif (level := _ngff_level(zarr, path)) is not None:  # one level of an OME-NGFF group, named by its path
        array = node
        axes, voxel_size = _ngff_axes_and_voxel_size(*level, array.ndim)
    else:
        array = node
        axes = _named_axes(array) or _assumed_axes(path, array.shape)
        voxel_size = _attrs_voxel_size(attrs)
    if len(axes) != array.ndim:
        raise InputError(f"{path}: {array.ndim}D Zarr array; expected 2D (y, x), 3D (z, y, x), 4D (c, z, y, x) or 5D (t, c, z, y, x)")
    layout, shape = _layout(path, array.shape, axes, channel)
    return _ArrayVolume(path, array, layout, shape, voxel_size=voxel_size, error=error)


def _multiscales(attrs: dict[str, Any]) -> Any:
    """A group's OME-NGFF multiscales list: NGFF 0.4 keeps it at the top of the attributes, 0.5 under `ome`."""
    return attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")


def _level(group: Any, dataset: dict[str, Any]) -> Any:
    """A multiscale level's array, None where the store lacks it (a partial copy, a pyramid still being written)."""
    try:
        return group[dataset["path"]]
    except KeyError:
        return None


def _ngff_level(zarr: ModuleType, path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The multiscale and dataset entries of the OME-NGFF group above an array that is one of its levels, if any."""
    try:
        attrs = dict(zarr.open_group(str(path.parent), mode="r").attrs)
        multiscale = _multiscales(attrs)[0]
        return multiscale, next(d for d in multiscale["datasets"] if str(d["path"]).strip("/") == path.name)
    except Exception:  # no group above, no multiscales, or not one of its levels: a plain array
        return None


def _named_axes(array: Any) -> str | None:
    """Axis letters from a Zarr array's own axis names (v3 dimension_names, or xarray's _ARRAY_DIMENSIONS in v2);
    None where it has none, or any name is not one of z, y, x, c, t (channel, time)."""
    names = getattr(getattr(array, "metadata", None), "dimension_names", None) or array.attrs.get("_ARRAY_DIMENSIONS")
    if not names or len(names) != array.ndim or not all(isinstance(name, str) and name for name in names):
        return None
    letters = [_AXIS_LETTERS.get(name.strip().lower()) for name in names]
    if None in letters:  # xarray's dim_0, dim_1, ... or a name of one's own: they say nothing about the order
        return None
    return "".join(letters)


def _ngff_axes_and_voxel_size(
    multiscale: dict[str, Any], dataset: dict[str, Any], ndim: int
) -> tuple[str, VoxelSize | None]:
    """Axis letters from NGFF `axes` (names or dicts) and the z, y, x scale in micrometres (None without units)."""
    named = multiscale.get("axes")
    if named is None:
        return _DEFAULT_AXES.get(ndim, ""), None
    entries = [entry if isinstance(entry, dict) else {"name": entry} for entry in named]
    names = [str(entry["name"]).lower() for entry in entries]
    # by name (c, channel, ...), else by NGFF type: a channel axis may be named anything ("wavelength", say)
    axes = "".join(_AXIS_LETTERS.get(name) or _NGFF_TYPES.get(str(entry.get("type", "")).lower(), "Q") for name, entry in zip(names, entries))
    scale, scaled = [1.0] * len(names), False
    for level, transforms in ((True, dataset.get("coordinateTransformations")), (False, multiscale.get("coordinateTransformations"))):
        for transform in transforms or ():
            if transform.get("type") != "scale":
                continue
            if len(transform.get("scale") or ()) != len(names):  # in a file (`path`), or not one number per axis
                return axes, None
            scale, scaled = [a * float(b) for a, b in zip(scale, transform["scale"])], scaled or level
    if not scaled or not {"z", "y", "x"} <= set(names):  # every level must give its scale: without one, no size is known
        return axes, None
    sizes = []
    for axis in "zyx":
        entry = entries[names.index(axis)]
        factor = _MICROMETRES_PER_UNIT.get(str(entry.get("unit")).lower())
        if factor is None:  # no unit (NGFF allows it: a scale in pixels, say) or one we do not know: not a size
            return axes, None
        sizes.append(scale[names.index(axis)] * factor)
    return axes, _positive_voxel_size(sizes)


def _attrs_voxel_size(attrs: dict[str, Any]) -> VoxelSize | None:
    """A plain array carries a voxel size only as an explicit `voxel_size` attribute (z, y, x µm)."""
    value = attrs.get("voxel_size")
    try:
        return _positive_voxel_size([float(v) for v in value]) if value is not None else None
    except (TypeError, ValueError):
        return None


def _assumed_axes(name: object, shape: Sequence[int]) -> str:
    """Axis names for an array that carries none (.npy, a plain Zarr array): OME-NGFF's order, (t, c,) z, y, x,
    with one warning where another axis looks more like the channels (a z, c, y, x or z, y, x, c array would
    otherwise be read silently as planes of the wrong axes)."""
    axes = _DEFAULT_AXES.get(len(shape), "")
    if "C" in axes:
        c = axes.index("C")
        likely = [i for i, n in enumerate(shape) if i != c and 1 < n <= _FEW_CHANNELS < shape[c]]  # a length-1 axis is none
        if likely:
            log.warning(
                "%s: an array without axis names is read as %s (shape %s), but axis %d has %d entries against the "
                "channel axis's %d and looks like the channels; if so, move that axis first (numpy.moveaxis) and save it again",
                name, ", ".join(axes.lower()), tuple(shape), likely[0], shape[likely[0]], shape[c],
            )
    return axes


def _open_npy(path: Path, channel: int | None) -> VolumeReader:
    error = "not a readable .npy file"
    with _library_errors(f"{path}: {error}"):
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    if not isinstance(array, np.ndarray):
        raise InputError(f"{path}: {error} (holds an archive, not one array)")
    _native_dtype(path, array.dtype)
    axes = _assumed_axes(path, array.shape)
    if len(axes) != array.ndim:
        raise InputError(f"{path}: {array.ndim}D array; expected 2D (y, x), 3D (z, y, x), 4D (c, z, y, x) or 5D (t, c, z, y, x)")
    layout, shape = _layout(path, array.shape, axes, channel)
    return _ArrayVolume(path, array, layout, shape, voxel_size=None, error=error)


def write_tiff(
    path: str | os.PathLike[str],
    data: np.ndarray | Iterable[np.ndarray],
    *,
    voxel_size: VoxelSize | None = None,
    compression: str | None = None,
    shape: tuple[int, int, int] | None = None,
    dtype: Any = None,
) -> None:
    """Write a (z, y, x) TIFF atomically that `open_volume` reads back with the same voxel size.

    `data` is a 2D/3D array, or an iterable of 2D planes or 3D slabs (then `shape` and `dtype` are
    required, and only one block is held in memory at a time). uint8/uint16/float32 volumes below 4 GB become
    ImageJ hyperstacks (Fiji opens them directly); the rest become OME-TIFF (BigTIFF when large).
    """
    if compression not in (None, "zlib"):
        raise InputError(f"{path}: unsupported compression {compression!r}; use None or 'zlib'")
    voxel = _check_voxel_size(path, voxel_size)
    if isinstance(data, np.ndarray):
        if data.ndim not in (2, 3):
            raise InputError(f"{path}: cannot write a {data.ndim}D array as a (z, y, x) volume")
        planes: np.ndarray | Iterator[np.ndarray] = data.reshape((1, *data.shape)) if data.ndim == 2 else data
        out_shape = tuple(planes.shape)
        out_dtype = _writable_dtype(path, data.dtype)
        if (shape is not None and tuple(shape) != out_shape) or (dtype is not None and np.dtype(dtype) != out_dtype):
            raise InputError(f"{path}: shape {shape} / dtype {dtype} contradict the array's {out_shape} {out_dtype}")
    else:
        if shape is None or dtype is None:
            raise InputError(f"{path}: writing from an iterable needs shape and dtype")
        out_shape = tuple(int(n) for n in shape)
        if len(out_shape) != 3:
            raise InputError(f"{path}: shape must be (z, y, x), got {shape}")
        out_dtype = _writable_dtype(path, dtype)
        planes = _checked_planes(path, data, out_shape, out_dtype)
    if 0 in out_shape:
        raise InputError(f"{path}: cannot write an empty volume (shape {out_shape})")
    bigtiff = math.prod(out_shape) * out_dtype.itemsize > _CLASSIC_TIFF_LIMIT
    # tifffile misreads ImageJ stacks one pixel wide as 2D: those go to OME-TIFF like the rest.
    imagej = out_dtype in _IMAGEJ_DTYPES and not bigtiff and out_shape[2] > 1
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=bigtiff, imagej=imagej, ome=not imagej) as writer:
            writer.write(
                planes,
                shape=out_shape,
                dtype=out_dtype,
                photometric="minisblack",
                compression=compression,
                **_tiff_metadata(voxel, imagej=imagej),
            )
        if not isinstance(planes, np.ndarray):
            for _ in planes:  # planes beyond shape[0] raise here, before the file is renamed into place
                pass


def _check_voxel_size(path: object, voxel_size: Sequence[float] | None) -> VoxelSize | None:
    if voxel_size is None:
        return None
    try:
        checked = _positive_voxel_size([float(v) for v in voxel_size])
    except (TypeError, ValueError):
        checked = None
    if checked is None:
        raise InputError(f"{path}: voxel size must be three positive numbers (z, y, x) in µm, got {voxel_size!r}")
    return checked


def _checked_planes(
    path: object, blocks: Iterable[np.ndarray], shape: tuple[int, ...], dtype: np.dtype
) -> Iterator[np.ndarray]:
    """Yield 2D planes from 2D planes or 3D slabs, checking each against `shape` and `dtype`."""
    count = 0
    for number, block in enumerate(blocks):
        block = np.asarray(block)
        if block.ndim not in (2, 3) or block.shape[-2:] != shape[1:] or block.dtype != dtype:
            raise InputError(
                f"{path}: block {number} has shape {block.shape} and type {block.dtype}; "
                f"expected planes of {shape[1:]} and type {dtype}"
            )
        for plane in block.reshape((-1, *shape[1:])):
            if count == shape[0]:
                raise InputError(f"{path}: data hold more than the {shape[0]} planes given by shape")
            count += 1
            yield plane
    if count < shape[0]:
        raise InputError(f"{path}: data hold {count} planes but shape says {shape[0]}")


def _tiff_metadata(voxel_size: VoxelSize | None, *, imagej: bool) -> dict[str, Any]:
    """Keyword arguments for TiffWriter.write that store the axes and voxel size."""
    if imagej:
        if voxel_size is None:
            return {"metadata": {"axes": "ZYX"}}
        z, y, x = voxel_size
        return {"resolution": (1 / x, 1 / y), "metadata": {"axes": "ZYX", "spacing": z, "unit": "um"}}
    metadata: dict[str, Any] = {"axes": "ZYX"}
    if voxel_size is not None:
        for axis, size in zip("ZYX", voxel_size):
            metadata[f"PhysicalSize{axis}"] = size
            metadata[f"PhysicalSize{axis}Unit"] = "\u00b5m"
    return {"metadata": metadata}
