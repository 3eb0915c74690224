// The tensor element types of GGUF files (ggml types): their names and block sizes, the
// byte size of a tensor from its type and shape, and dequantization to fp32 of the types
// this project loads.
//
// A ggml type stores a row of ne[0] values as ne[0] / block_size blocks of block_bytes
// bytes each; a tensor is its rows (ne[1] * ne[2] * ne[3] of them) one after the other.
// F32, F16 and BF16 are blocks of one value. The quantized types loaded here
// (layouts from the GGUF/ggml format; the K-quants' 256 values form 8 or 16 sub-blocks):
//   Q4_0  18 B / 32:  fp16 d, 16 B of 4-bit q (value j: low nibble of byte j, value
//                     j + 16: high nibble);                      x = d * (q - 8)
//   Q4_1  20 B / 32:  fp16 d, fp16 m, 4-bit q as Q4_0;           x = d * q + m
//   Q5_0  22 B / 32:  fp16 d, u32 qh (bit j: 5th bit of value j), 4-bit low parts as
//                     Q4_0;                                      x = d * (q - 16)
//   Q5_1  24 B / 32:  fp16 d, fp16 m, qh and low parts as Q5_0;  x = d * q + m
//   Q8_0  34 B / 32:  fp16 d, 32 x int8 q;                       x = d * q
//   Q4_K 144 B / 256: fp16 d, fp16 dmin, 12 B of 6-bit scales and mins for 8 sub-blocks
//                     of 32, 128 B of 4-bit q (each 64 values: 32 bytes, low nibbles
//                     first);                      x = (d * scale) * q - (dmin * min)
//   Q5_K 176 B / 256: as Q4_K plus 32 B qh before the 4-bit q (sub-block s takes its 5th
//                     bits from bit s of qh[0..31])
//   Q6_K 210 B / 256: 128 B low 4 bits, 64 B high 2 bits, 16 x int8 scales (one per 16
//                     values), fp16 d;             x = (d * scale) * (q - 32)
// The arithmetic is fp32 in this order and unfused (the library is built with
// -ffp-contract=off), so results equal gguf-py's numpy dequantization bit for bit. F16,
// BF16, Q8_0, Q4_0 and Q4_K are the weight kernels' formats and are converted by them
// (DequantizeWeightRows, kernels/cpu/weight_matmul.h).
//
// Thread-safety: free functions without shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/float16.h"

namespace flover {

// ggml type ids used by name in this project.
inline constexpr uint32_t kGgmlTypeF32 = 0;
inline constexpr uint32_t kGgmlTypeF16 = 1;
inline constexpr uint32_t kGgmlTypeQ4_0 = 2;
inline constexpr uint32_t kGgmlTypeQ4_1 = 3;
inline constexpr uint32_t kGgmlTypeQ5_0 = 6;
inline constexpr uint32_t kGgmlTypeQ5_1 = 7;
inline constexpr uint32_t kGgmlTypeQ8_0 = 8;
inline constexpr uint32_t kGgmlTypeQ4_K = 12;
inline constexpr uint32_t kGgmlTypeQ5_K = 13;
inline constexpr uint32_t kGgmlTypeQ6_K = 14;
inline constexpr uint32_t kGgmlTypeBF16 = 30;

struct GgmlType {
  const char* name;      // "Q4_K"
  uint32_t block_size;   // values per block
  uint32_t block_bytes;  // bytes per block
  bool loadable;         // DequantizeGgml converts it
};

// nullptr for an id ggml does not define (or that it removed).
const GgmlType* FindGgmlType(uint32_t ggml_type);
// "F32 (0)", "Q4_0 (2)", ...; "unknown (99)" for ids ggml does not define.
std::string GgmlTypeName(uint32_t ggml_type);
// "F32, F16, BF16, Q4_0, ...": the loadable types, for messages.
const std::string& LoadableGgmlTypeNames();
// OK for a loadable type; otherwise InvalidArgument "GGUF type IQ2_XXS is not supported
// (supported: F32, F16, ...)" (the caller adds the tensor's name).
Status CheckLoadableGgmlType(uint32_t ggml_type);

// Where a tensor's bytes are: n_rows rows of row_bytes bytes.
struct GgmlTensorLayout {
  uint64_t n_cols = 0;     // ne[0] (1 for a tensor without dimensions)
  uint64_t n_rows = 0;     // ne[1] * ne[2] * ...
  uint64_t row_bytes = 0;  // n_cols / block_size * block_bytes
  uint64_t n_bytes = 0;    // n_rows * row_bytes
};
// The layout of a tensor of a known type with dimensions `ne` (ggml order). Corruption
// when ne[0] is not a multiple of the type's block size, or when the byte size does not
// fit in an int64. REQUIRES: FindGgmlType(ggml_type) != nullptr.
Result<GgmlTensorLayout> GgmlLayout(uint32_t ggml_type, const std::vector<uint64_t>& ne);

// Converts n_values values of a loadable type from `src` (n_values / block_size *
// block_bytes bytes, any alignment) to fp32 in dst[0, n_values). Every bit pattern is
// accepted (scales that are inf or NaN give inf or NaN values).
// REQUIRES: FindGgmlType(ggml_type)->loadable, n_values % block_size == 0.
void DequantizeGgml(uint32_t ggml_type, const uint8_t* src, float* dst, size_t n_values);

// IEEE-754 binary16 -> binary32 (kernels/cpu/float16.h): HalfToFloat(h), exact for every
// input; ConvertHalfToFloat(src, dst, n) and ConvertHalfToFloatSerial for arrays.
using cpu::ConvertHalfToFloat;
using cpu::ConvertHalfToFloatSerial;
using cpu::HalfToFloat;

}  // namespace flover
