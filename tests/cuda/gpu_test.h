// Helpers for the CUDA parity tests: skip with a message on machines without a GPU (CI),
// host-side fp16/bf16 rounding, and the normalised error used to compare a CUDA kernel
// with its CPU reference.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "kernels/cuda/device.h"

// In a TEST body: skips (reported as skipped by CTest) when no CUDA device is visible.
#define FLOVER_REQUIRE_GPU()                                                                   \
  do {                                                                                         \
    if (::flover::cuda::DeviceCount() == 0)                                                    \
      GTEST_SKIP() << "no CUDA GPU on this machine; the CUDA parity tests run on a GPU "       \
                      "machine (scripts/gpu-check.sh)";                                         \
  } while (0)

// ASSERTs that a Status or Result is OK and prints the error otherwise.
#define FLOVER_ASSERT_OK(expr)                                                             \
  do {                                                                                     \
    const auto& flover_s_ = (expr);                                                        \
    ASSERT_TRUE(flover_s_.ok()) << ::flover::cuda::testing::StatusOf(flover_s_).ToString(); \
  } while (0)

namespace flover::cuda::testing {

inline const Status& StatusOf(const Status& s) { return s; }
template <typename T>
const Status& StatusOf(const Result<T>& r) { return r.status(); }

// Host bytes of `values` stored as `dtype` (round to nearest even).
inline std::vector<unsigned char> Encode(std::span<const float> values, DType dtype) {
  std::vector<unsigned char> out(values.size() * DTypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(&out[i * 4], &values[i], 4);
    } else if (dtype == DType::kF16) {
      const __half h = __float2half_rn(values[i]);
      std::memcpy(&out[i * 2], &h, 2);
    } else {
      const __nv_bfloat16 b = __float2bfloat16_rn(values[i]);
      std::memcpy(&out[i * 2], &b, 2);
    }
  }
  return out;
}

inline std::vector<float> Decode(std::span<const unsigned char> bytes, DType dtype) {
  std::vector<float> out(bytes.size() / DTypeSize(dtype));
  for (size_t i = 0; i < out.size(); ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(&out[i], &bytes[i * 4], 4);
    } else if (dtype == DType::kF16) {
      __half h;
      std::memcpy(&h, &bytes[i * 2], 2);
      out[i] = __half2float(h);
    } else {
      __nv_bfloat16 b;
      std::memcpy(&b, &bytes[i * 2], 2);
      out[i] = __bfloat162float(b);
    }
  }
  return out;
}

// `values` rounded through `dtype` and back: the CPU reference's input when the CUDA
// kernel reads the same values stored as fp16/bf16.
inline std::vector<float> RoundTrip(std::span<const float> values, DType dtype) {
  const std::vector<unsigned char> bytes = Encode(values, dtype);
  return Decode(bytes, dtype);
}

// max |got - want| / max(max |want|, 1e-6): one number per comparison, independent of
// the tensor's scale. Infinite when a NaN appears in one but not the other.
inline double NormalisedError(std::span<const float> got, std::span<const float> want) {
  EXPECT_EQ(got.size(), want.size());
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    if (std::isnan(got[i]) != std::isnan(want[i])) return std::numeric_limits<double>::infinity();
    if (std::isnan(got[i])) continue;
    max_diff = std::max(max_diff, std::abs(static_cast<double>(got[i]) - want[i]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(want[i])));
  }
  return max_diff / std::max(max_ref, 1e-6);
}

// Padding bytes between rows of test matrices, which no launcher may write.
constexpr unsigned char kPad = 0xA5;

// Host bytes of a dense [rows, cols] float matrix stored as `dtype` with row stride
// `stride` elements, the padding filled with kPad.
inline std::vector<unsigned char> ToStrided(const std::vector<float>& dense, int rows, int cols, int64_t stride,
                                            DType dtype) {
  const size_t es = DTypeSize(dtype);
  std::vector<unsigned char> out(static_cast<size_t>(rows) * stride * es, kPad);
  for (int r = 0; r < rows; ++r) {
    const std::vector<unsigned char> row =
        Encode(std::span<const float>(dense.data() + static_cast<size_t>(r) * cols, cols), dtype);
    std::copy(row.begin(), row.end(), out.begin() + static_cast<size_t>(r) * stride * es);
  }
  return out;
}

// The dense floats of such a matrix (padding dropped).
inline std::vector<float> FromStrided(const std::vector<unsigned char>& bytes, int rows, int cols, int64_t stride,
                                      DType dtype) {
  const size_t es = DTypeSize(dtype);
  std::vector<float> out;
  out.reserve(static_cast<size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r) {
    const std::vector<float> row =
        Decode(std::span<const unsigned char>(bytes.data() + static_cast<size_t>(r) * stride * es, cols * es), dtype);
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

// Padding bytes of such a matrix that are no longer kPad.
inline int64_t PaddingWritten(const std::vector<unsigned char>& bytes, int rows, int cols, int64_t stride,
                              DType dtype) {
  const size_t es = DTypeSize(dtype);
  int64_t written = 0;
  for (int r = 0; r < rows; ++r)
    for (size_t b = static_cast<size_t>(cols) * es; b < static_cast<size_t>(stride) * es; ++b)
      written += bytes[static_cast<size_t>(r) * stride * es + b] != kPad;
  return written;
}

inline int64_t CountNaN(const std::vector<float>& v) {
  return std::count_if(v.begin(), v.end(), [](float x) { return std::isnan(x); });
}

// A device copy of `bytes` host bytes.
inline Result<DeviceBuffer> Upload(const void* host, size_t bytes, cudaStream_t stream) {
  FLOVER_ASSIGN_OR_RETURN(DeviceBuffer buffer, DeviceBuffer::Allocate(bytes));
  FLOVER_RETURN_IF_ERROR(CopyToDevice(buffer.data(), host, bytes, stream));
  return buffer;
}

// EXPECTs InvalidArgument whose message contains `needle`.
inline void ExpectInvalid(const Status& s, const std::string& needle) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find(needle), std::string::npos) << "'" << s.message() << "' lacks '" << needle << "'";
}

// The storage types every kernel supports; parity tests loop over them.
inline constexpr DType kDTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

// Bounds for NormalisedError of one op whose output is stored as `dtype`.
inline double Tolerance(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 1e-5;
    case DType::kF16: return 2e-3;
    case DType::kBF16: return 1.6e-2;
  }
  return 0.0;
}

}  // namespace flover::cuda::testing
