"""The command line as a user meets it: help, version, info, simulate, and one-line errors."""

import subprocess
import sys

import pytest
from cli_runner import run_cli

from clarity_fast import __version__



def test_help_lists_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    assert "simulate" in out.stdout and "info" in out.stdout


@pytest.mark.parametrize("command", ["info", "simulate", "candidates", "demo", "detect", "export", "train", "evaluate", "cv"])
def test_each_command_has_help(command):
    out = run_cli(command, "--help")
    assert out.returncode == 0 and "Usage" in out.stdout


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"clarity-fast {__version__}"


def test_info_reports_runtime():
    out = run_cli("info")
    assert out.returncode == 0
    assert "numba" in out.stdout and "onnxruntime" in out.stdout and "CPUExecutionProvider" in out.stdout


def test_simulate_writes_volume_and_cells(tmp_path):
    out = run_cli("simulate", str(tmp_path / "sim"), "--shape", "8,40,40", "--seed", "3", "--difficulty", "1")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "sim" / "volume.tif").is_file() and (tmp_path / "sim" / "cells.csv").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shape", "0,3"], "--shape"),
        (["--shape", "8,a,8"], "--shape"),
        (["--difficulty", "2"], "difficulty"),
        (["--voxel-size", "4,-1,2"], "--voxel-size"),
        (["--brains", "-1"], "--brains"),
        (["--density", "0"], "density"),
    ],
)
def test_bad_arguments_give_one_line(tmp_path, args, message):
    out = run_cli("simulate", str(tmp_path / "sim"), *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "--pred", "p.csv"], "Missing option '--truth'"),
        (["detect", "v.tif", "--batch", "many"], "'--batch'"),
        (["detect", "v.tif", "--no-such-flag"], "--no-such-flag"),
        (["nosuchcommand"], "nosuchcommand"),
    ],
)
def test_usage_errors_give_one_line_and_exit_2(args, message):
    """Whatever click typer raises its usage errors from (its own copy since typer 0.2x): an input error, not a bug."""
    out = run_cli(*args)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], out.stderr


def test_the_command_line_needs_no_click_package():
    """typer since 0.2x brings its own click and no click package: a base install (no dask, which brings click)
    must start. Simulated by making `import click` fail."""
    code = "import sys; sys.modules['click'] = None; sys.argv = ['clarity-fast', 'evaluate']; from clarity_fast.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error: Missing option"), out.stderr


def test_the_bare_command_shows_its_help():
    out = run_cli()
    assert "Usage:" in out.stdout + out.stderr and "internal error" not in out.stderr and out.returncode in (0, 2)


def test_output_under_a_file_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = run_cli("simulate", str(blocker / "sim"), "--shape", "8,32,32")
    assert out.returncode == 4
    assert out.stderr.startswith("error: cannot create output folder") and "Traceback" not in out.stderr


def test_demo_runs_and_scores(tmp_path):
    out = run_cli("demo", "--out", str(tmp_path / "demo"), "--shape", "16,96,96")
    assert out.returncode == 0, out.stderr
    assert "against the simulated truth: precision" in out.stdout and "LoG" in out.stdout
    for name in ("volume.tif", "cells.csv", "detections.csv", "detections.summary.json", "detections.png"):
        assert (tmp_path / "demo" / name).is_file()
    again = run_cli("demo", "--out", str(tmp_path / "demo"), "--shape", "16,96,96")  # its own files: replaced
    assert again.returncode == 0, again.stderr
    assert run_cli("simulate", tmp_path / "sim", "--shape", "8,64,64").returncode == 0
    before = (tmp_path / "sim" / "volume.tif").read_bytes()
    refused = run_cli("demo", "--out", str(tmp_path / "sim"), "--shape", "16,96,96")  # a brain the user simulated: kept
    assert refused.returncode == 4 and "not made by a demo" in refused.stderr
    assert run_cli("detect", tmp_path / "sim" / "volume.tif", "--out", tmp_path / "sim" / "detections.csv").returncode == 0
    refused = run_cli("demo", "--out", str(tmp_path / "sim"), "--shape", "16,96,96")  # detect's outputs there do not make it a demo's
    assert refused.returncode == 4 and (tmp_path / "sim" / "volume.tif").read_bytes() == before


def test_a_failed_demo_leaves_none_of_its_files(tmp_path):
    out = run_cli("demo", "--out", str(tmp_path / "demo"), "--shape", "4,8,8")  # planes smaller than a patch
    assert out.returncode == 2 and "smaller than one 12-voxel patch" in out.stderr
    assert not (tmp_path / "demo").exists()


def test_a_demo_interrupted_while_detecting_leaves_nothing_not_even_its_checkpoint(tmp_path, monkeypatch):
    from clarity_fast import demo
    from clarity_fast.simulate import SimulationSettings

    def interrupted(request):
        request.checkpoint_path.mkdir()
        (request.checkpoint_path / "run.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_detection", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(out_dir=tmp_path / "demo", settings=SimulationSettings(shape=(4, 24, 24)))
    assert not (tmp_path / "demo").exists()


def test_an_interrupted_simulation_leaves_no_brains(tmp_path, monkeypatch):
    """Ctrl-C while the second brain is written: the first, complete, goes too (all or none, with the manifest)."""
    from clarity_fast import simulate
    from clarity_fast.simulate import SimulationSettings, write_brains

    written = []

    def interrupted(path, points, **kw):
        if written:
            raise KeyboardInterrupt
        written.append(path)
        return real(path, points, **kw)

    real = simulate.write_points
    monkeypatch.setattr(simulate, "write_points", interrupted)
    (tmp_path / "keep.txt").write_text("mine")  # an existing folder and what it held stay
    with pytest.raises(KeyboardInterrupt):
        write_brains(tmp_path, settings=SimulationSettings(shape=(4, 24, 24)), n=3, progress=False)
    assert written and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("command, hint", [("simulate", False), ("detect", True)])
def test_only_detect_is_told_it_can_resume(command, hint):
    from clarity_fast.cli import _stopped

    line = _stopped("interrupted", [command, "x"])
    assert line.startswith("error: interrupted (outputs left as they were") and ("--resume" in line) == hint


@pytest.mark.parametrize("args", [("--debug", "info"), ("info", "--debug")])
def test_debug_is_taken_before_or_after_the_command(args):
    out = run_cli(*args)
    assert out.returncode == 0 and "numba" in out.stdout and not out.stderr.strip()


def test_outputs_written_together_go_into_place_together_or_not_at_all(tmp_path):
    from clarity_fast.io.atomic import atomic_paths

    (tmp_path / "m.pt").write_text("old model")
    with pytest.raises(KeyboardInterrupt), atomic_paths(tmp_path / "m.pt", tmp_path / "m.train.json") as (model, log):
        log.write_text("new log")
        raise KeyboardInterrupt  # between the two writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"] and (tmp_path / "m.pt").read_text() == "old model"
    with atomic_paths(tmp_path / "m.pt", tmp_path / "m.train.json") as (model, log):
        model.write_text("new model")
        log.write_text("new log")
    assert (tmp_path / "m.pt").read_text() == "new model" and (tmp_path / "m.train.json").read_text() == "new log"


def test_an_output_folder_that_is_a_file_says_so(tmp_path):
    (tmp_path / "sim").write_text("x")
    out = run_cli("simulate", str(tmp_path / "sim"), "--shape", "8,32,32")
    assert out.returncode == 4 and out.stderr.strip() == f"error: {tmp_path / 'sim'} is a file; give a folder for the outputs"
