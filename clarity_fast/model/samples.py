"""Training examples from annotated volumes: positives at annotated centres, negatives mined from the
prefilter's candidates that lie away from every annotation (hard) and from random background.

Patches are cut by the same gatherer as detection, so training and inference see identical inputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.spatial import cKDTree

from clarity_fast.candidates import Candidates, find_candidates
from clarity_fast.cell_shape import corrected_scale
from clarity_fast.detection import calibrated_detections, centred, off_slope
from clarity_fast.evaluate import Scored
from clarity_fast.io.block import BlockReader, context_reach, grown
from clarity_fast.io.points import read_points
from clarity_fast.io.volumes import open_array, open_volume
from clarity_fast.kernels.gather import Grid, gather_patches, resample_volume, to_voxels
from clarity_fast.manifest import Entry
from clarity_fast.model.config import Calibration, NetworkConfig
from clarity_fast.noise_correlation import volume_noise
from clarity_fast.plane_levels import LevelledReader
from clarity_fast.region import within
from clarity_fast.settings import (
    PrefilterSettings,
    Scale,
    VoxelSize,
    resolve_voxel_size,
)

log = logging.getLogger("clarity_fast")

RANDOM_NEGATIVE_FRACTION = 0.3  # of the negatives; the rest are hard (prefilter candidates)
NEGATIVE_CLEARANCE = 1.0  # in cell radii: a candidate this far from every annotation is a negative
RANDOM_CLEARANCE = 1.5  # random background positions keep this far (cell radii) from annotations


@dataclass(frozen=True)
class AnnotatedVolume:
    """A volume in memory, with its annotations and prefilter candidates on the working grid."""

    name: str
    group: str
    native: np.ndarray  # the file's voxels: patches are cut from these on `grid`, as in detection
    grid: Grid  # the working grid
    volume: np.ndarray  # resampled to the working scale (for the baselines' score maps)
    truth: np.ndarray  # (N, 3) float voxels, working scale
    candidates: Candidates  # working scale
    scale: Scale  # the working scale
    partial: bool = False  # annotations known to miss cells (see hard_negatives)
    region: tuple[tuple[int, int], ...] | None = None  # the annotated block in `native`'s voxels; None: all of it
    beside: np.ndarray | None = None  # annotations in the voxels read around the block (working scale); None: no region
    context: Candidates | None = None  # candidates in the voxels read around the block: detections there can find its cells
    patch: int = NetworkConfig.patch  # the network's: the patches detections are centred in

    def annotated(self, points: np.ndarray) -> np.ndarray:
        """Per point (working-scale voxels), whether it lies in the annotated block: what lies outside is context."""
        return np.ones(len(points), bool) if self.region is None else within(self.to_native(points), bounds=self.region)

    def to_native(self, points: np.ndarray) -> np.ndarray:
        """Working-scale voxel coordinates -> the file's voxel coordinates (for scoring against its points)."""
        return self.grid.to_native(points)

    def distance_in_radii(self, points: np.ndarray) -> np.ndarray:
        """Distance from each point to the nearest annotation (the block's or one beside it), in cell radii (inf
        without annotations)."""
        listed = self.listed
        if len(listed) == 0:
            return np.full(len(points), np.inf)
        r = np.asarray(self.scale.cell_radius_voxels)
        return cKDTree(listed / r).query(np.asarray(points, dtype=float) / r)[0]

    @property
    def listed(self) -> np.ndarray:
        """Every annotation in the voxels read: the block's (first), then those beside it."""
        return self.truth if self.beside is None else np.concatenate([self.truth, self.beside])

    @property
    def detectable(self) -> Candidates:
        """Every candidate in the voxels read: the block's (first), then those around it, which detect would merge
        with them."""
        return self.candidates if self.context is None else Candidates.concat([self.candidates, self.context])

    def scored(self, zyx: np.ndarray, scores: np.ndarray, *, counted: np.ndarray | None = None, native: bool = False) -> Scored:
        """Detections (working voxels) with their scores, against the annotations, scored in the annotated block as
        `evaluate --region` scores one: only its cells are found or missed and only detections in it (`counted`;
        default: those that lie in it) can be false, so that a cell at its face found from beside it counts as found.
        In the file's voxels where `native` (as cross-validation scores)."""
        listed = self.listed
        counted = self.annotated(zyx) if counted is None else counted
        to = self.to_native if native else np.asarray
        return Scored(to(zyx), scores, to(listed), pred_counted=counted, truth_counted=np.arange(len(listed)) < len(self.truth))

    @cached_property
    def cell_centres(self) -> np.ndarray:
        """Every candidate read (`detectable`, working voxels), moved to the centre of the cell in its patch: where
        detect reports it, on the working grid."""
        native = centred(self.native, zyx=self.to_native(self.detectable.zyx), patch=self.patch, diameter=self.scale.cell_diameter_voxels,
                         grid=self.grid)
        return self.grid.to_working(native)

    def detected(self, logits: np.ndarray, *, calibration: Calibration, native: bool = False) -> Scored:
        """The detections among every candidate read (`logits`: the network's for `detectable`), centred and merged as
        detect does, with their cell probabilities, scored in the annotated block."""
        keep, probs = calibrated_detections(self.detectable, logits, at=self.cell_centres, calibration=calibration,
                                            merge_radius=self.scale.merge_radius_voxels)
        return self.scored(self.cell_centres[keep], probs, native=native)  # counted where they lie, as evaluate --region counts

    @property
    def at_cells(self) -> np.ndarray:
        """Per candidate, whether it lies within NEGATIVE_CLEARANCE cell radii of an annotation (its label)."""
        return self.distance_in_radii(self.candidates.zyx) <= NEGATIVE_CLEARANCE

    @property
    def hard_negatives(self) -> np.ndarray:
        """Candidates farther than NEGATIVE_CLEARANCE cell radii from every annotation.

        Where annotations are partial, unannotated candidates that respond as strongly as the typical annotated
        cell are more likely missed cells than look-alikes, so they are left out rather than taught as negatives.
        """
        far = ~self.at_cells
        if self.partial and np.any(~far):
            far &= self.candidates.response < np.median(self.candidates.response[~far])
        return self.candidates.zyx[far]

    def random_background(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n random voxel positions in the annotated block, clear of the annotations (fewer if it is crowded)."""
        if self.region is None:
            points = (rng.random((4 * n, 3)) * np.asarray(self.grid.shape)).astype(np.int64)
        else:
            lo, hi = (self.grid.to_working(np.array(b, dtype=float) - 0.5) for b in zip(*self.region))
            points = to_voxels(lo + rng.random((4 * n, 3)) * (hi - lo), shape=self.grid.shape)
            points = points[self.annotated(points)]
        return points[self.distance_in_radii(points) > RANDOM_CLEARANCE][:n]

    def assessment_negatives(self, rng: np.random.Generator) -> np.ndarray:
        """The non-cells a fixed AUC set holds: every hard negative, and RANDOM_NEGATIVE_FRACTION as many random
        background positions as there are annotations."""
        return np.concatenate([self.hard_negatives, self.random_background(int(RANDOM_NEGATIVE_FRACTION * len(self.truth)), rng)])


def load_annotated(
    entries: list[Entry], *, cell_diameter: float, voxel_size: VoxelSize | None, prefilter_threshold: float, patch: int = NetworkConfig.patch
) -> list[AnnotatedVolume]:
    """Read each volume (or its annotated region, with the context detection would see around it) whole, as
    training sets are small, resample it to the working scale of `cell_diameter`, and find its candidates there;
    volumes of different voxel sizes mix freely. `patch`: the network's, for the context a region needs."""
    volumes = []
    for entry in entries:
        source = f"{entry.line}: {entry.volume}" if entry.line else str(entry.volume)
        with LevelledReader(open_volume(entry.volume, channel=entry.channel)) as reader:
            size = resolve_voxel_size(
                from_file=reader.voxel_size, from_user=entry.voxel_size or voxel_size, source=source,
                given_as="the manifest's voxel_size" if entry.voxel_size else "--voxel-size (or a voxel_size column)",
            )
            # noise and cell shape are sampled from the whole volume, as detect samples them
            noise = volume_noise(reader)
            native, _ = corrected_scale(reader, scale=Scale(voxel_size=size, cell_diameter=entry.cell_diameter or cell_diameter), noise=noise)
            factors = native.to_working
            scale = native.working if factors != (1.0, 1.0, 1.0) else native
            settings = PrefilterSettings(scale=native, threshold=prefilter_threshold)
            region = entry.region.bounds(reader.shape, source=source) if entry.region else tuple((0, n) for n in reader.shape)
            # a region is read with the context its candidates and (jittered) patches see
            reach = context_reach(settings, factors=factors, patch=patch, jitter=jitter_reach(scale)) if entry.region else np.zeros(3)
            block = BlockReader(reader, bounds=grown(region, shape=reader.shape, reach=reach), name=entry.region.text if entry.region else ":x:x:")
            data = block.read_slab(0, block.shape[0])
            cells = _annotated_cells(entry, shape=reader.shape)
        # The prefilter runs on the file's own voxels (interpolation would correlate the noise it measures);
        # the network sees the resampled volume.
        grid = block.working_grid(factors)  # for a region, the whole volume's cut to the voxels read
        found = off_slope(find_candidates(open_array(data, name=str(entry.volume)), settings=settings, noise=noise),  # those detect scores
                          volume=data, grid=grid, patch=patch, radius=native.working.cell_radius_voxels)  # the model's cells
        inside = beside = context = None  # the annotated block in the voxels read, and what lies around it; None: all
        if entry.region:  # the context read around the block is neither cells nor non-cells
            origin = block.origin
            inside = tuple((lo - o, hi - o) for (lo, hi), o in zip(region, origin))
            keep = within(found.zyx, bounds=inside)
            found, context = Candidates(found.zyx[keep], found.response[keep]), Candidates(found.zyx[~keep], found.response[~keep])
            listed = cells - origin
            in_block = within(listed, bounds=inside)
            read = within(listed, bounds=tuple((0, n) for n in data.shape))  # the file's other points lie beyond reach
            cells, beside = listed[in_block], listed[read & ~in_block]
            log.info("%s: %d of %d points lie in region %s", source, len(cells), len(listed), entry.region.text)
        if not len(cells) and not entry.partial:
            log.warning("%s holds no cells%s: every candidate in %s is taught as a non-cell (mark it annotations=partial if cells "
                        "were left out)", entry.points, f" in region {entry.region.text!r}" if entry.region else "", entry.name)
        volumes.append(
            AnnotatedVolume(entry.name, entry.group, data, grid, resample_volume(data, grid=grid), grid.to_working(cells),
                            _on_grid(found, grid=grid), scale, entry.partial, inside,
                            None if beside is None else grid.to_working(beside), None if context is None else _on_grid(context, grid=grid), patch)
        )
    return volumes


def _on_grid(candidates: Candidates, *, grid: Grid) -> Candidates:
    """Candidates found in the file's voxels, moved to the nearest voxels of the working grid."""
    return Candidates(grid.nearest(candidates.zyx), candidates.response)


def _annotated_cells(entry: Entry, *, shape: tuple[int, int, int]) -> np.ndarray:
    """The entry's cells, each once: a point listed twice would count twice as a cell to find, and a validation
    volume would score its copy as missed. Said."""
    cells = read_points(entry.points, shape=shape).cells
    unique = cells[np.sort(np.unique(cells, axis=0, return_index=True)[1])] if len(cells) else cells  # in the file's order
    if len(unique) < len(cells):
        log.warning("%s lists %d of its points more than once; each is taken once", entry.points, len(cells) - len(unique))
    return unique


def jitter_reach(scale: Scale) -> np.ndarray:
    """How far, per axis, jitter moves a centre: half a cell radius, at least 1 voxel."""
    return np.maximum(np.rint(0.5 * np.asarray(scale.cell_radius_voxels)), 1).astype(np.int64)


def jitter(centres: np.ndarray, *, scale: Scale, rng: np.random.Generator) -> np.ndarray:
    """Round centres and move each by up to jitter_reach per axis."""
    reach = jitter_reach(scale)
    return np.rint(centres).astype(np.int64) + rng.integers(-reach, reach + 1, size=(len(centres), 3))


def cut(volume: AnnotatedVolume, centres: np.ndarray, *, patch: int) -> np.ndarray:
    """(N, 1, P, P, P) normalised patches around centres, clipped into the volume."""
    centres = to_voxels(centres, shape=volume.grid.shape)
    out = np.empty((len(centres), 1, patch, patch, patch), dtype=np.float32)
    return gather_patches(volume.native, centres=centres, out=out, grid=volume.grid)


def epoch_examples(volumes: list[AnnotatedVolume], *, patch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Balanced patches for one epoch: every annotation once (jittered), as many negatives, labels 1/0. A volume
    without cells gives as many negatives as a typical volume with cells has cells: a block annotated as empty
    teaches what is not a cell."""
    patches, labels = [], []
    counts = [len(v.truth) for v in volumes if len(v.truth)]
    typical = int(round(float(np.mean(counts)))) if counts else 0
    for v in volumes:
        pos = jitter(v.truth, scale=v.scale, rng=rng)
        n_neg = len(pos) or typical
        n_random = int(round(RANDOM_NEGATIVE_FRACTION * n_neg))
        hard = v.hard_negatives
        picked = hard[rng.integers(0, len(hard), size=n_neg - n_random)] if len(hard) else np.empty((0, 3), np.int64)
        neg = np.concatenate([picked, v.random_background(n_neg - len(picked), rng)])
        patches += [cut(v, pos, patch=patch), cut(v, neg, patch=patch)]
        labels += [np.ones(len(pos), np.float32), np.zeros(len(neg), np.float32)]
    return np.concatenate(patches), np.concatenate(labels)


def evaluation_examples(volumes: list[AnnotatedVolume], *, patch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed patch set for AUC: annotations, all hard negatives, and as many random negatives as positives x0.3."""
    rng = np.random.default_rng(seed)
    patches, labels = [], []
    for v in volumes:
        neg = v.assessment_negatives(rng)
        patches += [cut(v, v.truth, patch=patch), cut(v, neg, patch=patch)]
        labels += [np.ones(len(v.truth), np.float32), np.zeros(len(neg), np.float32)]
    return np.concatenate(patches), np.concatenate(labels)
