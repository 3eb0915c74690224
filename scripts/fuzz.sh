#!/usr/bin/env bash
# The fuzz harnesses (docs/fuzzing.md): installs what is needed, builds ./build-fuzz
# (clang-14, libFuzzer, AddressSanitizer + UndefinedBehaviorSanitizer, CPU only; only
# the harnesses, their seed writer and the libraries they use), writes the seed corpus,
# then runs every harness (or the TARGETs named) for SECONDS each (default 60), as many
# at a time as there are CPUs, and prints per harness the executions, the coverage and
# what it found.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
#   build-fuzz/corpus/TARGET/    what the fuzzer found interesting; kept between runs,
#                                so each run starts where the last one stopped
#   build-fuzz/seeds/TARGET/     the seeds, written afresh by every run
#   build-fuzz/findings/TARGET/  inputs that crashed, leaked, hung (-timeout) or ran out
#                                of memory (-rss_limit_mb, -malloc_limit_mb) in the
#                                last run of TARGET (a run empties it first)
#   build-fuzz/logs/TARGET.log   libFuzzer's output
# Reproduce a finding: build-fuzz/tests/fuzz/TARGET FILE. Exits 1 when anything was
# found, 2 for bad arguments.
#
# FLOVER_FUZZ_BUILD=DIR uses another build configured with FLOVER_FUZZ=ON instead of
# ./build-fuzz: the sanitizer tests' build-asan has the harnesses too (at -O0, so fewer
# executions per second), which saves CI a build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# Every harness, in tests/fuzz/CMakeLists.txt too.
all_targets=(
  fuzz_client_messages  # client messages through the coordinator core
  fuzz_worker_messages  # worker messages (step results included) through the core
  fuzz_cluster_config   # the YAML cluster config
  fuzz_llama2c          # llama2.c checkpoints
  fuzz_gguf             # GGUF files
  fuzz_safetensors      # safetensors files (Hugging Face weights)
  fuzz_tokenizer_file   # llama2.c tokenizer files
  fuzz_tokenizer_text   # the tokenizer's encode/decode
  fuzz_tokenizer_json   # tokenizer.json files, then encode / streamed decode
  fuzz_http_request     # HTTP requests through the parser and the routes
  fuzz_jinja            # Jinja (chat) templates, parsed and rendered
)
# Dictionaries (tests/fuzz/*.dict) of the harnesses that have one.
declare -A dicts=([fuzz_cluster_config]=cluster_config.dict [fuzz_gguf]=gguf.dict
                  [fuzz_safetensors]=safetensors.dict [fuzz_jinja]=jinja.dict
                  [fuzz_tokenizer_json]=tokenizer_json.dict)
# Options of single harnesses. The coordinator's harnesses build a cluster per input and
# cover ~20k features: libFuzzer's entropic schedule then spends most of the time in its
# own bookkeeping (twice fewer executions), so they run with the plain one.
declare -A options=([fuzz_client_messages]=-entropic=0 [fuzz_worker_messages]=-entropic=0)

seconds=60
if (($#)) && [[ $1 =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  if [[ ! " ${all_targets[*]} " =~ " $t " ]]; then
    echo "fuzz.sh: unknown target '$t' (one of: ${all_targets[*]})" >&2
    exit 2
  fi
done

bash scripts/install-deps.sh
if [ -n "${FLOVER_FUZZ_BUILD:-}" ]; then
  build=$(realpath "$FLOVER_FUZZ_BUILD")
  if ! grep -q '^FLOVER_FUZZ:BOOL=ON$' "$build/CMakeCache.txt" 2>/dev/null; then
    echo "fuzz.sh: FLOVER_FUZZ_BUILD=$FLOVER_FUZZ_BUILD is not a build configured with -DFLOVER_FUZZ=ON" >&2
    exit 2
  fi
else
  build=$root/build-fuzz
  cmake -S . -B "$build" -G Ninja -DFLOVER_FUZZ=ON -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
    -DFLOVER_CUDA=OFF -DFLOVER_BUILD_TESTS=OFF -DFLOVER_BUILD_BENCHMARKS=OFF -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_C_FLAGS_RELEASE=-O1 -gline-tables-only" "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -gline-tables-only" > /dev/null
fi
echo "fuzz.sh: building $build"
cmake --build "$build" --parallel "$(nproc)" --target flover_fuzz

# Seeds: the seed writer's, the shipped configs, the chat templates, the first 16 KiB
# (header, metadata with the vocabulary, tensor table) of the fixtures' GGUF files
# (llama.cpp's conversions: tinyllama's llama, qwen2's with a gpt2 vocabulary), and
# stories260K's tokenizer and GGUF header when the models are here.
rm -rf "$build/seeds"
"$build/tests/fuzz/flover_fuzz_seeds" "$build/seeds"
cp configs/*.yaml "$build/seeds/fuzz_cluster_config/"
mkdir -p "$build/seeds/fuzz_tokenizer_json"
for f in tests/fixtures/tokenizers/*/tokenizer.json; do
  cp "$f" "$build/seeds/fuzz_tokenizer_json/$(basename "$(dirname "$f")").json"
done
for f in tests/fixtures/models/*/*.gguf; do
  head -c 16384 "$f" > "$build/seeds/fuzz_gguf/$(basename "$(dirname "$f")")-$(basename "$f" .gguf)-head.gguf"
done
mkdir -p "$build/seeds/fuzz_http_request"
printf 'POST /v1/completions HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer sk-fuzz\r\nContent-Length: 2\r\n\r\n{}GET /health HTTP/1.1\r\n\r\n' \
  > "$build/seeds/fuzz_http_request/pipelined"
printf 'POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n' \
  > "$build/seeds/fuzz_http_request/chunked"
printf 'GET /v1/models?x=1 HTTP/1.0\r\nAuthorization: Bearer nope\r\n\r\n' > "$build/seeds/fuzz_http_request/http10"
mkdir -p "$build/seeds/fuzz_jinja"
for f in tests/fixtures/chat_templates/*.jinja common/chat_templates/*.jinja; do
  cp "$f" "$build/seeds/fuzz_jinja/$(basename "$(dirname "$f")")-$(basename "$f")"
done
FLOVER_MODELS_OPTIONAL=1 source scripts/models-dir.sh  # no download: they are only seeds
models=$FLOVER_MODELS_DIR
if [ -f "$models/stories260K/tok512.bin" ] && [ -f "$models/stories260K/stories260K.gguf" ]; then
  cp "$models/stories260K/tok512.bin" "$build/seeds/fuzz_tokenizer_file/"
  head -c 16384 "$models/stories260K/stories260K.gguf" > "$build/seeds/fuzz_gguf/stories260K-head.gguf"
  echo "fuzz.sh: seeds from $models/stories260K too"
fi

# A smaller quarantine and allocation stacks than the defaults: a fifth more executions
# (fewer page faults), freed memory still poisoned for 32 MiB of later allocations.
export ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:symbolize=1:quarantine_size_mb=32:malloc_context_size=10"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
command -v llvm-symbolizer-14 > /dev/null && export ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer-14)

# run TARGET: one harness for $seconds seconds; its status file says how it ended.
# Inputs are at most a few KiB (libFuzzer's -max_len: 4096 or the largest seed), so a
# single allocation of 64 MiB is a finding, as are 2 GiB in all.
run() {
  local t=$1 dict=() extra=()
  rm -rf "$build/findings/$t"
  mkdir -p "$build/corpus/$t" "$build/findings/$t" "$build/logs"
  [ -n "${dicts[$t]:-}" ] && dict=(-dict="$root/tests/fuzz/${dicts[$t]}")
  [ -n "${options[$t]:-}" ] && extra=(${options[$t]})
  local status=0
  "$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=64 \
    -print_final_stats=1 -artifact_prefix="$build/findings/$t/" "${dict[@]}" "${extra[@]}" \
    "$build/corpus/$t" "$build/seeds/$t" > "$build/logs/$t.log" 2>&1 || status=$?
  echo "$status" > "$build/logs/$t.status"
}

echo "fuzz.sh: ${#targets[@]} target(s), ${seconds} s each, $(nproc) at a time"
for t in "${targets[@]}"; do
  rm -f "$build/logs/$t.status"
  while (($(jobs -rp | wc -l) >= $(nproc))); do wait -n || true; done
  run "$t" &
done
wait

# The summary: executions, coverage (edges, features), corpus, result.
found=0
printf '%-22s %10s %8s %6s %7s %7s  %s\n' target executions exec/s cov ft corpus result
for t in "${targets[@]}"; do
  log=$build/logs/$t.log
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -aE '^#[0-9]+[[:space:]].*cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<< "$last")
  findings=("$build/findings/$t"/*)
  result=ok
  if [ -e "${findings[0]}" ] || [ "$(cat "$build/logs/$t.status")" != 0 ]; then
    [ -e "${findings[0]}" ] || findings=("no input saved")
    result="FOUND (exit $(cat "$build/logs/$t.status")): ${findings[*]}"
    found=1
  fi
  printf '%-22s %10s %8s %6s %7s %7s  %s\n' "$t" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" "${corp:--}" "$result"
done
if ((found)); then
  for t in "${targets[@]}"; do
    if [ "$(cat "$build/logs/$t.status")" != 0 ]; then
      echo "==== $t: the end of $build/logs/$t.log"
      grep -av '^"' "$build/logs/$t.log" | tail -60
    fi
  done
  echo "fuzz.sh: findings above; reproduce one with $build/tests/fuzz/TARGET FILE" >&2
  exit 1
fi
echo "fuzz.sh: nothing found"
