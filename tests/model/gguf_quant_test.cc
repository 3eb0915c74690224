// GGUF tensor types (worker/model/gguf_quant.h): dequantization of every loadable type
// equals gguf-py's bit for bit (fixtures from scripts/reference/gguf_quant_fixtures.py),
// sizes and their errors, and GgufReader's row reads of quantized tensors.
#include "worker/model/gguf_quant.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "tests/model/gguf_writer.h"
#include "tests/model/raw_bytes.h"
#include "tests/model/test_model_files.h"
#include "worker/model/gguf_loader.h"
#include "worker/model/gguf_reader.h"

namespace flover {
namespace {

using ::testing::HasSubstr;

std::string Fixture(const std::string& name) {
  return std::string(FLOVER_SOURCE_DIR) + "/tests/fixtures/gguf_quant/" + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot read " << path;
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<float> Floats(const std::string& bytes) {
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// EXPECTs the same bits (so -0.0 != 0.0 and NaN payloads count).
void ExpectSameBits(const std::vector<float>& expected, const std::vector<float>& actual, const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  int n_diff = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::bit_cast<uint32_t>(expected[i]) != std::bit_cast<uint32_t>(actual[i]) && ++n_diff <= 5)
      ADD_FAILURE() << what << "[" << i << "] is " << actual[i] << " (0x" << std::hex
                    << std::bit_cast<uint32_t>(actual[i]) << "), gguf-py gives " << expected[i] << " (0x"
                    << std::bit_cast<uint32_t>(expected[i]) << ")" << std::dec;
  }
  EXPECT_EQ(n_diff, 0) << what << ": values that differ";
}

nlohmann::json Manifest() { return nlohmann::json::parse(ReadFile(Fixture("manifest.json"))); }

TEST(GgufQuantTest, DequantizationEqualsGgufPyForEveryLoadableType) {
  const nlohmann::json manifest = Manifest();
  std::set<std::string> covered;
  for (const nlohmann::json& c : manifest.at("cases")) {
    const std::string name = c.at("name");
    const uint32_t type = c.at("type_id");
    SCOPED_TRACE(name);
    const GgmlType* t = FindGgmlType(type);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(std::string(t->name), c.at("type").get<std::string>());
    const std::string blocks = ReadFile(Fixture(c.at("blocks")));
    const std::vector<float> expected = Floats(ReadFile(Fixture(c.at("values"))));
    const size_t n = c.at("n_values");
    ASSERT_EQ(expected.size(), n);
    ASSERT_EQ(blocks.size(), n / t->block_size * t->block_bytes);
    std::vector<float> actual(n, std::nanf(""));
    DequantizeGgml(type, reinterpret_cast<const uint8_t*>(blocks.data()), actual.data(), n);
    ExpectSameBits(expected, actual, name);
    // Not trivially zero: the fixtures have spread-out values.
    EXPECT_GT(std::set<float>(expected.begin(), expected.end()).size(), n / 8) << name;
    covered.insert(t->name);
  }
  for (const char* name : {"BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"})
    EXPECT_TRUE(covered.count(name)) << "no fixture for " << name;
}

// The test writer's Q8_0 (which the file-level tests use) makes gguf-py's bytes.
TEST(GgufQuantTest, TestWriterQuantizesQ8_0AsGgufPy) {
  const nlohmann::json manifest = Manifest();
  for (const nlohmann::json& c : manifest.at("cases")) {
    if (c.at("name") != "q8_0_quantize") continue;
    const std::vector<float> input = Floats(ReadFile(Fixture(c.at("input"))));
    std::vector<float> read_back;
    const std::string bytes = testing::QuantizeQ8_0(input, &read_back);
    EXPECT_EQ(bytes, ReadFile(Fixture(c.at("blocks"))));
    ExpectSameBits(Floats(ReadFile(Fixture(c.at("values")))), read_back, "q8_0_quantize read back");
    return;
  }
  FAIL() << "no q8_0_quantize case in the manifest";
}

// One Q4_K block built by hand from the layout: sub-block 5 has scale 37 and min 50,
// which take their high bits from bytes 1 and 5 and their low bits from byte 9.
TEST(GgufQuantTest, Q4KScalePackingByHand) {
  uint8_t block[144] = {};
  const uint16_t one = 0x3C00, half = 0x3800;  // fp16 1.0 and 0.5
  std::memcpy(block, &one, 2);                  // d
  std::memcpy(block + 2, &half, 2);             // dmin
  uint8_t* scales = block + 4;
  scales[1] = (37 >> 4) << 6;                    // scale 5, high 2 bits
  scales[5] = (50 >> 4) << 6;                    // min 5, high 2 bits
  scales[9] = (37 & 0x0F) | ((50 & 0x0F) << 4);  // low 4 bits of scale 5 and min 5
  scales[0] = 3;                                 // scale 0 (low 6 bits)
  scales[4] = 7;                                 // min 0
  uint8_t* qs = block + 16;
  qs[2 * 32 + 4] = 0x90;  // sub-block 5 = high nibbles of bytes 64..95: value 5*32+4 gets 9
  qs[0] = 0x02;           // sub-block 0 = low nibbles of bytes 0..31: value 0 gets 2
  std::vector<float> y(256);
  DequantizeGgml(kGgmlTypeQ4_K, block, y.data(), 256);
  EXPECT_EQ(y[5 * 32 + 4], 37.0f * 9 - 0.5f * 50);
  EXPECT_EQ(y[5 * 32 + 5], -0.5f * 50);
  EXPECT_EQ(y[0], 3.0f * 2 - 0.5f * 7);
  EXPECT_EQ(y[1], -0.5f * 7);
  EXPECT_EQ(y[32], 0.0f);  // sub-block 1: scale 0, min 0
}

TEST(GgufQuantTest, TypeTableAndNames) {
  const std::map<uint32_t, std::tuple<std::string, uint32_t, uint32_t>> expected = {
      {0, {"F32", 1, 4}},       {1, {"F16", 1, 2}},       {2, {"Q4_0", 32, 18}},   {3, {"Q4_1", 32, 20}},
      {6, {"Q5_0", 32, 22}},    {7, {"Q5_1", 32, 24}},    {8, {"Q8_0", 32, 34}},   {12, {"Q4_K", 256, 144}},
      {13, {"Q5_K", 256, 176}}, {14, {"Q6_K", 256, 210}}, {30, {"BF16", 1, 2}},   {16, {"IQ2_XXS", 256, 66}},
      {10, {"Q2_K", 256, 84}},  {39, {"MXFP4", 32, 17}}};
  for (const auto& [id, e] : expected) {
    const GgmlType* t = FindGgmlType(id);
    ASSERT_NE(t, nullptr) << id;
    EXPECT_EQ(t->name, std::get<0>(e));
    EXPECT_EQ(t->block_size, std::get<1>(e)) << t->name;
    EXPECT_EQ(t->block_bytes, std::get<2>(e)) << t->name;
  }
  for (uint32_t removed : {4u, 5u, 31u, 32u, 33u, 36u, 42u, 1000u, ~0u}) EXPECT_EQ(FindGgmlType(removed), nullptr);
  EXPECT_EQ(GgmlTypeName(12), "Q4_K (12)");
  EXPECT_EQ(GgmlTypeName(99), "unknown (99)");
  EXPECT_EQ(LoadableGgmlTypeNames(), "F32, F16, BF16, Q8_0, Q6_K, Q5_K, Q5_1, Q5_0, Q4_K, Q4_1, Q4_0");
}

TEST(GgufQuantTest, UnsupportedTypesNameThemselvesAndTheSupportedOnes) {
  for (uint32_t ok : {0u, 1u, 2u, 3u, 6u, 7u, 8u, 12u, 13u, 14u, 30u}) EXPECT_TRUE(CheckLoadableGgmlType(ok).ok()) << ok;
  Status s = CheckLoadableGgmlType(16);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "GGUF type IQ2_XXS is not supported (supported: " + LoadableGgmlTypeNames() + ")");
  s = CheckLoadableGgmlType(99);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("GGUF type id 99 (unknown to this version) is not supported (supported: F32,"));
}

TEST(GgufQuantTest, LayoutSizesAndErrors) {
  Result<GgmlTensorLayout> l = GgmlLayout(kGgmlTypeQ4_K, {512, 3, 2});
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->n_cols, 512u);
  EXPECT_EQ(l->n_rows, 6u);
  EXPECT_EQ(l->row_bytes, 2u * 144);
  EXPECT_EQ(l->n_bytes, 6u * 2 * 144);
  l = GgmlLayout(kGgmlTypeQ8_0, {64});
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->n_rows, 1u);
  EXPECT_EQ(l->n_bytes, 68u);
  l = GgmlLayout(kGgmlTypeF32, {});  // a scalar
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->n_bytes, 4u);
  l = GgmlLayout(kGgmlTypeQ6_K, {0, 5});
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->n_bytes, 0u);

  l = GgmlLayout(kGgmlTypeQ4_K, {64, 2});
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(l.status().message(), HasSubstr("row length ne[0]=64 of type Q4_K is not a multiple of its block size 256"));
  l = GgmlLayout(kGgmlTypeQ8_0, {});  // one value cannot fill a block
  EXPECT_FALSE(l.ok());

  const uint64_t big = uint64_t{1} << 40;
  l = GgmlLayout(kGgmlTypeQ8_0, {big * 32, big});  // 2^40 * 34 bytes per row, 2^40 rows
  ASSERT_FALSE(l.ok());
  EXPECT_THAT(l.status().message(), HasSubstr("more than an int64 can count"));
  l = GgmlLayout(kGgmlTypeQ8_0, {0, big, big});  // no bytes, but the row count overflows
  EXPECT_FALSE(l.ok());
  l = GgmlLayout(kGgmlTypeF32, {uint64_t{1} << 62});  // 2^64 bytes in one row
  ASSERT_FALSE(l.ok());
  EXPECT_THAT(l.status().message(), HasSubstr("too large"));
}

TEST(GgufQuantTest, Bf16AndF16FromUnalignedBytes) {
  std::string bytes = "x";  // makes the data start at an odd address
  for (uint16_t h : {0x3C00, 0xC000, 0x0001, 0x7C00}) testing::Put<uint16_t>(bytes, h);
  std::vector<float> y(4);
  DequantizeGgml(kGgmlTypeF16, reinterpret_cast<const uint8_t*>(bytes.data()) + 1, y.data(), 4);
  EXPECT_EQ(y, (std::vector<float>{1.0f, -2.0f, std::ldexp(1.0f, -24), INFINITY}));
  DequantizeGgml(kGgmlTypeBF16, reinterpret_cast<const uint8_t*>(bytes.data()) + 1, y.data(), 4);
  EXPECT_EQ(y[0], std::bit_cast<float>(0x3C000000u));
  EXPECT_EQ(y[1], -2.0f);  // 0xC000 << 16
}

// ReadRowsAsFloat gives the rows DequantizeGgml gives for the raw bytes, however the
// reads are cut into chunks, and only the rows asked for.
TEST(GgufQuantTest, ReaderReadsRowRangesInChunks) {
  for (uint32_t type : {kGgmlTypeQ8_0, kGgmlTypeQ4_K, kGgmlTypeBF16, kGgmlTypeF16, kGgmlTypeF32}) {
    const GgmlType* t = FindGgmlType(type);
    SCOPED_TRACE(t->name);
    const uint64_t cols = 512, rows = 7;
    const std::string raw = testing::RandomGgmlBlocks(type, cols * rows, 99 + type);
    std::vector<float> all(cols * rows);
    DequantizeGgml(type, reinterpret_cast<const uint8_t*>(raw.data()), all.data(), all.size());
    testing::GgufWriter g;
    g.AddTensorF32("pad", {3}, std::vector<float>{1, 2, 3});  // the tensor does not start the data section
    g.AddTensorRaw("t", {cols, rows}, type, raw);
    std::string file = g.Serialize();
    Result<std::unique_ptr<GgufReader>> r = GgufReader::FromStream(fmemopen(file.data(), file.size(), "rb"), "mem");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const GgufTensorInfo* info = (*r)->FindTensor("t");
    ASSERT_NE(info, nullptr);
    ASSERT_TRUE(info->layout.has_value());
    EXPECT_EQ(info->layout->n_bytes, raw.size());
    for (size_t chunk : {size_t{1}, size_t{1000}, GgufReader::kDefaultChunkBytes}) {
      for (auto [begin, n] : {std::pair<uint64_t, uint64_t>{0, 7}, {2, 3}, {6, 1}, {4, 0}}) {
        std::vector<float> got(n * cols + 1, -7.0f);
        Status s = (*r)->ReadRowsAsFloat(*info, begin, n, got.data(), chunk);
        ASSERT_TRUE(s.ok()) << s.ToString();
        ExpectSameBits(std::vector<float>(all.begin() + begin * cols, all.begin() + (begin + n) * cols),
                       std::vector<float>(got.begin(), got.end() - 1),
                       "rows " + std::to_string(begin) + "+" + std::to_string(n) + " chunk " + std::to_string(chunk));
        EXPECT_EQ(got.back(), -7.0f) << "wrote past the rows";
      }
    }
  }
}

// A Q8_0 file written by llama.cpp's converter (tests/fixtures/models/tinyllama, from the
// same fp16 checkpoint as model-f16.gguf there): every matrix loads to exactly the Q8_0
// of the f16 file's values as gguf-py quantizes them (checked above to be the test
// writer's), the norms as they are.
TEST(GgufQuantTest, LlamaCppQ8_0FileIsTheQ8_0OfItsF16File) {
  const std::string dir = std::string(FLOVER_SOURCE_DIR) + "/tests/fixtures/models/tinyllama/";
  Result<GgufModel> f16 = LoadGgufModel(dir + "model-f16.gguf");
  ASSERT_TRUE(f16.ok()) << f16.status().ToString();
  Result<GgufModel> q8 = LoadGgufModel(dir + "model-q8_0.gguf");
  ASSERT_TRUE(q8.ok()) << q8.status().ToString();
  ModelWeights expected = f16->weights;
  auto quantize = [](WeightTensor& t) {
    std::vector<float> back;
    testing::QuantizeQ8_0(t.f32(), &back);
    t = WeightTensor(std::move(back));
  };
  quantize(expected.token_embedding);
  quantize(expected.classifier);
  for (LayerWeights& l : expected.layers)
    for (WeightTensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) quantize(*t);
  testing::ExpectSameWeights(expected, q8->weights);
  EXPECT_NE(q8->weights.layers[1].w2, f16->weights.layers[1].w2);
  ASSERT_TRUE(q8->tokenizer.has_value());
  EXPECT_EQ(q8->tokenizer->vocab_size(), 512);
}

}  // namespace
}  // namespace flover
