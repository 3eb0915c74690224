#include "worker/model/gguf_quant.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace flover {
namespace {

// Ids, names and sizes as in ggml (and gguf-py's GGML_QUANT_SIZES); ids 4, 5 and 31-33
// were removed from ggml, 36-38 are not in GGUF files.
GgmlType TypeOf(uint32_t id) {
  switch (id) {
    case 0: return {"F32", 1, 4, true};
    case 1: return {"F16", 1, 2, true};
    case 2: return {"Q4_0", 32, 18, true};
    case 3: return {"Q4_1", 32, 20, true};
    case 6: return {"Q5_0", 32, 22, true};
    case 7: return {"Q5_1", 32, 24, true};
    case 8: return {"Q8_0", 32, 34, true};
    case 9: return {"Q8_1", 32, 36, false};
    case 10: return {"Q2_K", 256, 84, false};
    case 11: return {"Q3_K", 256, 110, false};
    case 12: return {"Q4_K", 256, 144, true};
    case 13: return {"Q5_K", 256, 176, true};
    case 14: return {"Q6_K", 256, 210, true};
    case 15: return {"Q8_K", 256, 292, false};
    case 16: return {"IQ2_XXS", 256, 66, false};
    case 17: return {"IQ2_XS", 256, 74, false};
    case 18: return {"IQ3_XXS", 256, 98, false};
    case 19: return {"IQ1_S", 256, 50, false};
    case 20: return {"IQ4_NL", 32, 18, false};
    case 21: return {"IQ3_S", 256, 110, false};
    case 22: return {"IQ2_S", 256, 82, false};
    case 23: return {"IQ4_XS", 256, 136, false};
    case 24: return {"I8", 1, 1, false};
    case 25: return {"I16", 1, 2, false};
    case 26: return {"I32", 1, 4, false};
    case 27: return {"I64", 1, 8, false};
    case 28: return {"F64", 1, 8, false};
    case 29: return {"IQ1_M", 256, 56, false};
    case 30: return {"BF16", 1, 2, true};
    case 34: return {"TQ1_0", 256, 54, false};
    case 35: return {"TQ2_0", 256, 66, false};
    case 39: return {"MXFP4", 32, 17, false};
    case 40: return {"NVFP4", 64, 36, false};
    case 41: return {"Q1_0", 128, 18, false};
    default: return {nullptr, 1, 0, false};
  }
}

constexpr uint32_t kMaxTypeId = 41;

// The table above as static storage, so FindGgmlType can hand out pointers.
struct TypeTable {
  GgmlType types[kMaxTypeId + 1];
  TypeTable() {
    for (uint32_t id = 0; id <= kMaxTypeId; ++id) types[id] = TypeOf(id);
  }
};

const TypeTable& Types() {
  static const TypeTable table;
  return table;
}

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);  // files and every supported host are little-endian
  return v;
}

float LoadHalf(const uint8_t* p) { return HalfToFloat(LoadU16(p)); }

// One block of each type: `b` points at its bytes, `y` at its block_size outputs.

void BlockQ4_0(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
    y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

void BlockQ4_1(const uint8_t* b, float* y) {
  const float d = LoadHalf(b), m = LoadHalf(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
    y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

// The 5-bit values of Q5_0/Q5_1: bit j of the little-endian u32 `qh` is the high bit of
// value j; the low 4 bits are nibbles as in Q4_0.
void Unpack5Bit(const uint8_t* qh_bytes, const uint8_t* qs, int* q) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, sizeof qh);
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
    q[j + 16] = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
  }
}

void BlockQ5_0(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  int q[32];
  Unpack5Bit(b + 2, b + 6, q);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(q[j] - 16);
}

void BlockQ5_1(const uint8_t* b, float* y) {
  const float d = LoadHalf(b), m = LoadHalf(b + 2);
  int q[32];
  Unpack5Bit(b + 4, b + 8, q);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(q[j]) + m;
}

void BlockQ8_0(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(static_cast<int8_t>(b[2 + j]));
}

// Scale and min (6 bits each) of sub-block s of a Q4_K/Q5_K block from its 12 packed
// bytes: bytes 0-3 hold the scales of sub-blocks 0-3 in their low 6 bits, bytes 4-7 the
// mins; sub-blocks 4-7 take their low 4 bits from bytes 8-11 (scale: low nibble, min:
// high nibble) and their high 2 bits from the top bits of bytes 0-3 (scale) and 4-7 (min).
void ScaleMinK4(const uint8_t* sc, int s, int* scale, int* min) {
  if (s < 4) {
    *scale = sc[s] & 0x3F;
    *min = sc[s + 4] & 0x3F;
  } else {
    *scale = (sc[s + 4] & 0x0F) | ((sc[s - 4] >> 6) << 4);
    *min = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
  }
}

// Q4_K (qh == nullptr) and Q5_K: 8 sub-blocks of 32; sub-blocks 2k and 2k+1 are the low
// and high nibbles of qs[32k, 32k + 32).
void BlockK4Or5(const uint8_t* b, const uint8_t* qh, const uint8_t* qs, float* y) {
  const float d = LoadHalf(b), dmin = LoadHalf(b + 2);
  const uint8_t* scales = b + 4;
  for (int s = 0; s < 8; ++s) {
    int scale, min;
    ScaleMinK4(scales, s, &scale, &min);
    const float ds = d * static_cast<float>(scale);
    const float dm = dmin * static_cast<float>(min);
    const uint8_t* q = qs + 32 * (s / 2);
    const int shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) {
      int v = (q[l] >> shift) & 0x0F;
      if (qh != nullptr) v |= ((qh[l] >> s) & 1) << 4;
      y[32 * s + l] = ds * static_cast<float>(v) - dm;
    }
  }
}

void BlockQ4_K(const uint8_t* b, float* y) { BlockK4Or5(b, nullptr, b + 16, y); }
void BlockQ5_K(const uint8_t* b, float* y) { BlockK4Or5(b, b + 16, b + 48, y); }

// Two halves of 128 values; in half h, value 32c + l (c = 0..3) takes its low 4 bits
// from ql[64h + 32(c % 2) + l] (low nibble for c < 2, high for c >= 2) and its high 2
// bits from bits 2c, 2c+1 of qh[32h + l]; each 16 values share one int8 scale.
void BlockQ6_K(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = LoadHalf(b + 208);
  for (int h = 0; h < 2; ++h) {
    for (int c = 0; c < 4; ++c) {
      const uint8_t* lo_bytes = ql + 64 * h + 32 * (c % 2);
      const int lo_shift = 4 * (c / 2), hi_shift = 2 * c;
      float* out = y + 128 * h + 32 * c;
      for (int g = 0; g < 2; ++g) {  // 16 values per scale
        const float ds = d * static_cast<float>(scales[8 * h + 2 * c + g]);
        for (int l = 16 * g; l < 16 * g + 16; ++l) {
          const int lo = (lo_bytes[l] >> lo_shift) & 0x0F;
          const int hi = (qh[32 * h + l] >> hi_shift) & 0x03;
          out[l] = ds * static_cast<float>((lo | (hi << 4)) - 32);
        }
      }
    }
  }
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn BlockFnOf(uint32_t type) {
  switch (type) {
    case kGgmlTypeQ4_0: return BlockQ4_0;
    case kGgmlTypeQ4_1: return BlockQ4_1;
    case kGgmlTypeQ5_0: return BlockQ5_0;
    case kGgmlTypeQ5_1: return BlockQ5_1;
    case kGgmlTypeQ8_0: return BlockQ8_0;
    case kGgmlTypeQ4_K: return BlockQ4_K;
    case kGgmlTypeQ5_K: return BlockQ5_K;
    case kGgmlTypeQ6_K: return BlockQ6_K;
    default: return nullptr;
  }
}

}  // namespace

const GgmlType* FindGgmlType(uint32_t ggml_type) {
  if (ggml_type > kMaxTypeId) return nullptr;
  const GgmlType* t = &Types().types[ggml_type];
  return t->name == nullptr ? nullptr : t;
}

std::string GgmlTypeName(uint32_t ggml_type) {
  const GgmlType* t = FindGgmlType(ggml_type);
  if (t == nullptr) return "unknown (" + std::to_string(ggml_type) + ")";
  return std::string(t->name) + " (" + std::to_string(ggml_type) + ")";
}

const std::string& LoadableGgmlTypeNames() {
  static const std::string names = [] {
    std::string s;
    // In the order people meet them: plain floats, then by bits per value.
    for (uint32_t id : {kGgmlTypeF32, kGgmlTypeF16, kGgmlTypeBF16, kGgmlTypeQ8_0, kGgmlTypeQ6_K, kGgmlTypeQ5_K,
                        kGgmlTypeQ5_1, kGgmlTypeQ5_0, kGgmlTypeQ4_K, kGgmlTypeQ4_1, kGgmlTypeQ4_0})
      s += (s.empty() ? "" : ", ") + std::string(FindGgmlType(id)->name);
    return s;
  }();
  return names;
}

Status CheckLoadableGgmlType(uint32_t ggml_type) {
  const GgmlType* t = FindGgmlType(ggml_type);
  if (t != nullptr && t->loadable) return Status::Ok();
  const std::string what = t != nullptr ? std::string("GGUF type ") + t->name
                                        : "GGUF type id " + std::to_string(ggml_type) + " (unknown to this version)";
  return InvalidArgument(what + " is not supported (supported: " + LoadableGgmlTypeNames() + ")");
}

Result<GgmlTensorLayout> GgmlLayout(uint32_t ggml_type, const std::vector<uint64_t>& ne) {
  const GgmlType* t = FindGgmlType(ggml_type);
  FLOVER_CHECK(t != nullptr) << "ggml type " << ggml_type;
  constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();
  GgmlTensorLayout l;
  l.n_cols = ne.empty() ? 1 : ne[0];
  l.n_rows = 1;
  for (size_t d = 1; d < ne.size(); ++d) {
    if (ne[d] != 0 && l.n_rows > kMax / ne[d])
      return Corruption("its rows (ne[1] * ne[2] * ...) are more than an int64 can count");
    l.n_rows *= ne[d];
  }
  if (l.n_cols % t->block_size != 0)
    return Corruption(std::string("row length ne[0]=") + std::to_string(l.n_cols) + " of type " + t->name +
                      " is not a multiple of its block size " + std::to_string(t->block_size));
  const uint64_t blocks = l.n_cols / t->block_size;
  if (blocks > kMax / t->block_bytes) return Corruption("a row of " + std::to_string(l.n_cols) + " values is too large");
  l.row_bytes = blocks * t->block_bytes;
  if (l.row_bytes != 0 && l.n_rows > kMax / l.row_bytes)
    return Corruption(std::to_string(l.n_rows) + " rows of " + std::to_string(l.row_bytes) +
                      " bytes are more than an int64 can count");
  l.n_bytes = l.n_rows * l.row_bytes;
  return l;
}

void DequantizeGgml(uint32_t ggml_type, const uint8_t* src, float* dst, size_t n_values) {
  const GgmlType* t = FindGgmlType(ggml_type);
  FLOVER_CHECK(t != nullptr && t->loadable) << "ggml type " << ggml_type;
  FLOVER_CHECK(n_values % t->block_size == 0) << n_values << " values of " << t->name;
  if (ggml_type == kGgmlTypeF32) {
    std::memcpy(dst, src, n_values * sizeof(float));
    return;
  }
  if (ggml_type == kGgmlTypeF16) {
    // Through an aligned buffer on the stack: `src` may be unaligned.
    constexpr size_t kChunk = 16384;
    const int64_t n_chunks = static_cast<int64_t>((n_values + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) if (n_chunks > 16)
    for (int64_t c = 0; c < n_chunks; ++c) {
      uint16_t halves[kChunk];
      const size_t begin = static_cast<size_t>(c) * kChunk;
      const size_t len = std::min(kChunk, n_values - begin);
      std::memcpy(halves, src + 2 * begin, 2 * len);
      ConvertHalfToFloatSerial(halves, dst + begin, len);
    }
    return;
  }
  if (ggml_type == kGgmlTypeBF16) {  // the top half of an fp32
    const int64_t n = static_cast<int64_t>(n_values);
#pragma omp parallel for schedule(static) if (n > (int64_t{1} << 18))
    for (int64_t i = 0; i < n; ++i) dst[i] = std::bit_cast<float>(static_cast<uint32_t>(LoadU16(src + 2 * i)) << 16);
    return;
  }
  const BlockFn fn = BlockFnOf(ggml_type);
  FLOVER_CHECK(fn != nullptr) << t->name;
  const int64_t n_blocks = static_cast<int64_t>(n_values / t->block_size);
  const size_t bytes = t->block_bytes, size = t->block_size;
#pragma omp parallel for schedule(static) if (n_blocks > 4096)
  for (int64_t i = 0; i < n_blocks; ++i) fn(src + static_cast<size_t>(i) * bytes, dst + static_cast<size_t>(i) * size);
}

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

namespace {

#if defined(__x86_64__)
__attribute__((target("avx,f16c"))) void ConvertHalfToFloatF16c(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = HalfToFloat(src[i]);
}

// CPUID directly: clang 14's __builtin_cpu_supports does not know "f16c".
bool HasF16c() {
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __builtin_cpu_supports("avx") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  }();
  return has;
}
#endif

}  // namespace

void ConvertHalfToFloatSerial(const uint16_t* src, float* dst, size_t n) {
#if defined(__x86_64__)
  if (HasF16c()) {
    ConvertHalfToFloatF16c(src, dst, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; ++i) dst[i] = HalfToFloat(src[i]);
}

void ConvertHalfToFloat(const uint16_t* src, float* dst, size_t n) {
  constexpr size_t kChunk = size_t{1} << 16;
  const int64_t n_chunks = static_cast<int64_t>((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) if (n_chunks > 4)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const size_t begin = static_cast<size_t>(c) * kChunk;
    ConvertHalfToFloatSerial(src + begin, dst + begin, std::min(kChunk, n - begin));
  }
}

}  // namespace flover
