// HfCheckpoint: a Hugging Face model folder built in memory from ModelWeights, for the
// loader tests (tests only): config.json for the spec, generation_config.json, and every
// tensor under its checkpoint name — with the q/k rows of Llama-family models permuted
// back to the halves convention, so that loading the folder gives the weights back.
// Tests change the JSON or the tensors before Write() to build broken folders.
//
// Not thread-safe; a plain value type.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "worker/model/model_weights.h"

namespace flover::testing {

struct HfTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

enum class HfDtype { kF32, kF16, kBF16 };

struct HfCheckpoint {
  nlohmann::ordered_json config;
  std::optional<nlohmann::ordered_json> generation_config;  // nullopt: no file
  std::optional<std::string> tokenizer_config;              // the file's text; nullopt: no file
  std::vector<HfTensor> tensors;

  HfTensor* Find(const std::string& name);
  void Remove(const std::string& name);
  // Writes folder `dir` (created if needed): the JSON files, the tensors stored as
  // `dtype` in model.safetensors, or with n_shards > 1 spread over
  // model-0000i-of-0000n.safetensors with model.safetensors.index.json.
  bool Write(const std::string& dir, HfDtype dtype = HfDtype::kF32, int n_shards = 1) const;
};

// The architecture's config.json name for spec.arch ("llama" -> "LlamaForCausalLM").
std::string HfArchitecture(const std::string& arch);
HfCheckpoint MakeHfCheckpoint(const ModelWeights& w);

// Small specs of each architecture (dim 16, 4 heads of 4, hidden 40, 2 layers, vocab 40,
// seq 32): "llama" (2 kv heads), "llama3" (+ llama3 rope scaling, theta 500000, two
// extra eos ids), "mistral" (+ sliding window 16), "qwen2" (+ qkv biases, tied
// embeddings), "gptj" (LayerNorm, parallel residual, rotary_dim 2, GELU MLP with
// biases, LM head bias, 4 kv heads).
ModelSpec ArchSpec(const std::string& name);

// Every tensor the spec has, seeded; values k/128 with |k| < 128, so that F16 and BF16
// hold them exactly.
ModelWeights ExactWeights(const ModelSpec& spec, uint64_t seed);

// Rows of each head of `head_dim` rows (of `cols` values) from Flover's adjacent pairs
// back to halves: row 2i -> i, row 2i + 1 -> i + head_dim/2.
std::vector<float> PairsToHalves(std::span<const float> t, int head_dim, int64_t cols);

// EXPECTs every tensor (all of the tables, biases included) and every spec field of
// `actual` equal to `expected`, bit for bit.
void ExpectSameModel(const ModelWeights& expected, const ModelWeights& actual);

}  // namespace flover::testing
