"""How much longer cells look along z than across: the axial elongation the optics add, measured per volume.

Light-sheet and two-photon point-spread functions are longer along z than in the plane, so round cells image as
ellipsoids two or three times as long as wide. Detection given the true diameter then sees each cell as two or
three stacked cells: the prefilter splits it, the network accepts the parts, and they lie further apart than the
merge radius (a foreign generator's round cells stretched 2x and 3x along z: F1 0.985 -> 0.914 / 0.685). So each
volume's apparent elongation is measured once, before streaming, on a block from its middle, each plane divided by
its median (planes of different brightness bend z profiles): for the brightest candidates with no other near them
(neighbours above or below flatten a z profile), the log-intensity curvature along each axis from samples at one
and two lags either side (a Gaussian profile's curvature whatever the sampling phase; the centre voxel, which the
candidate search picked for its noise, is left out), medians over candidates, read as widths. Elongation up to
TOLERATED is left alone (what the built-in model's training and test volumes show; nothing it was fitted or
measured on changes); beyond it, z is treated as sampled that many times finer (less the tolerated part), so that
cells reach the network about as elongated as those it learned.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree

from clarity_fast.candidates import Candidates, all_finite, find_candidates
from clarity_fast.io.volumes import VolumeReader, open_array
from clarity_fast.noise_correlation import NoiseModel
from clarity_fast.settings import PrefilterSettings, Scale

SAMPLE_DIAMETERS = (16.0, 64.0, 64.0)  # the measured block spans up to this many cell diameters (z, y, x)
READ_PLANES = 8  # whole planes read at a time while cutting the block out
CELLS = 300  # the brightest candidates measured
MIN_CELLS = 20  # fewer usable candidates: no measurement (elongation 1)
LAG_DIAMETERS = 0.3  # the first sampling lag, in cell diameters, and at least one voxel along every axis
MAX_LAG_DIAMETERS = 0.5  # ... but no more than this: coarser sampling cannot tell a cell's shape (elongation 1)
BACKGROUND_DIAMETERS = 1.5  # half-width of the window whose 20th percentile is a candidate's background
# The profiles measured: (axis, lag multiple); z again at doubled lags for cells too long to curve within the first.
LINES = np.array([(0, 1.0), (1, 1.0), (2, 1.0), (0, 2.0)])
LONG = 2.0  # elongations beyond this are taken from the doubled z lags
ISOLATION = (2.5, 0.75)  # cell diameters along z and in-plane kept clear of other candidates
SYMMETRY = 2.0  # the z profile's two sides may curve this many times more one than the other
PLAUSIBLE = (0.3, 10.0)  # elongations outside this are taken as failed measurements (1)
TOLERATED = 1.75  # elongations up to this get no correction: the built-in model's training and test volumes reach 1.69


def elongation(reader: VolumeReader, *, scale: Scale, noise: NoiseModel | None = None) -> float:
    """The median cell's z width over its in-plane width (1 for round cells; NaN where it cannot be measured: too
    few planes or cells, z sampled too coarsely, or a profile bent by the imaging; such volumes are taken as round)."""
    block = _middle_block(reader, scale=scale)
    if block.shape[0] < 5 or not all_finite(block):
        return math.nan  # too few planes for a z profile (a single plane, say), or NaN the prefilter will report
    voxel = np.asarray(scale.voxel_size)
    lag_um = max(LAG_DIAMETERS * scale.cell_diameter, float(voxel.max()))  # the same along every axis
    if lag_um > MAX_LAG_DIAMETERS * scale.cell_diameter:
        return math.nan
    settings = PrefilterSettings(scale=scale)
    found = _isolated(find_candidates(open_array(block), settings=settings, noise=noise), scale=scale)
    data = _flattened(block)
    lag = lag_um / voxel  # voxels, per axis
    reach = np.ceil(2 * lag * np.max(LINES[:, 1, None] * (LINES[:, 0, None] == np.arange(3)), axis=0)).astype(int)
    half = np.ceil(BACKGROUND_DIAMETERS * scale.cell_diameter / voxel).astype(int)
    inside = np.all((found.zyx >= reach) & (found.zyx < np.asarray(data.shape) - reach), axis=1)
    brightest = np.flatnonzero(inside)[np.argsort(-found.response[inside], kind="stable")[:CELLS]]
    offsets = np.zeros((len(LINES), 4, 3))  # line, step, zyx: steps -2, -1, 1, 2 lags (times the line's multiple)
    for i, (axis, multiple) in enumerate(LINES):
        offsets[i, :, int(axis)] = np.array([-2.0, -1.0, 1.0, 2.0]) * multiple * lag[int(axis)]
    sides = []  # per candidate, line and side (-, +): -1 / sigma² of the Gaussian through the two samples there
    for p in found.zyx[brightest]:
        window = data[tuple(slice(max(c - h, 0), c + h + 1) for c, h in zip(p, half))]
        background = np.percentile(window, 20)
        above = map_coordinates(data, (p + offsets).reshape(-1, 3).T, order=1).reshape(len(LINES), 4) - background
        if np.all(above > 0):
            logs = np.log(above)
            # ln I(2L) - ln I(L) = -3 L² / (2 sigma²) for a Gaussian of sd sigma centred at 0 (for one off centre
            # by d, -(3 L² -+ 2 L d) / (2 sigma²): the two sides' mean is unbiased)
            step = np.stack([logs[:, 0] - logs[:, 1], logs[:, 3] - logs[:, 2]], axis=1)
            sides.append(step / (1.5 * (LINES[:, 1, None] * lag_um) ** 2))
    if len(sides) < MIN_CELLS:
        return math.nan
    median = np.median(np.asarray(sides), axis=0)  # line, side
    if np.any(median[1:3] >= 0):
        return math.nan  # no in-plane width to compare with
    lateral = np.mean(1.0 / np.sqrt(-median[1:3].mean(axis=1)))
    # Long cells barely curve within the first lags: the doubled lags measure them (for a Gaussian both agree).
    # Either way the profile's two sides must agree (_symmetric), or it is bent by the imaging, not a cell.
    near = 1.0 / np.sqrt(-median[0].mean()) / lateral if np.all(median[0] < 0) else math.inf
    sides = median[0] if near <= LONG else median[3]
    value = 1.0 / np.sqrt(-sides.mean()) / lateral if _symmetric(sides) else math.nan
    return float(value) if PLAUSIBLE[0] <= value <= PLAUSIBLE[1] else math.nan


def _symmetric(sides: np.ndarray) -> bool:
    """Whether a profile's two sides curve down within SYMMETRY times of each other."""
    return bool(np.all(sides < 0) and sides.max() / sides.min() >= 1.0 / SYMMETRY)


def axial_stretch(value: float) -> float:
    """How many times finer than stated z is treated: the elongation less the tolerated TOLERATED - 1, at least 1
    (continuous at the tolerance; a cell 3x as long as wide then reaches the network about 1.3x, as its training
    cells did)."""
    return max(1.0, value - (TOLERATED - 1.0)) if math.isfinite(value) else 1.0


def corrected_scale(reader: VolumeReader, *, scale: Scale, noise: NoiseModel | None = None) -> tuple[Scale, float]:
    """The scale detection and training use for this volume (z finer where its cells look elongated), and the
    elongation measured."""
    scale.check_fits(reader.shape, source=reader.path)
    value = elongation(reader, scale=scale, noise=noise)
    return stretched(scale, stretch=axial_stretch(value)), value


def elongation_line(value: float, stretch: float) -> str:
    """What the user sees when the volume's cells were found elongated along z and z was rescaled."""
    return (f"cells look {value:.2f}x as long along z as across (the microscope's axial blur): z was treated as "
            f"{stretch:.2f}x finer than the stated voxel size, so that they reach the model about as round as it learned them")


def stretched(scale: Scale, *, stretch: float) -> Scale:
    """The scale that makes cells `stretch` times elongated along z look round: z voxels that many times smaller."""
    if stretch == 1.0:
        return scale
    z, y, x = scale.voxel_size
    return Scale(voxel_size=(z / stretch, y, x), cell_diameter=scale.cell_diameter)


def _isolated(found: Candidates, *, scale: Scale) -> Candidates:
    """The candidates with no other within ISOLATION cell diameters (z, lateral): in dense tissue a neighbour above
    or below would flatten the z profile and read as a long cell."""
    reach = np.asarray(ISOLATION[:1] + ISOLATION[1:] * 2) * scale.cell_diameter / np.asarray(scale.voxel_size)
    if len(found) < 2:
        return found
    points = found.zyx / reach
    distance, _ = cKDTree(points).query(points, k=2, distance_upper_bound=1.0)
    alone = ~np.isfinite(distance[:, 1])
    return Candidates(found.zyx[alone], found.response[alone])


def _flattened(block: np.ndarray) -> np.ndarray:
    """The block with each plane's background set to the same level and spread (its 5th percentile to 0, its median
    to 1): planes that differ in brightness (serial sections that dim with depth, a flickering sheet) would
    otherwise bend every z profile. Low percentiles, not bright ones, so that planes through many cells are not
    dimmed more than planes between them. A plane with no spread (dead, saturated, all NaN) is mapped as the median
    plane is; a block with no plane of any spread is left as it is."""
    data = block.astype(np.float32)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN planes
        low, level = np.nanpercentile(data.reshape(len(data), -1), [5, 50], axis=1)
    spread = level - low
    good = np.isfinite(spread) & (spread > 0)
    if not good.any():
        return data
    low[~good], spread[~good] = np.median(low[good]), np.median(spread[good])
    return (data - low[:, None, None].astype(np.float32)) / spread[:, None, None].astype(np.float32)


def _middle_block(reader: VolumeReader, *, scale: Scale) -> np.ndarray:
    """Up to SAMPLE_DIAMETERS cell diameters of the volume around its centre."""
    extent = [min(n, max(int(math.ceil(k * d)), 1)) for n, k, d in zip(reader.shape, SAMPLE_DIAMETERS, scale.cell_diameter_voxels)]
    start = [(n - e) // 2 for n, e in zip(reader.shape, extent)]
    rows, columns = slice(start[1], start[1] + extent[1]), slice(start[2], start[2] + extent[2])
    z0, z1 = start[0], start[0] + extent[0]
    # a few planes at a time, each cropped at once: never more than READ_PLANES whole planes in memory
    return np.concatenate([reader.read_slab(a, min(a + READ_PLANES, z1))[:, rows, columns] for a in range(z0, z1, READ_PLANES)])
