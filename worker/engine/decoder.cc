#include "worker/engine/decoder.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/bias.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/weight_matmul.h"

namespace flover {
namespace {

// Below this many rows the per-row work of a step (RoPE, storing K/V) stays on one
// thread.
constexpr int kMinParallelRows = 8;

// Concatenates fp32 vectors, freeing the inputs.
std::vector<float> Concat(std::initializer_list<WeightTensor*> parts) {
  std::vector<float> out;
  for (WeightTensor* p : parts) {
    if (p->empty()) continue;
    out.insert(out.end(), p->f32().begin(), p->f32().end());
    p->Clear();
  }
  return out;
}

// An fp32 vector's values, taken (copied out of the tensor, which is freed).
std::vector<float> Take(WeightTensor& t) {
  if (t.empty()) return {};
  std::vector<float> values(t.f32().begin(), t.f32().end());
  t.Clear();
  return values;
}

template <typename Vector>
void GrowTo(Vector& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

Decoder::Decoder(ModelWeights weights, ShardInfo shard, HostCommunicator* comm)
    : spec_(weights.spec),
      shard_(shard),
      local_(ShardDimsFor(weights.spec, shard)),
      comm_(shard.world > 1 ? comm : nullptr),
      token_embedding_(std::move(weights.token_embedding)),
      classifier_(std::move(weights.classifier)),
      classifier_bias_(Take(weights.classifier_bias)),
      final_norm_(Take(weights.final_norm)),
      final_norm_bias_(Take(weights.final_norm_bias)),
      rope_(weights.spec.RopeFrequencies(), weights.spec.max_seq_len) {
  FLOVER_CHECK(spec_.Validate().ok()) << spec_.ToString();
  if (shard_.world > 1) {
    FLOVER_CHECK(comm_ != nullptr) << "tensor parallel size " << shard_.world << " needs a communicator";
    FLOVER_CHECK(comm_->rank() == shard_.rank && comm_->world_size() == shard_.world)
        << "communicator is rank " << comm_->rank() << "/" << comm_->world_size() << ", shard is " << shard_.rank << "/"
        << shard_.world;
  }
  const int dim = spec_.dim;
  layers_.reserve(weights.layers.size());
  for (LayerWeights& l : weights.layers) {
    Layer out;
    out.attn_norm = Take(l.attn_norm);
    out.attn_norm_bias = Take(l.attn_norm_bias);
    out.wqkv = StackRows({{&l.wq, local_.q_dim}, {&l.wk, local_.kv_dim}, {&l.wv, local_.kv_dim}}, dim);
    out.bqkv = Concat({&l.bq, &l.bk, &l.bv});
    out.wo = std::move(l.wo);
    out.ffn_norm = Take(l.ffn_norm);
    out.ffn_norm_bias = Take(l.ffn_norm_bias);
    out.w13 = StackRows({{&l.w1, local_.hidden_dim}, {&l.w3, local_.hidden_dim}}, dim);  // GELU: w1 alone
    out.b1 = Take(l.b1);
    out.w2 = std::move(l.w2);
    out.b2 = Take(l.b2);
    // The SIMD kernels' layout, one matrix at a time (a format without it is left as is).
    for (RowStack* stack : {&out.wqkv, &out.w13}) {
      for (RowStack::Part& part : stack->parts) part.w.Interleave(part.rows, stack->cols);
    }
    out.wo.Interleave(dim, local_.q_dim);
    out.w2.Interleave(dim, local_.hidden_dim);
    layers_.push_back(std::move(out));
  }
  if (shard_.world > 1) {
    classifier_.Interleave(local_.vocab_per_rank, dim);
  } else if (spec_.shared_classifier) {
    token_embedding_.Interleave(spec_.vocab_size, dim);  // the LM head; lookups read either layout
  } else {
    classifier_.Interleave(spec_.vocab_size, dim);
  }
}

Decoder::RowStack Decoder::StackRows(std::initializer_list<std::pair<WeightTensor*, int>> parts, int cols) {
  RowStack s;
  s.cols = cols;
  for (const auto& [w, rows] : parts) {
    if (w->empty()) continue;  // an absent w3
    FLOVER_CHECK(w->Holds(rows, cols)) << cpu::WeightFormatName(w->format()) << " part of " << w->n_bytes()
                                       << " bytes is not [" << rows << ", " << cols << "]";
    s.rows += rows;
    if (!s.parts.empty() && s.parts.back().w.format() == w->format()) {
      RowStack::Part& last = s.parts.back();
      WeightTensor::Bytes bytes(last.w.bytes().begin(), last.w.bytes().end());
      bytes.insert(bytes.end(), w->bytes().begin(), w->bytes().end());
      last.w = WeightTensor::FromBytes(w->format(), std::move(bytes));
      last.rows += rows;
      w->Clear();
      continue;
    }
    s.parts.push_back({std::move(*w), rows});
    w->Clear();
  }
  return s;
}

void Decoder::MatmulStack(const float* x, const RowStack& s, float* y, int n) {
  if (s.parts.size() == 1) {
    cpu::MatmulWeights(x, s.parts[0].w.view(s.rows, s.cols), y, n);
    return;
  }
  int offset = 0;
  for (const RowStack::Part& part : s.parts) {
    GrowTo(part_out_, static_cast<size_t>(n) * part.rows);
    cpu::MatmulWeights(x, part.w.view(part.rows, s.cols), part_out_.data(), n);
    for (int i = 0; i < n; ++i)
      std::memcpy(y + static_cast<size_t>(i) * s.rows + offset, part_out_.data() + static_cast<size_t>(i) * part.rows,
                  sizeof(float) * part.rows);
    offset += part.rows;
  }
}

void Decoder::EnsureScratch(int n, int n_logits) {
  const size_t rows = static_cast<size_t>(n);
  GrowTo(tokens_, rows);
  GrowTo(positions_, rows);
  GrowTo(row_entry_, rows);
  GrowTo(x_, rows * spec_.dim);
  GrowTo(xb_, rows * spec_.dim);
  GrowTo(qkv_, rows * (local_.q_dim + 2 * local_.kv_dim));
  GrowTo(att_, rows * local_.q_dim);
  if (spec_.ffn == FfnKind::kSwiGlu) GrowTo(gate_up_, rows * 2 * local_.hidden_dim);
  GrowTo(hidden_, rows * local_.hidden_dim);
  GrowTo(final_, static_cast<size_t>(n_logits) * spec_.dim);
  if (shard_.world > 1) {
    GrowTo(proj_, rows * spec_.dim);
    GrowTo(logits_part_, static_cast<size_t>(n_logits) * local_.vocab_per_rank);
    GrowTo(logits_all_, static_cast<size_t>(shard_.world) * n_logits * local_.vocab_per_rank);
  }
}

Status Decoder::Forward(std::span<const StepEntry> entries, const KvCache& kv, float* logits) {
  return Run(entries, kv, logits, nullptr);
}

Status Decoder::ForwardArgmax(std::span<const StepEntry> entries, const KvCache& kv, int* tokens) {
  return Run(entries, kv, nullptr, tokens);
}

Status Decoder::Run(std::span<const StepEntry> entries, const KvCache& kv, float* logits, int* tokens) {
  const int dim = spec_.dim, q_dim = local_.q_dim, kv_dim = local_.kv_dim, hidden = local_.hidden_dim;
  const int qkv_stride = q_dim + 2 * kv_dim;
  FLOVER_CHECK(kv.layer(0).n_kv_heads == local_.n_kv_heads)
      << "KV cache has " << kv.layer(0).n_kv_heads << " kv heads, this shard " << local_.n_kv_heads;

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
  if (n == 0) return Status::Ok();
  EnsureScratch(n, n_logits);
  const cpu::WeightView embedding = token_embedding_.view(spec_.vocab_size, dim);
  for (size_t i = 0; i < entries.size(); ++i) {
    const StepEntry& e = entries[i];
    for (int t = 0; t < e.n_tokens; ++t) {
      const int row = entry_offset_[i] + t;
      FLOVER_CHECK(e.tokens[t] >= 0 && e.tokens[t] < spec_.vocab_size) << "token id " << e.tokens[t];
      tokens_[row] = e.tokens[t];
      positions_[row] = e.start_pos + t;
      row_entry_[row] = static_cast<int>(i);
      cpu::DequantizeWeightRows(embedding, e.tokens[t], 1, &x_[static_cast<size_t>(row) * dim]);
    }
  }

  for (int l = 0; l < spec_.n_layers; ++l) {
    const Layer& layer = layers_[l];
    const cpu::PagedKvLayer kv_layer = kv.layer(l);

    // Attention: attn(h) = Wo · attention(rope(Wq·h + bq), rope(Wk·h + bk), Wv·h + bv),
    // h = norm(x).
    Norm(x_.data(), layer.attn_norm, layer.attn_norm_bias, xb_.data(), n);
    MatmulStack(xb_.data(), layer.wqkv, qkv_.data(), n);
    if (!layer.bqkv.empty()) cpu::AddBias(qkv_.data(), qkv_stride, layer.bqkv.data(), n, qkv_stride);
    RotateAndStoreKv(entries, kv_layer, n);
    Attention(entries, kv_layer);

    // Feed-forward: ffn(h) = W2 · act(W1·h + b1 [, W3·h]) + b2.
    if (spec_.parallel_residual) {
      // x += attn(h) + ffn(h): both read the same h; their partial outputs share one all-reduce.
      FeedForwardHidden(layer, n);
      FLOVER_RETURN_IF_ERROR(
          AddProjections({{att_.data(), &layer.wo, q_dim}, {hidden_.data(), &layer.w2, hidden}}, layer.b2, n));
    } else {
      // x += attn(norm(x)); x += ffn(norm(x)).
      FLOVER_RETURN_IF_ERROR(AddProjections({{att_.data(), &layer.wo, q_dim}}, {}, n));
      Norm(x_.data(), layer.ffn_norm, layer.ffn_norm_bias, xb_.data(), n);
      FeedForwardHidden(layer, n);
      FLOVER_RETURN_IF_ERROR(AddProjections({{hidden_.data(), &layer.w2, hidden}}, layer.b2, n));
    }
  }

  // LM head over the last token of each entry that wants logits.
  int j = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!entries[i].want_logits) continue;
    const int row = entry_offset_[i + 1] - 1;
    Norm(&x_[static_cast<size_t>(row) * dim], final_norm_, final_norm_bias_, &final_[static_cast<size_t>(j) * dim], 1);
    ++j;
  }
  if (n_logits == 0) return Status::Ok();
  return tokens ? LmHeadArgmax(n_logits, tokens) : LmHead(n_logits, logits);
}

void Decoder::Norm(const float* x, const std::vector<float>& weight, const std::vector<float>& bias, float* out,
                   int n) const {
  if (spec_.norm == NormKind::kRms) cpu::RmsNorm(x, weight.data(), out, n, spec_.dim, spec_.norm_eps);
  else cpu::LayerNorm(x, weight.data(), bias.data(), out, n, spec_.dim, spec_.norm_eps);
}

void Decoder::FeedForwardHidden(const Layer& layer, int n) {
  const int hidden = local_.hidden_dim;
  if (spec_.ffn == FfnKind::kSwiGlu) {
    MatmulStack(xb_.data(), layer.w13, gate_up_.data(), n);
    if (!layer.b1.empty()) cpu::AddBias(gate_up_.data(), 2 * hidden, layer.b1.data(), n, hidden);  // the gate's
    cpu::SiluMul(gate_up_.data(), hidden_.data(), n, hidden);
  } else {
    MatmulStack(xb_.data(), layer.w13, hidden_.data(), n);
    if (!layer.b1.empty()) cpu::AddBias(hidden_.data(), hidden, layer.b1.data(), n, hidden);
    cpu::GeluTanh(hidden_.data(), hidden_.data(), n, hidden);
  }
}

Status Decoder::AddProjections(std::initializer_list<Projection> parts, const std::vector<float>& bias, int n) {
  const int dim = spec_.dim;
  if (shard_.world == 1) {
    for (const Projection& p : parts)
      cpu::MatmulWeights(p.in, p.w->view(dim, p.in_dim), x_.data(), n, /*accumulate=*/true);
  } else {
    bool first = true;
    for (const Projection& p : parts) {
      cpu::MatmulWeights(p.in, p.w->view(dim, p.in_dim), proj_.data(), n, /*accumulate=*/!first);
      first = false;
    }
    const size_t count = static_cast<size_t>(n) * dim;
    FLOVER_RETURN_IF_ERROR(comm_->AllReduceSum(proj_.data(), count));
    float* x = x_.data();
    const float* p = proj_.data();
#pragma omp parallel for schedule(static) if (count > (size_t{1} << 16))
    for (size_t i = 0; i < count; ++i) x[i] += p[i];
  }
  if (!bias.empty()) cpu::AddBias(x_.data(), dim, bias.data(), n, dim);
  return Status::Ok();
}

void Decoder::LocalLogits(int n_logits) {
  const int per_rank = local_.vocab_per_rank;
  cpu::MatmulWeights(final_.data(), classifier_.view(per_rank, spec_.dim), logits_part_.data(), n_logits);
  if (!classifier_bias_.empty())
    cpu::AddBias(logits_part_.data(), per_rank, classifier_bias_.data(), n_logits, per_rank);
}

Status Decoder::LmHead(int n_logits, float* logits) {
  const int dim = spec_.dim, vocab = spec_.vocab_size;
  if (shard_.world == 1) {
    const WeightTensor& head = spec_.shared_classifier ? token_embedding_ : classifier_;
    cpu::MatmulWeights(final_.data(), head.view(vocab, dim), logits, n_logits);
    if (!classifier_bias_.empty()) cpu::AddBias(logits, vocab, classifier_bias_.data(), n_logits, vocab);
    return Status::Ok();
  }
  // Each rank's vocabulary slice, gathered rank-major, then re-laid out per row without
  // the last rank's padding.
  const int per_rank = local_.vocab_per_rank;
  LocalLogits(n_logits);
  const size_t part = static_cast<size_t>(n_logits) * per_rank;
  FLOVER_RETURN_IF_ERROR(comm_->AllGather(logits_part_.data(), part, logits_all_.data()));
  for (int r = 0; r < shard_.world; ++r) {
    const int begin = r * per_rank;
    const int width = std::min(per_rank, vocab - begin);
    if (width <= 0) continue;
    for (int j = 0; j < n_logits; ++j)
      std::memcpy(logits + static_cast<size_t>(j) * vocab + begin,
                  logits_all_.data() + r * part + static_cast<size_t>(j) * per_rank, sizeof(float) * width);
  }
  return Status::Ok();
}

Status Decoder::LmHeadArgmax(int n_logits, int* tokens) {
  const int vocab = spec_.vocab_size;
  if (shard_.world == 1) {
    GrowTo(logits_all_, static_cast<size_t>(n_logits) * vocab);
    FLOVER_RETURN_IF_ERROR(LmHead(n_logits, logits_all_.data()));
    for (int j = 0; j < n_logits; ++j) {
      const float* row = logits_all_.data() + static_cast<size_t>(j) * vocab;
      tokens[j] = static_cast<int>(std::max_element(row, row + vocab) - row);
    }
    return Status::Ok();
  }
  // This rank's slice [begin, begin + width) of the vocabulary (the last rank's may be
  // narrower: padding), reduced to (max, global id) per row.
  const int per_rank = local_.vocab_per_rank, begin = shard_.rank * per_rank;
  const int width = std::max(0, std::min(per_rank, vocab - begin));
  LocalLogits(n_logits);
  GrowTo(best_, static_cast<size_t>(n_logits) * 2);
  GrowTo(best_all_, static_cast<size_t>(shard_.world) * n_logits * 2);
  for (int j = 0; j < n_logits; ++j) {
    const float* row = logits_part_.data() + static_cast<size_t>(j) * per_rank;
    const int local = width > 0 ? static_cast<int>(std::max_element(row, row + width) - row) : 0;
    const int32_t id = begin + local;
    best_[2 * j] = width > 0 ? row[local] : -std::numeric_limits<float>::infinity();
    std::memcpy(&best_[2 * j + 1], &id, sizeof(id));  // the id's bits travel unchanged
  }
  FLOVER_RETURN_IF_ERROR(comm_->AllGather(best_.data(), static_cast<size_t>(n_logits) * 2, best_all_.data()));
  // Ranks hold increasing ids, so keeping the first maximum in rank order keeps the
  // lowest id among equal maxima, as a full-row argmax would.
  for (int j = 0; j < n_logits; ++j) {
    float best = 0.0f;
    int32_t id = -1;
    for (int r = 0; r < shard_.world; ++r) {
      const float* pair = best_all_.data() + (static_cast<size_t>(r) * n_logits + j) * 2;
      if (id < 0 || pair[0] > best) {
        best = pair[0];
        std::memcpy(&id, &pair[1], sizeof(id));
      }
    }
    tokens[j] = id;
  }
  return Status::Ok();
}

void Decoder::RotateAndStoreKv(std::span<const StepEntry> entries, const cpu::PagedKvLayer& kv, int n) {
  const int q_dim = local_.q_dim, kv_dim = local_.kv_dim, qkv_stride = q_dim + 2 * kv_dim;
  const int head_dim = spec_.head_dim();
  // Row by row: a row's rotation and its cache slot are its own, so the split between
  // threads changes nothing.
#pragma omp parallel for schedule(static) if (n >= kMinParallelRows)
  for (int row = 0; row < n; ++row) {
    float* q = qkv_.data() + static_cast<size_t>(row) * qkv_stride;
    cpu::ApplyRope(q, 1, qkv_stride, local_.n_heads, head_dim, &positions_[row], rope_);
    cpu::ApplyRope(q + q_dim, 1, qkv_stride, local_.n_kv_heads, head_dim, &positions_[row], rope_);
    cpu::WriteKv(kv, entries[row_entry_[row]].block_table, positions_[row], 1, q + q_dim, q + q_dim + kv_dim,
                 qkv_stride);
  }
}

void Decoder::Attention(std::span<const StepEntry> entries, const cpu::PagedKvLayer& kv) {
  const int q_dim = local_.q_dim, qkv_stride = q_dim + 2 * local_.kv_dim, n_heads = local_.n_heads;
  // One work item per entry when there are enough of them (a thread then reads an
  // entry's blocks for all heads, neighbours in the cache), else per (entry, head); long
  // prefill chunks and short decodes balance through dynamic scheduling.
  const int heads_per_item = static_cast<int>(entries.size()) >= 4 * omp_get_max_threads() ? n_heads : 1;
  const int items_per_entry = n_heads / heads_per_item;
  const int n_items = static_cast<int>(entries.size()) * items_per_entry;
#pragma omp parallel for schedule(dynamic, 1) if (n_items > 1)
  for (int item = 0; item < n_items; ++item) {
    const int i = item / items_per_entry, h = item % items_per_entry * heads_per_item;
    const StepEntry& e = entries[i];
    const size_t row = static_cast<size_t>(entry_offset_[i]);
    cpu::PagedAttention(kv, e.block_table, e.start_pos, e.n_tokens, qkv_.data() + row * qkv_stride, qkv_stride,
                        att_.data() + row * q_dim, q_dim, n_heads, h, h + heads_per_item);
  }
}

}  // namespace flover
