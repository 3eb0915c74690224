// EmbeddingGather (kernels/cuda/embedding.h) for every table dtype: the rows of the
// fp16/bf16 table converted to fp32 are exact, so the reference is the host copy of the
// rows of the RoundTrip'd table; out-of-range ids give zero rows. Plus the launcher's
// operand checks (which run without a GPU).
#include "kernels/cuda/embedding.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/device.h"
#include "kernels/cuda/matrix.h"
#include "tests/cuda/gpu_test.h"

namespace flover::cuda {
namespace {

using testing::ExpectInvalid;
using testing::Upload;
using testing::kPad;

using testing::Encode;
using testing::NormalisedError;
using testing::RoundTrip;
using testing::Tolerance;

using testing::kDTypes;

struct Shape {
  int vocab;
  int dim;
  int n;
  int table_pad;  // extra elements per table row
  int out_pad;    // extra floats per out row
};
constexpr Shape kShapes[] = {{512, 288, 1, 0, 0},   {512, 288, 37, 0, 0}, {3000, 4096, 1, 0, 0},
                             {3000, 4096, 37, 0, 0}, {17, 7, 37, 3, 2},    {512, 288, 37, 8, 5}};

std::string Describe(DType dtype, const Shape& s) {
  return std::string(DTypeName(dtype)) + " vocab=" + std::to_string(s.vocab) + " dim=" + std::to_string(s.dim) +
         " n=" + std::to_string(s.n) + " pads=" + std::to_string(s.table_pad) + "/" + std::to_string(s.out_pad);
}

TEST(CudaEmbeddingGather, CopiesTheRowsOfEveryDType) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  for (DType dtype : kDTypes) {
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(Describe(dtype, s));
      std::mt19937 rng(5 + s.vocab + s.dim * 3 + s.n);
      std::uniform_real_distribution<float> u(-1.0f, 1.0f);
      std::vector<float> table(static_cast<size_t>(s.vocab) * s.dim);
      for (float& v : table) v = u(rng);
      const std::vector<float> stored = RoundTrip(table, dtype);  // what the device holds

      // Table rows at stride dim + table_pad, the padding filled with kPad.
      const int64_t table_stride = s.dim + s.table_pad;
      const size_t es = DTypeSize(dtype);
      std::vector<unsigned char> table_bytes(static_cast<size_t>(s.vocab) * table_stride * es, kPad);
      for (int r = 0; r < s.vocab; ++r) {
        const std::vector<unsigned char> row =
            Encode(std::span<const float>(table.data() + static_cast<size_t>(r) * s.dim, s.dim), dtype);
        std::copy(row.begin(), row.end(), table_bytes.begin() + static_cast<size_t>(r) * table_stride * es);
      }

      // Ids: random, including the first and last row; when n allows, some out of range.
      std::uniform_int_distribution<int> pick(0, s.vocab - 1);
      std::vector<int> ids(s.n);
      for (int& id : ids) id = pick(rng);
      ids[0] = s.n > 1 ? 0 : s.vocab - 1;
      if (s.n > 10) {
        ids[1] = s.vocab - 1;
        ids[3] = -1;
        ids[5] = s.vocab;
        ids[7] = INT_MAX;
        ids[9] = INT_MIN;
      }
      const int64_t out_stride = s.dim + s.out_pad;
      std::vector<float> want(static_cast<size_t>(s.n) * out_stride, std::nanf(""));
      for (int t = 0; t < s.n; ++t) {
        for (int j = 0; j < s.dim; ++j) {
          const bool in_range = ids[t] >= 0 && ids[t] < s.vocab;
          want[static_cast<size_t>(t) * out_stride + j] =
              in_range ? stored[static_cast<size_t>(ids[t]) * s.dim + j] : 0.0f;
        }
      }

      Result<DeviceBuffer> d_table = Upload(table_bytes.data(), table_bytes.size(), stream->get());
      FLOVER_ASSERT_OK(d_table);
      Result<DeviceBuffer> d_ids = Upload(ids.data(), ids.size() * sizeof(int), stream->get());
      FLOVER_ASSERT_OK(d_ids);
      // out starts as NaN everywhere; the padding must stay NaN.
      const std::vector<float> nan_filled(want.size(), std::nanf(""));
      Result<DeviceBuffer> d_out = Upload(nan_filled.data(), nan_filled.size() * sizeof(float), stream->get());
      FLOVER_ASSERT_OK(d_out);

      FLOVER_ASSERT_OK(EmbeddingGather(Matrix(d_table->data(), dtype, s.vocab, s.dim, table_stride),
                                       d_ids->as<const int>(),
                                       Matrix(d_out->data(), DType::kF32, s.n, s.dim, out_stride), stream->get()));
      FLOVER_ASSERT_OK(stream->Synchronize());
      std::vector<float> got(want.size());
      FLOVER_ASSERT_OK(CopyToHost(got.data(), d_out->data(), got.size() * sizeof(float), stream->get()));

      // Widening fp16/bf16 to fp32 is exact: every element equals the stored value.
      int64_t different = 0, padding_written = 0;
      std::vector<float> got_dense, want_dense;
      for (int t = 0; t < s.n; ++t) {
        for (int64_t j = 0; j < out_stride; ++j) {
          const float g = got[static_cast<size_t>(t) * out_stride + j];
          const float w = want[static_cast<size_t>(t) * out_stride + j];
          if (j < s.dim) {
            different += g != w;
            got_dense.push_back(g);
            want_dense.push_back(w);
          } else {
            padding_written += !std::isnan(g);
          }
        }
      }
      EXPECT_EQ(different, 0);
      EXPECT_EQ(padding_written, 0);
      EXPECT_LE(NormalisedError(got_dense, want_dense), Tolerance(dtype));
    }
  }
}

// The checks below run on any machine: every call fails its operand checks and returns
// InvalidArgument before any CUDA call, so the fake host pointers are never used.
TEST(CudaEmbeddingGatherChecks, RejectsBadOperandsBeforeLaunching) {
  float fake[4] = {};
  const int* ids = reinterpret_cast<const int*>(fake + 3);
  const MatrixView table = Matrix(fake, DType::kBF16, 512, 288);
  const MatrixView out = Matrix(fake + 1, DType::kF32, 37, 288);
  ExpectInvalid(EmbeddingGather(table, ids, Matrix(fake + 1, DType::kBF16, 37, 288), nullptr),
                "EmbeddingGather: out is bf16 [37, 288], expected fp32 [37, 288]");
  ExpectInvalid(EmbeddingGather(table, ids, Matrix(fake + 1, DType::kF32, 37, 289), nullptr),
                "out is fp32 [37, 289], expected fp32 [37, 288]");
  ExpectInvalid(EmbeddingGather(Matrix(fake, DType::kF16, 512, 288, 100), ids, out, nullptr),
                "table has stride 100 < 288");
  ExpectInvalid(EmbeddingGather(table, ids, Matrix(fake + 1, DType::kF32, 37, 288, 287), nullptr),
                "out has stride 287 < 288");
  ExpectInvalid(EmbeddingGather(Matrix(nullptr, DType::kF32, 512, 288), ids, out, nullptr), "table is null");
  ExpectInvalid(EmbeddingGather(table, ids, Matrix(nullptr, DType::kF32, 37, 288), nullptr), "out is null");
  ExpectInvalid(EmbeddingGather(table, nullptr, out, nullptr), "ids is null");
}

TEST(CudaEmbeddingGatherChecks, EmptyIsANoOp) {
  float fake[4] = {};
  EXPECT_TRUE(EmbeddingGather(Matrix(fake, DType::kF16, 512, 288), nullptr, Matrix(nullptr, DType::kF32, 0, 288),
                              nullptr)
                  .ok());
}

}  // namespace
}  // namespace flover::cuda
