#include "worker/engine/decoder.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/rmsnorm.h"

namespace flover {
namespace {

// Concatenates row-major matrices with the same number of columns, freeing the inputs.
std::vector<float> StackRows(std::initializer_list<std::vector<float>*> parts) {
  size_t total = 0;
  for (auto* p : parts) total += p->size();
  std::vector<float> out;
  out.reserve(total);
  for (auto* p : parts) {
    out.insert(out.end(), p->begin(), p->end());
    std::vector<float>().swap(*p);
  }
  return out;
}

template <typename T>
void GrowTo(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

Decoder::Decoder(ModelWeights weights)
    : spec_(weights.spec),
      token_embedding_(std::move(weights.token_embedding)),
      classifier_(std::move(weights.classifier)),
      final_norm_(std::move(weights.final_norm)),
      rope_(weights.spec.head_dim(), weights.spec.max_seq_len, weights.spec.rope_theta) {
  FLOVER_CHECK(spec_.Validate().ok()) << spec_.ToString();
  layers_.reserve(weights.layers.size());
  for (LayerWeights& l : weights.layers) {
    Layer out;
    out.attn_norm = std::move(l.attn_norm);
    out.wqkv = StackRows({&l.wq, &l.wk, &l.wv});
    out.wo = std::move(l.wo);
    out.ffn_norm = std::move(l.ffn_norm);
    out.w13 = StackRows({&l.w1, &l.w3});
    out.w2 = std::move(l.w2);
    layers_.push_back(std::move(out));
  }
}

void Decoder::EnsureScratch(int n, int n_logits) {
  const size_t rows = static_cast<size_t>(n);
  GrowTo(tokens_, rows);
  GrowTo(positions_, rows);
  GrowTo(x_, rows * spec_.dim);
  GrowTo(xb_, rows * spec_.dim);
  GrowTo(qkv_, rows * (spec_.q_dim() + 2 * spec_.kv_dim()));
  GrowTo(att_, rows * spec_.q_dim());
  GrowTo(gate_up_, rows * 2 * spec_.hidden_dim);
  GrowTo(hidden_, rows * spec_.hidden_dim);
  GrowTo(final_, static_cast<size_t>(n_logits) * spec_.dim);
}

void Decoder::Forward(std::span<const StepEntry> entries, const KvCache& kv, float* logits) {
  const int dim = spec_.dim, q_dim = spec_.q_dim(), kv_dim = spec_.kv_dim(), hidden = spec_.hidden_dim;
  const int qkv_stride = q_dim + 2 * kv_dim;

  // Flatten the entries into rows.
  entry_offset_.assign(1, 0);
  int n = 0, n_logits = 0;
  for (const StepEntry& e : entries) {
    FLOVER_CHECK(e.n_tokens > 0 && e.start_pos >= 0 && e.start_pos + e.n_tokens <= spec_.max_seq_len)
        << "entry start_pos=" << e.start_pos << " n_tokens=" << e.n_tokens << " max_seq_len=" << spec_.max_seq_len;
    n += e.n_tokens;
    n_logits += e.want_logits ? 1 : 0;
    entry_offset_.push_back(n);
  }
  if (n == 0) return;
  EnsureScratch(n, n_logits);
  for (size_t i = 0; i < entries.size(); ++i) {
    const StepEntry& e = entries[i];
    for (int t = 0; t < e.n_tokens; ++t) {
      const int row = entry_offset_[i] + t;
      FLOVER_CHECK(e.tokens[t] >= 0 && e.tokens[t] < spec_.vocab_size) << "token id " << e.tokens[t];
      tokens_[row] = e.tokens[t];
      positions_[row] = e.start_pos + t;
      std::memcpy(&x_[static_cast<size_t>(row) * dim], &token_embedding_[static_cast<size_t>(e.tokens[t]) * dim],
                  sizeof(float) * dim);
    }
  }

  for (int l = 0; l < spec_.n_layers; ++l) {
    const Layer& layer = layers_[l];
    const cpu::PagedKvLayer kv_layer = kv.layer(l);

    // Attention block: x += Wo · attn(rope(Wq·h), rope(Wk·h), Wv·h), h = rmsnorm(x).
    cpu::RmsNorm(x_.data(), layer.attn_norm.data(), xb_.data(), n, dim, spec_.norm_eps);
    cpu::Matmul(xb_.data(), layer.wqkv.data(), qkv_.data(), n, dim, qkv_stride);
    cpu::ApplyRope(qkv_.data(), n, qkv_stride, spec_.n_heads, spec_.head_dim(), positions_.data(), rope_);
    cpu::ApplyRope(qkv_.data() + q_dim, n, qkv_stride, spec_.n_kv_heads, spec_.head_dim(), positions_.data(), rope_);
    for (size_t i = 0; i < entries.size(); ++i) {
      const float* rows = qkv_.data() + static_cast<size_t>(entry_offset_[i]) * qkv_stride;
      cpu::WriteKv(kv_layer, entries[i].block_table, entries[i].start_pos, entries[i].n_tokens, rows + q_dim,
                   rows + q_dim + kv_dim, qkv_stride);
    }
    Attention(entries, kv_layer);
    cpu::Matmul(att_.data(), layer.wo.data(), x_.data(), n, q_dim, dim, /*accumulate=*/true);

    // Feed-forward block: x += W2 · (silu(W1·h) * W3·h), h = rmsnorm(x).
    cpu::RmsNorm(x_.data(), layer.ffn_norm.data(), xb_.data(), n, dim, spec_.norm_eps);
    cpu::Matmul(xb_.data(), layer.w13.data(), gate_up_.data(), n, dim, 2 * hidden);
    cpu::SiluMul(gate_up_.data(), hidden_.data(), n, hidden);
    cpu::Matmul(hidden_.data(), layer.w2.data(), x_.data(), n, hidden, dim, /*accumulate=*/true);
  }

  // LM head over the last token of each entry that wants logits.
  int j = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!entries[i].want_logits) continue;
    const int row = entry_offset_[i + 1] - 1;
    cpu::RmsNorm(&x_[static_cast<size_t>(row) * dim], final_norm_.data(), &final_[static_cast<size_t>(j) * dim], 1,
                 dim, spec_.norm_eps);
    ++j;
  }
  if (n_logits > 0) {
    const float* head = spec_.shared_classifier ? token_embedding_.data() : classifier_.data();
    cpu::Matmul(final_.data(), head, logits, n_logits, dim, spec_.vocab_size);
  }
}

void Decoder::Attention(std::span<const StepEntry> entries, const cpu::PagedKvLayer& kv) {
  const int q_dim = spec_.q_dim(), qkv_stride = q_dim + 2 * spec_.kv_dim(), n_heads = spec_.n_heads;
  const int n_items = static_cast<int>(entries.size()) * n_heads;
  // One work item per (entry, head); long prefill chunks and short decodes balance
  // through dynamic scheduling.
#pragma omp parallel for schedule(dynamic, 1) if (n_items > 1)
  for (int item = 0; item < n_items; ++item) {
    const int i = item / n_heads, h = item % n_heads;
    const StepEntry& e = entries[i];
    const size_t row = static_cast<size_t>(entry_offset_[i]);
    cpu::PagedAttention(kv, e.block_table, e.start_pos, e.n_tokens, qkv_.data() + row * qkv_stride, qkv_stride,
                        att_.data() + row * q_dim, q_dim, n_heads, h, h + 1);
  }
}

}  // namespace flover
