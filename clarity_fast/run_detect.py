"""`clarity-fast detect` end to end: check the request, open model and volume, stream the detection with a
progress bar and a checkpoint, then write the cells, a summary JSON and the optional QC picture atomically."""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from clarity_fast import __version__
from clarity_fast.candidates import noise_gain, slab_ranges
from clarity_fast.cell_shape import axial_stretch, corrected_scale, elongation_line
from clarity_fast.checkpoint import CHECKPOINT_FORMAT, Checkpoint
from clarity_fast.errors import InputError, ModelError
from clarity_fast.export.model_file import model_digest, resolve_model
from clarity_fast.export.runtime import CPU, OnnxScorer, RuntimeSettings
from clarity_fast.io.atomic import check_output_path, write_json
from clarity_fast.io.block import BlockReader, context_reach, grown
from clarity_fast.io.points import Points, points_format, write_points
from clarity_fast.io.volumes import VolumeReader, open_volume
from clarity_fast.messages import listed
from clarity_fast.model.config import ModelConfig
from clarity_fast.noise_correlation import NoiseModel, volume_noise
from clarity_fast.pipeline import STAGES, DetectSettings, Result, check_batch_memory, detect
from clarity_fast.plane_levels import LevelledReader
from clarity_fast.progress import progress_bar, step
from clarity_fast.region import Region, in_whole
from clarity_fast.score_memo import ScoreMemo
from clarity_fast.second_pass import SECOND_PASS_THRESHOLD, second_pass_line, with_second_pass
from clarity_fast.settings import Scale, VoxelSize, check_noise_threshold, resolve_voxel_size



@dataclass(frozen=True)
class DetectRequest:
    """What the user asked `detect` for, checked where it can be before any work (an unwritable format, say)."""

    volume: Path
    out: Path
    model: str | Path = "default"
    output_format: str | None = None  # csv or xml; None: from the suffix of `out`
    batch: int = 4096
    threshold: float | None = None
    prefilter_threshold: float | None = None  # noise units; None: the model's (3 for the built-in one)
    voxel_size: VoxelSize | None = None
    cell_diameter: float | None = None
    device: str = "auto"
    slab_depth: int = 32
    preview: Path | None = None
    resume: bool = False
    channel: int | None = None
    scheduler: str | None = None  # a Dask scheduler address ...
    workers: int | None = None  # ... or a LocalCluster of this many processes; neither: this process alone
    progress: bool | None = None  # None: a bar when stderr is a terminal
    adapt: bool = True  # adapt probabilities to the volume's share of cells (volume_share)
    second_pass: bool | None = None  # where the first pass finds the volume clean, detect again at a lower prefilter threshold (second_pass); None: where adapting at the model's prefilter threshold
    region: Region | None = None  # detect in this block of the volume only (with the context it needs read around it)

    def __post_init__(self) -> None:
        points_format(self.out, self.output_format)  # a format it cannot write is refused before any work
        if self.second_pass is True and not self.adapt:
            raise InputError("--second-pass reads how clean the volume is from adapting: leave out --no-adapt")
        if self.region is not None and (self.scheduler is not None or self.workers is not None):
            raise InputError("--region runs in this process: leave out --workers and --scheduler")
        if self.prefilter_threshold is not None:
            check_noise_threshold(self.prefilter_threshold, name="--prefilter-threshold")
        if self.preview is not None and self.preview.suffix.lower() != ".png":
            raise InputError(f"{self.preview}: --preview writes a PNG image; give it a .png name")

    @property
    def rescans(self) -> bool:
        """Whether a clean first pass is followed by the second: by default where probabilities are adapted and the
        prefilter's threshold is the model's (one the user chose is kept)."""
        return self.adapt and self.prefilter_threshold is None if self.second_pass is None else self.second_pass

    @property
    def summary_path(self) -> Path:
        return self.out.with_name(self.out.stem + ".summary.json")

    @property
    def checkpoint_path(self) -> Path:
        return self.out.with_name(self.out.name + ".partial")

    @property
    def format(self) -> str:
        return points_format(self.out, self.output_format)

    @property
    def outputs(self) -> list[Path]:
        """Everything the run writes: kept out of a folder input's identity, should they lie inside it."""
        return [self.out, self.summary_path, self.checkpoint_path] + ([self.preview] if self.preview is not None else [])


@dataclass(frozen=True)
class DetectReport:
    """A finished run's summary (as written to the summary JSON) and the lines printed for it."""

    summary: dict

    def lines(self) -> list[str]:
        s = self.summary
        seconds = s["seconds"]
        busy = ", ".join(f"{k} {seconds[k]:.2f}" for k in STAGES)
        where = f"region {s['region']['text']} of " if s.get("region") else ""
        read = " read, the region's context included" if s.get("region") else ""
        return [
            f"{s['cells']} cells in {where}{s['volume']} {tuple(s['shape'])} ({s['candidates']} candidates{read}, "
            f"{s['above_threshold']} above probability {shown_probability(s['threshold'])} before merging)",
            *([slope_line(on_slope=s["candidates_on_slope"], candidates=s["candidates"])] if s["candidates_on_slope"] > SLOPE_SAID * s["candidates"] else []),
            *([adapt_line(s)] if s.get("cell_share") is not None and round(s["odds_factor"], 2) > 1 else []),  # not "x1.00"
            *([second_pass_line(s["second_pass"])] if s.get("second_pass") else []),
            *scale_notes(blur=s["noise_model"]["blur"], gain=s["noise_gain"], elongation=s["cell_elongation"], stretch=s["axial_stretch"]),
            *([f"resumed: {s['slabs_resumed']} of {s['slabs']} slabs were done by the interrupted run"] if s["slabs_resumed"] else []),
            *([odd_planes_line(s["levelled_planes"], s["replaced_planes"])] if s["levelled_planes"] else []),
            f"{seconds['total']:.2f} s, {s['voxels_per_s'] / 1e6:.1f} Mvoxel/s on {s['device']}; busy seconds: {busy}",
            f"wrote {s['out']} and {s['summary']}" + (f" and {s['preview']}" if s.get("preview") else ""),
        ]


SLOPE_SAID = 0.1  # the share of candidates on a slope above which detect says so: 0-5% in tissue without an edge


def slope_line(*, on_slope: int, candidates: int) -> str:
    """What the slope test left out, and what so many mean."""
    return (f"{on_slope} of the {candidates} candidates ({on_slope / candidates:.0%}) were left unscored, dimmer than their surround "
            "on some side: a bright region's edge (the tissue's?) runs through the volume")


def shown_probability(p: float) -> str:
    """Three decimals, or as many as it takes not to print a threshold of 0.999999 as 1.000 (or 1e-6 as 0.000)."""
    text = f"{p:.3f}"
    return f"{p:.10g}" if float(text) != p and text in ("0.000", "1.000") else text


@dataclass(frozen=True)
class VolumeReading:
    """How a volume is read, from what the user gave and from its own pixels: the voxel size (given or recorded), the
    scale used (z made finer where its cells look elongated, cell_shape), its noise (noise_correlation), measured
    once before streaming so that every slab and cluster task sees the same, and the seconds those took."""

    voxel_size: VoxelSize
    scale: Scale
    noise: NoiseModel
    elongation: float
    noise_seconds: float
    shape_seconds: float


def read_scale(reader: VolumeReader, *, voxel_size: VoxelSize | None, cell_diameter: float, source: object) -> VolumeReading:
    """The voxel size (the user's, else the file's; none is an error), the volume's noise, then its cells' shape."""
    voxel_size = resolve_voxel_size(from_file=reader.voxel_size, from_user=voxel_size, source=source)
    t = time.perf_counter()
    noise = volume_noise(reader)
    noise_seconds = time.perf_counter() - t
    t = time.perf_counter()
    scale, elongation = corrected_scale(reader, scale=Scale(voxel_size=voxel_size, cell_diameter=cell_diameter), noise=noise)
    return VolumeReading(voxel_size, scale, noise, elongation, noise_seconds, time.perf_counter() - t)


def scale_notes(*, blur: tuple[float, float], gain: float, elongation: float | None, stretch: float) -> list[str]:
    """The lines that tell where a volume's own pixels changed how it is read (smoothed noise, elongated cells)."""
    return [*([smoothed_noise_line(blur, gain)] if gain > 1 else []), *([elongation_line(elongation, stretch)] if stretch > 1 else [])]


def run_detection(request: DetectRequest) -> DetectReport:
    for path in (request.out, request.summary_path, request.preview):
        if path is not None:
            check_output_path(path)
    cluster = None
    if request.scheduler is not None or request.workers is not None:
        from clarity_fast.distributed import ClusterSettings

        cluster = ClusterSettings(scheduler=request.scheduler, workers=request.workers)
    model_path = resolve_model(request.model)
    runtime = RuntimeSettings(device=request.device)
    scorer = OnnxScorer(model_path, settings=runtime)
    model = scorer.config
    check_batch_memory(batch=request.batch, network=model.network, on_cpu=scorer.provider == CPU)
    with LevelledReader(open_volume(request.volume, channel=request.channel)) as whole:
        region = None if request.region is None else request.region.bounds(whole.shape, source=str(request.volume))  # checked first
        diameter = model.cell_diameter if request.cell_diameter is None else request.cell_diameter
        reading = read_scale(whole, voxel_size=request.voxel_size, cell_diameter=diameter, source=request.volume)
        noise = reading.noise  # measured once, here, so that cluster tasks need not measure it again
        settings = DetectSettings(
            voxel_size=reading.scale.voxel_size,  # z finer than stated where cells look elongated along it (cell_shape)
            cell_diameter=reading.scale.cell_diameter,
            threshold=model.threshold if request.threshold is None else request.threshold,
            prefilter_threshold=model.prefilter_threshold if request.prefilter_threshold is None else request.prefilter_threshold,
            batch=request.batch,
            slab_depth=request.slab_depth,
            project=request.preview is not None,
            adapt=request.adapt,
            noise=noise,
        )
        reader = whole if region is None else block_read(whole, region=region, settings=settings, model=model, name=request.region.text)
        fingerprint = dict(
            volume=_file_identity(request.volume, outputs=request.outputs), channel=request.channel, shape=list(whole.shape),
            **({"region": [list(b) for b in region]} if region is not None else {}),
            model=model_digest(model_path), provider=scorer.provider,  # TensorRT scores in fp16, the CPU in fp32
            voxel_size=list(settings.voxel_size), cell_diameter=settings.cell_diameter,
            threshold=settings.threshold, prefilter_threshold=settings.prefilter_threshold, slab_depth=settings.slab_depth,
            project=settings.project, adapt=settings.adapt, drop_slopes=settings.drop_slopes, noise=asdict(noise), version=__version__, checkpoint_format=CHECKPOINT_FORMAT,  # another release may cut candidates differently
        )
        checkpoint = Checkpoint(request.checkpoint_path, fingerprint=fingerprint, resume=request.resume)
        slabs = slab_ranges(reader.shape[0], slab_depth=settings.slab_depth)
        done_before = [(z0, z1) for z0, z1 in slabs if checkpoint.finished(z0)]  # by an interrupted run
        resumed, planes_before = len(done_before), sum(z1 - z0 for z0, z1 in done_before)

        second_may_run = request.rescans and model.calibration.adapts and settings.prefilter_threshold > SECOND_PASS_THRESHOLD
        memo = ScoreMemo(shape=reader.shape) if second_may_run and cluster is None else None  # a second pass scores only its new candidates

        def scan(settings: DetectSettings, *, checkpoint: Checkpoint | None, resumed: int, description: str) -> Result:
            """One pass of the pipeline over the volume, with its progress bar (and its slabs on a cluster, where asked)."""
            plane_voxels, started, done = reader.shape[1] * reader.shape[2], time.perf_counter(), [0]
            with progress_bar(total=len(slabs), description=description, enabled=request.progress) as bar:
                for _ in range(resumed):  # loaded from the checkpoint, not computed again
                    step(bar, status="resumed")

                def on_slab(z0: int, z1: int, cells: int) -> None:
                    done[0] += (z1 - z0) * plane_voxels
                    rate = done[0] / max(time.perf_counter() - started, 1e-9) / 1e6
                    step(bar, status=f"{rate:.1f} Mvoxel/s, {cells} cells")

                run_slabs = None
                if cluster is not None:
                    from clarity_fast.distributed import run_on_cluster

                    run_slabs = partial(
                        run_on_cluster, volume=request.volume, channel=request.channel, model=model_path, runtime=runtime,
                        settings=settings, cluster=cluster,
                    )
                return detect(reader, scorer=scorer, model=model, settings=settings, checkpoint=checkpoint, on_slab=on_slab, run_slabs=run_slabs,
                              memo=memo)

        try:
            result = scan(settings, checkpoint=checkpoint, resumed=resumed, description="detect")
            second_pass = None
            if second_may_run:  # not checkpointed: --resume redoes it
                result, second_pass = with_second_pass(
                    result, settings=settings, scan=lambda lower: scan(lower, checkpoint=None, resumed=0, description="second pass"), memo=memo)
                memo = None  # its lookups are done: free it before writing
        except (InputError, ModelError):
            checkpoint.clear()  # resuming cannot mend the input or the model: leave nothing behind
            raise
        except BaseException:
            if not checkpoint.holds_slabs():  # stopped before a slab was done: nothing to resume from
                checkpoint.clear()
            raise
        shape = whole.shape
    if region is not None:  # back to the whole volume's voxels; the context read around the region is dropped
        result = in_region(result, reader=reader, bounds=region)
    result.seconds["noise"], result.seconds["cell_shape"] = reading.noise_seconds, reading.shape_seconds
    result.seconds["total"] += reading.noise_seconds + reading.shape_seconds
    corner = np.array([lo for lo, _ in region]) if region is not None else np.zeros(3, int)  # of the preview's picture
    points = Points(zyx=result.zyx, score=result.probability)
    write_points(request.out, points, format=request.format, image_filename=Path(request.volume).name, score_name="probability")
    request.summary_path.unlink(missing_ok=True)  # an earlier run's: should what follows fail, it would describe other cells
    if request.preview is not None:
        from clarity_fast.preview import write_preview

        write_preview(request.preview, projection=result.projection, zyx=result.zyx - corner, radius_yx=settings.scale.cell_radius_voxels[1:])
    summary = dict(
        volume=str(request.volume), shape=list(shape),
        region=None if region is None else dict(text=request.region.text, bounds=[list(b) for b in region], read=[list(b) for b in reader.bounds]),
        voxel_size_um=list(reading.voxel_size), cell_diameter_um=settings.cell_diameter,
        model=str(model_path), model_training=model.training, device=scorer.device, provider=scorer.provider,
        threshold=settings.threshold, prefilter_threshold=settings.prefilter_threshold, batch=settings.batch,
        slab_depth=settings.slab_depth, zoom_to_model_grid=list(settings.zoom(model)), noise_model=asdict(noise),
        noise_gain=noise_gain(settings.prefilter, noise=noise, planar=reader.shape[0] == 1),
        cell_elongation=reading.elongation if math.isfinite(reading.elongation) else None, axial_stretch=axial_stretch(reading.elongation),
        slabs=len(slabs), slabs_resumed=resumed,
        levelled_planes=sorted(result.odd_planes), replaced_planes=sorted(k for k, flat in result.odd_planes.items() if flat),  # the whole volume's planes
        candidates=result.candidates, candidates_on_slope=result.on_slope, above_threshold=result.above_threshold, cells=len(result.zyx),
        cell_share=result.cell_share, em_cell_share=result.em_cell_share, odds_factor=result.odds_factor, mixture_odds_factor=result.mixture_factor, adapted_by=result.adapted_by,
        mixture=None if result.mixture is None else result.mixture.summary(),
        second_pass=None if second_pass is None else asdict(second_pass),
        workers=request.workers, scheduler=request.scheduler,
        seconds=result.seconds, voxels_per_s=throughput(reader.shape, planes_before=planes_before, passes=1 + (second_pass is not None), seconds=result.seconds["total"]),
        out=str(request.out), summary=str(request.summary_path), preview=str(request.preview) if request.preview else None,
        version=__version__,
    )
    write_json(request.summary_path, summary)
    checkpoint.clear()
    return DetectReport(summary)


def throughput(shape: tuple[int, ...], *, planes_before: int, passes: int, seconds: float) -> float:
    """The volume's voxels per second of this run: the planes its passes read, over the number of passes (a second
    pass reads the volume again), with those an interrupted run finished left out of the first pass's."""
    planes = passes * shape[0] - planes_before
    return float(planes / passes * shape[1] * shape[2]) / max(seconds, 1e-9)


MERGE_CHAIN = 2  # merge radii of detections read beside a region: one there can take over one in it only if it outlives its own neighbours


def block_read(whole: VolumeReader, *, region: tuple[tuple[int, int], ...], settings: DetectSettings, model: ModelConfig, name: str) -> BlockReader:
    """The region with the context its detections depend on around it, read as a volume of its own: the candidates
    and patches of those in it and of those MERGE_CHAIN merge radii beside it that merging weighs against them. Its
    detections are then the whole volume's there (but where a chain of merges reaches in from further out)."""
    merges = MERGE_CHAIN * np.ceil(settings.scale.merge_radius_voxels) + np.ceil(settings.scale.cell_radius_voxels)  # centring moves one up to a radius
    reach = context_reach(settings.prefilter, factors=settings.zoom(model), patch=model.network.patch) + merges.astype(int)
    return BlockReader(whole, bounds=grown(region, shape=whole.shape, reach=reach), name=name)


def in_region(result: Result, *, reader: BlockReader, bounds: tuple[tuple[int, int], ...]) -> Result:
    """A block's result cut to the region `bounds`, in the whole volume's voxels: its detections and levelled planes
    there, and its projection's part there (the projection of every plane read)."""
    zyx, keep = in_whole(result.zyx, origin=reader.origin, bounds=bounds)
    (z0, z1), rows, columns = (np.array(b) - o for b, o in zip(bounds, reader.origin))
    odd = {k + int(reader.origin[0]): flat for k, flat in result.odd_planes.items() if z0 <= k < z1}
    projection = None if result.projection is None else result.projection[slice(*rows), slice(*columns)]
    return replace(result, zyx=zyx[keep], probability=result.probability[keep], odd_planes=odd, projection=projection)


def adapt_line(summary: dict) -> str:
    """What adapting the probabilities to the volume did, and how to undo it."""
    share, factor = summary["cell_share"], summary["odds_factor"]
    why = (f"{summary['mixture']['cell_share']:.0%} of the candidates score as a group of their own, apart from the rest" if summary["adapted_by"] == "mixture"
           else f"cells are {share:.0%} of the candidates, more than in the model's validation data")
    return f"{why}: probabilities' odds multiplied by {factor:.2f} (--no-adapt keeps them as calibrated)"


def odd_planes_line(levelled: list[int], replaced: list[int], *, shown: int = 10) -> str:
    """The planes levelled as odd, in one line (a cluster's workers warn only in their own logs)."""
    flat = f" ({len(replaced)} flat, replaced: {listed(replaced, shown=shown)})" if replaced else ""
    return f"odd planes levelled with their neighbours: {listed(levelled, shown=shown)}{flat}"


def smoothed_noise_line(blur: tuple[float, float], gain: float) -> str:
    """What the user sees when the volume's noise was found smoothed (resampled, say) and the prefilter corrected it."""
    return (f"the noise is smoothed (a blur of {blur[0]:.2f} x {blur[1]:.2f} voxels in y x, as after resampling): "
            f"the prefilter's noise units were scaled by {gain:.2f}")


def _file_identity(path: Path, *, outputs: list[Path]) -> dict:
    """Enough to notice a changed input without reading it all: resolved path, sizes and modification times (of
    every file below a folder, but this run's own outputs and checkpoint: planes or Zarr chunks rewritten in place
    leave the folder's own time alone)."""
    path = Path(path).resolve()
    if path.is_file():
        stat = path.stat()
        return dict(path=str(path), bytes=stat.st_size, mtime_ns=stat.st_mtime_ns)
    skip = {Path(o).resolve() for o in outputs}
    digest = hashlib.sha256()
    for root, folders, files in os.walk(path):
        folders[:] = sorted(f for f in folders if Path(root, f) not in skip)
        for name in sorted(files):
            if Path(root, name) in skip or name.endswith(".part"):
                continue
            stat = os.stat(os.path.join(root, name))
            digest.update(f"{os.path.relpath(os.path.join(root, name), path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return dict(path=str(path), files=digest.hexdigest())

