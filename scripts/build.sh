#!/usr/bin/env bash
# Configures and builds Flover into ./build (Release). Extra arguments go to CMake,
# e.g. scripts/build.sh -DFLOVER_CUDA=OFF. Uses Ninja when available.
set -euo pipefail
cd "$(dirname "$0")/.."
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
elif [ $# -gt 0 ]; then
  cmake -S . -B build "$@"
fi
cmake --build build --parallel "$(nproc)"
