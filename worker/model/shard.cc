#include "worker/model/shard.h"

#include <algorithm>
#include <string>
#include <utility>

namespace flover {
namespace {

// `slice` of a whole tensor `m` (row-major [slice.rows, slice.cols]).
std::vector<float> Cut(const std::vector<float>& m, const TensorSlice& slice) {
  std::vector<float> out(static_cast<size_t>(slice.padded_rows * slice.n_cols), 0.0f);
  for (int64_t r = 0; r < slice.n_rows; ++r)
    std::copy_n(m.begin() + (slice.row_begin + r) * slice.cols + slice.col_begin, slice.n_cols,
                out.begin() + r * slice.n_cols);
  return out;
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

TensorSlice SliceOf(TensorSplit split, const ModelSpec& spec, const ShardInfo& shard, int64_t n_elements) {
  if (shard.world == 1 || split == TensorSplit::kReplicated) return {1, n_elements, 0, 1, 1, 0, n_elements};
  const ShardDims d = ShardDimsFor(spec, shard);
  const int64_t split_size = SplitDimSize(split, spec);
  const int64_t local = LocalSplitDimSize(split, d);
  const int64_t other = n_elements / split_size;  // the unsplit dimension
  const int64_t begin = split == TensorSplit::kVocabRows ? d.vocab_begin : shard.rank * local;
  if (split == TensorSplit::kQCols || split == TensorSplit::kHiddenCols)
    return {other, split_size, 0, other, other, begin, local};
  // Rows; only the LM head's last rank runs past the end (and pads).
  const int64_t n_rows = std::clamp<int64_t>(split_size - begin, 0, local);
  return {split_size, other, begin, n_rows, local, 0, other};
}

std::vector<float> ShardTensor(TensorSplit split, const ModelSpec& spec, const ShardInfo& shard,
                               std::vector<float> full) {
  if (shard.world == 1 || split == TensorSplit::kReplicated) return full;
  return Cut(full, SliceOf(split, spec, shard, static_cast<int64_t>(full.size())));
}

void FinishShard(ModelWeights& weights, const ShardInfo& shard) {
  if (shard.world == 1 || !weights.classifier.empty()) return;
  weights.classifier = Cut(weights.token_embedding, SliceOf(TensorSplit::kVocabRows, weights.spec, shard,
                                                          static_cast<int64_t>(weights.token_embedding.size())));
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
