"""Fine-tuning: training on from the built-in model, an exported .onnx or a model.pt (train --from)."""

import json

import numpy as np
import pytest
from cli_runner import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="fine-tuning needs the 'train' extra (torch, onnx)")
onnx = pytest.importorskip("onnx", reason="fine-tuning needs the 'train' extra (torch, onnx)")

from clarity_fast.errors import ModelError
from clarity_fast.export.model_file import DEFAULT_MODEL
from clarity_fast.export.parity import random_patches
from clarity_fast.export.planar import PlanarCellNet, cellnet_from_planar
from clarity_fast.export.runtime import OnnxScorer, RuntimeSettings
from clarity_fast.export.to_onnx import export_onnx
from clarity_fast.manifest import read_manifest
from clarity_fast.model.config import ModelConfig, NetworkConfig
from clarity_fast.model.network import CellNet
from clarity_fast.model.samples import load_annotated
from clarity_fast.model.start import load_start
from clarity_fast.model.store import save_model
from clarity_fast.model.train import TrainSettings, train
from clarity_fast.simulate import SimulationSettings, write_brains


def trained_like(*, patch: int, width: int, batch_norm: bool, seed: int) -> tuple[CellNet, ModelConfig]:
    torch.manual_seed(seed)
    net = CellNet(NetworkConfig(patch=patch, width=width, hidden=16, batch_norm=batch_norm)).train()
    with torch.no_grad():
        net(torch.randn(32, 1, patch, patch, patch) * 2 + 0.5)  # non-trivial batch-norm statistics
    config = ModelConfig(network=net.config, voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0, threshold=0.6, prefilter_threshold=3.0)
    return net.eval(), config


@settings(max_examples=10, deadline=None)
@given(patch=st.integers(6, 15), width=st.sampled_from([4, 8]), batch_norm=st.booleans(), seed=st.integers(0, 2**16))
def test_a_planar_networks_weights_give_back_the_network(patch, width, batch_norm, seed):
    net, config = trained_like(patch=patch, width=width, batch_norm=batch_norm, seed=seed)
    weights = {k: v.detach().numpy() for k, v in PlanarCellNet(net).state_dict().items()}
    back = cellnet_from_planar(weights, config=config.network)
    x = torch.randn(9, 1, patch, patch, patch)
    with torch.no_grad():
        assert torch.allclose(back(x), net(x), atol=1e-5, rtol=1e-5)


def test_the_built_in_model_and_an_export_load_as_the_networks_they_score_as(tmp_path):
    patches = random_patches(64, patch=12, seed=1)
    start = load_start("default")
    assert start.source == "default" and start.config.network == NetworkConfig()
    with torch.no_grad():
        logits = start.net(torch.from_numpy(patches)).numpy()
    np.testing.assert_allclose(logits, OnnxScorer(DEFAULT_MODEL, settings=RuntimeSettings(device="cpu"))(patches), atol=1e-4)
    net, config = trained_like(patch=12, width=8, batch_norm=True, seed=0)
    export_onnx(tmp_path / "m.onnx", net=net, config=config)
    save_model(tmp_path / "m.pt", net=net, config=config)
    for name in ("m.onnx", "m.pt"):
        with torch.no_grad():
            np.testing.assert_allclose(load_start(tmp_path / name).net(torch.from_numpy(patches)).numpy(), net(torch.from_numpy(patches)).numpy(), atol=1e-5)


def test_graphs_it_cannot_train_on_are_refused_with_the_way_out(tmp_path):
    net, config = trained_like(patch=12, width=8, batch_norm=True, seed=0)
    export_onnx(tmp_path / "3d.onnx", net=net, config=config, planar=False)
    with pytest.raises(ModelError, match="a 3d graph; train on from the model.pt"):
        load_start(tmp_path / "3d.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        load_start(tmp_path / "junk.onnx")
    with pytest.raises(ModelError, match="no such model file"):
        load_start(tmp_path / "missing.onnx")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("sims")
    return write_brains(root, settings=SimulationSettings(shape=(20, 64, 64), difficulty=0.5, seed=5), n=2, progress=False)


def test_fine_tuning_starts_from_the_model_and_keeps_its_normalisation(manifest, tmp_path):
    net, config = trained_like(patch=12, width=8, batch_norm=True, seed=0)
    save_model(tmp_path / "m.pt", net=net, config=config)
    start = load_start(tmp_path / "m.pt")
    volumes = load_annotated(read_manifest(manifest), cell_diameter=12.0, voxel_size=None, prefilter_threshold=3.0)
    still = TrainSettings(network=config.network, epochs=1, batch_size=64, learning_rate=0.0, weight_decay=0.0)
    trained = train(volumes, settings=still, prefilter_threshold=3.0, start=start, progress=False)
    for key, value in net.state_dict().items():  # nothing learnt at a rate of 0, and batch norm's statistics kept
        assert torch.equal(trained.net.state_dict()[key], value), key
    record = trained.config.training["start"]
    assert record == dict(model=str(tmp_path / "m.pt"), sha256=start.sha256, threshold=0.6, val_auc=record["val_auc"])
    assert trained.config.training["best_val_auc"] == record["val_auc"]  # no epoch beat it: the starting model kept
    with pytest.raises(ValueError, match="not the starting model's"):
        train(volumes, settings=TrainSettings(epochs=1), prefilter_threshold=3.0, start=start, progress=False)


def test_train_from_the_built_in_model_command(manifest, tmp_path):
    out = run_cli("train", "--manifest", manifest, "--out", tmp_path / "tuned.pt", "--from", "default", "--epochs", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("fine-tuned default on ") and ", 1 epoch: " in out.stdout, out.stdout
    record = json.loads((tmp_path / "tuned.train.json").read_text())["config"]
    assert record["network"] == json.loads(json.dumps(NetworkConfig().__dict__))
    assert record["training"]["start"]["model"] == "default" and record["training"]["settings"]["learning_rate"] == 1e-4
    bad = run_cli("train", "--manifest", manifest, "--out", tmp_path / "other.pt", "--from", "default", "--width", "16")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: --width 16: the model trained on from (default) has width 32; leave --width out with --from"
    )
    assert not (tmp_path / "other.pt").exists()


def test_cv_fine_tunes_the_starting_model_in_each_fold(manifest, tmp_path):
    out = run_cli("cv", "--manifest", manifest, "--by", "volume", "--method", "cnn", "--from", "default", "--epochs", "1", "--out", tmp_path / "cv")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(" cnn: patch AUC ") == 2 and (tmp_path / "cv" / "cv.md").is_file()
    bad = run_cli("cv", "--manifest", manifest, "--from", "missing.onnx", "--out", tmp_path / "cv2")
    assert bad.returncode == 3 and "missing.onnx" in bad.stderr and not (tmp_path / "cv2").exists()
    bad = run_cli("cv", "--manifest", manifest, "--from", "default", "--method", "blob", "--out", tmp_path / "cv3")
    assert bad.returncode == 2 and "--from fine-tunes the CNN, which --method 'blob' leaves out" in bad.stderr


def test_a_planar_export_of_other_shapes_is_refused(tmp_path):
    weights = {k: v.detach().numpy() for k, v in PlanarCellNet(trained_like(patch=12, width=8, batch_norm=True, seed=0)[0]).state_dict().items()}
    weights["dense.weight"] = weights["dense.weight"].T  # as a MatMul would hold it
    with pytest.raises(ValueError, match=r"dense.weight \(\d+, 16\)"):
        cellnet_from_planar(weights, config=NetworkConfig(width=8, hidden=16))
