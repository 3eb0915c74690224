#!/usr/bin/env bash
# The tests under sanitizers: installs what is needed, then
#   asan  builds ./build-asan with clang (AddressSanitizer + UndefinedBehaviorSanitizer,
#         leak checks on) and runs every CTest test there: unit tests, and the
#         multi-process tests, whose daemons are sanitized too. The build also holds
#         the fuzz harnesses (FLOVER_FUZZ): FLOVER_FUZZ_BUILD=build-asan
#         scripts/fuzz.sh runs them without another build (as CI does);
#   tsan  builds ./build-tsan (ThreadSanitizer) and runs the coordinator's and the
#         collectives' tests (tests/coordinator, tests/comm). The other tests are left
#         out: their OpenMP loops run on libgomp's threads, which is not instrumented,
#         so TSan cannot see its synchronisation and reports races that are not there
#         (the tensor-parallel tests in tests/comm run the engine on one OpenMP thread).
#         Reports from uninstrumented libraries are suppressed by
#         scripts/sanitizers/tsan.supp, each entry with its reason.
# Usage: scripts/test-sanitizers.sh [asan] [tsan]   (default: both)
# Both builds are CPU-only (FLOVER_CUDA=OFF), without benchmarks, Debug with line tables
# (-g1) for readable stacks: -O0, quick to compile, but -O1 for the numeric code (the
# top-level CMakeLists.txt). A report from any process (a test, or a daemon that
# a test started) fails the run: they are collected from build-*/sanitizer-logs and
# printed at the end. Exits 0 when every test passed and nothing was reported.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/models-dir.sh
root=$PWD
runs=("$@")
((${#runs[@]})) || runs=(asan tsan)

# configure DIR SANITIZERS [CMAKE_ARGS...]: the sanitized build's CMake cache (made
# afresh when it was made with another compiler).
configure() {
  local dir=$1 sanitizers=$2
  shift 2
  local compiler
  compiler=$(printf '%s\n' "$@" | sed -n 's/^-DCMAKE_CXX_COMPILER=//p')
  if [ -f "$dir/CMakeCache.txt" ] && ! grep -q "^CMAKE_CXX_COMPILER:[A-Z]*=.*${compiler:-/c++}\$" "$dir/CMakeCache.txt"; then
    rm -rf "$dir"
  fi
  cmake -S . -B "$dir" -G Ninja -DFLOVER_SANITIZE="$sanitizers" -DFLOVER_CUDA=OFF -DFLOVER_BUILD_BENCHMARKS=OFF \
    -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG=-g1 -DCMAKE_CXX_FLAGS_DEBUG=-g1 \
    -DFLOVER_MODELS_DIR="$FLOVER_MODELS_DIR" "$@" > /dev/null
}

# check_logs DIR: prints every sanitizer report written under DIR; fails if there is one.
check_logs() {
  local reports=("$1"/*)
  [ -e "${reports[0]}" ] || return 0
  for r in "${reports[@]}"; do
    echo "==== $r"
    cat "$r"
  done
  echo "test-sanitizers: ${#reports[@]} sanitizer report(s) above" >&2
  return 1
}

# run_tests BUILD_DIR TEST_DIR...: ctest in each TEST_DIR of BUILD_DIR; then the reports.
run_tests() {
  local build=$1 status=0
  shift
  for dir in "$@"; do
    ctest --test-dir "$build/$dir" --output-on-failure --parallel "$(nproc)" --timeout 900 || status=1
  done
  check_logs "$build/sanitizer-logs" || status=1
  return $status
}

status=0
for run in "${runs[@]}"; do
  case "$run" in
  asan)
    echo "test-sanitizers: address,undefined in build-asan (clang-14, with the fuzz harnesses)"
    # clang compiles this build about a quarter faster than GCC, and the fuzz harnesses
    # (libFuzzer is clang's) need no build of their own.
    configure build-asan address,undefined -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 -DFLOVER_FUZZ=ON
    cmake --build build-asan --parallel "$(nproc)"
    rm -rf build-asan/sanitizer-logs && mkdir -p build-asan/sanitizer-logs
    logs=$root/build-asan/sanitizer-logs
    # halt_on_error: the first finding ends the process (UBSan too: the build has
    # -fno-sanitize-recover=undefined). log_path: reports go to files named PREFIX.PID,
    # so that one from a daemon whose output a test does not show is not lost.
    export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:log_path=$logs/asan"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
    export LSAN_OPTIONS="suppressions=$root/scripts/sanitizers/lsan.supp:print_suppressions=0"
    run_tests build-asan . || status=1
    unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
    ;;
  tsan)
    echo "test-sanitizers: thread in build-tsan"
    configure build-tsan thread
    cmake --build build-tsan --parallel "$(nproc)" --target tests/coordinator/all tests/comm/all
    rm -rf build-tsan/sanitizer-logs && mkdir -p build-tsan/sanitizer-logs
    logs=$root/build-tsan/sanitizer-logs
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$root/scripts/sanitizers/tsan.supp:print_suppressions=0:log_path=$logs/tsan"
    run_tests build-tsan tests/coordinator tests/comm || status=1
    unset TSAN_OPTIONS
    ;;
  *)
    echo "test-sanitizers: unknown run '$run' (asan, tsan)" >&2
    exit 2
    ;;
  esac
done
exit $status
