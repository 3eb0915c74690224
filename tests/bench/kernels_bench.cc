// CPU kernel benchmarks: Matmul against OpenBLAS sgemm on LLaMA-shaped weights, the
// memory read bandwidth that bounds batch-1 decode, and the fp32 FMA roof of a thread
// that bounds large batches.
//
// Weights are "cold": each call reads a different copy, from a pool larger than the
// last-level cache, so batch-1 numbers show DRAM streaming as in a real forward step
// (a whole model does not fit in cache). Counters: GFLOP/s (2·n·in·out per call) and
// weight_GB/s (out·in·4 bytes per call). Compare weight_GB/s at n = 1 with
// BM_ReadBandwidth, the roofline. On a shared or virtualised machine, run a few times:
// other tenants' load shows up as much as 2x in both.
//
//   ./kernels_bench --benchmark_filter='Matmul|Sgemm'
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul.h"

namespace {

// Weights are read from a pool larger than the last-level cache, each call from the
// next window, as a forward step reads every layer's weights once.
constexpr size_t kPoolFloats = size_t{160} << 20;  // 640 MiB

const std::vector<float>& WeightPool() {
  static const std::vector<float> pool = [] {
    std::vector<float> p(kPoolFloats);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < p.size(); ++i) {
      const uint32_t h = static_cast<uint32_t>(i) * 2654435761u;  // cheap hash: values in [-1, 1)
      p[i] = static_cast<float>(h >> 8) * (2.0f / 16777216.0f) - 1.0f;
    }
    return p;
  }();
  return pool;
}

struct MatmulFixture {
  std::vector<float> x, y;
  size_t n_copies = 1;
  size_t w_size = 0;

  MatmulFixture(int n, int in, int out) {
    WeightPool();  // fill it now, not in the timed loop
    w_size = static_cast<size_t>(in) * out;
    n_copies = kPoolFloats / w_size;
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    x.resize(static_cast<size_t>(n) * in);
    for (float& v : x) v = dist(rng);
    y.assign(static_cast<size_t>(n) * out, 0.0f);
  }
  const float* w(size_t call) const { return WeightPool().data() + (call % n_copies) * w_size; }
};

void SetCounters(benchmark::State& state, int n, int in, int out) {
  const double iters = static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(iters * 2.0 * n * in * out * 1e-9, benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] = benchmark::Counter(iters * 4.0 * in * out * 1e-9, benchmark::Counter::kIsRate);
}

// Args: n, in, out.
void BM_Matmul(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), in = static_cast<int>(state.range(1)),
            out = static_cast<int>(state.range(2));
  MatmulFixture f(n, in, out);
  size_t i = 0;
  for (auto _ : state) {
    flover::cpu::Matmul(f.x.data(), f.w(i++), f.y.data(), n, in, out);
    benchmark::ClobberMemory();
  }
  SetCounters(state, n, in, out);
  state.SetLabel(flover::cpu::MatmulKernelName());
}

void BM_Sgemm(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), in = static_cast<int>(state.range(1)),
            out = static_cast<int>(state.range(2));
  MatmulFixture f(n, in, out);
  size_t i = 0;
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, f.x.data(), in, f.w(i++), in, 0.0f,
                f.y.data(), out);
    benchmark::ClobberMemory();
  }
  SetCounters(state, n, in, out);
  state.SetLabel(openblas_get_corename());
}

void MatmulShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "in", "out"});
  const int shapes[][2] = {{768, 768}, {768, 2048}, {2048, 768}, {768, 32000},
                           {288, 288}, {288, 768},  {288, 32000}};  // {in, out}
  for (const auto& s : shapes) {
    for (int n : {1, 8, 32, 64}) b->Args({n, s[0], s[1]});
  }
  b->UseRealTime();
}

BENCHMARK(BM_Matmul)->Apply(MatmulShapes);
BENCHMARK(BM_Sgemm)->Apply(MatmulShapes);

// Sum of a[begin, end) with 32 independent partial sums, so the loop is bound by loads,
// not by the latency of one chain of adds; cloned per ISA so it loads full vectors.
// REQUIRES: (end - begin) % 32 == 0.
__attribute__((target_clones("avx512f", "avx2", "default"))) float SumRange(const float* a, size_t begin, size_t end) {
  float acc[32] = {};
  for (size_t i = begin; i < end; i += 32) {
    for (int l = 0; l < 32; ++l) acc[l] += a[i + l];
  }
  float sum = 0.0f;
  for (float v : acc) sum += v;
  return sum;
}

// Read bandwidth roofline: sum of a 1 GiB float array with the OpenMP threads.
void BM_ReadBandwidth(benchmark::State& state) {
  const size_t n = (size_t{1} << 30) / sizeof(float);
  std::vector<float> a(n);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) a[i] = static_cast<float>(i & 7);
  float total = 0.0f;
  for (auto _ : state) {
    float sum = 0.0f;
#pragma omp parallel reduction(+ : sum)
    {
      const size_t chunks = n / 32, t = omp_get_thread_num(), n_team = omp_get_num_threads();
      sum += SumRange(a.data(), chunks * t / n_team * 32, chunks * (t + 1) / n_team * 32);
    }
    total += sum;
    benchmark::DoNotOptimize(total);
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * n * sizeof(float) * 1e-9,
                                              benchmark::Counter::kIsRate);
  state.counters["threads"] = omp_get_max_threads();
}
BENCHMARK(BM_ReadBandwidth)->UseRealTime()->Unit(benchmark::kMillisecond);

// The fp32 FMA roof of one thread: 12 independent chains of vector FMAs (enough to hide
// the FMA latency on current x86 cores), 2 flops per lane and FMA. The weight kernels'
// GFLOP/s (weight_matmul_bench's BM_MatmulWeightsHot) read against it.
constexpr int kFmaChains = 12;

__attribute__((target("avx2,fma"))) float FmaChainsAvx2(long iterations, float seed) {
  __m256 acc[kFmaChains];
  for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm256_set1_ps(seed * j);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long i = 0; i < iterations; ++i) {
    for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
  }
  float out[8], sum = 0.0f;
  for (int j = 0; j < kFmaChains; ++j) {
    _mm256_storeu_ps(out, acc[j]);
    for (float v : out) sum += v;
  }
  return sum;
}

__attribute__((target("avx512f"))) float FmaChainsAvx512(long iterations, float seed) {
  __m512 acc[kFmaChains];
  for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm512_set1_ps(seed * j);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long i = 0; i < iterations; ++i) {
    for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  }
  // Through memory: GCC 12's _mm512_reduce_add_ps warns about its own uninitialised lanes.
  alignas(64) float lanes[16];
  float sum = 0.0f;
  for (int j = 0; j < kFmaChains; ++j) {
    _mm512_store_ps(lanes, acc[j]);
    for (float v : lanes) sum += v;
  }
  return sum;
}

// Arg: 256 (AVX2 + FMA) or 512 (AVX-512) bits per vector.
void BM_FmaPeak(benchmark::State& state) {
  const int bits = static_cast<int>(state.range(0));
  if (bits == 512 ? !flover::cpu::CpuHasAvx512() : !flover::cpu::CpuHasAvx2Fma()) {
    state.SkipWithError("this CPU lacks the instructions");
    return;
  }
  constexpr long kIterations = 1 << 20;
  float total = 0.0f;
  for (auto _ : state) {
    float seed = 0.001f;
    benchmark::DoNotOptimize(seed);  // a fresh input every call: no call is hoisted or folded
    total += bits == 512 ? FmaChainsAvx512(kIterations, seed) : FmaChainsAvx2(kIterations, seed);
    benchmark::DoNotOptimize(total);
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kIterations * kFmaChains * (bits / 32) * 2 * 1e-9,
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_FmaPeak)->Arg(256)->Arg(512)->UseRealTime();

// SwiGLU over n rows of stories110M's hidden size (expf-bound).
void BM_SiluMul(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), hidden = 2048;
  std::vector<float> gate_up(static_cast<size_t>(n) * 2 * hidden, 0.5f), out(static_cast<size_t>(n) * hidden);
  for (auto _ : state) {
    flover::cpu::SiluMul(gate_up.data(), out.data(), n, hidden);
    benchmark::ClobberMemory();
  }
  state.counters["elements/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * n * hidden, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SiluMul)->ArgName("n")->Arg(1)->Arg(64)->UseRealTime();

// One decode token of one stories110M layer (12 heads, head_dim 64, blocks of 16) at
// context length `ctx`, all heads on this thread.
void BM_PagedAttentionDecode(benchmark::State& state) {
  const int ctx = static_cast<int>(state.range(0));
  constexpr int kHeads = 12, kHeadDim = 64, kBlock = 16;
  const int n_blocks = (ctx + kBlock - 1) / kBlock;
  const size_t cache_size = static_cast<size_t>(n_blocks) * kHeads * kBlock * kHeadDim;
  std::vector<float> k(cache_size, 0.01f), v(cache_size, 0.02f);
  std::vector<int> table(n_blocks);
  for (int b = 0; b < n_blocks; ++b) table[b] = n_blocks - 1 - b;  // blocks in reverse order
  const flover::cpu::PagedKvLayer kv{k.data(), v.data(), n_blocks, kBlock, kHeads, kHeadDim};
  std::vector<float> q(kHeads * kHeadDim, 0.1f), out(kHeads * kHeadDim);
  for (auto _ : state) {
    flover::cpu::PagedAttention(kv, table.data(), ctx - 1, 1, q.data(), kHeads * kHeadDim, out.data(),
                                kHeads * kHeadDim, kHeads, 0, kHeads);
    benchmark::ClobberMemory();
  }
  state.counters["kv_GB/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2.0 * ctx * kHeads * kHeadDim * sizeof(float) * 1e-9,
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PagedAttentionDecode)->ArgName("ctx")->Arg(128)->Arg(1024)->UseRealTime();

// A prefill chunk's attention on one thread: one sequence's `tokens` query tokens at
// positions 0.. over their own K/V (random, written by WriteKv), 12 heads of 64, blocks
// of 16, a cache of fp32, fp16 or bf16 (kv = 0, 1, 2): every token attends to the
// positions up to its own.
void BM_PagedAttentionPrefill(benchmark::State& state) {
  const auto dtype = static_cast<flover::cpu::KvDType>(state.range(0));
  const int tokens = static_cast<int>(state.range(1));
  constexpr int kHeads = 12, kHeadDim = 64, kBlock = 16, kDim = kHeads * kHeadDim;
  const int n_blocks = (tokens + kBlock - 1) / kBlock;
  const size_t bytes = static_cast<size_t>(n_blocks) * kHeads * kBlock * kHeadDim * flover::cpu::KvDTypeBytes(dtype);
  std::vector<unsigned char> k(bytes), v(bytes);
  std::vector<int> table(n_blocks);
  for (int b = 0; b < n_blocks; ++b) table[b] = n_blocks - 1 - b;
  const flover::cpu::PagedKvLayer kv{k.data(), v.data(), n_blocks, kBlock, kHeads, kHeadDim, dtype};
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> rows(static_cast<size_t>(tokens) * kDim), q(static_cast<size_t>(tokens) * kDim), out(q.size());
  for (float& x : rows) x = dist(rng);
  for (float& x : q) x = dist(rng);
  flover::cpu::WriteKv(kv, table.data(), 0, tokens, rows.data(), rows.data(), kDim);
  for (auto _ : state) {
    flover::cpu::PagedAttention(kv, table.data(), 0, tokens, q.data(), kDim, out.data(), kDim, kHeads, 0, kHeads);
    benchmark::ClobberMemory();
  }
  // Multiply-adds of the scores and of the weighted sums of V.
  const double macs = 2.0 * kHeads * kHeadDim * (static_cast<double>(tokens) * (tokens + 1) / 2);
  state.SetLabel(std::string(flover::cpu::KvDTypeName(dtype)) + " " + flover::cpu::PagedAttentionKernelName(dtype));
  state.counters["GFLOP/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2.0 * macs * 1e-9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PagedAttentionPrefill)
    ->ArgNames({"kv", "tokens"})
    ->ArgsProduct({{0, 1, 2}, {128, 512}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// BM_PagedAttentionDecode at long contexts with the KV cache in fp32, fp16 or bf16
// (kv = 0, 1, 2): random K/V written by WriteKv, blocks shuffled over the pool. At 16K
// positions the fp32 cache (96 MiB) streams from DRAM; kv_GB/s counts the bytes stored.
void BM_PagedAttentionDecodeKvDType(benchmark::State& state) {
  const auto dtype = static_cast<flover::cpu::KvDType>(state.range(0));
  const int ctx = static_cast<int>(state.range(1));
  constexpr int kHeads = 12, kHeadDim = 64, kBlock = 16;
  const int n_blocks = (ctx + kBlock - 1) / kBlock;
  const size_t bytes = static_cast<size_t>(n_blocks) * kHeads * kBlock * kHeadDim * flover::cpu::KvDTypeBytes(dtype);
  std::vector<unsigned char> k(bytes), v(bytes);
  std::vector<int> table(n_blocks);
  std::mt19937 rng(9);
  for (int b = 0; b < n_blocks; ++b) table[b] = b;
  std::shuffle(table.begin(), table.end(), rng);
  const flover::cpu::PagedKvLayer kv{k.data(), v.data(), n_blocks, kBlock, kHeads, kHeadDim, dtype};
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> rows(static_cast<size_t>(kBlock) * kHeads * kHeadDim);
  for (int p = 0; p < ctx; p += kBlock) {
    for (float& x : rows) x = dist(rng);
    const int n = std::min(kBlock, ctx - p);
    flover::cpu::WriteKv(kv, table.data(), p, n, rows.data(), rows.data(), kHeads * kHeadDim);
  }
  std::vector<float> q(kHeads * kHeadDim), out(kHeads * kHeadDim);
  for (float& x : q) x = dist(rng);
  for (auto _ : state) {
    flover::cpu::PagedAttention(kv, table.data(), ctx - 1, 1, q.data(), kHeads * kHeadDim, out.data(),
                                kHeads * kHeadDim, kHeads, 0, kHeads);
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::string(flover::cpu::KvDTypeName(dtype)) + " " + flover::cpu::PagedAttentionKernelName(dtype));
  state.counters["kv_GB/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2.0 * ctx * kHeads * kHeadDim * flover::cpu::KvDTypeBytes(dtype) * 1e-9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PagedAttentionDecodeKvDType)
    ->ArgNames({"kv", "ctx"})
    ->ArgsProduct({{0, 1, 2}, {4096, 16384}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// A fused decode step's attention for one stories15M layer (6 heads, head_dim 48,
// blocks of 16): `seqs` requests of `ctx` positions each, their blocks scattered over
// a pool much larger than the caches, so the KV cache streams from DRAM as in a real
// step. kv_GB/s compares with BM_ReadBandwidth.
void BM_PagedAttentionFusedStep(benchmark::State& state) {
  const int seqs = static_cast<int>(state.range(0)), ctx = static_cast<int>(state.range(1));
  constexpr int kHeads = 6, kHeadDim = 48, kBlock = 16;
  const int blocks_per_seq = (ctx + kBlock - 1) / kBlock, n_blocks = seqs * blocks_per_seq;
  const size_t cache_size = static_cast<size_t>(n_blocks) * kHeads * kBlock * kHeadDim;
  const bool huge = state.range(2) != 0;
  const size_t bytes = (cache_size * sizeof(float) + (size_t{2} << 20) - 1) / (size_t{2} << 20) * (size_t{2} << 20);
  std::unique_ptr<float, decltype(&std::free)> k_mem(static_cast<float*>(std::aligned_alloc(size_t{2} << 20, bytes)),
                                                     &std::free);
  std::unique_ptr<float, decltype(&std::free)> v_mem(static_cast<float*>(std::aligned_alloc(size_t{2} << 20, bytes)),
                                                     &std::free);
  if (huge) {
    ::madvise(k_mem.get(), bytes, MADV_HUGEPAGE);
    ::madvise(v_mem.get(), bytes, MADV_HUGEPAGE);
  }
  float* k = k_mem.get();
  float* v = v_mem.get();
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (size_t i = 0; i < cache_size; ++i) k[i] = dist(rng), v[i] = dist(rng);
  std::vector<int> pool(n_blocks);
  for (int b = 0; b < n_blocks; ++b) pool[b] = b;
  std::shuffle(pool.begin(), pool.end(), rng);
  const flover::cpu::PagedKvLayer kv{k, v, n_blocks, kBlock, kHeads, kHeadDim};
  std::vector<float> q(static_cast<size_t>(seqs) * kHeads * kHeadDim), out(q.size());
  for (float& x : q) x = dist(rng);
  for (auto _ : state) {
    for (int s = 0; s < seqs; ++s) {
      const size_t row = static_cast<size_t>(s) * kHeads * kHeadDim;
      flover::cpu::PagedAttention(kv, pool.data() + static_cast<size_t>(s) * blocks_per_seq, ctx - 1, 1, q.data() + row,
                                  kHeads * kHeadDim, out.data() + row, kHeads * kHeadDim, kHeads, 0, kHeads);
    }
    benchmark::ClobberMemory();
  }
  state.counters["kv_GB/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2.0 * seqs * ctx * kHeads * kHeadDim * sizeof(float) * 1e-9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PagedAttentionFusedStep)
    ->ArgNames({"seqs", "ctx", "huge"})
    ->Args({32, 256, 0})
    ->Args({32, 512, 0})
    ->Args({32, 512, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
