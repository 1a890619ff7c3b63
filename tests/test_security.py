"""Model files are data, never code; detection needs no network; input paths are only ever opened."""

import pickle
import socket

import numpy as np
import pytest

from clarity_fast.errors import ModelError
from clarity_fast.export.model_file import DEFAULT_MODEL


class _Exploit:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_exploit_in_a_model_file_is_refused_not_run(tmp_path):
    pytest.importorskip("torch", reason="model.pt files need torch")
    from clarity_fast.model.store import load_model

    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"state_dict": _Exploit(marker), "config": {}}, f, protocol=2)
    with pytest.raises(ModelError, match="not a clarity-fast model file"):
        load_model(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="the built-in model is not in this checkout")
def test_detection_opens_no_network_connection(tmp_path, monkeypatch):
    from clarity_fast.run_detect import DetectRequest, run_detection
    from clarity_fast.io.volumes import write_tiff
    from clarity_fast.simulate import SimulatedBrain, SimulationSettings

    write_tiff(tmp_path / "v.tif", SimulatedBrain(SimulationSettings(shape=(8, 64, 64), seed=2)).volume(), voxel_size=(4.0, 2.0, 2.0))

    def refuse(*args, **kwargs):
        raise AssertionError("detection tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    report = run_detection(DetectRequest(volume=tmp_path / "v.tif", out=tmp_path / "cells.csv", progress=False))
    assert report.summary["cells"] >= 0


def test_paths_with_shell_syntax_are_only_opened(tmp_path, monkeypatch):
    from clarity_fast.io.volumes import open_volume, write_tiff

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    name = tmp_path / "v;touch pwned;$(touch pwned).tif"
    write_tiff(name, np.arange(8 * 16 * 16, dtype=np.uint16).reshape(8, 16, 16), voxel_size=(1.0, 1.0, 1.0))
    with open_volume(name) as reader:
        assert reader.shape == (8, 16, 16)
    assert not marker.exists()
