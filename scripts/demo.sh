#!/usr/bin/env bash
# The main job: installs what is needed, builds, and generates stories from the real
# stories260K model with the in-process engine, several prompts fused in one batch that
# join at staggered steps.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/models-dir.sh
bash scripts/build.sh -DFLOVER_MODELS_DIR="$FLOVER_MODELS_DIR"
model="$FLOVER_MODELS_DIR/stories260K"
./build/client/flover run --model "$model/stories260K.bin" --tokenizer "$model/tok512.bin" \
  --prompt "Once upon a time" --prompt "Sara and Ben" --prompt "The little dog" --prompt "One day, Lily" \
  --max-tokens 200 --temperature 0.8 --top-p 0.9 --seed 42 --stagger 4 "$@"
