// Loading with a weight format policy (LoadTarget::weights, weight_policy.h): what each
// loader keeps in memory. GGUF matrices of the CPU's native types are the file's bytes
// (no fp32 expansion: the weights cost what the file's tensors do), other GGUF types
// become Q8_0, fp16/bf16 safetensors stay fp16/bf16, an explicit format converts every
// matrix, tensor-parallel shards of packed weights are the whole model's shards, and a
// column split inside a block is an error that says what would work.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/model/gguf_writer.h"
#include "tests/model/test_model_files.h"
#include "tests/test_paths.h"
#include "worker/model/dummy_model.h"
#include "worker/model/gguf_loader.h"
#include "worker/model/gguf_quant.h"
#include "worker/model/gguf_reader.h"
#include "worker/model/model_loader.h"
#include "worker/model/rotary_layout.h"
#include "worker/model/shard.h"

namespace flover {
namespace {

using cpu::WeightFormat;
using ::testing::HasSubstr;

constexpr WeightFormat kEveryFormat[] = {WeightFormat::kF32,  WeightFormat::kF16,  WeightFormat::kBF16,
                                         WeightFormat::kQ8_0, WeightFormat::kQ4_0, WeightFormat::kQ4_K};

LoadTarget Whole(const WeightPolicy& policy) { return LoadTarget{ShardInfo{}, nullptr, policy}; }

ModelWeights Load(const std::string& path, const LoadTarget& target) {
  Result<LoadedModel> m = LoadModel(path, 0, target);
  EXPECT_TRUE(m.ok()) << path << ": " << m.status().ToString();
  return m.ok() ? std::move(m->weights) : ModelWeights{};
}

// One tensor of a model: its name ("layers.1.wq"), whether it is a matrix, its full
// shape, and the tensor.
struct Entry {
  std::string name;
  bool matrix;
  int64_t rows, cols;
  const WeightTensor* tensor;
};

// Every tensor a model of w.spec has, in table order.
std::vector<Entry> Entries(const ModelWeights& w) {
  std::vector<Entry> out;
  auto add = [&](const std::string& name, const auto& t, const WeightTensor& tensor) {
    if (t.present(w.spec)) out.push_back({name, t.matrix, t.rows(w.spec), t.cols(w.spec), &tensor});
  };
  for (const auto& t : ModelTensors()) add(t.name, t, w.*t.member);
  for (size_t i = 0; i < w.layers.size(); ++i)
    for (const auto& t : LayerTensors()) add("layers." + std::to_string(i) + "." + t.name, t, w.layers[i].*t.member);
  return out;
}

int64_t MatrixBytes(const ModelWeights& w) {
  int64_t n = 0;
  for (const Entry& e : Entries(w)) n += e.matrix ? e.tensor->n_bytes() : 0;
  return n;
}

// Every matrix of `w` as fp32 values (the kernels' dequantization) and in `format`.
ModelWeights Converted(ModelWeights w, WeightFormat format) {
  auto convert = [&](WeightTensor& tensor, const auto& t) {
    if (t.present(w.spec) && t.matrix) tensor = tensor.ConvertTo(format, t.rows(w.spec), t.cols(w.spec));
  };
  for (const auto& t : ModelTensors()) convert(w.*t.member, t);
  for (LayerWeights& l : w.layers)
    for (const auto& t : LayerTensors()) convert(l.*t.member, t);
  return w;
}

// llama.cpp's names of the matrices of layer-less and layer tensors.
const std::map<std::string, std::string>& GgufMatrixNames() {
  static const std::map<std::string, std::string> kNames = {
      {"token_embedding", "token_embd.weight"}, {"classifier", "output.weight"}, {"wq", "attn_q.weight"},
      {"wk", "attn_k.weight"},                  {"wv", "attn_v.weight"},         {"wo", "attn_output.weight"},
      {"w1", "ffn_gate.weight"},                {"w2", "ffn_down.weight"},       {"w3", "ffn_up.weight"}};
  return kNames;
}

// The table's kind of matrix `name` ("layers.1.wq" -> "wq") and its GGUF name
// ("blk.1.attn_q.weight").
std::string KindOf(const std::string& name) {
  return name.rfind("layers.", 0) == 0 ? name.substr(name.find('.', 7) + 1) : name;
}
std::string GgufNameOf(const std::string& name) {
  if (name.rfind("layers.", 0) != 0) return GgufMatrixNames().at(name);
  return "blk." + name.substr(7, name.find('.', 7) - 7) + "." + GgufMatrixNames().at(KindOf(name));
}

// The file's bytes of the GGUF tensor holding matrix `name` ("layers.1.wq"), Q/K rows
// permuted as the loader permutes them for an architecture that rotates halves.
std::vector<uint8_t> FileBytes(GgufReader& r, const std::string& name, bool rotates_halves, int head_dim) {
  const std::string kind = KindOf(name), gguf = GgufNameOf(name);
  const GgufTensorInfo* info = r.FindTensor(gguf);
  EXPECT_NE(info, nullptr) << gguf;
  if (info == nullptr) return {};
  std::vector<uint8_t> bytes(info->layout->n_bytes);
  EXPECT_TRUE(r.ReadTensorData(*info, bytes.data()).ok());
  if (rotates_halves && (kind == "wq" || kind == "wk"))
    HalvesToPairs(std::span<uint8_t>(bytes), head_dim, static_cast<int64_t>(info->layout->row_bytes));
  return bytes;
}

// A GGUF file served with `auto`: every matrix is kept in `format`, its bytes the
// file's; every vector fp32; and the weights hold exactly the bytes of the file's
// tensors (nothing widened).
void ExpectServedAsStored(const std::string& path, WeightFormat format, bool rotates_halves) {
  SCOPED_TRACE(path);
  const ModelWeights w = Load(path, Whole(WeightPolicy::Auto()));
  ASSERT_FALSE(w.layers.empty());
  std::unique_ptr<GgufReader> r = std::move(GgufReader::Open(path)).value();
  int64_t held = 0;
  for (const Entry& e : Entries(w)) {
    held += e.tensor->n_bytes();
    if (!e.matrix) {
      EXPECT_TRUE(e.tensor->is_f32()) << e.name;
      continue;
    }
    ASSERT_EQ(e.tensor->format(), format) << e.name;
    const std::vector<uint8_t> file = FileBytes(*r, e.name, rotates_halves, w.spec.head_dim());
    ASSERT_EQ(e.tensor->n_bytes(), static_cast<int64_t>(file.size())) << e.name;
    EXPECT_TRUE(std::equal(file.begin(), file.end(), e.tensor->bytes().begin())) << e.name << ": not the file's bytes";
  }
  int64_t file_tensors = 0;
  for (const GgufTensorInfo& info : r->tensors()) file_tensors += static_cast<int64_t>(info.layout->n_bytes);
  EXPECT_EQ(held, file_tensors) << "the weights cost what the file's tensors do";
  std::printf("%s: %s; file %lld bytes, tensors %lld bytes, held %lld bytes; fp32 would be %lld\n", path.c_str(),
              w.FormatsString().c_str(), static_cast<long long>(r->file_size()), static_cast<long long>(file_tensors),
              static_cast<long long>(held), static_cast<long long>(w.spec.n_params() * 4));
}

TEST(TypedLoadTest, Q8_0GgufFilesAreServedAsTheFilesBytes) {
  ExpectServedAsStored(testing::FixturePath("models/tinyllama/model-q8_0.gguf"), WeightFormat::kQ8_0, false);
  ExpectServedAsStored(testing::FixturePath("models/qwen2/model-q8_0.gguf"), WeightFormat::kQ8_0, true);
}

TEST(TypedLoadTest, F16AndBf16GgufFilesAreServedAsTheFilesBytes) {
  ExpectServedAsStored(testing::FixturePath("models/tinyllama/model-f16.gguf"), WeightFormat::kF16, false);
  ExpectServedAsStored(testing::FixturePath("models/qwen2/model-bf16.gguf"), WeightFormat::kBF16, true);
}

// Hugging Face folders: fp16/bf16 safetensors stay 16-bit under auto (the same values as
// the fp32 load, exactly), fp32 ones stay fp32.
TEST(TypedLoadTest, HalfPrecisionSafetensorsStayHalfUnderAuto) {
  for (const auto& [name, format] : std::vector<std::pair<std::string, WeightFormat>>{
           {"llama2", WeightFormat::kF32}, {"tinyllama", WeightFormat::kF16}, {"llama3", WeightFormat::kBF16},
           {"mistral", WeightFormat::kBF16}, {"qwen2", WeightFormat::kBF16}, {"gptj", WeightFormat::kF16}}) {
    SCOPED_TRACE(name);
    const std::string dir = testing::FixturePath("models/" + name);
    const ModelWeights kept = Load(dir, Whole(WeightPolicy::Auto()));
    const ModelWeights f32 = Load(dir, Whole(WeightPolicy::Exactly(WeightFormat::kF32)));
    ASSERT_FALSE(kept.layers.empty());
    for (const Entry& e : Entries(kept)) EXPECT_EQ(e.tensor->format(), e.matrix ? format : WeightFormat::kF32) << e.name;
    testing::ExpectSameWeights(f32, Converted(kept, WeightFormat::kF32));
    EXPECT_EQ(MatrixBytes(kept) * (format == WeightFormat::kF32 ? 1 : 2), MatrixBytes(f32))
        << "16-bit matrices take half the fp32 bytes";
  }
}

// A file mixing every loadable type (as Q4_K_M files mix Q4_K and Q6_K): under auto the
// CPU's own types are kept as stored, the others (Q6_K, Q5_K, Q5_1, Q5_0, Q4_1) become
// Q8_0 of their values; whole and as two tensor-parallel shards.
TEST(TypedLoadTest, AutoKeepsNativeGgufTypesAndMakesTheOthersQ8_0) {
  ModelSpec spec = testing::Q8Spec(/*shared_classifier=*/false);
  spec.dim = 256;
  spec.hidden_dim = 512;  // each of 2 ranks: 256 columns of ffn_down, one Q4_K block
  spec.n_heads = 8;
  spec.n_kv_heads = 4;  // q_dim 256: each of 2 ranks 128 columns of attn_output (no Q4_K there)
  spec.n_layers = 2;
  const ModelWeights w = testing::RandomWeights(spec, 31);
  const std::map<std::string, uint32_t> types = {
      {"token_embd.weight", kGgmlTypeQ6_K},         {"output.weight", kGgmlTypeQ8_0},
      {"output_norm.weight", kGgmlTypeF32},         {"blk.0.attn_q.weight", kGgmlTypeQ4_K},
      {"blk.0.attn_k.weight", kGgmlTypeQ5_K},       {"blk.0.attn_v.weight", kGgmlTypeQ6_K},
      {"blk.0.attn_output.weight", kGgmlTypeQ5_0},  {"blk.0.ffn_gate.weight", kGgmlTypeQ4_1},
      {"blk.0.ffn_down.weight", kGgmlTypeQ4_K},     {"blk.0.ffn_up.weight", kGgmlTypeBF16},
      {"blk.0.attn_norm.weight", kGgmlTypeF16},     {"blk.0.ffn_norm.weight", kGgmlTypeBF16},
      {"blk.1.attn_q.weight", kGgmlTypeQ5_1},       {"blk.1.attn_k.weight", kGgmlTypeQ4_0},
      {"blk.1.attn_v.weight", kGgmlTypeQ8_0},       {"blk.1.attn_output.weight", kGgmlTypeF16},
      {"blk.1.ffn_gate.weight", kGgmlTypeF32},      {"blk.1.ffn_down.weight", kGgmlTypeQ6_K},
      {"blk.1.ffn_up.weight", kGgmlTypeQ4_0},       {"blk.1.attn_norm.weight", kGgmlTypeF32},
      {"blk.1.ffn_norm.weight", kGgmlTypeF32}};
  uint64_t seed = 200;
  const testing::GgufWriter g = testing::LlamaGgufWith(
      w, [&](testing::GgufWriter& g, const std::string& name, const std::vector<uint64_t>& ne,
             const std::vector<float>& data) {
        const uint32_t type = types.at(name);
        const std::string bytes = testing::RandomGgmlBlocks(type, data.size(), ++seed);
        g.AddTensorRaw(name, ne, type, bytes);
        std::vector<float> values(data.size());
        DequantizeGgml(type, reinterpret_cast<const uint8_t*>(bytes.data()), values.data(), values.size());
        return values;
      });
  testing::ScratchDir dir;
  const std::string path = dir.Path("mixed.gguf");
  ASSERT_TRUE(g.WriteFile(path));

  const ModelWeights f32 = Load(path, Whole(WeightPolicy::Exactly(WeightFormat::kF32)));
  const ModelWeights kept = Load(path, Whole(WeightPolicy::Auto()));
  ASSERT_FALSE(kept.layers.empty());
  std::unique_ptr<GgufReader> r = std::move(GgufReader::Open(path)).value();
  const std::map<uint32_t, WeightFormat> native = {
      {kGgmlTypeF32, WeightFormat::kF32},   {kGgmlTypeF16, WeightFormat::kF16},   {kGgmlTypeBF16, WeightFormat::kBF16},
      {kGgmlTypeQ8_0, WeightFormat::kQ8_0}, {kGgmlTypeQ4_0, WeightFormat::kQ4_0}, {kGgmlTypeQ4_K, WeightFormat::kQ4_K}};
  // The CPU's own types as stored; the others Q8_0 of the file's values.
  const std::vector<Entry> kept_entries = Entries(kept), f32_entries = Entries(f32);
  ASSERT_EQ(kept_entries.size(), f32_entries.size());
  int converted = 0;
  for (size_t i = 0; i < kept_entries.size(); ++i) {
    const Entry& e = kept_entries[i];
    if (!e.matrix) {
      EXPECT_TRUE(e.tensor->is_f32()) << e.name;
      EXPECT_EQ(*e.tensor, *f32_entries[i].tensor) << e.name;
      continue;
    }
    const uint32_t type = types.at(GgufNameOf(e.name));
    const auto it = native.find(type);
    if (it != native.end()) {
      ASSERT_EQ(e.tensor->format(), it->second) << e.name;
      const std::vector<uint8_t> file = FileBytes(*r, e.name, false, spec.head_dim());
      EXPECT_TRUE(std::equal(file.begin(), file.end(), e.tensor->bytes().begin())) << e.name;
      continue;
    }
    ++converted;
    EXPECT_EQ(*e.tensor, f32_entries[i].tensor->ConvertTo(WeightFormat::kQ8_0, e.rows, e.cols))
        << e.name << " (" << GgmlTypeName(type) << ")";
  }
  EXPECT_EQ(converted, 7);

  // Two ranks: each holds its shard of the whole auto load (Q4_K's ffn_down split at a
  // block boundary, the converted attn_output of layer 0 by Q8_0 blocks).
  for (int rank = 0; rank < 2; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    Result<ModelWeights> expected = ShardWeights(kept, rank, 2);
    ASSERT_TRUE(expected.ok()) << expected.status().ToString();
    testing::ExpectSameWeights(*expected,
                               Load(path, LoadTarget{ShardInfo{rank, 2}, nullptr, WeightPolicy::Auto()}));
  }
}

// An explicit format converts every matrix of any source, tensor by tensor: the result
// is the fp32 load converted (requantized from the Q8_0 file's values, quantized from
// fp16/bf16 safetensors).
TEST(TypedLoadTest, AFormatConvertsEveryMatrixOfEverySource) {
  for (const std::string& path : {testing::FixturePath("models/tinyllama/model-q8_0.gguf"),
                                  testing::FixturePath("models/qwen2"), testing::FixturePath("models/llama2")}) {
    SCOPED_TRACE(path);
    const ModelWeights f32 = Load(path, Whole(WeightPolicy::Exactly(WeightFormat::kF32)));
    for (WeightFormat f : {WeightFormat::kF16, WeightFormat::kBF16, WeightFormat::kQ8_0, WeightFormat::kQ4_0}) {
      SCOPED_TRACE(cpu::WeightFormatName(f));
      testing::ExpectSameWeights(Converted(f32, f), Load(path, Whole(WeightPolicy::Exactly(f))));
    }
    // The fixtures' rows (32 and 64 values) are no Q4_K blocks: Q8_0 instead.
    testing::ExpectSameWeights(Converted(f32, WeightFormat::kQ8_0),
                               Load(path, Whole(WeightPolicy::Exactly(WeightFormat::kQ4_K))));
  }
}

// stories260K's w2 rows have 172 values, no whole block of 32: explicit q8_0 keeps them
// fp16, every other matrix q8_0.
TEST(TypedLoadTest, RowsThatAreNoWholeBlocksFallBackToFp16) {
  const ModelWeights w = Load(testing::Stories260kBin(), Whole(WeightPolicy::Exactly(WeightFormat::kQ8_0)));
  ASSERT_FALSE(w.layers.empty());
  for (const Entry& e : Entries(w)) {
    if (!e.matrix) continue;
    EXPECT_EQ(e.tensor->format(), KindOf(e.name) == "w2" ? WeightFormat::kF16 : WeightFormat::kQ8_0) << e.name;
  }
}

// The tinyllama fixture's attn_output rows have 32 values: over two ranks 16 each, half
// a Q8_0 block. Served as stored that cannot be split; the error says what works.
TEST(TypedLoadTest, AColumnSplitInsideABlockIsRefusedWithWhatWorks) {
  const std::string path = testing::FixturePath("models/tinyllama/model-q8_0.gguf");
  Result<LoadedModel> m = LoadModel(path, 0, LoadTarget{ShardInfo{0, 2}, nullptr, WeightPolicy::Auto()});
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(),
              HasSubstr("tensor blk.0.attn_output.weight is q8_0 in blocks of 32 values, but tensor parallel size 2 "
                        "leaves each rank 16 of its 32 columns, not whole blocks; use a tensor parallel size of 1, or "
                        "model.dtype fp16, bf16, fp32"));
  EXPECT_THAT(m.status().message(), HasSubstr(path));
  // As asked: fp16 splits anywhere.
  EXPECT_TRUE(LoadModel(path, 0, LoadTarget{ShardInfo{1, 2}, nullptr, WeightPolicy::Exactly(WeightFormat::kF16)}).ok());
}

// dim 512, hidden 1024, 8 heads over 4 kv heads: every format's blocks divide what each of
// two ranks keeps.
ModelSpec SplittableSpec() {
  ModelSpec s;
  s.dim = 512;
  s.hidden_dim = 1024;
  s.n_layers = 2;
  s.n_heads = 8;
  s.n_kv_heads = 4;
  s.vocab_size = 37;
  s.max_seq_len = 64;
  s.shared_classifier = true;
  return s;
}

// Dummy weights in every format: the fp32 dummy converted per tensor, and each rank's
// shard the whole model's shard; the memory check counts the format's bytes.
TEST(TypedLoadTest, DummyWeightsInEveryFormatAndTheirShards) {
  const ModelSpec spec = SplittableSpec();
  Result<ModelWeights> f32 = MakeDummyWeights(spec, 3);
  ASSERT_TRUE(f32.ok());
  for (WeightFormat f : kEveryFormat) {
    SCOPED_TRACE(cpu::WeightFormatName(f));
    Result<ModelWeights> whole = MakeDummyWeights(spec, 3, Whole(WeightPolicy::Exactly(f)));
    ASSERT_TRUE(whole.ok()) << whole.status().ToString();
    testing::ExpectSameWeights(Converted(*f32, f), *whole);
    int64_t bytes = 0;
    for (const Entry& e : Entries(*whole)) bytes += e.tensor->n_bytes();
    EXPECT_EQ(ShardWeightBytes(spec, 1, WeightPolicy::Exactly(f)), bytes);
    for (int rank = 0; rank < 2; ++rank) {
      SCOPED_TRACE("rank " + std::to_string(rank));
      Result<ModelWeights> expected = ShardWeights(*whole, rank, 2);
      ASSERT_TRUE(expected.ok()) << expected.status().ToString();
      Result<ModelWeights> shard =
          MakeDummyWeights(spec, 3, LoadTarget{ShardInfo{rank, 2}, nullptr, WeightPolicy::Exactly(f)});
      ASSERT_TRUE(shard.ok()) << shard.status().ToString();
      testing::ExpectSameWeights(*expected, *shard);
    }
  }
  EXPECT_LT(ShardWeightBytes(spec, 1, WeightPolicy::Exactly(WeightFormat::kQ4_K)) * 6,
            ShardWeightBytes(spec, 1, WeightPolicy::Exactly(WeightFormat::kF32)));
  Status s = CheckDummyWeightsFit("llama-7b", *DummyPreset("llama-7b"), int64_t{10'000'000'000}, 1,
                                  WeightPolicy::Exactly(WeightFormat::kQ4_K));
  EXPECT_TRUE(s.ok()) << "7B parameters in Q4_K take about 3.8 GB: " << s.ToString();
  s = CheckDummyWeightsFit("llama-7b", *DummyPreset("llama-7b"), int64_t{10'000'000'000}, 1);
  EXPECT_THAT(s.ToString(), HasSubstr("of fp32 weights"));
  s = CheckDummyWeightsFit("llama-7b", *DummyPreset("llama-7b"), int64_t{10'000'000'000}, 1, WeightPolicy::Auto());
  EXPECT_THAT(s.ToString(), HasSubstr("of fp32 weights")) << "dummy weights are generated in fp32: auto keeps them";
  s = CheckDummyWeightsFit("llama-7b", *DummyPreset("llama-7b"), int64_t{1'000'000'000}, 1,
                           WeightPolicy::Exactly(WeightFormat::kQ4_K));
  EXPECT_THAT(s.ToString(), HasSubstr("GB of q4_k weights; this machine has 1.0 GB available"));
}

// A Q8_0 GGUF whose shape two ranks can split: each rank's auto load is the shard of the
// whole auto load, bytes as stored.
TEST(TypedLoadTest, Q8_0GgufShardsAreTheWholeLoadsShards) {
  ModelSpec spec = testing::Q8Spec(/*shared_classifier=*/false);
  spec.hidden_dim = 128;  // each of 2 ranks: 64 columns of ffn_down, 2 blocks
  const ModelWeights w = testing::RandomWeights(spec, 41);
  testing::ScratchDir dir;
  const std::string path = dir.Path("q8.gguf");
  ASSERT_TRUE(testing::LlamaGgufQ8_0(w).WriteFile(path));
  const ModelWeights whole = Load(path, Whole(WeightPolicy::Auto()));
  EXPECT_EQ(whole.layers[0].w2.format(), WeightFormat::kQ8_0);
  for (int rank = 0; rank < 2; ++rank) {
    Result<ModelWeights> expected = ShardWeights(whole, rank, 2);
    ASSERT_TRUE(expected.ok()) << expected.status().ToString();
    testing::ExpectSameWeights(*expected, Load(path, LoadTarget{ShardInfo{rank, 2}, nullptr, WeightPolicy::Auto()}));
  }
}

}  // namespace
}  // namespace flover
