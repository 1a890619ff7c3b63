"""What a user gets for bad input: one `error:` line, a non-zero exit, no traceback, and no output written
(an existing output file is left as it was). Each case is a row of the README's table."""

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from cli_runner import run_cli

from clarity_fast.errors import OutputError
from clarity_fast.export.model_file import DEFAULT_MODEL
from clarity_fast.io.points import Points, write_points
from clarity_fast.io.volumes import write_tiff
from clarity_fast.simulate import SimulatedBrain, SimulationSettings

OLD = "an earlier result\n"


def good_volume(path):
    write_tiff(path, SimulatedBrain(SimulationSettings(shape=(8, 64, 64), seed=1)).volume(), voxel_size=(4.0, 2.0, 2.0))
    return path


def mismatched_model(path):
    onnx = pytest.importorskip("onnx", reason="editing a model needs onnx")
    model = onnx.load(str(DEFAULT_MODEL))
    for prop in model.metadata_props:
        if prop.key == "clarity_fast.config":
            config = json.loads(prop.value)
            config["network"]["patch"] = 16
            prop.value = json.dumps(config)
    path.write_bytes(model.SerializeToString())
    return path


def broken_model(path):
    """The built-in model with NaN weights, as a diverged training would leave it."""
    onnx = pytest.importorskip("onnx", reason="editing a model needs onnx")
    from onnx import numpy_helper

    model = onnx.load(str(DEFAULT_MODEL))
    for i, tensor in enumerate(model.graph.initializer):
        values = numpy_helper.to_array(tensor)
        if values.dtype == np.float32 and values.size > 1:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.full_like(values, np.nan), tensor.name))
    path.write_bytes(model.SerializeToString())
    return path


def npy(tmp, data, *, voxel_size: bool = True):
    """An .npy volume (which records no voxel size) and the arguments to give it one."""
    np.save(tmp / "v.npy", data)
    return tmp / "v.npy", ["--voxel-size", "4,2,2"] if voxel_size else []


def make(case: str, tmp):
    """The volume path and extra arguments for one bad-input case."""
    volume = tmp / "v.tif"
    if case == "missing file":
        return tmp / "absent.tif", []
    if case == "not an image":
        volume.write_text("hello, I am text\n" * 100)
        return volume, []
    if case == "truncated TIFF":
        good_volume(volume)
        volume.write_bytes(volume.read_bytes()[: volume.stat().st_size // 3])
        return volume, []
    if case == "4D without --channel":
        return npy(tmp, np.zeros((2, 8, 64, 64), np.uint16))
    if case == "RGB without --channel":
        tifffile.imwrite(volume, np.zeros((64, 64, 3), np.uint8), photometric="rgb")
        return volume, ["--voxel-size", "4,2,2"]
    if case == "empty volume":
        return npy(tmp, np.zeros((0, 64, 64), np.uint16))
    if case == "constant volume":
        return npy(tmp, np.full((8, 64, 64), 100, np.uint16))
    if case == "smaller than a patch":
        return npy(tmp, np.random.default_rng(0).integers(0, 500, (8, 8, 8)).astype(np.uint16))
    if case == "NaN in float input":
        data = np.random.default_rng(0).random((8, 64, 64)).astype(np.float32)
        data[5, 3, 3] = np.nan
        return npy(tmp, data)
    if case == "model is not ONNX":
        (tmp / "m.onnx").write_text("not a model")
        return good_volume(volume), ["--model", tmp / "m.onnx"]
    if case == "model expects another patch size":
        return good_volume(volume), ["--model", mismatched_model(tmp / "m.onnx")]
    if case == "model with NaN weights":
        return good_volume(volume), ["--model", broken_model(tmp / "m.onnx")]
    if case == "unknown voxel size":
        return npy(tmp, np.zeros((8, 64, 64), np.uint16), voxel_size=False)
    if case == "--batch 0":
        return good_volume(volume), ["--batch", "0"]
    if case == "a --batch larger than memory":
        return good_volume(volume), ["--batch", "1000000000"]
    if case in ("--cell-diameter 0", "--cell-diameter inf"):
        return good_volume(volume), case.split()
    if case == "a cell smaller than a voxel":
        return good_volume(volume), ["--cell-diameter", "1.5"]
    if case == "a voxel size in mm":
        volume, _ = npy(tmp, SimulatedBrain(SimulationSettings(shape=(8, 64, 64), seed=1)).volume())
        return volume, ["--voxel-size", "0.004,0.002,0.002"]
    if case == "a plane spacing in mm":
        volume, _ = npy(tmp, SimulatedBrain(SimulationSettings(shape=(8, 64, 64), seed=1)).volume())
        return volume, ["--voxel-size", "0.004,2,2"]
    if case == "a --preview that is not .png":
        return good_volume(volume), ["--preview", tmp / "qc.txt"]
    raise AssertionError(case)


CASES = {
    "missing file": (2, "no such file"),
    "not an image": (2, "not a readable TIFF"),
    "truncated TIFF": (2, "v.tif"),
    "4D without --channel": (2, "--channel"),
    "RGB without --channel": (2, "--channel"),
    "empty volume": (2, "empty volume"),
    "constant volume": (2, "every voxel is 100"),
    "smaller than a patch": (2, "smaller than one 12-voxel patch"),
    "NaN in float input": (2, "v.npy: NaN or infinite values in plane 5;"),
    "model is not ONNX": (3, "not a loadable ONNX model"),
    "model expects another patch size": (3, "(N, 1, 16, 16, 16)"),
    "model with NaN weights": (3, "NaN or infinite: its weights are broken"),
    "unknown voxel size": (2, "--voxel-size"),
    "--batch 0": (2, "--batch"),
    "a --batch larger than memory": (2, "use a smaller --batch"),
    "--cell-diameter 0": (2, "cell diameter must be a positive, finite number"),
    "--cell-diameter inf": (2, "cell diameter must be a positive, finite number"),
    "a cell smaller than a voxel": (2, "less than one voxel across (voxel 2 µm in y and x)"),
    "a voxel size in mm": (2, "6000×6000 voxels across at voxel size 0.002×0.002 µm, wider than the planes (64×64 voxels)"),
    "a plane spacing in mm": (2, "spans 3000 planes at 0.004 µm per plane, more than 32 (the lesser of 4× the volume's 8 planes and 500)"),
    "a --preview that is not .png": (2, "give it a .png name"),
}


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="the built-in model is not in this checkout")
@pytest.mark.parametrize("case", list(CASES))
def test_detect_bad_input(tmp_path, case):
    volume, extra = make(case, tmp_path)
    out = tmp_path / "cells.csv"
    out.write_text(OLD)
    done = run_cli("detect", volume, "--out", out, *extra)
    code, message = CASES[case]
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], done.stderr
    assert out.read_text() == OLD
    assert not (tmp_path / "cells.summary.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".part", ".partial", ".txt"))]


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="the built-in model is not in this checkout")
def test_negative_values_are_processed_with_a_warning(tmp_path):
    data = SimulatedBrain(SimulationSettings(shape=(8, 64, 64), seed=1)).volume().astype(np.float32) - 1000
    np.save(tmp_path / "v.npy", data)
    done = run_cli("detect", tmp_path / "v.npy", "--voxel-size", "4,2,2", "--out", tmp_path / "cells.csv")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().startswith("warning:") and "negative values" in done.stderr


@pytest.mark.parametrize(
    "where, code, message",
    [("missing/cells.csv", 4, "output folder does not exist"), ("/proc/cells.csv", 4, "cannot")],
)
def test_unwritable_output(tmp_path, where, code, message):
    volume = good_volume(tmp_path / "v.tif")
    target = tmp_path / where if not where.startswith("/") else where
    done = run_cli("detect", volume, "--out", target)
    assert done.returncode == code and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("threshold", ["0", "-1", "nan"])
def test_candidates_refuses_a_threshold_that_is_not_positive(tmp_path, threshold):
    volume = good_volume(tmp_path / "v.tif")
    done = run_cli("candidates", volume, "--threshold", threshold, "--out", tmp_path / "c.csv")
    assert done.returncode == 2 and done.stderr.startswith("error: the prefilter threshold must be a positive, finite number of noise units")
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "c.csv").exists()


@pytest.mark.parametrize(
    "content, message",
    [("z,y\n1,2\n", "column"), ("z,y,x\n1,two,3\n", "two"), ("z,y,x\n1,2,3\n", None)],
)
def test_evaluate_bad_points(tmp_path, content, message):
    (tmp_path / "p.csv").write_text(content)
    (tmp_path / "t.csv").write_text("z,y,x\n1,2,3\n")
    done = run_cli("evaluate", "--pred", tmp_path / "p.csv", "--truth", tmp_path / "t.csv")
    if message is None:
        assert done.returncode == 0
    else:
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_train_rejects_out_of_bounds_points_and_missing_files(tmp_path):
    good_volume(tmp_path / "v.tif")
    (tmp_path / "p.csv").write_text("z,y,x\n1,2,3\n500,2,3\n")
    (tmp_path / "m.csv").write_text("volume,points\nv.tif,p.csv\n")
    done = run_cli("train", "--manifest", tmp_path / "m.csv", "--out", tmp_path / "m.pt", "--epochs", "1")
    assert done.returncode == 2 and "outside" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    (tmp_path / "m.csv").write_text("volume,points\nv.tif,absent.csv\n")
    done = run_cli("train", "--manifest", tmp_path / "m.csv", "--out", tmp_path / "m.pt", "--epochs", "1")
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert not (tmp_path / "m.pt").exists()


def test_a_full_disk_is_one_line_and_leaves_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "cells.csv"
    out.write_text(OLD)

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(OutputError, match="disk full"):
        write_points(out, Points(zyx=np.zeros((2, 3))))
    monkeypatch.undo()
    assert out.read_text() == OLD and [p.name for p in tmp_path.iterdir()] == ["cells.csv"]


def test_outputs_reach_the_disk_before_the_rename_and_a_failed_sync_fails_the_write(tmp_path, monkeypatch):
    """The data are synced before the rename (a power cut must not leave an empty output); a sync that fails (EIO)
    fails the write with the old file in place; a folder that cannot be synced, after the rename, is no error."""
    import os
    import stat

    out = tmp_path / "cells.csv"
    out.write_text(OLD)
    real_fsync, synced = os.fsync, []

    def fsync(fd):
        is_folder = stat.S_ISDIR(os.fstat(fd).st_mode)
        synced.append("folder" if is_folder else "file")
        if is_folder:
            raise OSError(errno.ENOTSUP, "Operation not supported")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_points(out, Points(zyx=np.zeros((2, 3))))
    assert synced == ["file", "folder"] and out.read_text().startswith("z,y,x")

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    out.write_text(OLD)
    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OutputError, match="cannot write .*Input/output error"):
        write_points(out, Points(zyx=np.zeros((2, 3))))
    assert out.read_text() == OLD and [p.name for p in tmp_path.iterdir()] == ["cells.csv"]


@pytest.mark.parametrize(
    "extra, message",
    [(["--scheme", "lol"], "--scheme must be loo or random"), (["--scheme", "random", "--test-frac", "1.5"], "--test-frac")],
)
def test_cv_refuses_bad_options_before_loading_or_writing(tmp_path, extra, message):
    """The manifest's volumes need not even exist: options are checked first, and no results folder is made."""
    (tmp_path / "m.csv").write_text("volume,points,group\nabsent.tif,absent.csv,a\n")
    done = run_cli("cv", "--manifest", tmp_path / "m.csv", "--out", tmp_path / "results", *extra)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "results").exists()


def test_export_of_a_file_that_is_not_a_model_is_one_short_line(tmp_path):
    """torch's refusal to unpickle comes with a paragraph of advice about weights_only; the user gets one line."""
    (tmp_path / "m.pt").write_bytes(b"z,y,x\n1,2,3\n")
    done = run_cli("export", "--onnx", tmp_path / "m.pt")
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip() == f"error: {tmp_path / 'm.pt'}: not a clarity-fast model file (not PyTorch weights and config)"
