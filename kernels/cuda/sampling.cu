// Sampling kernels. Every operation whose result the CPU Sampler also computes uses an
// explicitly rounded intrinsic (__fmul_rn, __dadd_rn, ...) so that nvcc cannot contract it
// into an FMA the CPU does not execute.
//
// Per row (one 1024-thread block per row):
//   PrepareKernel: penalty (a per-row bitmap in the workspace marks ids already
//     penalised), argmax, and for greedy rows the token. Sampled rows: softmax in place;
//     rows without top-k/top-p draw here in id order (the CPU's candidate order there);
//     other rows select candidates in id order into their segment of the workspace:
//     top-k: keys >= the k-th largest probability (radix select, 4 x 8 bits), at least k
//     of them; top-p alone: p >= (1 - top_p) / (vocab - 1) (the CPU's cutoff); top-p with
//     top_k >= vocab: all.
//   cub::DeviceSegmentedRadixSort (descending on the probability bits, stable, so ties
//     keep id order): candidates by (probability desc, id asc), as the CPU orders them.
//     Rows finished in PrepareKernel have empty segments.
//   FinishKernel: first k, the nucleus, the draw.
// Sums are in double, as on the CPU, over 32 contiguous chunks (one per warp) whose totals
// are added in order; "first index whose cumulative sum exceeds x" is the CPU's loop.
#include "kernels/cuda/sampling.h"

#include <cub/device/device_segmented_radix_sort.cuh>

#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/cuda/cuda_status.h"

namespace flover::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr size_t kAlign = 256;
constexpr size_t kCubTempBytes = 4096;  // DoubleBuffer segmented sort needs ~1 byte
// Probabilities are in [0, 1] and 1.0f is 0x3F800000 < 2^30: bits 30 and 31 are zero.
constexpr int kKeyBits = 30;

size_t AlignUp(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// The workspace, carved in this order; every piece 256-byte aligned.
struct Workspace {
  uint32_t* keys[2];  // [n_rows * vocab] candidate probabilities (float bits)
  int* ids[2];        // [n_rows * vocab] candidate token ids
  uint32_t* bitmap;   // [n_rows * bitmap_words] penalised ids
  int* seg_begin;     // [n_rows] candidates of row r: [seg_begin[r], seg_end[r])
  int* seg_end;       // [n_rows]
  void* cub_temp;     // [kCubTempBytes]
  size_t bytes;       // total
};

int BitmapWords(int vocab) { return (vocab + 31) / 32; }

Workspace Layout(void* base, int n_rows, int vocab) {
  const size_t items = static_cast<size_t>(n_rows) * static_cast<size_t>(vocab);
  const size_t sizes[] = {AlignUp(items * 4),
                          AlignUp(items * 4),
                          AlignUp(items * 4),
                          AlignUp(items * 4),
                          AlignUp(static_cast<size_t>(n_rows) * BitmapWords(vocab) * 4),
                          AlignUp(static_cast<size_t>(n_rows) * 4),
                          AlignUp(static_cast<size_t>(n_rows) * 4),
                          kCubTempBytes};
  char* p = static_cast<char*>(base);
  size_t offsets[8];
  size_t total = 0;
  for (int i = 0; i < 8; ++i) {
    offsets[i] = total;
    total += sizes[i];
  }
  auto at = [&](int i) -> void* { return p == nullptr ? nullptr : p + offsets[i]; };
  return Workspace{{static_cast<uint32_t*>(at(0)), static_cast<uint32_t*>(at(1))},
                   {static_cast<int*>(at(2)), static_cast<int*>(at(3))},
                   static_cast<uint32_t*>(at(4)),
                   static_cast<int*>(at(5)),
                   static_cast<int*>(at(6)),
                   at(7),
                   total};
}

// ---- device arithmetic shared with the CPU ---------------------------------------------

// worker/engine/sampler.cc's UniformDraw, bit for bit.
__device__ __forceinline__ float DeviceUniformDraw(uint64_t seed, uint64_t index) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) / 16777216.0f;  // 24 bits -> [0, 1), exact
}

// 2^(i/32) as binary64 words minus i << 47 (glibc sysdeps/ieee754/flt-32/e_exp2f_data.c).
// Global rather than __constant__: lanes index it divergently.
__device__ const uint64_t kExp2fTable[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};

// std::exp(float) as the CPU Sampler gets it from glibc (e_expf.c, x86-64 FMA variant),
// for x <= 0 (softmax arguments) and NaN. Checked against glibc 2.36 on every float in
// [-128, 0]; CUDA's expf differs from it on about 1 argument in 10^4.
__device__ __forceinline__ float GlibcExpf(float x) {
  if (x < -0x1.9fe368p6f) return 0.0f;  // below log(2^-150), -inf included
  const double kInvLn2N = 0x1.71547652b82fep+0 * 32;
  const double kShift = 0x1.8p+52;
  const double c0 = 0x1.c6af84b912394p-5 / 32 / 32 / 32;
  const double c1 = 0x1.ebfce50fac4f3p-3 / 32 / 32;
  const double c2 = 0x1.62e42ff0c52d6p-1 / 32;
  const double xd = static_cast<double>(x);
  const double z = __dmul_rn(kInvLn2N, xd);
  double kd = __dadd_rn(z, kShift);
  const uint64_t ki = static_cast<uint64_t>(__double_as_longlong(kd));
  kd = __dsub_rn(kd, kShift);
  const double r = __fma_rn(kInvLn2N, xd, -kd);
  const uint64_t t = kExp2fTable[ki % 32] + (ki << 47);
  const double s = __longlong_as_double(static_cast<long long>(t));
  const double p = __fma_rn(c0, r, c1);
  const double r2 = __dmul_rn(r, r);
  double y = __fma_rn(c2, r, 1.0);
  y = __fma_rn(p, r2, y);
  y = __dmul_rn(y, s);
  return __double2float_rn(y);
}

// ---- block building blocks (call from every thread of the block) ------------------------

struct ArgMax {
  float value;
  int id;
};

__device__ __forceinline__ bool Better(float v, int id, float best_v, int best_id) {
  return v > best_v || (v == best_v && id < best_id);
}

struct BlockShared {
  // Reductions.
  float max_value[kWarps];
  int max_id[kWarps];
  double sum[kWarps];
  ArgMax argmax;
  double total;
  // Chunk scans.
  double warp_total[kWarps];
  double warp_prefix[kWarps + 1];
  int found_index[kWarps];
  double found_cum[kWarps];
  int result_index;
  double result_cum;
  // Compaction.
  int warp_count[kWarps];
  int warp_offset[kWarps + 1];
  // Radix select.
  unsigned hist[256];
  int select_digit;
  int select_remaining;
};

__device__ __forceinline__ int Lane() { return static_cast<int>(threadIdx.x) & 31; }
__device__ __forceinline__ int Warp() { return static_cast<int>(threadIdx.x) >> 5; }

// Lowest id among the largest values of x[0, n) (std::max_element's choice).
__device__ ArgMax BlockArgMax(const float* x, int n, BlockShared& s) {
  float best_v = -INFINITY;
  int best_id = INT_MAX;
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const float v = x[i];
    if (Better(v, i, best_v, best_id)) {
      best_v = v;
      best_id = i;
    }
  }
  for (int d = 16; d > 0; d >>= 1) {
    const float v = __shfl_down_sync(kFullMask, best_v, d);
    const int id = __shfl_down_sync(kFullMask, best_id, d);
    if (Better(v, id, best_v, best_id)) {
      best_v = v;
      best_id = id;
    }
  }
  if (Lane() == 0) {
    s.max_value[Warp()] = best_v;
    s.max_id[Warp()] = best_id;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    ArgMax a{s.max_value[0], s.max_id[0]};
    for (int w = 1; w < kWarps; ++w) {
      if (Better(s.max_value[w], s.max_id[w], a.value, a.id)) a = ArgMax{s.max_value[w], s.max_id[w]};
    }
    if (a.id == INT_MAX) a = ArgMax{x[0], 0};  // all NaN: std::max_element returns the first
    s.argmax = a;
  }
  __syncthreads();
  return s.argmax;
}

__device__ double BlockSum(double v, BlockShared& s) {
  for (int d = 16; d > 0; d >>= 1) v = __dadd_rn(v, __shfl_down_sync(kFullMask, v, d));
  if (Lane() == 0) s.sum[Warp()] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < kWarps; ++w) total = __dadd_rn(total, s.sum[w]);
    s.total = total;
  }
  __syncthreads();
  return s.total;
}

__device__ __forceinline__ double WarpInclusiveSum(double v) {
  for (int d = 1; d < 32; d <<= 1) {
    const double o = __shfl_up_sync(kFullMask, v, d);
    if (Lane() >= d) v = __dadd_rn(v, o);
  }
  return v;
}

// Warp w's chunk of [0, n): [begin, end), a multiple of 32 long (but the last).
struct Chunk {
  int begin;
  int end;
};
__device__ __forceinline__ Chunk WarpChunk(int n) {
  const int size = ((n + kWarps - 1) / kWarps + 31) / 32 * 32;
  const int begin = min(n, Warp() * size);
  return Chunk{begin, min(n, begin + size)};
}

// Chunk totals of p[0, n) and their prefix (in warp order) into s.warp_prefix; returns
// the total of all n.
__device__ double ScanTotals(const float* p, int n, BlockShared& s) {
  const Chunk c = WarpChunk(n);
  double carry = 0.0;
  for (int b = c.begin; b < c.end; b += 32) {
    const int i = b + Lane();
    const double incl = WarpInclusiveSum(i < c.end ? static_cast<double>(p[i]) : 0.0);
    carry = __dadd_rn(carry, __shfl_sync(kFullMask, incl, 31));
  }
  if (Lane() == 0) s.warp_total[Warp()] = carry;
  __syncthreads();
  if (threadIdx.x == 0) {
    double acc = 0.0;
    for (int w = 0; w < kWarps; ++w) {
      s.warp_prefix[w] = acc;
      acc = __dadd_rn(acc, s.warp_total[w]);
    }
    s.warp_prefix[kWarps] = acc;
  }
  __syncthreads();
  return s.warp_prefix[kWarps];
}

struct Crossing {
  int index;   // first i < limit whose cumulative sum crosses x; limit when none does
  double cum;  // that cumulative sum
};

// After ScanTotals(p, n): the first i < limit with x < cum(i) (strict) or cum(i) >= x,
// where cum(i) = p[0] + ... + p[i] summed within the chunks ScanTotals used.
__device__ Crossing FirstCrossing(const float* p, int n, int limit, double x, bool strict, BlockShared& s) {
  const Chunk c = WarpChunk(n);
  double carry = s.warp_prefix[Warp()];
  int found = INT_MAX;
  double found_cum = 0.0;
  for (int b = c.begin; b < c.end && b < limit; b += 32) {
    const int i = b + Lane();
    const double incl = WarpInclusiveSum(i < c.end ? static_cast<double>(p[i]) : 0.0);
    const double cum = __dadd_rn(carry, incl);
    const bool hit = i < c.end && i < limit && (strict ? x < cum : cum >= x);
    const unsigned mask = __ballot_sync(kFullMask, hit);
    if (mask != 0) {
      const int lane = __ffs(mask) - 1;
      found = b + lane;
      found_cum = __shfl_sync(kFullMask, cum, lane);
      break;
    }
    carry = __dadd_rn(carry, __shfl_sync(kFullMask, incl, 31));
  }
  if (Lane() == 0) {
    s.found_index[Warp()] = found;
    s.found_cum[Warp()] = found_cum;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    s.result_index = limit;
    s.result_cum = 0.0;
    for (int w = 0; w < kWarps; ++w) {
      if (s.found_index[w] != INT_MAX) {
        s.result_index = s.found_index[w];
        s.result_cum = s.found_cum[w];
        break;
      }
    }
  }
  __syncthreads();
  return Crossing{s.result_index, s.result_cum};
}

// Copies (bits of p[i], i) for every p[i] >= threshold, in id order, to keys/ids; returns
// how many.
__device__ int CompactAtLeast(const float* p, int n, float threshold, uint32_t* keys, int* ids, BlockShared& s) {
  const Chunk c = WarpChunk(n);
  int count = 0;
  for (int b = c.begin; b < c.end; b += 32) {
    const int i = b + Lane();
    count += __popc(__ballot_sync(kFullMask, i < c.end && p[i] >= threshold));
  }
  if (Lane() == 0) s.warp_count[Warp()] = count;
  __syncthreads();
  if (threadIdx.x == 0) {
    int acc = 0;
    for (int w = 0; w < kWarps; ++w) {
      s.warp_offset[w] = acc;
      acc += s.warp_count[w];
    }
    s.warp_offset[kWarps] = acc;
  }
  __syncthreads();
  int pos = s.warp_offset[Warp()];
  const unsigned lower_lanes = (1u << Lane()) - 1u;
  for (int b = c.begin; b < c.end; b += 32) {
    const int i = b + Lane();
    const float v = i < c.end ? p[i] : 0.0f;
    const bool keep = i < c.end && v >= threshold;
    const unsigned mask = __ballot_sync(kFullMask, keep);
    if (keep) {
      const int at = pos + __popc(mask & lower_lanes);
      keys[at] = __float_as_uint(v);
      ids[at] = i;
    }
    pos += __popc(mask);
  }
  return s.warp_offset[kWarps];
}

// The k-th largest of the float bits of p[0, n) (non-negative floats order as their
// bits). REQUIRES 1 <= k <= n.
__device__ uint32_t RadixSelect(const float* p, int n, int k, BlockShared& s) {
  uint32_t prefix = 0, mask = 0;
  int remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += kThreads) s.hist[i] = 0;
    __syncthreads();
    for (int b = 0; b < n; b += kThreads) {
      const int i = b + static_cast<int>(threadIdx.x);
      const uint32_t key = i < n ? __float_as_uint(p[i]) : 0u;
      const int bin = i < n && (key & mask) == prefix ? static_cast<int>((key >> shift) & 255u) : -1;
      const unsigned peers = __match_any_sync(kFullMask, bin);
      if (bin >= 0 && Lane() == __ffs(peers) - 1) atomicAdd(&s.hist[bin], static_cast<unsigned>(__popc(peers)));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int digit = 0;
      for (int d = 255; d >= 0; --d) {
        const int in_bin = static_cast<int>(s.hist[d]);
        if (in_bin >= remaining) {
          digit = d;
          break;
        }
        remaining -= in_bin;
      }
      s.select_digit = digit;
      s.select_remaining = remaining;
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(s.select_digit) << shift;
    mask |= 255u << shift;
    remaining = s.select_remaining;
    __syncthreads();  // before the next pass clears hist
  }
  return prefix;
}

__device__ __forceinline__ bool UsesTopK(const SamplingRow& row, int vocab) { return row.top_k > 0 && row.top_k < vocab; }
__device__ __forceinline__ bool UsesTopP(const SamplingRow& row) { return row.top_p < 1.0f; }

// ---- kernels ----------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads)
    PrepareKernel(float* logits, int64_t stride, int vocab, const SamplingRow* rows, const int* history, int* tokens,
                  uint32_t* bitmap, int bitmap_words, uint32_t* keys, int* ids, int* seg_begin, int* seg_end) {
  __shared__ BlockShared s;
  const int r = blockIdx.x;
  const SamplingRow row = rows[r];
  float* x = logits + static_cast<int64_t>(r) * stride;
  const int base = r * vocab;  // the launcher checks n_rows * vocab < 2^31

  if (row.repetition_penalty != 1.0f && row.history_len > 0) {
    uint32_t* seen = bitmap + static_cast<int64_t>(r) * bitmap_words;
    for (int w = threadIdx.x; w < bitmap_words; w += kThreads) seen[w] = 0u;
    __syncthreads();
    const int* h = history + row.history_offset;
    for (int j = threadIdx.x; j < row.history_len; j += kThreads) {
      const int id = h[j];
      if (id < 0 || id >= vocab) continue;
      const uint32_t bit = 1u << (id & 31);
      if (atomicOr(&seen[id >> 5], bit) & bit) continue;  // another entry penalised it
      const float v = x[id];
      x[id] = v > 0.0f ? __fdiv_rn(v, row.repetition_penalty) : __fmul_rn(v, row.repetition_penalty);
    }
    __syncthreads();
  }

  const ArgMax top = BlockArgMax(x, vocab, s);
  auto finish = [&](int token) {
    if (threadIdx.x == 0) {
      tokens[r] = token;
      seg_begin[r] = base;
      seg_end[r] = base;
    }
  };
  if (row.temperature == 0.0f) {
    finish(top.id);
    return;
  }

  // Softmax at temperature T, as the CPU: float exp((v - max) * (1 / T)), double sum,
  // float(1 / sum), float products.
  const float inv_t = __fdiv_rn(1.0f, row.temperature);
  double local = 0.0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const float e = GlibcExpf(__fmul_rn(__fsub_rn(x[i], top.value), inv_t));
    x[i] = e;
    local = __dadd_rn(local, static_cast<double>(e));
  }
  const float inv_sum = __double2float_rn(__ddiv_rn(1.0, BlockSum(local, s)));
  for (int i = threadIdx.x; i < vocab; i += kThreads) x[i] = __fmul_rn(x[i], inv_sum);
  __syncthreads();

  const bool use_top_k = UsesTopK(row, vocab);
  const bool use_top_p = UsesTopP(row);
  if (!use_top_k && !use_top_p) {
    // Every token is a candidate, in id order.
    const double total = ScanTotals(x, vocab, s);
    const double target = __dmul_rn(static_cast<double>(DeviceUniformDraw(row.seed, row.draw_index)), total);
    const Crossing c = FirstCrossing(x, vocab, vocab, target, /*strict=*/true, s);
    finish(c.index < vocab ? c.index : vocab - 1);
    return;
  }

  float threshold = 0.0f;  // top_k >= vocab with top-p: every token
  if (use_top_k) {
    threshold = __uint_as_float(RadixSelect(x, vocab, row.top_k, s));
  } else if (row.top_k == 0 && vocab > 1) {
    threshold = __fdiv_rn(__fsub_rn(1.0f, row.top_p), static_cast<float>(vocab - 1));
  }
  const int n = CompactAtLeast(x, vocab, threshold, keys + base, ids + base, s);
  if (n == 0) {  // top_p so small that even the top token is below the cutoff
    finish(top.id);
    return;
  }
  if (threadIdx.x == 0) {
    seg_begin[r] = base;
    seg_end[r] = base + n;
  }
}

__global__ void __launch_bounds__(kThreads)
    FinishKernel(int vocab, const SamplingRow* rows, const uint32_t* keys, const int* ids, const int* seg_begin,
                 const int* seg_end, int* tokens) {
  __shared__ BlockShared s;
  const int r = blockIdx.x;
  const int begin = seg_begin[r];
  int n = seg_end[r] - begin;
  if (n == 0) return;  // finished by PrepareKernel
  const SamplingRow row = rows[r];
  const float* p = reinterpret_cast<const float*>(keys + begin);  // probabilities, most likely first
  if (UsesTopK(row, vocab) && row.top_k < n) n = row.top_k;

  const double total = ScanTotals(p, n, s);
  int kept = n;
  double kept_total = total;
  if (UsesTopP(row)) {
    const double mass = __dmul_rn(static_cast<double>(row.top_p), total);
    const Crossing c = FirstCrossing(p, n, n, mass, /*strict=*/false, s);
    if (c.index < n) {
      kept = c.index + 1;
      kept_total = c.cum;
    }
  }
  const double target = __dmul_rn(static_cast<double>(DeviceUniformDraw(row.seed, row.draw_index)), kept_total);
  const Crossing c = FirstCrossing(p, n, kept, target, /*strict=*/true, s);
  if (threadIdx.x == 0) tokens[r] = ids[begin + (c.index < kept ? c.index : kept - 1)];
}

__global__ void UniformDrawKernel(const uint64_t* seeds, const uint64_t* indices, int n, float* draws) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) draws[i] = DeviceUniformDraw(seeds[i], indices[i]);
}

}  // namespace

size_t SamplingWorkspaceBytes(int max_rows, int vocab) {
  if (max_rows < 0 || vocab < 0) return 0;
  return Layout(nullptr, max_rows, vocab).bytes;
}

Status SampleTokens(const MatrixView& logits, const SamplingRow* rows, const int* history, int* tokens,
                    void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  constexpr const char* kOp = "SampleTokens";
  if (Status st = CheckMatrix(logits, DType::kF32, -1, -1, kOp, "logits"); !st.ok()) return st;
  const int n_rows = logits.rows;
  const int vocab = logits.cols;
  if (vocab < 1) return InvalidArgument("SampleTokens: logits has no columns (vocab must be >= 1)");
  if (static_cast<int64_t>(n_rows) * vocab > INT_MAX)
    return InvalidArgument("SampleTokens: " + std::to_string(n_rows) + " rows x " + std::to_string(vocab) +
                           " vocab exceeds 2^31 - 1 candidates; sample in smaller batches");
  if (n_rows == 0) return Status::Ok();
  if (rows == nullptr) return InvalidArgument("SampleTokens: rows is null");
  if (tokens == nullptr) return InvalidArgument("SampleTokens: tokens is null");
  if (workspace == nullptr) return InvalidArgument("SampleTokens: workspace is null");
  if (reinterpret_cast<uintptr_t>(workspace) % kAlign != 0)
    return InvalidArgument("SampleTokens: workspace is not 256-byte aligned");
  const Workspace ws = Layout(workspace, n_rows, vocab);
  if (workspace_bytes < ws.bytes)
    return InvalidArgument("SampleTokens: workspace has " + std::to_string(workspace_bytes) + " bytes; " +
                           std::to_string(n_rows) + " rows of vocab " + std::to_string(vocab) + " need " +
                           std::to_string(ws.bytes) + " (SamplingWorkspaceBytes)");

  PrepareKernel<<<n_rows, kThreads, 0, stream>>>(logits.as<float>(), logits.stride, vocab, rows, history, tokens,
                                                  ws.bitmap, BitmapWords(vocab), ws.keys[0], ws.ids[0], ws.seg_begin,
                                                  ws.seg_end);
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());

  cub::DoubleBuffer<uint32_t> keys(ws.keys[0], ws.keys[1]);
  cub::DoubleBuffer<int> ids(ws.ids[0], ws.ids[1]);
  // No size query per call (host work, and nothing a captured CUDA graph could repeat):
  // the DoubleBuffer sort needs ~1 byte of temporary storage whatever the sizes, and CUB
  // answers cudaErrorInvalidValue, before launching, if kCubTempBytes were too small.
  size_t temp_bytes = kCubTempBytes;
  const cudaError_t sorted = cub::DeviceSegmentedRadixSort::SortPairsDescending(
      ws.cub_temp, temp_bytes, keys, ids, n_rows * vocab, n_rows, ws.seg_begin, ws.seg_end, 0, kKeyBits, stream);
  if (sorted == cudaErrorInvalidValue)
    return Internal("SampleTokens: the CUB segmented sort rejected its " + std::to_string(kCubTempBytes) +
                    " bytes of temporary storage (or its arguments)");
  FLOVER_CUDA_RETURN_IF_ERROR(sorted);

  FinishKernel<<<n_rows, kThreads, 0, stream>>>(vocab, rows, keys.Current(), ids.Current(), ws.seg_begin, ws.seg_end,
                                                 tokens);
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status UniformDraws(const uint64_t* seeds, const uint64_t* indices, int n, float* draws, cudaStream_t stream) {
  if (n < 0) return InvalidArgument("UniformDraws: n is " + std::to_string(n) + ", expected >= 0");
  if (n == 0) return Status::Ok();
  if (seeds == nullptr || indices == nullptr || draws == nullptr)
    return InvalidArgument("UniformDraws: seeds, indices and draws must be non-null");
  constexpr int kBlock = 256;
  UniformDrawKernel<<<(n + kBlock - 1) / kBlock, kBlock, 0, stream>>>(seeds, indices, n, draws);
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

}  // namespace flover::cuda
