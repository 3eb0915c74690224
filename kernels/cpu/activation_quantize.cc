// QuantizeActivationRows: step 1 of the int8 formats' canonical arithmetic
// (weight_matmul_internal.h), shared by every variant, so they all see the same q and d.
#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/weight_matmul_internal.h"

namespace flover::cpu::internal {
namespace {

constexpr uint32_t kTinyBits = 0x0F800000u;     // 2^-96: below it a block is all zeros
constexpr uint32_t kMaxFiniteBits = 0x7F7FFFFFu;  // FLT_MAX
// Adding and subtracting 1.5 * 2^23 rounds |v| <= 2^22 to an integer, ties to even (the
// sum's ulp is 1), and then is exact: rne(v) without calls or a rounding-mode switch.
constexpr float kRoundingBias = 12582912.0f;

// Writes q[0, block) of one block; returns its d.
float QuantizeBlock(const float* x, int block, int8_t* q) {
  uint32_t a_bits = 0;
  for (int j = 0; j < block; ++j) {
    uint32_t bits;
    std::memcpy(&bits, x + j, sizeof bits);
    bits &= 0x7FFFFFFFu;
    a_bits = bits > a_bits ? bits : a_bits;
  }
  const float a = std::bit_cast<float>(a_bits);
  if (a_bits < kTinyBits || a_bits > kMaxFiniteBits) {
    for (int j = 0; j < block; ++j) q[j] = 0;
    return a_bits < kTinyBits ? 0.0f : a / 127.0f;
  }
  const float id = 127.0f / a;
  for (int j = 0; j < block; ++j) {
    const float v = x[j] * id;
    q[j] = static_cast<int8_t>(static_cast<int>((v + kRoundingBias) - kRoundingBias));
  }
  return a / 127.0f;
}

uint8_t* AlignUp64(uint8_t* p) {
  return p + ((64 - reinterpret_cast<uintptr_t>(p) % 64) % 64);
}

}  // namespace

QuantizedRows QuantizeActivationRows(const float* x, int n, int cols, int block, std::vector<uint8_t>& storage) {
  const int n_blocks = cols / block, n_sums = cols / 32;
  // Rows padded by a cache line: rows a multiple of 4 KiB apart would share L1 sets.
  const long stride = (static_cast<long>(cols) + 63) / 64 * 64 + 64;
  const size_t q_bytes = static_cast<size_t>(n) * stride;
  const size_t d_bytes = (static_cast<size_t>(n) * n_blocks * sizeof(float) + 63) / 64 * 64;
  const size_t sums_bytes = static_cast<size_t>(n) * n_sums * sizeof(int16_t);
  if (storage.size() < q_bytes + d_bytes + sums_bytes + 64) storage.resize(q_bytes + d_bytes + sums_bytes + 64);
  uint8_t* base = AlignUp64(storage.data());
  int8_t* q = reinterpret_cast<int8_t*>(base);
  float* d = reinterpret_cast<float*>(base + q_bytes);
  int16_t* sums = reinterpret_cast<int16_t*>(base + q_bytes + d_bytes);
  for (int r = 0; r < n; ++r) {
    const float* xr = x + static_cast<long>(r) * cols;
    int8_t* qr = q + r * stride;
    for (int b = 0; b < n_blocks; ++b) d[static_cast<long>(r) * n_blocks + b] = QuantizeBlock(xr + b * block, block, qr + b * block);
    for (int s = 0; s < n_sums; ++s) {
      int sum = 0;
      for (int i = 0; i < 32; ++i) sum += qr[32 * s + i];
      sums[static_cast<long>(r) * n_sums + s] = static_cast<int16_t>(sum);
    }
  }
  QuantizedRows rows;
  rows.block = block;
  rows.stride = stride;
  rows.q = q;
  rows.d = d;
  rows.sums = sums;
  return rows;
}

}  // namespace flover::cpu::internal
