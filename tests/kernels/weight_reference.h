// Test-side references for the weight formats (kernels/cpu/weight_matmul.h), written
// from the specifications (the ggml block layouts in weight_blocks.h, the canonical
// arithmetic in weight_matmul_internal.h) without the kernels' code: block fields are
// parsed here, fp16 is decoded with ldexp, rounding is std::nearbyint, the fused
// multiply-adds are std::fma, one element at a time.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/weight_matmul.h"

namespace flover::testing {

using cpu::WeightFormat;

// binary16 -> binary32 from the definition (NaN: a quiet NaN, payload not kept).
inline float RefHalf(uint16_t h) {
  const float sign = (h & 0x8000) ? -1.0f : 1.0f;
  const int exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  if (exp == 0x1F) return mant != 0 ? std::nanf("") : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -24);
  return sign * std::ldexp(static_cast<float>(mant + 1024), exp - 25);
}

inline uint16_t U16At(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// One Q4_K block parsed: 6-bit scales and mins of the 8 sub-blocks, the 256 nibbles.
struct RefQ4KBlock {
  float d = 0, dmin = 0;
  int scale[8] = {}, min[8] = {};
  int q[256] = {};
};

inline RefQ4KBlock ParseQ4K(const uint8_t* b) {
  RefQ4KBlock k;
  k.d = RefHalf(U16At(b));
  k.dmin = RefHalf(U16At(b + 2));
  const uint8_t* sc = b + 4;  // 12 bytes
  for (int s = 0; s < 8; ++s) {
    if (s < 4) {
      k.scale[s] = sc[s] % 64;
      k.min[s] = sc[4 + s] % 64;
    } else {
      k.scale[s] = sc[8 + (s - 4)] % 16 + 16 * (sc[s - 4] / 64);
      k.min[s] = sc[8 + (s - 4)] / 16 + 16 * (sc[s] / 64);
    }
  }
  const uint8_t* qs = b + 16;
  for (int j = 0; j < 256; ++j) {
    const int chunk = j / 64, within = j % 64;  // 64 values per 32 bytes
    const uint8_t byte = qs[32 * chunk + within % 32];
    k.q[j] = within < 32 ? byte % 16 : byte / 16;
  }
  return k;
}

// The integer weights and per-32 scales of a Q8_0 or Q4_0 row.
inline void ParseBlocks32(WeightFormat f, const uint8_t* row, int cols, std::vector<int>& w, std::vector<float>& dw) {
  const int bytes = f == WeightFormat::kQ8_0 ? 34 : 18;
  w.assign(cols, 0);
  dw.assign(cols / 32, 0.0f);
  for (int b = 0; b < cols / 32; ++b) {
    const uint8_t* blk = row + b * bytes;
    dw[b] = RefHalf(U16At(blk));
    for (int j = 0; j < 32; ++j) {
      w[32 * b + j] = f == WeightFormat::kQ8_0 ? static_cast<int8_t>(blk[2 + j])
                                               : (j < 16 ? blk[2 + j] % 16 : blk[2 + j - 16] / 16) - 8;
    }
  }
}

// W's values as fp32 from the layouts (the reference dequantization for error bounds).
inline std::vector<double> RefDequantizeRow(WeightFormat f, const uint8_t* row, int cols) {
  std::vector<double> v(cols);
  if (f == WeightFormat::kQ8_0 || f == WeightFormat::kQ4_0) {
    std::vector<int> w;
    std::vector<float> dw;
    ParseBlocks32(f, row, cols, w, dw);
    for (int j = 0; j < cols; ++j) v[j] = static_cast<double>(dw[j / 32]) * w[j];
  } else if (f == WeightFormat::kQ4_K) {
    for (int b = 0; b < cols / 256; ++b) {
      const RefQ4KBlock k = ParseQ4K(row + 144 * b);
      for (int j = 0; j < 256; ++j)
        v[256 * b + j] = static_cast<double>(k.d) * k.scale[j / 32] * k.q[j] - static_cast<double>(k.dmin) * k.min[j / 32];
    }
  } else if (f == WeightFormat::kF16) {
    for (int j = 0; j < cols; ++j) v[j] = RefHalf(U16At(row + 2 * j));
  } else if (f == WeightFormat::kBF16) {
    for (int j = 0; j < cols; ++j) v[j] = std::bit_cast<float>(static_cast<uint32_t>(U16At(row + 2 * j)) << 16);
  } else {
    for (int j = 0; j < cols; ++j) {
      float x;
      std::memcpy(&x, row + 4 * j, 4);
      v[j] = x;
    }
  }
  return v;
}

// A row of activations quantized per step 1 of the canonical arithmetic.
struct RefActivations {
  int block = 0;
  std::vector<int> q;    // [cols]
  std::vector<float> d;  // [cols / block]
  std::vector<int> t;    // [cols / 32]: sums of 32 q's
};

inline RefActivations RefQuantizeActivations(const float* x, int cols, int block) {
  RefActivations r;
  r.block = block;
  r.q.assign(cols, 0);
  r.d.assign(cols / block, 0.0f);
  for (int b = 0; b < cols / block; ++b) {
    uint32_t a_bits = 0;
    for (int j = 0; j < block; ++j) a_bits = std::max(a_bits, std::bit_cast<uint32_t>(x[b * block + j]) & 0x7FFFFFFFu);
    const float a = std::bit_cast<float>(a_bits);
    if (!std::isnan(a) && a < std::ldexp(1.0f, -96)) continue;  // d = 0, q = 0
    r.d[b] = a / 127.0f;
    if (!std::isfinite(a)) continue;
    const float id = 127.0f / a;
    for (int j = 0; j < block; ++j) r.q[b * block + j] = static_cast<int>(std::nearbyint(x[b * block + j] * id));
  }
  r.t.assign(cols / 32, 0);
  for (int j = 0; j < cols; ++j) r.t[j / 32] += r.q[j];
  return r;
}

// The canonical dot product of one W row (Q8_0, Q4_0 or Q4_K) with one quantized row.
inline float RefQuantDot(WeightFormat f, const uint8_t* row, int cols, const RefActivations& x) {
  if (f == WeightFormat::kQ4_K) {  // one accumulator, whole sub-blocks in int
    float sum = 0.0f;
    for (int b = 0; b < cols / 256; ++b) {
      const RefQ4KBlock k = ParseQ4K(row + 144 * b);
      int p = 0, m = 0;
      for (int sub = 0; sub < 8; ++sub) {
        int dot = 0;
        for (int i = 0; i < 32; ++i) dot += k.q[32 * sub + i] * x.q[256 * b + 32 * sub + i];
        p += k.scale[sub] * dot;
        m += k.min[sub] * x.t[8 * b + sub];
      }
      const float s = k.d * x.d[b];
      const float sm = -(k.dmin * x.d[b]);
      sum = std::fma(static_cast<float>(p), s, sum);
      sum = std::fma(static_cast<float>(m), sm, sum);
    }
    return sum;
  }
  std::vector<int> w;
  std::vector<float> dw;
  ParseBlocks32(f, row, cols, w, dw);
  float sum = 0.0f;
  for (int b = 0; b < cols / 32; ++b) {
    int p = 0;
    for (int j = 0; j < 32; ++j) p += w[32 * b + j] * x.q[32 * b + j];
    sum = std::fma(static_cast<float>(p), dw[b] * x.d[b], sum);
  }
  return sum;
}

inline int ActivationBlock(WeightFormat f) { return f == WeightFormat::kQ4_K ? 256 : 32; }

// y[n, rows] (+)= x · Wᵀ by the reference canonical arithmetic. W: rows of row_bytes.
inline void RefMatmulQuant(WeightFormat f, const std::vector<float>& x, const std::vector<uint8_t>& w, int n,
                           int rows, int cols, std::vector<float>& y, bool accumulate) {
  const int64_t row_bytes = cpu::WeightRowBytes(f, cols);
  for (int r = 0; r < n; ++r) {
    const RefActivations xq = RefQuantizeActivations(x.data() + static_cast<size_t>(r) * cols, cols, ActivationBlock(f));
    for (int o = 0; o < rows; ++o) {
      const float s = RefQuantDot(f, w.data() + o * row_bytes, cols, xq);
      float& dst = y[static_cast<size_t>(r) * rows + o];
      dst = accumulate ? dst + s : s;
    }
  }
}

// A bound on |y - x · dequant(W)ᵀ| for one element of an int8 format (dequant(W) and
// the product exact, as RefDequantizeRow's doubles give them), from the
// activations' quantization (each x_j is off by at most half its block's step d, plus
// the roundings of d and of x_j * (127 / a)) and the fp32 arithmetic (one rounding per
// product of scales, per fma, per level of the lane tree and for the final add, each
// relative to the sum of the magnitudes of the terms).
inline double RefQuantErrorBound(WeightFormat f, const uint8_t* row, int cols, const float* x, double y0) {
  const RefActivations xq = RefQuantizeActivations(x, cols, ActivationBlock(f));
  const std::vector<double> w = RefDequantizeRow(f, row, cols);
  const double u = std::ldexp(1.0, -24);
  double quantization = 0.0, magnitude = std::fabs(y0);
  for (int j = 0; j < cols; ++j) {
    const double d = xq.d[j / xq.block];
    quantization += std::fabs(w[j]) * (0.5 * d + 4 * u * 127 * d);
  }
  if (f == WeightFormat::kQ4_K) {
    for (int b = 0; b < cols / 256; ++b) {
      const RefQ4KBlock k = ParseQ4K(row + 144 * b);
      for (int j = 0; j < 256; ++j) {
        const double xj = std::fabs(static_cast<double>(xq.d[b]) * xq.q[256 * b + j]);
        magnitude += (std::fabs(static_cast<double>(k.d) * k.scale[j / 32] * k.q[j]) +
                      std::fabs(static_cast<double>(k.dmin) * k.min[j / 32])) * xj;
      }
    }
  } else {
    for (int j = 0; j < cols; ++j) magnitude += std::fabs(w[j] * xq.d[j / 32] * xq.q[j]);
  }
  // One accumulator: at most 2 fmas per block and the conversion of Q4_K's int sum (which
  // may exceed 2^24), the product of the scales and the final add.
  const double steps = 3.0 * (cols / ActivationBlock(f)) + 4;
  return quantization + steps * u * magnitude;
}

// Bits of a float, for exact comparisons (-0.0 != 0.0); NaNs compare equal to NaNs.
inline bool SameBitsOrBothNaN(float a, float b) {
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b) || (std::isnan(a) && std::isnan(b));
}

// Random bytes for `rows` rows of `cols` values of a format: for a block format every
// field random but the fp16 scales, which are finite, of either sign, with magnitudes in
// [2^-12, 2^-2] (Q4_K: d, dmin >= 0 as the quantizers make them, though any sign works);
// for fp32, fp16 and bf16 every bit random (NaNs and infs included).
inline std::vector<uint8_t> RandomBlocks(WeightFormat f, int rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(static_cast<size_t>(rows) * cpu::WeightRowBytes(f, cols));
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  auto put_half = [&](uint8_t* p, bool positive) {
    const uint16_t exp = static_cast<uint16_t>(3 + rng() % 11);  // 2^-12 .. 2^-2
    uint16_t h = static_cast<uint16_t>((exp << 10) | (rng() & 0x3FF));
    if (!positive && (rng() & 1)) h |= 0x8000;
    p[0] = static_cast<uint8_t>(h);
    p[1] = static_cast<uint8_t>(h >> 8);
  };
  const int block_bytes = cpu::WeightBlockBytes(f);
  if (cpu::WeightBlockValues(f) == 1) return bytes;  // fp32, fp16, bf16: any bits
  for (size_t off = 0; off < bytes.size(); off += block_bytes) {
    if (f == WeightFormat::kQ4_K) {
      put_half(&bytes[off], true);
      put_half(&bytes[off + 2], true);
    } else {
      put_half(&bytes[off], false);
    }
  }
  return bytes;
}

}  // namespace flover::testing
