"""ONNX export and the scoring runtime: round trips, parity with PyTorch, provider fallback, bad files."""

import json
import logging

import numpy as np
import pytest
from cli_runner import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="export needs the 'train' extra (torch, onnx)")
onnx = pytest.importorskip("onnx", reason="export needs the 'train' extra (torch, onnx)")

from clarity_fast.errors import InputError, ModelError
from clarity_fast.export.model_file import CONFIG_KEY
from clarity_fast.export.parity import max_logit_difference, random_patches
from clarity_fast.export.planar import PlanarCellNet
from clarity_fast.export.providers import cuda_device_count
from clarity_fast.export.runtime import CPU, CUDA, TENSORRT, OnnxScorer, RuntimeSettings, engine_cache, provider_chain
from clarity_fast.export.to_onnx import export_onnx, onnx_bytes
from clarity_fast.io.volumes import open_volume
from clarity_fast.kernels.gather import gather_patches
from clarity_fast.model.config import ModelConfig, NetworkConfig
from clarity_fast.model.network import CellNet
from clarity_fast.model.store import save_model

NO_GPU = "needs a CUDA GPU (none on this machine)"


def trained_like(patch: int = 12, width: int = 8) -> tuple[CellNet, ModelConfig]:
    """A network with non-trivial batch-norm statistics, as after training."""
    torch.manual_seed(0)
    net = CellNet(NetworkConfig(patch=patch, width=width, hidden=16))
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(64, 1, patch, patch, patch) * 2 + 0.5)
    config = ModelConfig(
        network=net.config, voxel_size=(4.0, 2.0, 2.0), cell_diameter=12.0, threshold=0.6, prefilter_threshold=3.0,
        training=dict(data="unit test", best_val_auc=0.9),
    )
    return net.eval(), config


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    net, config = trained_like()
    export_onnx(root / "m.onnx", net=net, config=config)
    return net, config, root / "m.onnx"


def test_round_trip_keeps_config_and_checks(exported):
    net, config, path = exported
    scorer = OnnxScorer(path, settings=RuntimeSettings(device="cpu"))
    assert scorer.config == config
    assert scorer.device == "cpu"
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert json.loads({p.key: p.value for p in model.metadata_props}[CONFIG_KEY])["threshold"] == 0.6


@pytest.mark.parametrize("n", [1, 7, 300])
def test_dynamic_batch_and_fp32_parity_on_random_patches(exported, n):
    net, _, path = exported
    patches = random_patches(n, patch=12, seed=n)
    assert max_logit_difference(net=net, onnx_path=path, patches=patches) <= 1e-4


def test_fp32_parity_on_real_patches(exported, shared_data):
    net, _, path = exported
    patch_dir = sorted((shared_data / "delivr_cfos" / "patches").iterdir())[0]
    with open_volume(next(patch_dir.glob("*.tif"))) as reader:
        volume = reader.read_slab(0, reader.shape[0])
    rng = np.random.default_rng(0)
    centres = (rng.random((200, 3)) * np.asarray(volume.shape)).astype(np.int64)
    patches = gather_patches(volume, centres=centres, out=np.empty((200, 1, 12, 12, 12), np.float32))
    assert max_logit_difference(net=net, onnx_path=path, patches=patches) <= 1e-4


def test_fp16_export_runs_close_to_fp32(tmp_path):
    net, config = trained_like()
    export_onnx(tmp_path / "h.onnx", net=net, config=config, fp16=True)
    assert max_logit_difference(net=net, onnx_path=tmp_path / "h.onnx") <= 0.05
    assert next(net.parameters()).dtype == torch.float32  # exporting fp16 leaves the caller's network as it was


def test_provider_chain_falls_back_with_one_warning():
    built = [TENSORRT, CUDA, CPU]
    assert provider_chain("auto", built=built, gpus=0) == ([CPU], None)
    assert provider_chain("auto", built=built, gpus=1) == ([TENSORRT, CUDA, CPU], None)
    chain, warning = provider_chain("cuda", built=built, gpus=0)
    assert chain == [CPU] and "no CUDA device" in warning
    chain, warning = provider_chain("tensorrt", built=[CUDA, CPU], gpus=1)
    assert chain == [CUDA, CPU] and "TensorrtExecutionProvider" in warning
    assert provider_chain("cpu", built=built, gpus=1) == ([CPU], None)


def test_settings_reject_bad_values():
    with pytest.raises(InputError, match="--device"):
        RuntimeSettings(device="gpu")
    with pytest.raises(InputError, match="gpu_run"):
        RuntimeSettings(gpu_run=0)


@pytest.mark.skipif(cuda_device_count() > 0, reason="checks the fallback on a machine without a GPU")
def test_cuda_request_without_gpu_warns_and_scores_on_cpu(exported, caplog):
    net, _, path = exported
    with caplog.at_level(logging.WARNING, logger="clarity_fast"):
        scorer = OnnxScorer(path, settings=RuntimeSettings(device="cuda"))
    assert scorer.device == "cpu"
    assert len(caplog.records) == 1 and "scoring on cpu" in caplog.records[0].getMessage()


def test_a_patch_scores_the_same_alone_and_in_any_batch(exported):
    scorer = OnnxScorer(exported[2], settings=RuntimeSettings(device="cpu"))
    patches = random_patches(40, patch=12, seed=9)
    whole = scorer(patches)
    for size in (1, 2, 3, 7):
        assert np.array_equal(np.concatenate([scorer(patches[i : i + size]) for i in range(0, 40, size)]), whole)


def test_gpu_runs_of_fixed_shape_score_any_number_of_patches(exported, monkeypatch):
    """The GPU path cuts and pads to `gpu_run`; checked here with its buffers in host memory."""
    scorer = OnnxScorer(exported[2], settings=RuntimeSettings(device="cpu", gpu_run=64))
    monkeypatch.setattr(scorer, "_memory", "cpu")
    patches = random_patches(150, patch=12)
    whole = scorer(patches)
    for n in (150, 64, 1, 65):
        np.testing.assert_allclose(scorer._run_bound(patches[:n]), whole[:n], rtol=0, atol=1e-5)


def test_the_gpu_path_scores_right_from_several_threads(exported, monkeypatch):
    """A Dask worker's threads share one scorer per process; the GPU path's bound buffers must serve one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    scorer = OnnxScorer(exported[2], settings=RuntimeSettings(device="cpu", gpu_run=64))
    expected = [scorer(random_patches(200, patch=12, seed=s)) for s in range(8)]
    monkeypatch.setattr(scorer, "_memory", "cpu")
    monkeypatch.setattr(scorer, "provider", "CUDAExecutionProvider")  # take the bound-buffer path, on the host
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda s: scorer(random_patches(200, patch=12, seed=s)), list(range(8)) * 3))
    for k, logits in enumerate(got):
        np.testing.assert_allclose(logits, expected[k % 8], rtol=0, atol=1e-5)


def test_a_gpu_provider_that_cannot_load_falls_back_in_one_warning(exported, caplog, capfd, monkeypatch):
    """TensorRT without libnvinfer (common on GPU servers) must not print onnxruntime's C++ errors or banner."""
    import clarity_fast.export.runtime as runtime

    monkeypatch.setattr(runtime, "cuda_device_count", lambda: max(1, cuda_device_count()))
    with caplog.at_level(logging.WARNING, logger="clarity_fast"):
        scorer = OnnxScorer(exported[2], settings=RuntimeSettings(device="tensorrt", cache_dir=exported[2].parent))
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == ""
    if scorer.device != "tensorrt":
        assert [r.getMessage() for r in caplog.records] == [f"--device tensorrt: TensorrtExecutionProvider failed to start; scoring on {scorer.device}"]


def test_a_gpu_that_fails_to_start_is_not_a_bad_model(exported, caplog, monkeypatch):
    """onnxruntime raises its own errors (out of memory, an engine it cannot build) past its fallback: detect must
    warn once and score on the CPU, not call the model file unloadable."""
    import onnxruntime

    import clarity_fast.export.runtime as runtime

    monkeypatch.setattr(runtime, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(runtime, "built_providers", lambda: [runtime.CUDA, runtime.CPU])
    real = onnxruntime.InferenceSession

    class OutOfMemory(Exception):  # like onnxruntime's Fail: not a RuntimeError, so its own fallback lets it through
        pass

    def session(path, options=None, providers=None, **kwargs):
        first = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        if first != runtime.CPU:
            raise OutOfMemory("CUDA failure 2: out of memory")
        return real(path, options, providers=providers, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    with caplog.at_level(logging.WARNING, logger="clarity_fast"):
        scorer = OnnxScorer(exported[2], settings=RuntimeSettings(device="cuda"))
    assert scorer.device == "cpu" and len(scorer(random_patches(3, patch=12))) == 3
    assert [r.getMessage() for r in caplog.records] == [
        "--device cuda: CUDAExecutionProvider failed to start (cuda: CUDA failure 2: out of memory); scoring on cpu"
    ]


def test_tensorrt_engines_are_cached_per_model_content_in_the_users_cache(tmp_path, monkeypatch):
    """onnxruntime names an engine by file and tensor names, not weights: a model retrained into the same file name
    must not load the old engine, and the built-in model's folder (site-packages) may be read-only."""
    import clarity_fast.export.runtime as runtime

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    paths = []
    for name, seed in (("a", 0), ("b", 1)):
        torch.manual_seed(seed)
        net = CellNet(NetworkConfig(patch=12, width=8, hidden=16)).eval()
        (tmp_path / name).mkdir()
        export_onnx(tmp_path / name / "model.onnx", net=net, config=trained_like()[1])
        paths.append(tmp_path / name / "model.onnx")
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "model.onnx").write_bytes(paths[0].read_bytes())
    root = tmp_path / "cache" / "clarity-fast" / "tensorrt"
    assert engine_cache(paths[0]).parent == root
    assert engine_cache(paths[0]) != engine_cache(paths[1])  # same name and graph, other weights
    assert engine_cache(tmp_path / "copy" / "model.onnx") == engine_cache(paths[0])  # moved: the engine still serves
    assert engine_cache(paths[0], root=tmp_path / "mine").parent == tmp_path / "mine"
    _, options = runtime._provider_options(
        TENSORRT, input_name="patches", config=trained_like()[1], path=paths[1], settings=RuntimeSettings(device="tensorrt")
    )
    assert options["trt_engine_cache_path"] == str(engine_cache(paths[1])) and engine_cache(paths[1]).is_dir()


@pytest.mark.skipif(cuda_device_count() == 0, reason=NO_GPU)
@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_gpu_scoring_matches_pytorch(exported, device, tmp_path):
    net, _, path = exported
    scorer = OnnxScorer(path, settings=RuntimeSettings(device=device, gpu_run=512, cache_dir=tmp_path))
    patches = random_patches(512, patch=12)
    with torch.inference_mode():
        reference = net(torch.from_numpy(patches)).numpy()
    tolerance = 1e-3 if scorer.device == "cuda" else 5e-2  # TensorRT runs fp16
    assert np.abs(scorer(patches) - reference).max() <= tolerance
    assert np.abs(scorer(patches[:100]) - reference[:100]).max() <= tolerance


def test_bad_model_files_give_model_errors(tmp_path, exported):
    with pytest.raises(ModelError, match="no such model file"):
        OnnxScorer(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxScorer(tmp_path / "junk.onnx")
    truncated = exported[2].read_bytes()
    (tmp_path / "cut.onnx").write_bytes(truncated[: len(truncated) // 2])
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxScorer(tmp_path / "cut.onnx")


def test_metadata_that_disagrees_with_the_graph_is_refused(tmp_path):
    net, config = trained_like()
    model = onnx.load_from_string(onnx_bytes(net=net, config=config))
    for prop in model.metadata_props:
        if prop.key == CONFIG_KEY:
            data = json.loads(prop.value)
            data["network"]["patch"] = 16
            prop.value = json.dumps(data)
    (tmp_path / "wrong.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match=r"\(N, 1, 16, 16, 16\)"):
        OnnxScorer(tmp_path / "wrong.onnx")
    del model.metadata_props[:]
    (tmp_path / "plain.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match="without clarity-fast metadata"):
        OnnxScorer(tmp_path / "plain.onnx")



@pytest.mark.parametrize(
    "change, message",
    [
        (lambda data, graph: data.update(normalisation="minmax"), "'minmax'"),
        (lambda data, graph: data["network"].update(patch=12.0), "not a whole number"),
        (lambda data, graph: graph.input[0].type.tensor_type.shape.dim[0].CopyFrom(onnx.TensorShapeProto.Dimension(dim_value=1)),
         "batches of 1"),
    ],
)
def test_a_model_detect_could_not_run_is_refused_when_loaded(tmp_path, change, message):
    """Normalisation, patch size and a batch of any size are what detect relies on: refused at once, in one line."""
    net, config = trained_like()
    model = onnx.load_from_string(onnx_bytes(net=net, config=config))
    for prop in model.metadata_props:
        if prop.key == CONFIG_KEY:
            data = json.loads(prop.value)
            change(data, model.graph)
            prop.value = json.dumps(data)
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match=message):
        OnnxScorer(tmp_path / "m.onnx")


def test_export_command(tmp_path):
    net, config = trained_like()
    save_model(tmp_path / "m.pt", net=net, config=config)
    out = run_cli("export", "--onnx", tmp_path / "m.pt")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "m.onnx").is_file() and "max |Δlogit|" in out.stdout
    (tmp_path / "bad.pt").write_bytes(b"junk")
    out = run_cli("export", "--onnx", tmp_path / "bad.pt", "--out", tmp_path / "bad.onnx")
    assert out.returncode == 3 and out.stderr.startswith("error:") and len(out.stderr.splitlines()) == 1
    assert not (tmp_path / "bad.onnx").exists()


def conv_ranks(model: onnx.ModelProto) -> list[int]:
    """How many spatial axes each convolution of an ONNX graph has."""
    return [len(next(a.ints for a in n.attribute if a.name == "kernel_shape")) for n in model.graph.node if n.op_type == "Conv"]


def test_export_command_writes_either_graph(tmp_path):
    net, config = trained_like()
    save_model(tmp_path / "m.pt", net=net, config=config)
    out = run_cli("export", "--onnx", tmp_path / "m.pt", "--graph", "3d", "--out", tmp_path / "3d.onnx")
    assert out.returncode == 0 and "3d graph" in out.stdout, out.stderr
    assert conv_ranks(onnx.load(tmp_path / "3d.onnx")) == [3, 3, 3]
    out = run_cli("export", "--onnx", tmp_path / "m.pt", "--graph", "2.5d", "--out", tmp_path / "x.onnx")
    assert out.returncode == 2 and "--graph must be planar or 3d" in out.stderr and len(out.stderr.splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()
    out = run_cli("export", "--onnx", tmp_path / "m.pt", "--opset", "9", "--out", tmp_path / "x.onnx")
    assert out.returncode == 2 and "--opset must be between 13 and 21" in out.stderr and len(out.stderr.splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


def test_an_export_that_does_not_score_as_pytorch_is_not_written(tmp_path):
    """Weights too large for half precision overflow to inf: the export must fail, not print `nan` and exit 0."""
    import torch

    net, config = trained_like()
    with torch.no_grad():
        net.head[-1].weight.fill_(1e6)  # logits far beyond float16's 65504
    save_model(tmp_path / "m.pt", net=net, config=config)
    (tmp_path / "m.onnx").write_text("an earlier export")
    out = run_cli("export", "--onnx", tmp_path / "m.pt", "--fp16")
    assert out.returncode == 3 and "differs from PyTorch" in out.stderr and len(out.stderr.splitlines()) == 1
    assert (tmp_path / "m.onnx").read_text() == "an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.pt"]


@settings(max_examples=12, deadline=None)
@given(patch=st.integers(6, 15), width=st.sampled_from([4, 8]), batch_norm=st.booleans(), seed=st.integers(0, 2**16))
def test_planar_network_equals_the_3d_one(patch, width, batch_norm, seed):
    """The 2D-over-z-windows form (what export writes) gives the 3D network's logits, for any patch size."""
    torch.manual_seed(seed)
    net = CellNet(NetworkConfig(patch=patch, width=width, hidden=16, batch_norm=batch_norm)).train()
    with torch.no_grad():
        net(torch.randn(32, 1, patch, patch, patch) * 2 + 0.5)  # non-trivial batch-norm statistics
    net.eval()
    planar = PlanarCellNet(net).eval()
    x = torch.randn(9, 1, patch, patch, patch)
    with torch.no_grad():
        assert torch.allclose(planar(x), net(x), atol=1e-5, rtol=1e-5)


def test_export_writes_2d_convolutions_with_the_3d_graphs_logits(tmp_path):
    net, config = trained_like()
    planar = onnx.load_from_string(onnx_bytes(net=net, config=config))
    assert conv_ranks(planar) == [2, 2, 2]
    (tmp_path / "3d.onnx").write_bytes(onnx_bytes(net=net, config=config, planar=False))
    (tmp_path / "2d.onnx").write_bytes(planar.SerializeToString())
    patches = random_patches(64, patch=12, seed=3)
    logits = [OnnxScorer(tmp_path / f"{name}.onnx", settings=RuntimeSettings(device="cpu"))(patches) for name in ("3d", "2d")]
    np.testing.assert_allclose(logits[1], logits[0], atol=1e-4)


def test_onnxruntimes_reason_is_kept_without_its_cpp_source_place():
    from clarity_fast.export.runtime import _first_line

    raised = RuntimeError(
        "[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:/onnxruntime_src/onnxruntime/core/graph/model.cc:256 "
        "onnxruntime::Model::Model(onnx::ModelProto&&, const onnxruntime::PathString&, const onnxruntime::ModelOptions&) "
        "Unsupported model IR version: 14, max supported IR version: 13"
    )
    assert _first_line(raised) == (
        "[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:Unsupported model IR version: 14, max supported IR version: 13"
    )
