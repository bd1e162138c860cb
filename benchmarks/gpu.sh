#!/usr/bin/env bash
# Build fqvae with its CUDA kernels, run the GPU tests and every benchmark on a CUDA machine.
# Usage: bash benchmarks/gpu.sh [OUT_DIR]   (logs and JSON go to OUT_DIR, default ./gpu-results)
# Set BENCH=0 to skip the benchmarks, TESTS=0 to skip the tests.
set -uo pipefail
out="${1:-gpu-results}"
mkdir -p "$out"
status=0

echo "== build" | tee "$out/summary.txt"
start=$SECONDS
if ! MAX_JOBS="${MAX_JOBS:-$(nproc)}" FQVAE_REQUIRE_EXT=1 \
    python -m pip install --no-build-isolation --no-deps -e . >"$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  exit 1
fi
echo "built in $((SECONDS - start)) s" | tee -a "$out/summary.txt"
python - <<'PY' | tee -a "$out/summary.txt"
import torch, triton, fqvae
print("device:", torch.cuda.get_device_name(), "| torch", torch.__version__, "| triton", triton.__version__)
print("backends on cuda:", fqvae.available_backends("cuda"))
PY

if [ "${TESTS:-1}" = 1 ]; then
  echo "== gpu tests" | tee -a "$out/summary.txt"
  python -m pytest -q -m gpu -p no:cacheprovider tests >"$out/gpu-tests.log" 2>&1 || status=1
  tail -5 "$out/gpu-tests.log" | tee -a "$out/summary.txt"
fi

if [ "${BENCH:-1}" = 1 ]; then
  echo "== benchmarks" | tee -a "$out/summary.txt"
  for bench in quantize permute train_step; do
    [ -f "benchmarks/$bench.py" ] || continue
    python "benchmarks/$bench.py" --device cuda --json "$out/$bench.json" >"$out/$bench.log" 2>&1 || status=1
    tail -40 "$out/$bench.log" >>"$out/summary.txt"
  done
fi
exit $status
