"""The simulator: deterministic, valid ground truth, and hard enough at difficulty 1."""

import numpy as np
import pytest

from clarity_fast.baselines import log_blobs
from clarity_fast.evaluate import best_threshold
from clarity_fast.settings import Scale
from clarity_fast.simulate import SimulatedBrain, SimulationSettings, write_brain, write_brains
from clarity_fast.simulate.render import render_foreground

SMALL = (24, 96, 96)


def test_same_seed_same_volume():
    a = SimulatedBrain(SimulationSettings(shape=SMALL, seed=3, difficulty=1.0))
    b = SimulatedBrain(SimulationSettings(shape=SMALL, seed=3, difficulty=1.0))
    assert np.array_equal(a.volume(), b.volume())
    assert np.array_equal(a.cells.zyx, b.cells.zyx)
    c = SimulatedBrain(SimulationSettings(shape=SMALL, seed=4, difficulty=1.0))
    assert not np.array_equal(a.volume(), c.volume())


def test_volume_is_uint16_of_the_asked_shape():
    v = SimulatedBrain(SimulationSettings(shape=(13, 40, 52), seed=1)).volume()
    assert v.shape == (13, 40, 52) and v.dtype == np.uint16


def test_rendering_a_plane_range_equals_the_whole_render():
    brain = SimulatedBrain(SimulationSettings(shape=SMALL, seed=5, difficulty=1.0))
    kw = dict(voxel_size=brain.settings.scale.voxel_size, shape_yx=SMALL[1:])
    whole = render_foreground(brain.scene, z0=0, z1=SMALL[0], **kw)
    part = render_foreground(brain.scene, z0=7, z1=15, **kw)
    assert np.array_equal(whole[7:15], part)


@pytest.mark.parametrize("difficulty, size_spread", [(0.0, 0.15), (1.0, 0.15), (1.0, 0.5)])
def test_every_cell_centre_is_inside_and_on_a_bright_structure(difficulty, size_spread):
    brain = SimulatedBrain(SimulationSettings(shape=(32, 128, 128), seed=7, difficulty=difficulty, size_spread=size_spread))
    zyx = brain.cells.zyx
    assert len(zyx) > 20
    assert np.all(zyx >= 0) and np.all(zyx < np.asarray(brain.settings.shape))
    fg = render_foreground(
        brain.scene, voxel_size=brain.settings.scale.voxel_size, shape_yx=(128, 128), z0=0, z1=32
    )
    for (z, y, x), contrast in zip(np.rint(zyx).astype(int), brain.scene.cells.contrast):
        z, y, x = np.minimum([z, y, x], np.asarray(fg.shape) - 1)
        near = fg[max(z - 1, 0) : z + 2, max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3]
        assert near.max() >= 0.5 * contrast


def _log_best_f1(difficulty: float, seed: int) -> float:
    brain = SimulatedBrain(SimulationSettings(shape=(40, 160, 160), seed=seed, difficulty=difficulty))
    scale = brain.settings.scale
    peaks, response = log_blobs(brain.volume(), scale=scale)
    _, match = best_threshold(
        pred=peaks, scores=response, truth=brain.cells.zyx, radius=scale.cell_diameter / 2, axis_scale=scale.voxel_size
    )
    return match.f1


def test_difficulty_one_defeats_a_plain_log_detector():
    # The bar: at difficulty 1 a LoG blob detector with its best global threshold reaches F1 <= ~0.7.
    assert _log_best_f1(1.0, seed=11) <= 0.75
    assert _log_best_f1(0.0, seed=11) >= 0.85


def test_write_brain_and_manifest(tmp_path):
    from clarity_fast.io.points import read_points
    from clarity_fast.io.volumes import open_volume

    settings = SimulationSettings(shape=(10, 48, 40), seed=2, scale=Scale(voxel_size=(3.0, 1.5, 1.5), cell_diameter=9.0))
    brain = write_brain(tmp_path / "one", settings=settings, progress=False)
    with open_volume(tmp_path / "one" / "volume.tif") as vol:
        assert vol.shape == (10, 48, 40)
        assert vol.voxel_size == pytest.approx((3.0, 1.5, 1.5))
        assert np.array_equal(vol.read_slab(0, 10), brain.volume())
    assert len(read_points(tmp_path / "one" / "cells.csv")) == len(brain.cells)

    manifest = write_brains(tmp_path / "many", settings=settings, n=3, progress=False)
    lines = manifest.read_text().splitlines()
    assert lines[0] == "volume,points,group" and len(lines) == 4
    volumes = []
    for line in lines[1:]:
        with open_volume(manifest.parent / line.split(",")[0]) as vol:
            volumes.append(vol.read_slab(0, 10))
    assert not np.array_equal(volumes[0], volumes[1])


def test_size_spread_widens_soma_sizes_and_keeps_everything_else():
    # Same seed: the same cells in the same places, only their sizes drawn wider (a population of mixed sizes).
    narrow = SimulatedBrain(SimulationSettings(shape=(32, 128, 128), seed=9, difficulty=1.0))
    wide = SimulatedBrain(SimulationSettings(shape=(32, 128, 128), seed=9, difficulty=1.0, size_spread=0.4))
    assert np.array_equal(narrow.cells.zyx, wide.cells.zyx)
    spread = [np.std(np.log(b.scene.cells.semi_axes.prod(axis=1))) / 3 for b in (narrow, wide)]
    assert spread[1] > 1.8 * spread[0]


def test_size_spread_out_of_range_is_refused():
    from clarity_fast.errors import InputError

    with pytest.raises(InputError, match="size spread"):
        SimulationSettings(shape=SMALL, size_spread=-0.1)


def test_write_brains_passes_the_size_spread_on(tmp_path):
    from clarity_fast.io.volumes import open_volume

    settings = SimulationSettings(shape=(10, 48, 40), seed=2, size_spread=0.5)
    manifest = write_brains(tmp_path / "many", settings=settings, n=1, progress=False)
    seed = int(np.random.SeedSequence(2).generate_state(1, dtype=np.uint32)[0])
    one = SimulatedBrain(SimulationSettings(shape=(10, 48, 40), seed=seed, size_spread=0.5))
    with open_volume(manifest.parent / "brain_00" / "volume.tif") as vol:
        assert np.array_equal(vol.read_slab(0, 10), one.volume())


def test_density_scales_cells_and_clutter_and_keeps_the_default():
    # The default density is the scene's own constant (the CLI repeats it as a literal), and a sparser label gives
    # proportionally fewer cells and fewer cell-sized look-alikes, so a sparse brain is not a dense brain's clutter.
    import inspect

    from clarity_fast.cli import simulate
    from clarity_fast.simulate.scene import CELLS_PER_MM3

    assert inspect.signature(simulate).parameters["density"].default == CELLS_PER_MM3 == SimulationSettings(shape=SMALL).density
    shape = (32, 256, 256)
    dense = [SimulatedBrain(SimulationSettings(shape=shape, seed=s, difficulty=1.0)).scene for s in range(4)]
    sparse = [SimulatedBrain(SimulationSettings(shape=shape, seed=s, difficulty=1.0, density=CELLS_PER_MM3 / 5)).scene for s in range(4)]
    cells = [sum(len(s.cells) for s in scenes) for scenes in (dense, sparse)]
    clutter = [sum(len(s.clutter) for s in scenes) for scenes in (dense, sparse)]
    assert 3.5 < cells[0] / cells[1] < 7 and 3.5 < clutter[0] / clutter[1] < 7


def test_density_must_be_positive():
    from clarity_fast.errors import InputError

    for bad in (0.0, -5.0, float("nan"), float("inf"), 2e6):
        with pytest.raises(InputError, match="density"):
            SimulationSettings(shape=SMALL, density=bad)


def test_planes_too_large_for_the_machine_are_refused_before_any_work():
    from clarity_fast.errors import InputError

    with pytest.raises(InputError, match="planes of 100000×100000 voxels need about 4657 GB"):
        SimulationSettings(shape=(1, 100_000, 100_000))


def test_processes_leave_somata_and_keep_the_scene_without_them():
    # Same seed: the same cells and clutter; the dendrites are drawn last, as extra tubes, 0 to N per soma, starting
    # inside a soma and reaching 1-2.5 diameters out, so a scene without them is bit for bit the default one.
    plain = SimulatedBrain(SimulationSettings(shape=(32, 128, 128), seed=9, difficulty=0.5))
    dendritic = SimulatedBrain(SimulationSettings(shape=(32, 128, 128), seed=9, difficulty=0.5, processes=4))
    assert np.array_equal(plain.cells.zyx, dendritic.cells.zyx)
    assert np.array_equal(plain.scene.clutter.centre, dendritic.scene.clutter.centre)
    n = len(plain.scene.tubes)
    assert np.array_equal(plain.scene.tubes.start, dendritic.scene.tubes.start[:n])
    extra = len(dendritic.scene.tubes) - n
    cells = len(plain.cells)
    assert extra % 3 == 0 and 0.5 * 2 * cells < extra / 3 < 4 * cells  # three segments each, 2 per soma on average
    radius = plain.settings.scale.cell_diameter / 2
    first = dendritic.scene.tubes.start[n : n + extra // 3]
    nearest = np.min(np.linalg.norm(first[:, None] - plain.scene.cells.centre[None], axis=-1), axis=1)
    assert np.allclose(nearest, 0.8 * radius)
    assert np.array_equal(plain.volume(), SimulatedBrain(SimulationSettings(shape=(32, 128, 128), seed=9, difficulty=0.5, processes=0)).volume())


def test_processes_out_of_range_are_refused():
    from clarity_fast.errors import InputError

    with pytest.raises(InputError, match="processes per soma"):
        SimulationSettings(shape=SMALL, processes=7)
