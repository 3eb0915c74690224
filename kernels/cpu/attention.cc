// PagedAttention and WriteKv: the fp32 path (one function cloned per instruction set),
// the portable variant of the fp16/bf16 paths and the choice between the 16-bit
// variants (attention_internal.h). The arithmetic is in attention_head.h.
#include "kernels/cpu/attention.h"

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/attention_internal.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/float16.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/weight_matmul_internal.h"
#pragma GCC diagnostic ignored "-Wpsabi"  // Vec16 never crosses a call (attention_head.h)
// After every other header: its copy of the arithmetic is compiled for this file.
#include "kernels/cpu/attention_head.h"

namespace flover::cpu {
namespace internal {
namespace {

using attention_head::SlotOffset;
using attention_head::U16x16Unaligned;
using attention_head::U32x16;
using attention_head::Vec16;

// Scores of an fp32 K block: the process's Matmul kernel, single-threaded, in place, one
// query row at a time (its path for a few dot products; WeightScores's contract).
struct MatmulScores {
  const MatmulKernel& dot;
  const float* q;
  int q_stride;
  int head_dim;
  void operator()(const float* k_rows, int count, int rows, float* scores, int stride) const {
    for (int r = 0; r < rows; ++r) {
      dot.fn(q + static_cast<long>(r) * q_stride, head_dim, k_rows, scores + static_cast<long>(r) * stride, 1, head_dim,
             count, 0, count, false);
    }
  }
};

// One query head of `rows` tokens of an fp32 cache (AttendRows16Fn's contract without the
// score kernel). Cloned per ISA for wider vectors; its lane-wise arithmetic gives the
// same bits in every clone, and the scores are the Matmul kernel's.
__attribute__((target_clones("avx512f", "avx2", "default"))) void AttendRowsF32(const PagedKvLayer& kv,
                                                                                const int* block_table, int kv_head,
                                                                                int n_pos, int rows, const float* q,
                                                                                int q_stride, float* scratch,
                                                                                float* out, int out_stride) {
  const MatmulScores score_block{SelectedMatmulKernel(), q, q_stride, kv.head_dim};
  attention_head::AttendRowsN<attention_head::F32Values>(kv, block_table, kv_head, n_pos, rows, score_block, scratch,
                                                         out, out_stride);
}

// fp16 widened without F16C, exactly (HalfToFloat's values, NaNs made quiet alike):
// the exponent and mantissa move to fp32's positions and are rebiased; inf/NaN get the
// all-ones exponent; zeros and subnormals m * 2^-24 are computed as
// (2^-14 + m * 2^-24) - 2^-14 in fp32, which is exact.
struct HalfValuesPortable {
  using Elem = unsigned short;
  using Vec = Vec16;
  __attribute__((always_inline)) static Vec16 Load(const unsigned short* p) {
    const U32x16 x = __builtin_convertvector(*reinterpret_cast<const U16x16Unaligned*>(p), U32x16);
    const U32x16 sign = (x & 0x8000u) << 16;
    const U32x16 em = (x & 0x7FFFu) << 13;
    const U32x16 exponent = em & 0x0F800000u;
    const U32x16 is_max = reinterpret_cast<U32x16>(exponent == 0x0F800000u);  // inf or NaN: all ones
    const U32x16 is_min = reinterpret_cast<U32x16>(exponent == 0u);           // zero or subnormal
    const U32x16 quiet = reinterpret_cast<U32x16>((em & 0x007FE000u) != 0u) & is_max & 0x00400000u;
    const U32x16 normal = (em + 0x38000000u + (is_max & 0x38000000u)) | quiet;
    const Vec16 small = reinterpret_cast<Vec16>(em + 0x38800000u) - 0x1p-14f;
    const U32x16 bits = (is_min & reinterpret_cast<U32x16>(small)) | (~is_min & normal);
    return reinterpret_cast<Vec16>(bits | sign);
  }
  static float Load1(const unsigned short* p) { return HalfToFloat(*p); }
};

// Scratch for the scores of one head: at least n floats of the calling thread, grown to
// the longest context seen by the thread, then reused.
float* ScoresScratch(long n) {
  thread_local std::vector<float> scores;
  if (scores.size() < static_cast<size_t>(n)) scores.resize(n);
  return scores.data();
}

// Calls attend(kv_head, n_pos, rows, q, scratch, out) for each head of the call and each
// group of up to kMaxQueryRows consecutive tokens, the group's first token at n_pos
// positions.
template <class Attend>
void ForEachHead(const PagedKvLayer& kv, int start_pos, int n_tokens, const float* q, int q_stride, float* out,
                 int out_stride, int n_heads, int head_begin, int head_end, const Attend& attend) {
  if (n_tokens <= 0 || head_begin >= head_end) return;
  const int group = n_heads / kv.n_kv_heads;
  float* scratch = ScoresScratch(AttendRowsScratch(start_pos + n_tokens, kMaxQueryRows));
  for (int t = 0; t < n_tokens; t += kMaxQueryRows) {
    const int rows = n_tokens - t < kMaxQueryRows ? n_tokens - t : kMaxQueryRows;
    for (int h = head_begin; h < head_end; ++h) {
      const size_t head_offset = static_cast<size_t>(h) * kv.head_dim;
      attend(h / group, start_pos + t + 1, rows, q + static_cast<size_t>(t) * q_stride + head_offset, scratch,
             out + static_cast<size_t>(t) * out_stride + head_offset);
    }
  }
}

[[noreturn]] void Die(const char* what, const PagedKvLayer& kv) {
  // flover_kernels_cpu sits below flover_common, so no FLOVER_CHECK here.
  std::fprintf(stderr, "flover: PagedAttention: %s (KV dtype %d)\n", what, static_cast<int>(kv.dtype));
  std::abort();
}

WeightFormat FormatOf(KvDType dtype) { return dtype == KvDType::kF16 ? WeightFormat::kF16 : WeightFormat::kBF16; }

bool Always() { return true; }
bool HasAvx2FmaF16c() { return CpuHasAvx2Fma() && CpuHasF16c(); }
bool HasAvx512F16c() { return CpuHasAvx512() && CpuHasF16c(); }

struct Variant {
  AttentionKernel kernel;  // functions set whether or not the CPU can run them
  bool (*supported)();
};

constexpr Variant kVariants[] = {
    {{"avx512", AttendRowsF16Avx512, AttendRowsBf16Avx512}, HasAvx512F16c},
    {{"avx2", AttendRowsF16Avx2, AttendRowsBf16Avx2}, HasAvx2FmaF16c},
    {{"generic", AttendRowsF16Generic, AttendRowsBf16Generic}, Always},
};

AttentionKernel SelectKernel() {
  // The variants at or below the level of the process's Matmul kernel, best first.
  const char* level = SelectedMatmulKernel().name;
  bool reached = false;
  for (const Variant& v : kVariants) {
    reached = reached || std::strcmp(v.kernel.name, level) == 0;
    if (reached && v.supported()) return v.kernel;
  }
  return kVariants[2].kernel;  // an unknown level: the portable variant runs anywhere
}

}  // namespace

void AttendRowsF16Generic(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos, int rows,
                          const float* q, int q_stride, const WeightKernel& score_kernel, float* scratch, float* out,
                          int out_stride) {
  attention_head::AttendRows16<HalfValuesPortable>(kv, block_table, kv_head, n_pos, rows, q, q_stride, score_kernel,
                                                   scratch, out, out_stride);
}

void AttendRowsBf16Generic(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos, int rows,
                           const float* q, int q_stride, const WeightKernel& score_kernel, float* scratch, float* out,
                           int out_stride) {
  attention_head::AttendRows16<attention_head::Bf16Values>(kv, block_table, kv_head, n_pos, rows, q, q_stride,
                                                           score_kernel, scratch, out, out_stride);
}

AttentionKernel FindAttentionKernel(const char* name) {
  for (const Variant& v : kVariants) {
    if (std::strcmp(v.kernel.name, name) == 0) return v.supported() ? v.kernel : AttentionKernel{v.kernel.name};
  }
  return {};
}

const AttentionKernel& SelectedAttentionKernel() {
  static const AttentionKernel kernel = SelectKernel();
  return kernel;
}

void PagedAttention16WithKernels(const AttentionKernel& kernel, const WeightKernel& score_kernel,
                                 const PagedKvLayer& kv, const int* block_table, int start_pos, int n_tokens,
                                 const float* q, int q_stride, float* out, int out_stride, int n_heads, int head_begin,
                                 int head_end) {
  if (kv.dtype != KvDType::kF16 && kv.dtype != KvDType::kBF16) Die("not a 16-bit cache", kv);
  const AttendRows16Fn attend_rows = kv.dtype == KvDType::kF16 ? kernel.f16 : kernel.bf16;
  if (attend_rows == nullptr || score_kernel.fn == nullptr) Die("no kernel for this CPU", kv);
  ForEachHead(kv, start_pos, n_tokens, q, q_stride, out, out_stride, n_heads, head_begin, head_end,
              [&](int kv_head, int n_pos, int rows, const float* q_head, float* scratch, float* out_head) {
                attend_rows(kv, block_table, kv_head, n_pos, rows, q_head, q_stride, score_kernel, scratch, out_head,
                            out_stride);
              });
}

}  // namespace internal

const char* KvDTypeName(KvDType dtype) {
  switch (dtype) {
    case KvDType::kF32: return "fp32";
    case KvDType::kF16: return "fp16";
    case KvDType::kBF16: return "bf16";
  }
  return "?";
}

const char* PagedAttentionKernelName(KvDType dtype) {
  return dtype == KvDType::kF32 ? internal::SelectedMatmulKernel().name : internal::SelectedAttentionKernel().name;
}

namespace {

// FloatToBf16 written without a branch, so that the loop over a row vectorizes: a NaN
// keeps its top bits and is made quiet, anything else rounds to nearest even.
inline uint16_t NarrowToBf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t rounded = (x + 0x7FFFu + ((x >> 16) & 1u)) >> 16;
  const uint32_t nan = (x >> 16) | 0x0040u;
  return static_cast<uint16_t>((x & 0x7FFFFFFFu) > 0x7F800000u ? nan : rounded);
}

// Copies or rounds n values of fp32 into the cache's type, as float16.h rounds them.
void StoreValues(KvDType dtype, const float* src, void* dst, size_t index, int n) {
  switch (dtype) {
    case KvDType::kF32: std::memcpy(static_cast<float*>(dst) + index, src, sizeof(float) * n); return;
    case KvDType::kF16: {
      uint16_t* d = static_cast<uint16_t*>(dst) + index;
      if (CpuHasF16c()) {
        internal::NarrowToHalfF16c(src, d, n);
      } else {
        for (int i = 0; i < n; ++i) d[i] = FloatToHalf(src[i]);
      }
      return;
    }
    case KvDType::kBF16: {
      uint16_t* d = static_cast<uint16_t*>(dst) + index;
      for (int i = 0; i < n; ++i) d[i] = NarrowToBf16(src[i]);
      return;
    }
  }
}

}  // namespace

void WriteKv(const PagedKvLayer& kv, const int* block_table, int start_pos, int n_tokens, const float* k_rows,
             const float* v_rows, int row_stride) {
  for (int t = 0; t < n_tokens; ++t) {
    const int pos = start_pos + t;
    const int block = block_table[pos / kv.block_size], slot = pos % kv.block_size;
    const float* k_src = k_rows + static_cast<size_t>(t) * row_stride;
    const float* v_src = v_rows + static_cast<size_t>(t) * row_stride;
    for (int h = 0; h < kv.n_kv_heads; ++h) {
      const size_t dst = internal::SlotOffset(kv, block, h, slot);
      StoreValues(kv.dtype, k_src + static_cast<size_t>(h) * kv.head_dim, kv.k, dst, kv.head_dim);
      StoreValues(kv.dtype, v_src + static_cast<size_t>(h) * kv.head_dim, kv.v, dst, kv.head_dim);
    }
  }
}

void PagedAttention(const PagedKvLayer& kv, const int* block_table, int start_pos, int n_tokens, const float* q,
                    int q_stride, float* out, int out_stride, int n_heads, int head_begin, int head_end) {
  if (kv.dtype == KvDType::kF32) {
    internal::ForEachHead(kv, start_pos, n_tokens, q, q_stride, out, out_stride, n_heads, head_begin, head_end,
                          [&](int kv_head, int n_pos, int rows, const float* q_head, float* scratch, float* out_head) {
                            internal::AttendRowsF32(kv, block_table, kv_head, n_pos, rows, q_head, q_stride, scratch,
                                                    out_head, out_stride);
                          });
    return;
  }
  internal::PagedAttention16WithKernels(
      internal::SelectedAttentionKernel(), internal::SelectedWeightKernel(internal::FormatOf(kv.dtype)), kv,
      block_table, start_pos, n_tokens, q, q_stride, out, out_stride, n_heads, head_begin, head_end);
}

}  // namespace flover::cpu
