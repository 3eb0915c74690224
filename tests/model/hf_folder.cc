#include "tests/model/hf_folder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <system_error>

#include "tests/model/safetensors_writer.h"
#include "tests/model/test_model_files.h"

namespace flover::testing {
namespace {

bool Llama(const std::string& arch) { return arch != "gptj"; }

void Add(HfCheckpoint& c, std::string name, std::vector<int64_t> shape, std::span<const float> data) {
  c.tensors.push_back({std::move(name), std::move(shape), std::vector<float>(data.begin(), data.end())});
}

}  // namespace

HfTensor* HfCheckpoint::Find(const std::string& name) {
  for (HfTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

void HfCheckpoint::Remove(const std::string& name) {
  std::erase_if(tensors, [&](const HfTensor& t) { return t.name == name; });
}

bool HfCheckpoint::Write(const std::string& dir, HfDtype dtype, int n_shards) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!WriteBytes(dir + "/config.json", config.dump(2))) return false;
  if (generation_config && !WriteBytes(dir + "/generation_config.json", generation_config->dump(2))) return false;
  if (tokenizer_config && !WriteBytes(dir + "/tokenizer_config.json", *tokenizer_config)) return false;
  std::vector<SafetensorsWriter> shards(static_cast<size_t>(std::max(1, n_shards)));
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  auto file_name = [&](size_t i) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    return std::string(buf);
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    const HfTensor& t = tensors[i];
    const size_t shard = i * shards.size() / tensors.size();
    switch (dtype) {
      case HfDtype::kF32: shards[shard].AddF32(t.name, t.shape, t.data); break;
      case HfDtype::kF16: shards[shard].AddF16(t.name, t.shape, t.data); break;
      case HfDtype::kBF16: shards[shard].AddBF16(t.name, t.shape, t.data); break;
    }
    weight_map[t.name] = file_name(shard);
  }
  if (n_shards <= 1) return shards[0].WriteFile(dir + "/model.safetensors");
  for (size_t i = 0; i < shards.size(); ++i)
    if (!shards[i].WriteFile(dir + "/" + file_name(i))) return false;
  nlohmann::ordered_json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  return WriteBytes(dir + "/model.safetensors.index.json", index.dump(2));
}

std::string HfArchitecture(const std::string& arch) {
  if (arch == "mistral") return "MistralForCausalLM";
  if (arch == "qwen2") return "Qwen2ForCausalLM";
  if (arch == "gptj") return "GPTJForCausalLM";
  return "LlamaForCausalLM";
}

std::vector<float> PairsToHalves(std::span<const float> t, int head_dim, int64_t cols) {
  std::vector<float> out(t.size());
  const size_t head = static_cast<size_t>(head_dim * cols), row = static_cast<size_t>(cols);
  for (size_t h = 0; h < t.size(); h += head)
    for (int i = 0; i < head_dim / 2; ++i) {
      std::copy_n(t.data() + h + 2 * i * row, row, out.data() + h + i * row);
      std::copy_n(t.data() + h + (2 * i + 1) * row, row, out.data() + h + (head_dim / 2 + i) * row);
    }
  return out;
}

HfCheckpoint MakeHfCheckpoint(const ModelWeights& w) {
  const ModelSpec& s = w.spec;
  HfCheckpoint c;
  const std::string arch = HfArchitecture(s.arch);
  c.config = {{"architectures", {arch}}, {"model_type", s.arch}, {"torch_dtype", "float32"},
              {"vocab_size", s.vocab_size}, {"bos_token_id", s.bos_id}, {"eos_token_id", s.eos_id},
              {"tie_word_embeddings", s.shared_classifier}};
  const int64_t d = s.dim, h = s.hidden_dim, q = s.q_dim(), kv = s.kv_dim(), v = s.vocab_size;
  if (Llama(s.arch)) {
    c.config.update({{"hidden_size", s.dim}, {"intermediate_size", s.hidden_dim}, {"num_hidden_layers", s.n_layers},
                     {"num_attention_heads", s.n_heads}, {"num_key_value_heads", s.n_kv_heads},
                     {"max_position_embeddings", s.max_seq_len}, {"rms_norm_eps", s.norm_eps},
                     {"rope_theta", s.rope_theta}, {"hidden_act", "silu"}});
    if (s.rope_scaling.kind == RopeScaling::Kind::kLlama3)
      c.config["rope_scaling"] = {{"rope_type", "llama3"},
                                  {"factor", s.rope_scaling.factor},
                                  {"low_freq_factor", s.rope_scaling.low_freq_factor},
                                  {"high_freq_factor", s.rope_scaling.high_freq_factor},
                                  {"original_max_position_embeddings", s.rope_scaling.original_max_position}};
    if (s.arch == "mistral")
      c.config["sliding_window"] = s.sliding_window > 0 ? nlohmann::ordered_json(s.sliding_window) : nullptr;
    if (s.arch == "qwen2") c.config.update({{"use_sliding_window", false}, {"sliding_window", 4096}});
    const int hd = s.head_dim();
    Add(c, "model.embed_tokens.weight", {v, d}, w.token_embedding.f32());
    for (int l = 0; l < s.n_layers; ++l) {
      const LayerWeights& L = w.layers[l];
      const std::string p = "model.layers." + std::to_string(l) + ".";
      Add(c, p + "input_layernorm.weight", {d}, L.attn_norm.f32());
      Add(c, p + "self_attn.q_proj.weight", {q, d}, PairsToHalves(L.wq.f32(), hd, d));
      Add(c, p + "self_attn.k_proj.weight", {kv, d}, PairsToHalves(L.wk.f32(), hd, d));
      Add(c, p + "self_attn.v_proj.weight", {kv, d}, L.wv.f32());
      if (s.qkv_bias) {
        Add(c, p + "self_attn.q_proj.bias", {q}, PairsToHalves(L.bq.f32(), hd, 1));
        Add(c, p + "self_attn.k_proj.bias", {kv}, PairsToHalves(L.bk.f32(), hd, 1));
        Add(c, p + "self_attn.v_proj.bias", {kv}, L.bv.f32());
      }
      Add(c, p + "self_attn.o_proj.weight", {d, q}, L.wo.f32());
      Add(c, p + "post_attention_layernorm.weight", {d}, L.ffn_norm.f32());
      Add(c, p + "mlp.gate_proj.weight", {h, d}, L.w1.f32());
      Add(c, p + "mlp.up_proj.weight", {h, d}, L.w3.f32());
      Add(c, p + "mlp.down_proj.weight", {d, h}, L.w2.f32());
    }
    Add(c, "model.norm.weight", {d}, w.final_norm.f32());
  } else {
    c.config.update({{"n_embd", s.dim}, {"n_layer", s.n_layers}, {"n_head", s.n_heads},
                     {"rotary_dim", s.rotary_dim > 0 ? nlohmann::ordered_json(s.rotary_dim) : nullptr},
                     {"n_inner", s.hidden_dim}, {"layer_norm_epsilon", s.norm_eps}, {"n_positions", s.max_seq_len},
                     {"activation_function", "gelu_new"}});
    Add(c, "transformer.wte.weight", {v, d}, w.token_embedding.f32());
    for (int l = 0; l < s.n_layers; ++l) {
      const LayerWeights& L = w.layers[l];
      const std::string p = "transformer.h." + std::to_string(l) + ".";
      Add(c, p + "ln_1.weight", {d}, L.attn_norm.f32());
      Add(c, p + "ln_1.bias", {d}, L.attn_norm_bias.f32());
      Add(c, p + "attn.q_proj.weight", {q, d}, L.wq.f32());
      Add(c, p + "attn.k_proj.weight", {kv, d}, L.wk.f32());
      Add(c, p + "attn.v_proj.weight", {kv, d}, L.wv.f32());
      Add(c, p + "attn.out_proj.weight", {d, q}, L.wo.f32());
      Add(c, p + "mlp.fc_in.weight", {h, d}, L.w1.f32());
      Add(c, p + "mlp.fc_in.bias", {h}, L.b1.f32());
      Add(c, p + "mlp.fc_out.weight", {d, h}, L.w2.f32());
      Add(c, p + "mlp.fc_out.bias", {d}, L.b2.f32());
    }
    Add(c, "transformer.ln_f.weight", {d}, w.final_norm.f32());
    Add(c, "transformer.ln_f.bias", {d}, w.final_norm_bias.f32());
  }
  if (!s.shared_classifier) Add(c, "lm_head.weight", {v, d}, w.classifier.f32());
  if (s.classifier_bias) Add(c, "lm_head.bias", {v}, w.classifier_bias.f32());
  nlohmann::ordered_json eos = s.eos_id;
  if (!s.extra_eos_ids.empty()) {
    eos = nlohmann::ordered_json::array({s.eos_id});
    for (int id : s.extra_eos_ids) eos.push_back(id);
  }
  c.generation_config = nlohmann::ordered_json{{"bos_token_id", s.bos_id}, {"eos_token_id", eos}};
  return c;
}

ModelSpec ArchSpec(const std::string& name) {
  ModelSpec s = SmallSpec(/*shared_classifier=*/false);
  s.norm_eps = 1e-5f;
  if (name == "llama") return s;
  if (name == "llama3") {
    s.rope_theta = 500000.0f;
    s.rope_scaling = {RopeScaling::Kind::kLlama3, 8.0f, 1.0f, 4.0f, 16};
    s.bos_id = 38;
    s.eos_id = 39;
    s.extra_eos_ids = {37, 36};
    return s;
  }
  if (name == "mistral") {
    s.arch = "mistral";
    s.sliding_window = 16;
    s.max_seq_len = 16;
    return s;
  }
  if (name == "qwen2") {
    s.arch = "qwen2";
    s.qkv_bias = true;
    s.shared_classifier = true;
    s.rope_theta = 1000000.0f;
    s.norm_eps = 1e-6f;
    return s;
  }
  if (name == "gptj") {
    s.arch = "gptj";
    s.n_kv_heads = s.n_heads;
    s.norm = NormKind::kLayer;
    s.ffn = FfnKind::kGelu;
    s.parallel_residual = true;
    s.rotary_dim = 2;
    s.ffn_bias = true;
    s.classifier_bias = true;
    s.bos_id = 0;
    s.eos_id = 0;
    return s;
  }
  ADD_FAILURE() << "no test spec named " << name;
  return s;
}

ModelWeights ExactWeights(const ModelSpec& spec, uint64_t seed) {
  uint64_t state = seed * 6364136223846793005ull + 1442695040888963407ull;
  auto fill = [&](WeightTensor& t, int64_t n) {
    t = WeightTensor(std::vector<float>(static_cast<size_t>(n)));
    for (float& x : t.f32()) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      x = static_cast<float>(static_cast<int>((state >> 33) % 255) - 127) / 128.0f;
    }
  };
  ModelWeights w;
  w.spec = spec;
  w.layers.resize(spec.n_layers);
  for (LayerWeights& l : w.layers)
    for (const auto& t : LayerTensors())
      if (t.present(spec)) fill(l.*t.member, t.size(spec));
  for (const auto& t : ModelTensors())
    if (t.present(spec)) fill(w.*t.member, t.size(spec));
  return w;
}

void ExpectSameModel(const ModelWeights& expected, const ModelWeights& actual) {
  const ModelSpec &e = expected.spec, &a = actual.spec;
  EXPECT_EQ(e.ToString(), a.ToString());
  EXPECT_EQ(e.arch, a.arch);
  EXPECT_EQ(e.norm_eps, a.norm_eps);
  EXPECT_EQ(e.rope_theta, a.rope_theta);
  EXPECT_EQ(e.bos_id, a.bos_id);
  EXPECT_EQ(e.eos_id, a.eos_id);
  EXPECT_EQ(e.extra_eos_ids, a.extra_eos_ids);
  EXPECT_EQ(e.norm, a.norm);
  EXPECT_EQ(e.ffn, a.ffn);
  EXPECT_EQ(e.parallel_residual, a.parallel_residual);
  EXPECT_EQ(e.rotary_dims(), a.rotary_dims());
  EXPECT_EQ(e.rope_scaling.kind, a.rope_scaling.kind);
  EXPECT_EQ(e.rope_scaling.factor, a.rope_scaling.factor);
  EXPECT_EQ(e.rope_scaling.low_freq_factor, a.rope_scaling.low_freq_factor);
  EXPECT_EQ(e.rope_scaling.high_freq_factor, a.rope_scaling.high_freq_factor);
  EXPECT_EQ(e.rope_scaling.original_max_position, a.rope_scaling.original_max_position);
  EXPECT_EQ(e.qkv_bias, a.qkv_bias);
  EXPECT_EQ(e.ffn_bias, a.ffn_bias);
  EXPECT_EQ(e.classifier_bias, a.classifier_bias);
  EXPECT_EQ(e.sliding_window, a.sliding_window);
  EXPECT_EQ(e.chat_template, a.chat_template);
  auto same = [](const std::string& name, const WeightTensor& tx, const WeightTensor& ty) {
    ASSERT_EQ(tx.format(), ty.format()) << name;
    if (!tx.is_f32()) {
      EXPECT_TRUE(tx == ty) << name << ": the " << cpu::WeightFormatName(tx.format()) << " bytes differ";
      return;
    }
    const auto& x = tx.f32();
    const auto& y = ty.f32();
    ASSERT_EQ(x.size(), y.size()) << name;
    if (!x.empty() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) != 0) {
      size_t i = 0;
      while (std::memcmp(&x[i], &y[i], sizeof(float)) == 0) ++i;
      ADD_FAILURE() << name << "[" << i << "] is " << y[i] << ", expected " << x[i];
    }
  };
  ASSERT_EQ(expected.layers.size(), actual.layers.size());
  for (size_t l = 0; l < expected.layers.size(); ++l)
    for (const auto& t : LayerTensors())
      same("layers." + std::to_string(l) + "." + t.name, expected.layers[l].*t.member, actual.layers[l].*t.member);
  for (const auto& t : ModelTensors()) same(t.name, expected.*t.member, actual.*t.member);
}

}  // namespace flover::testing
