// Private to PagedAttention (attention.h): one query head of one token over a paged KV
// cache, templated on how K/V values are read and how a block's scores are computed, so
// that the fp32 path (attention.cc) and the fp16/bf16 variants (attention.cc,
// attention_avx2.cc, attention_avx512.cc) run the same arithmetic:
//   1. scores[p] = dot(q, K[p]) for p < n_pos, one block at a time by Scores;
//   2. softmax as run.c: scores / sqrt(head_dim), max subtraction, expf, a running sum
//      in position order, division;
//   3. out[i] = sum over p in position order of scores[p] * V[p][i]: from +0.0f, one
//      fp32 multiply and one fp32 add per position (the files are built with
//      -ffp-contract=off, so no variant fuses them).
// Values::Load and Load1 widen stored values exactly to fp32, so 2 and 3 give the same
// bits for any way of reading the same values, in every instruction set.
//
// Include inside the including file's target region (if any), after including there
// the headers this one includes. Functions that take or return a Vec16 are always
// inlined, so no vector crosses a call: a file compiled for less than AVX-512 may turn
// off GCC's note on how such a call would pass it (-Wpsabi), which it gives at the end
// of the file. It uses no library function defined in a header, and
// everything is in an anonymous namespace, so each including file gets its own copy,
// compiled for that file's target.
#pragma once

#include <cmath>
#include <cstddef>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_internal.h"
#include "kernels/cpu/weight_matmul_internal.h"

namespace flover::cpu::internal {
namespace {

namespace attention_head {

inline size_t SlotOffset(const PagedKvLayer& kv, int block, int kv_head, int slot) {
  return ((static_cast<size_t>(block) * kv.n_kv_heads + kv_head) * kv.block_size + slot) *
         static_cast<size_t>(kv.head_dim);
}

// Asks for values [i0, i0 + width) of every slot of `block`'s rows (of `base`: the K or
// V pool) to be brought into L2 while earlier blocks are being read: blocks lie anywhere
// in the pool, so the hardware prefetchers only catch on within a block. (Into L2, not
// L1: prefetches into L1 fill its few miss buffers and stall; measured by
// kernels_bench's BM_PagedAttentionFusedStep.)
constexpr int kPrefetchBlocks = 2;  // blocks ahead: reading one takes less time than DRAM takes to answer

template <typename Elem>
inline void PrefetchBlock(const Elem* base, const PagedKvLayer& kv, int block, int kv_head, int i0, int width) {
  constexpr int kLineValues = 64 / sizeof(Elem);
  const Elem* rows = base + SlotOffset(kv, block, kv_head, 0) + i0;
  for (int s = 0; s < kv.block_size; ++s)
    for (int c = 0; c < width; c += kLineValues)
      __builtin_prefetch(rows + static_cast<size_t>(s) * kv.head_dim + c, 0, 2);
}

// GCC vector types: lowered to whatever vector width the including file's target has.
// The unaligned variants read rows at any element offset. (A variant whose registers are
// narrower than its Vec, and which builds a Vec from several registers, makes GCC go
// through memory: such a variant uses a Vec of its register width.)
typedef float Vec16 __attribute__((vector_size(64)));
typedef float Vec16Unaligned __attribute__((vector_size(64), aligned(4), may_alias));
typedef unsigned short U16x16Unaligned __attribute__((vector_size(32), aligned(2), may_alias));
typedef unsigned int U32x16 __attribute__((vector_size(64)));

// Values: how a Vec of stored values (Load; Vec holds 16 floats, or 8) or one value
// (Load1) is read as fp32.
struct F32Values {
  using Elem = float;
  using Vec = Vec16;
  __attribute__((always_inline)) static Vec16 Load(const float* p) {
    return *reinterpret_cast<const Vec16Unaligned*>(p);
  }
  static float Load1(const float* p) { return *p; }
};

// bf16 is the top half of an fp32: widening is a shift, in any instruction set.
struct Bf16Values {
  using Elem = unsigned short;
  using Vec = Vec16;
  __attribute__((always_inline)) static Vec16 Load(const unsigned short* p) {
    const U32x16 wide = __builtin_convertvector(*reinterpret_cast<const U16x16Unaligned*>(p), U32x16) << 16;
    return reinterpret_cast<Vec16>(wide);
  }
  static float Load1(const unsigned short* p) { return __builtin_bit_cast(float, static_cast<unsigned int>(*p) << 16); }
};

// Scores of an fp16 or bf16 K block through a MatmulWeights variant, single-threaded on
// the rows in place, one query row at a time (the kernels' path for a few dot products):
// scores[r * stride + p] = q_r · K[p] for the `rows` query rows q_r = q + r * q_stride.
class WeightScores {
 public:
  WeightScores(const WeightKernel& kernel, KvDType dtype, const float* q, int q_stride, int head_dim)
      : kernel_(kernel), q_(q), q_stride_(q_stride) {
    args_.format = dtype == KvDType::kF16 ? WeightFormat::kF16 : WeightFormat::kBF16;
    args_.x_stride = head_dim;
    args_.w_row_bytes = 2 * static_cast<int64_t>(head_dim);
    args_.n = 1;
    args_.cols = head_dim;
    args_.widened = kernel.widened;
  }
  void operator()(const unsigned short* k_rows, int count, int rows, float* scores, int stride) const {
    WeightMatmulArgs a = args_;
    a.w = reinterpret_cast<const uint8_t*>(k_rows);
    a.rows = count;
    for (int r = 0; r < rows; ++r) {
      a.x = q_ + static_cast<long>(r) * q_stride_;
      a.y = scores + static_cast<long>(r) * stride;
      kernel_.fn(a, 0, count);
    }
  }

 private:
  const WeightKernel& kernel_;
  const float* q_;
  int q_stride_;
  WeightMatmulArgs args_;
};

// out_r[0, 16 * NV) = sum over positions p < n_pos + r of probs_r[p] * V[p][i0, i0 + 16 * NV),
// in position order, for the R rows r (probs_r = probs + r * probs_stride, out_r = out +
// r * out_stride). Each V row read serves every row that attends to it. The sums stay in
// registers (through memory, every position would wait for the previous one's store).
template <int R, int NV, class Values>
__attribute__((always_inline)) inline void WeightedSumV(const PagedKvLayer& kv, const int* block_table, int kv_head,
                                                        int n_pos, const float* __restrict probs, int probs_stride,
                                                        int i0, float* __restrict out, int out_stride) {
  using Elem = typename Values::Elem;
  using Vec = typename Values::Vec;
  constexpr int kLanes = sizeof(Vec) / sizeof(float), kVecs = 16 * NV / kLanes;
  const Elem* pool = static_cast<const Elem*>(kv.v);
  Vec acc[R][kVecs] = {};
  // Positions every row attends to, block by block.
  for (int p0 = 0, b = 0; p0 < n_pos; p0 += kv.block_size, ++b) {
    const Elem* v = pool + SlotOffset(kv, block_table[b], kv_head, 0) + i0;
    const int count = kv.block_size < n_pos - p0 ? kv.block_size : n_pos - p0;
    if (p0 + kPrefetchBlocks * kv.block_size < n_pos)
      PrefetchBlock(pool, kv, block_table[b + kPrefetchBlocks], kv_head, i0, 16 * NV);
    for (int s = 0; s < count; ++s) {
      const Elem* vs = v + static_cast<size_t>(s) * kv.head_dim;
      Vec vv[kVecs];
      for (int j = 0; j < kVecs; ++j) vv[j] = Values::Load(vs + kLanes * j);
      for (int r = 0; r < R; ++r) {
        const Vec a = probs[r * probs_stride + p0 + s] - Vec{};  // x - +0 is x: a broadcast
        for (int j = 0; j < kVecs; ++j) acc[r][j] += a * vv[j];
      }
    }
  }
  // Row r's last r positions.
  for (int p = n_pos; p < n_pos + R - 1; ++p) {
    const Elem* vs = pool + SlotOffset(kv, block_table[p / kv.block_size], kv_head, p % kv.block_size) + i0;
    for (int r = 1; r < R; ++r) {
      if (p >= n_pos + r) continue;
      const Vec a = probs[r * probs_stride + p] - Vec{};
      for (int j = 0; j < kVecs; ++j) acc[r][j] += a * Values::Load(vs + kLanes * j);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < kVecs; ++j) __builtin_memcpy(out + r * out_stride + kLanes * j, &acc[r][j], sizeof(Vec));
}

// The same for head_dim % 16 trailing values (tiny heads such as stories260K's 8), one
// row: positions [0, n_pos).
template <class Values>
inline void WeightedSumVTail(const PagedKvLayer& kv, const int* block_table, int kv_head, int n_pos,
                             const float* __restrict probs, int i0, float* __restrict out) {
  using Elem = typename Values::Elem;
  const int width = kv.head_dim - i0;
  for (int l = 0; l < width; ++l) out[l] = 0.0f;
  for (int p0 = 0, b = 0; p0 < n_pos; p0 += kv.block_size, ++b) {
    const Elem* v = static_cast<const Elem*>(kv.v) + SlotOffset(kv, block_table[b], kv_head, 0) + i0;
    const int count = kv.block_size < n_pos - p0 ? kv.block_size : n_pos - p0;
    for (int s = 0; s < count; ++s) {
      const float a = probs[p0 + s];
      const Elem* vs = v + static_cast<size_t>(s) * kv.head_dim;
      for (int l = 0; l < width; ++l) out[l] += a * Values::Load1(vs + l);
    }
  }
}

// Step 2 of the header on R rows of scores in place, row r's n_pos + r of them at
// scores + r * stride. Each row's operations are run.c's; the rows' running sums are
// interleaved so that their additions overlap.
template <int R>
__attribute__((always_inline)) inline void Softmax(float* __restrict scores, int stride, int n_pos, int head_dim) {
  const float scale = sqrtf(static_cast<float>(head_dim));
  float max_score[R];
  for (int r = 0; r < R; ++r) {
    float* row = scores + r * stride;
    const int n = n_pos + r;
    for (int p = 0; p < n; ++p) row[p] /= scale;  // a separate loop: it vectorizes
    float m = -INFINITY;
    for (int p = 0; p < n; ++p) m = m < row[p] ? row[p] : m;  // std::max's comparison
    max_score[r] = m;
  }
  for (int r = 0; r < R; ++r) {
    float* row = scores + r * stride;
    for (int p = 0; p < n_pos + r; ++p) row[p] = expf(row[p] - max_score[r]);
  }
  // Separate from the expf calls, so the running sums are not spilled around them.
  float sum[R] = {};
  for (int p = 0; p < n_pos; ++p)
    for (int r = 0; r < R; ++r) sum[r] += scores[r * stride + p];
  for (int r = 1; r < R; ++r)
    for (int p = n_pos; p < n_pos + r; ++p) sum[r] += scores[r * stride + p];
  for (int r = 0; r < R; ++r) {
    float* row = scores + r * stride;
    for (int p = 0; p < n_pos + r; ++p) row[p] /= sum[r];
  }
}

// One query head of R consecutive query tokens of one sequence, the first over positions
// [0, n_pos), row r over [0, n_pos + r): steps 1-3 of the header, each row's values
// computed as they would be alone. The scores of a block are a small matrix product
// Q · K_blockᵀ (K rows are contiguous in a block): score_block(k_rows, count, R, scores,
// stride) writes query row r's `count` of them at scores + r * stride. The queries are
// only read by score_block; out_r = out + r * out_stride. scratch: R * (n_pos + R - 1)
// floats.
template <int R, class Values, class Scores>
__attribute__((always_inline)) inline void AttendRows(const PagedKvLayer& kv, const int* block_table, int kv_head,
                                                      int n_pos, const Scores& score_block, float* __restrict scratch,
                                                      float* __restrict out, int out_stride) {
  using Elem = typename Values::Elem;
  const Elem* k = static_cast<const Elem*>(kv.k);
  const Elem* v = static_cast<const Elem*>(kv.v);
  const int head_dim = kv.head_dim, block_size = kv.block_size;
  const int n_last = n_pos + R - 1;  // positions the last row attends to
  float* scores = scratch;           // row r at scores + r * n_last
  for (int b = 0; b < kPrefetchBlocks && b * block_size < n_last; ++b)
    PrefetchBlock(k, kv, block_table[b], kv_head, 0, head_dim);
  for (int p0 = 0, b = 0; p0 < n_last; p0 += block_size, ++b) {
    const int count = block_size < n_last - p0 ? block_size : n_last - p0;
    if (p0 + kPrefetchBlocks * block_size < n_last)
      PrefetchBlock(k, kv, block_table[b + kPrefetchBlocks], kv_head, 0, head_dim);
    score_block(k + SlotOffset(kv, block_table[b], kv_head, 0), count, R, scores + p0, n_last);
  }
  for (int b = 0; b < kPrefetchBlocks && b * block_size < n_last; ++b)
    PrefetchBlock(v, kv, block_table[b], kv_head, 0, head_dim);  // read once the softmax is done
  Softmax<R>(scores, n_last, n_pos, head_dim);

  // Every output value is the same sequence of a * v additions whichever path sums it.
  // All R rows in each pass over the positions, 64 / R values per pass (4 x 16 lanes of
  // sums in registers, sums enough to hide the additions' latency for one row); the
  // head_dim % 16 trailing values row by row.
  constexpr int kNV = R == 1 ? 4 : R == 2 ? 2 : 1;
  int i0 = 0;
  for (; i0 + 16 * kNV <= head_dim; i0 += 16 * kNV)
    WeightedSumV<R, kNV, Values>(kv, block_table, kv_head, n_pos, scores, n_last, i0, out + i0, out_stride);
  const int rest = (head_dim - i0) / 16;  // < kNV
  if constexpr (kNV > 3) {
    if (rest == 3) {
      WeightedSumV<R, 3, Values>(kv, block_table, kv_head, n_pos, scores, n_last, i0, out + i0, out_stride);
      i0 += 48;
    }
  }
  if constexpr (kNV > 2) {
    if (rest == 2) {
      WeightedSumV<R, 2, Values>(kv, block_table, kv_head, n_pos, scores, n_last, i0, out + i0, out_stride);
      i0 += 32;
    }
  }
  if constexpr (kNV > 1) {
    if (rest == 1) {
      WeightedSumV<R, 1, Values>(kv, block_table, kv_head, n_pos, scores, n_last, i0, out + i0, out_stride);
      i0 += 16;
    }
  }
  if (i0 < head_dim) {
    for (int r = 0; r < R; ++r)
      WeightedSumVTail<Values>(kv, block_table, kv_head, n_pos + r, scores + r * n_last, i0, out + r * out_stride + i0);
  }
}

// AttendRows for 1 <= rows <= kMaxQueryRows (attention_internal.h: every K and V row
// read serves all the rows; a prefill chunk's tokens would otherwise read the same rows
// from L2 once each).
template <class Values, class Scores>
__attribute__((always_inline)) inline void AttendRowsN(const PagedKvLayer& kv, const int* block_table, int kv_head,
                                                       int n_pos, int rows, const Scores& score_block, float* scratch,
                                                       float* out, int out_stride) {
  switch (rows) {
    case 4: AttendRows<4, Values>(kv, block_table, kv_head, n_pos, score_block, scratch, out, out_stride); return;
    case 3: AttendRows<3, Values>(kv, block_table, kv_head, n_pos, score_block, scratch, out, out_stride); return;
    case 2: AttendRows<2, Values>(kv, block_table, kv_head, n_pos, score_block, scratch, out, out_stride); return;
    default: AttendRows<1, Values>(kv, block_table, kv_head, n_pos, score_block, scratch, out, out_stride); return;
  }
}

// AttendRowsF16Avx2 and the others (attention_internal.h), with Values reading the
// cache's 16-bit values.
template <class Values>
__attribute__((always_inline)) inline void AttendRows16(const PagedKvLayer& kv, const int* block_table, int kv_head,
                                                        int n_pos, int rows, const float* q, int q_stride,
                                                        const WeightKernel& score_kernel, float* scratch, float* out,
                                                        int out_stride) {
  const WeightScores score_block(score_kernel, kv.dtype, q, q_stride, kv.head_dim);
  AttendRowsN<Values>(kv, block_table, kv_head, n_pos, rows, score_block, scratch, out, out_stride);
}

}  // namespace attention_head

}  // namespace
}  // namespace flover::cpu::internal
