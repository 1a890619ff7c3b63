"""The streamed prefilter: slab-invariant, 2D-capable, and finding the cells."""

import csv

import numpy as np
import pytest
from cli_runner import run_cli

from clarity_fast.candidates import find_candidates
from clarity_fast.errors import InputError
from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, match_points
from clarity_fast.io.points import read_points
from clarity_fast.io.volumes import open_array, open_volume, write_tiff
from clarity_fast.kernels import reference
from clarity_fast.settings import PrefilterSettings, Scale
from clarity_fast.simulate import SimulatedBrain, SimulationSettings



@pytest.fixture(scope="module")
def brain():
    return SimulatedBrain(SimulationSettings(shape=(40, 96, 96), seed=21, difficulty=1.0))


def test_slabs_that_cut_through_cells_give_the_whole_volume_result(brain):
    volume = open_array(brain.volume())
    results = [
        find_candidates(volume, settings=PrefilterSettings(scale=brain.settings.scale, slab_depth=depth))
        for depth in (1, 3, 7, 16, 40)
    ]
    assert len(results[0]) > 50
    for other in results[1:]:
        np.testing.assert_array_equal(other.zyx, results[0].zyx)
        np.testing.assert_array_equal(other.response, results[0].response)


def test_half_float_volumes_are_read_as_float32(brain):
    """The compiled kernels have no float16: readers widen it (exactly), so candidates equal float32's."""
    half = brain.volume().astype(np.float16)
    reader = open_array(half)
    assert reader.dtype == np.float32 and reader.read_slab(0, 2).dtype == np.float32
    settings = PrefilterSettings(scale=brain.settings.scale)
    expected = find_candidates(open_array(half.astype(np.float32)), settings=settings)
    found = find_candidates(reader, settings=settings)
    assert len(found) > 50
    np.testing.assert_array_equal(found.zyx, expected.zyx)


def test_streamed_candidates_equal_the_reference_maths(brain):
    settings = PrefilterSettings(scale=brain.settings.scale, slab_depth=9)
    found = find_candidates(open_array(brain.volume()), settings=settings)
    snr = reference.blob_snr(brain.volume(), sigma=settings.sigma, noise_half_width=settings.noise_half_width, noise_floor=0.5)
    expected = reference.local_maxima(snr, radius=settings.min_separation, threshold=settings.threshold)
    # Float rounding may flip a near-tie; the sets must agree almost everywhere.
    got = {tuple(p) for p in found.zyx}
    want = {tuple(p) for p in expected}
    assert len(got ^ want) <= 0.01 * len(want)


def test_pure_noise_gives_candidates_no_denser_on_the_faces_than_inside():
    """Reflection at the faces reads samples twice and inflated the noise there: the faces' planes held ten times
    the candidates of planes inside. With the fold scales they hold no more than about twice (a face voxel is
    compared with half the neighbours a voxel inside is)."""
    volume = (100 + np.random.default_rng(0).normal(0, 3, (48, 160, 160))).astype(np.uint16)
    settings = PrefilterSettings(scale=Scale(voxel_size=(2.0, 2.0, 2.0), cell_diameter=12.0), threshold=2.0)
    zyx = find_candidates(open_array(volume), settings=settings).zyx
    for axis, n in enumerate(volume.shape):
        on_face = np.isin(zyx[:, axis], (0, n - 1)).sum() / 2
        inside = ((zyx[:, axis] >= 10) & (zyx[:, axis] < n - 10)).sum() / (n - 20)
        assert on_face <= 2.5 * inside, (axis, on_face, inside)


def test_recall_on_a_hard_simulated_volume(brain):
    found = find_candidates(open_array(brain.volume()), settings=PrefilterSettings(scale=brain.settings.scale))
    match = match_points(pred=found.zyx, truth=brain.cells.zyx, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS)
    assert match.recall >= 0.93
    assert len(found) <= 6 * len(brain.cells)


def test_single_plane_uses_a_2d_response(tmp_path):
    brain = SimulatedBrain(SimulationSettings(shape=(1, 128, 160), seed=3, difficulty=0.0))
    plane = brain.volume()[0]
    path = tmp_path / "plane.tif"
    write_tiff(path, plane, voxel_size=(4.0, 2.0, 2.0))
    with open_volume(path) as reader:
        assert reader.shape == (1, 128, 160)
        found = find_candidates(reader, settings=PrefilterSettings(scale=brain.settings.scale))
    assert len(found) > 3 and np.all(found.zyx[:, 0] == 0)
    in_plane = brain.cells.zyx[np.abs(brain.cells.zyx[:, 0]) < 0.75] * (0, 1, 1)
    match = match_points(pred=found.zyx, truth=in_plane, radius=3.5)
    assert match.recall >= 0.8


def test_constant_volume_has_no_candidates():
    found = find_candidates(open_array(np.full((6, 32, 32), 100, np.uint16)), settings=PrefilterSettings(scale=Scale((4, 2, 2), 12)))
    assert len(found) == 0


@pytest.mark.parametrize("scale", [Scale((4, 2, 2), 12), Scale((6, 1.62, 1.62), 8)], ids=["sim", "thick-planes"])
def test_bright_background_adds_no_candidates(scale):
    """The response measures curvature, which a constant offset does not have: noise on a bright background gives
    the candidates it gives on a dark one (the sampled kernels' leak once made 15000 grey levels of offset worth
    hundreds of noise candidates, and flat saturated blocks a candidate at every voxel)."""
    noise = np.random.default_rng(5).normal(0, 10, (16, 64, 64))
    counts = []
    for offset in (200, 30000, 60000):
        found = find_candidates(open_array(np.rint(noise + offset).astype(np.uint16)), settings=PrefilterSettings(scale=scale))
        counts.append(len(found))
    assert max(counts) - min(counts) <= 2, counts
    flat = np.full((16, 64, 64), 4095, np.uint16)
    assert len(find_candidates(open_array(flat), settings=PrefilterSettings(scale=scale))) == 0


def test_nan_in_a_float_volume_is_refused_not_spread():
    """One NaN made the noise map NaN to the end of its row and silently removed a cell 100 voxels away."""
    volume = np.random.default_rng(0).normal(100, 5, (12, 40, 128)).astype(np.float32)
    volume[6, 20, 3] = np.nan
    with pytest.raises(InputError, match=r"NaN or infinite values in plane 6;"):
        find_candidates(open_array(volume), settings=PrefilterSettings(scale=Scale((4, 2, 2), 12)))


def test_real_delivr_patches_recall(shared_data):
    root = shared_data / "delivr_cfos"
    settings = PrefilterSettings(scale=Scale(voxel_size=(6.0, 1.62, 1.62), cell_diameter=8.0))
    tp = total = 0
    for patch in ("1008_0", "1147_1", "695_0"):
        with open_volume(root / "patches" / patch / "volume.tif") as reader:
            found = find_candidates(reader, settings=settings)
        truth = read_points(root / "patches" / patch / "points.csv").zyx
        tp += match_points(pred=found.zyx, truth=truth, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS).tp
        total += len(truth)
    assert tp / total >= 0.95



def test_candidates_command(tmp_path):
    brain = SimulatedBrain(SimulationSettings(shape=(12, 64, 64), seed=4, difficulty=0.5))
    write_tiff(tmp_path / "v.tif", brain.volume(), voxel_size=(4.0, 2.0, 2.0))
    out = run_cli("candidates", str(tmp_path / "v.tif"), "--out", str(tmp_path / "c.csv"), "--slab-depth", "5")
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "c.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["z", "y", "x", "response"] and len(rows) > 5
    assert read_points(tmp_path / "c.csv").score is not None
    assert "candidates in" in out.stdout


def test_candidates_in_a_region_are_the_whole_volumes_there(brain, tmp_path):
    """Read with the prefilter's reach around it, a block proposes exactly the whole volume's candidates inside it,
    in the whole volume's voxels; a region past the volume is refused with one line."""
    from clarity_fast.region import parse_region, within

    write_tiff(tmp_path / "v.tif", brain.volume(), voxel_size=(4.0, 2.0, 2.0))
    assert run_cli("candidates", tmp_path / "v.tif", "--out", tmp_path / "all.csv").returncode == 0
    everywhere = read_points(tmp_path / "all.csv")
    for text in ("5:30x10:70x20:96", ":x:x:48", "38:x90:x:"):
        out = run_cli("candidates", tmp_path / "v.tif", "--out", tmp_path / "part.csv", "--region", text)
        assert out.returncode == 0, out.stderr
        assert f"candidates in region {text} of " in out.stdout
        part, inside = read_points(tmp_path / "part.csv"), within(everywhere.cells, bounds=parse_region(text, name="").bounds((40, 96, 96), source=""))
        np.testing.assert_array_equal(part.cells, everywhere.cells[inside])
        np.testing.assert_array_equal(part.score, everywhere.score[inside])
    out = run_cli("candidates", tmp_path / "v.tif", "--out", tmp_path / "bad.csv", "--region", "0:41x:x:")
    assert out.returncode == 2 and "past the volume's 40 voxels along z" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad.csv").exists()


def test_candidates_without_a_voxel_size_asks_for_one(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((4, 16, 16), np.uint16))
    out = run_cli("candidates", str(tmp_path / "v.npy"), "--out", str(tmp_path / "c.csv"))
    assert out.returncode == 2 and "--voxel-size" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "c.csv").exists()


def test_candidates_warns_when_flag_and_file_disagree(tmp_path):
    write_tiff(tmp_path / "v.tif", np.zeros((4, 16, 16), np.uint16), voxel_size=(5.0, 1.0, 1.0))
    out = run_cli("candidates", str(tmp_path / "v.tif"), "--out", str(tmp_path / "c.csv"), "--voxel-size", "4,2,2")
    assert out.returncode == 0 and out.stderr.startswith("warning:")
