#!/usr/bin/env bash
# Build fqvae with its CUDA kernels, run the GPU tests and the benchmarks on a CUDA machine.
#
# Usage: bash benchmarks/gpu.sh [OUT_DIR] [STAGES]
#   OUT_DIR  logs and JSON (default ./gpu-results); results.json merges every benchmark's JSON
#   STAGES   comma-separated, in order (default: all of them):
#            build, tests, nearest, gumbel, gumbel-compile, permute, discriminator, train-step,
#            train-step-cuda,
#            and, not in the default: resume (the training, resume and fault tests with the GPU
#            visible, so runs start, stop and resume on CUDA), demo (`fqvae demo` on the GPU,
#            seeds DEMO_SEEDS, default 1,2,3, side by side; each seed's JSON lands in OUT_DIR as
#            demo-SEED.json), suite (the whole pytest suite with the GPU visible, so models,
#            trainer and CLI tests run on CUDA),
#            tune-nearest (the tile sweep of benchmarks/tune_nearest.py),
#            ncu-nearest (an Nsight Compute profile of the nearest forward kernels) and study
#            (one shard of studies/shapes3d-gpu.toml, env STUDY_SHARD, default 1/45: one run;
#            the runs live in ./gpu-study so a later call resumes them; metrics, configs and the
#            report are copied to OUT_DIR/study)
# Each stage has its own time limit (seconds, env STAGE_TIMEOUT, default 240) so one slow stage
# (torch.compile of the reference gumbel can compile for minutes) cannot eat the others.
# `build` installs in place (`pip install -e .`, no compile) and then compiles the C++ + CUDA kernels
# into the machine's kernel cache (`fqvae doctor`, which also records the toolchain in OUT_DIR).
# Env: PYTHON (default python3), TEST_WORKERS (pytest-xdist workers for `tests`, default 8).
set -uo pipefail
out="${1:-gpu-results}"
stages="${2:-build,tests,nearest,gumbel,gumbel-compile,permute,discriminator,train-step,train-step-cuda}"
limit="${STAGE_TIMEOUT:-240}"
py="${PYTHON:-python3}"
mkdir -p "$out"
status=0
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

run_stage() {  # name, command...: run with a time limit, log to $out/<name>.log
  local name="$1"
  shift
  local start=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc in $((SECONDS - start)) s" | tee -a "$out/summary.txt"
  tail -30 "$out/$name.log" >>"$out/summary.txt"
  [ "$rc" -eq 0 ] || status=1
}

bench() {  # name, script, args...
  local name="$1" script="$2"
  shift 2
  run_stage "$name" "$py" "benchmarks/$script.py" --device cuda --json "$out/$name.json" "$@"
}

for stage in ${stages//,/ }; do
  if [ "$stage" != build ] && [ ! -f "$out/environment.txt" ]; then
    "$py" - <<'PY' | tee "$out/environment.txt" | tee -a "$out/summary.txt"
import torch, triton, fqvae
print("device:", torch.cuda.get_device_name(), "| torch", torch.__version__, "| triton", triton.__version__)
print("backends on cuda:", fqvae.available_backends("cuda"))
PY
  fi
  case "$stage" in
    build)
      # no build isolation: the machine may be offline, and its own setuptools will do
      run_stage install "$py" -m pip install --no-deps --no-build-isolation -e .
      run_stage build env MAX_JOBS="${MAX_JOBS:-$(nproc)}" FQVAE_REQUIRE_EXT=1 \
        "$py" -m fqvae doctor
      ;;
    tests)
      workers=()
      "$py" -c "import xdist" 2>/dev/null && workers=(-n "${TEST_WORKERS:-8}")
      run_stage tests "$py" -m pytest -q -m gpu -p no:cacheprovider "${workers[@]}" \
        tests/test_backend_parity.py tests/test_triton_backend.py tests/test_cuda_backend.py
      ;;
    resume)
      run_stage resume "$py" -m pytest -q -rf -p no:cacheprovider tests/test_train_resume.py \
        tests/test_faults_train.py tests/test_infowgan.py tests/test_cli_train.py
      ;;
    demo)
      seeds="${DEMO_SEEDS:-1,2,3}"
      run_stage demo bash -c 'for s in ${1//,/ }; do
          "$2" -m fqvae demo --device cuda --seed "$s" --out "gpu-demo/seed-$s" --overwrite \
            --json "$3/demo-$s.json" >"$3/demo-$s.log" 2>&1 &
        done
        rc=0; for job in $(jobs -p); do wait "$job" || rc=1; done
        tail -n 12 "$3"/demo-*.log; exit $rc' _ "$seeds" "$py" "$(realpath "$out")"
      ;;
    suite)
      workers=()
      "$py" -c "import xdist" 2>/dev/null && workers=(-n "${TEST_WORKERS:-8}")
      run_stage suite "$py" -m pytest -v -rf -p no:cacheprovider "${workers[@]}"  # -v: a cut-off log still names each test
      ;;
    nearest) bench nearest quantize --ops nearest --min-time 0.2 --profile ;;
    gumbel) bench gumbel quantize --ops gumbel --min-time 0.2 --profile ;;
    gumbel-compile)
      bench gumbel-compile quantize --ops gumbel --cases b,c --modes fwd+bwd --min-time 0.2 \
        --compile-reference-gumbel \
        --skip "eager reference,plain eager,torch.compile(plain eager),fqvae triton,fqvae cuda"
      ;;
    permute) bench permute permute --min-time 0.2 --profile ;;
    discriminator) bench discriminator discriminator --min-time 0.2 --profile ;;
    tune-nearest) run_stage tune-nearest "$py" benchmarks/tune_nearest.py --json "$out/tune-nearest.json" ;;
    ncu-nearest)  # Nsight Compute: speed of light, occupancy and launch of both nearest kernels, case c
      run_stage ncu-nearest ncu --kernel-name regex:nearest_fwd --launch-count 4 \
        --section SpeedOfLight --section Occupancy --section LaunchStats "$py" -c "
import torch, fqvae
z, cb = torch.randn(2**20, 16, device='cuda'), torch.randn(16, device='cuda')
for name in ('cuda', 'triton'):
    with fqvae.backend(name):
        for _ in range(2):
            fqvae.ops.quantize_nearest(z, cb, 1)
torch.cuda.synchronize()"
      ;;
    study)
      [ -f gpu-study/3dshapes.h5 ] || "$py" -m fqvae data make shapes3d --out gpu-study/3dshapes.h5
      run_stage study "$py" -m fqvae study run studies/shapes3d-gpu.toml --out gpu-study/runs \
        --data-path gpu-study/3dshapes.h5 --shard "${STUDY_SHARD:-1/45}"
      "$py" -m fqvae study report gpu-study/runs --out "$out/study" >>"$out/study.log" 2>&1
      dest="$(realpath "$out")/study" && mkdir -p "$dest"
      (cd gpu-study/runs && find . \( -name metrics.json -o -name config.json -o -name status.json \) \
        -exec cp --parents {} "$dest" \;)
      ;;
    train-step) bench train-step train_step --min-time 1 ;;
    train-step-cuda) bench train-step-cuda train_step --backend cuda --precisions fp32 --min-time 1 ;;
    *)
      echo "unknown stage $stage" >&2
      exit 2
      ;;
  esac
done

"$py" - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
merged = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.name != "results.json"}
(out / "results.json").write_text(json.dumps(merged, indent=2))
print("merged", ", ".join(merged) or "nothing", "into", out / "results.json")
PY
exit $status
