#include "worker/engine/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "kernels/cuda/cuda_status.h"
#include "common/block_allocator.h"
#include "worker/model/dummy_model.h"
#include "worker/model/model_loader.h"

namespace flover {
namespace {

constexpr const char kDummyPrefix[] = "dummy:";

// Before anything touches a GPU.
Status CheckGroup(const ShardInfo& shard, const DeviceCommunicatorFactory& make_comm) {
  if (shard.world < 1 || shard.rank < 0 || shard.rank >= shard.world)
    return InvalidArgument("tensor parallel rank " + std::to_string(shard.rank) + " of a group of " +
                           std::to_string(shard.world) + " is invalid");
  if (shard.world > 1 && !make_comm)
    return InvalidArgument("tensor parallel size " + std::to_string(shard.world) + " needs a communicator");
  return Status::Ok();
}

// The communicator the factory made, against what the backend runs on.
Status CheckMadeCommunicator(const DeviceCommunicator* comm, const ShardInfo& shard, int device,
                             cudaStream_t stream) {
  FLOVER_RETURN_IF_ERROR(CheckCommunicator(comm, shard.rank, shard.world));
  if (comm->device() != device)
    return InvalidArgument("the communicator runs on CUDA device " + std::to_string(comm->device()) +
                           ", the backend is configured for device " + std::to_string(device));
  if (comm->stream() != stream)
    return InvalidArgument("the communicator enqueues its collectives on another stream than the backend's");
  return Status::Ok();
}

// Unavailable without a GPU; InvalidArgument for a device index beyond the visible ones.
Status CheckDevice(int device) {
  const int count = cuda::DeviceCount();
  if (count == 0)
    return Unavailable(
        "no CUDA GPU is visible to this process (cudaGetDeviceCount found none, or no driver): the CUDA backend "
        "needs one; run on the CPU backend instead");
  if (device >= count)
    return InvalidArgument("CUDA device " + std::to_string(device) + " does not exist; this machine has " +
                           std::to_string(count) + " visible GPU(s)");
  return Status::Ok();
}

}  // namespace

Status ValidateCudaBackendConfig(const CudaBackendConfig& c) {
  if (c.device < 0) return InvalidArgument("CUDA device index must be >= 0, got " + std::to_string(c.device));
  if (c.dtype != DType::kF32 && c.dtype != DType::kF16 && c.dtype != DType::kBF16)
    return InvalidArgument("CUDA backend dtype must be fp32, fp16 or bf16, got enum value " +
                           std::to_string(static_cast<int>(c.dtype)));
  if (c.kv_memory_bytes <= 0)
    return InvalidArgument("KV memory budget must be > 0 bytes, got " + std::to_string(c.kv_memory_bytes));
  if (c.kv_block_size < 1)
    return InvalidArgument("kv block_size must be >= 1, got " + std::to_string(c.kv_block_size));
  if (c.max_blocks < 0)
    return InvalidArgument("kv max_blocks must be >= 0 (0 = no cap), got " + std::to_string(c.max_blocks));
  if (c.max_step_tokens < 1)
    return InvalidArgument("max_step_tokens must be >= 1, got " + std::to_string(c.max_step_tokens));
  if (c.max_rows < 1) return InvalidArgument("max_rows must be >= 1, got " + std::to_string(c.max_rows));
  return Status::Ok();
}

CudaBackend::~CudaBackend() = default;

Status CudaBackend::Step(std::span<const StepEntry> entries, bool separate_passes, std::span<const SampleRow> rows,
                         std::span<int> tokens, std::span<TokenLogprobs> logprobs) {
  if (rows.size() != logprobs.size())
    return InvalidArgument("step has " + std::to_string(rows.size()) + " sampling rows but room for " +
                           std::to_string(logprobs.size()) + " log-probabilities");
  auto on_host = [](const SampleRow& row) {
    return row.params != nullptr && (row.params->logprobs || row.params->penalises_generated());
  };
  if (std::none_of(rows.begin(), rows.end(), on_host)) return decoder_->Step(entries, separate_passes, rows, tokens);
  // The device takes a plain argmax of the host rows, so that their logits stay raw.
  static const SamplingParams kArgmax;
  device_rows_.assign(rows.begin(), rows.end());
  for (SampleRow& row : device_rows_)
    if (on_host(row)) row = SampleRow{&kArgmax, {}, 0};
  FLOVER_RETURN_IF_ERROR(decoder_->Step(entries, separate_passes, device_rows_, tokens));
  host_logits_.resize(spec().vocab_size);
  for (size_t j = 0; j < rows.size(); ++j) {
    if (!on_host(rows[j])) continue;
    FLOVER_RETURN_IF_ERROR(decoder_->CopyLogitsRow(static_cast<int>(j), host_logits_));
    tokens[j] = host_sampler_.Sample(host_logits_, *rows[j].params, rows[j].history, rows[j].draw_index, &logprobs[j]);
  }
  return Status::Ok();
}

Result<std::unique_ptr<CudaBackend>> CudaBackend::Build(ShardInfo shard, const DeviceCommunicatorFactory& make_comm,
                                                        const CudaBackendConfig& config,
                                                        const WeightMaker& make_weights) {
  FLOVER_CUDA_RETURN_IF_ERROR(cudaSetDevice(config.device));
  std::unique_ptr<CudaBackend> backend(new CudaBackend());
  backend->config_ = config;
  FLOVER_ASSIGN_OR_RETURN(backend->stream_, cuda::Stream::Create());
  const cudaStream_t stream = backend->stream_.get();
  if (shard.world > 1) {
    FLOVER_ASSIGN_OR_RETURN(backend->comm_, make_comm(stream));
    FLOVER_RETURN_IF_ERROR(CheckMadeCommunicator(backend->comm_.get(), shard, config.device, stream));
  }
  std::string what;
  FLOVER_ASSIGN_OR_RETURN(DeviceWeights weights, make_weights(stream, &what));
  const ModelSpec spec = weights.spec;
  const DeviceKvCacheConfig kv_config{
      config.dtype, config.kv_block_size, config.kv_memory_bytes,
      CapKvBlocks(config.max_blocks, config.kv_max_sequences, spec.max_seq_len, config.kv_block_size)};
  FLOVER_ASSIGN_OR_RETURN(backend->kv_, DeviceKvCache::Create(spec, kv_config, shard.world));
  FLOVER_ASSIGN_OR_RETURN(backend->decoder_,
                          CudaDecoder::Create(std::move(weights), backend->kv_.get(), backend->comm_.get(), stream,
                                              CudaDecoderConfig{config.max_step_tokens, config.max_rows, config.cuda_graphs,
                                                                config.capture_graphs, config.small_step_gemv}));
  FLOVER_ASSIGN_OR_RETURN(const std::string gpu, cuda::DeviceDescription(config.device));
  backend->description_ = gpu + ", " + DTypeName(config.dtype) + ", " + what + ", " +
                          std::to_string(backend->kv_->n_blocks()) + " KV blocks of " +
                          std::to_string(backend->kv_->block_size()) +
                          (shard.world > 1 ? ", tensor parallel rank " + std::to_string(shard.rank) + "/" +
                                                 std::to_string(shard.world)
                                           : std::string());
  return backend;
}

Result<std::unique_ptr<CudaBackend>> CudaBackend::FromHostWeights(ModelWeights weights, const std::string& what,
                                                                  ShardInfo shard,
                                                                  const DeviceCommunicatorFactory& make_comm,
                                                                  const CudaBackendConfig& config) {
  FLOVER_RETURN_IF_ERROR(weights.Validate());
  FLOVER_RETURN_IF_ERROR(CheckTensorParallel(weights.spec, shard.world));
  if (shard.world > 1) {
    FLOVER_ASSIGN_OR_RETURN(weights, ShardWeights(std::move(weights), shard.rank, shard.world));
  }
  return Build(shard, make_comm, config, [&](cudaStream_t stream, std::string* made) {
    *made = what;
    return UploadWeights(weights, shard, config.dtype, stream);
  });
}

Result<std::unique_ptr<CudaBackend>> CreateCudaBackend(const std::string& model_path, uint64_t dummy_seed,
                                                       ShardInfo shard, const DeviceCommunicatorFactory& make_comm,
                                                       const CudaBackendConfig& config,
                                                       std::optional<Tokenizer>* tokenizer) {
  FLOVER_RETURN_IF_ERROR(ValidateCudaBackendConfig(config));
  FLOVER_RETURN_IF_ERROR(CheckGroup(shard, make_comm));
  if (model_path.rfind(kDummyPrefix, 0) == 0) {
    const std::string preset = model_path.substr(sizeof(kDummyPrefix) - 1);
    const std::optional<ModelSpec> spec = DummyPreset(preset);
    if (!spec) {
      std::string names;
      for (const std::string& name : DummyPresetNames()) names += (names.empty() ? "" : ", ") + name;
      return InvalidArgument(model_path + ": unknown preset; known presets: " + names);
    }
    FLOVER_RETURN_IF_ERROR(CheckTensorParallel(*spec, shard.world));
    FLOVER_RETURN_IF_ERROR(CheckDevice(config.device));
    return CudaBackend::Build(shard, make_comm, config, [&](cudaStream_t stream, std::string* what) {
      *what = model_path + " (seed " + std::to_string(dummy_seed) + ", generated on the device)";
      return GenerateDummyWeights(*spec, dummy_seed, shard, config.dtype, stream);
    });
  }
  // Fail fast without a GPU, before reading a possibly large file. Only this rank's
  // shard is read into host memory, one tensor at a time, once the group has met.
  FLOVER_RETURN_IF_ERROR(CheckDevice(config.device));
  auto load = [&](cudaStream_t stream, std::string* what) -> Result<DeviceWeights> {
    // fp32 host weights (GGUF block formats dequantized), converted to the storage dtype
    // on the device.
    FLOVER_ASSIGN_OR_RETURN(LoadedModel loaded,
                            LoadModel(model_path, dummy_seed,
                                      LoadTarget{shard, nullptr, WeightPolicy::Exactly(cpu::WeightFormat::kF32)}));
    if (tokenizer) *tokenizer = std::move(loaded.tokenizer);
    *what = loaded.description;
    return UploadWeights(loaded.weights, shard, config.dtype, stream);
  };
  return CudaBackend::Build(shard, make_comm, config, load);
}

Result<std::unique_ptr<CudaBackend>> CreateCudaBackend(ModelWeights weights, ShardInfo shard,
                                                       const DeviceCommunicatorFactory& make_comm,
                                                       const CudaBackendConfig& config) {
  FLOVER_RETURN_IF_ERROR(ValidateCudaBackendConfig(config));
  FLOVER_RETURN_IF_ERROR(CheckGroup(shard, make_comm));
  FLOVER_RETURN_IF_ERROR(CheckTensorParallel(weights.spec, shard.world));
  FLOVER_RETURN_IF_ERROR(CheckDevice(config.device));
  const std::string what = "host weights (" + weights.spec.ToString() + ")";
  return CudaBackend::FromHostWeights(std::move(weights), what, shard, make_comm, config);
}

}  // namespace flover
