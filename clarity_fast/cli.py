"""The `clarity-fast` command line: parse, call the library, turn the project's errors into one line."""

from __future__ import annotations

import logging
import platform
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import numpy as np
import typer

from clarity_fast import __version__
from clarity_fast.errors import ClarityError, InputError, ModelError, OutputError
from clarity_fast.model.config import DEFAULT_EPOCHS
from clarity_fast.settings import PrefilterSettings, Scale, parse_triple

if TYPE_CHECKING:
    from clarity_fast.model.start import StartingModel
    from clarity_fast.model.train import TrainSettings

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
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors (anywhere on the command line).")] = False,
) -> None:
    """Fast neuron detection in cleared whole-brain microscopy volumes."""
    # main() takes --debug off the command line wherever it stands (it must know before typer runs); declared for --help.


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

        from clarity_fast.export.model_file import resolve_model
        from clarity_fast.export.runtime import OnnxScorer

        gpus, built = cuda_device_count(), built_providers()
        lines.append(f"onnxruntime {onnxruntime.__version__}: providers {', '.join(built)}; CUDA devices: {gpus}")
        # Built in is not usable: TensorRT's provider is in every onnxruntime-gpu, its libraries often are not.
        auto = OnnxScorer(resolve_model("default")).provider
        lines.append(f"scoring with --device auto runs on: {auto} (tried with the built-in model)")
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
    size_spread: Annotated[
        float, typer.Option("--size-spread", help="Sd of the log of soma size around --cell-diameter, 0 to 0.5 (0.15: one population).")
    ] = 0.15,
    density: Annotated[
        float, typer.Option("--density", help="Labelled cells per mm³ on average (14000: dense; c-Fos: a few hundred to thousands).")
    ] = 14000.0,
    processes: Annotated[
        int, typer.Option("--processes", help="Dendrites leaving each soma, 0 to N each (a cytoplasmic label); 0: a short stub on some.")
    ] = 0,
) -> None:
    """Simulate cleared-brain volumes with ground-truth cell centres."""
    from clarity_fast.simulate import SimulationSettings, write_brain, write_brains

    settings = SimulationSettings(
        shape=parse_triple(shape, name="--shape", integer=True),
        scale=Scale(voxel_size=parse_triple(voxel_size, name="--voxel-size"), cell_diameter=cell_diameter),
        difficulty=difficulty,
        seed=seed,
        size_spread=size_spread,
        density=density,
        processes=processes,
    )
    if brains < 0:
        raise InputError(f"--brains must be >= 0, got {brains}")
    if brains:
        manifest = write_brains(out_dir, settings=settings, n=brains)
        typer.echo(f"wrote {brains} brain{'s' if brains > 1 else ''} of shape {settings.shape} and {manifest}")
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
    region: Annotated[
        Optional[str],
        typer.Option("--region", metavar="Z0:Z1xY0:Y1xX0:X1", help="Propose in the block Z0:Z1xY0:Y1xX0:X1 only (voxels, end exclusive, : for a whole axis), "
                     "reading just it and the prefilter's reach around it; positions stay in the whole volume's voxels."),
    ] = None,
) -> None:
    """Propose cell centres with the prefilter (stage 1 of detect), to check it on your data."""
    import time

    from clarity_fast.candidates import Candidates, iter_slabs, noise_gain, prefilter_reach
    from clarity_fast.cell_shape import axial_stretch
    from clarity_fast.io.atomic import check_output_path
    from clarity_fast.io.block import BlockReader, grown
    from clarity_fast.io.points import Points, points_format, write_points
    from clarity_fast.io.volumes import open_volume
    from clarity_fast.plane_levels import LevelledReader
    from clarity_fast.progress import progress_bar, step
    from clarity_fast.region import in_whole, parse_region
    from clarity_fast.run_detect import read_scale, scale_notes

    check_output_path(out)
    points_format(out)
    block = parse_region(region, name="--region") if region is not None else None
    start = time.perf_counter()
    with LevelledReader(open_volume(volume, channel=channel)) as whole:
        bounds = None if block is None else block.bounds(whole.shape, source=str(volume))  # the --region proposed in, checked first
        user = parse_triple(voxel_size, name="--voxel-size") if voxel_size else None
        reading = read_scale(whole, voxel_size=user, cell_diameter=cell_diameter, source=volume)
        parts, noise = [], reading.noise
        settings = PrefilterSettings(scale=reading.scale, threshold=threshold, slab_depth=slab_depth)
        reader = whole  # the voxels read
        if bounds is not None:  # with the prefilter's reach around the region, so that its candidates are the whole volume's there
            reader = BlockReader(whole, bounds=grown(bounds, shape=whole.shape, reach=np.asarray(prefilter_reach(settings))), name=block.text)
        n_slabs = -(-reader.shape[0] // slab_depth)
        with progress_bar(total=n_slabs, description="candidates") as bar:
            for slab in iter_slabs(reader, settings=settings, noise=noise):
                parts.append(slab.candidates)
                step(bar, status=f"{sum(len(p) for p in parts)} found")
        found = Candidates.concat(parts)
        shape, read = whole.shape, reader.shape
    if block is not None:
        zyx, keep = in_whole(found.zyx, origin=reader.origin, bounds=bounds)
        found = Candidates(zyx[keep], found.response[keep])
    write_points(out, Points(zyx=found.zyx, score=found.response), score_name="response")
    seconds = time.perf_counter() - start
    where = f"region {block.text} of " if block is not None else ""
    typer.echo(
        f"{len(found)} candidates in {where}{volume} {shape} at voxel {reading.voxel_size} µm, cell {cell_diameter} µm: "
        f"{seconds:.1f} s ({np.prod(read) / seconds / 1e6:.1f} Mvoxel/s) -> {out}"
    )
    gain = noise_gain(settings, noise=noise, planar=read[0] == 1)
    for line in scale_notes(blur=noise.blur, gain=gain, elongation=reading.elongation, stretch=axial_stretch(reading.elongation)):
        typer.echo(line)


@app.command()
def detect(
    volume: Annotated[Path, typer.Argument(help="Volume: TIFF, folder of TIFF planes, Zarr/OME-Zarr or .npy.")],
    model: Annotated[str, typer.Option("--model", help="'default' (built in) or an exported .onnx model.")] = "default",
    out: Annotated[Path, typer.Option("--out", help="Detections to write (CSV, or XML for a .xml name or --format xml); a .summary.json goes beside.")] = Path("cells.csv"),
    output_format: Annotated[
        str | None, typer.Option("--format", help="csv or xml (cellfinder / ImageJ CellCounter); default: from --out's suffix.")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Patches scored per call.")] = 4096,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Cell probability to accept (default: the model's).")] = None,
    prefilter_threshold: Annotated[
        Optional[float],
        typer.Option("--prefilter-threshold", help="Local noise units a candidate's response must exceed (default: the model's, 3 for the "
                     "built-in one). 2.5 finds more faint cells on clean backgrounds, for 1.4-2.5x the candidates to score; see the README."),
    ] = None,
    voxel_size: VoxelSizeOption = None,
    cell_diameter: Annotated[
        Optional[float], typer.Option("--cell-diameter", help="Cell (soma) diameter in µm (default: the model's training cells).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or tensorrt.")] = "auto",
    slab_depth: Annotated[int, typer.Option("--slab-depth", help="Planes prefiltered at once (memory vs. speed).")] = 32,
    preview: Annotated[Optional[Path], typer.Option("--preview", help="Write a max-projection PNG with detections circled.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last finished slab.")] = False,
    channel: ChannelOption = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Run on this Dask cluster (tcp://HOST:PORT).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Run on a local Dask cluster of N processes.")] = None,
    adapt: Annotated[
        bool,
        typer.Option(
            "--adapt/--no-adapt",
            help="Raise probabilities where cells form a majority cleanly apart from the rest in a mixture of the scores, "
            "or a fifth or more far apart from it (clean volumes, or clutter unlike cells: fibres, texture, smoothed noise; "
            "faint or unfamiliar cells would be lost there; the mixture's cut then sets them), or else "
            "where cells are a larger share of the candidates than in the model's validation data; --no-adapt keeps "
            "them as calibrated.",
        ),
    ] = True,
    second_pass: Annotated[
        Optional[bool],
        typer.Option("--second-pass/--no-second-pass", help="Where the first pass's candidates' scores form a majority group of "
                     "cells cleanly apart from the rest (trusted, or untrusted only for too little clutter), or a lower group that "
                     "scores as cells too, prefilter it again at 2.5 noise units to find faint cells, adding "
                     "that pass's cells a cell diameter or more from the first's where it reads clean; such volumes are read "
                     "twice (on one machine, only the new candidates are scored). On by default "
                     "where probabilities are adapted (not with --no-adapt) at the model's prefilter threshold; see the README."),
    ] = None,
    region: Annotated[
        Optional[str],
        typer.Option("--region", metavar="Z0:Z1xY0:Y1xX0:X1", help="Detect in this block only (voxels, end exclusive, : for a whole axis), reading "
                     "its planes and the context its detections depend on; positions stay in the whole volume's voxels. With --no-adapt "
                     "exactly the whole run's detections there (adapting follows the candidates read, the block's own)."),
    ] = None,
) -> None:
    """Detect cells in a whole volume: prefilter, CNN scoring, duplicate merging, streamed in z-slabs."""
    from clarity_fast.region import parse_region
    from clarity_fast.run_detect import DetectRequest, run_detection

    request = DetectRequest(
        volume=volume, model=model, out=out, output_format=output_format, batch=batch, threshold=threshold, prefilter_threshold=prefilter_threshold,
        voxel_size=parse_triple(voxel_size, name="--voxel-size") if voxel_size else None, cell_diameter=cell_diameter,
        device=device, slab_depth=slab_depth, preview=preview, resume=resume, channel=channel, scheduler=scheduler,
        workers=workers, adapt=adapt, second_pass=second_pass, region=parse_region(region, name="--region") if region is not None else None,
    )
    for line in run_detection(request).lines():
        typer.echo(line)


@app.command()
def convert(
    volume: Annotated[Path, typer.Argument(help="Volume to convert: TIFF, folder of TIFF planes, Zarr or .npy.")],
    target: Annotated[Path, typer.Argument(help="OME-Zarr store to create (must not exist).")],
    chunks: Annotated[str, typer.Option("--chunks", help="Chunk shape Z,Y,X in voxels.")] = "32,512,512",
    zarr_format: Annotated[int, typer.Option("--zarr-format", help="2 (OME-NGFF 0.4) or 3 (OME-NGFF 0.5).")] = 2,
    voxel_size: VoxelSizeOption = None,
    channel: ChannelOption = None,
) -> None:
    """Write a volume as chunked OME-Zarr, for cluster runs (`detect --workers/--scheduler`)."""
    import time

    from clarity_fast.io.convert import convert_to_zarr, written_chunks
    from clarity_fast.io.volumes import open_volume
    from clarity_fast.progress import progress_bar, step
    from clarity_fast.settings import resolve_voxel_size

    shape = parse_triple(chunks, name="--chunks", integer=True)
    start = time.perf_counter()
    with open_volume(volume, channel=channel) as reader:
        size = reader.voxel_size
        if voxel_size:
            size = resolve_voxel_size(from_file=size, from_user=parse_triple(voxel_size, name="--voxel-size"), source=volume)
        written = written_chunks(shape, shape=reader.shape)
        with progress_bar(total=-(-reader.shape[0] // written[0]), description="convert") as bar:
            convert_to_zarr(
                reader, target, chunks=shape, voxel_size=size, zarr_format=zarr_format, on_slab=lambda z0, z1: step(bar)
            )
        known = f"voxel {size} µm" if size else "voxel size unknown: pass --voxel-size to detect"
        typer.echo(
            f"wrote {target} (OME-Zarr v{zarr_format}, shape {reader.shape}, chunks {written}, {known}) "
            f"in {time.perf_counter() - start:.1f} s"
        )


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the simulated brain and its results.")] = Path("clarity-fast-demo"),
    shape: Annotated[str, typer.Option("--shape", help="Volume shape Z,Y,X in voxels.")] = "32,256,256",
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the simulated brain.")] = 1,
    difficulty: Annotated[float, typer.Option("--difficulty", help="0 (easy) .. 1 (hard).")] = 1.0,
) -> None:
    """Run the pipeline on a built-in simulated brain and score it against the ground truth."""
    from clarity_fast.demo import run_demo
    from clarity_fast.simulate import SimulationSettings

    settings = SimulationSettings(shape=parse_triple(shape, name="--shape", integer=True), seed=seed, difficulty=difficulty)
    for line in run_demo(out_dir=out_dir, settings=settings).lines():
        typer.echo(line)


def _annotated(manifest: Path, *, cell_diameter: float, voxel_size: Optional[str], patch: int):
    """The manifest's volumes in memory, with their annotations and candidates (and, around a region, the context
    patches of `patch` voxels need)."""
    from clarity_fast.manifest import read_manifest
    from clarity_fast.model.samples import load_annotated

    return load_annotated(
        read_manifest(manifest),
        cell_diameter=cell_diameter,
        voxel_size=parse_triple(voxel_size, name="--voxel-size") if voxel_size else None,
        prefilter_threshold=PrefilterSettings.threshold,
        patch=patch,
    )


def _starting_model(spec: str | None) -> StartingModel | None:
    """The model --from names, loaded (None without --from), before any volume is read."""
    if spec is None:
        return None
    from clarity_fast.model.start import load_start

    return load_start(spec)


def _train_settings(
    *, epochs: int | None, patch: int | None, width: int | None, seed: int, validate_by: str, start: StartingModel | None = None
) -> TrainSettings:
    """TrainSettings from the options; with a starting model (fine-tuning), its network and fine-tuning's defaults."""
    from clarity_fast.model.config import NetworkConfig
    from clarity_fast.model.train import FINE_TUNE_EPOCHS, FINE_TUNE_LEARNING_RATE, VALIDATE_BY, TrainSettings

    if epochs is not None and epochs < 1:
        raise InputError(f"--epochs must be >= 1, got {epochs}")
    if patch is not None and patch < 6:
        raise InputError(f"--patch must be >= 6 voxels, got {patch}")
    if width is not None and width < 1:
        raise InputError(f"--width must be >= 1, got {width}")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    if validate_by not in VALIDATE_BY:
        raise InputError(f"--validate-by must be {' or '.join(VALIDATE_BY)}, got {validate_by!r}")
    if start is None:
        network = NetworkConfig(patch=patch or NetworkConfig.patch, width=width or NetworkConfig.width)
        return TrainSettings(network=network, epochs=epochs or DEFAULT_EPOCHS, seed=seed, validate_by=validate_by)
    network = start.config.network
    for option, given, fixed in (("--patch", patch, network.patch), ("--width", width, network.width)):
        if given is not None and given != fixed:
            raise InputError(f"{option} {given}: the model trained on from ({start.source}) has {option[2:]} {fixed}; leave {option} out with --from")
    return TrainSettings(
        network=network, epochs=epochs or FINE_TUNE_EPOCHS, learning_rate=FINE_TUNE_LEARNING_RATE, seed=seed, validate_by=validate_by
    )


ManifestOption = Annotated[
    Path, typer.Option("--manifest", help="CSV of annotated volumes: volume,points[,group][,voxel_size][,cell_diameter][,annotations][,channel][,region], paths relative to it.")
]
EpochsOption = Annotated[
    Optional[int], typer.Option("--epochs", help="Most epochs (default 200, 30 with --from; training stops early when validation AUC stalls).")
]
PatchOption = Annotated[Optional[int], typer.Option("--patch", help="Patch edge in voxels (default 12; with --from, the model's).")]
WidthOption = Annotated[Optional[int], typer.Option("--width", help="Channels per convolution (default 32; with --from, the model's).")]
FromOption = Annotated[
    Optional[str],
    typer.Option("--from", help="Train on from a trained model (fine-tuning): default (the built-in one), a model.pt, or an exported .onnx."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same model.")]
ValidateByOption = Annotated[
    str,
    typer.Option(
        "--validate-by",
        help="Hold out whole volumes or whole groups (brains) for early stopping and the threshold: group keeps a "
        "brain's blocks off both sides, but trains on fewer brains.",
    ),
]


@app.command()
def train(
    manifest: ManifestOption,
    out: Annotated[Path, typer.Option("--out", help="Model file to write (.pt); a training log and curve go beside it.")],
    epochs: EpochsOption = None,
    patch: PatchOption = None,
    width: WidthOption = None,
    seed: SeedOption = 0,
    validate_by: ValidateByOption = "volume",
    cell_diameter: CellDiameterOption = 12.0,
    voxel_size: VoxelSizeOption = None,
    start_from: FromOption = None,
) -> None:
    """Train the patch classifier on annotated volumes, from a new network or on from a trained one."""
    from clarity_fast.io.atomic import atomic_paths, check_output_path, write_json
    from clarity_fast.model.store import save_model
    from clarity_fast.model.train import train as train_model
    from clarity_fast.plots import learning_curve

    if out.suffix.lower() == ".onnx":  # detect would refuse it: a .pt model is exported to ONNX after training
        raise InputError(f"{out}: train writes a PyTorch model; name it .pt, then clarity-fast export --onnx makes the .onnx")
    log_path, curve_path = _beside_model(out, ".train.json"), _beside_model(out, ".curve.png")
    for path in (out, log_path, curve_path):  # all three writable before hours of training, not after
        check_output_path(path)
    start = _starting_model(start_from)
    settings = _train_settings(epochs=epochs, patch=patch, width=width, seed=seed, validate_by=validate_by, start=start)
    volumes = _annotated(manifest, cell_diameter=cell_diameter, voxel_size=voxel_size, patch=settings.network.patch)
    trained = train_model(volumes, settings=settings, prefilter_threshold=PrefilterSettings.threshold, start=start)
    with atomic_paths(out, log_path, curve_path) as (model_tmp, log_tmp, curve_tmp):  # all three in place, or none
        write_json(log_tmp, dict(config=trained.config.to_dict(), history=trained.history))
        learning_curve(trained.history, curve_tmp)
        save_model(model_tmp, net=trained.net, config=trained.config)
    t = trained.config.training
    det = t["val_detection"]
    n_train, held_out = len(t["train_volumes"]), len(set(t["validation_volumes"]) - set(t["train_volumes"]))
    typer.echo(
        f"{f'fine-tuned {start_from}' if start else 'trained'} on {t['train_cells']} cell{'s' * (t['train_cells'] != 1)} in {n_train} volume{'s' * (n_train != 1)}"
        f"{f' ({held_out} more held out for validation)' if held_out else ''}, {t['epochs_run']} epoch{'s' * (t['epochs_run'] != 1)}: "
        f"validation patch AUC {t['best_val_auc']:.4f}, detection F1 {det['f1']:.3f} "
        f"(P {det['precision']:.3f}, R {det['recall']:.3f}) at threshold {trained.config.threshold:.3f}\n"
        f"wrote {out}, {log_path}, {curve_path}"
    )


def _beside_model(model: Path, suffix: str) -> Path:
    """A file named after a .pt model, suffix in place of .pt (model.pt -> model.onnx); any other name keeps its own
    suffix (cfos.v1 -> cfos.v1.onnx), so that two versions never write one file."""
    stem = model.with_suffix("") if model.suffix == ".pt" else model
    return stem.with_name(stem.name + suffix)


@app.command()
def export(
    onnx_from: Annotated[Path, typer.Option("--onnx", help="Trained model (.pt) to export to ONNX.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="ONNX file to write (default: beside the model, .onnx).")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Half-precision weights and arithmetic (inputs stay float32).")] = False,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset version.")] = 17,
    graph: Annotated[
        str, typer.Option("--graph", help="planar (3D convolutions as 2D ones over z windows: faster on CPUs) or 3d (the network as trained).")
    ] = "planar",
) -> None:
    """Export a trained model to ONNX (with its config in the metadata) and check it against PyTorch."""
    from clarity_fast.export.parity import PARITY_FP16, PARITY_FP32, max_logit_difference
    from clarity_fast.export.to_onnx import check_opset, export_onnx
    from clarity_fast.io.atomic import atomic_path, check_output_path
    from clarity_fast.model.store import load_model

    if graph not in ("planar", "3d"):
        raise InputError(f"--graph must be planar or 3d, got {graph!r}")
    check_opset(opset)
    out = out or _beside_model(onnx_from, ".onnx")
    check_output_path(out)
    if out.suffix.lower() != ".onnx":  # a stray name would overwrite a volume or a table with a model
        raise OutputError(f"{out}: --out must name an .onnx file")
    if out.resolve() == onnx_from.resolve():
        raise OutputError(f"{out}: --out is the model being exported; write the ONNX model to another file")
    net, config = load_model(onnx_from)
    tolerance = PARITY_FP16 if fp16 else PARITY_FP32
    with atomic_path(out) as tmp:  # in place only once it scores as PyTorch does
        export_onnx(tmp, net=net, config=config, opset=opset, fp16=fp16, planar=graph == "planar")
        delta = max_logit_difference(net=net, onnx_path=tmp)
        if not delta <= tolerance:  # NaN too: weights that overflow half precision, say
            raise ModelError(
                f"{out}: the exported model differs from PyTorch by {delta:.2e} in a logit (more than {tolerance:g}); not written"
            )
    typer.echo(
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, opset {opset}, {'fp16' if fp16 else 'fp32'}, {graph} graph): "
        f"max |Δlogit| against PyTorch {delta:.2e} on random patches"
    )


@app.command()
def evaluate(
    pred: Annotated[
        list[Path], typer.Option("--pred", metavar="PATH", help="Detections: CSV or cellfinder XML (voxels). Repeat it to pool several files (detect --region runs of different blocks, say).")
    ],
    truth: Annotated[Path, typer.Option("--truth", help="Ground truth: CSV or cellfinder XML (voxels).")],
    radius: Annotated[
        Optional[float], typer.Option("--radius", help="Match radius: µm with --voxel-size, else voxels with z counted double (default 3.5).")
    ] = None,
    voxel_size: VoxelSizeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    fit_threshold: Annotated[
        bool,
        typer.Option("--fit-threshold", help="Also find the score threshold that does best on these annotations (detections with scores; 128 thresholds tried)."),
    ] = False,
    region: Annotated[
        Optional[list[str]],
        typer.Option("--region", metavar="Z0:Z1xY0:Y1xX0:X1", help="Score against the annotated block Z0:Z1xY0:Y1xX0:X1 (voxels, end exclusive, : for a whole axis) of a larger volume: its cells, and the detections in it or finding them. Repeat it for several blocks: scored together, and each on its own."),
    ] = None,
) -> None:
    """Score detections against ground truth: one-to-one matching within a radius; with --fit-threshold, also the
    score threshold (detect's probability) that would have done best on these annotations."""
    import itertools
    import json

    from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, Scored, match_in_blocks, typed_threshold
    from clarity_fast.io.points import read_points
    from clarity_fast.region import parse_region

    blocks = [parse_region(text, name="--region") for text in region or []]
    for a, b in itertools.combinations(blocks, 2):
        if a.overlaps(b):
            raise InputError(f"--region {a.text!r} and {b.text!r} overlap; blocks scored together must share no voxel")
    named = " + ".join(b.text for b in blocks)
    twice = [path for i, path in enumerate(pred) if path.resolve() in {q.resolve() for q in pred[:i]}]
    if twice:
        raise InputError(f"--pred {twice[0]} is given twice: its detections would count twice")
    predicted = [read_points(path) for path in pred]  # non-cell markers (cellfinder XML Type 1) are left out
    p, t = np.concatenate([np.empty((0, 3))] + [points.cells for points in predicted]), read_points(truth).cells
    unscored = [path for path, points in zip(pred, predicted) if points.cell_scores is None and len(points.cells)]  # an empty file adds none
    scores = None if unscored else np.concatenate([np.empty(0)] + [points.cell_scores for points in predicted if len(points.cells)])
    if fit_threshold and unscored:
        raise InputError(f"{unscored[0]}: --fit-threshold needs detections with scores (a score or probability column, as detect writes)")
    if voxel_size:
        axis_scale = parse_triple(voxel_size, name="--voxel-size")
        if radius is None:
            raise InputError("--voxel-size needs --radius in µm")
        rule = f"within {radius:g} µm"
    else:  # in voxels, by the study's rule whatever the radius, so that --radius changes the radius only
        radius, axis_scale = RADIUS_VOXELS if radius is None else radius, AXIS_WEIGHTS
        rule = f"within {radius:g} voxels, z counted double"
    compared, per_block = Scored(p, scores, t), []  # detections and cells, to be matched
    if blocks:  # the blocks' points, and those around them that can pair with them or compete for their partners
        near = match_in_blocks(compared, blocks=[b.limits for b in blocks], radius=radius, axis_scale=axis_scale)
        match, compared = near.match, near.points
        per_block = [(b.text, m, n) for b, (m, n) in zip(blocks, near.per_block)]
        them, their = ("them", "their") if len(blocks) > 1 else ("it", "its")
        rule += f"; region{'s' if len(blocks) > 1 else ''} {named}: {match.tp + match.fn} cells, {int(compared.pred_counted.sum())} detections in {them}" + (
            f" and {near.found_from_outside} beside {them} that found one of {their} cells" if near.found_from_outside else "")
    else:
        match = compared.match(radius=radius, axis_scale=axis_scale)
    n_pred, n_truth = match.tp + match.fp, match.tp + match.fn  # the detections and cells scored
    scopes = [(f" in region {named!r}" if blocks else "", n_pred, n_truth)] + [(f" in region {text!r}", n, m.tp + m.fn) for text, m, n in per_block]
    for where, detections, cells in scopes:
        for path, count in ((", ".join(map(str, pred)), detections), (truth, cells)):
            if not count:  # the scores are then conventions (both empty: all 1), not measurements
                logging.getLogger("clarity_fast").warning("%s holds no cells%s: check it is the file you meant", path, where)
    result = dict(match.summary(), rule=rule, predictions=n_pred, truth=n_truth, **({"region": named} if blocks else {}))
    if per_block:
        result["regions"] = [dict(m.summary(), region=text, detections_in_it=n) for text, m, n in per_block]
    lines = [f"precision {match.precision:.4f}  recall {match.recall:.4f}  F1 {match.f1:.4f}  (TP {match.tp}, FP {match.fp}, FN {match.fn}; {rule})"]
    lines += [f"  region {text}: precision {m.precision:.4f}  recall {m.recall:.4f}  F1 {m.f1:.4f}  (TP {m.tp}, FP {m.fp}, FN {m.fn}; "
              f"{m.tp + m.fn} cells, {n} detections in it)" for text, m, n in per_block]
    if fit_threshold and len(compared.scores) and n_truth:
        threshold, best = compared.best_threshold(radius=radius, axis_scale=axis_scale)
        threshold = typed_threshold(compared.scores, threshold)
        result["best_threshold"] = dict(best.summary(), threshold=threshold)
        lines.append(
            f"keeping scores >= {np.format_float_positional(threshold, trim='-')} would give precision {best.precision:.4f}  "
            f"recall {best.recall:.4f}  F1 {best.f1:.4f} (for detect's probabilities: detect --threshold 0 --no-adapt shows every candidate's; detect the rest with --no-adapt too)"
        )
    typer.echo(json.dumps(result, indent=2) if as_json else "\n".join(lines))


@app.command()
def cv(
    manifest: ManifestOption,
    scheme: Annotated[str, typer.Option("--scheme", help="loo (leave one group out) or random (group splits).")] = "loo",
    splits: Annotated[int, typer.Option("--splits", help="Random splits (scheme random).")] = 3,
    test_frac: Annotated[float, typer.Option("--test-frac", help="Share of groups tested per random split.")] = 0.33,
    by: Annotated[str, typer.Option("--by", help="Split by 'group' (manifest column) or by 'volume'.")] = "group",
    method: Annotated[str, typer.Option("--method", help="Comma list of cnn, blob, template.")] = "cnn,blob,template",
    out: Annotated[Path, typer.Option("--out", help="Folder for cv.md, cv.json and roc.png.")] = Path("cv-results"),
    epochs: EpochsOption = None,
    patch: PatchOption = None,
    width: WidthOption = None,
    seed: SeedOption = 0,
    validate_by: ValidateByOption = "volume",
    cell_diameter: CellDiameterOption = 12.0,
    voxel_size: VoxelSizeOption = None,
    start_from: FromOption = None,
) -> None:
    """Cross-validate the CNN (a new network per fold, or one fine-tuned from --from) and the baselines (patch AUC,
    detection precision/recall/F1)."""
    import dataclasses

    from clarity_fast.io.atomic import atomic_paths, make_output_dir, undone_on_failure, write_json
    from clarity_fast.model.crossval import (
        METHODS,
        BlobMethod,
        CnnMethod,
        TemplateMethod,
        check_fold_options,
        cross_validate,
        make_folds,
    )
    from clarity_fast.plots import roc_curves

    names = list(dict.fromkeys(m.strip() for m in method.split(",") if m.strip()))  # each method once
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise InputError(f"--method takes a comma list of {', '.join(METHODS)}; got {method!r}")
    if by not in ("group", "volume"):
        raise InputError(f"--by must be group or volume, got {by!r}")
    check_fold_options(scheme=scheme, splits=splits, test_frac=test_frac)
    if start_from is not None and "cnn" not in names:
        raise InputError(f"--from fine-tunes the CNN, which --method {method!r} leaves out")
    start = _starting_model(start_from)
    settings = _train_settings(epochs=epochs, patch=patch, width=width, seed=seed, validate_by=validate_by, start=start)
    volumes = _annotated(manifest, cell_diameter=cell_diameter, voxel_size=voxel_size, patch=settings.network.patch)
    if by == "volume":
        volumes = [dataclasses.replace(v, group=v.name) for v in volumes]
    folds = make_folds([v.group for v in volumes], scheme=scheme, splits=splits, test_frac=test_frac, seed=seed)
    build = dict(
        cnn=lambda: CnnMethod(settings=settings, prefilter_threshold=PrefilterSettings.threshold, start=start),
        blob=BlobMethod,
        template=lambda: TemplateMethod(patch=settings.network.patch),
    )

    def show(row: dict) -> None:
        typer.echo(
            f"fold {row['fold']} ({' '.join(row['test_groups'])}) {row['method']}: patch AUC {row['patch_auc']:.3f}, "
            f"P {row['precision']:.3f} R {row['recall']:.3f} F1 {row['f1']:.3f} (test-tuned {row['f1_test_tuned']:.3f})"
        )

    with undone_on_failure(out):  # a folder made for this run goes, with what it holds, if the run fails
        make_output_dir(out)
        report = cross_validate(volumes, folds=folds, methods=[build[n]() for n in names], scheme=scheme, seed=seed, on_fold=show)
        with atomic_paths(out / "cv.md", out / "cv.json", out / "roc.png") as (md_tmp, json_tmp, roc_tmp):  # together, or none
            md_tmp.write_text(report.markdown())
            write_json(json_tmp, report.to_dict(by=by))
            roc_curves(report.roc, roc_tmp, title=f"{manifest.name}: {scheme}")
    typer.echo("\n".join(report.markdown().split("\n\n")[:-1]))  # all but the per-fold table: the means, and any note on them
    typer.echo(f"wrote {out / 'cv.md'}, {out / 'cv.json'}, {out / 'roc.png'}")


def _log_warnings() -> None:
    """The project's warnings as `warning: ...` lines on stderr; other libraries' logging stays their own."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    log = logging.getLogger("clarity_fast")
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False


INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class Terminated(Exception):
    """SIGTERM, raised in the main thread so that clean-up runs as for Ctrl-C."""


def _terminated(signum, frame) -> None:
    raise Terminated


# The click that typer raises from: the click package up to typer 0.2x, its own copy after (which needs no click
# installed). Its usage errors derive from this class either way.
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _one_line(exc: BaseException) -> str:
    """An error as one line: messages that quote a library's own text can carry its line breaks."""
    return " ".join(str(exc).split())


def _stopped(how: str, options: list[str]) -> str:
    """The line for a run stopped by a signal; only detect can continue where it stopped."""
    command = next((a for a in options if not a.startswith("-")), "")
    return f"error: {how} (outputs left as they were{'; detect --resume continues' if command == 'detect' else ''})"


def main() -> None:
    """Entry point: project errors become `error: <message>` and an exit code, never a traceback."""
    argv = sys.argv[1:]
    options = argv[: argv.index("--")] if "--" in argv else argv  # after `--` everything is an argument
    debug = "--debug" in options
    _log_warnings()
    signal.signal(signal.SIGTERM, _terminated)
    try:
        if debug:  # taken wherever it stands among the options, not only before the command
            code = app(args=[a for a in options if a != "--debug"] + argv[len(options) :], standalone_mode=False)
        else:
            code = app(standalone_mode=False)
    except ClarityError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except _CLICK_ERROR as exc:  # a usage error: a missing or unknown option, a value of the wrong type
        if type(exc).__name__ == "NoArgsIsHelpError":  # the bare command: its help, as click shows it
            exc.show()
        else:
            command = exc.ctx.command_path if getattr(exc, "ctx", None) else "clarity-fast"
            typer.echo(f"error: {exc.format_message()} (see {command} --help)", err=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        code = INTERRUPTED
    except Terminated:
        typer.echo(_stopped("terminated", options), err=True)
        sys.exit(143)
    except Exception as exc:  # a bug, not a user error: still one line unless --debug
        if debug:
            traceback.print_exc()
        typer.echo(f"error: internal error ({type(exc).__name__}: {_one_line(exc)}); rerun with --debug for details", err=True)
        sys.exit(70)
    if code == INTERRUPTED:  # typer turns Ctrl-C into this exit code, silently
        typer.echo(_stopped("interrupted", options), err=True)
    sys.exit(code if isinstance(code, int) else 0)
