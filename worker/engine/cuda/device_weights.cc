#include "worker/engine/cuda/device_weights.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/cuda/convert.h"
#include "kernels/cuda/cuda_status.h"

namespace flover {
namespace {

using cuda::DeviceBuffer;

// dummy_model.cc's scale of a matrix with `in_features` inputs, the same float
// expression (sqrtf is correctly rounded, so the value is the same everywhere).
float DummyScale(int64_t in_features) { return std::sqrt(3.0f / static_cast<float>(in_features)); }

// Allocates every buffer of a shard's DeviceWeights (contents undefined).
Result<DeviceWeights> AllocateWeights(const ModelSpec& spec, const ShardInfo& shard, DType dtype) {
  FLOVER_RETURN_IF_ERROR(CheckShard(spec, shard));
  FLOVER_RETURN_IF_ERROR(cuda::CheckFreeMemory(static_cast<size_t>(DeviceWeightBytes(spec, shard, dtype)),
                                   std::string("the model's ") + DTypeName(dtype) + " weights (" + spec.ToString() +
                                       ", tensor parallel " + std::to_string(shard.world) + ")"));
  const ShardDims d = ShardDimsFor(spec, shard);
  const size_t es = DTypeSize(dtype), dim = static_cast<size_t>(spec.dim);
  DeviceWeights w;
  w.spec = spec;
  w.shard = shard;
  w.dtype = dtype;
  FLOVER_ASSIGN_OR_RETURN(w.token_embedding, DeviceBuffer::Allocate(static_cast<size_t>(spec.vocab_size) * dim * es));
  const size_t head_rows = shard.world > 1 ? d.vocab_per_rank : (spec.shared_classifier ? 0 : spec.vocab_size);
  FLOVER_ASSIGN_OR_RETURN(w.lm_head, DeviceBuffer::Allocate(head_rows * dim * es));
  FLOVER_ASSIGN_OR_RETURN(w.final_norm, DeviceBuffer::Allocate(dim * sizeof(float)));
  w.layers.resize(spec.n_layers);
  for (DeviceLayerWeights& l : w.layers) {
    FLOVER_ASSIGN_OR_RETURN(l.attn_norm, DeviceBuffer::Allocate(dim * sizeof(float)));
    FLOVER_ASSIGN_OR_RETURN(l.wqkv, DeviceBuffer::Allocate(static_cast<size_t>(d.q_dim + 2 * d.kv_dim) * dim * es));
    FLOVER_ASSIGN_OR_RETURN(l.wo, DeviceBuffer::Allocate(dim * d.q_dim * es));
    FLOVER_ASSIGN_OR_RETURN(l.ffn_norm, DeviceBuffer::Allocate(dim * sizeof(float)));
    FLOVER_ASSIGN_OR_RETURN(l.w13, DeviceBuffer::Allocate(size_t{2} * d.hidden_dim * dim * es));
    FLOVER_ASSIGN_OR_RETURN(l.w2, DeviceBuffer::Allocate(dim * d.hidden_dim * es));
  }
  return w;
}

char* At(const DeviceBuffer& b, size_t elements, DType dtype) { return b.as<char>() + elements * DTypeSize(dtype); }

}  // namespace

int64_t DeviceWeightBytes(const ModelSpec& spec, const ShardInfo& shard, DType dtype) {
  const ShardDims d = ShardDimsFor(spec, shard);
  const int64_t dim = spec.dim;
  const int64_t per_layer = int64_t{d.q_dim + 2 * d.kv_dim} * dim + dim * d.q_dim + int64_t{2} * d.hidden_dim * dim +
                            dim * d.hidden_dim;
  const int64_t head_rows = shard.world > 1 ? d.vocab_per_rank : (spec.shared_classifier ? 0 : spec.vocab_size);
  const int64_t stored = int64_t{spec.vocab_size} * dim + spec.n_layers * per_layer + head_rows * dim;
  return stored * static_cast<int64_t>(DTypeSize(dtype)) +
         static_cast<int64_t>(sizeof(float)) * dim * (2 * int64_t{spec.n_layers} + 1);
}

Result<DeviceWeights> UploadWeights(const ModelWeights& src, const ShardInfo& shard, DType dtype,
                                    cudaStream_t stream) {
  FLOVER_RETURN_IF_ERROR(ValidateShard(src, shard));
  FLOVER_ASSIGN_OR_RETURN(DeviceWeights w, AllocateWeights(src.spec, shard, dtype));
  const ShardDims d = ShardDimsFor(src.spec, shard);
  const size_t dim = static_cast<size_t>(src.spec.dim);

  size_t largest = std::max(src.token_embedding.size(), src.classifier.size());
  for (const LayerWeights& l : src.layers)
    for (const std::vector<float>* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3})
      largest = std::max(largest, t->size());
  DeviceBuffer staging;  // fp32 [largest]; not needed when the storage is fp32
  if (dtype != DType::kF32) {
    FLOVER_RETURN_IF_ERROR(cuda::CheckFreeMemory(largest * sizeof(float), "the fp32 upload staging buffer"));
    FLOVER_ASSIGN_OR_RETURN(staging, DeviceBuffer::Allocate(largest * sizeof(float)));
  }
  // dst + offset (elements of dtype) = dtype(t).
  auto put = [&](const std::vector<float>& t, const DeviceBuffer& dst, size_t offset) -> Status {
    if (t.empty()) return Status::Ok();
    if (dtype == DType::kF32) return cuda::CopyToDevice(At(dst, offset, dtype), t.data(), t.size() * sizeof(float), stream);
    FLOVER_RETURN_IF_ERROR(cuda::CopyToDevice(staging.data(), t.data(), t.size() * sizeof(float), stream));
    return cuda::ConvertFromF32(staging.as<float>(), At(dst, offset, dtype), dtype, static_cast<int64_t>(t.size()),
                                stream);
  };
  auto put_norm = [&](const std::vector<float>& t, const DeviceBuffer& dst) {
    return cuda::CopyToDevice(dst.data(), t.data(), t.size() * sizeof(float), stream);
  };

  FLOVER_RETURN_IF_ERROR(put(src.token_embedding, w.token_embedding, 0));
  for (size_t i = 0; i < src.layers.size(); ++i) {
    const LayerWeights& l = src.layers[i];
    DeviceLayerWeights& o = w.layers[i];
    FLOVER_RETURN_IF_ERROR(put_norm(l.attn_norm, o.attn_norm));
    FLOVER_RETURN_IF_ERROR(put(l.wq, o.wqkv, 0));
    FLOVER_RETURN_IF_ERROR(put(l.wk, o.wqkv, static_cast<size_t>(d.q_dim) * dim));
    FLOVER_RETURN_IF_ERROR(put(l.wv, o.wqkv, static_cast<size_t>(d.q_dim + d.kv_dim) * dim));
    FLOVER_RETURN_IF_ERROR(put(l.wo, o.wo, 0));
    FLOVER_RETURN_IF_ERROR(put_norm(l.ffn_norm, o.ffn_norm));
    FLOVER_RETURN_IF_ERROR(put(l.w1, o.w13, 0));
    FLOVER_RETURN_IF_ERROR(put(l.w3, o.w13, static_cast<size_t>(d.hidden_dim) * dim));
    FLOVER_RETURN_IF_ERROR(put(l.w2, o.w2, 0));
  }
  FLOVER_RETURN_IF_ERROR(put_norm(src.final_norm, w.final_norm));
  // world 1: the separate classifier (none when shared); world > 1: this rank's rows.
  if (shard.world > 1 || !src.spec.shared_classifier) FLOVER_RETURN_IF_ERROR(put(src.classifier, w.lm_head, 0));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return w;
}

Result<DeviceWeights> GenerateDummyWeights(const ModelSpec& spec, uint64_t seed, const ShardInfo& shard, DType dtype,
                                           cudaStream_t stream) {
  FLOVER_RETURN_IF_ERROR(spec.Validate());
  FLOVER_ASSIGN_OR_RETURN(DeviceWeights w, AllocateWeights(spec, shard, dtype));
  const ShardDims d = ShardDimsFor(spec, shard);
  const int64_t dim = spec.dim, q = spec.q_dim(), kv = spec.kv_dim(), h = spec.hidden_dim, vocab = spec.vocab_size;
  const size_t es = DTypeSize(dtype);
  const int r = shard.rank;
  const bool split = shard.world > 1;

  DeviceBuffer staging;  // T [largest split tensor, in full]; only with tensor parallelism
  if (split) {
    const int64_t largest = std::max({q * dim, kv * dim, h * dim, spec.shared_classifier ? 0 : vocab * dim});
    FLOVER_RETURN_IF_ERROR(cuda::CheckFreeMemory(static_cast<size_t>(largest) * es, "the dummy-weight staging buffer"));
    FLOVER_ASSIGN_OR_RETURN(staging, DeviceBuffer::Allocate(static_cast<size_t>(largest) * es));
  }
  auto fill = [&](void* dst, int64_t n, uint64_t tensor, float scale) {
    return cuda::FillUniform(dst, dtype, n, seed, tensor, scale, stream);
  };
  // dst = rows [begin, begin + count) of tensor `tensor`, a [rows, cols] matrix.
  auto rows_of = [&](void* dst, int64_t rows, int64_t cols, int64_t begin, int64_t count, uint64_t tensor,
                     float scale) -> Status {
    if (!split) return fill(dst, rows * cols, tensor, scale);
    FLOVER_RETURN_IF_ERROR(fill(staging.data(), rows * cols, tensor, scale));
    FLOVER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, staging.as<char>() + begin * cols * es, count * cols * es,
                                                cudaMemcpyDeviceToDevice, stream));
    return Status::Ok();
  };
  // dst = columns [begin, begin + count) of tensor `tensor`, a [rows, cols] matrix.
  auto cols_of = [&](void* dst, int64_t rows, int64_t cols, int64_t begin, int64_t count, uint64_t tensor,
                     float scale) -> Status {
    if (!split) return fill(dst, rows * cols, tensor, scale);
    FLOVER_RETURN_IF_ERROR(fill(staging.data(), rows * cols, tensor, scale));
    FLOVER_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(dst, count * es, staging.as<char>() + begin * es, cols * es,
                                                  count * es, rows, cudaMemcpyDeviceToDevice, stream));
    return Status::Ok();
  };
  const std::vector<float> ones(spec.dim, 1.0f);
  auto put_ones = [&](const DeviceBuffer& dst) {
    return cuda::CopyToDevice(dst.data(), ones.data(), ones.size() * sizeof(float), stream);
  };

  // Tensor numbers follow MakeDummyWeights: embedding, then per layer wq, wk, wv, wo,
  // w1, w2, w3, then the classifier when it is not shared.
  uint64_t id = 0;
  FLOVER_RETURN_IF_ERROR(fill(w.token_embedding.data(), vocab * dim, id++, 1.0f));
  for (DeviceLayerWeights& l : w.layers) {
    FLOVER_RETURN_IF_ERROR(put_ones(l.attn_norm));
    FLOVER_RETURN_IF_ERROR(rows_of(l.wqkv.data(), q, dim, int64_t{r} * d.q_dim, d.q_dim, id++, DummyScale(dim)));
    FLOVER_RETURN_IF_ERROR(
        rows_of(At(l.wqkv, size_t(d.q_dim) * dim, dtype), kv, dim, int64_t{r} * d.kv_dim, d.kv_dim, id++, DummyScale(dim)));
    FLOVER_RETURN_IF_ERROR(rows_of(At(l.wqkv, size_t(d.q_dim + d.kv_dim) * dim, dtype), kv, dim, int64_t{r} * d.kv_dim,
                                   d.kv_dim, id++, DummyScale(dim)));
    FLOVER_RETURN_IF_ERROR(cols_of(l.wo.data(), dim, q, int64_t{r} * d.q_dim, d.q_dim, id++, DummyScale(q)));
    FLOVER_RETURN_IF_ERROR(put_ones(l.ffn_norm));
    FLOVER_RETURN_IF_ERROR(rows_of(l.w13.data(), h, dim, int64_t{r} * d.hidden_dim, d.hidden_dim, id++, DummyScale(dim)));
    FLOVER_RETURN_IF_ERROR(cols_of(l.w2.data(), dim, h, int64_t{r} * d.hidden_dim, d.hidden_dim, id++, DummyScale(h)));
    FLOVER_RETURN_IF_ERROR(rows_of(At(l.w13, size_t(d.hidden_dim) * dim, dtype), h, dim, int64_t{r} * d.hidden_dim,
                                   d.hidden_dim, id++, DummyScale(dim)));
  }
  FLOVER_RETURN_IF_ERROR(put_ones(w.final_norm));

  if (!split) {
    if (!spec.shared_classifier) FLOVER_RETURN_IF_ERROR(fill(w.lm_head.data(), vocab * dim, id++, DummyScale(dim)));
  } else {
    // This rank's vocabulary rows, zero rows past the vocabulary (ShardWeights).
    const int64_t rows_here = std::max<int64_t>(0, std::min<int64_t>(d.vocab_per_rank, vocab - d.vocab_begin));
    FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(w.lm_head.data(), 0, w.lm_head.bytes(), stream));
    const char* source = w.token_embedding.as<char>();
    if (!spec.shared_classifier) {
      FLOVER_RETURN_IF_ERROR(fill(staging.data(), vocab * dim, id++, DummyScale(dim)));
      source = staging.as<char>();
    }
    if (rows_here > 0)
      FLOVER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(w.lm_head.data(), source + int64_t{d.vocab_begin} * dim * es,
                                                  rows_here * dim * es, cudaMemcpyDeviceToDevice, stream));
  }
  FLOVER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return w;
}

}  // namespace flover
