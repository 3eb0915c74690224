#!/usr/bin/env bash
# The main job: installs what is needed, builds, starts the local cluster of
# configs/local.yaml (a coordinator and two tensor-parallel CPU workers serving the real
# stories260K model over ZeroMQ, collectives through shared memory), streams one story while three more prompts run
# fused in the same steps, then asks the OpenAI-compatible HTTP API (http://127.0.0.1:8000)
# with curl and with the `openai` Python package (from PyPI, in build/venv), prints the
# cluster status, and stops everything cleanly.
# Extra arguments go to `flover up` (e.g. --config configs/local-replicas.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/models-dir.sh
bash scripts/build.sh -DFLOVER_MODELS_DIR="$FLOVER_MODELS_DIR"
bash scripts/python-env.sh build/venv
flover="$PWD/build/client/flover"
demo="$flover generate --stream --max-tokens 200 --temperature 0.8 --top-p 0.9 --seed 7 --prompt 'Once upon a time' &
$flover generate --max-tokens 120 --temperature 0.8 --top-p 0.9 --seed 42 \
  --prompt 'Sara and Ben' --prompt 'The little dog' --prompt 'One day, Lily' > /tmp/flover-demo-batch.txt &
wait; echo; echo '--- three more stories, fused in the same steps:'; cat /tmp/flover-demo-batch.txt
echo; echo '--- the same cluster over OpenAI-compatible HTTP: curl \$FLOVER_HTTP_ENDPOINT/v1/completions'
curl -sS \$FLOVER_HTTP_ENDPOINT/v1/completions -H 'Content-Type: application/json' \\
  -d '{\"model\": \"stories260K\", \"prompt\": \"Once upon a time\", \"max_tokens\": 40, \"temperature\": 0}'
echo; echo '--- and the openai Python package (scripts/openai-demo.py), streaming a chat completion:'
build/venv/bin/python scripts/openai-demo.py
echo; $flover status"
exec "$flover" up --config configs/local.yaml --exec "$demo" "$@"
