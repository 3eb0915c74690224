#include "worker/model/gguf_quant.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/weight_blocks.h"
#include "kernels/cpu/weight_matmul.h"

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

using cpu::LoadHalfAt;

// One block of each type: `b` points at its bytes, `y` at its block_size outputs.

void BlockQ4_1(const uint8_t* b, float* y) {
  const float d = LoadHalfAt(b), m = LoadHalfAt(b + 2);
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
  const float d = LoadHalfAt(b);
  int q[32];
  Unpack5Bit(b + 2, b + 6, q);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(q[j] - 16);
}

void BlockQ5_1(const uint8_t* b, float* y) {
  const float d = LoadHalfAt(b), m = LoadHalfAt(b + 2);
  int q[32];
  Unpack5Bit(b + 4, b + 8, q);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(q[j]) + m;
}

// Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins packed as Q4_K's; sub-blocks 2k
// and 2k+1 take their low 4 bits from the low and high nibbles of qs[32k, 32k + 32), and
// sub-block s its 5th bits from bit s of qh[0..31].
void BlockQ5_K(const uint8_t* b, float* y) {
  const float d = LoadHalfAt(b), dmin = LoadHalfAt(b + 2);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int s = 0; s < 8; ++s) {
    int scale, min;
    cpu::UnpackQ4KScaleMin(b + 4, s, &scale, &min);
    const float ds = d * static_cast<float>(scale);
    const float dm = dmin * static_cast<float>(min);
    const uint8_t* q = qs + 32 * (s / 2);
    const int shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) {
      const int v = ((q[l] >> shift) & 0x0F) | (((qh[l] >> s) & 1) << 4);
      y[32 * s + l] = ds * static_cast<float>(v) - dm;
    }
  }
}

// Two halves of 128 values; in half h, value 32c + l (c = 0..3) takes its low 4 bits
// from ql[64h + 32(c % 2) + l] (low nibble for c < 2, high for c >= 2) and its high 2
// bits from bits 2c, 2c+1 of qh[32h + l]; each 16 values share one int8 scale.
void BlockQ6_K(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = LoadHalfAt(b + 208);
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

// The weight kernels' format of a ggml type they convert.
bool KernelFormatOf(uint32_t type, cpu::WeightFormat* format) {
  switch (type) {
    case kGgmlTypeF16: *format = cpu::WeightFormat::kF16; return true;
    case kGgmlTypeBF16: *format = cpu::WeightFormat::kBF16; return true;
    case kGgmlTypeQ8_0: *format = cpu::WeightFormat::kQ8_0; return true;
    case kGgmlTypeQ4_0: *format = cpu::WeightFormat::kQ4_0; return true;
    case kGgmlTypeQ4_K: *format = cpu::WeightFormat::kQ4_K; return true;
    default: return false;
  }
}

// n_values of `format` through the kernels, as rows of kRowValues values (a multiple of
// every block) and a shorter last row.
void DequantizeWithKernels(cpu::WeightFormat format, const uint8_t* src, float* dst, size_t n_values) {
  constexpr size_t kRowValues = 8192, kMaxRows = size_t{1} << 20;  // views count in int
  const size_t full_rows = n_values / kRowValues, rest = n_values % kRowValues;
  const size_t row_bytes = static_cast<size_t>(cpu::WeightRowBytes(format, kRowValues));
  for (size_t r0 = 0; r0 < full_rows; r0 += kMaxRows) {
    const int rows = static_cast<int>(std::min(kMaxRows, full_rows - r0));
    cpu::DequantizeWeightRows(cpu::WeightView{format, src + r0 * row_bytes, rows, static_cast<int>(kRowValues)}, 0,
                              rows, dst + r0 * kRowValues);
  }
  if (rest > 0) {
    cpu::DequantizeWeightRows(cpu::WeightView{format, src + full_rows * row_bytes, 1, static_cast<int>(rest)}, 0, 1,
                              dst + full_rows * kRowValues);
  }
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn BlockFnOf(uint32_t type) {
  switch (type) {
    case kGgmlTypeQ4_1: return BlockQ4_1;
    case kGgmlTypeQ5_0: return BlockQ5_0;
    case kGgmlTypeQ5_1: return BlockQ5_1;
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
  if (cpu::WeightFormat format; KernelFormatOf(ggml_type, &format)) {
    DequantizeWithKernels(format, src, dst, n_values);
    return;
  }
  const BlockFn fn = BlockFnOf(ggml_type);
  FLOVER_CHECK(fn != nullptr) << t->name;
  const int64_t n_blocks = static_cast<int64_t>(n_values / t->block_size);
  const size_t bytes = t->block_bytes, size = t->block_size;
#pragma omp parallel for schedule(static) if (n_blocks > 4096)
  for (int64_t i = 0; i < n_blocks; ++i) fn(src + static_cast<size_t>(i) * bytes, dst + static_cast<size_t>(i) * size);
}

}  // namespace flover
