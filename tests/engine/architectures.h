// Small models of every architecture shape the decoder runs, for tests that compare it
// with the reference model, with itself fused and alone, and over tensor-parallel ranks.
// Every shape is valid for tensor parallelism of 1 and 2, and its vocabulary (37) is odd,
// so a split of the LM head pads the last rank.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "worker/model/dummy_model.h"
#include "worker/model/model_weights.h"

namespace flover::testing {

struct Architecture {
  std::string name;  // a gtest parameter name
  ModelSpec spec;
};

// What gtest prints for a parameter.
inline void PrintTo(const Architecture& a, std::ostream* os) { *os << a.name << " (" << a.spec.ToString() << ")"; }

inline ModelSpec SmallSpec(int dim, int hidden, int heads, int kv_heads) {
  ModelSpec s;
  s.dim = dim;
  s.hidden_dim = hidden;
  s.n_layers = 2;
  s.n_heads = heads;
  s.n_kv_heads = kv_heads;
  s.vocab_size = 37;
  s.max_seq_len = 64;
  return s;
}

inline std::vector<Architecture> SmallArchitectures() {
  std::vector<Architecture> out;
  {  // LLaMA 2: RMSNorm, SwiGLU, full rotary, grouped-query attention, separate LM head.
    ModelSpec s = SmallSpec(64, 96, 4, 2);
    s.shared_classifier = false;
    out.push_back({"llama", s});
  }
  {  // LLaMA 3.2: large theta, llama3 rope scaling, tied. The original context is scaled
     // down to the test's positions so that every branch of the scaling matters there:
     // head_dim 16 gives wavelengths 6.3 (kept), 32 (interpolated), 167 and up (divided).
    ModelSpec s = SmallSpec(64, 96, 4, 2);
    s.rope_theta = 500000.0f;
    s.rope_scaling = RopeScaling{RopeScaling::Kind::kLlama3, 8.0f, 1.0f, 4.0f, 64};
    out.push_back({"llama3", s});
  }
  {  // Qwen2: q/k/v biases, tied, 14 heads over 2 kv heads (as Qwen2 0.5B).
    ModelSpec s = SmallSpec(56, 80, 14, 2);
    s.arch = "qwen2";
    s.rope_theta = 1000000.0f;
    s.qkv_bias = true;
    out.push_back({"qwen2", s});
  }
  {  // GPT-J: LayerNorm, parallel residual, partial rotary, GELU with biases, LM head bias.
    ModelSpec s = SmallSpec(64, 128, 4, 4);
    s.arch = "gptj";
    s.norm = NormKind::kLayer;
    s.ffn = FfnKind::kGelu;
    s.parallel_residual = true;
    s.rotary_dim = 8;
    s.ffn_bias = true;
    s.classifier_bias = true;
    s.shared_classifier = false;
    out.push_back({"gptj", s});
  }
  {  // What no real model combines: LayerNorm before attention and before the MLP (norm
     // biases on both), SwiGLU with biases, q/k/v biases, partial rotary with llama3
     // scaling, a bias on a tied LM head.
    ModelSpec s = SmallSpec(64, 96, 4, 2);
    s.arch = "mixed";
    s.norm = NormKind::kLayer;
    s.rotary_dim = 8;
    s.rope_scaling = RopeScaling{RopeScaling::Kind::kLlama3, 4.0f, 1.0f, 4.0f, 16};
    s.qkv_bias = true;
    s.ffn_bias = true;
    s.classifier_bias = true;
    out.push_back({"mixed", s});
  }
  return out;
}

// The spec of SmallArchitectures() named `name`.
inline ModelSpec SmallArchitecture(const std::string& name) {
  for (const Architecture& a : SmallArchitectures())
    if (a.name == name) return a.spec;
  ADD_FAILURE() << "no architecture " << name;
  return {};
}

// Dummy weights (MakeDummyWeights) with the norms' weights and biases drawn at random too
// (the generator makes them 1 and 0, which would hide a norm that ignores them).
inline ModelWeights ArchitectureWeights(const ModelSpec& spec, uint32_t seed) {
  Result<ModelWeights> made = MakeDummyWeights(spec, seed);
  if (!made.ok()) {
    ADD_FAILURE() << made.status().ToString();
    return {};
  }
  ModelWeights w = std::move(made).value();
  std::mt19937 rng(seed);
  auto randomise = [&](const std::string& name, WeightTensor& t) {
    const bool weight = name.ends_with("norm"), bias = name.ends_with("norm_bias");
    if (!weight && !bias) return;
    std::uniform_real_distribution<float> dist(weight ? 0.5f : -0.5f, weight ? 1.5f : 0.5f);
    for (float& v : t.f32()) v = dist(rng);
  };
  for (LayerWeights& l : w.layers)
    for (const auto& t : LayerTensors()) randomise(t.name, l.*t.member);
  for (const auto& t : ModelTensors()) randomise(t.name, w.*t.member);
  return w;
}

}  // namespace flover::testing
