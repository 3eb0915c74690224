#!/usr/bin/env bash
# The GPU check of issue #5, run ON the GPU machine (device tool) from the repository
# root, over ./bundle made here by scripts/gpu-bundle.sh. Writes its report under $OUT
# (or ./gpu-report): gpu.txt (nvidia-smi), summary.txt (one line per test binary),
# failures.txt (every failure with context), bench.txt (cuda_bench), logs.tar.gz (the
# full logs). Few files: the device tool returns at most 8.
# Must finish in under 5 minutes. The binaries run on the GPU machine's own glibc and
# C++ runtime (newer than Debian 12's) with bundle/lib first on the library path; CUDA,
# cuBLAS, NCCL and the driver come from that machine.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-report}
mkdir -p "$out"
b=$PWD/bundle
cuda_dir=$(dirname "$(find / -xdev -name 'libcublas.so.13*' 2>/dev/null | head -1)")
libs=$b/lib:$cuda_dir:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu
run() { LD_LIBRARY_PATH="$libs" "$@"; }
export FLOVER_MODELS_DIR=$b/models OMP_NUM_THREADS=8 FLOVER_TEST_LARGE_MODELS=1
logs=$(mktemp -d)
(nvidia-smi; echo "cuda libraries: $cuda_dir") > "$out/gpu.txt" 2>&1
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
tar -czf "$out/logs.tar.gz" -C "$logs" .
exit $status
