// CudaBackend: the ForwardBackend of a CUDA GPU. Weights (converted once to fp32, fp16
// or bf16), the paged KV cache, the logits and sampling stay on the device; a step
// uploads one small descriptor and reads back only the sampled tokens (cuda_decoder.h).
//
// Created by CreateCudaBackend from a model file or "dummy:<preset>" (dummy weights are
// generated on the device: a 7B model takes seconds and no host copy); CreateBackend
// (worker/backend.h) is the way in for "cuda:N". The backend owns its stream, its KV
// cache and, with tensor parallelism (shard.world > 1), its group's DeviceCommunicator
// (worker/comm/device_communicator.h; NCCL), made on the backend's stream by the
// factory the caller passes: collectives and kernels are ordered on that one stream
// without host waits. Destroyed in reverse: decoder, KV cache, communicator, stream.
//
// Thread-safety: one thread drives a backend (the CUDA device is made current in Step).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "kernels/cuda/device.h"
#include "common/tokenizer.h"
#include "worker/comm/device_communicator.h"
#include "worker/engine/cuda/cuda_decoder.h"
#include "worker/engine/cuda/device_kv_cache.h"
#include "worker/engine/forward_backend.h"
#include "worker/engine/sampler.h"
#include "worker/model/model_weights.h"
#include "worker/model/shard.h"

namespace flover {

struct CudaBackendConfig {
  int device = 0;                           // CUDA device index
  DType dtype = DType::kF16;                // weights and KV cache (norm weights stay fp32)
  int64_t kv_memory_bytes = int64_t{1} << 30;  // KV budget of this rank, K+V of all layers
  int kv_block_size = 16;                   // token slots per KV block
  int max_blocks = 0;                       // if > 0, at most this many KV blocks
  int kv_max_sequences = 0;                 // if > 0, at most what this many full contexts
                                            // use (CapKvBlocks, common/block_allocator.h)
  int max_step_tokens = 512;                // tokens per step (scratch is sized for it)
  int max_rows = 64;                        // sampled tokens per step (logits rows)
  // The fast decode path (cuda_decoder.h). Off by default until a GPU run of
  // scripts/gpu-check.sh has verified it; the off path is the one verified on an H200.
  //   cuda_graphs: decode steps (every entry one token) padded to a few batch sizes and
  //     replayed from a CUDA graph captured once per size (world 1; with tensor
  //     parallelism the padded steps launch eagerly);
  //   capture_graphs: with cuda_graphs, false launches the same padded steps eagerly
  //     (the tests compare the two bit for bit);
  //   small_step_gemv: products of steps with <= 8 rows on the Gemv kernels (gemv.h,
  //     fp16/bf16) instead of cuBLAS, with SiLU fused into the W1/W3 product.
  bool cuda_graphs = false;
  bool capture_graphs = true;
  bool small_step_gemv = false;
};

// OK or InvalidArgument naming the field; needs no GPU.
Status ValidateCudaBackendConfig(const CudaBackendConfig& config);

// Makes the communicator of rank shard.rank of a tensor-parallel CUDA backend, on the
// backend's stream (which outlives it), once the backend's device is current.
using DeviceCommunicatorFactory = std::function<Result<std::unique_ptr<DeviceCommunicator>>(cudaStream_t stream)>;

class CudaBackend final : public ForwardBackend {
 public:
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  const ModelSpec& spec() const override { return decoder_->spec(); }
  int kv_blocks() const override { return kv_->n_blocks(); }
  int kv_block_size() const override { return kv_->block_size(); }

  // ForwardBackend::Step; InvalidArgument, before anything runs, for a step beyond
  // max_step_tokens or max_rows (CudaDecoder::Step). Rows that ask for
  // log-probabilities or presence/frequency penalties are sampled on the host: the
  // device takes their argmax (which leaves their logits raw), and the CPU Sampler
  // samples each from its raw logits row, copied back (one vocab-sized copy per such
  // row). Other rows are sampled on the device.
  Status Step(std::span<const StepEntry> entries, bool separate_passes, std::span<const SampleRow> rows,
              std::span<int> tokens, std::span<TokenLogprobs> logprobs) override;

  const CudaBackendConfig& config() const { return config_; }
  const ShardInfo& shard() const { return decoder_->shard(); }
  // "NVIDIA H200 (sm_90, 139.8 GiB), fp16, dummy:llama-7b (seed 0), 2048 KV blocks of 16"
  const std::string& description() const { return description_; }
  int64_t kv_bytes() const { return kv_->bytes(); }
  // Bytes the last step copied to the device (its descriptor).
  size_t last_step_upload_bytes() const { return decoder_->last_step_upload_bytes(); }
  // Decode-step graphs captured so far (one per padded batch size used).
  int decode_graphs() const { return decoder_->decode_graphs(); }
  // The logits rows of the last step that sampled, fp32 [rows, vocab] (for tests).
  Status CopyLastLogits(std::vector<float>* logits) const { return decoder_->CopyLastLogits(logits); }

 private:
  friend Result<std::unique_ptr<CudaBackend>> CreateCudaBackend(const std::string& model_path, uint64_t dummy_seed,
                                                                ShardInfo shard,
                                                                const DeviceCommunicatorFactory& make_comm,
                                                                const CudaBackendConfig& config,
                                                                std::optional<Tokenizer>* tokenizer);
  friend Result<std::unique_ptr<CudaBackend>> CreateCudaBackend(ModelWeights weights, ShardInfo shard,
                                                                const DeviceCommunicatorFactory& make_comm,
                                                                const CudaBackendConfig& config);
  // Makes this rank's weights on the device, on `stream`; sets *what to their
  // description ("dummy:llama-7b (seed 0, generated on the device)").
  using WeightMaker = std::function<Result<DeviceWeights>(cudaStream_t stream, std::string* what)>;
  // Makes the device current, creates the stream and (world > 1) the communicator on
  // it, so that the ranks meet before any of them loads weights, then the weights, the
  // KV cache and the decoder. REQUIRES: the arguments were checked (config, group,
  // device).
  static Result<std::unique_ptr<CudaBackend>> Build(ShardInfo shard, const DeviceCommunicatorFactory& make_comm,
                                                    const CudaBackendConfig& config, const WeightMaker& make_weights);
  // Shards (world > 1) and uploads full host weights, then Build.
  static Result<std::unique_ptr<CudaBackend>> FromHostWeights(ModelWeights weights, const std::string& what,
                                                              ShardInfo shard,
                                                              const DeviceCommunicatorFactory& make_comm,
                                                              const CudaBackendConfig& config);
  CudaBackend() = default;

  // Destroyed in reverse order: the decoder (whose cuBLAS handle is bound to the
  // stream), the KV cache, the communicator (enqueued on the stream), the stream.
  CudaBackendConfig config_;
  std::string description_;
  cuda::Stream stream_;
  std::unique_ptr<DeviceCommunicator> comm_;  // null with world 1
  std::unique_ptr<DeviceKvCache> kv_;
  std::unique_ptr<CudaDecoder> decoder_;

  // Per-step scratch of the rows sampled on the host, reused.
  std::vector<SampleRow> device_rows_;
  std::vector<float> host_logits_;  // [vocab]
  Sampler host_sampler_;
};

// Creates the backend for `model_path` ("dummy:<preset>", generated on the device with
// `dummy_seed`, or a model file for LoadModel), as rank shard.rank of shard.world;
// `make_comm` makes its communicator when shard.world > 1 (ignored otherwise). With
// `tokenizer`, a vocabulary embedded in the model file is stored there.
// Errors, each with a message naming the cause:
//   InvalidArgument - a bad config (ValidateCudaBackendConfig), rank/world, an unknown
//                     dummy preset, a world that does not divide the heads or hidden
//                     width, world > 1 without a communicator factory, a communicator
//                     of another rank, device or stream, a device index beyond the
//                     visible GPUs;
//   Unavailable     - no CUDA GPU visible (checked before any file is read);
//   ResourceExhausted - the weights, KV budget or scratch do not fit the device;
//   the loader's and the factory's errors.
// Argument checks come first and need no GPU.
Result<std::unique_ptr<CudaBackend>> CreateCudaBackend(const std::string& model_path, uint64_t dummy_seed,
                                                       ShardInfo shard, const DeviceCommunicatorFactory& make_comm,
                                                       const CudaBackendConfig& config,
                                                       std::optional<Tokenizer>* tokenizer = nullptr);

// The same from weights already in host memory: the FULL model (sharded here with
// ShardWeights when shard.world > 1), uploaded and converted to config.dtype.
Result<std::unique_ptr<CudaBackend>> CreateCudaBackend(ModelWeights weights, ShardInfo shard,
                                                       const DeviceCommunicatorFactory& make_comm,
                                                       const CudaBackendConfig& config);

}  // namespace flover
