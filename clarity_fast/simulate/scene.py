"""What is in a simulated brain: labelled somata (the truth) and the cell-sized things that are not cells.

All positions and sizes are in µm; `difficulty` (0..1) scales how dim the cells get and how much
look-alike clutter surrounds them. Nothing here touches pixels: `render` rasterises a scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from clarity_fast.settings import Scale

# Labelled somata per mm³ at the average brain by default (a dense, pan-neuronal label); each brain and region varies
# around it. Sparse labels such as c-Fos after a stimulus are a few hundred to a few thousand.
CELLS_PER_MM3 = 14_000.0
SIZE_SPREAD = 0.15  # sd of the log of a soma's size, before each axis varies by 0.7-1.3
MAX_PROCESSES = 6  # proximal dendrites per soma at most: beyond, the processes fill the space between somata


@dataclass(frozen=True)
class Ellipsoids:
    """Soft-edged ellipsoids: somata, debris, rods and autofluorescent blobs."""

    centre: np.ndarray  # (N, 3) µm
    semi_axes: np.ndarray  # (N, 3) µm, along the body axes
    rotation: np.ndarray  # (N, 3, 3), columns are the body axes in (z, y, x)
    contrast: np.ndarray  # (N,) peak brightness in units of the mean background
    hollow: np.ndarray  # (N,) 0 = solid, up to 1 = a dark nucleus (cytoplasmic label)

    def __len__(self) -> int:
        return len(self.centre)

    @staticmethod
    def concat(*parts: Ellipsoids) -> Ellipsoids:
        return Ellipsoids(*(np.concatenate([getattr(p, f) for p in parts]) for f in Ellipsoids.__dataclass_fields__))


@dataclass(frozen=True)
class Capsules:
    """Segments with a round cross-section: vessels (as polylines), dendrite stubs, fibre fragments."""

    start: np.ndarray  # (N, 3) µm
    end: np.ndarray  # (N, 3) µm
    radius: np.ndarray  # (N,) µm
    contrast: np.ndarray  # (N,)
    wall: np.ndarray  # (N,) bool: only the wall is bright (a vessel seen by its autofluorescent lining)

    def __len__(self) -> int:
        return len(self.start)

    @staticmethod
    def concat(*parts: Capsules) -> Capsules:
        return Capsules(*(np.concatenate([getattr(p, f) for p in parts]) for f in Capsules.__dataclass_fields__))


@dataclass(frozen=True)
class Scene:
    """A brain's objects: `cells` are the ground truth; everything else is there to be rejected."""

    cells: Ellipsoids
    clutter: Ellipsoids  # max-combined with the cells: debris, rods
    haze: Ellipsoids  # added on top: large dim autofluorescent blobs
    tubes: Capsules  # max-combined: vessels, dendrites, fragments


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniformly random 3D rotations (from unit quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=1,
    )


def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _place_cells(rng: np.random.Generator, extent: np.ndarray, n: int, min_dist: float) -> np.ndarray:
    """Up to n centres, clustered by a smooth density field, no two closer than min_dist (µm)."""
    # A few soft 'regions' of higher density make the layout patchy, as labelled populations are.
    n_hot = int(rng.integers(2, 6))
    hot_centres = rng.uniform(0, 1, size=(n_hot, 3)) * extent
    hot_width = rng.uniform(0.15, 0.4, size=n_hot) * extent.max()
    proposals = rng.uniform(0, 1, size=(n * 6, 3)) * extent
    density = 0.35 + np.max(
        np.exp(-np.sum((proposals[:, None, :] - hot_centres[None]) ** 2, axis=-1) / (2 * hot_width**2)), axis=1
    )
    proposals = proposals[rng.uniform(0, 1.35, size=len(proposals)) < density]
    kept = np.empty((0, 3))
    for batch in np.array_split(proposals, max(1, len(proposals) // 512)):
        tree = cKDTree(kept) if len(kept) else None
        new: list[np.ndarray] = []
        for p in batch:
            if tree is not None and tree.query_ball_point(p, min_dist, return_length=True) > 0:
                continue
            if new and np.min(np.sum((np.asarray(new) - p) ** 2, axis=1)) < min_dist**2:
                continue
            new.append(p)
        kept = np.concatenate([kept, np.asarray(new).reshape(-1, 3)])
        if len(kept) >= n:
            break
    return kept[:n]


def _soma(rng: np.random.Generator, centre: np.ndarray, radius: float, difficulty: float, size_spread: float) -> Ellipsoids:
    n = len(centre)
    size = radius * rng.lognormal(0.0, size_spread, size=(n, 1))
    shape = rng.uniform(0.7, 1.3, size=(n, 3))
    # Median contrast falls from 4x to 1.5x background with difficulty; the spread widens so some cells are faint.
    median = 4.0 * (1 - difficulty) + 1.5 * difficulty
    # Floored where an annotator would still see a cell: ground truth only holds visible somata.
    contrast = np.maximum(median * rng.lognormal(0.0, 0.35 + 0.35 * difficulty, size=n), 0.5)
    hollow = np.where(rng.uniform(size=n) < 0.3 * difficulty, rng.uniform(0.4, 0.8, size=n), 0.0)
    return Ellipsoids(centre, size * shape, random_rotations(rng, n), contrast, hollow)


def _blobs(
    rng: np.random.Generator,
    extent: np.ndarray,
    n: int,
    *,
    axes: tuple[tuple[float, float], tuple[float, float], tuple[float, float]],
    contrast: tuple[float, float],
) -> Ellipsoids:
    """n ellipsoids anywhere, semi-axes and contrast drawn uniformly from the given ranges (µm, x background)."""
    semi = np.stack([rng.uniform(lo, hi, size=n) for lo, hi in axes], axis=1)
    return Ellipsoids(
        centre=rng.uniform(0, 1, size=(n, 3)) * extent,
        semi_axes=semi,
        rotation=random_rotations(rng, n),
        contrast=rng.uniform(*contrast, size=n),
        hollow=np.zeros(n),
    )


def _vessels(rng: np.random.Generator, extent: np.ndarray, n: int, contrast: float) -> Capsules:
    """Random-walk polylines; a third run mostly along z, where each plane shows a cell-sized disc."""
    parts = []
    for _ in range(n):
        direction = np.array([1.0, 0.0, 0.0]) if rng.uniform() < 0.35 else _unit_vectors(rng, 1)[0]
        steps = int(rng.integers(10, 40))
        points = [rng.uniform(0, 1, size=3) * extent]
        for _ in range(steps):
            direction = direction + rng.normal(0, 0.25, size=3)
            direction /= np.linalg.norm(direction)
            points.append(points[-1] + direction * 10.0)
        path = np.asarray(points)
        parts.append(
            Capsules(
                start=path[:-1],
                end=path[1:],
                radius=np.full(steps, rng.uniform(2.0, 5.0)),
                contrast=np.full(steps, contrast * rng.uniform(0.3, 1.0)),
                wall=np.full(steps, rng.uniform() < 0.4),
            )
        )
    empty = Capsules(np.empty((0, 3)), np.empty((0, 3)), np.empty(0), np.empty(0), np.empty(0, dtype=bool))
    return Capsules.concat(empty, *parts)


def _sticks(
    rng: np.random.Generator,
    start: np.ndarray,
    direction: np.ndarray,
    *,
    length: tuple[float, float],
    radius: tuple[float, float],
    contrast: np.ndarray,
) -> Capsules:
    n = len(start)
    return Capsules(
        start=start,
        end=start + direction * rng.uniform(*length, size=(n, 1)),
        radius=rng.uniform(*radius, size=n),
        contrast=contrast,
        wall=np.zeros(n, dtype=bool),
    )


def _processes(rng: np.random.Generator, cells: Ellipsoids, *, most: int, radius: float) -> Capsules:
    """0 to `most` proximal dendrites per soma, as a cytoplasmic or membrane label fills them: each leaves the soma,
    bends as it goes and thins and dims outwards over 1-2.5 diameters, three segments each. Drawn after everything
    else, so that a scene without them is the same scene, bit for bit."""
    count = rng.integers(0, most + 1, size=len(cells))
    owner = np.repeat(np.arange(len(cells)), count)
    n = len(owner)
    direction = _unit_vectors(rng, n)
    start = cells.centre[owner] + direction * radius * 0.8
    step = rng.uniform(1.0, 2.5, size=(n, 1)) * 2 * radius / 3
    thickness = rng.uniform(1.5, 2.5, size=n)
    brightness = cells.contrast[owner] * rng.uniform(0.5, 1.0, size=n)
    parts = []
    for k in range(3):
        direction = direction + rng.normal(0.0, 0.3, size=(n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        end = start + direction * step
        taper = 1.0 - 0.25 * k
        parts.append(Capsules(start, end, thickness * taper, brightness * taper, np.zeros(n, dtype=bool)))
        start = end
    return Capsules.concat(*parts)


def make_scene(
    *,
    shape: tuple[int, int, int],
    scale: Scale,
    difficulty: float,
    rng: np.random.Generator,
    size_spread: float = SIZE_SPREAD,
    density: float = CELLS_PER_MM3,
    processes: int = 0,
) -> Scene:
    """Sample one brain's objects for a volume of `shape` voxels at `scale`, with `density` cells per mm³ on average
    and up to `processes` dendrites leaving each soma."""
    extent = np.asarray(shape, dtype=float) * np.asarray(scale.voxel_size)
    radius = scale.cell_diameter / 2
    d = float(np.clip(difficulty, 0.0, 1.0))
    volume_mm3 = float(np.prod(extent)) * 1e-9
    n_target = max(1, int(rng.poisson(density * rng.uniform(0.6, 1.5) * volume_mm3)))

    centres = _place_cells(rng, extent, n_target, min_dist=2.2 * radius)
    # Touching pairs: a second soma right against the first, both in the truth.
    pair = rng.uniform(size=len(centres)) < 0.12 * d
    partners = centres[pair] + _unit_vectors(rng, int(pair.sum())) * radius * rng.uniform(1.8, 2.3, size=(int(pair.sum()), 1))
    inside = np.all((partners >= 0) & (partners < extent), axis=1)
    cells = _soma(rng, np.concatenate([centres, partners[inside]]), radius, d, size_spread)

    n = len(cells)
    median = float(np.median(cells.contrast)) if n else 1.0
    clutter_rate = 0.05 + 0.95 * d
    # Debris: tiny, very bright points whose blurred, integrated signal rivals a soma's.
    n_debris = int(rng.poisson(0.7 * clutter_rate * n))
    debris = _blobs(rng, extent, n_debris, axes=((0.6, 1.4),) * 3, contrast=(0.0, 1.0))
    debris_gain = median * (radius / debris.semi_axes.mean(axis=1)) ** 2 * rng.lognormal(-0.5, 0.6, size=n_debris)
    debris = Ellipsoids(debris.centre, debris.semi_axes, debris.rotation, debris_gain, debris.hollow)
    rods = _blobs(
        rng,
        extent,
        int(rng.poisson(0.35 * clutter_rate * n)),
        axes=((1.6 * radius, 3.2 * radius), (0.25 * radius, 0.45 * radius), (0.25 * radius, 0.45 * radius)),
        contrast=(0.4 * median, 1.6 * median),
    )
    haze = _blobs(
        rng,
        extent,
        int(rng.poisson(0.25 * clutter_rate * n)),
        axes=((1.5 * radius, 3.0 * radius),) * 3,
        contrast=(0.2 * median, 0.6 * median),
    )
    # Dendrite stubs leave some somata; loose fibre fragments float free.
    has_stub = rng.uniform(size=n) < 0.5 * d
    stub_dir = _unit_vectors(rng, int(has_stub.sum()))
    stubs = _sticks(
        rng,
        cells.centre[has_stub] + stub_dir * radius * 0.8,
        stub_dir,
        length=(0.6 * 2 * radius, 1.5 * 2 * radius),
        radius=(0.6, 1.3),
        contrast=cells.contrast[has_stub] * rng.uniform(0.4, 0.9, size=int(has_stub.sum())),
    )
    n_frag = int(rng.poisson(0.45 * clutter_rate * n))
    fragments = _sticks(
        rng,
        rng.uniform(0, 1, size=(n_frag, 3)) * extent,
        _unit_vectors(rng, n_frag),
        length=(0.8 * 2 * radius, 2.0 * 2 * radius),
        radius=(0.7, 1.6),
        contrast=median * rng.uniform(0.5, 2.0, size=n_frag),
    )
    n_vessels = int(rng.poisson(clutter_rate * 40.0 * volume_mm3 / 0.067))
    vessels = _vessels(rng, extent, n_vessels, contrast=median)
    tubes = Capsules.concat(stubs, fragments, vessels)
    if processes:
        tubes = Capsules.concat(tubes, _processes(rng, cells, most=processes, radius=radius))
    return Scene(cells=cells, clutter=Ellipsoids.concat(debris, rods), haze=haze, tubes=tubes)
