#!/usr/bin/env bash
# Validates a GPU machine for Flover without network access (docs/cuda.md, "Validating
# a GPU machine without network access"). Run it ON the GPU machine, from the root of a
# copy of the repository holding the ./bundle that scripts/gpu-bundle.sh made on a
# development machine. It runs every CUDA test binary of the bundle, cuda_bench, and a
# coordinator with one CUDA worker (configs/gpu-local.yaml: run.c's greedy text through
# the daemons, then the paper's target workload with flover bench), and writes its
# report to $OUT (default ./gpu-report):
#   gpu.txt         nvidia-smi, and where the CUDA libraries were found
#   summary.txt     one line per test binary (exit status, time, passed/failed/skipped
#                   counts) and the cluster's generated text
#   failures.txt    every test failure with its context
#   bench.txt       cuda_bench's numbers
#   cluster.txt     flover bench on the CUDA worker
#   hf-side-by-side/  Flover against Hugging Face transformers on the same random LLaMA 7B
#                   folder and the paper's workload (scripts/hf-side-by-side.sh; its
#                   comparison.txt holds the result), when GPU_CHECK_HF says so (below)
#   logs.tar.gz     the full logs
# The Hugging Face reference fixtures are read from ./tests/fixtures.
# Exits 0 when every test binary passed and the cluster gave run.c's text. The binaries run on the GPU machine's own glibc
# and C++ runtime with bundle/lib first on the library path; the NVIDIA driver and the
# CUDA libraries in bundle/cuda-libraries (cudart, cuBLAS, NCCL of the CUDA version that
# built the bundle) come from that machine.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-report}
mkdir -p "$out"
b=$PWD/bundle
[ -d "$b/bin" ] || { echo "gpu-check: no $b/bin; make the bundle with scripts/gpu-bundle.sh first" >&2; exit 2; }
# The folder of the cuBLAS the binaries were built against (cudart and NCCL usually lie beside it).
cublas=$(grep -m1 '^libcublas\.so' "$b/cuda-libraries" 2>/dev/null || echo libcublas.so.13)
cuda_dir=$(dirname "$(find / -xdev -name "$cublas*" 2>/dev/null | head -1)")
libs=$b/lib:$cuda_dir:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu
run() { LD_LIBRARY_PATH="$libs" "$@"; }
export FLOVER_MODELS_DIR=$b/models FLOVER_FIXTURES_DIR=$PWD/tests/fixtures OMP_NUM_THREADS=8 FLOVER_TEST_LARGE_MODELS=1
# The paper's workload through the daemons, per scheduling policy (the sequential one
# takes about a minute): GPU_CHECK_POLICIES=fused skips it.
policies=${GPU_CHECK_POLICIES:-fused,sequential}
# Flover against transformers (scripts/hf-side-by-side.sh): GPU_CHECK_HF=1 runs it, 0 skips
# it, `only` runs nothing else; by default it runs when this machine's python3 imports
# numpy, torch and transformers and torch sees a GPU. It writes a random LLaMA 7B folder
# (13.5 GB) to $GPU_CHECK_HF_MODEL_DIR (default /tmp/flover-hf-llama-7b-seed0, kept for the
# next run) and must finish within GPU_CHECK_HF_BUDGET seconds (default 900). A failure of
# its Flover half fails the check; of its transformers half, only the report says so.
# GPU_CHECK_HF_ARGS adds arguments of scripts/hf-side-by-side.sh (e.g. "--arrivals poisson").
hf=${GPU_CHECK_HF:-auto}
if [ "$hf" = auto ]; then
  if python3 -c 'import numpy, torch, transformers, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    hf=1
  else
    hf=0
  fi
fi
logs=$(mktemp -d)
(nvidia-smi; echo "cuda libraries: $cuda_dir") > "$out/gpu.txt" 2>&1
hf_side_by_side() {
  # shellcheck disable=SC2086  # GPU_CHECK_HF_ARGS: arguments, split
  FLOVER=$b/bin/flover FLOVER_LD_LIBRARY_PATH=$libs PYTHON=python3 timeout "${GPU_CHECK_HF_BUDGET:-900}" \
    bash scripts/hf-side-by-side.sh --device cuda --shape llama-7b \
    --model-dir "${GPU_CHECK_HF_MODEL_DIR:-/tmp/flover-hf-llama-7b-seed0}" --out "$out/hf-side-by-side" \
    ${GPU_CHECK_HF_ARGS:-} > "$logs/hf-side-by-side.log" 2>&1
  local rc=$?
  echo "hf side by side rc=$rc: $(sed -n 's/^summary: //p' "$out/hf-side-by-side/comparison.txt" 2>/dev/null)" |
    tee -a "$out/summary.txt"
  cat "$out/hf-side-by-side/comparison.txt" 2>/dev/null
  grep -q '^hf-side-by-side: flover (.*): rc=0 ' "$out/hf-side-by-side/steps.txt" 2>/dev/null
}
if [ "$hf" = only ]; then
  hf_side_by_side
  rc=$?
  tar -czf "$out/logs.tar.gz" -C "$logs" .
  exit $rc
fi
for t in "$b"/bin/*_test; do
  name=$(basename "$t")
  start=$(date +%s%N)
  timeout 120 bash -c "$(declare -f run); b=$b libs=$libs run $t" > "$logs/$name.log" 2>&1
  rc=$?
  printf '%s: rc=%d %d ms %s\n' "$name" $rc $(( ($(date +%s%N) - start) / 1000000 )) \
    "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) *\] [0-9]+ tests?' "$logs/$name.log" | tr '\n' ' ')"
  grep -B3 -A12 -E 'Failure|FAILED  \]|error:' "$logs/$name.log" | head -200 | sed "s|^|$name: |" >> "$out/failures.txt"
done | tee "$out/summary.txt"
status=0
grep -q "rc=[1-9]" "$out/summary.txt" && status=1
if [ -x "$b/bin/cuda_bench" ]; then
  timeout 180 bash -c "$(declare -f run); b=$b libs=$libs run $b/bin/cuda_bench" 2>&1 | tee "$out/bench.txt"
fi
# The whole system on the GPU: a coordinator and a CUDA worker (configs/gpu-local.yaml).
# stories260K in fp32 must give run.c's greedy tokens for "Sara" (README); then the
# paper's target workload on dummy:llama-7b fp16, fused vs sequential.
if [ -x "$b/bin/flover" ]; then
  FLOVER_DTYPE=fp32 timeout 120 bash -c "$(declare -f run); b=$b libs=$libs run $b/bin/flover up --config configs/gpu-local.yaml --exec '$b/bin/flover generate --prompt Sara --max-tokens 61 --json'" > "$logs/cluster-generate.log" 2>&1
  echo "cluster generate rc=$?: $(grep -o '"text":"[^"]*"' "$logs/cluster-generate.log" | head -1)" | tee -a "$out/summary.txt"
  grep -q 'cluster generate rc=0: "text":" and Ben were playing in the park\.' "$out/summary.txt" || status=1
  # One request alone first, with 1, 2 and 4 plans in flight: its TPOT against the
  # workers' own step time ("step ms") and their wait for the next plan ("wait ms")
  # splits the per-token cost into compute and coordination.
  : > "$out/cluster.txt"
  for depth in 1 2 4; do
    echo "scheduler.pipeline_depth $depth:" | tee -a "$out/cluster.txt"
    FLOVER_PIPELINE_DEPTH=$depth timeout 60 bash -c "$(declare -f run); b=$b libs=$libs run $b/bin/flover bench --config configs/gpu-local.yaml --model dummy:llama-7b --policies fused --requests 1 --output-len 128 --ignore-eos --timeout 50" 2>&1 | tr '\r' '\n' | grep -v '^flover bench \[' | tee -a "$out/cluster.txt"
  done
  timeout 240 bash -c "$(declare -f run); b=$b libs=$libs run $b/bin/flover bench --config configs/gpu-local.yaml --model dummy:llama-7b --policies $policies --requests 32 --interval-ms 20 --output-len 256 --ignore-eos --timeout 200 --json $logs/paper-target.json" 2>&1 | tr '\r' '\n' | grep -v '^flover bench \[' | tee -a "$out/cluster.txt"
fi
if [ "$hf" = 1 ]; then
  hf_side_by_side || status=1
fi
tar -czf "$out/logs.tar.gz" -C "$logs" .
exit $status
