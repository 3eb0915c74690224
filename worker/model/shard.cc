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

// `slice` of a whole tensor `m` of any format (row-major [slice.rows, slice.cols]),
// byte ranges of whole rows. REQUIRES: the column range falls on block boundaries.
WeightTensor CutRows(const WeightTensor& m, const TensorSlice& slice) {
  const cpu::WeightFormat f = m.format();
  const int64_t row_bytes = cpu::WeightRowBytes(f, slice.cols);
  const int64_t begin_bytes = cpu::WeightRowBytes(f, slice.col_begin);
  const int64_t n_bytes = cpu::WeightRowBytes(f, slice.n_cols);
  WeightTensor out = WeightTensor::Zeros(f, slice.padded_rows * n_bytes);
  const std::span<const uint8_t> src = m.bytes();
  const std::span<uint8_t> dst = out.mutable_bytes();
  for (int64_t r = 0; r < slice.n_rows; ++r)
    std::copy_n(src.begin() + (slice.row_begin + r) * row_bytes + begin_bytes, n_bytes, dst.begin() + r * n_bytes);
  return out;
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
const TensorInfo<Owner>& InfoIn(const std::vector<TensorInfo<Owner>>& table, WeightTensor Owner::*member) {
  for (const auto& t : table)
    if (t.member == member) return t;
  FLOVER_CHECK(false) << "tensor not in the table";
  return table.front();
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

const TensorInfo<LayerWeights>& TensorInfoOf(WeightTensor LayerWeights::*member) {
  return InfoIn(LayerTensors(), member);
}
const TensorInfo<ModelWeights>& TensorInfoOf(WeightTensor ModelWeights::*member) {
  return InfoIn(ModelTensors(), member);
}
TensorSplit SplitOf(WeightTensor LayerWeights::*member) { return TensorInfoOf(member).split; }
TensorSplit SplitOf(WeightTensor ModelWeights::*member) { return TensorInfoOf(member).split; }

template <typename Owner>
int64_t LocalSize(const TensorInfo<Owner>& t, const ModelSpec& spec, const ShardDims& d, int world) {
  if (!t.present(spec)) return 0;
  if (world == 1 || t.split == TensorSplit::kReplicated) return t.size(spec);
  return t.size(spec) / SplitDimSize(t.split, spec) * LocalSplitDimSize(t.split, d);
}
template int64_t LocalSize(const TensorInfo<LayerWeights>&, const ModelSpec&, const ShardDims&, int);
template int64_t LocalSize(const TensorInfo<ModelWeights>&, const ModelSpec&, const ShardDims&, int);

template <typename Owner>
LocalShape LocalShapeOf(const TensorInfo<Owner>& t, const ModelSpec& spec, const ShardDims& d, int world) {
  if (!t.present(spec)) return {};
  LocalShape shape{t.rows(spec), t.cols(spec)};
  if (world == 1 || t.split == TensorSplit::kReplicated) return shape;
  if (t.split == TensorSplit::kQCols || t.split == TensorSplit::kHiddenCols) {
    shape.cols = LocalSplitDimSize(t.split, d);
  } else {
    shape.rows = LocalSplitDimSize(t.split, d);
  }
  return shape;
}
template LocalShape LocalShapeOf(const TensorInfo<LayerWeights>&, const ModelSpec&, const ShardDims&, int);
template LocalShape LocalShapeOf(const TensorInfo<ModelWeights>&, const ModelSpec&, const ShardDims&, int);

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

TensorSlice MatrixSliceOf(TensorSplit split, const ModelSpec& spec, const ShardInfo& shard, int64_t rows, int64_t cols) {
  if (shard.world == 1 || split == TensorSplit::kReplicated) return {rows, cols, 0, rows, rows, 0, cols};
  const TensorSlice slice = SliceOf(split, spec, shard, rows * cols);
  FLOVER_CHECK(slice.rows == rows && slice.cols == cols)
      << "[" << rows << ", " << cols << "] sliced as [" << slice.rows << ", " << slice.cols << "]";
  return slice;
}

std::vector<float> ShardTensor(TensorSplit split, const ModelSpec& spec, const ShardInfo& shard,
                               std::vector<float> full) {
  if (shard.world == 1 || split == TensorSplit::kReplicated) return full;
  return Cut(full, SliceOf(split, spec, shard, static_cast<int64_t>(full.size())));
}

Result<WeightTensor> ShardTensor(TensorSplit split, const ModelSpec& spec, const ShardInfo& shard, WeightTensor full,
                                 int64_t rows, int64_t cols, const std::string& name) {
  FLOVER_CHECK(full.Holds(rows, cols)) << name << ": " << cpu::WeightFormatName(full.format()) << " tensor of "
                                       << full.n_bytes() << " bytes is not [" << rows << ", " << cols << "]";
  if (shard.world == 1 || split == TensorSplit::kReplicated) return full;
  const TensorSlice slice = SliceOf(split, spec, shard, rows * cols);
  if (!FitsBlocks(full.format(), slice.n_cols) || !FitsBlocks(full.format(), slice.col_begin + slice.n_cols)) {
    // The policy's message: which sizes and dtypes would work.
    WeightPolicy policy = WeightPolicy::Exactly(full.format());
    Result<MatrixFormat> why = ChooseMatrixFormat(policy, {full.format(), ""}, name, cols, split, spec, shard.world);
    if (!why.ok()) return why.status();
    return InvalidArgument("tensor " + name + ": the columns of rank " + std::to_string(shard.rank) +
                           " are not whole " + cpu::WeightFormatName(full.format()) + " blocks");
  }
  return CutRows(full, slice);
}

void FinishShard(ModelWeights& weights, const ShardInfo& shard) {
  if (shard.world == 1 || !weights.classifier.empty()) return;
  const ModelSpec& spec = weights.spec;
  weights.classifier = CutRows(weights.token_embedding,
                               SliceOf(TensorSplit::kVocabRows, spec, shard, int64_t{spec.vocab_size} * spec.dim));
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

template <typename Owner>
Result<WeightTensor> LoadTarget::KeepF32(const TensorInfo<Owner>& t, const ModelSpec& spec, std::vector<float> full,
                                        const std::string& name, FormatNotes* notes) const {
  FLOVER_CHECK(static_cast<int64_t>(full.size()) == t.size(spec)) << name << ": " << full.size() << " values";
  if (!t.matrix) return WeightTensor(ShardTensor(t.split, spec, shard, std::move(full)));
  FLOVER_ASSIGN_OR_RETURN(const MatrixFormat format, ChooseMatrixFormat(weights, {cpu::WeightFormat::kF32, "fp32"}, name,
                                                                        t.cols(spec), t.split, spec, shard.world));
  if (notes != nullptr) notes->Add(format.note);
  WeightTensor part(ShardTensor(t.split, spec, shard, std::move(full)));
  if (format.format == cpu::WeightFormat::kF32) return part;
  const LocalShape shape = LocalShapeOf(t, spec, ShardDimsFor(spec, shard), shard.world);
  WeightTensor converted = part.ConvertTo(format.format, shape.rows, shape.cols);
  if (t.split == TensorSplit::kVocabRows)  // the last rank's padding rows: zero bytes
    converted.ZeroRowsFrom(MatrixSliceOf(t.split, spec, shard, t.rows(spec), t.cols(spec)).n_rows, shape.cols);
  return converted;
}
template Result<WeightTensor> LoadTarget::KeepF32(const TensorInfo<LayerWeights>&, const ModelSpec&, std::vector<float>,
                                                  const std::string&, FormatNotes*) const;
template Result<WeightTensor> LoadTarget::KeepF32(const TensorInfo<ModelWeights>&, const ModelSpec&, std::vector<float>,
                                                  const std::string&, FormatNotes*) const;

Result<ModelWeights> ShardWeights(ModelWeights full, int rank, int world) {
  FLOVER_RETURN_IF_ERROR(full.Validate());
  FLOVER_RETURN_IF_ERROR(CheckTensorParallel(full.spec, world));
  const ShardInfo shard{rank, world};
  FLOVER_RETURN_IF_ERROR(CheckRank(shard));
  if (world == 1) return full;
  const ModelSpec& spec = full.spec;
  for (size_t i = 0; i < full.layers.size(); ++i) {
    LayerWeights& l = full.layers[i];
    for (const auto& t : LayerTensors()) {
      if (!t.present(spec)) continue;
      FLOVER_ASSIGN_OR_RETURN(l.*t.member, ShardTensor(t.split, spec, shard, std::move(l.*t.member), t.rows(spec),
                                                       t.cols(spec), "layers." + std::to_string(i) + "." + t.name));
    }
  }
  for (const auto& t : ModelTensors()) {
    if (!t.present(spec) || t.split == TensorSplit::kReplicated) continue;
    FLOVER_ASSIGN_OR_RETURN(full.*t.member,
                            ShardTensor(t.split, spec, shard, std::move(full.*t.member), t.rows(spec), t.cols(spec), t.name));
  }
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
  auto check = [&](const std::string& name, const auto& t, const WeightTensor& tensor) {
    const LocalShape shape = LocalShapeOf(t, spec, d, shard.world);
    return CheckTensorShape("shard " + name, tensor, t.matrix, shape.rows, shape.cols);
  };
  for (size_t i = 0; i < weights.layers.size(); ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    for (const auto& t : LayerTensors()) FLOVER_RETURN_IF_ERROR(check(p + t.name, t, weights.layers[i].*t.member));
  }
  for (const auto& t : ModelTensors()) {
    if (t.member == &ModelWeights::classifier) continue;  // always held by a shard: checked below
    FLOVER_RETURN_IF_ERROR(check(t.name, t, weights.*t.member));
  }
  return CheckTensorShape("shard classifier (LM head rows)", weights.classifier, true, d.vocab_per_rank, spec.dim);
}

}  // namespace flover
