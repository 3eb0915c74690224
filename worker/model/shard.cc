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

namespace {

template <typename Owner>
TensorSplit SplitIn(const std::vector<TensorInfo<Owner>>& table, std::vector<float> Owner::*member) {
  for (const auto& t : table)
    if (t.member == member) return t.split;
  FLOVER_CHECK(false) << "tensor not in the table";
  return TensorSplit::kReplicated;
}

// The full size of the split dimension: rows for row splits, columns for column splits.
int SplitDimSize(TensorSplit split, const ModelSpec& spec) {
  switch (split) {
    case TensorSplit::kQRows:
    case TensorSplit::kQCols: return spec.q_dim();
    case TensorSplit::kKvRows: return spec.kv_dim();
    case TensorSplit::kHiddenRows:
    case TensorSplit::kHiddenCols: return spec.hidden_dim;
    case TensorSplit::kVocabRows: return spec.vocab_size;
    case TensorSplit::kReplicated: break;
  }
  return 0;
}

// This rank's part of the split dimension.
int LocalSplitDimSize(TensorSplit split, const ShardDims& d) {
  switch (split) {
    case TensorSplit::kQRows:
    case TensorSplit::kQCols: return d.q_dim;
    case TensorSplit::kKvRows: return d.kv_dim;
    case TensorSplit::kHiddenRows:
    case TensorSplit::kHiddenCols: return d.hidden_dim;
    case TensorSplit::kVocabRows: return d.vocab_per_rank;
    case TensorSplit::kReplicated: break;
  }
  return 0;
}

}  // namespace

TensorSplit SplitOf(std::vector<float> LayerWeights::*member) { return SplitIn(LayerTensors(), member); }
TensorSplit SplitOf(std::vector<float> ModelWeights::*member) { return SplitIn(ModelTensors(), member); }

template <typename Owner>
int64_t LocalSize(const TensorInfo<Owner>& t, const ModelSpec& spec, const ShardDims& d, int world) {
  if (!t.present(spec)) return 0;
  if (world == 1 || t.split == TensorSplit::kReplicated) return t.size(spec);
  return t.size(spec) / SplitDimSize(t.split, spec) * LocalSplitDimSize(t.split, d);
}
template int64_t LocalSize(const TensorInfo<LayerWeights>&, const ModelSpec&, const ShardDims&, int);
template int64_t LocalSize(const TensorInfo<ModelWeights>&, const ModelSpec&, const ShardDims&, int);

std::vector<float> ShardTensor(TensorSplit split, const ModelSpec& spec, const ShardInfo& shard,
                               std::vector<float> full) {
  if (shard.world == 1 || split == TensorSplit::kReplicated) return full;
  const ShardDims d = ShardDimsFor(spec, shard);
  const int rank = shard.rank;
  const int split_size = SplitDimSize(split, spec);
  const int other = static_cast<int>(full.size() / split_size);  // the unsplit dimension
  switch (split) {
    case TensorSplit::kQRows: return SliceRows(full, other, rank * d.q_dim, d.q_dim, d.q_dim);
    case TensorSplit::kKvRows: return SliceRows(full, other, rank * d.kv_dim, d.kv_dim, d.kv_dim);
    case TensorSplit::kHiddenRows: return SliceRows(full, other, rank * d.hidden_dim, d.hidden_dim, d.hidden_dim);
    case TensorSplit::kQCols: return SliceCols(full, other, split_size, rank * d.q_dim, d.q_dim);
    case TensorSplit::kHiddenCols: return SliceCols(full, other, split_size, rank * d.hidden_dim, d.hidden_dim);
    case TensorSplit::kVocabRows:
      return SliceRows(full, other, d.vocab_begin, std::min(d.vocab_per_rank, spec.vocab_size - d.vocab_begin),
                       d.vocab_per_rank);
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
  int64_t per_layer = 0;
  for (const auto& t : LayerTensors()) per_layer += LocalSize(t, spec, d, world);
  int64_t n = spec.n_layers * per_layer;
  for (const auto& t : ModelTensors()) n += LocalSize(t, spec, d, world);
  if (spec.shared_classifier) n += int64_t{d.vocab_per_rank} * spec.dim;  // the LM head rows copied out
  return n;
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
  for (LayerWeights& l : full.layers)
    for (const auto& t : LayerTensors())
      if (t.present(full.spec)) l.*t.member = ShardTensor(t.split, full.spec, shard, std::move(l.*t.member));
  for (const auto& t : ModelTensors())
    if (t.present(full.spec) && t.split != TensorSplit::kReplicated)
      full.*t.member = ShardTensor(t.split, full.spec, shard, std::move(full.*t.member));
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
  if (static_cast<int>(weights.layers.size()) != spec.n_layers)
    return Corruption("shard has " + std::to_string(weights.layers.size()) + " layers, spec says " +
                      std::to_string(spec.n_layers));
  for (size_t i = 0; i < weights.layers.size(); ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    for (const auto& t : LayerTensors())
      FLOVER_RETURN_IF_ERROR(CheckShardSize(p + t.name, weights.layers[i].*t.member, LocalSize(t, spec, d, shard.world)));
  }
  for (const auto& t : ModelTensors()) {
    if (t.member == &ModelWeights::classifier) continue;  // always held by a shard: checked below
    FLOVER_RETURN_IF_ERROR(CheckShardSize(t.name, weights.*t.member, LocalSize(t, spec, d, shard.world)));
  }
  return CheckShardSize("classifier (LM head rows)", weights.classifier, int64_t{d.vocab_per_rank} * spec.dim);
}

}  // namespace flover
