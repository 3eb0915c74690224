#!/usr/bin/env bash
# Regenerates tests/fixtures/tokenizers/ (scripts/reference/tokenizer_fixtures.py) in a
# venv with Hugging Face tokenizers and its helpers at pinned versions
# (build/venv-tokenizers, created on first use). Needs stories260K's tok512.model
# (scripts/models-dir.sh finds it).
# Usage: scripts/reference/tokenizer_fixtures.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/models-dir.sh
venv=build/venv-tokenizers
pins=(tokenizers==0.20.3 transformers==4.46.3 sentencepiece==0.2.0 protobuf==5.28.3)
if ! "$venv/bin/python" -c "import tokenizers, transformers, sentencepiece, google.protobuf" 2>/dev/null; then
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
fi
"$venv/bin/python" scripts/reference/tokenizer_fixtures.py --models-dir "$FLOVER_MODELS_DIR" \
  --out "${1:-tests/fixtures/tokenizers}"
