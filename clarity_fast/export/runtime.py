"""The scoring runtime: an onnxruntime session on the best device available, fed in large batches.

Preference TensorRT (fp16, engine cache on disk, a profile for 1..gpu_run patches) -> CUDA -> CPU. A device the
user asked for but that cannot run says so in one warning line and the next one down takes over.

On a GPU every run has the same shape (gpu_run patches, whatever detect's --batch; a short run is padded): the
convolution algorithm chosen depends on the shape, so a fixed shape makes a patch's score independent of how the
volume was cut into slabs and batches, as it is on the CPU. cuDNN's algorithm is chosen by heuristic, not by exhaustive
search, which on an H200 picked an algorithm 2.7x slower at batch 4096 (benchmarks/results/cuda_options.md).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clarity_fast.errors import InputError, ModelError
from clarity_fast.export.model_file import model_config, model_digest
from clarity_fast.export.providers import available_cores, built_providers, cuda_device_count
from clarity_fast.model.config import ModelConfig

log = logging.getLogger("clarity_fast")

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
TENSORRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
_CHAIN = {"tensorrt": [TENSORRT, CUDA, CPU], "cuda": [CUDA, CPU], "cpu": [CPU], "auto": [TENSORRT, CUDA, CPU]}
_SHORT = {TENSORRT: "tensorrt", CUDA: "cuda", CPU: "cpu"}


@dataclass(frozen=True)
class RuntimeSettings:
    """Where and how onnxruntime scores: the device asked for (auto falls back to the CPU), the GPU run size, the
    engine cache and the threads."""

    device: str = "auto"  # auto | cpu | cuda | tensorrt
    gpu_run: int = 2048  # patches per GPU run (and TensorRT profile); on an H200 within 3% of the fastest size
    cache_dir: Path | None = None  # TensorRT engines (building one takes minutes); None: the user's cache, see engine_cache
    threads: int | None = None  # CPU threads; None: the cores this process may use

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise InputError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.gpu_run < 1:
            raise InputError(f"gpu_run must be >= 1, got {self.gpu_run}")


def provider_chain(device: str, *, built: list[str], gpus: int) -> tuple[list[str], str | None]:
    """Providers to try, best first, and a warning when the device asked for cannot run here."""
    usable = [p for p in _CHAIN[device] if p in built and (p == CPU or gpus > 0)]
    warning = None
    if device not in ("auto", "cpu") and usable[0] != _CHAIN[device][0]:
        why = "no CUDA device" if gpus == 0 else f"this onnxruntime has no {_CHAIN[device][0]}"
        warning = f"--device {device}: {why}; scoring on {_SHORT[usable[0]]}"
    return usable, warning


class OnnxScorer:
    """A detection.Scorer: float32 (N, 1, P, P, P) patches -> N logits, with the model's config attached."""

    def __init__(self, path: Path, *, settings: RuntimeSettings = RuntimeSettings()) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: no such model file")
        # Our own warning says what fell back; onnxruntime's errors for a provider that cannot load (TensorRT
        # without libnvinfer, say) are C++ log lines that would break the one-line error contract.
        ort.set_default_logger_severity(4)
        chain, warning = provider_chain(settings.device, built=built_providers(), gpus=cuda_device_count())
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.threads or available_cores()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # A CPU session first: cheap, and it validates the file and yields the patch size a GPU profile needs.
        self.session = _session(ort, path, options, [CPU])
        self.path = path  # the model file scored with: what a cache of its scores is keyed by (model_digest)
        self.config: ModelConfig = model_config(self.session, source=path)
        failures = None
        if chain[0] != CPU:
            name = self.session.get_inputs()[0].name
            specs = [_provider_options(p, input_name=name, config=self.config, path=path, settings=settings) for p in chain]
            self.session, failures = _gpu_session(ort, path, options, specs, chain=chain, cpu=self.session)
        self.provider = self.session.get_providers()[0]
        if warning is None and self.provider != chain[0] and (settings.device != "auto" or failures):
            warning = f"--device {settings.device}: {chain[0]} failed to start{f' ({failures})' if failures else ''}; scoring on {_SHORT[self.provider]}"
        if warning:
            log.warning(warning)
        self.device = _SHORT[self.provider]
        self._input = self.session.get_inputs()[0].name
        self._output = self.session.get_outputs()[0].name
        self._run = settings.gpu_run
        self._memory = "cuda"  # where the bound buffers live (onnxruntime's device name)
        self._bound: tuple | None = None  # GPU: (binding, device input, device output, padded host input)
        self._gpu_lock = threading.Lock()  # the bound buffers serve one call at a time (a Dask worker's threads share a scorer)

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        patches = np.ascontiguousarray(patches, dtype=np.float32)
        if self.provider == CPU:
            # onnxruntime's CPU provider computes a batch of one by other kernels (logits differ by ~1e-6), so a
            # lone patch is scored as a pair: a patch's score never depends on how many share its batch.
            single = len(patches) == 1
            logits = self.session.run([self._output], {self._input: np.repeat(patches, 2, axis=0) if single else patches})[0]
            return logits[:1] if single else logits
        with self._gpu_lock:
            return self._run_bound(patches)

    def _run_bound(self, patches: np.ndarray) -> np.ndarray:
        """GPU: runs of exactly `gpu_run` patches through device buffers bound once; the last run is padded."""
        if self._bound is None:
            import onnxruntime as ort

            shape = (self._run, *patches.shape[1:])
            binding = self.session.io_binding()
            x = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, self._memory, 0)
            y = ort.OrtValue.ortvalue_from_shape_and_type((self._run,), np.float32, self._memory, 0)
            binding.bind_ortvalue_input(self._input, x)
            binding.bind_ortvalue_output(self._output, y)
            self._bound = (binding, x, y, np.zeros(shape, np.float32))
        binding, x, y, padded = self._bound
        out = np.empty(len(patches), np.float32)
        for start in range(0, len(patches), self._run):
            chunk = patches[start : start + self._run]
            if len(chunk) < self._run:
                padded[: len(chunk)] = chunk
                chunk = padded
            x.update_inplace(chunk)
            self.session.run_with_iobinding(binding)
            out[start : start + self._run] = y.numpy()[: len(out) - start]
        return out


def _gpu_session(ort, path: Path, options, specs: list, *, chain: list[str], cpu) -> tuple[object, str | None]:
    """A session on the first provider of `chain` that starts, with its own options (onnxruntime's own fallback
    drops them), and what failed; `cpu` (the session that already validated the file) where none starts. A GPU
    that fails (out of memory, an engine that cannot be built) is not a bad model file."""
    failures = []
    for i, provider in enumerate(chain):
        if provider == CPU:
            break
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime prints an "EP Error" banner as it falls back
                return ort.InferenceSession(str(path), options, providers=specs[i:]), "; ".join(failures) or None
        except Exception as exc:  # onnxruntime's Fail / EPFail / RuntimeException for a provider that cannot start
            failures.append(f"{_SHORT[provider]}: {_first_line(exc)}")
    return cpu, "; ".join(failures) or None


def _first_line(exc: BaseException) -> str:
    """onnxruntime's message, first line, without the C++ source place and signature it quotes before the reason."""
    if not str(exc).strip():
        return type(exc).__name__
    line = re.sub(r"[\w./-]+\.(?:cc|cpp|h):\d+\s+[\w:~<>]+\([^)]*\)\s*", "", str(exc).strip().splitlines()[0])
    return line[:300]


def _session(ort, path: Path, options, providers: list):
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime prints an "EP Error" banner as it falls back
            return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... for a bad file
        raise ModelError(f"{path}: not a loadable ONNX model ({_first_line(exc)})") from exc


def _provider_options(provider: str, *, input_name: str, config: ModelConfig, path: Path, settings: RuntimeSettings):
    if provider == CUDA:
        return (CUDA, dict(cudnn_conv_algo_search="HEURISTIC"))
    if provider != TENSORRT:
        return provider
    shape = "x".join(map(str, [1] + [config.network.patch] * 3))
    cache = engine_cache(path, root=settings.cache_dir)
    with contextlib.suppress(OSError):  # onnxruntime makes only the last level; where it cannot, TensorRT fails over
        cache.mkdir(parents=True, exist_ok=True)
    return (
        TENSORRT,
        dict(
            trt_fp16_enable=True,
            trt_engine_cache_enable=True,
            trt_engine_cache_path=str(cache),
            trt_timing_cache_enable=True,
            trt_timing_cache_path=str(cache),
            trt_profile_min_shapes=f"{input_name}:1x{shape}",
            trt_profile_opt_shapes=f"{input_name}:{settings.gpu_run}x{shape}",
            trt_profile_max_shapes=f"{input_name}:{settings.gpu_run}x{shape}",
        ),
    )


def engine_cache(path: Path, *, root: Path | None = None) -> Path:
    """The folder for this model's TensorRT engines: one per model *content*, under `root` or the user's cache.

    onnxruntime names a cached engine by the model's file name and its graph's tensor names, not its weights: a model
    retrained and exported to the same file name would load the old engine and score with the old weights. The
    model's own folder is no place either: for the built-in model it is site-packages, often read-only."""
    if root is None:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clarity-fast" / "tensorrt"
    return Path(root) / model_digest(path)[:16]
