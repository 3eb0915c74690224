#!/usr/bin/env bash
# Builds llama.cpp's own C++ tools, to compare Flover with on the same GGUF file:
# llama-server (its OpenAI-compatible server, continuous batching over parallel slots),
# llama-batched-bench and llama-quantize (to write each GGUF type from one F32 file).
# The sources are the llama.cpp that PyPI's llama-cpp-python source distribution
# carries (pinned below), fetched with pip into a throwaway venv; nothing is tracked
# by Git.
#
#   scripts/llama-cpp-build.sh [DIR]     (default: build/llama.cpp)
#
# Leaves llama-server, llama-batched-bench and llama-quantize in DIR/bin, and prints that folder.
# CPU only, for this machine's instruction set (GGML_NATIVE) unless $LLAMA_CPP_CMAKE_ARGS
# says otherwise (e.g. "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
# for an AVX2-only build on an AVX-512 machine), static. On a CPU with AMX, GGML_NATIVE
# also builds llama.cpp's AMX kernels; on one VM (whose kernel's arch_prctl did not list
# AMX tile data as supported) they crashed (SIGSEGV in ggml_backend_amx_mul_mat, on Q8_0
# files): there build without them, with
#   LLAMA_CPP_CMAKE_ARGS="-DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8"
# About 12 to 25 minutes on 2 cores (niced, $CMAKE_BUILD_PARALLEL_LEVEL jobs, 2 by
# default). Idempotent: a finished build is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(realpath -m "${1:-build/llama.cpp}")
version=0.3.36  # llama-cpp-python; its vendor/llama.cpp is what gets built
tools=(llama-server llama-batched-bench llama-quantize)

all_built() {
  for t in "${tools[@]}"; do [ -x "$dir/bin/$t" ] || return 1; done
}
if all_built; then
  echo "$dir/bin"
  exit 0
fi
mkdir -p "$dir"
src=$dir/llama_cpp_python-$version/vendor/llama.cpp
if [ ! -f "$src/CMakeLists.txt" ]; then
  echo "llama-cpp-build: fetching llama-cpp-python $version's source distribution from PyPI" >&2
  [ -x "$dir/venv/bin/pip" ] || /usr/bin/python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    -d "$dir" "llama-cpp-python==$version"
  tar -xzf "$dir/llama_cpp_python-$version.tar.gz" -C "$dir"
fi
echo "llama-cpp-build: building ${tools[*]} in $dir/build" >&2
cmake -S "$src" -B "$dir/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  ${LLAMA_CPP_CMAKE_ARGS:-} > "$dir/cmake.log"
nice -n 10 cmake --build "$dir/build" --parallel "${CMAKE_BUILD_PARALLEL_LEVEL:-2}" --target "${tools[@]}" >&2
mkdir -p "$dir/bin"
for t in "${tools[@]}"; do cp "$dir/build/bin/$t" "$dir/bin/"; done
echo "$dir/bin"
