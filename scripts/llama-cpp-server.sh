#!/usr/bin/env bash
# llama.cpp's OpenAI-compatible server (the llama-cpp-python package's), to compare
# Flover with on the same GGUF file (`flover bench --api openai`, docs/benchmarks.md).
#
#   scripts/llama-cpp-server.sh [--install-only] [--port P] [--model FILE.gguf] [--n-ctx N] [--threads T]
#
# The first run creates a virtual environment ($LLAMA_CPP_VENV, default
# build/llama-cpp-venv, never tracked) and installs 'llama-cpp-python[server]' from PyPI
# there, which compiles llama.cpp (about half an hour on 2 cores: niced, at most
# $CMAKE_BUILD_PARALLEL_LEVEL make jobs, 2 by default). Then it serves the model (default
# stories260K.gguf from $FLOVER_MODELS_DIR) on 127.0.0.1:P (default 8080) in the
# foreground until Ctrl-C/SIGTERM; --install-only stops after the install.
set -euo pipefail
cd "$(dirname "$0")/.."
install_only=0 port=8080 model="" n_ctx=512 threads=2
while (($#)); do
  case "$1" in
    --install-only) install_only=1; shift ;;
    --port) port=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --n-ctx) n_ctx=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "llama-cpp-server: unknown argument $1" >&2; exit 2 ;;
  esac
done
venv="${LLAMA_CPP_VENV:-$PWD/build/llama-cpp-venv}"
if ! "$venv/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
  echo "llama-cpp-server: installing llama-cpp-python[server] into $venv (compiles llama.cpp)" >&2
  python3 -m venv "$venv"
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    nice -n 10 "$venv/bin/pip" install --no-cache-dir 'llama-cpp-python[server]'
fi
((install_only)) && exit 0
if [ -z "$model" ]; then
  source scripts/models-dir.sh
  model="$FLOVER_MODELS_DIR/stories260K/stories260K.gguf"
fi
# The server runs one completion at a time, the others wait; by default it would end a
# running stream (with [DONE], no finish reason) as soon as another request waits:
# --interrupt_requests False lets every completion run to its end.
exec "$venv/bin/python" -m llama_cpp.server --model "$model" --n_ctx "$n_ctx" --n_threads "$threads" \
  --interrupt_requests False --host 127.0.0.1 --port "$port"
