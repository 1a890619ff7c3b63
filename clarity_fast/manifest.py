"""Manifests: CSV lists of annotated volumes (`volume,points[,group][,voxel_size][,cell_diameter][,annotations][,channel][,region]`),
paths relative to the file, lines starting with # ignored. Per-volume voxel sizes and cell diameters (µm) let one
model learn from several datasets; a region names the annotated block of a larger volume, so that a block of a
whole brain is annotated and trained on in place."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from clarity_fast.errors import InputError
from clarity_fast.messages import separator_hint
from clarity_fast.region import Region, parse_region
from clarity_fast.settings import VoxelSize, parse_positive, parse_triple


@dataclass(frozen=True)
class Entry:
    """One annotated volume; `group` keeps neighbouring volumes of one brain on one side of a split."""

    volume: Path
    points: Path
    name: str  # the volume as the manifest writes it: unique per row, unlike the file name
    group: str
    voxel_size: VoxelSize | None
    cell_diameter: float | None = None
    partial: bool = False  # `annotations` column "partial": not every cell in the volume is annotated
    channel: int | None = None  # of a multi-channel volume
    region: Region | None = None  # the annotated block; None: the whole volume
    line: str = ""  # "manifest.csv line 3", for messages


COLUMNS = ("volume", "points", "group", "voxel_size", "cell_diameter", "annotations", "channel", "region")


def read_manifest(path: Path) -> list[Entry]:
    """Read and check a manifest: required columns, existing files, at least one row."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such manifest file")
    try:
        return _read(path)
    except UnicodeDecodeError as exc:  # a spreadsheet's own encoding (Latin-1, say)
        raise InputError(f"{path}: not UTF-8 text ({exc.reason}); save the manifest as UTF-8 CSV") from None


def _read(path: Path) -> list[Entry]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        records = [(reader.line_num, row) for row in reader]  # the line a record ends on, as messages name it
    records = [(n, row) for n, row in records if not (row and row[0].lstrip().startswith("#"))]  # comments
    columns = [c.strip().lower() for c in records[0][1]] if records else []
    for needed in ("volume", "points"):
        if needed not in columns:
            raise InputError(f"{path}: no '{needed}' column{separator_hint(columns)}; a manifest needs volume,points[,group][,voxel_size][,cell_diameter][,annotations][,channel][,region]")
    unknown = [c for c in columns if c and c not in COLUMNS]
    if unknown:  # a misspelt voxel_size would otherwise be dropped, and the volume read at another scale
        raise InputError(f"{path}: unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; the columns are {', '.join(COLUMNS)}")
    entries, lines = [], {}
    for number, values in records[1:]:
        line = f"{path} line {number}"
        if not any(v.strip() for v in values):  # a blank line, or a row of empty fields as spreadsheets write
            continue
        if len(values) > len(columns):
            raise InputError(
                f"{line}: {len(values) - len(columns)} more value(s) than the header has columns; "
                "write a voxel size as 4x2x2 (a comma separates columns)"
            )
        row = {k: v.strip() for k, v in zip(columns, values) if k}
        for needed in ("volume", "points"):
            if not row.get(needed):
                raise InputError(f"{line}: no {needed} given")
        volume, points = path.parent / row["volume"], path.parent / row["points"]
        for file in (volume, points):
            if not file.exists():
                hint = " (write paths with / , not \\)" if "\\" in str(file) else ""
                raise InputError(f"{line}: {file} does not exist{hint}")
        voxel, diameter, channel = row.get("voxel_size"), row.get("cell_diameter"), row.get("channel")
        region = parse_region(row["region"], name=f"{line}: region") if row.get("region") else None
        for seen, other in lines.setdefault(volume.resolve(), []):  # a cell counted twice could land on both sides of a split
            if region is None or other is None:
                raise InputError(f"{line}: {row['volume']} is listed on line {seen} too; list each volume once (all its cells in one points file), or give each row a region of its own")
            if region.overlaps(other):
                raise InputError(f"{line}: region {region.text!r} of {row['volume']} overlaps line {seen}'s {other.text!r}; annotated blocks of one volume must not share voxels")
        lines[volume.resolve()].append((number, region))
        entries.append(
            Entry(
                volume=volume,
                points=points,
                name=f"{row['volume']}[{region.text}]" if region else row["volume"],
                group=row.get("group") or row["volume"],
                voxel_size=parse_triple(voxel, name=f"{line}: voxel_size") if voxel else None,
                cell_diameter=parse_positive(diameter, name=f"{line}: cell_diameter") if diameter else None,
                partial=_annotations(row.get("annotations"), line),
                channel=_channel(channel, line) if channel else None,
                region=region,
                line=line,
            )
        )
    if not entries:
        raise InputError(f"{path}: the manifest lists no volumes")
    return entries


def _annotations(value: str | None, line: str) -> bool:
    """True for partial annotations; complete is the default."""
    value = (value or "complete").lower()
    if value not in ("complete", "partial"):
        raise InputError(f"{line}: annotations must be complete or partial, got {value!r}")
    return value == "partial"


def _channel(value: str, line: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise InputError(f"{line}: channel must be a whole number >= 0, got {value!r}")
    return int(value)
