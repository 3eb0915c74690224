// DeviceWeights: one tensor-parallel shard of a model's weights on a CUDA device, in
// the storage dtype, packed as the CPU Decoder packs them (Q|K|V and gate|up as single
// matrices, their biases likewise): uploaded from host weights, or generated on the
// device for dummy models. The CudaDecoder (cuda_decoder.h) runs on them.
//
// Which tensors a model has follows from its spec (model_weights.h's tables,
// LayerTensors()/ModelTensors()); an absent tensor is an empty buffer (null data()).
// Matrices are stored in the storage dtype T, vectors (norm weights and biases, and the
// linear layers' biases) in fp32: they are added to fp32 accumulators.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "kernels/cuda/device.h"
#include "worker/model/model_weights.h"
#include "worker/model/shard.h"

namespace flover {

// One layer of one shard's weights on the device. Sizes are local (ShardDims).
struct DeviceLayerWeights {
  cuda::DeviceBuffer attn_norm;       // fp32 [dim]
  cuda::DeviceBuffer attn_norm_bias;  // fp32 [dim]                      NormKind::kLayer
  cuda::DeviceBuffer wqkv;            // T [q_dim + 2 * kv_dim, dim]: wq rows, wk rows, wv rows
  cuda::DeviceBuffer bqkv;            // fp32 [q_dim + 2 * kv_dim]: bq, bk, bv   qkv_bias
  cuda::DeviceBuffer wo;              // T [dim, q_dim]
  cuda::DeviceBuffer ffn_norm;        // fp32 [dim]                      not parallel_residual
  cuda::DeviceBuffer ffn_norm_bias;   // fp32 [dim]                      kLayer, not parallel_residual
  // SwiGLU: T [2 * hidden_dim, dim], gate (w1) rows, then up (w3) rows.
  // GELU:   T [hidden_dim, dim], fc_in (w1).
  cuda::DeviceBuffer w13;
  cuda::DeviceBuffer b1;              // fp32 [hidden_dim]               ffn_bias
  cuda::DeviceBuffer w2;              // T [dim, hidden_dim]
  cuda::DeviceBuffer b2;              // fp32 [dim], replicated           ffn_bias
};

// One shard's weights on the device, in storage dtype T (vectors fp32), packed as the
// CPU Decoder packs them. The spec is the FULL model's.
struct DeviceWeights {
  ModelSpec spec;
  ShardInfo shard;
  DType dtype = DType::kF16;
  cuda::DeviceBuffer token_embedding;  // T [vocab, dim], replicated
  // The LM head. world 1: T [vocab, dim], or empty when spec.shared_classifier (the
  // embedding is read instead). world > 1: T [vocab_per_rank, dim], this rank's
  // vocabulary rows, zero rows past the vocabulary (shard.h), also when shared.
  cuda::DeviceBuffer lm_head;
  // Its bias (classifier_bias): fp32 [vocab], or with world > 1 [vocab_per_rank], this
  // rank's entries, zeros past the vocabulary.
  cuda::DeviceBuffer lm_head_bias;
  cuda::DeviceBuffer final_norm;       // fp32 [dim]
  cuda::DeviceBuffer final_norm_bias;  // fp32 [dim]   NormKind::kLayer
  std::vector<DeviceLayerWeights> layers;

  // Calls fn(name, buffer) for every buffer, absent ones included ("layers.3.wqkv").
  void ForEachBuffer(const std::function<void(const std::string&, const cuda::DeviceBuffer&)>& fn) const;
};

// Device bytes of one shard's DeviceWeights (to check them against free memory first).
// REQUIRES: CheckTensorParallel(spec, shard.world) is OK.
int64_t DeviceWeightBytes(const ModelSpec& spec, const ShardInfo& shard, DType dtype);

// Uploads a shard's host weights (ShardWeights of the full model, or the full model when
// world == 1), converting each tensor to `dtype` through one fp32 staging buffer on the
// device (ConvertFromF32). Synchronous. InvalidArgument when ValidateShard fails or a
// tensor is not fp32 (host weights for the device are loaded as fp32),
// ResourceExhausted when the device has not the memory.
Result<DeviceWeights> UploadWeights(const ModelWeights& shard_weights, const ShardInfo& shard, DType dtype,
                                    cudaStream_t stream);

// Generates the seeded dummy weights of `spec` (a DummyPreset's shape, or any valid
// spec) directly on the device, tensor for tensor the values of
// MakeDummyWeights(spec, seed) rounded to `dtype` (FillUniform, the same tensor
// numbering and scales, norm weights 1 and norm biases 0), without a host copy. For
// world > 1 the result equals UploadWeights(ShardWeights(MakeDummyWeights(...), rank,
// world)): each split tensor is generated in full into one staging buffer (sized for
// the largest split tensor) and this rank's rows (a contiguous copy) or columns (a 2-D
// copy) are copied out; replicated tensors are generated in place. Generating the full tensor
// costs a few ms per GB on the device and keeps the values a pure function of
// (seed, tensor, element) exactly as on the host. Synchronous.
Result<DeviceWeights> GenerateDummyWeights(const ModelSpec& spec, uint64_t seed, const ShardInfo& shard, DType dtype,
                                           cudaStream_t stream);

}  // namespace flover
