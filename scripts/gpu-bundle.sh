#!/usr/bin/env bash
# Builds the CUDA backend here (no GPU needed) and packs what the GPU machine needs into
# ./bundle (git-ignored), for the device tool's `carry`:
#   bundle/bin     the CUDA test and benchmark binaries, and the daemons and CLI (a
#                  cluster with a CUDA worker)
#   bundle/lib     every shared library they need except the CUDA ones (libcudart,
#                  cuBLAS, NCCL, the driver) and the C/C++ runtime (glibc, libstdc++,
#                  libgcc_s: the GPU machine's are newer, and its NCCL needs its own
#                  glibc): ZeroMQ, protobuf, yaml-cpp, spdlog, fmt, Gloo, OpenBLAS,
#                  GoogleTest, libgomp ...
#   bundle/models  stories260K (the ../shared beside the checkout does not travel)
# Then scripts/gpu-check.sh runs there. Usage: scripts/gpu-bundle.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/models-dir.sh
build=${1:-build-gpu}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLOVER_CUDA=ON >/dev/null
targets="$(cd "$build" && ninja -t targets all | sed -n 's/^\(cuda_[a-z_]*_test\|comm_nccl_test\|cuda_bench\): .*/\1/p' | sort -u)
flover flover-coordinator flover-worker"
# shellcheck disable=SC2086
cmake --build "$build" --parallel "$(nproc)" --target $targets
rm -rf bundle && mkdir -p bundle/bin bundle/lib bundle/models
for t in $targets; do find "$build" -name "$t" -type f -perm -u+x -exec cp {} bundle/bin/ \;; done
# Libraries resolved here, minus CUDA's own (the GPU machine has CUDA 13 and its driver)
# and the C/C++ runtime.
skip='libcuda\.so|libcudart|libcublas|libnccl|libnvidia|libnvrtc|/libc\.so|/libm\.so|libpthread|libdl\.so|librt\.so|libresolv|ld-linux|libstdc\+\+|libgcc_s'
for b in bundle/bin/*; do ldd "$b"; done | awk '/=> \// {print $3}' | sort -u |
  grep -Ev "$skip" | while read -r lib; do cp -L "$lib" bundle/lib/; done
cp -r "$FLOVER_MODELS_DIR/stories260K" bundle/models/
echo "bundle: $(ls bundle/bin | wc -l) binaries, $(ls bundle/lib | wc -l) libraries, $(du -sh bundle | cut -f1)"
