#!/usr/bin/env bash
# Every GPU check in one go, for a GPU machine that is lent briefly: the GPU tests, patch scoring through
# onnxruntime's CUDA path against PyTorch and the CPU, end-to-end detect on the GPU against the CPU of the
# same machine in the same run, and how the CPU stages (prefilter, gathering) scale with the machine's cores.
# Results land in benchmarks/results/*_gpu.* and are copied, with a log, to OUTDIR.
#
# Usage: [CELLFINDER_PYTHON=/path/to/python-with-cellfinder] bash benchmarks/gpu_session.sh OUTDIR
# Needs: python3 with this package's dependencies (run from the repository root) and onnxruntime-gpu whose CUDA
# major version matches the CUDA/cuDNN libraries of pip's nvidia-* wheels (onnxruntime-gpu 1.31: CUDA 13).
# With CELLFINDER_PYTHON, cellfinder's detection stage runs on the same volume with its filters on CPU and GPU.
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_session.sh OUTDIR}
mkdir -p "$out"
log=$out/session.log
export PYTHONPATH=$PWD:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# onnxruntime's CUDA provider finds CUDA and cuDNN on the library path; pip installs them under site-packages/nvidia.
nvidia_libs=$(python3 - <<'EOF'
import glob, os, site
found = {os.path.dirname(p) for sp in site.getsitepackages() for p in glob.glob(os.path.join(sp, "nvidia", "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(found)))
EOF
)
export LD_LIBRARY_PATH=$nvidia_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

step() { echo "== $* ($(date -u +%T))" | tee -a "$log"; }
step machine
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee -a "$log"
python3 -c "
import numba, numpy, onnxruntime as ort, torch
print('python packages: onnxruntime', ort.__version__, ort.get_available_providers(), '| torch', torch.__version__,
      torch.cuda.is_available(), '| numba', numba.__version__, '| numpy', numpy.__version__)
" 2>&1 | tee -a "$log"
step tests
python3 -m pytest -q -p no:cacheprovider tests/test_export.py tests/test_detect.py 2>&1 | tail -n 15 | tee -a "$log"
step scoring_speed
python3 benchmarks/scoring_speed.py --batches 256,1024,4096,16384 --seconds 2 2>&1 | tee -a "$log"
step cuda_options
python3 benchmarks/cuda_options.py 2>&1 | tee -a "$log"
step detect_speed
python3 benchmarks/detect_speed.py --devices cuda,cpu --tile 32,540,540 \
  --cellfinder "${CELLFINDER_PYTHON:-none}" --cellfinder-devices cpu,cuda --cellfinder-base-only 2>&1 | tee -a "$log"
step cpu_scaling
python3 benchmarks/cpu_scaling.py --tile 32,540,540 --name cpu_scaling_gpu 2>&1 | tee -a "$log"
step done
cp benchmarks/results/*_gpu.json benchmarks/results/*_gpu.md benchmarks/results/cuda_options.* "$out"/ 2>/dev/null
ls "$out"
