// Tensor-parallel (Megatron-style) sharding of a model's weights over `world` ranks.
//
// Rank r of T holds:
//   wq, wk, wv   (and bq, bk, bv) rows of its heads: query heads [r*H/T, (r+1)*H/T) and kv heads
//                [r*KV/T, (r+1)*KV/T). Both split contiguously with KV % T == 0, so the
//                query heads of a grouped-query kv group stay on that kv head's rank.
//   w1, w3, b1   rows [r*F/T, (r+1)*F/T) of the feed-forward width F = hidden_dim
//   wo, w2       the matching input columns (each rank computes a partial sum of the
//                full output, completed by an all-reduce; b2 is added after it)
//   LM head      vocabulary rows [r*Vr, (r+1)*Vr), Vr = ceil(vocab/T), in `classifier`
//                (also when the spec shares it with the embedding) and its bias, the
//                last rank padded with zeros up to Vr (completed by an all-gather)
//   token_embedding, the norms and their biases, b2   replicated, in full
// A shard's ModelWeights keeps the FULL model's spec; ShardDims gives the local sizes.
// With world == 1 a shard is the full model, unchanged. Matrices keep their format: a
// row split takes whole rows; a column split of a block format (Q8_0, Q4_0, Q4_K) must
// cut on block boundaries (weight_policy.h), else sharding fails saying so.
//
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"
#include "worker/model/model_weights.h"
#include "worker/model/weight_policy.h"

namespace flover {

// Which part of a tensor-parallel group a set of weights (or a decoder) is.
struct ShardInfo {
  int rank = 0;
  int world = 1;
};

// Local sizes of one rank's shard.
struct ShardDims {
  int n_heads = 0;         // query heads
  int n_kv_heads = 0;
  int q_dim = 0;           // n_heads * head_dim
  int kv_dim = 0;          // n_kv_heads * head_dim
  int hidden_dim = 0;      // feed-forward width
  int vocab_per_rank = 0;  // LM head rows (ceil(vocab / world); with padding on the last rank)
  int vocab_begin = 0;     // first vocabulary id of this rank's LM head rows
};

// REQUIRES: CheckTensorParallel(spec, shard.world) is OK and 0 <= shard.rank < world.
ShardDims ShardDimsFor(const ModelSpec& spec, const ShardInfo& shard);

// InvalidArgument unless world >= 1 and world divides n_heads, n_kv_heads and
// hidden_dim ("tensor parallel size 3 does not divide n_heads=8").
Status CheckTensorParallel(const ModelSpec& spec, int world);
// CheckTensorParallel(spec, shard.world), and InvalidArgument unless 0 <= rank < world.
Status CheckShard(const ModelSpec& spec, const ShardInfo& shard);

// Rank `rank`'s shard of `full` (which must Validate()). InvalidArgument for a bad
// rank/world (CheckTensorParallel), or a column split that cuts a block of a matrix's
// format. Frees `full`'s tensors as it goes.
Result<ModelWeights> ShardWeights(ModelWeights full, int rank, int world);

// How a tensor is split (the table at the top of this file; TensorSplit is in
// model_weights.h with the tensor tables).
TensorSplit SplitOf(WeightTensor LayerWeights::*member);
TensorSplit SplitOf(WeightTensor ModelWeights::*member);

// The part of one whole tensor of n_elements values that rank shard.rank keeps. The
// tensor is seen as a row-major [rows, cols] matrix whose split dimension (rows for a row
// split, cols for a column split) has its full size from the spec and the other
// dimension the rest (so vectors work too); the rank keeps rows [row_begin, row_begin +
// n_rows), then zero rows up to padded_rows (only the LM head's last rank pads), and of
// each the columns [col_begin, col_begin + n_cols). world 1 and kReplicated: all of it,
// as one row. Lets a loader read only the rows it keeps.
struct TensorSlice {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_begin = 0;
  int64_t n_rows = 0;
  int64_t padded_rows = 0;
  int64_t col_begin = 0;
  int64_t n_cols = 0;
};
// REQUIRES: as ShardTensor, with n_elements the tensor's full size.
TensorSlice SliceOf(TensorSplit split, const ModelSpec& spec, const ShardInfo& shard, int64_t n_elements);
// The same for a matrix of full shape [rows, cols], as rows of cols values also when it
// is kept whole (world 1, kReplicated), for readers of row formats.
TensorSlice MatrixSliceOf(TensorSplit split, const ModelSpec& spec, const ShardInfo& shard, int64_t rows, int64_t cols);

// Rank shard.rank's part of one whole tensor (SliceOf), for loaders that shard each
// tensor as soon as it is read (so a rank never holds more than its shard and one whole
// tensor).
// Works for matrices and vectors alike (the split dimension's full size comes from the
// spec, the other is the rest). world 1 returns `full` unchanged. REQUIRES:
// CheckTensorParallel(spec, shard.world) is OK, 0 <= rank < world, and `full` has the
// tensor's full size.
std::vector<float> ShardTensor(TensorSplit split, const ModelSpec& spec, const ShardInfo& shard,
                               std::vector<float> full);
// The same for a tensor of any format whose full shape is [rows, cols] (its table
// entry's): whole rows of a row split, each row's byte range of a column split.
// InvalidArgument naming `name` when a column split of a block format does not fall on
// block boundaries. REQUIRES: as above, and full.Holds(rows, cols).
Result<WeightTensor> ShardTensor(TensorSplit split, const ModelSpec& spec, const ShardInfo& shard, WeightTensor full,
                                 int64_t rows, int64_t cols, const std::string& name);
// Completes a shard built tensor by tensor: with world > 1 and a classifier shared with
// the embedding (`classifier` empty), copies this rank's LM head rows out of
// token_embedding into `classifier` (in the embedding's format), as ShardWeights does.
void FinishShard(ModelWeights& weights, const ShardInfo& shard);

// What a loader keeps of a model: one rank's shard (world 1: all of it), its matrices in
// the formats `weights` asks for (weight_policy.h; fp32 unless told otherwise, what the
// CUDA backend uploads from). `check_spec`, when set, runs as soon as the model's shape
// is known and before any tensor is read, so a model that does not fit the cluster's
// config fails before gigabytes are loaded.
struct LoadTarget {
  LoadTarget() = default;
  LoadTarget(ShardInfo shard_info, std::function<Status(const ModelSpec&)> check = nullptr,
             WeightPolicy policy = {})
      : shard(shard_info), check_spec(std::move(check)), weights(policy) {}

  ShardInfo shard;
  std::function<Status(const ModelSpec&)> check_spec;
  WeightPolicy weights;

  // check_spec (if any), then CheckTensorParallel and the rank: what a loader calls once
  // it knows the spec.
  Status Check(const ModelSpec& spec) const;

  // A whole tensor `t` of the tables read or generated in fp32 (llama2.c files, dummy
  // weights) as this target keeps it: this rank's part (ShardTensor), a matrix then
  // converted to the format the policy chooses for an fp32 source (ChooseMatrixFormat;
  // its note, if any, goes to `notes`). `name` names it in messages ("layers.3.wq").
  // REQUIRES: Check(spec) is OK; full has t's full size.
  template <typename Owner>
  Result<WeightTensor> KeepF32(const TensorInfo<Owner>& t, const ModelSpec& spec, std::vector<float> full,
                               const std::string& name, FormatNotes* notes) const;
};

// The table entry of a member (defined for LayerWeights and ModelWeights).
const TensorInfo<LayerWeights>& TensorInfoOf(WeightTensor LayerWeights::*member);
const TensorInfo<ModelWeights>& TensorInfoOf(WeightTensor ModelWeights::*member);

// The local size of tensor `t` on a rank with local sizes `d` of `world`, 0 when the
// spec has no such tensor (defined for LayerWeights and ModelWeights).
template <typename Owner>
int64_t LocalSize(const TensorInfo<Owner>& t, const ModelSpec& spec, const ShardDims& d, int world);
// Its local shape [rows, cols] ({0, 0} when absent): the split dimension's local size,
// the other dimension whole.
struct LocalShape {
  int64_t rows = 0;
  int64_t cols = 0;
};
template <typename Owner>
LocalShape LocalShapeOf(const TensorInfo<Owner>& t, const ModelSpec& spec, const ShardDims& d, int world);

// Parameters one rank of `world` holds: the replicated embedding and norms, 1/world of
// the layer matrices and split biases, its LM head rows (for world > 1 also when the classifier is shared
// with the embedding). world 1: spec.n_params(). REQUIRES: CheckTensorParallel is OK.
int64_t ShardParams(const ModelSpec& spec, int world);

// Checks every tensor of a shard against the local shapes (vectors fp32, matrices in
// their formats), like ModelWeights::Validate for a full model (which it is when
// world == 1).
Status ValidateShard(const ModelWeights& weights, const ShardInfo& shard);

}  // namespace flover
