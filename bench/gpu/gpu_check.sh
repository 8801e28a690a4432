#!/usr/bin/env bash
# The checks that need a GPU, on a fresh lent GPU machine, in one command of at most ~8 minutes:
#   1. the GPU tests (bench/gpu/gpu_tests.py): a bundle vs its members alone on CUDA, a resume on CUDA,
#      whole sweeps through Ray with fractional GPUs (unfused) and whole GPUs (fused);
#   2. side by side on the same card (bench/bench_gpu.py): (a) the blog's loop, (b) one unfused trial,
#      (c) the default study unfused at 0.25 GPU per trial, (d) the default study fused, eager steps,
#      (e) the same with CUDA graphs (SWEEP_CUDA_GRAPHS=1): images/s, wall time, peak GPU memory;
#   3. (f) sweeps-full.yaml (200 epochs) fused with CUDA graphs, with its report, if (e)'s rate says it
#      fits before the deadline (else its predicted time is printed).
# Run from the repository root, with .whl/ carried (bench/gpu/gpu_setup.sh says what travels):
#   bash bench/gpu/gpu_check.sh            # GPU_CHECK_SECONDS=480 by default
# Logs and figures go to $OUT (the device tool's folder) or /tmp/gpu_check.
set -uo pipefail
cd "$(dirname "$0")/../.."
began=$(date +%s)
logs=${OUT:-/tmp/gpu_check}
mkdir -p "$logs"
source bench/gpu/gpu_setup.sh || exit 1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

echo "== 1. GPU tests"
python3 -m pytest -q -p no:cacheprovider bench/gpu/gpu_tests.py 2>&1 | tee "$logs/gpu_tests.log"
tests=${PIPESTATUS[0]}

echo "== 2-3. figures"
deadline=$(( began + ${GPU_CHECK_SECONDS:-480} - 20 ))
python3 bench/bench_gpu.py --deadline "$deadline" --out /tmp/gpu_bench 2>&1 | tee "$logs/bench_gpu.log"
bench=${PIPESTATUS[0]}
echo "gpu_check: tests exit $tests, bench exit $bench, $(( $(date +%s) - began ))s"
[ "$tests" = 0 ] && [ "$bench" = 0 ]
