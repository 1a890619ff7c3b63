"""Atomic output: write to a temporary file beside the target, rename only on success.

A crash, an interrupt or a full disk then never leaves a partial file, and an existing
output stays untouched until the new one is complete; the data reach the disk before the rename.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from clarity_fast.errors import OutputError

_UMASK = os.umask(0)
os.umask(_UMASK)


def check_output_path(path: Path) -> Path:
    """Fail early, with one line, if `path` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}")
    if path.is_dir():
        raise OutputError(f"output path is a folder, not a file: {path}")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` if the block succeeds."""
    target = check_output_path(Path(path))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        _sync(tmp, folder=False)
        os.replace(tmp, target)
        _sync(target.parent, folder=True)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise OutputError(f"disk full while writing {target}") from exc
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike[str]) -> Iterator[list[Path]]:
    """atomic_path for several outputs that belong together (a model, its log and curve): temporary paths, all
    renamed into place once the block succeeds, none if it fails, so an interrupt between two writes cannot
    leave a new log beside an old model."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(path)) for path in paths]


def _sync(path: Path, *, folder: bool) -> None:
    """Flush to disk a file's data (before it is renamed into place: a rename can reach the disk before the data it
    names, and a power cut would then leave an empty output, or an empty checkpoint that --resume trusts) or a
    folder's entries (after, so that the rename itself survives). A file that fails to sync (EIO, say) fails the
    write while the old output is still in place; file systems that cannot sync, and any folder that will not (the
    output is already in place), are let be. Files open for writing: Windows syncs no other descriptor."""
    try:
        fd = os.open(path, os.O_RDONLY if folder else os.O_RDWR)
    except OSError:  # nothing we may open this way (a writer that made a folder, say): nothing to flush
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if not folder and exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def undone_on_failure(*paths: Path) -> Iterator[None]:
    """If the block fails (an error, Ctrl-C), remove each of `paths` that did not exist before it, with the folders
    above it that did not either: a file, or a folder with all it holds (the block made all of it). An output of
    several files (a simulated brain, the demo's folder, a checkpoint) left half made is a partial output too; what
    was there before is left alone."""
    new = list(dict.fromkeys(_outermost_missing(Path(p)) for p in paths if not Path(p).exists()))  # parents made too
    try:
        yield
    except BaseException:
        for path in new:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        raise


def _outermost_missing(path: Path) -> Path:
    """The highest of path and its folders that does not exist yet: all of it is made by whatever writes path."""
    while not path.parent.exists() and path.parent != path:
        path = path.parent
    return path


def make_output_dir(path: Path) -> Path:
    """Create an output folder (and its parents), or fail with one line."""
    if Path(path).is_file():
        raise OutputError(f"{path} is a file; give a folder for the outputs")
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {path}: {exc.strerror or exc}") from exc
    return Path(path)


def write_json(path: str | os.PathLike[str], data: object) -> None:
    """Write `data` atomically as strict JSON, an undefined number (NaN, infinity) as null: jq, JavaScript and
    other strict readers refuse the bare NaN Python's json module writes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite_or_none(data), indent=2, allow_nan=False) + "\n")


def _finite_or_none(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value
