#include "worker/engine/cuda/device_weights.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <string>

#include "common/check.h"
#include "kernels/cuda/convert.h"
#include "kernels/cuda/cuda_status.h"
#include "worker/model/dummy_model.h"

namespace flover {
namespace {

using cuda::DeviceBuffer;

// Where a tensor of the tables (model_weights.h) lives in DeviceWeights: the buffer, the
// local rows of that buffer before it (wk follows this rank's wq rows), and whether it
// is stored in fp32 (vectors) rather than the storage dtype (matrices).
template <typename DeviceOwner>
struct Placement {
  DeviceBuffer DeviceOwner::*buffer;
  int rows_before;
  bool fp32;
};

Placement<DeviceLayerWeights> PlaceInLayer(WeightTensor LayerWeights::*t, const ShardDims& d) {
  using L = LayerWeights;
  using D = DeviceLayerWeights;
  if (t == &L::attn_norm) return {&D::attn_norm, 0, true};
  if (t == &L::attn_norm_bias) return {&D::attn_norm_bias, 0, true};
  if (t == &L::wq) return {&D::wqkv, 0, false};
  if (t == &L::wk) return {&D::wqkv, d.q_dim, false};
  if (t == &L::wv) return {&D::wqkv, d.q_dim + d.kv_dim, false};
  if (t == &L::bq) return {&D::bqkv, 0, true};
  if (t == &L::bk) return {&D::bqkv, d.q_dim, true};
  if (t == &L::bv) return {&D::bqkv, d.q_dim + d.kv_dim, true};
  if (t == &L::wo) return {&D::wo, 0, false};
  if (t == &L::ffn_norm) return {&D::ffn_norm, 0, true};
  if (t == &L::ffn_norm_bias) return {&D::ffn_norm_bias, 0, true};
  if (t == &L::w1) return {&D::w13, 0, false};
  if (t == &L::w3) return {&D::w13, d.hidden_dim, false};
  if (t == &L::b1) return {&D::b1, 0, true};
  if (t == &L::w2) return {&D::w2, 0, false};
  if (t == &L::b2) return {&D::b2, 0, true};
  FLOVER_CHECK(false) << "a layer tensor of the table has no place on the device";
  return {};
}

Placement<DeviceWeights> PlaceInModel(WeightTensor ModelWeights::*t) {
  using M = ModelWeights;
  using D = DeviceWeights;
  if (t == &M::token_embedding) return {&D::token_embedding, 0, false};
  if (t == &M::final_norm) return {&D::final_norm, 0, true};
  if (t == &M::final_norm_bias) return {&D::final_norm_bias, 0, true};
  if (t == &M::classifier) return {&D::lm_head, 0, false};
  if (t == &M::classifier_bias) return {&D::lm_head_bias, 0, true};
  FLOVER_CHECK(false) << "a model tensor of the table has no place on the device";
  return {};
}

Placement<DeviceLayerWeights> PlaceOf(const TensorInfo<LayerWeights>& t, const ShardDims& d) {
  return PlaceInLayer(t.member, d);
}
Placement<DeviceWeights> PlaceOf(const TensorInfo<ModelWeights>& t, const ShardDims&) { return PlaceInModel(t.member); }

size_t ElementBytes(bool fp32, DType dtype) { return fp32 ? sizeof(float) : DTypeSize(dtype); }

// The LM head rows a shard holds beyond the table's `classifier`: with world > 1 a
// classifier shared with the embedding is copied out into lm_head (shard.h).
bool HeadCopiedFromEmbedding(const ModelSpec& spec, const ShardInfo& shard) {
  return shard.world > 1 && spec.shared_classifier;
}

// The bytes of each buffer of one DeviceOwner (member pointers have no order: a list).
template <typename DeviceOwner>
using BufferSizes = std::vector<std::pair<DeviceBuffer DeviceOwner::*, size_t>>;

template <typename DeviceOwner>
size_t& SizeOf(BufferSizes<DeviceOwner>& sizes, DeviceBuffer DeviceOwner::*buffer) {
  for (auto& [b, n] : sizes)
    if (b == buffer) return n;
  return sizes.emplace_back(buffer, 0).second;
}

// Bytes each buffer of one DeviceOwner needs for the present tensors of `table`.
template <typename Owner, typename DeviceOwner>
BufferSizes<DeviceOwner> BufferBytes(const std::vector<TensorInfo<Owner>>& table, const ModelSpec& spec,
                                     const ShardInfo& shard, DType dtype) {
  const ShardDims d = ShardDimsFor(spec, shard);
  BufferSizes<DeviceOwner> sizes;
  for (const auto& t : table) {
    if (!t.present(spec)) continue;
    const Placement<DeviceOwner> p = PlaceOf(t, d);
    const size_t end = static_cast<size_t>(int64_t{p.rows_before} * t.cols(spec) + LocalSize(t, spec, d, shard.world));
    size_t& need = SizeOf(sizes, p.buffer);
    need = std::max(need, end * ElementBytes(p.fp32, dtype));
  }
  return sizes;
}

template <typename DeviceOwner>
Status AllocateAll(DeviceOwner& owner, const BufferSizes<DeviceOwner>& bytes) {
  for (const auto& [buffer, n] : bytes) {
    FLOVER_ASSIGN_OR_RETURN(owner.*buffer, DeviceBuffer::Allocate(n));
  }
  return Status::Ok();
}

// Allocates every buffer of a shard's DeviceWeights (contents undefined).
Result<DeviceWeights> AllocateWeights(const ModelSpec& spec, const ShardInfo& shard, DType dtype) {
  FLOVER_RETURN_IF_ERROR(CheckShard(spec, shard));
  FLOVER_RETURN_IF_ERROR(cuda::CheckFreeMemory(static_cast<size_t>(DeviceWeightBytes(spec, shard, dtype)),
                                               std::string("the model's ") + DTypeName(dtype) + " weights (" +
                                                   spec.ToString() + ", tensor parallel " +
                                                   std::to_string(shard.world) + ")"));
  DeviceWeights w;
  w.spec = spec;
  w.shard = shard;
  w.dtype = dtype;
  auto model_bytes = BufferBytes<ModelWeights, DeviceWeights>(ModelTensors(), spec, shard, dtype);
  if (HeadCopiedFromEmbedding(spec, shard))
    SizeOf(model_bytes, &DeviceWeights::lm_head) =
        static_cast<size_t>(ShardDimsFor(spec, shard).vocab_per_rank) * spec.dim * DTypeSize(dtype);
  FLOVER_RETURN_IF_ERROR(AllocateAll(w, model_bytes));
  const auto layer_bytes = BufferBytes<LayerWeights, DeviceLayerWeights>(LayerTensors(), spec, shard, dtype);
  w.layers.resize(spec.n_layers);
  for (DeviceLayerWeights& l : w.layers) FLOVER_RETURN_IF_ERROR(AllocateAll(l, layer_bytes));
  return w;
}

char* At(const DeviceBuffer& b, int64_t elements, size_t element_bytes) {
  return b.as<char>() + static_cast<size_t>(elements) * element_bytes;
}

// Calls fn(tensor, device owner) for every present tensor of the model in dummy_model.cc's
// numbering order: the embedding, every layer's tensors in table order, then the rest
// of the model's tensors.
template <typename Fn>
Status ForEachTensorInDummyOrder(const ModelSpec& spec, DeviceWeights& w, Fn&& fn) {
  const auto& model = ModelTensors();
  if (model[0].present(spec)) FLOVER_RETURN_IF_ERROR(fn(model[0], w));
  for (DeviceLayerWeights& l : w.layers)
    for (const auto& t : LayerTensors())
      if (t.present(spec)) FLOVER_RETURN_IF_ERROR(fn(t, l));
  for (size_t i = 1; i < model.size(); ++i)
    if (model[i].present(spec)) FLOVER_RETURN_IF_ERROR(fn(model[i], w));
  return Status::Ok();
}

// The part of a split tensor's split dimension that rank `rank` holds: rows for row
// splits, columns for column splits ([begin, begin + count); for the vocabulary, the
// rows that exist, the rest of the shard being zero padding).
struct LocalRange {
  int64_t begin = 0;
  int64_t count = 0;
};

LocalRange LocalRangeOf(TensorSplit split, const ModelSpec& spec, const ShardDims& d, int rank) {
  switch (split) {
    case TensorSplit::kQRows:
    case TensorSplit::kQCols: return {int64_t{rank} * d.q_dim, d.q_dim};
    case TensorSplit::kKvRows: return {int64_t{rank} * d.kv_dim, d.kv_dim};
    case TensorSplit::kHiddenRows:
    case TensorSplit::kHiddenCols: return {int64_t{rank} * d.hidden_dim, d.hidden_dim};
    case TensorSplit::kVocabRows:
      return {d.vocab_begin, std::max<int64_t>(0, std::min<int64_t>(d.vocab_per_rank, spec.vocab_size - d.vocab_begin))};
    case TensorSplit::kReplicated: break;
  }
  return {};
}

bool IsColumnSplit(TensorSplit split) { return split == TensorSplit::kQCols || split == TensorSplit::kHiddenCols; }

}  // namespace

void DeviceWeights::ForEachBuffer(const std::function<void(const std::string&, const DeviceBuffer&)>& fn) const {
  fn("token_embedding", token_embedding);
  fn("lm_head", lm_head);
  fn("lm_head_bias", lm_head_bias);
  fn("final_norm", final_norm);
  fn("final_norm_bias", final_norm_bias);
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    const DeviceLayerWeights& l = layers[i];
    fn(p + "attn_norm", l.attn_norm);
    fn(p + "attn_norm_bias", l.attn_norm_bias);
    fn(p + "wqkv", l.wqkv);
    fn(p + "bqkv", l.bqkv);
    fn(p + "wo", l.wo);
    fn(p + "ffn_norm", l.ffn_norm);
    fn(p + "ffn_norm_bias", l.ffn_norm_bias);
    fn(p + "w13", l.w13);
    fn(p + "b1", l.b1);
    fn(p + "w2", l.w2);
    fn(p + "b2", l.b2);
  }
}

int64_t DeviceWeightBytes(const ModelSpec& spec, const ShardInfo& shard, DType dtype) {
  const ShardDims d = ShardDimsFor(spec, shard);
  int64_t per_layer = 0;
  for (const auto& t : LayerTensors())
    per_layer += LocalSize(t, spec, d, shard.world) * ElementBytes(PlaceOf(t, d).fp32, dtype);
  int64_t total = spec.n_layers * per_layer;
  for (const auto& t : ModelTensors())
    total += LocalSize(t, spec, d, shard.world) * ElementBytes(PlaceOf(t, d).fp32, dtype);
  if (HeadCopiedFromEmbedding(spec, shard)) total += int64_t{d.vocab_per_rank} * spec.dim * DTypeSize(dtype);
  return total;
}

Result<DeviceWeights> UploadWeights(const ModelWeights& src, const ShardInfo& shard, DType dtype,
                                    cudaStream_t stream) {
  FLOVER_RETURN_IF_ERROR(ValidateShard(src, shard));
  const ModelSpec& spec = src.spec;
  auto check_f32 = [](const std::string& name, const WeightTensor& t) -> Status {
    if (t.is_f32()) return Status::Ok();
    return InvalidArgument("tensor " + name + " is " + cpu::WeightFormatName(t.format()) +
                           "; the CUDA backend uploads fp32 host weights (load them with weight format fp32)");
  };
  for (const auto& t : ModelTensors()) FLOVER_RETURN_IF_ERROR(check_f32(t.name, src.*t.member));
  for (size_t i = 0; i < src.layers.size(); ++i)
    for (const auto& t : LayerTensors())
      FLOVER_RETURN_IF_ERROR(check_f32("layers." + std::to_string(i) + "." + t.name, src.layers[i].*t.member));
  FLOVER_ASSIGN_OR_RETURN(DeviceWeights w, AllocateWeights(spec, shard, dtype));
  const ShardDims d = ShardDimsFor(spec, shard);

  // Host weights are fp32 (loaded with the default LoadTarget policy); f32() checks it.
  size_t largest = std::max(src.token_embedding.f32().size(), src.classifier.f32().size());
  for (const LayerWeights& l : src.layers)
    for (const auto& t : LayerTensors()) largest = std::max(largest, (l.*t.member).f32().size());
  DeviceBuffer staging;  // fp32 [largest]; not needed when the storage is fp32
  if (dtype != DType::kF32) {
    FLOVER_RETURN_IF_ERROR(cuda::CheckFreeMemory(largest * sizeof(float), "the fp32 upload staging buffer"));
    FLOVER_ASSIGN_OR_RETURN(staging, DeviceBuffer::Allocate(largest * sizeof(float)));
  }
  // dst + offset elements = t, converted to dtype unless stored in fp32.
  auto put = [&](std::span<const float> t, const DeviceBuffer& dst, int64_t offset, bool fp32) -> Status {
    if (t.empty()) return Status::Ok();
    const size_t bytes = t.size() * sizeof(float);
    if (fp32 || dtype == DType::kF32) return cuda::CopyToDevice(At(dst, offset, sizeof(float)), t.data(), bytes, stream);
    FLOVER_RETURN_IF_ERROR(cuda::CopyToDevice(staging.data(), t.data(), bytes, stream));
    return cuda::ConvertFromF32(staging.as<float>(), At(dst, offset, DTypeSize(dtype)), dtype,
                                static_cast<int64_t>(t.size()), stream);
  };
  auto put_tensor = [&](const auto& t, const auto& host, auto& device) -> Status {
    if (!t.present(spec)) return Status::Ok();
    const auto p = PlaceOf(t, d);
    return put((host.*t.member).f32(), device.*p.buffer, int64_t{p.rows_before} * t.cols(spec), p.fp32);
  };

  for (const auto& t : ModelTensors()) FLOVER_RETURN_IF_ERROR(put_tensor(t, src, w));
  for (size_t i = 0; i < src.layers.size(); ++i)
    for (const auto& t : LayerTensors()) FLOVER_RETURN_IF_ERROR(put_tensor(t, src.layers[i], w.layers[i]));
  if (HeadCopiedFromEmbedding(spec, shard)) FLOVER_RETURN_IF_ERROR(put(src.classifier.f32(), w.lm_head, 0, false));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return w;
}

Result<DeviceWeights> GenerateDummyWeights(const ModelSpec& spec, uint64_t seed, const ShardInfo& shard, DType dtype,
                                           cudaStream_t stream) {
  FLOVER_RETURN_IF_ERROR(spec.Validate());
  FLOVER_ASSIGN_OR_RETURN(DeviceWeights w, AllocateWeights(spec, shard, dtype));
  const ShardDims d = ShardDimsFor(spec, shard);
  const bool split = shard.world > 1;

  DeviceBuffer staging;  // the largest split tensor, in full, in its element type; only with TP
  if (split) {
    size_t largest = 0;
    auto consider = [&](const auto& t) {
      if (t.present(spec) && t.split != TensorSplit::kReplicated)
        largest = std::max(largest, static_cast<size_t>(t.size(spec)) * ElementBytes(PlaceOf(t, d).fp32, dtype));
    };
    for (const auto& t : LayerTensors()) consider(t);
    for (const auto& t : ModelTensors()) consider(t);
    FLOVER_RETURN_IF_ERROR(cuda::CheckFreeMemory(largest, "the dummy-weight staging buffer"));
    FLOVER_ASSIGN_OR_RETURN(staging, DeviceBuffer::Allocate(largest));
  }
  const std::vector<float> ones(spec.dim, 1.0f);

  // As dummy_model.cc: tensors take ids in order, counting only the random ones, each
  // filled as DummyFillOf says.
  uint64_t id = 0;
  auto generate = [&](const auto& t, auto& owner) -> Status {
    const auto p = PlaceOf(t, d);
    const DeviceBuffer& buffer = owner.*p.buffer;
    const size_t es = ElementBytes(p.fp32, dtype);
    const DType element = p.fp32 ? DType::kF32 : dtype;
    const int64_t rows = t.rows(spec), cols = t.cols(spec);
    char* const dst = At(buffer, int64_t{p.rows_before} * cols, es);
    const DummyFill how = DummyFillOf(t.name, cols);
    if (!how.random && how.value == 1.0f)
      return cuda::CopyToDevice(dst, ones.data(), rows * cols * sizeof(float), stream);
    if (!how.random) {  // 0: norm biases
      FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(dst, 0, rows * cols * sizeof(float), stream));
      return Status::Ok();
    }
    const float scale = how.value;
    const uint64_t tensor = id++;
    if (!split || t.split == TensorSplit::kReplicated)
      return cuda::FillUniform(dst, element, rows * cols, seed, tensor, scale, stream);
    // The whole tensor into staging, then this rank's rows or columns out of it.
    FLOVER_RETURN_IF_ERROR(cuda::FillUniform(staging.data(), element, rows * cols, seed, tensor, scale, stream));
    const LocalRange part = LocalRangeOf(t.split, spec, d, shard.rank);
    if (IsColumnSplit(t.split)) {
      FLOVER_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(dst, part.count * es, staging.as<char>() + part.begin * es,
                                                    cols * es, part.count * es, rows, cudaMemcpyDeviceToDevice,
                                                    stream));
      return Status::Ok();
    }
    // Rows; the vocabulary's last shard is padded with zero rows (ShardWeights).
    const int64_t local = LocalSize(t, spec, d, shard.world);
    if (part.count * cols < local)
      FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(dst, 0, local * es, stream));
    if (part.count > 0)
      FLOVER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, staging.as<char>() + part.begin * cols * es,
                                                  part.count * cols * es, cudaMemcpyDeviceToDevice, stream));
    return Status::Ok();
  };
  FLOVER_RETURN_IF_ERROR(ForEachTensorInDummyOrder(spec, w, generate));

  if (HeadCopiedFromEmbedding(spec, shard)) {
    // This rank's vocabulary rows of the embedding, zero rows past the vocabulary.
    const size_t es = DTypeSize(dtype);
    const int64_t rows_here = LocalRangeOf(TensorSplit::kVocabRows, spec, d, shard.rank).count;
    FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(w.lm_head.data(), 0, w.lm_head.bytes(), stream));
    if (rows_here > 0)
      FLOVER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(w.lm_head.data(), At(w.token_embedding, int64_t{d.vocab_begin} * spec.dim, es),
                                                  rows_here * spec.dim * es, cudaMemcpyDeviceToDevice, stream));
  }
  FLOVER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return w;
}

}  // namespace flover
