"""Whole-volume detection, streamed in z-slabs: read -> prefilter -> gather patches (leaving out those on a slope,
kernels.slope) -> score -> keep -> centre on the cell in the patch (kernels.centre) -> merge.

Three stages overlap: one thread reads and prefilters slab k+1 while another gathers the patches of slab k
and the caller's thread scores them (numba kernels and onnxruntime release the GIL); the numba stages use the
caller's number of numba threads. At most two slabs' planes are held (one gathered, the next prefiltered), two
batches wait to be scored, and patch buffers are reused, so memory depends on the slab depth and the batch size,
never on the volume's depth. Candidates, patches and scores do not depend on how the volume is cut into slabs or
batches, and merging runs once over the whole volume, so neither does the result. With settings.adapt (and a model that records its validation shares),
probabilities are adapted to the whole volume's share of cells before the threshold (volume_share, or where most
candidates form a group apart, score_mixture); slabs then
keep every candidate that could pass after that, and a histogram of all their probabilities.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numba
import numpy as np

from clarity_fast.candidates import Candidates, SlabPrefilter, slab_ranges
from clarity_fast.detection import Scorer, cell_positions, merge_duplicates
from clarity_fast.errors import InputError, ModelError
from clarity_fast.export.providers import physical_memory
from clarity_fast.io.volumes import VolumeReader
from clarity_fast.kernels.centre import centre_shifts
from clarity_fast.kernels.gather import Grid, gather_patches
from clarity_fast.kernels.slope import SlopeTest
from clarity_fast.kernels.turns import kernel_turns
from clarity_fast.model.config import ModelConfig, NetworkConfig
from clarity_fast.noise_correlation import NoiseModel, volume_noise
from clarity_fast.score_memo import ScoreMemo
from clarity_fast.score_mixture import CLUTTER_SD, TRUST, Mixture, Trust, fit_mixture, mixture_factor, trusted
from clarity_fast.settings import PrefilterSettings, Scale, VoxelSize, snap_factors
from clarity_fast.volume_share import (
    BINS,
    adjusted,
    estimate_share,
    histogram,
    lowest_kept,
    odds_factor,
)

if TYPE_CHECKING:
    from clarity_fast.checkpoint import Checkpoint

STAGES = ("read", "prefilter", "gather", "score", "centre", "merge")
HANDOFF = 2  # batches of patches waiting to be scored
SLABS_IN_FLIGHT = 2  # slabs whose planes are held at once: one being gathered, the next being read and prefiltered
log = logging.getLogger("clarity_fast")


# Host memory onnxruntime's CPU provider holds per patch of a batch for the network's intermediates: 119 KB for a
# 12³ patch and width 32 (VmHWM at batch 1024-16384, planar graph), taken as proportional to voxels and width.
CPU_SCORING_BYTES_PER_VOXEL_AND_CHANNEL = 119 * 1024 / (12**3 * 32)


def check_batch_memory(*, batch: int, network: NetworkConfig, on_cpu: bool) -> None:
    """Refuse a --batch whose buffers cannot fit in this machine's memory, before any work (rather than fail
    to allocate, or be killed, partway through)."""
    if (physical := physical_memory()) is None:  # nothing to check against
        return
    voxels = network.patch**3
    per_patch = (HANDOFF + 2) * voxels * 4 + (CPU_SCORING_BYTES_PER_VOXEL_AND_CHANNEL * voxels * network.width if on_cpu else 0)
    if batch * per_patch > physical / 2:
        raise InputError(
            f"--batch {batch} needs about {batch * per_patch / 2**30:.0f} GB for its patches"
            f"{' and the network on the CPU' if on_cpu else ''}, more than half this machine's {physical / 2**30:.0f} GB; "
            f"use a smaller --batch (at most {int(physical / 2 / per_patch)}; 4096 scores at full speed)"
        )


@dataclass(frozen=True)
class DetectSettings:
    """Everything one detection run needs besides the model and the volume, in the input's units; fixed for the run,
    so that slabs, threads and cluster tasks agree."""

    voxel_size: VoxelSize  # of the input volume, µm
    cell_diameter: float  # of the cells in it, µm
    threshold: float  # cell probability
    prefilter_threshold: float
    batch: int = 4096
    slab_depth: int = 32
    project: bool = False  # keep each slab's maximum projection along z (the --preview picture)
    adapt: bool = True  # adapt probabilities to the volume's share of cells (volume_share), where the model allows it
    drop_slopes: bool = True  # leave unscored the candidates dimmer than their surround on some side (kernels.slope)
    noise: NoiseModel | None = None  # the volume's noise correlation (noise_correlation); None: measured from the volume

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise InputError(f"--batch must be >= 1, got {self.batch}")
        if self.slab_depth < 1:
            raise InputError(f"--slab-depth must be >= 1, got {self.slab_depth}")
        if not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"--threshold is a probability between 0 and 1, got {self.threshold}")

    @property
    def scale(self) -> Scale:
        return Scale(voxel_size=self.voxel_size, cell_diameter=self.cell_diameter)

    @property
    def prefilter(self) -> PrefilterSettings:
        return PrefilterSettings(scale=self.scale, threshold=self.prefilter_threshold, slab_depth=self.slab_depth)

    def zoom(self, model: ModelConfig) -> tuple[float, float, float]:
        """Factors from the input's voxels to a grid where its cells look as the model's did in training."""
        cell_voxels = [model.cell_diameter / v for v in model.voxel_size]  # a training cell, in model voxels
        factors = [c * v / self.cell_diameter for c, v in zip(cell_voxels, self.voxel_size)]
        return snap_factors(factors)


def _slope_test(settings: DetectSettings, model: ModelConfig) -> SlopeTest | None:
    """The slope test of this model's patches, where asked for and its patches can hold it."""
    if not settings.drop_slopes:
        return None
    return SlopeTest.for_patch(patch=model.network.patch, radius=model.scale.cell_radius_voxels)


@dataclass(frozen=True)
class Adaptation:
    """A volume's two estimates of how far its probabilities understate cells. Where the score mixture is trusted its
    factor applies, even where it is 1: it models this volume's own logits, while the share's EM assumes they keep
    their validation meaning, and on clean volumes of confidently scored cells it raised the odds up to 40x and let the
    clutter's upper tail through (benchmarks/results/adapt_rule.md). Elsewhere the share's factor applies, the share
    read no higher than the mixture's upper group where one was fitted: where a volume's clutter scores higher than
    the validation clutter did, EM counts it as cells (0.67 of the candidates where 0.41 were cells) while the
    mixture, untrusted as it is there, still puts it with the clutter (benchmarks/results/share_fallback.md). Under
    SHARE_CANDIDATES scored candidates (a nearly empty volume, a small region) neither is read: a handful of
    candidates cannot say what share of them are cells."""

    share: float  # of cells among the candidates, as adapting reads it: EM's, at most the mixture's upper group and,
    # from too few candidates, at most the model's validation share (no change)
    em_share: float  # EM's own estimate (volume_share)
    share_factor: float
    mixture: Mixture | None  # the two groups of the candidates' logits (score_mixture)
    mixture_factor: float
    rule: Trust = TRUST  # when the mixture is believed (score_mixture.Trust)

    @property
    def clean(self) -> bool:
        """Whether the volume reads as clean: the mixture trusted with the cells a majority of the candidates."""
        return trusted(self.mixture, rule=self.rule) and self.mixture.cell_share > self.rule.majority

    @property
    def by(self) -> str:
        """Which estimate sets the factor: "mixture" or "share"."""
        return "mixture" if trusted(self.mixture, rule=self.rule) else "share"

    @property
    def factor(self) -> float:
        return self.mixture_factor if self.by == "mixture" else self.share_factor


# Fewer scored candidates than this leave the probabilities as they are: their share of cells is too uncertain to act
# on (a binomial sd of 0.1 and more), and EM reads even one candidate a little above the model's validation share as a
# volume of cells. A clean block of 34 faint cells is still adapted (tests/test_detect.py).
SHARE_CANDIDATES = 20


def adapting(counts: np.ndarray, *, model: ModelConfig, clutter_sd: float = CLUTTER_SD, rule: Trust = TRUST) -> Adaptation:
    """Both estimates from the histogram of every scored candidate's probability (`clutter_sd` and `rule`: score_mixture's
    bound and when it is believed, which benchmarks/clutter_bound.py, mixture_gain.py and minority_cells.py vary)."""
    reference = model.calibration.reference_share
    em_share = estimate_share(counts, prior=model.calibration.share)
    mixture = fit_mixture(counts, clutter_sd=clutter_sd)
    share = em_share if mixture is None else min(em_share, mixture.cell_share)
    if counts.sum() < SHARE_CANDIDATES:  # EM reads one candidate scoring 0.3 as a volume of 100% cells: odds x45, a cell
        share = min(share, reference)
    return Adaptation(
        share=share, em_share=em_share, share_factor=odds_factor(share, reference=reference), mixture=mixture,
        mixture_factor=mixture_factor(mixture, threshold=model.threshold, reference=reference, rule=rule), rule=rule,
    )


@dataclass(frozen=True)
class Result:
    """A volume's detections (merged, above the threshold) and what the run counted and timed on the way."""

    zyx: np.ndarray  # (N, 3) float, the input's voxels: each cell's centre (kernels.centre)
    probability: np.ndarray
    candidates: int = 0
    on_slope: int = 0  # candidates left unscored as dimmer than their surround on some side (kernels.slope)
    above_threshold: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # busy time per stage, and "total" wall time
    projection: np.ndarray | None = None  # the volume's maximum along z, where settings.project asked for it
    adaptation: Adaptation | None = None  # how the probabilities were adapted to the volume, where they were
    odd_planes: dict[int, bool] = field(default_factory=dict)  # planes the reader levelled (True: replaced as flat)

    @property
    def cell_share(self) -> float | None:
        """The share of cells among the candidates adapting read (EM's, at most the mixture's cells' group), where adapted."""
        return None if self.adaptation is None else self.adaptation.share

    @property
    def em_cell_share(self) -> float | None:
        """EM's own estimate of that share, where adapted."""
        return None if self.adaptation is None else self.adaptation.em_share

    @property
    def mixture(self) -> Mixture | None:
        """The two groups the candidates' logits form, where adapted (score_mixture)."""
        return None if self.adaptation is None else self.adaptation.mixture

    @property
    def mixture_factor(self) -> float:
        """The odds factor the mixture asked for (1 where it is not trusted or not fitted)."""
        return 1.0 if self.adaptation is None else self.adaptation.mixture_factor

    @property
    def odds_factor(self) -> float:
        """What adapting multiplied the probabilities' odds by."""
        return 1.0 if self.adaptation is None else self.adaptation.factor

    @property
    def adapted_by(self) -> str | None:
        """Which estimate set odds_factor ("mixture" or "share"), where adapted."""
        return None if self.adaptation is None else self.adaptation.by


@dataclass(frozen=True)
class SlabResult:
    """Candidates of planes z0..z1 that can pass the threshold, before merging, and a histogram of all of theirs."""

    z0: int
    z1: int
    zyx: np.ndarray
    probability: np.ndarray
    candidates: int
    low: float  # the smallest and largest value in the slab's planes
    high: float
    projection: np.ndarray | None = None  # their maximum along z (settings.project)
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))  # of every scored candidate's probability
    odd_planes: dict[int, bool] = field(default_factory=dict)  # planes of z0..z1 the reader levelled (True: replaced as flat)
    on_slope: int = 0  # of its candidates, those left unscored on a slope (kernels.slope)


class _BufferPool:
    """Patch buffers reused batch after batch: fresh 28 MB arrays cost page faults that limit gathering on many cores."""

    def __init__(self, *, shape: tuple[int, ...], size: int) -> None:
        self.shape = shape
        self.free: queue.Queue = queue.Queue()
        self.room = threading.Semaphore(size)

    def take(self, stop: threading.Event) -> np.ndarray | None:
        """A buffer, once one is free (None if the run stopped meanwhile)."""
        if not _acquire(self.room, stop):
            return None
        try:
            return self.free.get_nowait()
        except queue.Empty:
            return np.empty(self.shape, np.float32)

    def release(self, buffer: np.ndarray) -> None:
        self.free.put(buffer)
        self.room.release()


SlabRunner = Callable[[list[tuple[int, int]], Callable[[SlabResult], None], dict[str, float]], None]


@dataclass(frozen=True)
class _Slab:
    """A prefiltered slab on its way to gathering: the planes its patches read (from plane `first`) and its candidates."""

    z0: int
    z1: int
    first: int
    planes: np.ndarray
    found: Candidates
    centres: np.ndarray  # the candidates on the model's grid
    low: float
    high: float
    projection: np.ndarray | None
    odd_planes: dict[int, bool]


@dataclass(frozen=True)
class _Batch:
    z0: int
    z1: int
    zyx: np.ndarray  # native positions of the candidates scored
    centres: np.ndarray  # the working-grid voxels their patches were cut around
    response: np.ndarray  # their prefilter response
    on_slope: int  # the batch's candidates left out of it on a slope
    buffer: np.ndarray  # from the pool, its first len(zyx) patches filled; the consumer releases it once scored
    last: bool  # the slab's final batch
    candidates: int  # in the slab
    low: float
    high: float
    projection: np.ndarray | None
    odd_planes: dict[int, bool]

    @property
    def patches(self) -> np.ndarray:
        return self.buffer[: len(self.zyx)]


def process_slabs(
    reader: VolumeReader,
    *,
    scorer: Scorer,
    model: ModelConfig,
    settings: DetectSettings,
    slabs: list[tuple[int, int]],
    on_result: Callable[[SlabResult], None],
    seconds: dict[str, float],
    memo: ScoreMemo | None = None,
) -> None:
    """Detect in the given slabs, in order, calling on_result as each finishes; adds busy time to `seconds`.
    A memo scores only candidates it has not seen scored (a second pass over the volume), and remembers them."""
    for stage in STAGES:
        seconds.setdefault(stage, 0.0)
    grid = reader.working_grid(settings.zoom(model))
    prefilter = SlabPrefilter(
        settings=settings.prefilter,
        shape=reader.shape,
        dtype=reader.dtype,
        noise=volume_noise(reader) if settings.noise is None else settings.noise,  # None: a direct caller's settings
        source=reader.path,
    )
    slab_queue: queue.Queue = queue.Queue()
    slab_room = threading.Semaphore(SLABS_IN_FLIGHT)
    handoff: queue.Queue = queue.Queue(maxsize=HANDOFF)
    pool = _BufferPool(shape=(settings.batch, 1, model.network.patch, model.network.patch, model.network.patch), size=HANDOFF + 2)
    stop = threading.Event()
    threads = numba.get_num_threads()  # the caller's, which a cluster worker may have capped
    turns = kernel_turns()
    stages = [
        threading.Thread(
            target=_prefilter_slabs,
            kwargs=dict(reader=reader, prefilter=prefilter, grid=grid, patch=model.network.patch,
                        slabs=slabs, project=settings.project, room=slab_room, out=slab_queue, stop=stop, threads=threads, seconds=seconds,
                        turns=turns),
            name="clarity-fast-prefilter",
            daemon=True,
        ),
        threading.Thread(
            target=_gather_batches,
            kwargs=dict(grid=grid, batch=settings.batch, slope=_slope_test(settings, model), pool=pool, source=slab_queue, room=slab_room,
                        out=handoff, stop=stop, threads=threads, seconds=seconds, turns=turns),
            name="clarity-fast-gather",
            daemon=True,
        ),
    ]
    for stage in stages:
        stage.start()
    keep_from = settings.threshold
    if _adapting(settings, model):
        keep_from = lowest_kept(settings.threshold, reference=model.calibration.reference_share)
    try:
        kept_zyx, kept_prob, counts, on_slope, done = [], [], np.zeros(BINS, np.int64), 0, 0
        while done < len(slabs):
            item = handoff.get()
            if isinstance(item, BaseException):
                raise item
            if len(item.zyx):
                t = time.perf_counter()
                logits = scorer(item.patches) if memo is None else memo.scored(item.zyx, item.patches, scorer=scorer)
                if not np.all(np.isfinite(logits)):
                    raise ModelError(
                        f"the model scored {int(np.sum(~np.isfinite(logits)))} of {len(logits)} patches as NaN or infinite: "
                        "its weights are broken (a diverged training?); retrain or export it again"
                    )
                prob = model.calibration.probability(logits, item.response)
                seconds["score"] += time.perf_counter() - t
                keep = prob >= keep_from
                t = time.perf_counter()
                _compact(item.buffer, keep)  # the kept patches to the front, in place: the buffer is released next
                with turns:
                    shifts = centre_shifts(item.buffer[: int(keep.sum())], diameter=model.scale.cell_diameter_voxels)
                kept_zyx.append(cell_positions(item.zyx[keep], centres=item.centres[keep], shifts=shifts, grid=grid)), kept_prob.append(prob[keep])
                seconds["centre"] += time.perf_counter() - t
                counts += histogram(prob)
            pool.release(item.buffer)
            on_slope += item.on_slope
            if item.last:
                zyx = np.concatenate(kept_zyx) if kept_zyx else np.empty((0, 3))
                prob = np.concatenate(kept_prob) if kept_prob else np.empty(0, np.float32)
                on_result(SlabResult(item.z0, item.z1, zyx, prob, item.candidates, item.low, item.high, item.projection, counts, item.odd_planes,
                                     on_slope))
                kept_zyx, kept_prob, counts, on_slope = [], [], np.zeros(BINS, np.int64), 0
                done += 1
    finally:
        stop.set()
        for stage in stages:
            stage.join()


def merged(
    parts: list[SlabResult], *, settings: DetectSettings, model: ModelConfig, seconds: dict[str, float], projection: np.ndarray | None = None
) -> Result:
    """All slabs' detections, adapted to the volume's share of cells where that applies, thresholded, and with
    duplicates merged over the whole volume (so slab seams never matter); `projection`: the volume's, if kept."""
    t = time.perf_counter()
    parts = sorted(parts, key=lambda r: r.z0)
    zyx = np.concatenate([r.zyx for r in parts]) if parts else np.empty((0, 3))
    prob = np.concatenate([r.probability for r in parts]) if parts else np.empty(0, np.float32)
    adaptation = adapting(np.sum([r.histogram for r in parts], axis=0), model=model) if _adapting(settings, model) else None
    zyx, prob, above = kept_cells(zyx, prob, factor=None if adaptation is None else adaptation.factor,
                                  threshold=settings.threshold, merge_radius=settings.scale.merge_radius_voxels)
    seconds["merge"] = seconds.get("merge", 0.0) + time.perf_counter() - t
    return Result(
        zyx=zyx, probability=prob, candidates=sum(r.candidates for r in parts), on_slope=sum(r.on_slope for r in parts),
        above_threshold=above, seconds=seconds, projection=projection, adaptation=adaptation,
        odd_planes={k: flat for r in parts for k, flat in r.odd_planes.items()},
    )


def kept_cells(
    zyx: np.ndarray, probability: np.ndarray, *, factor: float | None, threshold: float, merge_radius: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, int]:
    """The detections among candidates: probabilities adapted by `factor` (None: as they are), those at or above the
    threshold, duplicates merged; with how many passed the threshold before merging."""
    exact = probability.astype(np.float64) if factor is None else adjusted(probability, factor=factor)
    above = exact >= threshold  # in float64, as slabs chose what to keep: float32 rounding could pass one they dropped
    zyx, probability = zyx[above], exact[above].astype(np.float32)
    keep = merge_duplicates(zyx, probability, radius=merge_radius)
    return zyx[keep], probability[keep], len(probability)


def detect(
    reader: VolumeReader,
    *,
    scorer: Scorer,
    model: ModelConfig,
    settings: DetectSettings,
    checkpoint: Checkpoint | None = None,
    on_slab: Callable[[int, int, int], None] | None = None,
    run_slabs: SlabRunner | None = None,
    memo: ScoreMemo | None = None,
) -> Result:
    """Cells in the volume: candidates whose patch scores above the threshold, centred on their cells, duplicates merged.

    Slabs a checkpoint holds are loaded, not recomputed; each finished slab is saved to it.
    on_slab(z0, z1, detections so far) is called as each slab finishes (progress). run_slabs(slabs, on_result,
    seconds) computes slabs elsewhere (distributed.run_on_cluster); by default, here with process_slabs, scoring through
    `memo` where given (score_memo; not on a cluster). One value
    throughout is an error where the reader's volume is blank (VolumeReader.blank; a block's background need not be).
    """
    start = time.perf_counter()
    grid_shape = reader.working_grid(settings.zoom(model)).shape
    if min(grid_shape[1:]) < model.network.patch:
        raise InputError(
            f"{reader.path}: planes of {reader.shape[1]}×{reader.shape[2]} voxels are {grid_shape[1]}×{grid_shape[2]} on the "
            f"model's grid, smaller than one {model.network.patch}-voxel patch; check --voxel-size and --cell-diameter"
        )
    if settings.noise is None:
        settings = replace(settings, noise=volume_noise(reader))
    slabs = slab_ranges(reader.shape[0], slab_depth=settings.slab_depth)
    parts: list[SlabResult] = []
    projection = None if checkpoint is None else checkpoint.projection()  # the running maximum of slab projections

    def kept(result: SlabResult) -> None:
        """Keep a slab's detections; fold its projection into the running one, so that memory does not grow with depth."""
        nonlocal projection
        if result.projection is not None:
            projection = np.array(result.projection) if projection is None else np.maximum(projection, result.projection, out=projection)
        parts.append(replace(result, projection=None))

    for z0, z1 in slabs:
        if checkpoint is not None and checkpoint.finished(z0):
            kept(checkpoint.load(z0, z1))
    todo = [s for s in slabs if s[0] not in {r.z0 for r in parts}]
    seconds: dict[str, float] = {}

    def finished(result: SlabResult) -> None:
        kept(result)
        if checkpoint is not None:
            checkpoint.save(result, projection=projection)
        if on_slab is not None:
            on_slab(result.z0, result.z1, sum(len(r.probability) for r in parts))

    if run_slabs is None:
        process_slabs(reader, scorer=scorer, model=model, settings=settings, slabs=todo, on_result=finished, seconds=seconds, memo=memo)
    else:
        run_slabs(todo, finished, seconds)
    low, high = min((r.low for r in parts), default=0.0), max((r.high for r in parts), default=0.0)
    blank = reader.blank(low) if low == high else None
    if blank:
        raise InputError(f"{blank} is {low:g}; an empty or blank acquisition has no cells to find")
    if low < 0:
        log.warning("%s: negative values (down to %g); processed as they are", reader.path, low)
    result = merged(parts, settings=settings, model=model, seconds=seconds, projection=projection if settings.project else None)
    seconds["total"] = time.perf_counter() - start
    return result


def _adapting(settings: DetectSettings, model: ModelConfig) -> bool:
    """Whether probabilities are adapted to the volume's share of cells: asked for, and the model records its shares."""
    return settings.adapt and model.calibration.adapts


def _acquire(semaphore: threading.Semaphore, stop: threading.Event) -> bool:
    """Acquire, waiting as long as needed; False if the run was stopped meanwhile."""
    while not semaphore.acquire(timeout=0.1):
        if stop.is_set():
            return False
    return True


def _put(out: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Hand item on, waiting for room; False if the run was stopped meanwhile."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _prefilter_slabs(
    *, reader, prefilter: SlabPrefilter, grid: Grid, patch: int, slabs, project: bool, room, out: queue.Queue, stop,
    threads: int, seconds, turns
) -> None:
    """Read and prefilter each slab, once `room` has room for it; hand on its planes and candidates (or the
    exception that stopped it)."""
    half = patch // 2
    numba.set_num_threads(threads)  # numba's count is per thread, and a new thread starts at the default
    try:
        for z0, z1 in slabs:
            if not _acquire(room, stop):
                return
            a, b = prefilter.planes_needed(z0, z1)
            wz = grid.nearest(np.array([[z0, 0, 0], [z1 - 1, 0, 0]]))[:, 0]
            ga, gb = grid.native_rows(int(wz[0]) - half, int(wz[1]) + patch - half)
            first, last = min(a, ga), max(b, gb)
            t = time.perf_counter()
            planes = reader.read_slab(first, last)
            seconds["read"] += time.perf_counter() - t
            own = planes[z0 - first : z1 - first]
            projection = own.max(axis=0) if project else None
            low, high = float(own.min()), float(own.max() if projection is None else projection.max())
            t = time.perf_counter()
            with turns:
                found = prefilter.run(planes, first=first, z0=z0, z1=z1)
            seconds["prefilter"] += time.perf_counter() - t
            centres = grid.nearest(found.zyx)
            if (z0, z1) == slabs[-1]:
                prefilter.release()
            if not _put(out, _Slab(z0, z1, first, planes, found, centres, low, high, projection, reader.odd_planes(z0, z1)), stop):
                return
    except BaseException as exc:  # handed on to the consumer, which raises it in the caller's thread
        _put(out, exc, stop)


def _compact(buffer: np.ndarray, keep: np.ndarray) -> None:
    """Move the patches `keep` marks to the front of `buffer`, in order, in place: no second batch-sized array
    (check_batch_memory counts the pool's buffers only)."""
    for dst, src in enumerate(np.flatnonzero(keep)):
        if dst != src:
            buffer[dst] = buffer[src]


def _gather_batches(
    *, grid: Grid, batch: int, slope: SlopeTest | None, pool: _BufferPool, source: queue.Queue, room, out: queue.Queue, stop, threads: int,
    seconds, turns
) -> None:
    """Cut each slab's candidates into batches and gather their patches into pooled buffers, leaving out those on a
    slope (`slope` None: none); hand them on, and give the slab's room back after its last batch."""
    numba.set_num_threads(threads)
    try:
        while not stop.is_set():
            try:
                slab = source.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(slab, BaseException):
                _put(out, slab, stop)
                return
            found = slab.found
            for s in range(0, len(found), batch) if len(found) else [0]:
                buffer = pool.take(stop)
                if buffer is None:
                    return
                t = time.perf_counter()
                chunk = slab.centres[s : s + batch]
                zyx, response = found.zyx[s : s + batch], found.response[s : s + batch]
                with turns:
                    gather_patches(slab.planes, centres=chunk, out=buffer, grid=grid, src_z0=slab.first)
                    sloped = np.zeros(len(chunk), bool) if slope is None else slope.on_slope(buffer[: len(chunk)])
                if sloped.any():
                    keep = ~sloped
                    _compact(buffer, keep)
                    zyx, chunk, response = zyx[keep], chunk[keep], response[keep]
                seconds["gather"] += time.perf_counter() - t
                item = _Batch(
                    slab.z0, slab.z1, zyx, chunk, response, int(sloped.sum()), buffer,
                    s + batch >= len(found), len(found), slab.low, slab.high, slab.projection, slab.odd_planes,
                )
                if not _put(out, item, stop):
                    return
            room.release()
    except BaseException as exc:
        _put(out, exc, stop)
