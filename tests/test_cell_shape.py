"""Measuring how elongated along z a volume's cells look, and treating z as finer where they are."""

import json

import numpy as np
import pytest

from clarity_fast.cell_shape import TOLERATED, axial_stretch, corrected_scale, elongation, stretched
from clarity_fast.io.volumes import open_array, write_tiff
from clarity_fast.settings import Scale
from clarity_fast.simulate import SimulatedBrain, SimulationSettings

SCALE = Scale(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0)


def cells(axial: float, *, shape=(48, 160, 160), seed=0, ramp: float = 0.0) -> np.ndarray:
    """Gaussian cells (sd 0.35 diameter across, `axial` times that along z) on a jittered lattice, shot noise;
    `ramp`: each group of 8 planes brightens by this fraction from its first plane to its last (serial sections)."""
    rng = np.random.default_rng(seed)
    voxel, sd = np.asarray(SCALE.voxel_size), 0.35 * SCALE.cell_diameter * np.array([axial, 1.0, 1.0])
    signal = np.zeros(shape, np.float32)
    spacing = np.array([3.2 * axial, 2.2, 2.2]) * SCALE.cell_diameter
    for centre in np.stack(np.meshgrid(*[np.arange(s / 2, n * v, s) for n, v, s in zip(shape, voxel, spacing)], indexing="ij"), -1).reshape(-1, 3):
        centre = (centre + rng.uniform(-0.15, 0.15, 3) * spacing) / voxel  # voxels
        reach = np.ceil(4 * sd / voxel).astype(int)
        box = tuple(slice(max(int(c) - r, 0), min(int(c) + r + 1, n)) for c, r, n in zip(centre, reach, shape))
        axes = np.meshgrid(*[(np.arange(b.start, b.stop) - c) * v / s for b, c, v, s in zip(box, centre, voxel, sd)], indexing="ij")
        signal[box] += 400.0 * rng.uniform(0.7, 1.3) * np.exp(-0.5 * sum(a * a for a in axes))
    gain = 1.0 + ramp * (np.arange(shape[0]) % 8) / 7
    return rng.poisson((signal + 200.0) * gain[:, None, None]).astype(np.uint16)


def test_round_cells_read_as_round():
    assert elongation(open_array(cells(1.0)), scale=SCALE) == pytest.approx(1.0, abs=0.2)


@pytest.mark.parametrize("axial", [2.0, 3.0])
def test_elongated_cells_read_as_elongated(axial):
    assert elongation(open_array(cells(axial, shape=(64, 160, 160))), scale=SCALE) == pytest.approx(axial, rel=0.2)


def test_planes_that_brighten_with_depth_do_not_read_as_elongated_cells():
    """Serial sections dim with depth; each plane is flattened before the z profiles are read."""
    assert elongation(open_array(cells(1.0, ramp=1.0)), scale=SCALE) < TOLERATED


@pytest.mark.parametrize("offset", [0.0, 200.0, 205.0])
def test_a_subtracted_background_changes_nothing(offset):
    """Float data whose background was subtracted (planes with medians near or below zero) read as before."""
    for axial, expected in ((1.0, 1.0), (2.5, 2.5)):
        volume = cells(axial, shape=(64, 160, 160)).astype(np.float32) - offset
        assert elongation(open_array(volume), scale=SCALE) == pytest.approx(expected, rel=0.2)


def test_the_block_is_read_a_few_planes_at_a_time(monkeypatch):
    """The measured block is cut out of whole planes: never more than READ_PLANES of them at once."""
    from clarity_fast import cell_shape

    reader = open_array(cells(1.0, shape=(64, 160, 160)))
    sizes = []
    read = reader.read_slab
    monkeypatch.setattr(reader, "read_slab", lambda z0, z1: sizes.append(z1 - z0) or read(z0, z1))
    elongation(reader, scale=Scale(voxel_size=(1.0, 2.0, 2.0), cell_diameter=12.0))
    assert sizes and max(sizes) <= cell_shape.READ_PLANES


def test_a_constant_volume_is_measured_quickly_as_round():
    """Every voxel of a flat float volume can be a candidate; isolating them must not take quadratic time."""
    value = elongation(open_array(np.full((40, 100, 100), 3.0, np.float32)), scale=SCALE)
    assert np.isnan(value) and axial_stretch(value) == 1.0


def test_a_simulated_brain_is_within_the_tolerated_range():
    volume = SimulatedBrain(SimulationSettings(shape=(48, 192, 192), difficulty=1.0, seed=5)).volume()
    scale, value = corrected_scale(open_array(volume), scale=SCALE)
    assert value < TOLERATED and scale == SCALE


@pytest.mark.parametrize(
    "volume, scale",
    [
        (np.zeros((24, 64, 64), np.uint16), SCALE),  # nothing to measure
        (cells(3.0)[:1], SCALE),  # a single plane
        (cells(3.0), Scale(voxel_size=(8.0, 2.0, 2.0), cell_diameter=12.0)),  # planes too far apart to tell a shape
        (np.where(np.arange(48)[:, None, None] == 24, np.nan, cells(1.0)), SCALE),  # NaN: left for the prefilter to report
    ],
)
def test_what_cannot_be_measured_is_taken_as_round(volume, scale):
    value = elongation(open_array(volume), scale=scale)
    assert np.isnan(value) and axial_stretch(value) == 1.0
    assert corrected_scale(open_array(volume), scale=scale) == (scale, pytest.approx(value, nan_ok=True))


@pytest.mark.parametrize("plane", [np.uint16(0), np.uint16(65535)])
def test_a_dead_or_saturated_plane_does_not_stop_the_others_being_flattened(plane):
    """Serial sections that brighten with depth read round once flattened; one blank plane must not undo that."""
    volume = cells(1.0, ramp=1.0)
    intact = elongation(open_array(volume), scale=SCALE)
    volume[len(volume) // 2 + 3] = plane  # inside the measured middle block
    assert elongation(open_array(volume), scale=SCALE) == pytest.approx(intact, abs=0.05)  # unflattened: 0.90-0.92


def test_the_stretch_is_one_up_to_the_tolerance_and_grows_continuously_beyond():
    values = np.arange(0.5, 4.0, 0.01)
    stretches = np.array([axial_stretch(v) for v in values])
    assert np.all(stretches[values <= TOLERATED] == 1.0) and np.all(np.diff(stretches) >= 0)
    assert np.max(np.diff(stretches)) <= 0.0100001  # no jump at the tolerance
    assert axial_stretch(3.0) == pytest.approx(3.0 - TOLERATED + 1.0) and axial_stretch(float("nan")) == 1.0
    assert stretched(SCALE, stretch=2.0) == Scale(voxel_size=(2.0, 2.0, 2.0), cell_diameter=12.0)
    assert stretched(SCALE, stretch=1.0) is SCALE


def test_detect_treats_z_as_finer_for_elongated_cells_and_says_so(tmp_path):
    """Measured once per volume, so the detections still do not depend on the slab depth."""
    from cli_runner import run_cli

    path = tmp_path / "long.tif"
    write_tiff(path, cells(2.5, shape=(64, 128, 128)), voxel_size=SCALE.voxel_size)
    outputs = []
    for depth in (64, 8):
        out = tmp_path / f"cells_{depth}.csv"
        done = run_cli("detect", path, "--cell-diameter", "12", "--slab-depth", str(depth), "--out", out)
        assert done.returncode == 0, done.stderr
        assert "as long along z as across" in done.stdout
        summary = json.loads(out.with_suffix(".summary.json").read_text())
        assert summary["axial_stretch"] > 1.0 and summary["voxel_size_um"] == list(SCALE.voxel_size)
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1]


def test_the_summary_says_when_the_shape_could_not_be_measured(tmp_path):
    """A single plane has no z profile: detect takes its cells as round and records null, not a measured 1."""
    from cli_runner import run_cli

    path = tmp_path / "plane.tif"
    write_tiff(path, cells(1.0)[:1], voxel_size=SCALE.voxel_size)
    done = run_cli("detect", path, "--cell-diameter", "12", "--out", tmp_path / "cells.csv")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "cells.summary.json").read_text())
    assert summary["cell_elongation"] is None and summary["axial_stretch"] == 1.0
