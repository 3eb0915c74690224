// QuantizeWeightRows (weight_matmul.h): fp32 rows into each weight format.
//
//   fp16, bf16: round to nearest even (float16.h).
//   Q8_0: gguf-py's quantizer: d = amax / 127, q = round(x / d) half away from zero
//         (through x * (1 / d)), d stored as fp16. Equal to gguf-py's bytes.
//   Q4_0: gguf-py's quantizer: m = the value of largest magnitude (the first such), d =
//         m / -8, q = min(15, trunc(x * (1 / d) + 8.5)), d stored as fp16. Equal to
//         gguf-py's bytes.
//   Q4_K: per sub-block of 32, a scale a >= 0 and an offset b <= 0 with x ~ a * q + b,
//         q in [0, 15]: the grid q = round((x - lo) * (15 + t) / (hi - lo)) for 21
//         steps t in [-1, 1] (lo = min(0, min x), hi = max x), each refitted by least
//         squares (b clamped to <= 0), keeping the fit of least squared error (the
//         plain a = (hi - lo) / 15, b = lo if none beats it). Then as llama.cpp's
//         reference: d = max a / 63 and dmin = max(-b) / 63 as fp16, each sub-block's
//         6-bit scale and min rounded against them, and q re-rounded against the
//         dequantized d * scale and dmin * min. Not llama.cpp's bytes (its search
//         weights the errors by magnitude), the same kind of result.
// A NaN weight becomes 0 in the block formats. An inf makes its Q8_0 or Q4_0 block's
// scale inf (the block dequantizes to NaN); Q4_K scales saturate at the largest fp16.
// Never undefined behaviour.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/cpu/float16.h"
#include "kernels/cpu/weight_blocks.h"
#include "kernels/cpu/weight_matmul.h"

namespace flover::cpu {
namespace {

// v rounded half away from zero and clamped to [lo, hi]; NaN gives `nan_value`.
int RoundClamped(float v, int lo, int hi, int nan_value) {
  if (std::isnan(v)) return nan_value;
  const float r = std::round(v);
  return r <= static_cast<float>(lo) ? lo : r >= static_cast<float>(hi) ? hi : static_cast<int>(r);
}

void PutHalf(uint8_t* p, float v) {
  const uint16_t h = FloatToHalf(v);
  std::memcpy(p, &h, sizeof h);
}

void QuantizeQ8_0(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::fabs(x[j]) > amax ? std::fabs(x[j]) : amax;  // NaNs ignored
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  PutHalf(b, d);
  for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(RoundClamped(x[j] * id, -127, 127, 0)));
}

void QuantizeQ4_0(const float* x, uint8_t* b) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  PutHalf(b, d);
  uint8_t q[32];
  for (int j = 0; j < 32; ++j) {
    const float v = x[j] * id + 8.5f;  // in [0.5, 16.5] for finite x
    q[j] = std::isnan(v) ? 8 : v >= 15.0f ? 15 : v <= 0.0f ? 0 : static_cast<uint8_t>(std::trunc(v));
  }
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
}

// x ~ scale * q - min for one sub-block of 32 (see the file comment); scale, min >= 0.
void FitSubBlock(const float* x_in, float* scale, float* min) {
  double x[32];
  double lo = 0.0, hi = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < 32; ++j) {
    x[j] = std::isnan(x_in[j]) ? 0.0 : x_in[j];
    lo = std::min(lo, x[j]);
    hi = std::max(hi, x[j]);
  }
  if (!(hi > lo) || !std::isfinite(hi - lo)) {  // constant (or infinite) values
    *scale = std::isfinite(hi - lo) ? 0.0f : std::numeric_limits<float>::infinity();
    *min = static_cast<float>(-lo);
    return;
  }
  auto error = [&](const int* q, double a, double b) {
    double e = 0.0;
    for (int j = 0; j < 32; ++j) e += (a * q[j] + b - x[j]) * (a * q[j] + b - x[j]);
    return e;
  };
  int q[32];
  double best_a = (hi - lo) / 15.0, best_b = lo;
  for (int j = 0; j < 32; ++j) q[j] = static_cast<int>(std::clamp(std::round((x[j] - lo) / best_a), 0.0, 15.0));
  double best_err = error(q, best_a, best_b);
  for (int step = -10; step <= 10; ++step) {
    const double iscale = (15.0 + 0.1 * step) / (hi - lo);
    double sq = 0, sqq = 0, sx = 0, sqx = 0;
    for (int j = 0; j < 32; ++j) {
      q[j] = static_cast<int>(std::clamp(std::round((x[j] - lo) * iscale), 0.0, 15.0));
      sq += q[j];
      sqq += static_cast<double>(q[j]) * q[j];
      sx += x[j];
      sqx += q[j] * x[j];
    }
    const double det = 32.0 * sqq - sq * sq;
    if (!(det > 0.0)) continue;  // every q equal
    double a = (32.0 * sqx - sq * sx) / det, b = (sqq * sx - sq * sqx) / det;
    if (b > 0.0) {  // the offset must be <= 0 (it is stored as a min >= 0)
      b = 0.0;
      a = sqx / sqq;
    }
    if (!(a > 0.0)) continue;
    const double e = error(q, a, b);
    if (e < best_err) {
      best_err = e;
      best_a = a;
      best_b = b;
    }
  }
  *scale = static_cast<float>(best_a);
  *min = static_cast<float>(-best_b);
}

// The largest finite fp16: a block whose scale would overflow saturates instead.
constexpr float kMaxHalf = 65504.0f;

void QuantizeQ4_K(const float* x, uint8_t* b) {
  float scales[8], mins[8], max_scale = 0.0f, max_min = 0.0f;
  for (int s = 0; s < 8; ++s) {
    FitSubBlock(x + 32 * s, &scales[s], &mins[s]);
    max_scale = std::max(max_scale, scales[s]);
    max_min = std::max(max_min, mins[s]);
  }
  const uint16_t d_half = FloatToHalf(std::min(max_scale / 63.0f, kMaxHalf));
  const uint16_t dmin_half = FloatToHalf(std::min(max_min / 63.0f, kMaxHalf));
  std::memcpy(b, &d_half, 2);
  std::memcpy(b + 2, &dmin_half, 2);
  const float d = HalfToFloat(d_half), dmin = HalfToFloat(dmin_half);
  int sc[8], mn[8];
  for (int s = 0; s < 8; ++s) {
    sc[s] = d > 0.0f ? RoundClamped(scales[s] / d, 0, 63, 0) : 0;
    mn[s] = dmin > 0.0f ? RoundClamped(mins[s] / dmin, 0, 63, 0) : 0;
  }
  PackQ4KScaleMin(sc, mn, b + kQ4_KScalesOffset);
  uint8_t* qs = b + kQ4_KQsOffset;
  std::memset(qs, 0, 128);
  for (int s = 0; s < 8; ++s) {
    // The values the block will dequantize to are ds * q - dm (weight_dequantize.cc).
    const float ds = d * static_cast<float>(sc[s]), dm = dmin * static_cast<float>(mn[s]);
    for (int l = 0; l < 32; ++l) {
      const int q = ds > 0.0f ? RoundClamped((x[32 * s + l] + dm) / ds, 0, 15, 0) : 0;
      qs[32 * (s / 2) + l] |= static_cast<uint8_t>(q << (4 * (s % 2)));
    }
  }
}

void QuantizeRow(WeightFormat format, const float* x, int64_t cols, uint8_t* out) {
  switch (format) {
    case WeightFormat::kF32: std::memcpy(out, x, sizeof(float) * cols); return;
    case WeightFormat::kF16:
      for (int64_t j = 0; j < cols; ++j) {
        const uint16_t h = FloatToHalf(x[j]);
        std::memcpy(out + 2 * j, &h, 2);
      }
      return;
    case WeightFormat::kBF16:
      for (int64_t j = 0; j < cols; ++j) {
        const uint16_t h = FloatToBf16(x[j]);
        std::memcpy(out + 2 * j, &h, 2);
      }
      return;
    case WeightFormat::kQ8_0:
      for (int64_t b = 0; b < cols / 32; ++b) QuantizeQ8_0(x + 32 * b, out + b * kQ8_0Bytes);
      return;
    case WeightFormat::kQ4_0:
      for (int64_t b = 0; b < cols / 32; ++b) QuantizeQ4_0(x + 32 * b, out + b * kQ4_0Bytes);
      return;
    case WeightFormat::kQ4_K:
      for (int64_t b = 0; b < cols / 256; ++b) QuantizeQ4_K(x + 256 * b, out + b * kQ4_KBytes);
      return;
  }
}

}  // namespace

void QuantizeWeightRows(WeightFormat format, const float* x, int64_t n_rows, int64_t cols, void* out) {
  const int64_t row_bytes = WeightRowBytes(format, cols);  // aborts unless whole blocks
  uint8_t* bytes = static_cast<uint8_t*>(out);
#pragma omp parallel for schedule(dynamic, 16) if (n_rows * cols > (int64_t{1} << 16))
  for (int64_t r = 0; r < n_rows; ++r) QuantizeRow(format, x + r * cols, cols, bytes + r * row_bytes);
}

}  // namespace flover::cpu
