// The ggml block layouts of the quantized weight formats, byte for byte as GGUF stores
// them (little-endian, no alignment), and the small helpers that read their fields.
// Shared by the weight kernels, their quantizers and the GGUF loader (which also reads
// Q5_K, whose scales and mins are packed as Q4_K's).
//
//   Q8_0  34 B / 32 values:  fp16 d, 32 x int8 q;                 x = d * q
//   Q4_0  18 B / 32 values:  fp16 d, 16 B of 4-bit q (value j: low nibble of byte j,
//                            value j + 16: its high nibble);       x = d * (q - 8)
//   Q4_K 144 B / 256 values: fp16 d, fp16 dmin, 12 B of 6-bit scales and mins of 8
//                            sub-blocks of 32 (UnpackQ4KScaleMin), 128 B of 4-bit q:
//                            sub-blocks 2k and 2k + 1 are the low and high nibbles of
//                            bytes [32k, 32k + 32);  x = (d * scale) * q - (dmin * min)
//
// Thread-safety: free functions without shared state.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/float16.h"

namespace flover::cpu {

inline constexpr int kQ8_0Bytes = 34;
inline constexpr int kQ4_0Bytes = 18;
inline constexpr int kQ4_KBytes = 144;
inline constexpr int kQ4_KScalesOffset = 4;  // the 12 bytes of scales and mins
inline constexpr int kQ4_KQsOffset = 16;     // the 128 bytes of 4-bit q

// The fp16 at p (any alignment) as fp32.
inline float LoadHalfAt(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return HalfToFloat(h);
}

// Scale and min (6 bits each) of sub-block s (0..7) of a Q4_K or Q5_K block, from its 12
// packed bytes: bytes 0-3 hold the scales of sub-blocks 0-3 in their low 6 bits, bytes
// 4-7 the mins; sub-blocks 4-7 take their low 4 bits from bytes 8-11 (scale: low nibble,
// min: high nibble) and their high 2 bits from the top bits of bytes 0-3 (scale) and 4-7
// (min).
inline void UnpackQ4KScaleMin(const uint8_t* packed, int s, int* scale, int* min) {
  if (s < 4) {
    *scale = packed[s] & 0x3F;
    *min = packed[s + 4] & 0x3F;
  } else {
    *scale = (packed[s + 4] & 0x0F) | ((packed[s - 4] >> 6) << 4);
    *min = (packed[s + 4] >> 4) | ((packed[s] >> 6) << 4);
  }
}

// The inverse of UnpackQ4KScaleMin: the 12 packed bytes of eight 6-bit scales and mins
// (values in [0, 63]). Every bit of the 12 bytes is a field, so packing the unpacked
// fields of any 12 bytes gives them back.
inline void PackQ4KScaleMin(const int (&scale)[8], const int (&min)[8], uint8_t* packed) {
  for (int s = 0; s < 4; ++s) {
    packed[s] = static_cast<uint8_t>((scale[s] & 0x3F) | ((scale[s + 4] >> 4) << 6));
    packed[s + 4] = static_cast<uint8_t>((min[s] & 0x3F) | ((min[s + 4] >> 4) << 6));
    packed[s + 8] = static_cast<uint8_t>((scale[s + 4] & 0x0F) | ((min[s + 4] & 0x0F) << 4));
  }
}

// All eight scales and mins of a Q4_K block at once, UnpackQ4KScaleMin's values as
// bytes in four little-endian words: scales 0-3, scales 4-7, mins 0-3, mins 4-7 (the
// SIMD kernels load them into one vector). Word arithmetic on the same bit fields.
struct Q4KScaleMinWords {
  uint32_t scales_lo, scales_hi, mins_lo, mins_hi;
};
inline Q4KScaleMinWords UnpackQ4KScaleMinWords(const uint8_t* packed) {
  static_assert(std::endian::native == std::endian::little, "byte order of the packed words");
  uint32_t a, b, c;  // bytes 0-3, 4-7, 8-11
  std::memcpy(&a, packed, 4);
  std::memcpy(&b, packed + 4, 4);
  std::memcpy(&c, packed + 8, 4);
  constexpr uint32_t kLow6 = 0x3F3F3F3F, kLow4 = 0x0F0F0F0F, kLow2 = 0x03030303;
  return {a & kLow6, (c & kLow4) | (((a >> 6) & kLow2) << 4), b & kLow6, ((c >> 4) & kLow4) | (((b >> 6) & kLow2) << 4)};
}

}  // namespace flover::cpu
