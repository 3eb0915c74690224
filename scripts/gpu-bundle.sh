#!/usr/bin/env bash
# Builds the CUDA backend on a development machine (nvcc needed, no GPU) and packs into
# ./bundle (git-ignored) what validating a GPU machine that has no network access needs
# (docs/cuda.md, "Validating a GPU machine without network access"):
#   bundle/bin     the CUDA test and benchmark binaries, the daemons and the CLI (for a
#                  cluster with a CUDA worker)
#   bundle/lib     every shared library they need (ZeroMQ, protobuf, yaml-cpp, spdlog,
#                  fmt, Gloo, OpenBLAS, GoogleTest, libgomp ...) except two kinds that
#                  the GPU machine provides: CUDA's own (libcudart, cuBLAS, NCCL, the
#                  driver) and the C/C++ runtime (glibc, libstdc++, libgcc_s), which
#                  its CUDA libraries were built against
#   bundle/models  stories260K, from $FLOVER_MODELS_DIR (see scripts/models-dir.sh)
#   bundle/cuda-libraries  the CUDA libraries the binaries need, by soname
# Copy the repository with bundle/ in it to the GPU machine and run scripts/gpu-check.sh
# there. Its side by side with Hugging Face transformers (scripts/hf-side-by-side.sh)
# needs no more from here than scripts/ (with scripts/reference/) and bundle/bin/flover:
# it writes its model on the GPU machine and runs that machine's python3 (numpy, torch,
# transformers). Usage: scripts/gpu-bundle.sh [build-dir]   (default build-gpu)
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
# Libraries resolved here, minus CUDA's own and the C/C++ runtime (the GPU machine's).
skip='libcuda\.so|libcudart|libcublas|libnccl|libnvidia|libnvrtc|/libc\.so|/libm\.so|libpthread|libdl\.so|librt\.so|libresolv|ld-linux|libstdc\+\+|libgcc_s'
for b in bundle/bin/*; do ldd "$b"; done | awk '/=> \// {print $3}' | sort -u |
  grep -Ev "$skip" | while read -r lib; do cp -L "$lib" bundle/lib/; done
for b in bundle/bin/*; do ldd "$b"; done | grep -oE 'lib(cudart|cublas|cublasLt|nccl)\.so\.[0-9]+' | sort -u \
  > bundle/cuda-libraries
cp -r "$FLOVER_MODELS_DIR/stories260K" bundle/models/
echo "bundle: $(ls bundle/bin | wc -l) binaries, $(ls bundle/lib | wc -l) libraries, $(du -sh bundle | cut -f1)"
