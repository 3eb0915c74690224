// SafetensorsReader: the header's checks (every malformed header is Corruption naming
// the file and the tensor, never a crash), zero-copy data, exact F16/BF16 conversion
// and slices read straight from the mapping.
#include "worker/model/safetensors_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "tests/model/gguf_writer.h"
#include "tests/model/raw_bytes.h"
#include "tests/model/safetensors_writer.h"
#include "worker/model/gguf_quant.h"
#include "tests/model/test_model_files.h"

namespace flover {
namespace {

using ::flover::testing::SafetensorsWriter;
using ::flover::testing::ScratchDir;
using ::testing::HasSubstr;

Result<std::unique_ptr<SafetensorsReader>> WriteAndOpen(const ScratchDir& dir, const SafetensorsWriter& w) {
  const std::string path = dir.Path("m.safetensors");
  EXPECT_TRUE(w.WriteFile(path));
  return SafetensorsReader::Open(path);
}

// Expects Corruption whose message names the file and contains every needle.
void ExpectCorrupt(const SafetensorsWriter& w, std::initializer_list<std::string> needles) {
  ScratchDir dir;
  Result<std::unique_ptr<SafetensorsReader>> r = WriteAndOpen(dir, w);
  ASSERT_FALSE(r.ok()) << "opened although it should fail with " << *needles.begin();
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr(dir.Path("m.safetensors")));
  for (const std::string& n : needles) EXPECT_THAT(r.status().message(), HasSubstr(n));
}

std::vector<float> Iota(int n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = static_cast<float>(i) * scale;
  return v;
}

SafetensorsWriter TwoTensors() {
  SafetensorsWriter w;
  w.AddF32("a", {2, 3}, Iota(6));
  w.AddF32("b", {4}, Iota(4));
  return w;
}

TEST(SafetensorsReaderTest, ReadsShapesDtypesAndBytesWithoutCopying) {
  ScratchDir dir;
  SafetensorsWriter w;
  w.SetMetadata({{"format", "pt"}});
  w.AddF32("layer.weight", {3, 5}, Iota(15, 0.5f));
  w.AddF16("half", {4}, {1.0f, -2.0f, 0.5f, 65504.0f});
  w.AddBF16("brain", {2, 1}, {1.0f, -3.0f});
  w.AddRaw("ids", "I64", {2}, std::string(16, '\x01'));
  w.AddRaw("empty", "F32", {0, 7}, "");
  w.AddRaw("scalar", "F32", {}, std::string("\0\0\x80\x3f", 4));  // 1.0f
  Result<std::unique_ptr<SafetensorsReader>> r = WriteAndOpen(dir, w);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const SafetensorsReader& reader = **r;
  EXPECT_EQ(reader.tensors().size(), 6u);  // __metadata__ is not a tensor
  EXPECT_EQ(reader.Find("__metadata__"), nullptr);

  const SafetensorsTensor* t = reader.Find("layer.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, SafetensorsDtype::kF32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(t->rows(), 3);
  EXPECT_EQ(t->cols(), 5);
  const std::vector<float> want = Iota(15, 0.5f);
  ASSERT_EQ(reader.Data(*t).size(), 60u);
  EXPECT_EQ(std::memcmp(reader.Data(*t).data(), want.data(), 60), 0);
  Result<std::vector<float>> all = reader.ReadFloat(*t);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, want);

  EXPECT_EQ(reader.Find("half")->dtype, SafetensorsDtype::kF16);
  EXPECT_EQ(*reader.ReadFloat(*reader.Find("half")), (std::vector<float>{1.0f, -2.0f, 0.5f, 65504.0f}));
  EXPECT_EQ(*reader.ReadFloat(*reader.Find("brain")), (std::vector<float>{1.0f, -3.0f}));
  EXPECT_EQ(reader.Find("ids")->dtype, SafetensorsDtype::kI64);
  EXPECT_EQ(reader.Find("ids")->n_elements, 2);
  EXPECT_EQ(reader.Find("empty")->n_elements, 0);
  EXPECT_TRUE(reader.ReadFloat(*reader.Find("empty"))->empty());
  EXPECT_EQ(*reader.ReadFloat(*reader.Find("scalar")), std::vector<float>{1.0f});
}

TEST(SafetensorsReaderTest, HalfAndBFloat16ConvertExactlyForEveryBitPattern) {
  std::string f16_bytes, bf16_bytes;
  for (uint32_t h = 0; h < 65536; ++h) {
    testing::Put<uint16_t>(f16_bytes, static_cast<uint16_t>(h));
    testing::Put<uint16_t>(bf16_bytes, static_cast<uint16_t>(h));
  }
  SafetensorsWriter w;
  w.AddRaw("f16", "F16", {256, 256}, f16_bytes);
  w.AddRaw("bf16", "BF16", {65536}, bf16_bytes);
  ScratchDir dir;
  Result<std::unique_ptr<SafetensorsReader>> r = WriteAndOpen(dir, w);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Result<std::vector<float>> f16 = (*r)->ReadFloat(*(*r)->Find("f16"));
  Result<std::vector<float>> bf16 = (*r)->ReadFloat(*(*r)->Find("bf16"));
  ASSERT_TRUE(f16.ok() && bf16.ok());
  for (uint32_t h = 0; h < 65536; ++h) {
    const float want_half = HalfToFloat(static_cast<uint16_t>(h));
    const float want_brain = std::bit_cast<float>(h << 16);  // the upper half of a binary32
    ASSERT_EQ(std::bit_cast<uint32_t>((*f16)[h]), std::bit_cast<uint32_t>(want_half)) << h;
    ASSERT_EQ(std::bit_cast<uint32_t>((*bf16)[h]), std::bit_cast<uint32_t>(want_brain)) << h;
  }
  // Spot values from the definitions.
  EXPECT_EQ((*f16)[0x0001], std::ldexp(1.0f, -24));  // smallest subnormal half
  EXPECT_EQ((*f16)[0x3C00], 1.0f);
  EXPECT_EQ((*bf16)[0x3F80], 1.0f);
  EXPECT_EQ((*bf16)[0xC040], -3.0f);
  EXPECT_EQ((*bf16)[0x0001], std::ldexp(1.0f, -133));  // smallest subnormal bfloat16
}

TEST(SafetensorsReaderTest, SlicesReadOnlyTheRowsAndColumnsAskedFor) {
  SafetensorsWriter w;
  w.AddF32("m32", {5, 7}, Iota(35));
  w.AddF16("m16", {5, 7}, Iota(35));
  w.AddBF16("m_bf16", {5, 7}, Iota(35));
  w.AddF32("v", {9}, Iota(9));
  ScratchDir dir;
  Result<std::unique_ptr<SafetensorsReader>> r = WriteAndOpen(dir, w);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (const char* name : {"m32", "m16", "m_bf16"}) {
    std::vector<float> out(2 * 4, -1.0f);
    ASSERT_TRUE((*r)->ReadFloat(*(*r)->Find(name), 1, 2, 2, 4, out.data()).ok());
    EXPECT_EQ(out, (std::vector<float>{9, 10, 11, 12, 16, 17, 18, 19})) << name;
  }
  std::vector<float> out(3, -1.0f);
  ASSERT_TRUE((*r)->ReadFloat(*(*r)->Find("v"), 4, 3, 0, 1, out.data()).ok());
  EXPECT_EQ(out, (std::vector<float>{4, 5, 6}));
}

TEST(SafetensorsReaderTest, OtherDtypesParseButDoNotConvert) {
  SafetensorsWriter w;
  w.AddRaw("position_ids", "I64", {1, 3}, std::string(24, '\0'));
  ScratchDir dir;
  Result<std::unique_ptr<SafetensorsReader>> r = WriteAndOpen(dir, w);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Result<std::vector<float>> f = (*r)->ReadFloat(*(*r)->Find("position_ids"));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(f.status().message(), HasSubstr("position_ids"));
  EXPECT_THAT(f.status().message(), HasSubstr("I64"));
  EXPECT_THAT(f.status().message(), HasSubstr("F32, F16 and BF16"));
}

TEST(SafetensorsReaderTest, MissingFileIsNotFound) {
  Result<std::unique_ptr<SafetensorsReader>> r = SafetensorsReader::Open("/nonexistent/m.safetensors");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("/nonexistent/m.safetensors"));
}

TEST(SafetensorsReaderTest, TooShortOrHeaderPastTheEnd) {
  ScratchDir dir;
  ASSERT_TRUE(testing::WriteBytes(dir.Path("short.safetensors"), "abc"));
  Result<std::unique_ptr<SafetensorsReader>> r = SafetensorsReader::Open(dir.Path("short.safetensors"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(r.status().message(), HasSubstr("3 bytes"));
  ASSERT_TRUE(testing::WriteBytes(dir.Path("empty.safetensors"), ""));
  r = SafetensorsReader::Open(dir.Path("empty.safetensors"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);

  SafetensorsWriter w = TwoTensors();
  w.ForgeHeaderLength(1000000);
  ExpectCorrupt(w, {"header length 1000000", "past the end of the file"});
  w.ForgeHeaderLength(uint64_t{1} << 62);
  ExpectCorrupt(w, {"exceeds the limit"});
  w.ForgeHeaderLength(std::numeric_limits<uint64_t>::max());
  ExpectCorrupt(w, {"exceeds the limit"});
}

TEST(SafetensorsReaderTest, MalformedJson) {
  SafetensorsWriter w;
  w.ReplaceHeader("{\"a\": {\"dtype\": \"F32\", ");
  ExpectCorrupt(w, {"not valid JSON"});
  w.ReplaceHeader("[1, 2, 3]");
  ExpectCorrupt(w, {"not a JSON object"});
  w.ReplaceHeader("{\"a\": 5}");
  ExpectCorrupt(w, {"tensor a", "not an object"});
  w.ReplaceHeader(std::string(100, '[') + std::string(100, ']'));
  ExpectCorrupt(w, {"nests deeper"});
  // A shape of 2,000 elements: arrays in a header are short.
  std::string long_shape = "[";
  for (int i = 0; i < 2000; ++i) long_shape += (i ? ",1" : "1");
  w.ReplaceHeader("{\"a\": {\"dtype\": \"F32\", \"shape\": " + long_shape + "], \"data_offsets\": [0, 4]}}");
  ExpectCorrupt(w, {"array of more than"});
  w.ReplaceHeader(
      "{\"a\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]},"
      " \"a\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]}}");
  ExpectCorrupt(w, {"names tensor \"a\" twice"});
}

TEST(SafetensorsReaderTest, BadTensorEntries) {
  auto with_entry = [](const std::string& entry) {
    SafetensorsWriter w;
    w.AddRaw("pad", "U8", {64}, std::string(64, '\0'));  // bytes for the entries to point at
    w.ReplaceHeader("{\"t\": " + entry + "}");
    return w;
  };
  ExpectCorrupt(with_entry(R"({"shape": [2], "data_offsets": [0, 8]})"), {"tensor t", "dtype is missing"});
  ExpectCorrupt(with_entry(R"({"dtype": "NOPE", "shape": [2], "data_offsets": [0, 8]})"),
                {"tensor t", "unknown dtype \"NOPE\""});
  ExpectCorrupt(with_entry(R"({"dtype": "F32", "data_offsets": [0, 8]})"), {"tensor t", "shape is missing"});
  ExpectCorrupt(with_entry(R"({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]})"),
                {"tensor t", "not a non-negative integer"});
  ExpectCorrupt(with_entry(R"({"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]})"),
                {"tensor t", "not a non-negative integer"});
  ExpectCorrupt(with_entry(R"({"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 4]})"),
                {"tensor t", "9 dimensions"});
  ExpectCorrupt(with_entry(R"({"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]})"),
                {"tensor t", "more than 2^63 elements"});
  ExpectCorrupt(with_entry(R"({"dtype": "F32", "shape": [0, 4294967296, 4294967296], "data_offsets": [0, 0]})"),
                {"tensor t", "more than 2^63 elements"});
  ExpectCorrupt(with_entry(R"({"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 8]})"),
                {"tensor t", "more than 2^64 bytes"});
  ExpectCorrupt(with_entry(R"({"dtype": "F32", "shape": [2]})"), {"tensor t", "data_offsets is missing"});
  ExpectCorrupt(with_entry(R"({"dtype": "F32", "shape": [2], "data_offsets": [0]})"),
                {"tensor t", "data_offsets is missing or not a pair"});
  ExpectCorrupt(with_entry(R"({"dtype": "F32", "shape": [2], "data_offsets": [8, 0]})"),
                {"tensor t", "end before they begin"});
  ExpectCorrupt(with_entry(R"({"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]})"),
                {"tensor t", "not non-negative integers"});
  ExpectCorrupt(with_entry(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 12]})"),
                {"tensor t", "needs 8 bytes", "hold 12"});
  ExpectCorrupt(with_entry(R"({"dtype": "F32", "shape": [2], "data_offsets": [60, 68]})"),
                {"tensor t", "past the end of the file"});
  ExpectCorrupt(with_entry(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 18446744073709551615]})"),
                {"tensor t", "past the end of the file"});
}

TEST(SafetensorsReaderTest, OverlappingTensorsAreCorrupt) {
  SafetensorsWriter w = TwoTensors();  // a: bytes 0..24, b: 24..40
  w.ForgeOffsets("b", 20, 36);
  ExpectCorrupt(w, {"tensors a", "and b", "overlap"});
  w.ForgeOffsets("b", 0, 16);
  ExpectCorrupt(w, {"overlap"});
  // Empty tensors own no bytes, wherever they point.
  SafetensorsWriter ok = TwoTensors();
  ok.AddRaw("e", "F32", {0}, "");
  ok.ForgeOffsets("e", 4, 4);
  ScratchDir dir;
  Result<std::unique_ptr<SafetensorsReader>> r = WriteAndOpen(dir, ok);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

TEST(SafetensorsReaderTest, FromBytesNamesTheSource) {
  const std::string bytes = TwoTensors().Serialize();
  Result<std::unique_ptr<SafetensorsReader>> r = SafetensorsReader::FromBytes(
      {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, "in memory");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*(*r)->ReadFloat(*(*r)->Find("b")), Iota(4));
  r = SafetensorsReader::FromBytes({reinterpret_cast<const uint8_t*>(bytes.data()), 20}, "in memory");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("in memory"));
}

}  // namespace
}  // namespace flover
