"""The `clarity-fast` command line: parse, call the library, turn the project's errors into one line."""

from __future__ import annotations

import platform
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import click
import typer

from clarity_fast import __version__
from clarity_fast.errors import ClarityError, InputError
from clarity_fast.settings import Scale, parse_triple

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


def main() -> None:
    """Entry point: project errors become `error: <message>` and an exit code, never a traceback."""
    debug = "--debug" in sys.argv[1:]
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
