#include "tests/engine/reference_model.h"

#include <cmath>
#include <cstring>
#include <span>

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

void LayerNorm(float* o, const float* x, const float* w, const float* b, int n, float eps) {
  double mean = 0.0, var = 0.0;
  for (int j = 0; j < n; j++) mean += x[j];
  mean /= n;
  for (int j = 0; j < n; j++) var += (x[j] - mean) * (x[j] - mean);
  var /= n;
  const double inv_std = 1.0 / std::sqrt(var + eps);
  for (int j = 0; j < n; j++) o[j] = static_cast<float>((x[j] - mean) * inv_std * w[j] + b[j]);
}

void MatVec(float* y, const float* x, const float* w, int n, int d) {  // w [d, n]
  for (int i = 0; i < d; i++) {
    float val = 0.0f;
    for (int j = 0; j < n; j++) val += w[static_cast<size_t>(i) * n + j] * x[j];
    y[i] = val;
  }
}

// y += b when the model has the bias (b not empty).
void AddBias(float* y, std::span<const float> b) {
  for (size_t i = 0; i < b.size(); i++) y[i] += b[i];
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

float GeluTanh(float x) {
  const double v = x;
  return static_cast<float>(0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))));
}

// Rotation angle per position of pair i of the first `rotary` dims of a head: run.c's
// 1 / theta^(2i / rotary), and for LLaMA 3.1 the scaling of Hugging Face's
// _compute_llama3_parameters (computed here in double).
std::vector<float> RotaryFrequencies(const ModelSpec& s) {
  const int rotary = s.rotary_dim > 0 ? s.rotary_dim : s.head_dim();
  std::vector<float> freqs;
  for (int i = 0; i < rotary; i += 2) {
    const float freq = 1.0f / std::pow(s.rope_theta, i / static_cast<float>(rotary));
    if (s.rope_scaling.kind != RopeScaling::Kind::kLlama3) {
      freqs.push_back(freq);
      continue;
    }
    const RopeScaling& r = s.rope_scaling;
    const double wavelen = 2.0 * M_PI / freq;
    const double low_freq_wavelen = r.original_max_position / static_cast<double>(r.low_freq_factor);
    const double high_freq_wavelen = r.original_max_position / static_cast<double>(r.high_freq_factor);
    double scaled = freq;
    if (wavelen > low_freq_wavelen) {
      scaled = freq / static_cast<double>(r.factor);
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth = (r.original_max_position / wavelen - r.low_freq_factor) /
                            (static_cast<double>(r.high_freq_factor) - r.low_freq_factor);
      scaled = (1.0 - smooth) * freq / r.factor + smooth * freq;
    }
    freqs.push_back(static_cast<float>(scaled));
  }
  return freqs;
}

// Rotates pairs (2i, 2i+1) of the first 2 * freqs.size() values of each of n_heads heads.
void Rotate(float* vec, int n_heads, int head_size, const std::vector<float>& freqs, int pos) {
  for (int h = 0; h < n_heads; h++) {
    float* head = vec + static_cast<size_t>(h) * head_size;
    for (size_t i = 0; i < freqs.size(); i++) {
      const float val = pos * freqs[i];
      const float fcr = std::cos(val), fci = std::sin(val);
      const float v0 = head[2 * i], v1 = head[2 * i + 1];
      head[2 * i] = v0 * fcr - v1 * fci;
      head[2 * i + 1] = v0 * fci + v1 * fcr;
    }
  }
}

}  // namespace

ReferenceModel::ReferenceModel(const ModelWeights& weights) : w_(weights), freqs_(RotaryFrequencies(weights.spec)) {
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
  att_out_.resize(s.q_dim());
  ffn_out_.resize(s.dim);
  logits_.resize(s.vocab_size);
}

void ReferenceModel::Norm(float* o, const float* x, std::span<const float> weight, std::span<const float> bias) const {
  const ModelSpec& s = w_.spec;
  if (s.norm == NormKind::kRms)
    RmsNorm(o, x, weight.data(), s.dim, s.norm_eps);
  else
    LayerNorm(o, x, weight.data(), bias.data(), s.dim, s.norm_eps);
}

void ReferenceModel::FeedForward(const LayerWeights& L, float* out) {
  const ModelSpec& s = w_.spec;
  MatVec(hb_.data(), xb_.data(), L.w1.f32().data(), s.dim, s.hidden_dim);
  AddBias(hb_.data(), L.b1.f32());
  if (s.ffn == FfnKind::kSwiGlu) {
    MatVec(hb2_.data(), xb_.data(), L.w3.f32().data(), s.dim, s.hidden_dim);
    for (int i = 0; i < s.hidden_dim; i++) {
      float val = hb_[i];
      val *= (1.0f / (1.0f + std::exp(-val)));
      hb_[i] = val * hb2_[i];
    }
  } else {
    for (int i = 0; i < s.hidden_dim; i++) hb_[i] = GeluTanh(hb_[i]);
  }
  MatVec(out, hb_.data(), L.w2.f32().data(), s.hidden_dim, s.dim);
  AddBias(out, L.b2.f32());
}

const std::vector<float>& ReferenceModel::Forward(int token, int pos) {
  const ModelSpec& s = w_.spec;
  const int dim = s.dim, kv_dim = s.kv_dim(), head_size = s.head_dim(), kv_mul = s.kv_group();
  std::memcpy(x_.data(), &w_.token_embedding.f32()[static_cast<size_t>(token) * dim], dim * sizeof(float));
  for (int l = 0; l < s.n_layers; l++) {
    const LayerWeights& L = w_.layers[l];
    Norm(xb_.data(), x_.data(), L.attn_norm.f32(), L.attn_norm_bias.f32());
    MatVec(q_.data(), xb_.data(), L.wq.f32().data(), dim, s.q_dim());
    MatVec(k_.data(), xb_.data(), L.wk.f32().data(), dim, kv_dim);
    MatVec(v_.data(), xb_.data(), L.wv.f32().data(), dim, kv_dim);
    AddBias(q_.data(), L.bq.f32());
    AddBias(k_.data(), L.bk.f32());
    AddBias(v_.data(), L.bv.f32());
    Rotate(q_.data(), s.n_heads, head_size, freqs_, pos);
    Rotate(k_.data(), s.n_kv_heads, head_size, freqs_, pos);
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
      float* out = &att_out_[static_cast<size_t>(h) * head_size];
      std::memset(out, 0, head_size * sizeof(float));
      for (int t = 0; t <= pos; t++) {
        const float* v = &value_cache_[loff + static_cast<size_t>(t) * kv_dim + (h / kv_mul) * head_size];
        for (int i = 0; i < head_size; i++) out[i] += att[t] * v[i];
      }
    }
    MatVec(xb2_.data(), att_out_.data(), L.wo.f32().data(), s.q_dim(), dim);
    if (s.parallel_residual) {  // GPT-J: x + attn(h) + ffn(h), one h = norm(x)
      FeedForward(L, ffn_out_.data());
      for (int i = 0; i < dim; i++) x_[i] += xb2_[i] + ffn_out_[i];
    } else {
      for (int i = 0; i < dim; i++) x_[i] += xb2_[i];
      Norm(xb_.data(), x_.data(), L.ffn_norm.f32(), L.ffn_norm_bias.f32());
      FeedForward(L, ffn_out_.data());
      for (int i = 0; i < dim; i++) x_[i] += ffn_out_[i];
    }
  }
  Norm(x_.data(), x_.data(), w_.final_norm.f32(), w_.final_norm_bias.f32());
  MatVec(logits_.data(), x_.data(), w_.lm_head().f32().data(), dim, s.vocab_size);
  AddBias(logits_.data(), w_.classifier_bias.f32());
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
