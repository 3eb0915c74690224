// Small random models for tensor-parallel tests: grouped-query heads and a vocabulary
// that no tensor-parallel size divides (so the LM head's padding is exercised).
#pragma once

#include <cmath>
#include <random>

#include "worker/model/model_weights.h"

namespace flover::testing {

// dim 32, 8 heads of 4, 4 kv heads, hidden 24, vocab 11: valid for TP 1, 2 and 4.
inline ModelSpec SmallTpSpec(bool shared_classifier) {
  ModelSpec s;
  s.dim = 32;
  s.hidden_dim = 24;
  s.n_layers = 2;
  s.n_heads = 8;
  s.n_kv_heads = 4;
  s.vocab_size = 11;
  s.max_seq_len = 64;
  s.shared_classifier = shared_classifier;
  return s;
}

inline ModelWeights RandomWeights(const ModelSpec& spec, uint32_t seed) {
  std::mt19937 rng(seed);
  auto matrix = [&](int out, int in) {
    std::uniform_real_distribution<float> dist(-std::sqrt(3.0f / in), std::sqrt(3.0f / in));
    std::vector<float> m(static_cast<size_t>(out) * in);
    for (float& v : m) v = dist(rng);
    return m;
  };
  auto norm = [&](int n) {
    std::uniform_real_distribution<float> dist(0.8f, 1.2f);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
  };
  ModelWeights w;
  w.spec = spec;
  w.token_embedding = WeightTensor(matrix(spec.vocab_size, spec.dim));
  for (int l = 0; l < spec.n_layers; ++l) {
    LayerWeights layer;
    layer.attn_norm = WeightTensor(norm(spec.dim));
    layer.wq = WeightTensor(matrix(spec.q_dim(), spec.dim));
    layer.wk = WeightTensor(matrix(spec.kv_dim(), spec.dim));
    layer.wv = WeightTensor(matrix(spec.kv_dim(), spec.dim));
    layer.wo = WeightTensor(matrix(spec.dim, spec.q_dim()));
    layer.ffn_norm = WeightTensor(norm(spec.dim));
    layer.w1 = WeightTensor(matrix(spec.hidden_dim, spec.dim));
    layer.w2 = WeightTensor(matrix(spec.dim, spec.hidden_dim));
    layer.w3 = WeightTensor(matrix(spec.hidden_dim, spec.dim));
    w.layers.push_back(std::move(layer));
  }
  w.final_norm = WeightTensor(norm(spec.dim));
  if (!spec.shared_classifier) w.classifier = WeightTensor(matrix(spec.vocab_size, spec.dim));
  return w;
}

}  // namespace flover::testing
