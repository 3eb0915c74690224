#include "tests/engine/reference_model.h"

#include <cmath>
#include <cstring>

namespace flover::testing {
namespace {

void RmsNorm(float* o, const float* x, const float* w, int n, float eps) {
  float ss = 0.0f;
  for (int j = 0; j < n; j++) ss += x[j] * x[j];
  ss /= n;
  ss += eps;
  ss = 1.0f / std::sqrt(ss);
  for (int j = 0; j < n; j++) o[j] = w[j] * (ss * x[j]);
}

void MatVec(float* y, const float* x, const float* w, int n, int d) {  // w [d, n]
  for (int i = 0; i < d; i++) {
    float val = 0.0f;
    for (int j = 0; j < n; j++) val += w[static_cast<size_t>(i) * n + j] * x[j];
    y[i] = val;
  }
}

void Softmax(float* x, int n) {
  float max_val = x[0];
  for (int i = 1; i < n; i++) max_val = std::max(max_val, x[i]);
  float sum = 0.0f;
  for (int i = 0; i < n; i++) {
    x[i] = std::exp(x[i] - max_val);
    sum += x[i];
  }
  for (int i = 0; i < n; i++) x[i] /= sum;
}

}  // namespace

ReferenceModel::ReferenceModel(const ModelWeights& weights) : w_(weights) {
  const ModelSpec& s = w_.spec;
  key_cache_.assign(static_cast<size_t>(s.n_layers) * s.max_seq_len * s.kv_dim(), 0.0f);
  value_cache_ = key_cache_;
  x_.resize(s.dim);
  xb_.resize(s.dim);
  xb2_.resize(s.dim);
  hb_.resize(s.hidden_dim);
  hb2_.resize(s.hidden_dim);
  q_.resize(s.q_dim());
  k_.resize(s.kv_dim());
  v_.resize(s.kv_dim());
  att_.resize(static_cast<size_t>(s.n_heads) * s.max_seq_len);
  logits_.resize(s.vocab_size);
}

const std::vector<float>& ReferenceModel::Forward(int token, int pos) {
  const ModelSpec& s = w_.spec;
  const int dim = s.dim, kv_dim = s.kv_dim(), head_size = s.head_dim(), kv_mul = s.kv_group();
  std::memcpy(x_.data(), &w_.token_embedding[static_cast<size_t>(token) * dim], dim * sizeof(float));
  for (int l = 0; l < s.n_layers; l++) {
    const LayerWeights& L = w_.layers[l];
    RmsNorm(xb_.data(), x_.data(), L.attn_norm.data(), dim, s.norm_eps);
    MatVec(q_.data(), xb_.data(), L.wq.data(), dim, s.q_dim());
    MatVec(k_.data(), xb_.data(), L.wk.data(), dim, kv_dim);
    MatVec(v_.data(), xb_.data(), L.wv.data(), dim, kv_dim);
    for (int i = 0; i < s.q_dim(); i += 2) {
      const int head_dim = i % head_size;
      const float freq = 1.0f / std::pow(s.rope_theta, head_dim / static_cast<float>(head_size));
      const float val = pos * freq;
      const float fcr = std::cos(val), fci = std::sin(val);
      const int rotn = i < kv_dim ? 2 : 1;
      for (int r = 0; r < rotn; r++) {
        float* vec = r == 0 ? q_.data() : k_.data();
        const float v0 = vec[i], v1 = vec[i + 1];
        vec[i] = v0 * fcr - v1 * fci;
        vec[i + 1] = v0 * fci + v1 * fcr;
      }
    }
    const size_t loff = static_cast<size_t>(l) * s.max_seq_len * kv_dim;
    std::memcpy(&key_cache_[loff + static_cast<size_t>(pos) * kv_dim], k_.data(), kv_dim * sizeof(float));
    std::memcpy(&value_cache_[loff + static_cast<size_t>(pos) * kv_dim], v_.data(), kv_dim * sizeof(float));
    for (int h = 0; h < s.n_heads; h++) {
      const float* q = &q_[static_cast<size_t>(h) * head_size];
      float* att = &att_[static_cast<size_t>(h) * s.max_seq_len];
      for (int t = 0; t <= pos; t++) {
        const float* k = &key_cache_[loff + static_cast<size_t>(t) * kv_dim + (h / kv_mul) * head_size];
        float score = 0.0f;
        for (int i = 0; i < head_size; i++) score += q[i] * k[i];
        att[t] = score / std::sqrt(static_cast<float>(head_size));
      }
      Softmax(att, pos + 1);
      float* xb = &xb_[static_cast<size_t>(h) * head_size];
      std::memset(xb, 0, head_size * sizeof(float));
      for (int t = 0; t <= pos; t++) {
        const float* v = &value_cache_[loff + static_cast<size_t>(t) * kv_dim + (h / kv_mul) * head_size];
        for (int i = 0; i < head_size; i++) xb[i] += att[t] * v[i];
      }
    }
    MatVec(xb2_.data(), xb_.data(), L.wo.data(), s.q_dim(), dim);
    for (int i = 0; i < dim; i++) x_[i] += xb2_[i];
    RmsNorm(xb_.data(), x_.data(), L.ffn_norm.data(), dim, s.norm_eps);
    MatVec(hb_.data(), xb_.data(), L.w1.data(), dim, s.hidden_dim);
    MatVec(hb2_.data(), xb_.data(), L.w3.data(), dim, s.hidden_dim);
    for (int i = 0; i < s.hidden_dim; i++) {
      float val = hb_[i];
      val *= (1.0f / (1.0f + std::exp(-val)));
      hb_[i] = val * hb2_[i];
    }
    MatVec(xb_.data(), hb_.data(), L.w2.data(), s.hidden_dim, dim);
    for (int i = 0; i < dim; i++) x_[i] += xb_[i];
  }
  RmsNorm(x_.data(), x_.data(), w_.final_norm.data(), dim, s.norm_eps);
  MatVec(logits_.data(), x_.data(), w_.lm_head().data(), dim, s.vocab_size);
  return logits_;
}

std::vector<int> ReferenceModel::Greedy(const std::vector<int>& prompt, int steps) {
  std::vector<int> generated;
  int token = prompt[0];
  for (int pos = 0; pos < steps; pos++) {
    const std::vector<float>& logits = Forward(token, pos);
    int next;
    if (pos < static_cast<int>(prompt.size()) - 1) {
      next = prompt[pos + 1];
    } else {
      next = 0;
      for (int i = 1; i < w_.spec.vocab_size; i++)
        if (logits[i] > logits[next]) next = i;
      if (next == w_.spec.bos_id || next == w_.spec.eos_id) break;
      generated.push_back(next);
    }
    token = next;
  }
  return generated;
}

}  // namespace flover::testing
