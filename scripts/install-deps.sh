#!/usr/bin/env bash
# Installs every Debian package Flover needs to build, test and run (Debian 12, as root).
# Idempotent: re-running only installs what is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates curl python3
  libopenblas-openmp-dev            # CPU GEMM (OpenMP build: shares one thread pool with our loops)
  libgtest-dev libgmock-dev libbenchmark-dev   # tests and micro-benchmarks
  libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev   # CLI, JSON output, logging
  libpcre2-dev libutf8proc-dev                               # tokenizers: pre-tokenizer regexes, Unicode normalization
  libzmq3-dev cppzmq-dev libprotobuf-dev protobuf-compiler   # daemons and wire format
  libyaml-cpp-dev libboost-dev libgloo-dev                   # config, HTTP, CPU collectives
  gnuplot-nox                                                # flover bench --plot
  systemd                                                    # systemd-analyze checks deploy/systemd (tests)
  libsystemd-dev                                             # sd_notify: the coordinator unit is Type=notify
  python3-prometheus-client                                  # tests: parses /metrics as Prometheus does
  clang-14 libclang-rt-14-dev libomp-14-dev llvm-14          # scripts/fuzz.sh: libFuzzer, OpenMP, llvm-symbolizer
  python3-zmq python3-protobuf                               # clients/python (flover_client) and its tests
  python3-venv                                               # scripts/python-env.sh: the HTTP tests' venv (openai from PyPI)
  iproute2 iptables                                          # multi-host tests: hosts in network namespaces, packet loss
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all packages present"
fi
