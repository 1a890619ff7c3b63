"""Point lists (cell positions) as CSV or brainglobe cellfinder / ImageJ CellCounter XML.

Coordinates are 0-based (z, y, x) voxel indices of the volume they annotate. XML Type 2 is a cell
(label 1) and every other type a non-cell (label 0), as in cellfinder.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clarity_fast.errors import InputError
from clarity_fast.io.atomic import atomic_path
from clarity_fast.messages import separator_hint

log = logging.getLogger("clarity_fast")

_FORMATS = ("csv", "xml")
SCORE_ALIASES = ("probability", "response")  # detections: the CNN's probability; candidates: the prefilter's response
_CELL_TYPE = 2
_NON_CELL_TYPE = 1


@dataclass(frozen=True, eq=False)
class Points:
    """N points with optional classifier score and cell (1) / non-cell (0) label; arrays are read-only copies."""

    zyx: np.ndarray
    score: np.ndarray | None = None
    label: np.ndarray | None = None

    def __post_init__(self) -> None:
        zyx = _frozen(self.zyx, np.float64)
        if zyx.ndim != 2 or zyx.shape[1] != 3:
            if zyx.size == 0:
                zyx = _frozen(np.empty((0, 3)), np.float64)
            else:
                raise InputError(f"points: zyx must have shape (N, 3), got {zyx.shape}")
        object.__setattr__(self, "zyx", zyx)
        for name, dtype in (("score", np.float64), ("label", np.int64)):
            value = getattr(self, name)
            if value is None:
                continue
            array = _frozen(value, dtype)
            if array.shape != (len(zyx),):
                raise InputError(f"points: {name} must have shape ({len(zyx)},), got {array.shape}")
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return len(self.zyx)

    @property
    def cells(self) -> np.ndarray:
        """The positions labelled cells (all of them where there are no labels)."""
        return self.zyx if self.label is None else self.zyx[self.label == 1]

    @property
    def cell_scores(self) -> np.ndarray | None:
        """The scores of `cells`, in their order (None without scores)."""
        return self.score if self.score is None or self.label is None else self.score[self.label == 1]


_NAPARI_AXES = {"axis-0": "z", "axis-1": "y", "axis-2": "x"}


def _frozen(value: Any, dtype: type) -> np.ndarray:
    array = np.array(value, dtype=dtype)
    array.flags.writeable = False
    return array


def points_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """csv or xml: `format` where given, else the file's suffix. Commands call it before any work, so a name that
    cannot be written or read back fails at once, not after hours of detection."""
    suffix = Path(path).suffix.lower().lstrip(".")
    format = None if format is None else format.lower()  # --format XML, as a .XML name is taken
    if Path(path).is_dir():
        raise InputError(f"{path} is a folder, not a .csv or .xml points file")
    if format is not None:
        if format not in _FORMATS:
            raise InputError(f"--format must be csv or xml, got {format!r}")
        if suffix in _FORMATS and suffix != format:  # read back by its suffix, it would not parse
            raise InputError(f"{path}: --format {format} but the name ends .{suffix}; name it {Path(path).stem}.{format}")
        return format
    chosen = suffix
    if not chosen:
        raise InputError(f"{path}: no suffix to tell the points format by; name it .csv or .xml")
    if chosen not in _FORMATS:
        raise InputError(f"{path}: unsupported points format {chosen!r}; use a .csv or .xml file")
    return chosen


def read_points(path: str | os.PathLike[str], *, shape: tuple[int, int, int] | None = None) -> Points:
    """Read a CSV or CellCounter XML point list; with `shape`, every point must lie inside the volume."""
    path = Path(path)
    reader = _read_csv if points_format(path) == "csv" else _read_xml
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return reader(path, shape)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text file ({exc.reason})") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _number(path: Path, where: str, name: str, text: str | None) -> float:
    """Parse one finite number, or fail with the file and place in the message."""
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        raise InputError(f"{path} {where}: {name} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise InputError(f"{path} {where}: {name} must be a finite number, got {text!r}")
    return value


def _check_inside(
    path: Path, where: str, zyx: tuple[float, float, float], shape: tuple[int, int, int] | None
) -> None:
    # Half a voxel of slack each side: a point on the edge voxel's far half (95.9 of 96) rounds to n in a whole-voxel
    # XML, and napari places points on voxel 0 down to -0.5.
    if shape is not None and not all(-0.5 <= c < n + 0.5 for c, n in zip(zyx, shape)):
        z, y, x = zyx
        raise InputError(
            f"{path} {where}: point (z={z:g}, y={y:g}, x={x:g}) lies outside the volume of shape {tuple(shape)}"
        )


def _read_csv(path: Path, shape: tuple[int, int, int] | None) -> Points:
    with path.open(newline="", encoding="utf-8-sig") as file:
        rows = csv.reader(file)
        header = next(rows, None)
        if header is None:
            raise InputError(f"{path}: empty file; expected a header row with columns z, y, x")
        names = [name.strip().lower() for name in header]
        if "z" not in names and "axis-2" in names:  # a napari points layer saved as CSV: axis-0, -1, -2 are z, y, x
            if "axis-3" in names:
                raise InputError(f"{path}: napari points with more than three axes {header}; save a z, y, x layer")
            names = [_NAPARI_AXES.get(name, name) for name in names]
        columns = {name: names.index(name) for name in ("z", "y", "x", "score", "label") if name in names}
        for alias in SCORE_ALIASES:
            if "score" not in columns and alias in names:
                columns["score"] = names.index(alias)
        for name in ("z", "y", "x"):
            if name not in columns:
                raise InputError(f"{path}: no '{name}' column in the header {header}{separator_hint(header)}; need z, y and x")
        for index in columns.values():
            if names.count(names[index]) > 1:
                raise InputError(f"{path}: {names.count(names[index])} '{names[index]}' columns in the header {header}; which one is meant?")
        zyx, score, label = [], [], []
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue
            where = f"line {rows.line_num}"
            if len(row) < len(header):
                raise InputError(f"{path} {where}: {len(row)} values, the header has {len(header)} columns")
            point = tuple(_number(path, where, name, row[columns[name]]) for name in ("z", "y", "x"))
            _check_inside(path, where, point, shape)
            zyx.append(point)
            if "score" in columns:
                score.append(_number(path, where, "score", row[columns["score"]]))
            if "label" in columns:
                label.append(_label(path, where, _number(path, where, "label", row[columns["label"]])))
    return Points(
        zyx=np.array(zyx, dtype=np.float64).reshape(-1, 3),
        score=np.array(score, dtype=np.float64) if "score" in columns else None,
        label=np.array(label, dtype=np.int64) if "label" in columns else None,
    )


def _label(path: Path, where: str, value: float) -> int:
    if value not in (0, 1):
        raise InputError(f"{path} {where}: label must be 0 (non-cell) or 1 (cell), got {value:g}")
    return int(value)


def _read_xml(path: Path, shape: tuple[int, int, int] | None) -> Points:
    """CellCounter XML as written by cellfinder: Marker_Type blocks of Markers with MarkerX/Y/Z. Type 2 markers are
    cells and the others not (cellfinder's rejected candidates are Type 1), unless all markers share one type in a
    file of Fiji's layout (types beyond 1 and 2). z counts from 0, as cellfinder writes it, but from 1 in Fiji's
    layout: its Cell Counter records the ImageJ slice number."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{path}: malformed XML ({exc})") from exc
    if root.tag != "CellCounter_Marker_File":
        raise InputError(f"{path}: not a CellCounter marker file (root element <{root.tag}>)")
    zyx, label, types, blocks, places = [], [], set(), set(), []
    for block in root.iter("Marker_Type"):
        type_text = block.findtext("Type")
        marker_type = _number(path, "Marker_Type", "Type", type_text)
        blocks.add(marker_type)
        for number, marker in enumerate(block.iter("Marker"), start=1):
            where = f"marker {number} of Type {type_text.strip() if type_text else ''}"
            zyx.append(tuple(_number(path, where, tag, marker.findtext(tag)) for tag in ("MarkerZ", "MarkerY", "MarkerX")))
            places.append(where)
            label.append(1 if marker_type == _CELL_TYPE else 0)
            types.add(marker_type)
    # Fiji's Cell Counter writes eight types (empty ones included) and marks cells with whichever is selected, often
    # Type 1, at the ImageJ slice number (from 1). cellfinder writes Types 1 and 2 only (a block only where it has
    # markers), z from 0, and means what the types say, even when every candidate was rejected, as clarity-fast does.
    fiji = not blocks <= {_NON_CELL_TYPE, _CELL_TYPE}
    zyx = np.array(zyx, dtype=np.float64).reshape(-1, 3)
    if fiji and len(zyx):
        if zyx[:, 0].min() >= 1:
            zyx[:, 0] -= 1
        else:
            log.warning(f"{path}: a file of Fiji's Cell Counter layout (types beyond 1 and 2) holds a marker at MarkerZ 0, "
                        "so its z is read as counted from 0, not as Fiji's slice numbers, which count from 1")
    for point, where in zip(zyx, places):
        _check_inside(path, where, tuple(point), shape)
    if len(types) == 1 and fiji:
        label = [1] * len(label)
    elif label and not any(label):
        used = ", ".join(f"{t:g}" for t in sorted(types))
        log.warning(f"{path}: none of the {len(label)} markers is Type {_CELL_TYPE} (a cell in cellfinder's convention; types used: "
                    f"{used}), so all are read as non-cells; if they are cells, mark them Type {_CELL_TYPE} or give a CSV")
    return Points(zyx=zyx, label=np.array(label, dtype=np.int64))


def write_points(
    path: str | os.PathLike[str],
    points: Points,
    *,
    format: str | None = None,
    image_filename: str = "volume.tif",
    score_name: str = "score",
) -> None:
    """Write points atomically as CSV (format from the suffix unless given) or CellCounter XML.

    `score_name` heads the CSV's score column ("score", or one of SCORE_ALIASES).
    XML, like cellfinder's, has no scores, whole-voxel coordinates and points grouped by type
    (non-cells first); unlabelled points are written as cells.
    """
    path = Path(path)
    if points_format(path, format) == "csv":
        text = "".join(_csv_lines(points, score_name))
    else:
        text = _xml_text(points, image_filename)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")


def _csv_lines(points: Points, score_name: str) -> Iterator[str]:
    """Fixed number formats, so the same points always give the same bytes."""
    optional = ((score_name, points.score), ("label", points.label))
    yield ",".join(["z", "y", "x"] + [name for name, values in optional if values is not None]) + "\n"
    for i, (z, y, x) in enumerate(points.zyx):
        line = f"{z:.3f},{y:.3f},{x:.3f}"
        if points.score is not None:
            line += f",{points.score[i]:.6g}"
        if points.label is not None:
            line += f",{points.label[i]:d}"
        yield line + "\n"


def _xml_text(points: Points, image_filename: str) -> str:
    """Both Marker_Type blocks, non-cells (Type 1) first, coordinates rounded to whole voxels."""
    root = ET.Element("CellCounter_Marker_File")
    ET.SubElement(ET.SubElement(root, "Image_Properties"), "Image_Filename").text = image_filename
    data = ET.SubElement(root, "Marker_Data")
    ET.SubElement(data, "Current_Type").text = str(_NON_CELL_TYPE)
    is_cell = np.ones(len(points), dtype=bool) if points.label is None else points.label == 1
    rounded = np.rint(points.zyx).astype(np.int64)
    for marker_type, members in ((_NON_CELL_TYPE, ~is_cell), (_CELL_TYPE, is_cell)):
        block = ET.SubElement(data, "Marker_Type")
        ET.SubElement(block, "Type").text = str(marker_type)
        for z, y, x in rounded[members]:
            marker = ET.SubElement(block, "Marker")
            for tag, value in (("MarkerX", x), ("MarkerY", y), ("MarkerZ", z)):
                ET.SubElement(marker, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
