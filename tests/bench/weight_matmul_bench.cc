// MatmulWeights per weight format (kernels/cpu/weight_matmul.h) on LLaMA-shaped
// matrices, with the variant chosen for the process (BM_MatmulWeights) and with each
// variant this CPU runs (BM_MatmulWeightsVariant).
//
// Weights are "cold" as in kernels_bench: each call reads the next copy of the matrix
// from a pool larger than the last-level cache. Counters: GFLOP/s (2·n·rows·cols per
// call) and weight_GB/s (the matrix's bytes in its format per call; compare with
// kernels_bench's BM_ReadBandwidth at n = 1; Q4_K is read interleaved, as the engine
// keeps it). BM_MatmulWeightsHot reads the same copy
// every call instead (cache-resident: the kernel's own rate, without DRAM). Nothing is
// asserted.
//
//   ./weight_matmul_bench --benchmark_filter='BM_MatmulWeights/'
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/weight_matmul.h"
#include "kernels/cpu/weight_matmul_internal.h"

namespace {

using flover::cpu::WeightFormat;

constexpr WeightFormat kFormats[] = {WeightFormat::kF32,  WeightFormat::kF16,  WeightFormat::kBF16,
                                     WeightFormat::kQ8_0, WeightFormat::kQ4_0, WeightFormat::kQ4_K};
constexpr size_t kPoolBytes = size_t{384} << 20;

// Copies of one [rows, cols] matrix in `format`, one after the other, filling the pool;
// rebuilt only when the matrix changes.
struct WeightPool {
  std::vector<uint8_t> bytes;
  size_t matrix_bytes = 0, n_copies = 0;
  WeightFormat format = WeightFormat::kF32;
  flover::cpu::WeightLayout layout = flover::cpu::WeightLayout::kRows;
  int rows = 0, cols = 0;

  void Fill(WeightFormat f, int r, int c) {
    if (!bytes.empty() && f == format && r == rows && c == cols) return;
    format = f, rows = r, cols = c;
    matrix_bytes = static_cast<size_t>(r) * flover::cpu::WeightRowBytes(f, c);
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.0f, 0.02f);  // weights' usual spread
    std::vector<float> values(static_cast<size_t>(r) * c);
    for (float& v : values) v = normal(rng);
    std::vector<uint8_t> matrix(matrix_bytes);
    flover::cpu::QuantizeWeightRows(f, values.data(), r, c, matrix.data());
    layout = flover::cpu::WeightLayout::kRows;
    if (flover::cpu::PreferredWeightLayout(f) == flover::cpu::WeightLayout::kInterleaved) {  // as the engine keeps it
      std::vector<uint8_t> interleaved(static_cast<size_t>(flover::cpu::InterleavedWeightBytes(f, r, c)));
      flover::cpu::InterleaveWeightRows(flover::cpu::WeightView{f, matrix.data(), r, c}, interleaved.data());
      matrix = std::move(interleaved);
      matrix_bytes = matrix.size();
      layout = flover::cpu::WeightLayout::kInterleaved;
    }
    n_copies = std::max<size_t>(1, kPoolBytes / matrix_bytes);
    bytes.resize(n_copies * matrix_bytes);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < static_cast<long>(n_copies); ++i) std::memcpy(&bytes[i * matrix_bytes], matrix.data(), matrix_bytes);
  }
  const void* Copy(size_t call) const { return bytes.data() + (call % n_copies) * matrix_bytes; }
};

WeightPool& Pool() {
  static WeightPool pool;
  return pool;
}

// Args: format, variant (-1: the process's choice), n, rows, cols. `hot`: the same copy
// of the matrix every call.
void BM_MatmulWeightsCase(benchmark::State& state, bool by_variant, bool hot = false) {
  const WeightFormat f = kFormats[state.range(0)];
  const int n = static_cast<int>(state.range(2)), rows = static_cast<int>(state.range(3)),
            cols = static_cast<int>(state.range(4));
  flover::cpu::internal::WeightKernel kernel = flover::cpu::internal::SelectedWeightKernel(f);
  if (by_variant) {
    const std::vector<const char*> names = flover::cpu::internal::WeightKernelNames(f);
    kernel = flover::cpu::internal::FindWeightKernel(f, names[state.range(1)]);
    if (kernel.fn == nullptr) {
      state.SkipWithError((std::string("this CPU lacks ") +
                           flover::cpu::internal::WeightKernelRequirement(f, names[state.range(1)]))
                              .c_str());
      return;
    }
  }
  WeightPool& pool = Pool();
  pool.Fill(f, rows, cols);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n) * cols), y(static_cast<size_t>(n) * rows);
  for (float& v : x) v = dist(rng);
  size_t call = 0;
  for (auto _ : state) {
    flover::cpu::internal::MatmulWeightsWithKernel(kernel, x.data(),
                                                   flover::cpu::WeightView{f, pool.Copy(hot ? 0 : call++), rows, cols, pool.layout}, y.data(),
                                                   n, false);
    benchmark::ClobberMemory();
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(iters * 2.0 * n * rows * cols * 1e-9, benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] =
      benchmark::Counter(iters * static_cast<double>(pool.matrix_bytes) * 1e-9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(flover::cpu::WeightFormatName(f)) + " " + kernel.name + " threads=" +
                 std::to_string(omp_get_max_threads()));
}

void BM_MatmulWeights(benchmark::State& state) { BM_MatmulWeightsCase(state, false); }
void BM_MatmulWeightsVariant(benchmark::State& state) { BM_MatmulWeightsCase(state, true); }
void BM_MatmulWeightsHot(benchmark::State& state) { BM_MatmulWeightsCase(state, false, true); }

constexpr int kShapes[][2] = {{768, 768}, {2048, 768}, {768, 2048}};  // {rows, cols}

void SelectedShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"format", "variant", "n", "rows", "cols"});
  for (int f = 0; f < 6; ++f) {
    for (const auto& s : kShapes) {
      for (int n : {1, 4, 16, 32}) b->Args({f, -1, n, s[0], s[1]});
    }
  }
  b->UseRealTime();
}

void VariantShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"format", "variant", "n", "rows", "cols"});
  for (int f = 0; f < 6; ++f) {
    const int n_variants = static_cast<int>(flover::cpu::internal::WeightKernelNames(kFormats[f]).size());
    for (int v = 0; v < n_variants; ++v) {
      for (int n : {1, 16}) b->Args({f, v, n, 2048, 768});
    }
  }
  b->UseRealTime();
}

BENCHMARK(BM_MatmulWeights)->Apply(SelectedShapes);
BENCHMARK(BM_MatmulWeightsVariant)->Apply(VariantShapes);

void HotShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"format", "variant", "n", "rows", "cols"});
  for (int f = 0; f < 6; ++f) {
    for (const auto& s : kShapes) {
      for (int n : {1, 128}) b->Args({f, -1, n, s[0], s[1]});
    }
  }
  b->UseRealTime();
}
BENCHMARK(BM_MatmulWeightsHot)->Apply(HotShapes);

}  // namespace

BENCHMARK_MAIN();
