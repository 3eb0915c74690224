#include "worker/model/shard.h"

#include <algorithm>
#include <string>
#include <utility>

namespace flover {
namespace {

// Rows [row_begin, row_begin + n_rows) of a row-major matrix with `cols` columns,
// followed by zero rows up to `padded_rows`. Rows past the matrix's end read as zero.
std::vector<float> SliceRows(const std::vector<float>& m, int cols, int row_begin, int n_rows, int padded_rows) {
  std::vector<float> out(static_cast<size_t>(padded_rows) * cols, 0.0f);
  const int total_rows = static_cast<int>(m.size() / cols);
  const int copy_rows = std::max(0, std::min(n_rows, total_rows - row_begin));
  if (copy_rows > 0)
    std::copy_n(m.begin() + static_cast<size_t>(row_begin) * cols, static_cast<size_t>(copy_rows) * cols,
                out.begin());
  return out;
}

// Columns [col_begin, col_begin + n_cols) of every row of a [rows, cols] matrix.
std::vector<float> SliceCols(const std::vector<float>& m, int rows, int cols, int col_begin, int n_cols) {
  std::vector<float> out(static_cast<size_t>(rows) * n_cols);
  for (int r = 0; r < rows; ++r)
    std::copy_n(m.begin() + static_cast<size_t>(r) * cols + col_begin, n_cols,
                out.begin() + static_cast<size_t>(r) * n_cols);
  return out;
}

void Free(std::vector<float>& v) { std::vector<float>().swap(v); }

Status CheckSize(const std::string& name, const std::vector<float>& t, int64_t expected) {
  if (static_cast<int64_t>(t.size()) != expected)
    return Corruption("shard tensor " + name + " has " + std::to_string(t.size()) + " elements, expected " +
                      std::to_string(expected));
  return Status::Ok();
}

Status CheckRank(const ShardInfo& shard) {
  if (shard.rank < 0 || shard.rank >= shard.world)
    return InvalidArgument("tensor parallel rank " + std::to_string(shard.rank) + " is outside a group of " +
                           std::to_string(shard.world));
  return Status::Ok();
}

}  // namespace

ShardDims ShardDimsFor(const ModelSpec& spec, const ShardInfo& shard) {
  FLOVER_CHECK(CheckTensorParallel(spec, shard.world).ok() && CheckRank(shard).ok())
      << "rank=" << shard.rank << " world=" << shard.world << " " << spec.ToString();
  ShardDims d;
  d.n_heads = spec.n_heads / shard.world;
  d.n_kv_heads = spec.n_kv_heads / shard.world;
  d.q_dim = d.n_heads * spec.head_dim();
  d.kv_dim = d.n_kv_heads * spec.head_dim();
  d.hidden_dim = spec.hidden_dim / shard.world;
  d.vocab_per_rank = (spec.vocab_size + shard.world - 1) / shard.world;
  d.vocab_begin = shard.rank * d.vocab_per_rank;
  return d;
}

Status CheckTensorParallel(const ModelSpec& spec, int world) {
  if (world < 1) return InvalidArgument("tensor parallel size must be >= 1, got " + std::to_string(world));
  auto divides = [world](const char* name, int value) -> Status {
    if (value % world != 0)
      return InvalidArgument("tensor parallel size " + std::to_string(world) + " does not divide " + name + "=" +
                             std::to_string(value));
    return Status::Ok();
  };
  FLOVER_RETURN_IF_ERROR(divides("n_heads", spec.n_heads));
  FLOVER_RETURN_IF_ERROR(divides("n_kv_heads", spec.n_kv_heads));
  FLOVER_RETURN_IF_ERROR(divides("hidden_dim", spec.hidden_dim));
  return Status::Ok();
}

Result<ModelWeights> ShardWeights(ModelWeights full, int rank, int world) {
  FLOVER_RETURN_IF_ERROR(full.Validate());
  FLOVER_RETURN_IF_ERROR(CheckTensorParallel(full.spec, world));
  const ShardInfo shard{rank, world};
  FLOVER_RETURN_IF_ERROR(CheckRank(shard));
  if (world == 1) return full;

  const ModelSpec& spec = full.spec;
  const ShardDims d = ShardDimsFor(spec, shard);
  const int dim = spec.dim;
  ModelWeights out;
  out.spec = spec;
  out.layers.reserve(full.layers.size());
  for (LayerWeights& l : full.layers) {
    LayerWeights s;
    s.attn_norm = std::move(l.attn_norm);
    s.wq = SliceRows(l.wq, dim, rank * d.q_dim, d.q_dim, d.q_dim);
    s.wk = SliceRows(l.wk, dim, rank * d.kv_dim, d.kv_dim, d.kv_dim);
    s.wv = SliceRows(l.wv, dim, rank * d.kv_dim, d.kv_dim, d.kv_dim);
    s.wo = SliceCols(l.wo, dim, spec.q_dim(), rank * d.q_dim, d.q_dim);
    s.ffn_norm = std::move(l.ffn_norm);
    s.w1 = SliceRows(l.w1, dim, rank * d.hidden_dim, d.hidden_dim, d.hidden_dim);
    s.w3 = SliceRows(l.w3, dim, rank * d.hidden_dim, d.hidden_dim, d.hidden_dim);
    s.w2 = SliceCols(l.w2, dim, spec.hidden_dim, rank * d.hidden_dim, d.hidden_dim);
    for (std::vector<float>* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) Free(*t);
    out.layers.push_back(std::move(s));
  }
  const int vocab_rows = std::min(d.vocab_per_rank, spec.vocab_size - d.vocab_begin);
  out.classifier = SliceRows(full.lm_head(), dim, d.vocab_begin, vocab_rows, d.vocab_per_rank);
  Free(full.classifier);
  out.token_embedding = std::move(full.token_embedding);
  out.final_norm = std::move(full.final_norm);
  return out;
}

Status ValidateShard(const ModelWeights& weights, const ShardInfo& shard) {
  FLOVER_RETURN_IF_ERROR(CheckTensorParallel(weights.spec, shard.world));
  FLOVER_RETURN_IF_ERROR(CheckRank(shard));
  if (shard.world == 1) return weights.Validate();
  const ModelSpec& spec = weights.spec;
  FLOVER_RETURN_IF_ERROR(spec.Validate());
  const ShardDims d = ShardDimsFor(spec, shard);
  const int64_t dim = spec.dim;
  FLOVER_RETURN_IF_ERROR(CheckSize("token_embedding", weights.token_embedding, int64_t{spec.vocab_size} * dim));
  if (static_cast<int>(weights.layers.size()) != spec.n_layers)
    return Corruption("shard has " + std::to_string(weights.layers.size()) + " layers, spec says " +
                      std::to_string(spec.n_layers));
  for (size_t i = 0; i < weights.layers.size(); ++i) {
    const LayerWeights& l = weights.layers[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "attn_norm", l.attn_norm, dim));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "wq", l.wq, d.q_dim * dim));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "wk", l.wk, d.kv_dim * dim));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "wv", l.wv, d.kv_dim * dim));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "wo", l.wo, dim * d.q_dim));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "ffn_norm", l.ffn_norm, dim));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "w1", l.w1, d.hidden_dim * dim));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "w2", l.w2, dim * d.hidden_dim));
    FLOVER_RETURN_IF_ERROR(CheckSize(p + "w3", l.w3, d.hidden_dim * dim));
  }
  FLOVER_RETURN_IF_ERROR(CheckSize("final_norm", weights.final_norm, dim));
  return CheckSize("classifier (LM head rows)", weights.classifier, d.vocab_per_rank * dim);
}

}  // namespace flover
