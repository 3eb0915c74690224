// Hugging Face model folders: config.json -> ModelSpec for every architecture, tensors
// in the right members (the q/k halves-to-pairs permutation checked by hand), exact
// F16/BF16 conversion, sharded checkpoints, tensor-parallel slices equal to ShardWeights
// of the whole model, tied embeddings, and broken or hostile folders (each a clear
// error naming what is wrong, never a crash).
#include "worker/model/hf_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "tests/model/hf_folder.h"
#include "tests/model/safetensors_writer.h"
#include "tests/model/test_model_files.h"
#include "worker/model/hf_config.h"
#include "worker/model/model_loader.h"
#include "worker/model/shard.h"

namespace flover {
namespace {

using ::flover::testing::ArchSpec;
using ::flover::testing::ExactWeights;
using ::flover::testing::ExpectSameModel;
using ::flover::testing::HfCheckpoint;
using ::flover::testing::HfDtype;
using ::flover::testing::MakeHfCheckpoint;
using ::flover::testing::ScratchDir;
using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;

const char* const kArchs[] = {"llama", "llama3", "mistral", "qwen2", "gptj"};

Result<ModelWeights> Load(const std::string& dir, const LoadTarget& target = {}) {
  Result<HfModel> m = LoadHfModel(dir, target);
  if (!m.ok()) return m.status();
  return std::move(m->weights);
}

// Expects loading `dir` to fail with `code` and a message holding every needle.
void ExpectLoadError(const std::string& dir, StatusCode code, std::initializer_list<std::string> needles) {
  Result<ModelWeights> m = Load(dir);
  ASSERT_FALSE(m.ok()) << "loaded although it should fail with " << *needles.begin();
  EXPECT_EQ(m.status().code(), code) << m.status().ToString();
  for (const std::string& n : needles) EXPECT_THAT(m.status().message(), HasSubstr(n));
}

// ParseHfConfig of config.json text alone (plus a generation config).
Result<HfConfig> Parse(const Json& config, const Json& generation = nullptr) {
  return ParseHfConfig(config.dump(), generation.is_null() ? std::string() : generation.dump());
}

void ExpectParseError(const Json& config, StatusCode code, std::initializer_list<std::string> needles) {
  Result<HfConfig> c = Parse(config);
  ASSERT_FALSE(c.ok()) << "parsed although it should fail with " << *needles.begin();
  EXPECT_EQ(c.status().code(), code) << c.status().ToString();
  for (const std::string& n : needles) EXPECT_THAT(c.status().message(), HasSubstr(n));
}

Json ConfigOf(const std::string& arch) { return MakeHfCheckpoint(ExactWeights(ArchSpec(arch), 1)).config; }

// --- config.json ---------------------------------------------------------------------

// The config.json of Llama 3.1 8B (shape fields as published) with its generation config.
TEST(HfConfigTest, Llama31) {
  const Json config = Json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "rope_theta": 500000.0,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.43.0.dev0",
    "use_cache": true, "vocab_size": 128256})");
  const Json generation = Json::parse(R"({"bos_token_id": 128000, "do_sample": true,
    "eos_token_id": [128001, 128008, 128009], "temperature": 0.6, "top_p": 0.9})");
  Result<HfConfig> c = Parse(config, generation);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const ModelSpec& s = c->spec;
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_TRUE(c->rotates_halves);
  EXPECT_EQ(s.arch, "llama");
  EXPECT_EQ(s.dim, 4096);
  EXPECT_EQ(s.hidden_dim, 14336);
  EXPECT_EQ(s.n_layers, 32);
  EXPECT_EQ(s.n_heads, 32);
  EXPECT_EQ(s.n_kv_heads, 8);
  EXPECT_EQ(s.vocab_size, 128256);
  EXPECT_EQ(s.max_seq_len, 131072);
  EXPECT_EQ(s.norm_eps, 1e-5f);
  EXPECT_EQ(s.rope_theta, 500000.0f);
  EXPECT_FALSE(s.shared_classifier);
  EXPECT_EQ(s.rope_scaling.kind, RopeScaling::Kind::kLlama3);
  EXPECT_EQ(s.rope_scaling.factor, 8.0f);
  EXPECT_EQ(s.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_EQ(s.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(s.rope_scaling.original_max_position, 8192);
  EXPECT_EQ(s.bos_id, 128000);
  EXPECT_EQ(s.eos_id, 128001);
  EXPECT_EQ(s.extra_eos_ids, (std::vector<int>{128008, 128009}));
  EXPECT_FALSE(s.qkv_bias);
  EXPECT_EQ(s.sliding_window, 0);
}

TEST(HfConfigTest, RopeScalingOtherThanLlama3IsNamedAsUnsupported) {
  for (const char* type : {"linear", "dynamic", "yarn", "longrope"}) {
    Json c = ConfigOf("llama");
    c["rope_scaling"] = {{"type", type}, {"factor", 2.0}};
    ExpectParseError(c, StatusCode::kInvalidArgument, {"rope_scaling", std::string("\"") + type + "\"", "not supported"});
  }
  Json c = ConfigOf("llama");
  c["rope_scaling"] = {{"rope_type", "default"}};
  Result<HfConfig> parsed = Parse(c);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->spec.rope_scaling.kind, RopeScaling::Kind::kNone);
  c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  ExpectParseError(c, StatusCode::kCorruption, {"rope_scaling", "low_freq_factor is missing"});
}

TEST(HfConfigTest, UnsupportedArchitectureIsNamedWithTheSupportedOnes) {
  Json c = ConfigOf("llama");
  c["architectures"] = {"GPT2LMHeadModel"};
  ExpectParseError(c, StatusCode::kInvalidArgument,
                   {"unsupported architecture GPT2LMHeadModel", "LlamaForCausalLM", "GPTJForCausalLM"});
  c.erase("architectures");
  c["model_type"] = "falcon";
  ExpectParseError(c, StatusCode::kInvalidArgument, {"unsupported architecture falcon", "Qwen2ForCausalLM"});
  c["model_type"] = "mistral";  // without "architectures" the model type decides
  Result<HfConfig> parsed = Parse(c);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->architecture, "MistralForCausalLM");
  c["architectures"] = "LlamaForCausalLM";
  ExpectParseError(c, StatusCode::kCorruption, {"architectures", "non-empty list"});
}

TEST(HfConfigTest, MissingOrMistypedFieldsAreNamed) {
  for (const char* field : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                            "vocab_size", "max_position_embeddings"}) {
    Json c = ConfigOf("llama");
    c.erase(field);
    ExpectParseError(c, StatusCode::kCorruption, {"config.json", field, "is missing"});
  }
  for (const char* field : {"n_embd", "n_layer", "n_head", "n_positions", "vocab_size"}) {
    Json c = ConfigOf("gptj");
    c.erase(field);
    ExpectParseError(c, StatusCode::kCorruption, {"config.json", field, "is missing"});
  }
  Json c = ConfigOf("llama");
  c["hidden_size"] = "16";
  ExpectParseError(c, StatusCode::kCorruption, {"hidden_size must be an integer"});
  c["hidden_size"] = 16.5;
  ExpectParseError(c, StatusCode::kCorruption, {"hidden_size must be an integer"});
  c["hidden_size"] = -16;
  ExpectParseError(c, StatusCode::kCorruption, {"hidden_size must be positive"});
  c["hidden_size"] = 1e30;
  ExpectParseError(c, StatusCode::kCorruption, {"hidden_size"});
  c["hidden_size"] = uint64_t{1} << 40;
  ExpectParseError(c, StatusCode::kCorruption, {"hidden_size", "out of range"});
  c = ConfigOf("llama");
  c["rms_norm_eps"] = "small";
  ExpectParseError(c, StatusCode::kCorruption, {"rms_norm_eps must be a number"});
  c = ConfigOf("llama");
  c["tie_word_embeddings"] = 1;
  ExpectParseError(c, StatusCode::kCorruption, {"tie_word_embeddings must be true or false"});
  c = ConfigOf("llama");
  c["hidden_size"] = 18;  // not divisible by 4 heads
  ExpectParseError(c, StatusCode::kCorruption, {"hidden_size", "not divisible by num_attention_heads"});
  c = ConfigOf("llama");
  c["num_key_value_heads"] = 3;
  ExpectParseError(c, StatusCode::kCorruption, {"invalid model", "n_kv_heads"});
  ExpectParseError(Json::array(), StatusCode::kCorruption, {"config.json", "not a JSON object"});
  Result<HfConfig> bad = ParseHfConfig("{\"hidden_size\": ");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("config.json: not valid JSON"));
}

TEST(HfConfigTest, HeadDimOtherThanHiddenOverHeadsIsAnError) {
  Json c = ConfigOf("llama");
  c["head_dim"] = 4;  // = 16 / 4: fine
  EXPECT_TRUE(Parse(c).ok());
  c["head_dim"] = 8;
  ExpectParseError(c, StatusCode::kInvalidArgument, {"head_dim = 8", "hidden_size / num_attention_heads = 4"});
}

TEST(HfConfigTest, FeaturesTheDecoderLacksAreRefused) {
  Json c = ConfigOf("llama");
  c["attention_bias"] = true;
  ExpectParseError(c, StatusCode::kInvalidArgument, {"attention_bias", "not supported"});
  c = ConfigOf("llama");
  c["mlp_bias"] = true;
  ExpectParseError(c, StatusCode::kInvalidArgument, {"mlp_bias", "not supported"});
  c = ConfigOf("llama");
  c["hidden_act"] = "gelu";
  ExpectParseError(c, StatusCode::kInvalidArgument, {"hidden_act \"gelu\"", "silu"});
  c = ConfigOf("gptj");
  c["activation_function"] = "relu";
  ExpectParseError(c, StatusCode::kInvalidArgument, {"activation_function \"relu\"", "gelu_new"});
  c = ConfigOf("gptj");
  c["rotary_dim"] = 3;
  ExpectParseError(c, StatusCode::kCorruption, {"rotary_dim", "even"});
  c["rotary_dim"] = 6;
  ExpectParseError(c, StatusCode::kCorruption, {"rotary_dim", "head size 4"});
}

TEST(HfConfigTest, SlidingWindowsCapTheContext) {
  Json c = ConfigOf("mistral");
  c["max_position_embeddings"] = 32768;
  c["sliding_window"] = 4096;
  Result<HfConfig> parsed = Parse(c);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->spec.sliding_window, 4096);
  EXPECT_EQ(parsed->spec.max_seq_len, 4096);
  ASSERT_EQ(parsed->notes.size(), 1u);
  EXPECT_THAT(parsed->notes[0], HasSubstr("capped from 32768 to the sliding window of 4096"));

  c["sliding_window"] = nullptr;  // Mistral 7B v0.2+: no window
  parsed = Parse(c);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->spec.sliding_window, 0);
  EXPECT_EQ(parsed->spec.max_seq_len, 32768);
  EXPECT_TRUE(parsed->notes.empty());

  c.erase("sliding_window");  // transformers' default
  parsed = Parse(c);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->spec.max_seq_len, 4096);

  c["sliding_window"] = 65536;  // wider than the context: nothing to cap
  parsed = Parse(c);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->spec.max_seq_len, 32768);
  EXPECT_TRUE(parsed->notes.empty());

  c = ConfigOf("qwen2");
  c["max_position_embeddings"] = 32768;
  c["sliding_window"] = 4096;
  parsed = Parse(c);  // use_sliding_window false: the window field is not used
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->spec.max_seq_len, 32768);
  EXPECT_EQ(parsed->spec.sliding_window, 0);
  c["use_sliding_window"] = true;
  parsed = Parse(c);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->spec.max_seq_len, 4096);
  EXPECT_EQ(parsed->spec.sliding_window, 4096);
}

TEST(HfConfigTest, GptjDefaults) {
  Json c = ConfigOf("gptj");
  c["n_inner"] = nullptr;
  c["rotary_dim"] = nullptr;
  c.erase("layer_norm_epsilon");
  Result<HfConfig> parsed = Parse(c);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->layout, HfLayout::kGptj);
  EXPECT_FALSE(parsed->rotates_halves);
  EXPECT_EQ(parsed->spec.hidden_dim, 64);    // 4 * n_embd
  EXPECT_EQ(parsed->spec.rotary_dims(), 4);  // the whole head
  EXPECT_EQ(parsed->spec.norm_eps, 1e-5f);
  EXPECT_EQ(parsed->spec.norm, NormKind::kLayer);
  EXPECT_TRUE(parsed->spec.parallel_residual);
  EXPECT_TRUE(parsed->spec.classifier_bias);
}

TEST(HfConfigTest, EndOfTextIds) {
  Json c = ConfigOf("llama");
  c["eos_token_id"] = 2;
  c["bos_token_id"] = 1;
  // generation_config.json wins, field by field; duplicates are dropped.
  Result<HfConfig> parsed = Parse(c, Json{{"eos_token_id", {5, 6, 5, 7}}});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->spec.eos_id, 5);
  EXPECT_EQ(parsed->spec.extra_eos_ids, (std::vector<int>{6, 7}));
  EXPECT_EQ(parsed->spec.bos_id, 1);
  // No bos anywhere: the eos id stands in.
  c.erase("bos_token_id");
  parsed = Parse(c);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->spec.bos_id, 2);
  c.erase("eos_token_id");
  ExpectParseError(c, StatusCode::kCorruption, {"no eos_token_id"});
  c["eos_token_id"] = Json::array();
  ExpectParseError(c, StatusCode::kCorruption, {"eos_token_id is an empty list"});
  c["eos_token_id"] = 40;  // outside the vocabulary of 40
  ExpectParseError(c, StatusCode::kCorruption, {"outside the vocabulary"});
  c["eos_token_id"] = 2;
  Result<HfConfig> bad = ParseHfConfig(c.dump(), "{oops");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("generation_config.json: not valid JSON"));
}

TEST(HfConfigTest, ChatTemplate) {
  const std::string config = ConfigOf("llama").dump();
  Result<HfConfig> c = ParseHfConfig(config, "", R"({"chat_template": "{{ messages }}"})");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->spec.chat_template, "{{ messages }}");
  c = ParseHfConfig(config, "",
                    R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->spec.chat_template, "D");
  c = ParseHfConfig(config, "", R"({"chat_template": "from json"})", "from jinja");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->spec.chat_template, "from jinja");
  c = ParseHfConfig(config, "", R"({"chat_template": 5})");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("tokenizer_config.json: chat_template must be a string"));
  c = ParseHfConfig(config, "", R"({"model_max_length": 2048})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->spec.chat_template, "");
}

// --- weights -------------------------------------------------------------------------

// The whole model comes back from its checkpoint bit for bit, in every dtype.
TEST(HfLoaderTest, EveryArchitectureInEveryDtypeLoadsExactly) {
  for (const char* arch : kArchs) {
    const ModelWeights w = ExactWeights(ArchSpec(arch), 3);
    for (HfDtype dtype : {HfDtype::kF32, HfDtype::kF16, HfDtype::kBF16}) {
      SCOPED_TRACE(std::string(arch) + " dtype " + std::to_string(static_cast<int>(dtype)));
      ScratchDir dir;
      ASSERT_TRUE(MakeHfCheckpoint(w).Write(dir.Path("m"), dtype));
      Result<ModelWeights> loaded = Load(dir.Path("m"));
      ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
      ExpectSameModel(w, *loaded);
    }
  }
}

// Hand-computed permutation: q_proj/k_proj rows (and q/k biases) of head h, rows
// 4h..4h+3 in the checkpoint, land as 4h+0, 4h+2, 4h+1, 4h+3 (head_dim 4: new row 2i =
// old row i, new row 2i+1 = old row i + 2). v_proj and GPT-J are left as they are.
TEST(HfLoaderTest, QueryAndKeyRowsArePermutedFromHalvesToPairs) {
  for (const char* arch : {"qwen2", "gptj"}) {
    SCOPED_TRACE(arch);
    const ModelSpec spec = ArchSpec(arch);
    HfCheckpoint c = MakeHfCheckpoint(ExactWeights(spec, 4));
    const std::string p = std::string(arch) == "gptj" ? "transformer.h.1.attn." : "model.layers.1.self_attn.";
    // Row r of each tensor holds the value r (in every column).
    auto rows = [&](const std::string& name) {
      testing::HfTensor* t = c.Find(name);
      ASSERT_NE(t, nullptr) << name;
      const int64_t cols = t->shape.size() == 2 ? t->shape[1] : 1;
      for (size_t i = 0; i < t->data.size(); ++i) t->data[i] = static_cast<float>(static_cast<int64_t>(i) / cols);
    };
    for (const char* n : {"q_proj.weight", "k_proj.weight", "v_proj.weight"}) rows(p + n);
    if (spec.qkv_bias)
      for (const char* n : {"q_proj.bias", "k_proj.bias", "v_proj.bias"}) rows(p + n);
    ScratchDir dir;
    ASSERT_TRUE(c.Write(dir.Path("m")));
    Result<ModelWeights> w = Load(dir.Path("m"));
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    const LayerWeights& l = w->layers[1];
    const bool permuted = std::string(arch) != "gptj";
    auto expect_rows = [&](const char* what, const WeightTensor& tensor, int n_rows, bool permute) {
      const auto& t = tensor.f32();
      const int cols = static_cast<int>(t.size()) / n_rows;
      for (int r = 0; r < n_rows; ++r) {
        const int head = r / 4, within = r % 4;
        const int source = permute ? head * 4 + (within % 2 == 0 ? within / 2 : 2 + within / 2) : r;
        EXPECT_EQ(t[static_cast<size_t>(r) * cols], static_cast<float>(source)) << what << " row " << r;
        EXPECT_EQ(t[static_cast<size_t>(r) * cols + cols - 1], static_cast<float>(source)) << what << " row " << r;
      }
    };
    expect_rows("wq", l.wq, spec.q_dim(), permuted);
    expect_rows("wk", l.wk, spec.kv_dim(), permuted);
    expect_rows("wv", l.wv, spec.kv_dim(), false);
    if (spec.qkv_bias) {
      expect_rows("bq", l.bq, spec.q_dim(), permuted);
      expect_rows("bk", l.bk, spec.kv_dim(), permuted);
      expect_rows("bv", l.bv, spec.kv_dim(), false);
    }
    // Spelled out for head 1 of wq: rows 4, 6, 5, 7.
    if (permuted) {
      const int cols = spec.dim;
      EXPECT_EQ(l.wq.f32()[4 * cols], 4.0f);
      EXPECT_EQ(l.wq.f32()[5 * cols], 6.0f);
      EXPECT_EQ(l.wq.f32()[6 * cols], 5.0f);
      EXPECT_EQ(l.wq.f32()[7 * cols], 7.0f);
    }
  }
}

TEST(HfLoaderTest, ShardedCheckpointLoadsLikeOneFile) {
  for (const char* arch : {"llama3", "gptj"}) {
    SCOPED_TRACE(arch);
    const ModelWeights w = ExactWeights(ArchSpec(arch), 5);
    ScratchDir dir;
    ASSERT_TRUE(MakeHfCheckpoint(w).Write(dir.Path("m"), HfDtype::kBF16, /*n_shards=*/3));
    ASSERT_TRUE(std::filesystem::exists(dir.Path("m/model-00003-of-00003.safetensors")));
    ASSERT_FALSE(std::filesystem::exists(dir.Path("m/model.safetensors")));
    Result<ModelWeights> loaded = Load(dir.Path("m"));
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    ExpectSameModel(w, *loaded);
  }
}

// Each rank's load is exactly ShardWeights of the whole load: slices read from the
// mapping (the permutation commutes with the split, heads stay whole), the LM head's
// padded last rank (vocabulary 41), a tied LM head cut from the embedding.
TEST(HfLoaderTest, TensorParallelRanksLoadTheirShardOnly) {
  for (const char* arch : kArchs) {
    for (int world : {2, 4}) {
      if (world == 4 && ArchSpec(arch).n_kv_heads % 4 != 0) continue;
      for (int vocab : {41, 5}) {  // 5 over 4 ranks: the last rank's LM head rows are all padding
        SCOPED_TRACE(std::string(arch) + " world " + std::to_string(world) + " vocab " + std::to_string(vocab));
        ModelSpec spec = ArchSpec(arch);
        spec.vocab_size = vocab;
        spec.bos_id = spec.eos_id = 0;
        spec.extra_eos_ids.clear();
        ScratchDir dir;
        ASSERT_TRUE(MakeHfCheckpoint(ExactWeights(spec, 6)).Write(dir.Path("m"), HfDtype::kF16, 2));
        Result<ModelWeights> whole = Load(dir.Path("m"));
        ASSERT_TRUE(whole.ok()) << whole.status().ToString();
        for (int rank = 0; rank < world; ++rank) {
          Result<ModelWeights> expected = ShardWeights(*whole, rank, world);
          ASSERT_TRUE(expected.ok()) << expected.status().ToString();
          Result<ModelWeights> shard = Load(dir.Path("m"), LoadTarget{ShardInfo{rank, world}, nullptr});
          ASSERT_TRUE(shard.ok()) << shard.status().ToString();
          ExpectSameModel(*expected, *shard);
          EXPECT_TRUE(ValidateShard(*shard, ShardInfo{rank, world}).ok());
        }
      }
    }
  }
}

TEST(HfLoaderTest, TiedEmbeddings) {
  const ModelSpec spec = ArchSpec("qwen2");  // tie_word_embeddings true
  const ModelWeights w = ExactWeights(spec, 7);
  HfCheckpoint c = MakeHfCheckpoint(w);
  ASSERT_EQ(c.Find("lm_head.weight"), nullptr);
  ScratchDir dir;
  ASSERT_TRUE(c.Write(dir.Path("tied")));
  Result<ModelWeights> loaded = Load(dir.Path("tied"));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_TRUE(loaded->spec.shared_classifier);
  EXPECT_TRUE(loaded->classifier.empty());
  ExpectSameModel(w, *loaded);

  // Some exports write the tied head out as well: not read, not warned about.
  c.tensors.push_back({"lm_head.weight",
                       {spec.vocab_size, spec.dim},
                       std::vector<float>(w.token_embedding.f32().begin(), w.token_embedding.f32().end())});
  ASSERT_TRUE(c.Write(dir.Path("tied_written")));
  loaded = Load(dir.Path("tied_written"));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ExpectSameModel(w, *loaded);

  // Untied without an LM head.
  c = MakeHfCheckpoint(w);
  c.config["tie_word_embeddings"] = false;
  ASSERT_TRUE(c.Write(dir.Path("untied")));
  ExpectLoadError(dir.Path("untied"), StatusCode::kCorruption,
                  {dir.Path("untied"), "tensor lm_head.weight is missing", "tie_word_embeddings false"});
}

// Buffers some exports keep (rotary inv_freq, GPT-J's attention masks), of any dtype,
// are not part of the model: ignored with a warning.
TEST(HfLoaderTest, ExtraTensorsAreIgnored) {
  const ModelWeights w = ExactWeights(ArchSpec("llama"), 8);
  HfCheckpoint c = MakeHfCheckpoint(w);
  ScratchDir dir;
  ASSERT_TRUE(c.Write(dir.Path("m")));
  testing::SafetensorsWriter st;
  for (const testing::HfTensor& t : c.tensors) st.AddF32(t.name, t.shape, t.data);
  st.AddF32("model.layers.0.self_attn.rotary_emb.inv_freq", {2}, {1.0f, 0.01f});
  st.AddRaw("model.layers.0.self_attn.masked_bias", "BOOL", {2, 2}, std::string("\1\0\1\1", 4));
  ASSERT_TRUE(st.WriteFile(dir.Path("m/model.safetensors")));
  Result<ModelWeights> loaded = Load(dir.Path("m"));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ExpectSameModel(w, *loaded);
}

TEST(HfLoaderTest, LoadModelTakesTheFolderOrItsConfigJson) {
  const ModelWeights w = ExactWeights(ArchSpec("mistral"), 9);
  HfCheckpoint c = MakeHfCheckpoint(w);
  c.config["max_position_embeddings"] = 64;  // capped at the window of 16
  c.tokenizer_config = R"({"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"})";
  ScratchDir dir;
  ASSERT_TRUE(c.Write(dir.Path("mistral-tiny")));
  ModelWeights expected = w;
  expected.spec.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}";
  for (const std::string& path : {dir.Path("mistral-tiny"), dir.Path("mistral-tiny/"),
                                  dir.Path("mistral-tiny/config.json")}) {
    SCOPED_TRACE(path);
    Result<LoadedModel> m = LoadModel(path);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->weights.spec.max_seq_len, 16);
    ExpectSameModel(expected, m->weights);
    EXPECT_THAT(m->description, HasSubstr("Hugging Face MistralForCausalLM"));
    EXPECT_FALSE(m->tokenizer.has_value());
  }
  Result<LoadedModel> file = LoadModel(dir.Path("mistral-tiny/model.safetensors"));
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(), HasSubstr("config.json"));
  Result<LoadedModel> missing = LoadModel(dir.Path("nothing-here"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("Hugging Face model folder"));
}

// check_spec sees the spec (the capped context included) and its error is returned
// before any weight is read.
TEST(HfLoaderTest, ShapeCheckRunsBeforeTheWeights) {
  HfCheckpoint c = MakeHfCheckpoint(ExactWeights(ArchSpec("mistral"), 10));
  c.config["max_position_embeddings"] = 64;
  ScratchDir dir;
  ASSERT_TRUE(c.Write(dir.Path("m")));
  ModelSpec seen;
  LoadTarget target{ShardInfo{0, 2}, [&](const ModelSpec& spec) {
                      seen = spec;
                      return InvalidArgument("cluster.yaml: model does not fit");
                    }};
  Result<LoadedModel> m = LoadModel(dir.Path("m"), 0, target);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr("cluster.yaml: model does not fit"));
  EXPECT_EQ(seen.max_seq_len, 16);
  EXPECT_EQ(seen.arch, "mistral");

  Result<LoadedModel> tp3 = LoadModel(dir.Path("m"), 0, LoadTarget{ShardInfo{0, 3}, nullptr});
  ASSERT_FALSE(tp3.ok());
  EXPECT_THAT(tp3.status().message(), HasSubstr("tensor parallel size 3 does not divide"));
}

// --- broken and hostile folders ------------------------------------------------------

class HfBrokenFolderTest : public ::testing::Test {
 protected:
  HfBrokenFolderTest() : w_(ExactWeights(ArchSpec("qwen2"), 11)), c_(MakeHfCheckpoint(w_)) {}

  // Writes c_ to a fresh folder and returns its path.
  std::string Write(HfDtype dtype = HfDtype::kF32, int n_shards = 1) {
    std::string name = "m";  // (not "m" + ...: GCC 12 warns falsely there)
    name += std::to_string(n_++);
    const std::string path = dir_.Path(name);
    EXPECT_TRUE(c_.Write(path, dtype, n_shards));
    return path;
  }

  ScratchDir dir_;
  ModelWeights w_;
  HfCheckpoint c_;
  int n_ = 0;
};

TEST_F(HfBrokenFolderTest, MissingFiles) {
  ExpectLoadError(dir_.Path("absent"), StatusCode::kNotFound, {dir_.Path("absent"), "no such folder"});
  std::filesystem::create_directories(dir_.Path("empty"));
  ExpectLoadError(dir_.Path("empty"), StatusCode::kNotFound, {"no config.json"});

  std::string path = Write();
  std::filesystem::remove(path + "/model.safetensors");
  ExpectLoadError(path, StatusCode::kNotFound,
                  {path, "neither model.safetensors nor model.safetensors.index.json", "pytorch_model.bin"});

  path = Write(HfDtype::kF32, 3);
  std::filesystem::remove(path + "/model-00002-of-00003.safetensors");
  ExpectLoadError(path, StatusCode::kNotFound, {path + "/model-00002-of-00003.safetensors", "missing shard file"});
}

TEST_F(HfBrokenFolderTest, BadIndex) {
  const std::string path = Write(HfDtype::kF32, 2);
  const std::string index = path + "/model.safetensors.index.json";
  auto rewrite = [&](const std::string& text) { ASSERT_TRUE(testing::WriteBytes(index, text)); };
  rewrite("{\"weight_map\": ");
  ExpectLoadError(path, StatusCode::kCorruption, {index, "not valid JSON"});
  rewrite("{\"metadata\": {}}");
  ExpectLoadError(path, StatusCode::kCorruption, {"weight_map"});
  rewrite(R"({"weight_map": {"model.norm.weight": "../../etc/passwd"}})");
  ExpectLoadError(path, StatusCode::kCorruption, {"../../etc/passwd", "not a file name inside the folder"});
  rewrite(R"({"weight_map": {"model.norm.weight": 3}})");
  ExpectLoadError(path, StatusCode::kCorruption, {"not a file name"});
  rewrite(R"({"weight_map": {"model.no_such.weight": "model-00001-of-00002.safetensors"}})");
  ExpectLoadError(path, StatusCode::kCorruption, {"model-00001-of-00002.safetensors", "has no tensor model.no_such.weight"});
  // An index naming only some tensors: the others are missing.
  rewrite(R"({"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}})");
  ExpectLoadError(path, StatusCode::kCorruption, {"tensor model.layers.0.input_layernorm.weight is missing"});
}

TEST_F(HfBrokenFolderTest, BadJsonFiles) {
  std::string path = Write();
  ASSERT_TRUE(testing::WriteBytes(path + "/config.json", "{\"architectures\": [\"Qwen2ForCausalLM\"],"));
  ExpectLoadError(path, StatusCode::kCorruption, {path, "config.json: not valid JSON"});
  path = Write();
  ASSERT_TRUE(testing::WriteBytes(path + "/generation_config.json", "[]"));
  ExpectLoadError(path, StatusCode::kCorruption, {path, "generation_config.json: not a JSON object"});
  path = Write();
  ASSERT_TRUE(testing::WriteBytes(path + "/tokenizer_config.json", "{{"));
  ExpectLoadError(path, StatusCode::kCorruption, {path, "tokenizer_config.json: not valid JSON"});
  path = Write();
  std::filesystem::remove(path + "/config.json");
  std::filesystem::create_directories(path + "/config.json");
  ExpectLoadError(path, StatusCode::kInvalidArgument, {"config.json", "not a regular file"});
}

TEST_F(HfBrokenFolderTest, UnsupportedArchitectureAndMissingFields) {
  c_.config["architectures"] = {"BertModel"};
  ExpectLoadError(Write(), StatusCode::kInvalidArgument, {"unsupported architecture BertModel", "supported:"});
  c_ = MakeHfCheckpoint(w_);
  c_.config.erase("num_hidden_layers");
  ExpectLoadError(Write(), StatusCode::kCorruption, {"config.json: num_hidden_layers is missing"});
}

TEST_F(HfBrokenFolderTest, HostileSafetensorsHeaders) {
  std::string path = Write();
  const std::string file = path + "/model.safetensors";
  std::string bytes = testing::ReadBytes(file);
  ASSERT_GT(bytes.size(), 16u);
  // Header length past the end of the file.
  const uint64_t huge = bytes.size();
  std::memcpy(bytes.data(), &huge, 8);
  ASSERT_TRUE(testing::WriteBytes(file, bytes));
  ExpectLoadError(path, StatusCode::kCorruption, {file, "past the end of the file"});
  // Truncated: the last tensor's bytes run past the end.
  path = Write();
  bytes = testing::ReadBytes(path + "/model.safetensors");
  ASSERT_TRUE(testing::WriteBytes(path + "/model.safetensors", bytes.substr(0, bytes.size() - 1)));
  ExpectLoadError(path, StatusCode::kCorruption, {"model.safetensors", "past the end of the file"});
}

TEST_F(HfBrokenFolderTest, OverlappingOrOutOfFileOffsets) {
  // Built tensor by tensor with forged offsets.
  auto write_forged = [&](uint64_t begin, uint64_t end) {
    testing::SafetensorsWriter st;
    for (const testing::HfTensor& t : c_.tensors) st.AddF32(t.name, t.shape, t.data);
    st.ForgeOffsets("model.norm.weight", begin, end);
    const std::string path = Write();
    EXPECT_TRUE(st.WriteFile(path + "/model.safetensors"));
    return path;
  };
  const int64_t norm_bytes = int64_t{4} * w_.spec.dim;
  ExpectLoadError(write_forged(0, norm_bytes), StatusCode::kCorruption, {"model.norm.weight", "overlap"});
  ExpectLoadError(write_forged(uint64_t{1} << 40, (uint64_t{1} << 40) + norm_bytes), StatusCode::kCorruption,
                  {"model.norm.weight", "past the end of the file"});
}

TEST_F(HfBrokenFolderTest, WrongDtypeIsNamed) {
  testing::HfTensor& t = *c_.Find("model.layers.1.mlp.up_proj.weight");
  const std::string path = Write();
  testing::SafetensorsWriter st;
  for (const testing::HfTensor& x : c_.tensors) {
    if (x.name == t.name) {
      st.AddRaw(x.name, "I64", x.shape, std::string(x.data.size() * 8, '\0'));
    } else {
      st.AddF32(x.name, x.shape, x.data);
    }
  }
  ASSERT_TRUE(st.WriteFile(path + "/model.safetensors"));
  ExpectLoadError(path, StatusCode::kInvalidArgument,
                  {path + "/model.safetensors", "model.layers.1.mlp.up_proj.weight", "dtype I64", "F32, F16 and BF16"});
}

TEST_F(HfBrokenFolderTest, ShapeMismatchWithConfigIsNamed) {
  testing::HfTensor& t = *c_.Find("model.layers.0.self_attn.k_proj.weight");
  t.shape = {w_.spec.dim, w_.spec.kv_dim()};  // transposed
  std::string path = Write();
  ExpectLoadError(path, StatusCode::kCorruption,
                  {path + "/model.safetensors", "model.layers.0.self_attn.k_proj.weight", "has shape [16, 8]",
                   "expected [8, 16]", "config.json"});
  // The config claims another width than the tensors have.
  c_ = MakeHfCheckpoint(w_);
  c_.config["intermediate_size"] = 48;
  path = Write();
  ExpectLoadError(path, StatusCode::kCorruption, {"mlp.gate_proj.weight", "has shape [40, 16]", "expected [48, 16]"});
  // A huge claimed model fails on the first tensor, before anything is allocated.
  c_ = MakeHfCheckpoint(w_);
  c_.config["num_hidden_layers"] = 1000000000;
  c_.config["vocab_size"] = 2000000000;
  path = Write();
  ExpectLoadError(path, StatusCode::kCorruption, {"model.layers.2.input_layernorm.weight is missing"});
  // A bias of the wrong length.
  c_ = MakeHfCheckpoint(w_);
  c_.Find("model.layers.1.self_attn.v_proj.bias")->shape = {4, 2};
  path = Write();
  ExpectLoadError(path, StatusCode::kCorruption, {"v_proj.bias", "has shape [4, 2]", "expected [8]"});
}

TEST_F(HfBrokenFolderTest, MissingTensorIsNamed) {
  c_.Remove("model.layers.1.self_attn.q_proj.bias");
  const std::string path = Write();
  ExpectLoadError(path, StatusCode::kCorruption, {path, "tensor model.layers.1.self_attn.q_proj.bias is missing"});
}

}  // namespace
}  // namespace flover
