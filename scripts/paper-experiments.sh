#!/usr/bin/env bash
# Reproduces the shape of the Flover paper's experiments on the local CPU cluster
# (configs/local.yaml: 1 replica x TP 2) with dummy:stories15m weights, under the four
# scheduling policies, with `flover bench`. Results (JSON + PNG) go to $OUT
# (default ./bench-results). Usage: scripts/paper-experiments.sh [target|fig4|fig8|fig9|all]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/models-dir.sh
flover=${FLOVER:-./build/client/flover}  # FLOVER=path: a snapshot, so rebuilding build/ cannot change a run
out=${OUT:-bench-results}
mkdir -p "$out"
model=${MODEL:-dummy:stories15m}
policies=${POLICIES:-fused,dynamic,instances,sequential}
bench() {  # bench NAME ARGS...
  local name=$1; shift
  echo "== $name: $*" >&2
  "$flover" bench --config configs/local.yaml --model "$model" --policies "$policies" --ignore-eos \
    --json "$out/$name.json" --plot "$out/$name.png" --timeout 600 "$@" | tee "$out/$name.txt"
}
what=${1:-target}
if [[ $what == target || $what == all ]]; then
  bench target --requests 32 --interval-ms 20 --output-len 256
fi
if [[ $what == fig4 || $what == all ]]; then
  for n in 1 2 4 8 16 32; do bench "fig4-n$n" --requests "$n" --interval-ms 20 --output-len "${FIG4_LEN:-512}"; done
fi
if [[ $what == fig8 || $what == all ]]; then
  for ms in 20 100 500 1000 2000 5000; do bench "fig8-mean$ms" --requests 32 --mean-interval-ms "$ms" --output-len 256; done
fi
if [[ $what == fig9 || $what == all ]]; then
  for u in 256 384 512 768; do bench "fig9-u$u" --requests 32 --interval-ms 20 --output-len "128:$u"; done
fi
