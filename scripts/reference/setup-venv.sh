#!/usr/bin/env bash
# Creates the Python environment of scripts/reference/model_fixtures.py: a venv on
# Debian's python3 that also sees Debian's torch 1.13 (python3-torch), numpy 1.24 and
# protobuf, plus Hugging Face transformers and its helpers from PyPI at pinned versions.
# With --gguf it also fetches the llama.cpp source that PyPI's llama-cpp-python source
# distribution vendors (convert_hf_to_gguf.py and its gguf-py), unpacked under
# build/llama-cpp-src; nothing of it is installed.
#
#   scripts/reference/setup-venv.sh [--gguf] [DIR]     (default DIR: build/venv)
#
# Run as root (apt-get). Idempotent. Note: scripts/python-env.sh also uses build/venv
# and recreates it when `openai` is missing from it; run that one first if both are
# wanted in the same venv (this script only adds packages).
set -euo pipefail
cd "$(dirname "$0")/../.."
gguf=0
if [ "${1:-}" = --gguf ]; then gguf=1; shift; fi
venv=${1:-build/venv}
llama_cpp_python=0.3.36

if ! /usr/bin/python3 -c 'import torch, numpy, google.protobuf, yaml, requests' 2>/dev/null; then
  debian_packages=(python3-torch python3-numpy python3-protobuf python3-yaml python3-requests)
  export DEBIAN_FRONTEND=noninteractive
  # On a machine whose package lists are missing or old, the first try fails: read them.
  apt-get install -y -q "${debian_packages[@]}" ||
    { apt-get update -qq && apt-get install -y -q "${debian_packages[@]}"; }
fi
[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
# numpy and protobuf come from Debian (torch 1.13 is built against numpy 1.x); the pins
# below keep pip from replacing them.
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  numpy==1.24.2 protobuf==4.21.12 \
  transformers==4.44.2 tokenizers==0.19.1 huggingface-hub==0.36.2 safetensors==0.8.0 \
  sentencepiece==0.2.0 \
  filelock==4.3.2 fsspec==2026.9.0 hf-xet==1.8.0 packaging==26.4 regex==2026.11.19 \
  tqdm==4.70.1
echo "setup-venv: $venv ready"

if [ "$gguf" = 1 ]; then
  src=build/llama-cpp-src
  if [ ! -f "$src/llama_cpp_python-$llama_cpp_python/vendor/llama.cpp/convert_hf_to_gguf.py" ]; then
    mkdir -p "$src"
    "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
      -d "$src" "llama-cpp-python==$llama_cpp_python"
    tar -xzf "$src/llama_cpp_python-$llama_cpp_python.tar.gz" -C "$src"
  fi
  echo "setup-venv: llama.cpp source in $src/llama_cpp_python-$llama_cpp_python/vendor/llama.cpp"
fi
