// The 16-bit floating-point formats weights are stored in, and their conversions to and
// from fp32: fp16 (IEEE-754 binary16) and bf16 (the top 16 bits of an fp32).
//
// Widening is exact for every input. Narrowing rounds to nearest, ties to even; what
// is too large for fp16 becomes ±inf; a NaN stays a NaN with its sign and the top bits
// of its payload, made quiet (what F16C's vcvtps2ph and torch's bf16 conversion give).
//
// Thread-safety: free functions without shared state.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace flover::cpu {

float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);

inline float Bf16ToFloat(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }
uint16_t FloatToBf16(float f);

// Converts n fp16 values at src (2n bytes, any alignment) to fp32; uses F16C when the CPU
// has it (the result is the same). ConvertHalfToFloat spreads large arrays over the
// OpenMP threads; the Serial one stays on the calling thread.
void ConvertHalfToFloat(const void* src, float* dst, size_t n);
void ConvertHalfToFloatSerial(const void* src, float* dst, size_t n);

}  // namespace flover::cpu
