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

// Rank's LM head rows [vocab_begin, vocab_begin + vocab_per_rank) of a [vocab, dim] matrix,
// the last rank's padded with zero rows.
std::vector<float> LmHeadRows(const std::vector<float>& lm_head, const ModelSpec& spec, const ShardDims& d) {
  return SliceRows(lm_head, spec.dim, d.vocab_begin, std::min(d.vocab_per_rank, spec.vocab_size - d.vocab_begin),
                   d.vocab_per_rank);
}

Status CheckShardSize(const std::string& name, const std::vector<float>& t, int64_t expected) {
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

Status CheckShard(const ModelSpec& spec, const ShardInfo& shard) {
  FLOVER_RETURN_IF_ERROR(CheckTensorParallel(spec, shard.world));
  return CheckRank(shard);
}

ShardDims ShardDimsFor(const ModelSpec& spec, const ShardInfo& shard) {
  FLOVER_CHECK(CheckShard(spec, shard).ok())
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

TensorSplit SplitOf(std::vector<float> LayerWeights::*member) {
  if (member == &LayerWeights::wq) return TensorSplit::kQRows;
  if (member == &LayerWeights::wk || member == &LayerWeights::wv) return TensorSplit::kKvRows;
  if (member == &LayerWeights::w1 || member == &LayerWeights::w3) return TensorSplit::kHiddenRows;
  if (member == &LayerWeights::wo) return TensorSplit::kQCols;
  if (member == &LayerWeights::w2) return TensorSplit::kHiddenCols;
  return TensorSplit::kReplicated;  // attn_norm, ffn_norm
}

TensorSplit SplitOf(std::vector<float> ModelWeights::*member) {
  return member == &ModelWeights::classifier ? TensorSplit::kVocabRows : TensorSplit::kReplicated;
}

std::vector<float> ShardTensor(TensorSplit split, const ModelSpec& spec, const ShardInfo& shard,
                               std::vector<float> full) {
  if (shard.world == 1 || split == TensorSplit::kReplicated) return full;
  const ShardDims d = ShardDimsFor(spec, shard);
  const int dim = spec.dim, rank = shard.rank;
  switch (split) {
    case TensorSplit::kQRows: return SliceRows(full, dim, rank * d.q_dim, d.q_dim, d.q_dim);
    case TensorSplit::kKvRows: return SliceRows(full, dim, rank * d.kv_dim, d.kv_dim, d.kv_dim);
    case TensorSplit::kHiddenRows: return SliceRows(full, dim, rank * d.hidden_dim, d.hidden_dim, d.hidden_dim);
    case TensorSplit::kQCols: return SliceCols(full, dim, spec.q_dim(), rank * d.q_dim, d.q_dim);
    case TensorSplit::kHiddenCols: return SliceCols(full, dim, spec.hidden_dim, rank * d.hidden_dim, d.hidden_dim);
    case TensorSplit::kVocabRows: return LmHeadRows(full, spec, d);
    case TensorSplit::kReplicated: break;
  }
  return full;
}

void FinishShard(ModelWeights& weights, const ShardInfo& shard) {
  if (shard.world == 1 || !weights.classifier.empty()) return;
  weights.classifier =
      LmHeadRows(weights.token_embedding, weights.spec, ShardDimsFor(weights.spec, shard));
}

int64_t ShardParams(const ModelSpec& spec, int world) {
  if (world == 1) return spec.n_params();
  const ShardDims d = ShardDimsFor(spec, ShardInfo{0, world});
  const int64_t dim = spec.dim;
  const int64_t per_layer = 2 * dim + dim * (2 * d.q_dim + 2 * d.kv_dim + 3 * d.hidden_dim);
  return int64_t{spec.vocab_size} * dim + spec.n_layers * per_layer + dim + int64_t{d.vocab_per_rank} * dim;
}

Status LoadTarget::Check(const ModelSpec& spec) const {
  if (check_spec) FLOVER_RETURN_IF_ERROR(check_spec(spec));
  FLOVER_RETURN_IF_ERROR(CheckTensorParallel(spec, shard.world));
  return CheckRank(shard);
}

Result<ModelWeights> ShardWeights(ModelWeights full, int rank, int world) {
  FLOVER_RETURN_IF_ERROR(full.Validate());
  FLOVER_RETURN_IF_ERROR(CheckTensorParallel(full.spec, world));
  const ShardInfo shard{rank, world};
  FLOVER_RETURN_IF_ERROR(CheckRank(shard));
  if (world == 1) return full;
  for (LayerWeights& l : full.layers) {
    for (auto member : {&LayerWeights::wq, &LayerWeights::wk, &LayerWeights::wv, &LayerWeights::wo, &LayerWeights::w1,
                        &LayerWeights::w2, &LayerWeights::w3})
      l.*member = ShardTensor(SplitOf(member), full.spec, shard, std::move(l.*member));
  }
  if (!full.classifier.empty())
    full.classifier = ShardTensor(TensorSplit::kVocabRows, full.spec, shard, std::move(full.classifier));
  FinishShard(full, shard);
  return full;
}

Status ValidateShard(const ModelWeights& weights, const ShardInfo& shard) {
  FLOVER_RETURN_IF_ERROR(CheckTensorParallel(weights.spec, shard.world));
  FLOVER_RETURN_IF_ERROR(CheckRank(shard));
  if (shard.world == 1) return weights.Validate();
  const ModelSpec& spec = weights.spec;
  FLOVER_RETURN_IF_ERROR(spec.Validate());
  const ShardDims d = ShardDimsFor(spec, shard);
  const int64_t dim = spec.dim;
  FLOVER_RETURN_IF_ERROR(CheckShardSize("token_embedding", weights.token_embedding, int64_t{spec.vocab_size} * dim));
  if (static_cast<int>(weights.layers.size()) != spec.n_layers)
    return Corruption("shard has " + std::to_string(weights.layers.size()) + " layers, spec says " +
                      std::to_string(spec.n_layers));
  for (size_t i = 0; i < weights.layers.size(); ++i) {
    const LayerWeights& l = weights.layers[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    FLOVER_RETURN_IF_ERROR(CheckShardSize(p + "attn_norm", l.attn_norm, dim));
    FLOVER_RETURN_IF_ERROR(CheckShardSize(p + "wq", l.wq, d.q_dim * dim));
    FLOVER_RETURN_IF_ERROR(CheckShardSize(p + "wk", l.wk, d.kv_dim * dim));
    FLOVER_RETURN_IF_ERROR(CheckShardSize(p + "wv", l.wv, d.kv_dim * dim));
    FLOVER_RETURN_IF_ERROR(CheckShardSize(p + "wo", l.wo, dim * d.q_dim));
    FLOVER_RETURN_IF_ERROR(CheckShardSize(p + "ffn_norm", l.ffn_norm, dim));
    FLOVER_RETURN_IF_ERROR(CheckShardSize(p + "w1", l.w1, d.hidden_dim * dim));
    FLOVER_RETURN_IF_ERROR(CheckShardSize(p + "w2", l.w2, dim * d.hidden_dim));
    FLOVER_RETURN_IF_ERROR(CheckShardSize(p + "w3", l.w3, d.hidden_dim * dim));
  }
  FLOVER_RETURN_IF_ERROR(CheckShardSize("final_norm", weights.final_norm, dim));
  return CheckShardSize("classifier (LM head rows)", weights.classifier, d.vocab_per_rank * dim);
}

}  // namespace flover
