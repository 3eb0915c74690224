#include "kernels/cpu/float16.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/cpu_features.h"

namespace flover::cpu {

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1F) {  // inf / NaN: keep the payload, set the quiet bit as hardware does
    bits = sign | 0x7F800000u | (mant << 13) | (mant != 0 ? 0x00400000u : 0u);
  } else if (exp != 0) {  // normal: rebias 15 -> 127
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {  // ±0
    bits = sign;
  } else {  // subnormal: mant * 2^-24, normalise into a float32 normal
    uint32_t shifts = 0;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      ++shifts;
    }
    // value = (mant / 2^10) * 2^(-14 - shifts), with mant now in [2^10, 2^11).
    bits = sign | ((127 - 14 - shifts) << 23) | ((mant & 0x3FFu) << 13);
  }
  return std::bit_cast<float>(bits);
}

uint16_t FloatToHalf(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) return sign | 0x7E00u | static_cast<uint16_t>((ax >> 13) & 0x3FFu);  // NaN
  if (ax >= 0x477FF000u) return sign | 0x7C00u;  // >= 65520 (halfway above 65504) or inf
  if (ax < 0x38800000u) {
    // Below 2^-14: a subnormal half, mant * 2^-24. The fp32 value is m * 2^(e - 150)
    // (m with its implicit bit), so the half's units are m >> (126 - e), rounded.
    if (ax <= 0x33000000u) return sign;  // at most 2^-25: rounds to 0 (2^-25 is a tie)
    const uint32_t e = ax >> 23, m = (ax & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t q = m >> shift;
    const uint32_t rest = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (q & 1u))) ++q;  // may become the smallest normal
    return sign | static_cast<uint16_t>(q);
  }
  uint32_t h = (((ax >> 23) - 112) << 10) | ((ax & 0x7FFFFFu) >> 13);
  const uint32_t rest = ax & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent
  return sign | static_cast<uint16_t>(h);
}

uint16_t FloatToBf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

namespace {

__attribute__((target("avx,f16c"))) void ConvertHalfToFloatF16c(const uint8_t* src, float* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = HalfToFloat(h);
  }
}

}  // namespace

void ConvertHalfToFloatSerial(const void* src, float* dst, size_t n) {
  const uint8_t* bytes = static_cast<const uint8_t*>(src);
  if (CpuHasF16c()) {
    ConvertHalfToFloatF16c(bytes, dst, n);
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, bytes + 2 * i, 2);  // files and every supported host are little-endian
    dst[i] = HalfToFloat(h);
  }
}

void ConvertHalfToFloat(const void* src, float* dst, size_t n) {
  constexpr size_t kChunk = size_t{1} << 16;
  const uint8_t* bytes = static_cast<const uint8_t*>(src);
  const int64_t n_chunks = static_cast<int64_t>((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) if (n_chunks > 4)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const size_t begin = static_cast<size_t>(c) * kChunk;
    ConvertHalfToFloatSerial(bytes + 2 * begin, dst + begin, std::min(kChunk, n - begin));
  }
}

}  // namespace flover::cpu
