#!/usr/bin/env bash
# Flover against Hugging Face transformers on the same weights and the same workload
# (docs/benchmarks.md, "Side by side with transformers on a GPU"):
#  1. writes a random LLaMA as a Hugging Face folder (scripts/reference/random_llama_hf.py;
#     --shape llama-7b: 13.5 GB in fp16, outside --out, kept for the next run);
#  2. Flover: a coordinator and one worker (--device) serving that folder (`flover up`),
#     every request's greedy tokens (`flover generate`), then `flover bench` on the
#     workload under each arrival process;
#  3. transformers: scripts/reference/hf_serving_bench.py on the same folder and workload
#     (static batching with model.generate, greedy);
#  4. compares: Flover tokens/s over transformers tokens/s, latency percentiles side by
#     side, and whether both engines generated the same greedy tokens.
# The workload is the paper's by default: 32 requests, Poisson arrivals with a mean gap of
# 20 ms and fixed 20 ms gaps, random 8-token prompts (seed 0), exactly 256 output tokens
# (--ignore-eos), at most 32 in flight. Both engines compute in fp16 on a GPU and in fp32
# on the CPU (the folder is stored in fp16 either way, so both see the same values).
#
#   scripts/hf-side-by-side.sh [--device cuda|cuda:N|cpu] [--shape llama-7b|tiny] [--dtype fp16|bf16|fp32]
#       [--requests 32] [--output-len 256] [--prompt-len 8] [--interval-ms 20] [--arrivals poisson,fixed]
#       [--max-concurrency 32] [--seed 0] [--threads 1] [--model-dir DIR] [--out DIR]
#
# On a CPU, for tests: --device cpu --shape tiny --requests 4 --output-len 16.
# Writes into --out (default $OUT, else hf-side-by-side): flover.yaml, flover-greedy.json
# (flover generate), flover-ARRIVAL.json/.txt (flover bench), transformers-ARRIVAL.json/.txt
# (hf_serving_bench.py), comparison.txt and comparison.json, and the logs.
# Environment: PYTHON (default python3; needs numpy, torch, transformers), FLOVER (the
# flover CLI; default bundle/bin/flover, else build/client/flover; it finds its daemons
# beside it or in the build tree), FLOVER_LD_LIBRARY_PATH (the library path of the
# Flover processes only, so Python's torch keeps its own CUDA libraries).
# Exit status: 0 when every step ran and both engines completed every request, 1 if not.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
repo=$PWD
device=cuda shape=llama-7b dtype="" requests=32 output_len=256 prompt_len=8 interval_ms=20
arrivals=poisson,fixed max_concurrency=32 seed=0 threads=1 model_dir="" out=${OUT:-hf-side-by-side}
while (($#)); do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --shape) shape=$2; shift 2 ;;
    --dtype) dtype=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --output-len) output_len=$2; shift 2 ;;
    --prompt-len) prompt_len=$2; shift 2 ;;
    --interval-ms) interval_ms=$2; shift 2 ;;
    --arrivals) arrivals=$2; shift 2 ;;
    --max-concurrency) max_concurrency=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --model-dir) model_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "hf-side-by-side: unknown argument $1" >&2; exit 2 ;;
  esac
done
py=${PYTHON:-python3}
flover=${FLOVER:-}
if [ -z "$flover" ]; then
  for f in bundle/bin/flover build/client/flover; do [ -x "$f" ] && { flover=$repo/$f; break; }; done
fi
[ -x "$flover" ] || { echo "hf-side-by-side: no flover CLI (set FLOVER, or build it: scripts/build.sh)" >&2; exit 2; }
case "$device" in
  cpu) worker_device=cpu hf_device=cpu default_dtype=fp32 ;;
  cuda) worker_device=cuda:0 hf_device=cuda default_dtype=fp16 ;;
  cuda:*) worker_device=$device hf_device=$device default_dtype=fp16 ;;
  *) echo "hf-side-by-side: --device is cpu, cuda or cuda:N, not $device" >&2; exit 2 ;;
esac
dtype=${dtype:-$default_dtype}
case "$dtype" in
  fp16) hf_dtype=float16 ;; bf16) hf_dtype=bfloat16 ;; fp32) hf_dtype=float32 ;;
  *) echo "hf-side-by-side: --dtype is fp16, bf16 or fp32, not $dtype" >&2; exit 2 ;;
esac
model_dir=${model_dir:-${TMPDIR:-/tmp}/flover-hf-$shape-seed$seed}
mkdir -p "$out"
out=$(realpath "$out")
model_dir=$(realpath -m "$model_dir")
status=0
log() { echo "hf-side-by-side: $*" | tee -a "$out/steps.txt" >&2; }
: > "$out/steps.txt"
if [ "$hf_device" = cpu ]; then export OMP_NUM_THREADS=$threads; fi

# The workload's flags, shared by flover bench and hf_serving_bench.py.
workload_flags() {  # workload_flags ARRIVAL
  local gap
  case "$1" in
    poisson) gap=--mean-interval-ms ;;
    fixed) gap=--interval-ms ;;
    *) echo "hf-side-by-side: --arrivals takes poisson and fixed, not $1" >&2; return 1 ;;
  esac
  echo "$gap $interval_ms --requests $requests --seed $seed --prompt-len $prompt_len --output-len $output_len --ignore-eos --max-concurrency $max_concurrency"
}
IFS=, read -r -a arrival_list <<< "$arrivals"
for a in "${arrival_list[@]}"; do workload_flags "$a" >/dev/null || exit 2; done

# 1. The weights (stored fp16; kept and reused when complete).
start=$(date +%s)
"$py" scripts/reference/random_llama_hf.py --out "$model_dir" --shape "$shape" --seed "$seed" --reuse \
  > "$out/model.txt" 2>&1 || { cat "$out/model.txt" >&2; log "writing the model failed"; exit 1; }
log "model: $(tail -1 "$out/model.txt") ($(( $(date +%s) - start )) s)"

# The prompts of the workload (the same for every arrival process): the greedy check's input.
# shellcheck disable=SC2046
"$py" scripts/reference/hf_serving_bench.py --model "$model_dir" --print-workload \
  $(workload_flags "${arrival_list[0]}") > "$out/workload.json" || { log "the workload generator failed"; exit 1; }
prompt_flags=$("$py" -c 'import json, sys
print(" ".join("--prompt-ids " + ",".join(map(str, r["prompt_ids"])) for r in json.load(open(sys.argv[1]))))' \
  "$out/workload.json")

# 2. Flover: one cluster for the greedy tokens and every arrival process.
if [ "$worker_device" = cpu ]; then kv_mib=256; else kv_mib=16384; fi
cat > "$out/flover.yaml" <<EOF
# Written by scripts/hf-side-by-side.sh: configs/gpu-local.yaml with the Hugging Face folder.
cluster: {name: hf-side-by-side}
endpoints: {client: 'tcp://127.0.0.1:*', control: 'tcp://127.0.0.1:*', plans: 'tcp://127.0.0.1:*'}
model: {path: '$model_dir', dtype: $dtype}
parallel: {replicas: 1, tensor: 1}
workers: [{replica: 0, rank: 0, host: 127.0.0.1, device: $worker_device, threads: $threads}]
kv_cache: {block_size: 16, memory_mib: $kv_mib}
scheduler: {policy: fused, max_step_tokens: 4096, max_running: 256, max_queued: 4096, pipeline_depth: 2}
heartbeat: {interval_ms: 500, timeout_ms: 5000, step_timeout_ms: 60000}
EOF
inner=$out/flover-session.sh
{
  echo "# Run by flover up --exec (\$FLOVER_ENDPOINT is the cluster's client endpoint)."
  echo "rc=0"
  echo "'$flover' generate --endpoint \"\$FLOVER_ENDPOINT\" $prompt_flags --max-tokens $output_len --ignore-eos --json --timeout 600 > '$out/flover-greedy.json' || rc=1"
  for a in "${arrival_list[@]}"; do
    echo "'$flover' bench --endpoint \"\$FLOVER_ENDPOINT\" --label flover $(workload_flags "$a") --timeout 300 --ready-timeout 600 --json '$out/flover-$a.json' > '$out/flover-$a.txt' 2> '$out/flover-$a.log' || rc=1"
  done
  echo "exit \$rc"
} > "$inner"
start=$(date +%s)
LD_LIBRARY_PATH=${FLOVER_LD_LIBRARY_PATH:-${LD_LIBRARY_PATH:-}} "$flover" up --config "$out/flover.yaml" --ready-timeout 900 \
  --exec "bash '$inner'" > "$out/flover-up.log" 2>&1
rc=$?
log "flover ($worker_device, $dtype): rc=$rc ($(( $(date +%s) - start )) s, cluster start included)"
[ $rc = 0 ] || { status=1; tail -20 "$out/flover-up.log" >&2; }

# 3. transformers, one process per arrival process.
for a in "${arrival_list[@]}"; do
  start=$(date +%s)
  # shellcheck disable=SC2046
  "$py" scripts/reference/hf_serving_bench.py --model "$model_dir" --device "$hf_device" --dtype "$hf_dtype" \
    $(workload_flags "$a") --json "$out/transformers-$a.json" > "$out/transformers-$a.txt" 2> "$out/transformers-$a.log"
  rc=$?
  log "transformers ($hf_device, $hf_dtype), $a arrivals: rc=$rc ($(( $(date +%s) - start )) s, model load included)"
  [ $rc = 0 ] || { status=1; tail -20 "$out/transformers-$a.log" >&2; }
done

# 4. The comparison.
python3 - "$out" "$arrivals" > "$out/comparison.txt" <<'EOF' || status=1
import json, os, sys
out, arrivals = sys.argv[1], sys.argv[2].split(',')
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f'{name}: not read ({e})')
        return None
ok = True
result = {'runs': {}}
keys = [('e2e_s', 'e2e'), ('ttft_s', 'TTFT'), ('tpot_s', 'TPOT')]
hf_tokens = None
for a in arrivals:
    f, h = load(f'flover-{a}.json'), load(f'transformers-{a}.json')
    f = f[0] if f else None
    h = h[0] if h else None
    if hf_tokens is None and h:
        hf_tokens = [r['tokens'] for r in h['requests']]
    if not f or not h or f.get('error') or f['completed'] != f['requests_total'] or h['completed'] != h['requests_total']:
        print(f'{a} arrivals: not comparable (a run is missing, failed or incomplete)')
        ok = False
        continue
    ratio = f['output_tokens_per_s'] / h['output_tokens_per_s']
    same_arrivals = max(abs(x['arrival_s'] - y['arrival_s']) for x, y in zip(f['requests'], h['requests'])) < 1e-9
    w = f['workload']
    print(f"{a} arrivals ({w['requests']} requests, {'mean ' if a == 'poisson' else ''}{w['interval_ms']:g} ms apart, "
          f"{w['output_len_max']} output tokens, seed {w['seed']}; same arrival times: {'yes' if same_arrivals else 'NO'}):")
    print(f"  tokens/s: Flover {f['output_tokens_per_s']:.1f}, transformers {h['output_tokens_per_s']:.1f}: "
          f"Flover / transformers = {ratio:.2f}x")
    print(f"  {'ms':<14}{'Flover p50':>12}{'p90':>10}{'p99':>10}   {'transformers p50':>17}{'p90':>10}{'p99':>10}")
    for key, name in keys:
        print(f"  {name:<14}" + ''.join(f'{f[key][p] * 1e3:>{12 if p == "p50" else 10}.1f}' for p in ('p50', 'p90', 'p99'))
              + '   ' + ''.join(f'{h[key][p] * 1e3:>{17 if p == "p50" else 10}.1f}' for p in ('p50', 'p90', 'p99')))
    result['runs'][a] = {'flover_tokens_per_s': f['output_tokens_per_s'],
                         'transformers_tokens_per_s': h['output_tokens_per_s'], 'ratio': ratio,
                         'same_arrival_times': same_arrivals,
                         **{f'{e}_{name}_{p}_s': r[key][p] for e, r in (('flover', f), ('transformers', h))
                            for key, name in keys for p in ('p50', 'p90', 'p99')}}
    ok = ok and same_arrivals
greedy = []
try:
    with open(os.path.join(out, 'flover-greedy.json')) as fh:
        greedy = [json.loads(line)['tokens'] for line in fh if line.strip()]
except (OSError, ValueError, KeyError) as e:
    print(f'flover-greedy.json: not read ({e})')
if greedy and hf_tokens:
    same = [i for i, (x, y) in enumerate(zip(greedy, hf_tokens)) if x == y]
    first = next((k for k, (x, y) in enumerate(zip(greedy[0], hf_tokens[0])) if x != y), None)
    print(f"greedy tokens: {len(same)}/{len(hf_tokens)} requests identical between Flover and transformers; "
          f"request 0: {'identical' if first is None and len(greedy[0]) == len(hf_tokens[0]) else f'first differs at token {first}'}")
    result['greedy'] = {'identical_requests': len(same), 'requests': len(hf_tokens),
                        'request0_identical': greedy[0] == hf_tokens[0], 'request0_first_difference': first}
else:
    ok = False
ratios = ', '.join(f"{a} {r['ratio']:.2f}x" for a, r in result['runs'].items()) or 'none'
identical = f"{result['greedy']['identical_requests']}/{result['greedy']['requests']}" if 'greedy' in result else 'unknown'
print(f'summary: Flover / transformers tokens/s: {ratios}; requests with identical greedy tokens: {identical}')
with open(os.path.join(out, 'comparison.json'), 'w') as fh:
    json.dump(result, fh, indent=1)
sys.exit(0 if ok else 1)
EOF
cat "$out/comparison.txt"
exit $status
