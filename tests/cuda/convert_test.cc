// ConvertFromF32 and FillUniform (kernels/cuda/convert.h). Conversions must equal the
// host's round-to-nearest-even (gpu_test.h's Encode) byte for byte; FillUniform must
// generate worker/model/dummy_model.cc's dummy weights exactly (fp32 bit for bit,
// fp16/bf16 the CPU values rounded). Plus the launchers' argument checks (which run
// without a GPU).
#include "kernels/cuda/convert.h"
#include "worker/model/dummy_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/device.h"
#include "tests/cuda/gpu_test.h"

namespace flover::cuda {
namespace {

using testing::ExpectInvalid;
using testing::Upload;

using testing::Encode;

using testing::kDTypes;

std::vector<float> DummyTensor(uint64_t seed, uint64_t tensor_id, float scale, int64_t n) {
  const uint64_t key = DummyWeightKey(seed, tensor_id);
  std::vector<float> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = DummyWeightValue(key, static_cast<uint64_t>(i), scale);
  return t;
}

uint32_t Bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}

// dummy_model.cc's Scale(in_features).
float Scale(int in_features) { return std::sqrt(3.0f / static_cast<float>(in_features)); }

TEST(DummyGeneratorGolden, MatchesMakeDummyWeights) {
  // From MakeDummyWeights("tiny", seed) (dim 64, hidden 172): the token embedding is
  // tensor 0 (scale 1), layer 0's wq tensor 1 (scale Scale(64)), layer 4's w2 tensor
  // 1 + 7 * 4 + 5 = 34 (scale Scale(172)).
  struct Golden {
    uint64_t seed, tensor_id;
    float scale;
    uint64_t index;
    uint32_t bits;
  };
  const Golden kGolden[] = {
      {1, 0, 1.0f, 0, 0x3ec62808},           {1, 0, 1.0f, 1, 0xbe1d4358},
      {1, 0, 1.0f, 12345, 0x3f5ff246},       {1, 0, 1.0f, 32767, 0x3e928684},
      {1, 1, Scale(64), 0, 0xbc2c694f},      {1, 1, Scale(64), 7, 0xbe35dfe5},
      {1, 1, Scale(64), 4095, 0x3d4ac0c6},   {1, 34, Scale(172), 0, 0x3cf601f0},
      {1, 34, Scale(172), 11007, 0xbceff366}, {0x5EED, 0, 1.0f, 0, 0xbf200448},
      {0x5EED, 0, 1.0f, 1, 0xbf5c0cbc},      {0x5EED, 0, 1.0f, 12345, 0xbdb7f860},
      {0x5EED, 0, 1.0f, 32767, 0x3f5d9736},  {0x5EED, 1, Scale(64), 0, 0x3d38213f},
      {0x5EED, 1, Scale(64), 7, 0xbd4b15f8}, {0x5EED, 1, Scale(64), 4095, 0x3e210963},
      {0x5EED, 34, Scale(172), 0, 0x3d6e491a}, {0x5EED, 34, Scale(172), 11007, 0xbce0ea1f},
  };
  for (const Golden& g : kGolden) {
    EXPECT_EQ(Bits(DummyWeightValue(DummyWeightKey(g.seed, g.tensor_id), g.index, g.scale)), g.bits)
        << "seed " << g.seed << " tensor " << g.tensor_id << " index " << g.index;
  }
}

// Values that exercise rounding: random ones over many binades, exact ties between two
// fp16/bf16 neighbours, fp16 subnormals and overflow, signed zeros and infinities.
std::vector<float> ConversionInputs(int64_t n_random) {
  std::vector<float> v = {0.0f,
                          -0.0f,
                          1.0f,
                          -1.0f,
                          1.0f + 1.0f / 2048.0f,          // fp16 tie: rounds to even (1.0)
                          1.0f + 3.0f / 2048.0f,          // fp16 tie: rounds to even (1 + 2^-9)
                          1.0f + 1.0f / 256.0f,           // bf16 tie: rounds to even (1.0)
                          1.0f + 3.0f / 256.0f,           // bf16 tie: rounds up
                          65504.0f,                       // fp16 max
                          65519.0f,                       // rounds to fp16 max
                          65520.0f,                       // rounds to fp16 inf
                          1e-7f,                          // fp16 subnormal
                          5.9604645e-8f,                  // smallest fp16 subnormal
                          2.9802322e-8f,                  // half of it: ties to zero
                          std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()};
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-30, 30);
  for (int64_t i = 0; i < n_random; ++i) v.push_back(std::ldexp(mantissa(rng), exponent(rng)));
  return v;
}

TEST(CudaConvertFromF32, RoundsToNearestEvenLikeTheHost) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  // 17 M elements: more than the launcher's largest grid covers in one pass.
  for (int64_t n_random : {int64_t{0}, int64_t{1000003}, int64_t{(1 << 24) + 12345}}) {
    const std::vector<float> src = ConversionInputs(n_random);
    Result<DeviceBuffer> d_src = Upload(src.data(), src.size() * sizeof(float), stream->get());
    FLOVER_ASSERT_OK(d_src);
    for (DType dtype : kDTypes) {
      SCOPED_TRACE(std::string(DTypeName(dtype)) + " n=" + std::to_string(src.size()));
      const std::vector<unsigned char> want = Encode(src, dtype);
      // One element more than converted, to catch a write past the end.
      std::vector<unsigned char> got(want.size() + DTypeSize(dtype), 0xA5);
      Result<DeviceBuffer> d_dst = Upload(got.data(), got.size(), stream->get());
      FLOVER_ASSERT_OK(d_dst);
      FLOVER_ASSERT_OK(ConvertFromF32(d_src->as<const float>(), d_dst->data(), dtype,
                                      static_cast<int64_t>(src.size()), stream->get()));
      FLOVER_ASSERT_OK(stream->Synchronize());
      FLOVER_ASSERT_OK(CopyToHost(got.data(), d_dst->data(), got.size(), stream->get()));
      int64_t different = 0;
      for (size_t i = 0; i < want.size(); ++i) different += got[i] != want[i];
      EXPECT_EQ(different, 0);
      for (size_t i = want.size(); i < got.size(); ++i) EXPECT_EQ(got[i], 0xA5) << "wrote past the end";
    }
  }
}

TEST(CudaConvertFromF32, InPlaceFp32IsACopy) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  const std::vector<float> src = ConversionInputs(4099);
  Result<DeviceBuffer> d = Upload(src.data(), src.size() * sizeof(float), stream->get());
  FLOVER_ASSERT_OK(d);
  FLOVER_ASSERT_OK(ConvertFromF32(d->as<const float>(), d->data(), DType::kF32, static_cast<int64_t>(src.size()),
                                  stream->get()));
  std::vector<float> got(src.size());
  FLOVER_ASSERT_OK(CopyToHost(got.data(), d->data(), got.size() * sizeof(float), stream->get()));
  EXPECT_EQ(std::memcmp(got.data(), src.data(), got.size() * sizeof(float)), 0);
}

struct FillCase {
  int64_t n;
  uint64_t seed;
  uint64_t tensor_id;
  float scale;
};

TEST(CudaFillUniform, EqualsTheCpuDummyWeights) {
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  const FillCase kCases[] = {
      {1, 1, 0, 1.0f},
      {32768, 1, 0, 1.0f},                          // tiny's embedding (golden values above)
      {4096, 0x5EED, 1, Scale(64)},                 // tiny's layer-0 wq
      {(1 << 24) + 777, 0x5EED, 34, Scale(4096)},   // > one pass of the largest grid
      {1000003, ~uint64_t{0}, ~uint64_t{0}, 0.02f},  // extreme seed and tensor id
  };
  for (const FillCase& c : kCases) {
    const std::vector<float> want = DummyTensor(c.seed, c.tensor_id, c.scale, c.n);
    for (DType dtype : kDTypes) {
      SCOPED_TRACE(std::string(DTypeName(dtype)) + " n=" + std::to_string(c.n) + " seed=" + std::to_string(c.seed) +
                   " tensor=" + std::to_string(c.tensor_id));
      // fp32: the CPU's bits; fp16/bf16: the CPU's values rounded to nearest even.
      const std::vector<unsigned char> want_bytes = Encode(want, dtype);
      std::vector<unsigned char> got(want_bytes.size() + DTypeSize(dtype), 0xA5);
      Result<DeviceBuffer> d_dst = Upload(got.data(), got.size(), stream->get());
      FLOVER_ASSERT_OK(d_dst);
      FLOVER_ASSERT_OK(FillUniform(d_dst->data(), dtype, c.n, c.seed, c.tensor_id, c.scale, stream->get()));
      FLOVER_ASSERT_OK(stream->Synchronize());
      FLOVER_ASSERT_OK(CopyToHost(got.data(), d_dst->data(), got.size(), stream->get()));
      int64_t different = 0;
      for (size_t i = 0; i < want_bytes.size(); ++i) different += got[i] != want_bytes[i];
      EXPECT_EQ(different, 0);
      for (size_t i = want_bytes.size(); i < got.size(); ++i) EXPECT_EQ(got[i], 0xA5) << "wrote past the end";
    }
  }
}

TEST(CudaFillUniform, IndexesBeyond32Bits) {
  // 2^32 + 4099 bf16 elements (8.6 GB): elements past 2^31 and 2^32 must be the CPU's
  // elements of the same 64-bit index (a 32-bit index would wrap and repeat the start).
  FLOVER_REQUIRE_GPU();
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  const int64_t n = (int64_t{1} << 32) + 4099;
  Result<DeviceBuffer> d_dst = DeviceBuffer::Allocate(static_cast<size_t>(n) * 2);
  if (!d_dst.ok()) GTEST_SKIP() << "cannot allocate 8.6 GB on this GPU: " << d_dst.status().ToString();
  const uint64_t seed = 7, tensor_id = 3;
  const float scale = Scale(4096);
  FLOVER_ASSERT_OK(FillUniform(d_dst->data(), DType::kBF16, n, seed, tensor_id, scale, stream->get()));
  FLOVER_ASSERT_OK(stream->Synchronize());
  const int64_t kWindow = 4096;
  for (int64_t start : {int64_t{0}, (int64_t{1} << 31) - kWindow / 2, (int64_t{1} << 32) - kWindow / 2, n - kWindow}) {
    SCOPED_TRACE("elements from " + std::to_string(start));
    std::vector<float> want(kWindow);
    for (int64_t i = 0; i < kWindow; ++i)
      want[i] = DummyWeightValue(DummyWeightKey(seed, tensor_id), static_cast<uint64_t>(start + i), scale);
    const std::vector<unsigned char> want_bytes = Encode(want, DType::kBF16);
    std::vector<unsigned char> got(want_bytes.size());
    FLOVER_ASSERT_OK(CopyToHost(got.data(), d_dst->as<unsigned char>() + start * 2, got.size(), stream->get()));
    EXPECT_TRUE(got == want_bytes);
  }
}

// The checks below run on any machine: every call fails its argument checks and returns
// InvalidArgument before any CUDA call, so the fake host pointers are never used.
TEST(CudaConvertChecks, RejectsBadArgumentsBeforeLaunching) {
  float fake[4] = {};
  ExpectInvalid(ConvertFromF32(fake, fake + 2, DType::kF16, -1, nullptr), "ConvertFromF32: n is -1");
  ExpectInvalid(ConvertFromF32(nullptr, fake + 2, DType::kF16, 4, nullptr), "null");
  ExpectInvalid(ConvertFromF32(fake, nullptr, DType::kBF16, 4, nullptr), "null");
  ExpectInvalid(ConvertFromF32(fake, fake, DType::kBF16, 4, nullptr), "in place to bf16");
  ExpectInvalid(FillUniform(fake, DType::kF16, -5, 1, 0, 1.0f, nullptr), "FillUniform: n is -5");
  ExpectInvalid(FillUniform(nullptr, DType::kF32, 4, 1, 0, 1.0f, nullptr), "dst is null");
}

TEST(CudaConvertChecks, EmptyIsANoOp) {
  EXPECT_TRUE(ConvertFromF32(nullptr, nullptr, DType::kF16, 0, nullptr).ok());
  EXPECT_TRUE(FillUniform(nullptr, DType::kBF16, 0, 1, 0, 1.0f, nullptr).ok());
}

}  // namespace
}  // namespace flover::cuda
