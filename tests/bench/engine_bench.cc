// engine_bench: decode throughput of the in-process engine at 1..64 concurrent requests,
// next to this machine's rooflines, measured in the same run:
//   - memory roofline: weights are read once per step, so a step takes at least
//     weight_bytes / read_bandwidth; tokens/s <= concurrency * bandwidth / weight_bytes;
//   - compute roofline: 2 * n_params flops per token at the measured GEMM rate.
// Prints a table; numbers only, nothing is asserted.
//
// and, with --prefill N (0: off), the time of one N-token prompt (every token in one
// step, as one request's prefill runs), best of --prefill-reps runs (5; more for
// profiling the prefill alone).
//
//   engine_bench [--models dummy:stories15m,dummy:llama-110m] [--concurrency 1,2,4,8,16,32,64]
//                [--steps 64] [--prompt-len 8] [--dtype auto] [--kv-dtype fp32] [--prefill 0]
//
// --models takes model files too (GGUF, llama2.c, a Hugging Face folder); --dtype is
// model.dtype (auto keeps a file's format where the CPU computes it), --kv-dtype
// kv_cache.dtype.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/matmul.h"
#include "worker/backend.h"
#include "worker/engine/engine.h"
#include "worker/model/weight_policy.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

// Read bandwidth with all threads: sum of a 1 GiB array, best of 5 passes. Each thread
// keeps 16 independent partial sums so the loop is bound by loads, not by add latency.
double MeasureReadBandwidth() {
  const size_t n = size_t{1} << 28;  // 1 GiB of floats
  std::vector<float> data(n);
#pragma omp parallel for
  for (size_t i = 0; i < n; ++i) data[i] = static_cast<float>(i & 7);
  double best = 0;
  volatile float sink = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = Clock::now();
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
      float acc[16] = {};
#pragma omp for schedule(static)
      for (size_t i = 0; i < n; i += 16)
        for (int j = 0; j < 16; ++j) acc[j] += data[i + j];
      for (float a : acc) total += a;
    }
    const double s = Seconds(t0, Clock::now());
    sink = sink + total;
    best = std::max(best, n * sizeof(float) / s);
  }
  return best;
}

// The weight GEMM's rate on a compute-bound shape (64 tokens x [2048 x 768]).
double MeasureGemmFlops() {
  const int n = 64, in = 768, out = 2048;
  std::vector<float> x(static_cast<size_t>(n) * in, 0.01f), w(static_cast<size_t>(out) * in, 0.02f),
      y(static_cast<size_t>(n) * out);
  flover::cpu::Matmul(x.data(), w.data(), y.data(), n, in, out);
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const int reps = 50;
    const auto t0 = Clock::now();
    for (int r = 0; r < reps; ++r) flover::cpu::Matmul(x.data(), w.data(), y.data(), n, in, out);
    best = std::max(best, 2.0 * n * in * out * reps / Seconds(t0, Clock::now()));
  }
  return best;
}

struct Measurement {
  double step_ms;
  double tokens_per_s;
};

// Runs `concurrency` requests of prompt_len random tokens; after every request has
// finished its prompt, times `steps` pure decode steps (all requests fused).
Measurement MeasureDecode(flover::Engine& engine, int concurrency, int prompt_len, int steps) {
  const int vocab = engine.spec().vocab_size;
  for (int i = 0; i < concurrency; ++i) {
    flover::RequestParams r;
    for (int t = 0; t < prompt_len; ++t) r.prompt.push_back(t == 0 ? 1 : 3 + (i * 7919 + t * 104729) % (vocab - 3));
    r.stop.max_tokens = steps + 4;
    r.stop.ignore_eos = true;
    FLOVER_CHECK(engine.Add(r).ok());
  }
  std::vector<flover::EngineEvent> events;
  flover::StepStats stats;
  // Warm-up: prefill and first decode steps.
  for (int i = 0; i < 3; ++i) FLOVER_CHECK(engine.Step(&events, &stats).ok());
  int decoded = 0;
  const auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) {
    FLOVER_CHECK(engine.Step(&events, &stats).ok());
    decoded += stats.n_decode;
  }
  const double s = Seconds(t0, Clock::now());
  while (engine.has_work()) FLOVER_CHECK(engine.Step(&events, &stats).ok());
  return {1000.0 * s / steps, decoded / s};
}

// Best of `reps` runs of one prompt of `n_tokens` random tokens through prefill (the
// step that samples its first token), in ms.
double MeasurePrefill(flover::Engine& engine, int n_tokens, int reps) {
  const int vocab = engine.spec().vocab_size;
  std::vector<flover::EngineEvent> events;
  flover::StepStats stats;
  double best = 1e30;
  for (int rep = 0; rep < reps; ++rep) {
    flover::RequestParams r;
    for (int t = 0; t < n_tokens; ++t) r.prompt.push_back(t == 0 ? 1 : 3 + (rep * 31 + t * 104729) % (vocab - 3));
    r.stop.max_tokens = 1;
    r.stop.ignore_eos = true;
    FLOVER_CHECK(engine.Add(r).ok());
    const auto t0 = Clock::now();
    while (engine.has_work()) FLOVER_CHECK(engine.Step(&events, &stats).ok());
    best = std::min(best, 1000.0 * Seconds(t0, Clock::now()));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string models = "dummy:stories15m,dummy:llama-110m", concurrency = "1,2,4,8,16,32,64";
  std::string dtype = "auto", kv_dtype_name = "fp32";
  int steps = 64, prompt_len = 8, prefill = 0, prefill_reps = 5;
  const char* usage = "usage: engine_bench [--models M1,M2] [--concurrency 1,2,...] [--steps N] [--prompt-len N] "
                      "[--dtype auto|fp32|fp16|bf16|q8_0|q4_0|q4_k] [--kv-dtype fp32|fp16|bf16] [--prefill N] "
                      "[--prefill-reps 5]\n";
  if (argc % 2 == 0) {
    std::fprintf(stderr, "%s", usage);
    return 2;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--models") models = value;
    else if (flag == "--concurrency") concurrency = value;
    else if (flag == "--steps") steps = std::stoi(value);
    else if (flag == "--prompt-len") prompt_len = std::stoi(value);
    else if (flag == "--dtype") dtype = value;
    else if (flag == "--kv-dtype") kv_dtype_name = value;
    else if (flag == "--prefill") prefill = std::stoi(value);
    else if (flag == "--prefill-reps") prefill_reps = std::max(1, std::stoi(value));
    else {
      std::fprintf(stderr, "%s", usage);
      return 2;
    }
  }
  std::optional<flover::WeightDType> weight_dtype;
  if (dtype != "auto") {
    auto parsed = flover::ParseWeightDType(dtype);
    if (!parsed.ok()) {
      std::fprintf(stderr, "--dtype %s: %s\n%s", dtype.c_str(), parsed.status().ToString().c_str(), usage);
      return 2;
    }
    weight_dtype = *parsed;
  }
  auto kv_dtype = flover::ParseDType(kv_dtype_name);
  if (!kv_dtype.ok()) {
    std::fprintf(stderr, "--kv-dtype %s: %s\n%s", kv_dtype_name.c_str(), kv_dtype.status().ToString().c_str(), usage);
    return 2;
  }
  const double bandwidth = MeasureReadBandwidth();
  const double gemm = MeasureGemmFlops();
  std::printf("threads: %d, matmul kernel: %s\n", omp_get_max_threads(), flover::cpu::MatmulKernelName());
  std::printf("measured read bandwidth: %.1f GB/s, weight GEMM (64x768x2048): %.1f GFLOP/s\n\n", bandwidth / 1e9,
              gemm / 1e9);

  for (const std::string& name : Split(models)) {
    const flover::EngineConfig config;
    flover::BackendConfig backend;
    backend.model = name;
    backend.cpu_weights = flover::WeightPolicyFor(weight_dtype);
    backend.kv_dtype = *kv_dtype;
    backend.kv_memory_bytes = int64_t{2} << 30;
    backend.kv_max_sequences = config.max_running;
    auto created = flover::CreateBackend(backend);
    if (!created.ok()) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), created.status().ToString().c_str());
      return 1;
    }
    const flover::ModelSpec spec = created->backend->spec();
    const double weight_bytes = static_cast<double>(created->step_weight_bytes);
    const std::string description = created->description;
    auto engine = flover::Engine::Create(std::move(created->backend), config);
    if (!engine.ok()) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), engine.status().ToString().c_str());
      return 1;
    }
    std::printf("%s: %.1fM params, %.0f MB of weights read per step\n  %s\n", name.c_str(), spec.n_params() / 1e6,
                weight_bytes / 1e6, description.c_str());
    if (prefill > 0) {
      const double ms = MeasurePrefill(**engine, prefill, prefill_reps);
      std::printf("prefill %d tokens: %.2f ms, %.1f tokens/s\n", prefill, ms, 1000.0 * prefill / ms);
    }
    std::printf("%11s %10s %12s %16s %16s %10s\n", "concurrency", "step ms", "tokens/s", "mem roofline t/s",
                "gemm roofline t/s", "% of roof");
    for (const std::string& c : Split(concurrency)) {
      const int n = std::stoi(c);
      const Measurement m = MeasureDecode(**engine, n, prompt_len, steps);
      const double mem_roof = n * bandwidth / weight_bytes;
      const double gemm_roof = gemm / (2.0 * spec.n_params());
      std::printf("%11d %10.2f %12.1f %16.1f %16.1f %9.0f%%\n", n, m.step_ms, m.tokens_per_s, mem_roof, gemm_roof,
                  100.0 * m.tokens_per_s / std::min(mem_roof, gemm_roof));
      std::fflush(stdout);
    }
    std::printf("\n");
  }
  return 0;
}
