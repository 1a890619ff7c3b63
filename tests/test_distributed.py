"""Detection on a Dask LocalCluster equals the single-process run, also when a worker dies mid-run."""

import os
import signal
from functools import partial

import numpy as np
import pytest

pytest.importorskip("dask.distributed", reason="cluster runs need the 'dask' extra")
pytest.importorskip("zarr", reason="cluster runs read Zarr (the 'dask' extra)")

from dask.distributed import Client, LocalCluster

from clarity_fast.distributed import ClusterSettings, _scorer, run_on_cluster
from clarity_fast.errors import InputError, OutputError
from clarity_fast.export.model_file import DEFAULT_MODEL
from clarity_fast.export.runtime import OnnxScorer, RuntimeSettings
from clarity_fast.io.convert import convert_to_zarr
from clarity_fast.io.volumes import open_volume, write_tiff
from clarity_fast.pipeline import DetectSettings, detect
from clarity_fast.run_detect import DetectRequest, run_detection
from clarity_fast.simulate import SimulatedBrain, SimulationSettings

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="the built-in model is not in this checkout")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A simulated brain as OME-Zarr with chunks and slabs (5 planes) that cut through cells."""
    root = tmp_path_factory.mktemp("cluster")
    brain = SimulatedBrain(SimulationSettings(shape=(30, 96, 96), difficulty=0.5, seed=3))
    write_tiff(root / "v.tif", brain.volume(), voxel_size=brain.settings.scale.voxel_size)
    with open_volume(root / "v.tif") as reader:
        convert_to_zarr(reader, root / "v.zarr", chunks=(7, 40, 40), zarr_format=3)
    return root


def test_local_cluster_gives_the_single_process_result(store):
    single = store / "single.csv"
    run_detection(DetectRequest(volume=store / "v.zarr", out=single, slab_depth=5, progress=False))
    clustered = store / "cluster.csv"
    report = run_detection(DetectRequest(volume=store / "v.zarr", out=clustered, slab_depth=5, workers=2, progress=False))
    assert report.summary["workers"] == 2
    assert clustered.read_bytes() == single.read_bytes()


def test_planes_levelled_by_workers_are_reported_by_the_client(tmp_path):
    """Workers' warnings go to their own (silenced) logs: the client's summary and report name the planes."""
    brain = SimulatedBrain(SimulationSettings(shape=(16, 64, 64), difficulty=0.0, seed=4))
    data = brain.volume().copy()
    data[5] = data[5] * 3
    write_tiff(tmp_path / "v.tif", data, voxel_size=brain.settings.scale.voxel_size)
    with open_volume(tmp_path / "v.tif") as reader:
        convert_to_zarr(reader, tmp_path / "v.zarr", chunks=(4, 64, 64), zarr_format=3)
    report = run_detection(DetectRequest(volume=tmp_path / "v.zarr", out=tmp_path / "c.csv", slab_depth=4, workers=2, progress=False))
    assert report.summary["levelled_planes"] == [5] and report.summary["replaced_planes"] == []
    assert "odd planes levelled with their neighbours: 5" in report.lines()


def test_a_killed_worker_changes_nothing(store):
    scorer = OnnxScorer(DEFAULT_MODEL)
    with open_volume(store / "v.zarr") as reader:
        settings = DetectSettings(
            voxel_size=reader.voxel_size, cell_diameter=12.0, threshold=scorer.config.threshold,
            prefilter_threshold=scorer.config.prefilter_threshold, slab_depth=1, adapt=True,  # histograms travel too
        )
        expected = detect(reader, scorer=scorer, model=scorer.config, settings=settings)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
            pids = list(client.run(os.getpid).values())
            killed = []

            def kill_one(z0, z1, cells):
                if not killed:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])

            runner = partial(
                run_on_cluster, volume=store / "v.zarr", channel=None, model=DEFAULT_MODEL, runtime=RuntimeSettings(),
                settings=settings, cluster=ClusterSettings(scheduler=cluster.scheduler_address),
            )
            result = detect(reader, scorer=scorer, model=scorer.config, settings=settings, on_slab=kill_one, run_slabs=runner)
            assert killed and pids[0] not in client.run(os.getpid).values()
    np.testing.assert_array_equal(result.zyx, expected.zyx)
    np.testing.assert_array_equal(result.probability, expected.probability)
    assert result.candidates == expected.candidates


def test_a_users_error_in_a_task_is_one_line_not_retried_tasks_and_worker_tracebacks(tmp_path):
    from cli_runner import run_cli

    data = SimulatedBrain(SimulationSettings(shape=(12, 64, 64), seed=1)).volume().astype(np.float32)
    data[11, 5, 5] = np.nan  # found by the task whose slab holds plane 11, on a worker
    np.save(tmp_path / "v.npy", data)
    done = run_cli("detect", tmp_path / "v.npy", "--voxel-size", "4,2,2", "--out", tmp_path / "c.csv", "--workers", "2", "--slab-depth", "4")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "NaN or infinite values in plane 11" in done.stderr
    assert not (tmp_path / "c.csv").exists()


@pytest.mark.parametrize("address", ["garbage", "http://127.0.0.1:8786"])
def test_a_scheduler_dask_cannot_reach_is_one_line_and_leaves_nothing(store, tmp_path, address):
    from cli_runner import run_cli

    done = run_cli("detect", store / "v.zarr", "--out", tmp_path / "c.csv", "--scheduler", address)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and f"cannot connect to the Dask scheduler at {address}" in done.stderr
    assert list(tmp_path.iterdir()) == []  # no output, and no checkpoint without a finished slab


def test_cluster_settings_are_checked():
    with pytest.raises(InputError, match="--workers"):
        ClusterSettings(workers=0)
    with pytest.raises(InputError, match="--scheduler is empty"):
        ClusterSettings(scheduler=" ")
    with pytest.raises(InputError, match="not both"):
        ClusterSettings(scheduler="tcp://localhost:8786", workers=2)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_convert_round_trips_data_and_voxel_size(store, tmp_path, zarr_format):
    with open_volume(store / "v.tif") as reader:
        convert_to_zarr(reader, tmp_path / "c.zarr", chunks=(4, 32, 32), zarr_format=zarr_format)
        expected, size = reader.read_slab(0, reader.shape[0]), reader.voxel_size
        with pytest.raises(OutputError, match="exists"):
            convert_to_zarr(reader, tmp_path / "c.zarr")
    with open_volume(tmp_path / "c.zarr") as zarr_reader:
        np.testing.assert_array_equal(zarr_reader.read_slab(0, zarr_reader.shape[0]), expected)
        assert zarr_reader.voxel_size == size
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_convert_refuses_a_target_no_reader_would_take_for_a_store(store, tmp_path):
    with open_volume(store / "v.tif") as reader:
        with pytest.raises(OutputError, match="give it a .zarr name"):
            convert_to_zarr(reader, tmp_path / "out.tif")
        with pytest.raises(OutputError, match="inside the Zarr store"):
            convert_to_zarr(reader, store / "v.zarr" / "inner.zarr")
    assert not (tmp_path / "out.tif").exists() and not (store / "v.zarr" / "inner.zarr").exists()


def test_a_partial_store_is_removed_even_while_a_write_in_flight_recreates_it(tmp_path):
    """An interrupt stops convert's call, not the chunk writes zarr's own thread has in flight."""
    import threading
    import time

    from clarity_fast.io.convert import _remove

    building = tmp_path / ".v.zarr.x.part"
    (building / "0").mkdir(parents=True)

    def late_write():
        time.sleep(0.02)
        (building / "0").mkdir(parents=True, exist_ok=True)
        (building / "0" / "c.0.0").write_bytes(b"chunk")

    writer = threading.Thread(target=late_write)
    writer.start()
    _remove(building)
    writer.join()
    assert not building.exists()


def test_a_volume_of_unknown_voxel_size_converts_to_a_store_of_unknown_voxel_size(tmp_path):
    """Not to 1 µm voxels, which detect would take as given (F1 0.99 -> 0.30 on a 4x2x2 µm volume in review)."""
    source = tmp_path / "plain.npy"
    np.save(source, np.zeros((4, 16, 16), np.uint16))
    with open_volume(source) as reader:
        assert reader.voxel_size is None
        convert_to_zarr(reader, tmp_path / "c.zarr", zarr_format=2)
    with open_volume(tmp_path / "c.zarr") as zarr_reader:
        assert zarr_reader.voxel_size is None


def test_a_worker_scores_with_the_model_file_as_it_is_now(tmp_path):
    """A long-lived worker keeps sessions between runs: a model exported again to the same path must be reloaded."""
    onnx = pytest.importorskip("onnx", reason="rewriting a model needs the 'train' extra")
    from onnx import numpy_helper

    path = tmp_path / "model.onnx"
    path.write_bytes(DEFAULT_MODEL.read_bytes())
    patches = np.random.default_rng(0).normal(size=(4, 1, 12, 12, 12)).astype(np.float32)
    before = _scorer(path, RuntimeSettings(device="cpu"))(patches)
    model = onnx.load(path)
    last = model.graph.initializer[-1]  # the output layer's bias: every logit moves by the same amount
    last.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(last) + np.float32(5.0), last.name))
    onnx.save(model, path)
    after = _scorer(path, RuntimeSettings(device="cpu"))(patches)
    assert not np.allclose(before, after)
