"""The `clarity-fast` command line: parse, call the library, turn the project's errors into one line."""

from __future__ import annotations

import logging
import platform
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import click
import numpy as np
import typer

from clarity_fast import __version__
from clarity_fast.errors import ClarityError, InputError
from clarity_fast.settings import PrefilterSettings, Scale, parse_triple

app = typer.Typer(
    name="clarity-fast",
    help="Fast neuron detection in cleared whole-brain microscopy volumes.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

VoxelSizeOption = Annotated[
    Optional[str], typer.Option("--voxel-size", help="Voxel size Z,Y,X in µm (or one number for all axes).")
]
CellDiameterOption = Annotated[float, typer.Option("--cell-diameter", help="Typical cell (soma) diameter in µm.")]
ChannelOption = Annotated[Optional[int], typer.Option("--channel", help="Channel to use in multi-channel input.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"clarity-fast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """Fast neuron detection in cleared whole-brain microscopy volumes."""


@app.command()
def info() -> None:
    """Print versions, compute threads and the onnxruntime providers of this installation."""
    import numba

    from clarity_fast.export.providers import built_providers, cuda_device_count

    lines = [
        f"clarity-fast {__version__}",
        f"python {platform.python_version()} ({platform.machine()}, {platform.system()})",
        f"numba {numba.__version__}: {numba.get_num_threads()} threads",
    ]
    try:
        import onnxruntime

        gpus = cuda_device_count()
        providers = ", ".join(built_providers())
        lines.append(f"onnxruntime {onnxruntime.__version__}: providers {providers}; CUDA devices: {gpus}")
    except ImportError:
        lines.append("onnxruntime: not installed")
    try:
        import torch

        lines.append(f"torch {torch.__version__}: {torch.get_num_threads()} threads, CUDA available: {torch.cuda.is_available()}")
    except ImportError:
        lines.append("torch: not installed (training needs: pip install 'clarity-fast[train]')")
    typer.echo("\n".join(lines))


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write volume.tif and cells.csv into (created).")],
    shape: Annotated[str, typer.Option("--shape", help="Volume shape Z,Y,X in voxels.")] = "64,256,256",
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same volume.")] = 0,
    difficulty: Annotated[float, typer.Option("--difficulty", help="0 (easy) .. 1 (hard: dim cells, much clutter).")] = 0.5,
    brains: Annotated[int, typer.Option("--brains", help="Write N brains of varied imaging conditions + manifest.csv.")] = 0,
    voxel_size: VoxelSizeOption = "4,2,2",
    cell_diameter: CellDiameterOption = 12.0,
) -> None:
    """Simulate cleared-brain volumes with ground-truth cell centres."""
    from clarity_fast.simulate import SimulationSettings, write_brain, write_brains

    settings = SimulationSettings(
        shape=parse_triple(shape, name="--shape", integer=True),
        scale=Scale(voxel_size=parse_triple(voxel_size, name="--voxel-size"), cell_diameter=cell_diameter),
        difficulty=difficulty,
        seed=seed,
    )
    if brains < 0:
        raise InputError(f"--brains must be >= 0, got {brains}")
    if brains:
        manifest = write_brains(out_dir, settings=settings, n=brains)
        typer.echo(f"wrote {brains} brains of shape {settings.shape} and {manifest}")
    else:
        brain = write_brain(out_dir, settings=settings)
        typer.echo(
            f"wrote {out_dir / 'volume.tif'} (shape {settings.shape}, voxel {settings.scale.voxel_size} µm, "
            f"difficulty {settings.difficulty}) and {out_dir / 'cells.csv'} ({len(brain.cells)} cells)"
        )


@app.command()
def candidates(
    volume: Annotated[Path, typer.Argument(help="Volume: TIFF, folder of TIFF planes, Zarr/OME-Zarr or .npy.")],
    out: Annotated[Path, typer.Option("--out", help="CSV to write: z,y,x,response (voxels, 0-based).")],
    cell_diameter: CellDiameterOption = 12.0,
    voxel_size: VoxelSizeOption = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Keep maxima whose response exceeds this many local noise units.")
    ] = PrefilterSettings.threshold,
    slab_depth: Annotated[int, typer.Option("--slab-depth", help="Planes processed at once (memory vs. speed).")] = 32,
    channel: ChannelOption = None,
) -> None:
    """Propose cell centres with the prefilter (stage 1 of detect), to check it on your data."""
    import time

    from clarity_fast.candidates import Candidates, iter_slabs
    from clarity_fast.io.atomic import check_output_path
    from clarity_fast.io.points import Points, write_points
    from clarity_fast.io.volumes import open_volume
    from clarity_fast.progress import progress_bar, step
    from clarity_fast.settings import resolve_voxel_size

    check_output_path(out)
    start = time.perf_counter()
    with open_volume(volume, channel=channel) as reader:
        user = parse_triple(voxel_size, name="--voxel-size") if voxel_size else None
        scale = Scale(voxel_size=resolve_voxel_size(from_file=reader.voxel_size, from_user=user, source=volume), cell_diameter=cell_diameter)
        settings = PrefilterSettings(scale=scale, threshold=threshold, slab_depth=slab_depth)
        parts = []
        n_slabs = -(-reader.shape[0] // slab_depth)
        with progress_bar(total=n_slabs, description="candidates") as bar:
            for slab in iter_slabs(reader, settings=settings):
                parts.append(slab.candidates)
                step(bar, status=f"{sum(len(p) for p in parts)} found")
        found = Candidates.concat(parts)
        shape = reader.shape
    write_points(out, Points(zyx=found.zyx, score=found.response), score_name="response")
    seconds = time.perf_counter() - start
    typer.echo(
        f"{len(found)} candidates in {volume} {shape} at voxel {scale.voxel_size} µm, cell {cell_diameter} µm: "
        f"{seconds:.1f} s ({np.prod(shape) / seconds / 1e6:.1f} Mvoxel/s) -> {out}"
    )


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the simulated brain and its results.")] = Path("clarity-fast-demo"),
    shape: Annotated[str, typer.Option("--shape", help="Volume shape Z,Y,X in voxels.")] = "32,256,256",
    seed: Annotated[int, typer.Option("--seed")] = 1,
    difficulty: Annotated[float, typer.Option("--difficulty", help="0 (easy) .. 1 (hard).")] = 1.0,
) -> None:
    """Run the pipeline on a built-in simulated brain and score it against the ground truth."""
    from clarity_fast.demo import run_demo
    from clarity_fast.simulate import SimulationSettings

    settings = SimulationSettings(shape=parse_triple(shape, name="--shape", integer=True), seed=seed, difficulty=difficulty)
    for line in run_demo(out_dir=out_dir, settings=settings).lines():
        typer.echo(line)


def main() -> None:
    """Entry point: project errors become `error: <message>` and an exit code, never a traceback."""
    debug = "--debug" in sys.argv[1:]
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)
    try:
        code = app(standalone_mode=False)
    except ClarityError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug, not a user error: still one line unless --debug
        if debug:
            traceback.print_exc()
        typer.echo(f"error: internal error ({type(exc).__name__}: {exc}); rerun with --debug for details", err=True)
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)
