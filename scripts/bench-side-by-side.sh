#!/usr/bin/env bash
# Side by side on one machine and one model file: llama.cpp's own OpenAI server
# (llama-server, continuous batching over parallel slots; built by
# scripts/llama-cpp-build.sh), the llama-cpp-python package's server
# (scripts/llama-cpp-server.sh), and a Flover cluster serving the same GGUF, all
# measured by `flover bench --api openai`; and the Flover cluster over its native
# ZeroMQ API too (`--api native`), so that Flover over HTTP minus Flover over ZeroMQ is
# what the HTTP layer costs per token. Prints a markdown table.
#
#   scripts/bench-side-by-side.sh [--model FILE.gguf] [--tokenizer tok512.bin] [--concurrency "1 4 16 32"]
#       [--output-len 128] [--prompt TEXT | --prompt-len N] [--requests-per-stream 4] [--threads 2]
#       [--targets llama-server,llama-cpp-python,flover-http,flover-native] [--out DIR]
#
# For each concurrency C, every target runs C x requests-per-stream requests arriving
# at once with at most C in flight (--max-concurrency C): C concurrent streams, the same
# prompt text for every target (default "Once upon a time": llama-cpp-python's server
# takes no token-id prompts), or with --prompt-len N random prompts of N token ids (the
# same ids for every target: same seed), exactly --output-len tokens each
# (--ignore-eos), greedy. The Flover cluster is one replica of one CPU worker with
# --threads threads; llama.cpp's servers get the same threads, llama-server as many
# parallel slots as the largest C (each with the context llama-cpp-python's server has).
# JSON of every run and the servers' logs go to --out (default
# bench-results/side-by-side).
#
# Needs a build (scripts/build.sh) whose coordinator serves HTTP (endpoints.http); the
# first run builds llama-server (scripts/llama-cpp-build.sh; $LLAMA_SERVER names one
# already built) and installs llama-cpp-python (scripts/llama-cpp-server.sh): each
# compiles llama.cpp, about half an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/models-dir.sh
model="$FLOVER_MODELS_DIR/stories260K/stories260K.gguf"
tokenizer="$FLOVER_MODELS_DIR/stories260K/tok512.bin"  # Flover's coordinator tokenizes text prompts with it
concurrency="1 4 16 32" output_len=128 prompt_len="" prompt="Once upon a time" per_stream=4 threads=2 vocab=${VOCAB:-512}
targets="llama-server,llama-cpp-python,flover-http,flover-native" out=bench-results/side-by-side
flover=${FLOVER:-$PWD/build/client/flover}
while (($#)); do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --tokenizer) tokenizer=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --output-len) output_len=$2; shift 2 ;;
    --prompt-len) prompt_len=$2; shift 2 ;;
    --prompt) prompt=$2; shift 2 ;;
    --requests-per-stream) per_stream=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "bench-side-by-side: unknown argument $1" >&2; exit 2 ;;
  esac
done
model=$(realpath "$model")
tokenizer=$(realpath "$tokenizer")
mkdir -p "$out"
out=$(realpath "$out")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wants() { [[ ",$targets," == *",$1,"* ]]; }

n_ctx=512  # per sequence, as scripts/llama-cpp-server.sh gives llama-cpp-python's server
if wants llama-server; then
  llama_server=${LLAMA_SERVER:-$(bash scripts/llama-cpp-build.sh)/llama-server}
  slots=$(tr ' ' '\n' <<< "$concurrency" | sort -n | tail -1)
  server_port=$(free_port)
  "$llama_server" --model "$model" --host 127.0.0.1 --port "$server_port" --threads "$threads" \
    --threads-batch "$threads" --parallel "$slots" --ctx-size $((slots * n_ctx)) --cont-batching \
    >"$out/llama-server.log" 2>&1 &
  pids+=($!)
fi
if wants llama-cpp-python; then
  llama_port=$(free_port)
  bash scripts/llama-cpp-server.sh --install-only
  bash scripts/llama-cpp-server.sh --port "$llama_port" --model "$model" --threads "$threads" \
    >"$out/llama-cpp-python.log" 2>&1 &
  pids+=($!)
fi
if wants flover-http || wants flover-native; then
  http_port=$(free_port)
  client_port=$(free_port)
  config="$out/flover.yaml"
  cat >"$config" <<EOF
cluster: {name: side-by-side}
endpoints:
  client: tcp://127.0.0.1:$client_port
  control: tcp://127.0.0.1:*
  plans: tcp://127.0.0.1:*
  http: http://127.0.0.1:$http_port
model: {path: '$model', tokenizer: '$tokenizer'}
parallel: {replicas: 1, tensor: 1}
workers: [{replica: 0, rank: 0, host: 127.0.0.1, device: cpu, threads: $threads}]
kv_cache: {block_size: 16, memory_mib: 256}
scheduler: {policy: fused, max_running: 64}
EOF
  "$flover" up --config "$config" >"$out/flover-up.log" 2>&1 &
  pids+=($!)
  "$flover" status --endpoint "tcp://127.0.0.1:$client_port" --wait-ready 120 >/dev/null
fi

prompt_flags=(--prompt "$prompt")
[ -n "$prompt_len" ] && prompt_flags=(--prompt-len "$prompt_len" --vocab-size "$vocab")
run() {  # run NAME C ARGS...
  local name=$1 c=$2; shift 2
  echo "== $name, $c streams" >&2
  "$flover" bench --label "$name" --requests $((c * per_stream)) --max-concurrency "$c" \
    "${prompt_flags[@]}" --output-len "$output_len" --ignore-eos --ready-timeout 120 \
    --json "$out/$name-c$c.json" "$@" >"$out/$name-c$c.txt" || echo "== $name, $c streams: FAILED (see $out/$name-c$c.txt)" >&2
}
for c in $concurrency; do
  if wants llama-server; then
    run llama-server "$c" --api openai --endpoint "http://127.0.0.1:$server_port"
  fi
  if wants llama-cpp-python; then
    run llama-cpp-python "$c" --api openai --endpoint "http://127.0.0.1:$llama_port"
  fi
  if wants flover-http; then
    run flover-http "$c" --api openai --endpoint "http://127.0.0.1:$http_port"
  fi
  if wants flover-native; then
    run flover-native "$c" --endpoint "tcp://127.0.0.1:$client_port"
  fi
done

python3 - "$out" <<'EOF'
import glob, json, os, sys
rows = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*-c*.json"))):
    for run in json.load(open(path)):
        c = run["workload"]["max_concurrency"]
        rows[(c, run["policy"])] = run
print("| streams | server | done | tokens/request | output tok/s | req/s | TTFT p50 ms | TTFT p99 ms | TPOT ms | ITL p99 ms | e2e p99 s |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (c, name), r in sorted(rows.items()):
    if "error" in r:
        print(f"| {c} | {name} | FAILED: {r['error'][:80]} |||||||||")
        continue
    per_req = r["output_tokens"] / r["completed"] if r["completed"] else 0
    print(f"| {c} | {name} | {r['completed']}/{r['requests_total']} | {per_req:.1f} | {r['output_tokens_per_s']:.1f} | "
          f"{r['request_throughput']:.2f} | {r['ttft_s']['p50']*1e3:.2f} | {r['ttft_s']['p99']*1e3:.2f} | "
          f"{r['tpot_s']['mean']*1e3:.3f} | {r['itl_s']['p99']*1e3:.3f} | {r['e2e_s']['p99']:.3f} |")
http_cost = []
for (c, name), r in sorted(rows.items()):
    native = rows.get((c, "flover-native"))
    if name == "flover-http" and native and "error" not in r and "error" not in native:
        http_cost.append(f"{c} streams: {(r['tpot_s']['mean'] - native['tpot_s']['mean'])*1e3:+.3f} ms/token")
if http_cost:
    print("\nFlover's HTTP layer per output token (TPOT over HTTP minus over ZeroMQ): " + "; ".join(http_cost))
EOF
