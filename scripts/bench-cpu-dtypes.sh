#!/usr/bin/env bash
# Flover's CPU engine against llama.cpp on the same GGUF files, side by side: one
# seeded random-weight LLaMA (scripts/reference/random_llama_gguf.py, F32), converted by
# llama.cpp's own llama-quantize to each type, then for each type, in interleaved
# rounds, llama.cpp's llama-batched-bench and Flover's engine_bench on that file:
# aggregate decode tokens/s at 1, 4, 16 and 32 streams (8-token prompts, 64 decode
# steps) and prefill tokens/s of one 128-token prompt, the same threads for both.
# Prints one markdown table per type with Flover / llama.cpp per row and round.
# With --daemons, then also the paper's workload through Flover's real daemons on each
# file (`flover bench`: 32 requests 20 ms apart, 256 output tokens, fused and
# sequential; one CPU worker with the same threads, config written to --out).
#
#   scripts/bench-cpu-dtypes.sh [--preset llama-110m] [--types "F32 F16 Q8_0 Q4_K Q4_K_M"]
#       [--streams 1,4,16,32] [--rounds 2] [--threads 2] [--kv-dtype fp16]
#       [--out bench-results/cpu-dtypes] [--daemons]
#
# Both engines keep their KV cache in --kv-dtype (fp16, bf16 or fp32; llama.cpp's -ctk
# and -ctv, Flover's kv_cache.dtype). fp16, the default, is llama.cpp's own default;
# Flover's is fp32.
#
# Types are llama-quantize's names; "Q4_K" is Q4_K_M with --pure (every matrix Q4_K,
# none of the mix's Q6_K). Flover serves each file with model.dtype auto: what it
# computes natively is kept as stored, other types (the Q6_K tensors of Q4_K_M) become
# Q8_0 at load; engine_bench prints what it holds.
#
# Needs a Release build with benchmarks (scripts/build.sh; build/tests/bench/engine_bench)
# and llama.cpp's tools (scripts/llama-cpp-build.sh, about 25 minutes on 2 cores the
# first time; $LLAMA_CPP_BIN names a folder that has them). The first run makes a venv
# (build/gguf-venv) with gguf-py and numpy from PyPI (scripts/reference/requirements-gguf.txt).
# Logs and raw outputs go to --out.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=llama-110m types="F32 F16 Q8_0 Q4_K Q4_K_M" streams=1,4,16,32 rounds=2 threads=2 out=bench-results/cpu-dtypes
daemons=0 kv=fp16
while (($#)); do
  case "$1" in
    --preset) preset=$2; shift 2 ;;
    --types) types=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --kv-dtype) kv=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --daemons) daemons=1; shift ;;
    *) echo "bench-cpu-dtypes: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$kv" in
  fp32) llama_kv=f32 ;;
  fp16) llama_kv=f16 ;;
  bf16) llama_kv=bf16 ;;
  *) echo "bench-cpu-dtypes: --kv-dtype is fp16, bf16 or fp32, not $kv" >&2; exit 2 ;;
esac
engine_bench=${ENGINE_BENCH:-build/tests/bench/engine_bench}
[ -x "$engine_bench" ] || { echo "bench-cpu-dtypes: no $engine_bench; build with scripts/build.sh" >&2; exit 1; }
bin=${LLAMA_CPP_BIN:-$(bash scripts/llama-cpp-build.sh)}
mkdir -p "$out"

venv=build/gguf-venv
if ! "$venv/bin/python" -c 'import gguf, numpy' 2>/dev/null; then
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/reference/requirements-gguf.txt
fi
base=$out/$preset-F32.gguf
[ -f "$base" ] || "$venv/bin/python" scripts/reference/random_llama_gguf.py --preset "$preset" --out "$base" >/dev/null

file_for() {  # the GGUF of type $1, made once
  local type=$1 file=$out/$preset-$1.gguf
  if [ "$type" != F32 ] && [ ! -f "$file" ]; then
    if [ "$type" = Q4_K ]; then
      "$bin/llama-quantize" --pure "$base" "$file" Q4_K_M "$threads" >"$out/quantize-$type.log" 2>&1
    else
      "$bin/llama-quantize" "$base" "$file" "$type" "$threads" >"$out/quantize-$type.log" 2>&1
    fi
  fi
  echo "$file"
}

# llama-batched-bench on $file with the rest of the arguments, into $out/llama-$1.txt and .log.
llama_bench() {
  local name=$1 rc=0
  shift
  "$bin/llama-batched-bench" -m "$file" -t "$threads" -tb "$threads" -ctk "$llama_kv" -ctv "$llama_kv" "$@" \
    >"$out/llama-$name.txt" \
    2>"$out/llama-$name.log" || rc=$?
  if ((rc != 0)); then
    echo "bench-cpu-dtypes: llama-batched-bench failed on $file (exit status $rc; log: $out/llama-$name.log)" >&2
    echo "  where it crashed in its AMX kernels, build llama.cpp without them (see scripts/llama-cpp-build.sh)" >&2
    exit 1
  fi
}

max_streams=$(tr ',' '\n' <<<"$streams" | sort -n | tail -1)
for round in $(seq 1 "$rounds"); do
  for type in $types; do
    file=$(file_for "$type")
    echo "bench-cpu-dtypes: round $round, $type" >&2
    llama_bench "$type-decode-$round" -c $((max_streams * 128)) -npp 8 -ntg 64 -npl "$streams"
    llama_bench "$type-prefill-$round" -c 512 -npp 128 -ntg 1 -npl 1
    OMP_NUM_THREADS=$threads "$engine_bench" --models "$file" --dtype auto --kv-dtype "$kv" \
      --concurrency "$streams" --steps 64 --prompt-len 8 --prefill 128 >"$out/flover-$type-$round.txt" \
      2>"$out/flover-$type-$round.log"
  done
done

/usr/bin/python3 - "$out" "$preset" "$rounds" "$types" "$kv" <<'EOF'
import re, sys
out, preset, rounds, types, kv = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(), sys.argv[5]

def llama(path):  # {B: (S_PP t/s, S_TG t/s)} from llama-batched-bench's table
    rows = {}
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 10 and cells[2].isdigit():
            rows[int(cells[2])] = (float(cells[5]), float(cells[7]))
    return rows

def flover(path):  # ({streams: tokens/s}, prefill tokens/s, weights description)
    decode, prefill, held = {}, None, ''
    for line in open(path):
        m = re.match(r'\s*(\d+)\s+[\d.]+\s+([\d.]+)\s', line)
        if m: decode[int(m.group(1))] = float(m.group(2))
        m = re.match(r'prefill \d+ tokens: [\d.]+ ms, ([\d.]+) tokens/s', line)
        if m: prefill = float(m.group(1))
        if line.startswith('  ') and 'weights' in line: held = line.strip()
    return decode, prefill, held

for t in types:
    runs = [(llama(f'{out}/llama-{t}-decode-{r}.txt'), llama(f'{out}/llama-{t}-prefill-{r}.txt'),
             flover(f'{out}/flover-{t}-{r}.txt')) for r in range(1, rounds + 1)]
    print(f'\n{preset} {t}: Flover holds {runs[0][2][2]}; both keep the KV cache in {kv}\n')
    print('| streams | Flover tok/s | llama.cpp tok/s | Flover / llama.cpp |')
    print('|---:|---:|---:|---:|')
    for b in sorted(runs[0][0]):
        f = [run[2][0].get(b, 0.0) for run in runs]
        l = [run[0][b][1] for run in runs]
        print(f'| {b} | ' + ' / '.join(f'{x:.1f}' for x in f) + ' | ' + ' / '.join(f'{x:.1f}' for x in l) + ' | ' +
              ' / '.join(f'{x / y:.2f}' for x, y in zip(f, l)) + ' |')
    f = [run[2][1] or 0.0 for run in runs]
    l = [run[1][1][0] for run in runs]
    print('| pp128 | ' + ' / '.join(f'{x:.0f}' for x in f) + ' | ' + ' / '.join(f'{x:.0f}' for x in l) + ' | ' +
          ' / '.join(f'{x / y:.2f}' for x, y in zip(f, l)) + ' |')
EOF

[ "$daemons" = 1 ] || exit 0
flover=${FLOVER:-build/client/flover}
cat >"$out/one-worker.yaml" <<EOF
cluster: {name: cpu-dtypes}
endpoints: {client: "tcp://127.0.0.1:5585", control: "tcp://127.0.0.1:5586", plans: "tcp://127.0.0.1:5587"}
model: {path: unused}
parallel: {replicas: 1, tensor: 1}
workers:
  - {replica: 0, rank: 0, host: 127.0.0.1, device: cpu, threads: $threads}
kv_cache: {block_size: 16, memory_mib: 512, dtype: $kv}
scheduler: {policy: fused, max_step_tokens: 512, max_running: 64, pipeline_depth: 2}
EOF
for type in $types; do
  file=$(realpath "$(file_for "$type")")
  echo "bench-cpu-dtypes: flover bench through the daemons, $type" >&2
  "$flover" bench --config "$out/one-worker.yaml" --model "$file" --policies fused,sequential --requests 32 \
    --interval-ms 20 --output-len 256 --prompt-len 8 --ignore-eos --json "$out/daemons-$type.json" \
    >"$out/daemons-$type.txt" 2>"$out/daemons-$type.log"
  echo; echo "$preset $type through the daemons:"; cat "$out/daemons-$type.txt"
done
