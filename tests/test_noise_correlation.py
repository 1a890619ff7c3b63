"""Measuring a volume's noise correlation, and what it does to the prefilter's noise units."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from clarity_fast.candidates import find_candidates
from clarity_fast.io.volumes import open_array
from clarity_fast.noise_correlation import TOLERATED, NoiseModel, fit, lag_spreads, volume_noise
from clarity_fast.settings import PrefilterSettings, Scale
from clarity_fast.simulate import SimulatedBrain, SimulationSettings

SIGMA = PrefilterSettings(scale=Scale(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0)).sigma


def noise(blur: float | tuple[float, float, float], *, shape=(9, 200, 200), seed=0) -> np.ndarray:
    field = np.random.default_rng(seed).standard_normal(shape)
    if np.any(blur):
        field = gaussian_filter(field, blur)
    return (1000 + 50 * field / field.std()).astype(np.float32)


@pytest.mark.parametrize("blur", [0.6, 1.0, 1.5])
def test_the_blur_of_smoothed_noise_is_recovered(blur):
    assert fit(lag_spreads(noise(blur))).blur == pytest.approx((blur, blur), abs=0.05)


def test_a_blur_along_one_axis_is_measured_along_that_axis():
    """The noise map runs along x: noise smoothed along x only is what inflates its units most."""
    along_x = fit(lag_spreads(noise((0.0, 0.0, 1.0))))
    assert along_x.blur == pytest.approx((0.0, 1.0), abs=0.05)
    assert along_x.raw_inflation(sigma=SIGMA) > 4.0


def test_white_noise_keeps_the_white_noise_units():
    model = fit(lag_spreads(noise(0.0)))
    assert max(model.blur) < 0.45 and model.gain(sigma=SIGMA) == 1.0


def test_the_gain_is_one_up_to_the_tolerated_inflation_and_grows_beyond():
    """Up to TOLERATED (what the built-in model's training volumes reached) nothing changes, bit for bit."""
    models = [NoiseModel(blur=(b, b)) for b in np.arange(0.0, 2.01, 0.1)]
    raw, gains = [m.raw_inflation(sigma=SIGMA) for m in models], [m.gain(sigma=SIGMA) for m in models]
    assert all(b >= a for a, b in zip(raw, raw[1:])) and raw[0] == 1.0
    assert all(g == 1.0 if r <= TOLERATED else g == pytest.approx(r - TOLERATED + 1.0) for r, g in zip(raw, gains))
    assert gains[5] == 1.0 and gains[10] > 4.0  # blur 0.5: none; blur 1: several times
    assert NoiseModel(blur=(1.0, 1.0)).gain(sigma=SIGMA[1:]) > 4.0  # a single plane too


def test_a_simulated_brain_is_within_the_tolerated_range():
    volume = SimulatedBrain(SimulationSettings(shape=(24, 96, 96), difficulty=1.0, seed=5)).volume()
    assert volume_noise(open_array(volume)).gain(sigma=SIGMA) == 1.0


@pytest.mark.parametrize("volume", [np.zeros((9, 50, 50), np.uint16), np.full((1, 3, 3), 7.0, np.float32)])
def test_no_noise_to_measure_means_white_noise_units(volume):
    assert volume_noise(open_array(volume)) == NoiseModel()


def test_smoothed_noise_no_longer_floods_the_prefilter_with_candidates():
    volume = noise(1.0, shape=(24, 128, 128))
    settings = PrefilterSettings(scale=Scale(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0))
    as_white = find_candidates(open_array(volume), settings=settings, noise=NoiseModel())
    measured = find_candidates(open_array(volume), settings=settings)
    assert len(as_white) > 100 and len(measured) < len(as_white) / 10


def test_the_candidates_command_says_when_it_corrected_smoothed_noise(tmp_path):
    from cli_runner import run_cli

    from clarity_fast.io.volumes import write_tiff

    for blur, said in ((0.0, False), (1.0, True)):
        path = tmp_path / f"noise_{blur}.tif"
        write_tiff(path, np.rint(noise(blur, shape=(12, 96, 96))).astype(np.uint16), voxel_size=(4.0, 2.0, 2.0))
        done = run_cli("candidates", path, "--cell-diameter", "12", "--out", tmp_path / f"c_{blur}.csv")
        assert done.returncode == 0, done.stderr
        assert ("the noise is smoothed" in done.stdout) == said, done.stdout
