#!/usr/bin/env bash
# The whole test suite: installs what is needed, builds, runs every CTest test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/models-dir.sh
echo "test.sh: models from $FLOVER_MODELS_DIR"
bash scripts/build.sh -DFLOVER_MODELS_DIR="$FLOVER_MODELS_DIR"
cd build
ctest --output-on-failure --parallel 2 --timeout 600
