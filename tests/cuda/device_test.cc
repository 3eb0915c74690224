#include <gtest/gtest.h>

#include <vector>

#include "kernels/cuda/device.h"
#include "kernels/cuda/matrix.h"
#include "tests/cuda/gpu_test.h"

namespace flover::cuda {
namespace {

TEST(CheckMatrix, NamesTheOperandAndTheMismatch) {
  float x = 0;
  const MatrixView m = Matrix(&x, DType::kF16, 3, 288);
  EXPECT_TRUE(CheckMatrix(m, DType::kF16, 3, 288, "RmsNorm", "out").ok());
  EXPECT_TRUE(CheckMatrix(m, DType::kF16, -1, 288, "RmsNorm", "out").ok());
  const Status s = CheckMatrix(m, DType::kF32, 3, 288, "RmsNorm", "out");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "RmsNorm: out is fp16 [3, 288], expected fp32 [3, 288]");
  EXPECT_FALSE(CheckMatrix(Matrix(&x, DType::kF32, 3, 288, 100), DType::kF32, 3, 288, "Op", "x").ok());
  EXPECT_FALSE(CheckMatrix(Matrix(nullptr, DType::kF32, 3, 288), DType::kF32, 3, 288, "Op", "x").ok());
  EXPECT_TRUE(CheckMatrix(Matrix(nullptr, DType::kF32, 0, 288), DType::kF32, 0, 288, "Op", "x").ok());
}

TEST(Device, CountIsSafeWithoutAGpu) { EXPECT_GE(DeviceCount(), 0); }

TEST(Device, BufferRoundTrip) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  Result<DeviceBuffer> buffer = DeviceBuffer::Allocate(1000 * sizeof(float));
  FLOVER_ASSERT_OK(buffer);
  std::vector<float> in(1000), out(1000, -1.0f);
  for (int i = 0; i < 1000; ++i) in[i] = static_cast<float>(i) * 0.5f;
  FLOVER_ASSERT_OK(CopyToDevice(buffer->data(), in.data(), in.size() * sizeof(float), stream->get()));
  FLOVER_ASSERT_OK(CopyToHost(out.data(), buffer->data(), out.size() * sizeof(float), stream->get()));
  EXPECT_EQ(in, out);
  Result<std::string> description = DeviceDescription(0);
  FLOVER_ASSERT_OK(description);
  EXPECT_FALSE(description->empty());
}

TEST(Device, HugeAllocationIsAnErrorNotACrash) {
  FLOVER_REQUIRE_GPU();
  Result<DeviceBuffer> buffer = DeviceBuffer::Allocate(size_t{1} << 50);  // 1 PiB
  ASSERT_FALSE(buffer.ok());
  EXPECT_EQ(buffer.status().code(), StatusCode::kResourceExhausted) << buffer.status().ToString();
  EXPECT_NE(buffer.status().message().find("cudaMalloc"), std::string::npos);
}

}  // namespace
}  // namespace flover::cuda
