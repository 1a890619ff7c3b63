"""`detect`: streamed whole-volume detection with the built-in model; invariance, resume, outputs, errors."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from types import SimpleNamespace

import numba
import numpy as np
import pytest
from cli_runner import run_cli
from scipy.spatial import cKDTree

from clarity_fast.candidates import find_candidates
from clarity_fast.checkpoint import Checkpoint
from clarity_fast.detection import centred, logits_at, merge_duplicates, off_slope
from clarity_fast.evaluate import AXIS_WEIGHTS, RADIUS_VOXELS, match_points
from clarity_fast.export.model_file import DEFAULT_MODEL, resolve_model
from clarity_fast.export.runtime import OnnxScorer
from clarity_fast.io.points import Points, read_points, write_points
from clarity_fast.manifest import Entry
from clarity_fast.model.samples import load_annotated
from clarity_fast.io.volumes import open_array, open_volume, write_tiff
from clarity_fast.kernels.gather import to_voxels, working_grid
from clarity_fast.pipeline import Adaptation, DetectSettings, Result, SlabResult, adapting, detect
from clarity_fast.resample import points_to
from clarity_fast.run_detect import SLOPE_SAID, DetectRequest, run_detection, slope_line, throughput
from clarity_fast.score_mixture import TRUST, Mixture
from clarity_fast.second_pass import calls_for_second_pass, far_from, second_pass_line, with_second_pass
from clarity_fast.settings import PrefilterSettings, Scale
from clarity_fast.simulate import SimulatedBrain, SimulationSettings
from clarity_fast.volume_share import adjusted, histogram, odds_factor

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="the built-in model is not in this checkout")


@pytest.fixture(scope="module")
def scorer():
    return OnnxScorer(resolve_model("default"))


@pytest.fixture(scope="module")
def brain(tmp_path_factory):
    brain = SimulatedBrain(SimulationSettings(shape=(30, 96, 96), difficulty=1.0, seed=21))
    path = tmp_path_factory.mktemp("brain") / "volume.tif"
    write_tiff(path, brain.volume(), voxel_size=brain.settings.scale.voxel_size)
    return brain, path


def settings_for(scorer, brain, **kw) -> DetectSettings:
    model = scorer.config
    return DetectSettings(
        voxel_size=brain.settings.scale.voxel_size, cell_diameter=brain.settings.scale.cell_diameter,
        threshold=model.threshold, prefilter_threshold=model.prefilter_threshold, **kw,
    )


def tissue_cut(volume: np.ndarray) -> np.ndarray:
    """The volume dark (a camera's offset and noise) beyond a sharp edge across x: the edge of the tissue."""
    tissue = 1.0 / (1.0 + np.exp((np.arange(volume.shape[2]) - 0.6 * volume.shape[2]) / 1.0))
    noise = np.random.default_rng(0).normal(100.0, 5.0, volume.shape)
    return np.clip(np.rint(volume * tissue + noise), 0, 65535).astype(np.uint16)


@pytest.mark.parametrize("cut", [False, True], ids=["brain", "brain cut by a tissue edge"])
def test_streaming_equals_the_whole_volume_computation(scorer, brain, cut):
    """With the candidates on a slope left out as the whole volume's would be (an edge proposes some)."""
    brain, _ = brain
    volume = tissue_cut(brain.volume()) if cut else brain.volume()
    settings = settings_for(scorer, brain, slab_depth=7, batch=100, adapt=True)
    streamed = detect(open_array(volume), scorer=scorer, model=scorer.config, settings=settings)
    every = find_candidates(open_array(volume), settings=PrefilterSettings(scale=settings.scale, threshold=settings.prefilter_threshold))
    factors = settings.zoom(scorer.config)
    grid = working_grid(volume.shape, factors=factors)
    found = off_slope(every, volume=volume, grid=grid, patch=scorer.config.network.patch, radius=scorer.config.scale.cell_radius_voxels)
    centres = to_voxels(points_to(found.zyx, factors=factors), shape=grid.shape)
    logits = logits_at(volume, centres=centres, scorer=scorer, patch=scorer.config.network.patch, grid=grid)
    calibration = scorer.config.calibration
    probs = calibration.probability(logits, found.response)
    exact = probs.astype(np.float64)
    if settings.adapt and calibration.adapts:  # the whole volume's share of cells and score mixture, from every candidate
        exact = adjusted(probs, factor=adapting(histogram(probs), model=scorer.config).factor)
    above = exact >= settings.threshold
    kept = exact[above].astype(np.float32)
    at = centred(volume, zyx=found.zyx[above], patch=scorer.config.network.patch, diameter=scorer.config.scale.cell_diameter_voxels,
                 grid=grid)  # each on the centre of its cell
    keep = merge_duplicates(at, kept, radius=settings.scale.merge_radius_voxels)
    np.testing.assert_array_equal(streamed.zyx, at[keep])
    np.testing.assert_array_equal(streamed.probability, kept[keep])
    assert streamed.candidates == len(every) and streamed.on_slope == len(every) - len(found)
    if cut:
        assert streamed.on_slope > 0
    assert streamed.above_threshold == int(above.sum())


def clean_cells(rng: np.random.Generator, *, shape: tuple[int, int, int], tries: int, peak: Callable[[], float]) -> tuple[np.ndarray, np.ndarray]:
    """(signal, centres): Gaussian cells at least two diameters apart at 4×2×2 µm, 12 µm, each peaking at peak()."""
    centres = np.stack([rng.uniform(3, shape[0] - 3, tries), rng.uniform(8, shape[1] - 8, tries), rng.uniform(8, shape[2] - 8, tries)], axis=1)
    keep = [0]
    for i in range(1, len(centres)):
        if np.min(np.sum(((centres[keep] - centres[i]) * (4, 2, 2)) ** 2, axis=1)) > 24.0**2:
            keep.append(i)
    centres = centres[keep]
    z, y, x = np.indices(shape, dtype=np.float32)
    signal = np.zeros(shape, np.float32)
    for c in centres:
        signal += peak() * np.exp(-0.5 * (((z - c[0]) * 4) ** 2 + ((y - c[1]) * 2) ** 2 + ((x - c[2]) * 2) ** 2) / 4.2**2)
    return signal, centres


def faint_clean_volume(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells peaking about 3.5 noise sd over a flat Poisson background, nothing else."""
    rng = np.random.default_rng(seed)
    signal, centres = clean_cells(rng, shape=(24, 128, 128), tries=40, peak=lambda: 3.5 * np.sqrt(200.0))
    return rng.poisson(200.0 + signal).astype(np.uint16) + 100, centres


def test_a_volume_full_of_faint_cells_raises_their_probabilities(scorer):
    """Where nearly every candidate is a cell, the model's validation mix understates them (volume_share)."""
    if not scorer.config.calibration.adapts:
        pytest.skip("the built-in model records no validation shares")
    volume, truth = faint_clean_volume(5)
    found = {}
    for adapt in (True, False):
        settings = DetectSettings(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0, threshold=scorer.config.threshold,
                                  prefilter_threshold=scorer.config.prefilter_threshold, adapt=adapt)
        found[adapt] = detect(open_array(volume), scorer=scorer, model=scorer.config, settings=settings)
    assert found[True].cell_share > scorer.config.calibration.reference_share and found[True].odds_factor > 1
    assert found[False].cell_share is None and found[False].odds_factor == 1
    recall = {a: match_points(pred=r.zyx, truth=truth, radius=3.5, axis_scale=(2.0, 1.0, 1.0)).recall for a, r in found.items()}
    assert recall[True] > recall[False]


def photon_counting_volume(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells peaking 3-6 photons over half a photon of background, no offset or read noise: speckle."""
    rng = np.random.default_rng(seed)
    signal, centres = clean_cells(rng, shape=(32, 160, 160), tries=200, peak=lambda: rng.uniform(3.0, 6.0))
    return rng.poisson(0.5 + signal).astype(np.uint16), centres


def test_a_clean_volume_of_unfamiliar_cells_is_adapted_by_its_score_mixture(scorer):
    """Photon-counting speckle: the network ranks the cells far above the rest but calls them unlikely, so the share
    EM estimates stays near validation's; the mixture of their logits finds them the majority (score_mixture)."""
    if not scorer.config.calibration.adapts:
        pytest.skip("the built-in model records no validation shares")
    volume, truth = photon_counting_volume(3)
    settings = DetectSettings(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0, threshold=scorer.config.threshold,
                              prefilter_threshold=scorer.config.prefilter_threshold)
    result = detect(open_array(volume), scorer=scorer, model=scorer.config, settings=settings)
    by_share = odds_factor(result.cell_share, reference=scorer.config.calibration.reference_share)
    assert result.mixture.cell_share > 0.5 and result.odds_factor == result.mixture_factor > by_share and result.adapted_by == "mixture"
    recall = match_points(pred=result.zyx, truth=truth, radius=3.5, axis_scale=(2.0, 1.0, 1.0)).recall
    kept = adjusted(result.probability, factor=by_share / result.odds_factor) >= settings.threshold
    assert recall > match_points(pred=result.zyx[kept], truth=truth, radius=3.5, axis_scale=(2.0, 1.0, 1.0)).recall


def test_adapt_is_the_default_and_recorded(brain, tmp_path):
    """On by default (it only ever raises, and only where cells outnumber the validation mix); --no-adapt turns it off."""
    _, path = brain
    for flags, adapted in (((), True), (("--no-adapt",), False), (("--adapt",), True)):
        out = run_cli("detect", path, "--out", tmp_path / "cells.csv", *flags)
        assert out.returncode == 0, out.stderr
        summary = json.loads((tmp_path / "cells.summary.json").read_text())
        assert (summary["cell_share"] is not None) == (summary["em_cell_share"] is not None) == adapted
        assert summary["odds_factor"] >= 1.0 if adapted else summary["odds_factor"] == 1.0
        assert (summary["mixture"] is not None) == adapted
        if adapted:  # the share adapting reads is EM's, at most the mixture's cells' group
            assert summary["cell_share"] == min(summary["em_cell_share"], summary["mixture"]["cell_share"])
    assert DetectRequest(volume=path, out=tmp_path / "c.csv").adapt  # the API's defaults (demo uses them) agree
    assert DetectSettings(voxel_size=(1.0, 1.0, 1.0), cell_diameter=12.0, threshold=0.5, prefilter_threshold=3.0).adapt


def test_csv_does_not_depend_on_slab_depth_or_batch(brain, tmp_path):
    """On a GPU too: there every run has one fixed shape, so the convolution algorithm does not follow --batch."""
    _, path = brain
    texts = set()
    for slab_depth, batch in ((32, 4096), (5, 7), (1, 1000)):
        out = tmp_path / f"cells-{slab_depth}-{batch}.csv"
        run_detection(DetectRequest(volume=path, out=out, slab_depth=slab_depth, batch=batch, progress=False))
        texts.add(out.read_bytes())
    assert len(texts) == 1


def test_a_saturated_plane_is_levelled_alike_in_every_slab_and_costs_few_cells(brain, tmp_path):
    """Plane 10 saturated, slabs cut right beside it: the same CSV at every depth, and nearly the clean run's cells."""
    brain, clean_path = brain
    data = brain.volume().copy()
    data[10] = 65535
    path = tmp_path / "saturated.tif"
    write_tiff(path, data, voxel_size=brain.settings.scale.voxel_size)
    texts = set()
    for slab_depth in (32, 10, 11, 3):
        out = tmp_path / f"cells-{slab_depth}.csv"
        report = run_detection(DetectRequest(volume=path, out=out, slab_depth=slab_depth, progress=False))
        texts.add(out.read_bytes())
        assert report.summary["levelled_planes"] == report.summary["replaced_planes"] == [10]  # recorded in the summary
        assert "odd planes levelled with their neighbours: 10 (1 flat, replaced: 10)" in report.lines()
    assert len(texts) == 1
    # Compared without adapting: on 91-96 candidates the score mixture's cells' group sits at half of them, so
    # whether it is believed flips with any small change (either way, for one model or another): adapting's
    # fragility on a tiny volume, not levelling's.
    for name, source in (("clean", clean_path), ("levelled", path)):
        run_detection(DetectRequest(volume=source, out=tmp_path / f"{name}.csv", adapt=False, progress=False))
    clean, found = read_points(tmp_path / "clean.csv").zyx, read_points(tmp_path / "levelled.csv").zyx
    assert match_points(pred=found, truth=clean, radius=RADIUS_VOXELS, axis_scale=AXIS_WEIGHTS).f1 > 0.9


@pytest.mark.parametrize("adapt", [False, True])  # with --adapt, the slabs' histograms must survive the checkpoint
def test_resume_finishes_an_interrupted_run_with_the_same_result(scorer, brain, tmp_path, adapt):
    brain, _ = brain
    reader = open_array(brain.volume())
    settings = settings_for(scorer, brain, slab_depth=6, adapt=adapt)
    whole = detect(reader, scorer=scorer, model=scorer.config, settings=settings)
    folder = tmp_path / "cells.csv.partial"
    checkpoint = Checkpoint(folder, fingerprint=dict(run=1), resume=False)

    def interrupt_after_two(z0, z1, cells):
        if z0 >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        detect(reader, scorer=scorer, model=scorer.config, settings=settings, checkpoint=checkpoint, on_slab=interrupt_after_two)
    assert sorted(p.name for p in folder.glob("slab-*.npz")) == ["slab-00000000.npz", "slab-00000006.npz"]
    finished = []
    resumed = detect(
        reader, scorer=scorer, model=scorer.config, settings=settings,
        checkpoint=Checkpoint(folder, fingerprint=dict(run=1), resume=True), on_slab=lambda z0, z1, n: finished.append(z0),
    )
    assert finished == [12, 18, 24]
    np.testing.assert_array_equal(resumed.zyx, whole.zyx)
    np.testing.assert_array_equal(resumed.probability, whole.probability)
    assert resumed.candidates == whole.candidates


def test_a_changed_run_does_not_reuse_a_checkpoint(tmp_path, caplog):
    first = Checkpoint(tmp_path / "p", fingerprint=dict(model="a", threshold=0.5), resume=False)
    first.save(SlabResult(0, 4, np.zeros((1, 3), np.int64), np.ones(1, np.float32), 3, 0.0, 9.0))
    assert Checkpoint(tmp_path / "p", fingerprint=dict(model="a", threshold=0.5), resume=True).finished(0)
    with caplog.at_level("WARNING", logger="clarity_fast"):
        assert not Checkpoint(tmp_path / "p", fingerprint=dict(model="b", threshold=0.5), resume=True).finished(0)
    assert "made by a different run (changed: model); starting afresh" in caplog.text



def test_a_checkpoint_is_resumed_only_on_the_same_provider(brain, tmp_path, monkeypatch):
    """TensorRT scores in fp16, the CPU in fp32: a run that falls back to the other is not mixed with its slabs."""
    import clarity_fast.run_detect as run_detect

    _, path = brain
    seen = []

    class Recording(run_detect.Checkpoint):
        def __init__(self, folder, *, fingerprint, resume):
            seen.append(fingerprint)
            super().__init__(folder, fingerprint=fingerprint, resume=resume)

    monkeypatch.setattr(run_detect, "Checkpoint", Recording)
    run_detection(DetectRequest(volume=path, out=tmp_path / "cells.csv", progress=False))
    assert seen and seen[0]["provider"] == "CPUExecutionProvider"

@pytest.mark.parametrize("keep", [0, 100])
def test_a_slab_file_cut_short_is_computed_again(tmp_path, keep):
    checkpoint = Checkpoint(tmp_path / "p", fingerprint=dict(run=1), resume=False)
    checkpoint.save(SlabResult(0, 4, np.zeros((1, 3), np.int64), np.ones(1, np.float32), 3, 0.0, 9.0))
    path = next((tmp_path / "p").glob("slab-*.npz"))
    path.write_bytes(path.read_bytes()[:keep])
    assert not Checkpoint(tmp_path / "p", fingerprint=dict(run=1), resume=True).finished(0)


def test_a_checkpoint_keeps_the_slabs_odd_planes(tmp_path):
    """A resumed run's summary still names the planes levelled before the interruption."""
    checkpoint = Checkpoint(tmp_path / "p", fingerprint=dict(run=1), resume=False)
    checkpoint.save(SlabResult(0, 4, np.zeros((1, 3), np.int64), np.ones(1, np.float32), 3, 0.0, 9.0, odd_planes={1: False, 3: True}))
    checkpoint.save(SlabResult(4, 8, np.zeros((0, 3), np.int64), np.ones(0, np.float32), 0, 0.0, 9.0))
    assert checkpoint.load(0, 4).odd_planes == {1: False, 3: True} and checkpoint.load(4, 8).odd_planes == {}


def test_a_fingerprint_with_tuples_is_reused(tmp_path):
    """detect's fingerprint holds tuples (the noise model's blur), which JSON stores as lists."""
    fingerprint = dict(noise=dict(blur=(0.0, 0.5)), shape=[4, 8, 8])
    first = Checkpoint(tmp_path / "p", fingerprint=fingerprint, resume=False)
    first.save(SlabResult(0, 4, np.zeros((1, 3), np.int64), np.ones(1, np.float32), 3, 0.0, 9.0))
    assert Checkpoint(tmp_path / "p", fingerprint=fingerprint, resume=True).finished(0)


@pytest.mark.parametrize("unit", [1e-6, 1e4])
def test_a_float_volumes_units_do_not_matter(scorer, brain, unit):
    """The same image in any float units (0-1, photons, 1e-6) gives the same cells: the noise map's and the patch
    normalisation's floors are relative, not fixed numbers that swamp small values."""
    brain, _ = brain
    volume = brain.volume().astype(np.float32)
    settings = settings_for(scorer, brain)
    expected = detect(open_array(volume), scorer=scorer, model=scorer.config, settings=settings)
    found = detect(open_array((volume * np.float32(unit)).astype(np.float32)), scorer=scorer, model=scorer.config, settings=settings)
    assert len(expected.zyx) > 20
    np.testing.assert_allclose(found.zyx, expected.zyx, atol=1e-4)  # centred on patches equal to rounding
    np.testing.assert_allclose(found.probability, expected.probability, atol=1e-4)


def test_a_single_plane_works(scorer):
    brain = SimulatedBrain(SimulationSettings(shape=(1, 128, 128), difficulty=0.0, seed=2))
    result = detect(open_array(brain.volume()), scorer=scorer, model=scorer.config, settings=settings_for(scorer, brain))
    assert len(result.zyx) > 0 and np.all(result.zyx[:, 0] == 0)


def test_detect_command_writes_cells_summary_and_preview(scorer, brain, tmp_path):
    brain, path = brain
    out = run_cli("detect", path, "--out", tmp_path / "cells.csv", "--preview", tmp_path / "qc.png", "--batch", "512")
    assert out.returncode == 0, out.stderr
    cells = read_points(tmp_path / "cells.csv")
    assert len(cells) > 0 and cells.score is not None
    summary = json.loads((tmp_path / "cells.summary.json").read_text())
    assert summary["cells"] == len(cells) and summary["device"] == scorer.device and summary["batch"] == 512
    assert set(summary["seconds"]) >= {"read", "prefilter", "gather", "score", "merge", "total"}
    assert (tmp_path / "qc.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not (tmp_path / "cells.csv.partial").exists()
    out = run_cli("detect", path, "--out", tmp_path / "cells.xml", "--format", "xml")
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(read_points(tmp_path / "cells.xml").zyx, np.rint(cells.zyx))
    out = run_cli("detect", path, "--out", tmp_path / "suffix.XML")  # the format follows the name unless given
    assert out.returncode == 0 and (tmp_path / "suffix.XML").read_bytes() == (tmp_path / "cells.xml").read_bytes()


def test_a_tissue_edge_is_said_and_its_slope_candidates_are_not_scored(scorer, brain, tmp_path):
    """detect counts and says the candidates it left unscored; without the test (drop_slopes=False) every one is scored;
    training reads the candidates detect scores."""
    brain, _ = brain
    path = tmp_path / "cut.tif"
    write_tiff(path, tissue_cut(brain.volume()), voxel_size=brain.settings.scale.voxel_size)
    out = run_cli("detect", path, "--out", tmp_path / "cells.csv")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "cells.summary.json").read_text())
    assert 0 < summary["candidates_on_slope"] < summary["candidates"]
    assert ("were left unscored" in out.stdout) == (summary["candidates_on_slope"] > SLOPE_SAID * summary["candidates"])
    reader = open_volume(path)
    everything = detect(reader, scorer=scorer, model=scorer.config, settings=settings_for(scorer, brain, drop_slopes=False))
    assert everything.on_slope == 0 and everything.candidates == summary["candidates"]
    write_points(tmp_path / "p.csv", Points(zyx=brain.cells.zyx))
    entry = Entry(volume=path, points=tmp_path / "p.csv", name="cut", group="cut", voxel_size=None)
    (annotated,) = load_annotated([entry], cell_diameter=brain.settings.scale.cell_diameter, voxel_size=None,
                                  prefilter_threshold=scorer.config.prefilter_threshold)
    assert len(annotated.candidates) == summary["candidates"] - summary["candidates_on_slope"]


def test_the_slope_line_says_what_so_many_mean():
    assert slope_line(on_slope=60, candidates=100) == ("60 of the 100 candidates (60%) were left unscored, dimmer than their surround on some side: "
                                   "a bright region's edge (the tissue's?) runs through the volume")


def test_a_checkpoint_keeps_the_slabs_candidates_on_a_slope(tmp_path):
    checkpoint = Checkpoint(tmp_path / "p", fingerprint=dict(run=1), resume=False)
    checkpoint.save(SlabResult(0, 4, np.zeros((1, 3), np.int64), np.ones(1, np.float32), 9, 0.0, 9.0, on_slope=4))
    assert checkpoint.load(0, 4).on_slope == 4


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--model", "missing.onnx"], 3, "no such model file"),
        (["--model", "model.pt"], 3, "export it first"),
        (["--format", "json"], 2, "--format"),
        (["--format", "xml"], 2, "--format xml but the name ends .csv; name it cells.xml"),
        (["--batch", "0"], 2, "--batch"),
        (["--threshold", "1.5"], 2, "--threshold"),
        (["--prefilter-threshold", "0"], 2, "--prefilter-threshold must be a positive, finite number of noise units"),
        (["--prefilter-threshold", "nan"], 2, "--prefilter-threshold must be a positive, finite number of noise units"),
        (["--second-pass", "--no-adapt"], 2, "--second-pass reads how clean the volume is from adapting: leave out --no-adapt"),
        (["--device", "gpu"], 2, "--device"),
        (["--region", "0:31x:x:"], 2, "region '0:31x:x:' ends at z = 31, past the volume's 30 voxels along z"),
        (["--region", "5:5x:x:"], 2, "--region '5:5x:x:' holds no voxel along z"),
        (["--region", "0:5,0:9"], 2, "--region must be Z0:Z1xY0:Y1xX0:X1"),
        (["--region", "0:5x:x:", "--workers", "2"], 2, "--region runs in this process"),
    ],
)
def test_detect_refuses_bad_requests_with_one_line(brain, tmp_path, args, code, message):
    _, path = brain
    out = run_cli("detect", path, "--out", tmp_path / "cells.csv", *args)
    assert out.returncode == code and message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cells.csv").exists()


def clean_blobs(path) -> np.ndarray:
    """A clean volume: 90 balls of 12 µm at 4×2×2 µm, 1.6 diameters apart or more, on flat noise, no clutter; 60
    bright (peaks near 20 noise sd) and 30 faint (near 2), whose centres are returned."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    shape, radius = (40, 128, 128), np.array([1.5, 3.0, 3.0])
    centres = []
    while len(centres) < 90:
        c = rng.uniform([4, 8, 8], [36, 120, 120])
        if all(np.linalg.norm((c - other) / (2 * radius)) >= 1.6 for other in centres):
            centres.append(c)
    centres = np.array(centres).astype(int)
    brightness = np.where(np.arange(90) < 60, rng.uniform(0.6, 2.0, 90), 0.15)
    image = np.zeros(shape, np.float32)
    grid = np.indices(shape)
    for centre, b in zip(centres, brightness):
        image[np.sum(((grid - centre[:, None, None, None]) / radius[:, None, None, None]) ** 2, axis=0) <= 1] += b
    image = gaussian_filter(image, (0.5, 0.7, 0.7))
    image *= 60.0 / np.median(image[tuple(centres[:60].T)])
    write_tiff(path, np.clip(100 + image + rng.normal(0, 3, shape), 0, None).astype(np.uint16), voxel_size=(4.0, 2.0, 2.0))
    return centres[60:]


def test_a_second_pass_runs_by_default_only_where_the_first_finds_the_volume_clean(brain, tmp_path):
    """detect prefilters again at 2.5 noise units where the first pass's score mixture is trusted with the cells a
    majority (a clean volume), and where that pass reads clean too adds its cells that lie a cell diameter or more
    from the first pass's, and says so; it scores only its new candidates, yet its cells are those of one pass at
    2.5; on a cluttered brain it changes nothing, not a byte. --no-second-pass, --no-adapt or a prefilter threshold of
    the user's own leave it out."""
    faint = clean_blobs(tmp_path / "clean.tif")
    report = run_detection(DetectRequest(volume=tmp_path / "clean.tif", out=tmp_path / "clean.csv", cell_diameter=12.0, progress=False))
    s = report.summary
    assert s["second_pass"]["kept"] and s["second_pass"]["second_prefilter_threshold"] == 2.5 and s["prefilter_threshold"] == 3.0
    assert s["second_pass"]["second_candidates"] >= s["candidates"] == s["second_pass"]["first_candidates"] and s["second_pass"]["first_cell_share"] > 0.5
    assert any(line.startswith("the volume reads as clean") for line in report.lines())
    assert 0 < s["second_pass"]["scores_reused"] <= s["second_pass"]["first_candidates"]  # the first pass's scores, looked up
    direct = run_detection(DetectRequest(volume=tmp_path / "clean.tif", out=tmp_path / "direct.csv", cell_diameter=12.0, prefilter_threshold=2.5, progress=False))
    first = run_detection(DetectRequest(volume=tmp_path / "clean.tif", out=tmp_path / "first.csv", cell_diameter=12.0, second_pass=False, progress=False))
    rows = {name: set((tmp_path / f"{name}.csv").read_text().splitlines()[1:]) for name in ("clean", "direct", "first")}
    added = rows["clean"] - rows["first"]
    assert direct.summary["second_pass"] is None and direct.summary["cells"] == s["second_pass"]["second_cells"]
    assert rows["first"] <= rows["clean"] and added <= rows["direct"] and len(added) == s["second_pass"]["added_cells"]
    assert s["cells"] == first.summary["cells"] + len(added) and len(added) > 0
    zyx = np.array([[float(v) for v in row.split(",")[:3]] for row in added])
    assert np.sum(cKDTree(faint / [3.0, 6.0, 6.0]).query(zyx / [3.0, 6.0, 6.0])[0] < 0.5) >= len(added) / 2  # mostly faint cells the first pass lost
    for k, options in enumerate([dict(second_pass=False), dict(adapt=False), dict(prefilter_threshold=3.0)]):
        once = run_detection(DetectRequest(volume=tmp_path / "clean.tif", out=tmp_path / f"once{k}.csv", cell_diameter=12.0, progress=False, **options))
        assert once.summary["second_pass"] is None and once.summary["prefilter_threshold"] == 3.0, options
    _, path = brain
    runs = [run_detection(DetectRequest(volume=path, out=tmp_path / f"{k}.csv", second_pass=k, progress=False)) for k in (False, True)]
    assert [r.summary["second_pass"] for r in runs] == [None, None] and runs[1].summary["prefilter_threshold"] == 3.0
    assert (tmp_path / "False.csv").read_bytes() == (tmp_path / "True.csv").read_bytes()


def test_the_second_pass_line_says_which_pass_was_kept():
    first = dict(first_clean=True, first_cell_share=0.9, first_prefilter_threshold=3.0, first_candidates=84, first_cells=79, second_candidates=300,
                 second_cells=90, second_odds_factor=2.5)
    kept = second_pass_line(dict(first, kept=True, added_cells=8))
    dropped = second_pass_line(dict(first, kept=False, added_cells=0))
    untrusted = second_pass_line(dict(first, first_clean=False, first_cell_share=0.99, kept=True, added_cells=8))
    assert kept.startswith("the volume reads as clean (90% of the first pass's candidates")
    assert untrusted.startswith("the first pass does not read as clean (its score mixture untrusted, or its cells a minority), but its upper group "
                                "(99% of the candidates) or its lower group scores as cells: prefiltered again")
    assert kept.endswith("for faint cells: 8 cells added to the first pass's 79 (84 candidates, 300 in the second; the added cells' odds multiplied by 2.50)")
    assert dropped.endswith("but its 300 candidates no longer read as clean: the first pass's 79 cells are kept")


def test_the_second_pass_adds_its_cells_far_from_the_first_passs_where_it_reads_clean_too():
    """The first pass's cells stay; the second's a cell diameter or more from all of them are added, in z, y, x order,
    each with its own pass's probability; a second pass not clean adds nothing. (Adaptations stand in by their verdict.)"""
    clean = SimpleNamespace(clean=True, mixture=SimpleNamespace(cell_share=0.9, separation=4.0, other_mean=-6.0), factor=2.0, rule=TRUST)
    settings = DetectSettings(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0, threshold=0.5, prefilter_threshold=3.0)  # diameter (3, 6, 6) voxels
    first = Result(zyx=np.array([[10, 10, 10], [20, 40, 40]]), probability=np.array([0.9, 0.8], np.float32), candidates=5,
                   adaptation=clean, seconds={"score": 1.0})
    second = Result(zyx=np.array([[10, 10, 15], [10, 10, 17], [20, 40, 40], [30, 60, 60]]), probability=np.array([0.7, 0.6, 0.95, 0.5], np.float32),
                    candidates=9, adaptation=clean, seconds={"score": 0.5})
    scanned = []
    result, record = with_second_pass(first, settings=settings, scan=lambda lower: scanned.append(lower.prefilter_threshold) or second)
    np.testing.assert_array_equal(result.zyx, [[10, 10, 10], [10, 10, 17], [20, 40, 40], [30, 60, 60]])
    np.testing.assert_array_equal(result.probability, np.array([0.9, 0.6, 0.8, 0.5], np.float32))
    assert scanned == [2.5] and result.candidates == 5 and result.seconds == {"score": 1.5} and result.adaptation is clean
    assert record.kept and (record.first_cells, record.second_cells, record.added_cells, record.second_odds_factor) == (2, 4, 2, 2.0)
    cluttered = replace(second, adaptation=SimpleNamespace(clean=False, mixture=None, factor=1.0))
    result, record = with_second_pass(first, settings=settings, scan=lambda lower: cluttered)
    np.testing.assert_array_equal(result.zyx, first.zyx)
    assert not record.kept and record.added_cells == 0 and result.seconds == {"score": 1.5}


def test_a_second_pass_also_runs_where_the_mixture_is_untrusted_for_too_little_clutter():
    """A clean volume whose noise seldom passes the first threshold: its mixture puts 99% of the candidates among the
    cells, cleanly apart, but two groups explain the logits no better than one, so it is not trusted; the second pass
    still runs (its noise candidates show the split) and decides; so too where the fit splits the cells' own group (a
    lower group above any clutter's logits). Not where the upper group is a minority above the network's clutter."""
    one_group = Mixture(cell_share=0.99, cell_mean=-1.8, cell_sd=1.9, other_mean=-7.2, other_sd=0.7, gain=0.004)

    def adaptation(mixture: Mixture | None) -> Adaptation:
        return Adaptation(share=0.3, em_share=0.3, share_factor=1.0, mixture=mixture, mixture_factor=1.0)

    assert not adaptation(one_group).clean and calls_for_second_pass(adaptation(one_group))
    assert adaptation(replace(one_group, gain=0.02)).clean and calls_for_second_pass(adaptation(replace(one_group, gain=0.02)))
    for minority in (replace(one_group, cell_share=0.3), replace(one_group, cell_share=0.3, gain=0.2)):  # the latter trusted, far apart
        assert not calls_for_second_pass(adaptation(minority))
    real_tissue = Mixture(cell_share=0.83, cell_mean=-2.9, cell_sd=2.5, other_mean=-6.3, other_sd=1.5, gain=0.004)  # cellfinder's crop's
    assert not calls_for_second_pass(adaptation(real_tissue))  # a majority, but not cleanly apart, above the clutter
    split_cells = Mixture(cell_share=0.08, cell_mean=1.3, cell_sd=0.6, other_mean=-1.8, other_sd=1.7, gain=0.011)  # a clean faint volume's
    assert calls_for_second_pass(adaptation(split_cells)) and not calls_for_second_pass(adaptation(replace(split_cells, other_mean=-5.0)))
    assert not calls_for_second_pass(adaptation(None)) and not calls_for_second_pass(None)
    settings = DetectSettings(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0, threshold=0.4, prefilter_threshold=3.0)
    first = Result(zyx=np.zeros((0, 3), int), probability=np.zeros(0, np.float32), adaptation=adaptation(one_group), seconds={})
    second = replace(first, adaptation=adaptation(replace(one_group, cell_share=0.8, gain=0.05)))
    _, record = with_second_pass(first, settings=settings, scan=lambda lower: second)
    assert record is not None and record.kept and not record.first_clean


def test_second_pass_cells_count_as_new_a_cell_diameter_or_more_from_the_first_passs():
    """Distances are in cell diameters per axis (voxels anisotropic): beyond a diameter is new, within it is not."""
    first = np.array([[10, 10, 10]])
    second = np.array([[10, 10, 17], [10, 10, 15], [14, 10, 10], [12, 10, 10], [30, 30, 30]])
    np.testing.assert_array_equal(far_from(second, first, diameter_voxels=np.array([3.0, 6.0, 6.0])), [True, False, True, False, True])
    assert far_from(second, first[:0], diameter_voxels=np.array([3.0, 6.0, 6.0])).all()


def test_a_lower_prefilter_threshold_proposes_more_and_is_recorded(brain, tmp_path):
    """--prefilter-threshold replaces the model's (3 noise units) for this run: more candidates, the value in the
    summary; the detections at the model's own threshold are the default run's."""
    _, path = brain
    runs = {}
    for value in (None, 3.0, 2.0):
        report = run_detection(DetectRequest(volume=path, out=tmp_path / f"{value}.csv", prefilter_threshold=value, progress=False))
        runs[value] = (report.summary, (tmp_path / f"{value}.csv").read_bytes())
    assert runs[None][0]["prefilter_threshold"] == runs[3.0][0]["prefilter_threshold"] == 3.0 and runs[None][1] == runs[3.0][1]
    assert runs[2.0][0]["prefilter_threshold"] == 2.0 and runs[2.0][0]["candidates"] > runs[3.0][0]["candidates"]


@pytest.mark.parametrize("scale", [{}, dict(voxel_size=(5.0, 2.5, 2.5)), dict(voxel_size=(5.3, 1.7, 1.9)), dict(cell_diameter=16.0),
                                   dict(voxel_size=(8.0, 4.0, 4.0))])
def test_a_region_finds_the_whole_volumes_cells_there(brain, tmp_path, scale):
    """Read with its context, a block's detections are the whole run's inside it, positions and probabilities, at
    the file's scale and resampled by any factors (its working grid is the whole's, cut to it: at 16 µm the whole
    grid's 22.5 planes round to 22, a block's from plane 12 to 14 of its own; zoomed by 2, every native voxel lies
    half-way between two working ones, and a block starting at an odd voxel rounds them as the whole does); written
    in the whole volume's voxels.
    Without adapting: that follows the candidates read, the block's own."""
    from clarity_fast.region import parse_region, within

    _, path = brain
    whole = tmp_path / "whole.csv"
    run_detection(DetectRequest(volume=path, out=whole, adapt=False, progress=False, **scale))
    everywhere = read_points(whole, shape=(30, 96, 96))
    for text in ("4:20x10:60x30:90", ":x:40x:", "25:x50:x:", "24:30x:x:", "9:10x:x3:70"):
        out = tmp_path / "part.csv"
        report = run_detection(
            DetectRequest(volume=path, out=out, adapt=False, progress=False, region=parse_region(text, name="--region"), **scale)
        )
        part = read_points(out, shape=(30, 96, 96))
        inside = within(everywhere.cells, bounds=report.summary["region"]["bounds"])
        assert len(part.cells) == inside.sum() and report.summary["cells"] == len(part.cells)
        np.testing.assert_array_equal(part.cells, everywhere.cells[inside])
        np.testing.assert_allclose(part.score, everywhere.score[inside], atol=1e-6)  # the CSV's six decimals
        assert report.summary["shape"] == [30, 96, 96] and report.summary["region"]["text"] == text
        assert report.lines()[0].startswith(f"{len(part.cells)} cells in region {text} of ")


def test_a_blank_region_has_no_cells_and_an_empty_region_text_is_refused(brain, tmp_path):
    """Background alone in a block of a volume with an image is no blank acquisition, in a blank volume it is;
    `--region ""` is no whole-volume run."""
    from clarity_fast.region import parse_region

    brain, _ = brain
    volume = brain.volume().copy()
    volume[:, :40, :40] = 0
    write_tiff(tmp_path / "v.tif", volume, voxel_size=brain.settings.scale.voxel_size)
    report = run_detection(DetectRequest(volume=tmp_path / "v.tif", out=tmp_path / "c.csv", region=parse_region("0:30x0:10x0:10", name="--region"), progress=False))
    assert report.summary["cells"] == 0 and read_points(tmp_path / "c.csv").cells.shape == (0, 3)
    write_tiff(tmp_path / "zero.tif", np.zeros((20, 64, 64), np.uint16), voxel_size=brain.settings.scale.voxel_size)
    out = run_cli("detect", tmp_path / "zero.tif", "--out", tmp_path / "z.csv", "--region", "0:5x0:10x0:10")  # a blank volume stays an error
    assert out.returncode == 2 and "every voxel of the region and of the planes sampled through the volume is 0" in out.stderr
    assert not (tmp_path / "z.csv").exists() and not (tmp_path / "z.csv.partial").exists()
    for command in ("detect", "candidates"):
        out = run_cli(command, tmp_path / "v.tif", "--out", tmp_path / "e.csv", "--region", "")
        assert out.returncode == 2 and "--region must be Z0:Z1xY0:Y1xX0:X1" in out.stderr and not (tmp_path / "e.csv").exists()


def test_a_region_run_resumes_only_its_own_checkpoint(brain, tmp_path, monkeypatch, caplog):
    """Interrupted, a region's run resumes to the uninterrupted result; a run of another region starts afresh."""
    import clarity_fast.run_detect as run_detect
    from clarity_fast.region import parse_region

    _, path = brain
    out, preview = tmp_path / "cells.csv", tmp_path / "qc.png"

    def request(text: str, resume: bool) -> DetectRequest:
        return DetectRequest(volume=path, out=out, region=parse_region(text, name="--region"), preview=preview, slab_depth=8, resume=resume, progress=False)

    clean = run_detection(request("2:28x0:48x:", False))
    assert preview.is_file() and clean.summary["region"]["read"] == [[0, 30], [0, clean.summary["region"]["read"][1][1]], [0, 96]]
    expected = out.read_bytes()

    def interrupted_after_one_slab() -> None:
        steps = iter(range(10))

        def interrupting(bar, *, status):
            if next(steps) == 1:
                raise KeyboardInterrupt

        with monkeypatch.context() as patch:
            patch.setattr(run_detect, "step", interrupting)
            with pytest.raises(KeyboardInterrupt):
                run_detection(request("2:28x0:48x:", False))

    interrupted_after_one_slab()
    with caplog.at_level("WARNING", logger="clarity_fast"):
        assert run_detection(request("2:28x48:x:", True)).summary["slabs_resumed"] == 0
    assert "changed: region" in caplog.text
    interrupted_after_one_slab()
    resumed = run_detection(request("2:28x0:48x:", True))
    assert resumed.summary["slabs_resumed"] == 2 and out.read_bytes() == expected  # the second was saved before it was shown


@pytest.mark.parametrize("command", ["detect", "candidates"])
def test_an_output_name_of_no_points_format_is_refused_before_any_work(brain, tmp_path, command):
    """detect wrote CSV to cells.txt, which evaluate could not read back; candidates refused it after the whole run."""
    _, path = brain
    out = run_cli(command, path, "--out", tmp_path / "cells.txt", "--voxel-size", "4,2,2")
    assert out.returncode == 2 and "unsupported points format 'txt'" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_missing_volume_is_an_input_error(tmp_path):
    out = run_cli("detect", tmp_path / "nothing.tif", "--out", tmp_path / "cells.csv")
    assert out.returncode == 2 and out.stderr.startswith("error:")


@pytest.mark.parametrize(
    ("voxel_size", "diameter"), [((4.0, 2.0, 2.0), 12.0), ((2.5, 1.25, 1.25), 12.0), ((6.0, 1.62, 1.62), 8.0)]
)
def test_default_model_finds_simulated_cells_at_any_voxel_size(scorer, voxel_size, diameter):
    """The model's patches see cells at its training scale whatever the input's voxel size and cell size,
    including z planes nearly as far apart as a cell is wide. Without adapting, which is measured on its own
    (benchmarks/prior_shift.py): at 6×1.62×1.62 µm this volume's share of cells reads high and adapting costs
    precision (F1 0.873 -> 0.735 with the built-in model of 2026-12-07, 0.878 -> 0.801 with the one before)."""
    extent_um = (128.0, 256.0, 256.0)
    shape = tuple(int(round(e / v)) for e, v in zip(extent_um, voxel_size))
    scale = Scale(voxel_size=voxel_size, cell_diameter=diameter)
    sim = SimulatedBrain(SimulationSettings(shape=shape, scale=scale, difficulty=0.5, seed=5))
    settings = settings_for(scorer, sim, adapt=False)
    result = detect(open_array(sim.volume()), scorer=scorer, model=scorer.config, settings=settings)
    # Within one cell radius (µm), or one plane where planes are farther apart than that.
    radius = max(diameter / 2, voxel_size[0])
    match = match_points(pred=result.zyx, truth=sim.cells.zyx, radius=radius, axis_scale=voxel_size)
    assert match.f1 >= 0.8, match.summary()


def test_throughput_counts_the_planes_each_pass_read_this_run():
    """Voxels/s is the volume's over the run's seconds; a resumed run leaves out the first pass's finished planes, but
    its second pass reads them all again."""
    assert throughput((48, 10, 10), planes_before=0, passes=1, seconds=2.0) == throughput((48, 10, 10), planes_before=0, passes=2, seconds=2.0) == 2400
    assert throughput((48, 10, 10), planes_before=8, passes=1, seconds=2.0) == 40 * 100 / 2
    assert throughput((48, 10, 10), planes_before=8, passes=2, seconds=2.0) == (40 + 48) / 2 * 100 / 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_leaves_no_output_and_resume_completes_it(tmp_path, sig):
    brain = SimulatedBrain(SimulationSettings(shape=(48, 160, 160), difficulty=1.0, seed=9))
    volume = tmp_path / "v.tif"
    write_tiff(volume, brain.volume(), voxel_size=brain.settings.scale.voxel_size)
    out, partial = tmp_path / "cells.csv", tmp_path / "cells.csv.partial"
    args = [sys.executable, "-m", "clarity_fast", "detect", str(volume), "--out", str(out), "--slab-depth", "1", "--batch", "64"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(partial.glob("slab-*.npz")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert process.returncode == (130 if sig == signal.SIGINT else 143), err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and not out.exists()
    finished = len(list(partial.glob("slab-*.npz")))
    assert 0 < finished < 48
    resumed = run_cli("detect", volume, "--out", out, "--slab-depth", "1", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed: {finished} of 48 slabs" in resumed.stdout and "different run" not in resumed.stderr
    summary = json.loads(out.with_suffix(".summary.json").read_text())  # voxels/s of this run's own planes
    assert summary["voxels_per_s"] == pytest.approx((48 - finished) * 160 * 160 / summary["seconds"]["total"])
    fresh = run_cli("detect", volume, "--out", tmp_path / "fresh.csv", "--slab-depth", "1")
    assert fresh.returncode == 0 and out.read_bytes() == (tmp_path / "fresh.csv").read_bytes()
    assert not partial.exists()


def test_detect_needs_neither_torch_nor_onnx_nor_matplotlib(brain, tmp_path):
    """`pip install clarity-fast` (no extras) is enough to detect."""
    _, path = brain
    code = (
        "import sys\n"
        "class NotInstalled:  # as if never installed (not None in sys.modules, which scipy's array API shim trips on)\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'onnx', 'matplotlib'): raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NotInstalled())\n"
        f"sys.argv = ['clarity-fast', 'detect', {str(path)!r}, '--out', {str(tmp_path / 'c.csv')!r}, '--preview', {str(tmp_path / 'q.png')!r}]\n"
        "from clarity_fast.cli import main\nmain()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c.csv").is_file() and (tmp_path / "q.png").is_file()


def test_the_preview_projection_comes_from_the_slabs_already_read(scorer, brain, tmp_path):
    brain, _ = brain
    volume = brain.volume()
    settings = settings_for(scorer, brain, slab_depth=7, project=True)
    folder = tmp_path / "p"
    first = detect(open_array(volume), scorer=scorer, model=scorer.config, settings=settings, checkpoint=Checkpoint(folder, fingerprint={}, resume=False))
    np.testing.assert_array_equal(first.projection, volume.max(axis=0))
    resumed = detect(open_array(volume), scorer=scorer, model=scorer.config, settings=settings, checkpoint=Checkpoint(folder, fingerprint={}, resume=True))
    np.testing.assert_array_equal(resumed.projection, volume.max(axis=0))
    # One running projection on disk, not one per slab (a deep volume would fill the disk); slabs lost to an
    # interruption after it was updated are computed and folded in again.
    slab_files = sorted(folder.glob("slab-*.npz"))
    assert (folder / "projection.npy").is_file() and all("projection" not in np.load(f) for f in slab_files)
    for f in slab_files[len(slab_files) // 2 :]:
        f.unlink()
    again = detect(open_array(volume), scorer=scorer, model=scorer.config, settings=settings, checkpoint=Checkpoint(folder, fingerprint={}, resume=True))
    np.testing.assert_array_equal(again.projection, volume.max(axis=0))
    np.testing.assert_array_equal(again.zyx, first.zyx)
    assert detect(open_array(volume), scorer=scorer, model=scorer.config, settings=settings_for(scorer, brain)).projection is None


class _RecordingReader:
    """A reader that keeps the slabs it has handed out, in order."""

    def __init__(self, volume):
        self.inner = open_array(volume)
        self.slabs = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def read_slab(self, z0, z1):
        self.slabs.append(self.inner.read_slab(z0, z1))
        return self.slabs[-1]


def test_reading_runs_at_most_one_slab_ahead_of_gathering(scorer, brain, monkeypatch):
    """Memory is bounded by two slabs' planes: slab k + 2 is not read while slab k is still being gathered."""
    import clarity_fast.pipeline as pipeline

    brain, _ = brain
    reader = _RecordingReader(brain.volume())
    settings = settings_for(scorer, brain, slab_depth=3, batch=64)
    ahead = []

    def slow_gather(planes, **kw):
        time.sleep(0.02)  # give the reading thread every chance to run ahead
        read = list(reader.slabs)
        ahead.append(len(read) - 1 - next(i for i, slab in enumerate(read) if slab is planes))  # slabs read beyond this one
        return gather(planes, **kw)

    gather = pipeline.gather_patches
    monkeypatch.setattr(pipeline, "gather_patches", slow_gather)
    detect(reader, scorer=scorer, model=scorer.config, settings=settings)
    assert ahead and max(ahead) <= 1


def test_a_failure_while_gathering_is_raised_and_stops_every_stage(scorer, brain, monkeypatch):
    import clarity_fast.pipeline as pipeline

    brain, _ = brain

    def broken(*args, **kw):
        raise MemoryError("no room for patches")

    monkeypatch.setattr(pipeline, "gather_patches", broken)
    with pytest.raises(MemoryError, match="no room"):
        detect(open_array(brain.volume()), scorer=scorer, model=scorer.config, settings=settings_for(scorer, brain, slab_depth=3))
    assert not [t for t in threading.enumerate() if t.name.startswith("clarity-fast-")]


def test_many_slabs_without_candidates_do_not_stall_the_run(scorer, brain):
    """Every batch hands its patch buffer back, an empty slab's too (the pool holds only a few)."""
    brain, _ = brain
    volume = brain.volume()
    volume[:20] = volume.min()  # twenty flat planes: twenty slabs of depth 1 without a candidate
    settings = settings_for(scorer, brain, slab_depth=1)
    results = []
    run = threading.Thread(
        target=lambda: results.append(detect(open_array(volume), scorer=scorer, model=scorer.config, settings=settings)), daemon=True
    )
    run.start()
    run.join(timeout=120)  # a stalled pipeline fails here instead of hanging the test run
    assert results, "detect stalled"
    assert len(results[0].zyx) and results[0].zyx[:, 0].min() >= 18



@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_stage_threads_use_the_callers_numba_thread_count(scorer, brain, monkeypatch):
    """numba's thread count is per thread and a new thread starts at the default: the stages must take the
    caller's (a cluster worker caps it to share the machine)."""
    import clarity_fast.pipeline as pipeline

    brain, _ = brain
    seen = {"prefilter": set(), "gather": set()}
    gather, prefilter_run = pipeline.gather_patches, pipeline.SlabPrefilter.run

    def counting_gather(planes, **kw):
        seen["gather"].add(numba.get_num_threads())
        return gather(planes, **kw)

    def counting_prefilter(self, planes, **kw):
        seen["prefilter"].add(numba.get_num_threads())
        return prefilter_run(self, planes, **kw)

    monkeypatch.setattr(pipeline, "gather_patches", counting_gather)
    monkeypatch.setattr(pipeline.SlabPrefilter, "run", counting_prefilter)
    numba.set_num_threads(1)
    try:
        detect(open_array(brain.volume()), scorer=scorer, model=scorer.config, settings=settings_for(scorer, brain, slab_depth=5))
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert seen == {"prefilter": {1}, "gather": {1}}


def test_a_volume_with_smoothed_noise_is_corrected_the_same_in_every_slab(brain, tmp_path):
    """The noise model is measured once per volume (and recorded), so a corrected run stays slab-invariant."""
    from scipy.ndimage import gaussian_filter

    brain, _ = brain
    path = tmp_path / "blurred.tif"
    write_tiff(path, np.rint(gaussian_filter(brain.volume().astype(np.float32), 1.2)).astype(np.uint16), voxel_size=brain.settings.scale.voxel_size)
    texts, gains = set(), set()
    for slab_depth in (32, 4):
        out = tmp_path / f"cells-{slab_depth}.csv"
        report = run_detection(DetectRequest(volume=path, out=out, slab_depth=slab_depth, progress=False))
        texts.add(out.read_bytes())
        gains.add(report.summary["noise_gain"])
    assert len(texts) == 1 and len(gains) == 1 and gains.pop() > 1.0


def test_a_folder_input_is_identified_by_its_files_not_by_our_outputs(tmp_path):
    """Planes (or Zarr chunks) rewritten in place leave the folder's own time alone; a resume must notice them,
    and must not be thrown off by its own outputs written inside the folder."""
    import os

    from clarity_fast.run_detect import DetectRequest, _file_identity

    planes = tmp_path / "planes"
    planes.mkdir()
    for k in range(3):
        (planes / f"p{k}.tif").write_bytes(b"plane %d" % k)
    request = DetectRequest(volume=planes, out=planes / "cells.csv", preview=planes / "qc.png")
    before = _file_identity(planes, outputs=request.outputs)
    request.out.write_text("z,y,x\n")
    request.checkpoint_path.mkdir()
    (request.checkpoint_path / "slab-00000000.npz").write_bytes(b"x")
    request.summary_path.write_text("{}")
    assert _file_identity(planes, outputs=request.outputs) == before
    folder_time = planes.stat().st_mtime_ns
    (planes / "p1.tif").write_bytes(b"plane 9")
    os.utime(planes, ns=(folder_time, folder_time))
    assert _file_identity(planes, outputs=request.outputs) != before


def test_a_failure_after_the_cells_are_written_leaves_no_stale_summary(brain, tmp_path, monkeypatch):
    """The summary describes the cells beside it: a run that fails after replacing them must not leave the
    previous run's summary claiming to describe them."""
    import clarity_fast.preview
    from clarity_fast.errors import OutputError
    from clarity_fast.run_detect import DetectRequest, run_detection

    _, path = brain
    request = DetectRequest(volume=path, out=tmp_path / "cells.csv", preview=tmp_path / "qc.png", progress=False)
    request.summary_path.write_text('{"cells": 0}\n')

    def full_disk(*args, **kwargs):
        raise OutputError("disk full while writing qc.png")

    monkeypatch.setattr(clarity_fast.preview, "write_preview", full_disk)
    with pytest.raises(OutputError):
        run_detection(request)
    assert request.out.is_file() and not request.summary_path.exists()


WORKQUEUE_RUN = """
import numba, numpy as np
from clarity_fast.io.volumes import open_array
from clarity_fast.model.config import ModelConfig, NetworkConfig
from clarity_fast.noise_correlation import NoiseModel
from clarity_fast.pipeline import DetectSettings, detect
volume = np.random.default_rng(0).poisson(100, (32, 128, 128)).astype(np.uint16)
model = ModelConfig(network=NetworkConfig(), voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0, threshold=0.5, prefilter_threshold=0.5)
settings = DetectSettings(voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0, threshold=0.5, prefilter_threshold=0.5, slab_depth=2, batch=16,
                          noise=NoiseModel())
result = detect(open_array(volume), scorer=lambda p: p[:, 0, 6, 6, 6].copy(), model=model, settings=settings)
print(numba.threading_layer(), result.candidates)
"""


def test_the_stages_take_turns_on_numbas_workqueue_layer():
    """Where neither OpenMP nor TBB loads, numba's workqueue layer aborted the process (SIGABRT, no error line) as
    the prefilter and gather threads launched parallel kernels at once."""
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    done = subprocess.run([sys.executable, "-c", WORKQUEUE_RUN], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("workqueue "), done.stderr[-500:]


@pytest.mark.parametrize("p, shown", [(0.330417, "0.330"), (0.999999, "0.999999"), (1e-6, "1e-06"), (1.0, "1.000"), (0.0, "0.000")])
def test_a_threshold_is_never_shown_as_a_round_number_it_is_not(p, shown):
    from clarity_fast.run_detect import shown_probability

    assert shown_probability(p) == shown


@pytest.mark.parametrize("stop", [KeyboardInterrupt, OSError])
def test_a_run_stopped_before_any_slab_finished_leaves_no_checkpoint(brain, tmp_path, monkeypatch, stop):
    """Nothing to resume from (a scheduler out of reach, a full disk at the first slab): nothing left behind."""
    import clarity_fast.run_detect

    def stopped(*args, **kwargs):
        raise stop

    monkeypatch.setattr(clarity_fast.run_detect, "detect", stopped)
    with pytest.raises(stop):
        run_detection(DetectRequest(volume=brain[1], out=tmp_path / "cells.csv", progress=False))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("error", "kept"), [("ClusterError", True), ("InputError", False)])
def test_a_scheduler_out_of_reach_keeps_finished_slabs_for_resume(brain, tmp_path, monkeypatch, error, kept):
    """A scheduler not up yet, or mistyped on --resume, can be mended: the finished slabs stay. A bad input cannot."""
    import clarity_fast.errors
    import clarity_fast.run_detect

    def one_slab_then_fail(reader, *, checkpoint, **kwargs):
        checkpoint.save(SlabResult(0, 4, np.zeros((0, 3), np.int64), np.zeros(0, np.float32), 0, 0.0, 9.0))
        raise getattr(clarity_fast.errors, error)("stopped")

    monkeypatch.setattr(clarity_fast.run_detect, "detect", one_slab_then_fail)
    with pytest.raises(getattr(clarity_fast.errors, error)):
        run_detection(DetectRequest(volume=brain[1], out=tmp_path / "cells.csv", progress=False))
    assert (tmp_path / "cells.csv.partial" / "slab-00000000.npz").is_file() == kept


def test_resume_with_nothing_to_resume_says_so(brain, tmp_path):
    _, path = brain
    done = run_cli("detect", path, "--out", tmp_path / "cells.csv", "--resume")
    assert done.returncode == 0 and "--resume: no interrupted run to continue" in done.stderr
