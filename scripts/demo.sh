#!/usr/bin/env bash
# The main job: installs what is needed, builds, starts the local cluster of
# configs/local.yaml (a coordinator and two tensor-parallel CPU workers serving the real
# stories260K model over ZeroMQ, collectives through shared memory), streams one story while three more prompts run
# fused in the same steps, prints the cluster status, and stops everything cleanly.
# Extra arguments go to `flover up` (e.g. --config configs/local-replicas.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/models-dir.sh
bash scripts/build.sh -DFLOVER_MODELS_DIR="$FLOVER_MODELS_DIR"
flover="$PWD/build/client/flover"
demo="$flover generate --stream --max-tokens 200 --temperature 0.8 --top-p 0.9 --seed 7 --prompt 'Once upon a time' &
$flover generate --max-tokens 120 --temperature 0.8 --top-p 0.9 --seed 42 \
  --prompt 'Sara and Ben' --prompt 'The little dog' --prompt 'One day, Lily' > /tmp/flover-demo-batch.txt &
wait; echo; echo '--- three more stories, fused in the same steps:'; cat /tmp/flover-demo-batch.txt
echo; $flover status"
exec "$flover" up --config configs/local.yaml --exec "$demo" "$@"
