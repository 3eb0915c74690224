#include "worker/backend.h"

#include <omp.h>

#include <charconv>
#include <utility>

#include "common/block_allocator.h"
#include "worker/backend_cuda.h"
#include "worker/engine/cpu_backend.h"
#include "worker/model/model_loader.h"

namespace flover {
namespace {

// "cuda:N" -> N; InvalidArgument for anything else (and for an N beyond int).
Result<int> CudaIndex(const std::string& device) {
  constexpr std::string_view kPrefix = "cuda:";
  int index = -1;
  if (device.starts_with(kPrefix)) {
    const char* begin = device.data() + kPrefix.size();
    const char* end = device.data() + device.size();
    const auto [last, error] = std::from_chars(begin, end, index);
    if (begin != end && error == std::errc() && last == end && index >= 0) return index;
  }
  return InvalidArgument("device '" + device + "' is neither cpu nor cuda:N");
}

cpu::KvDType CpuKvDType(DType dtype) {
  switch (dtype) {
    case DType::kF32: return cpu::KvDType::kF32;
    case DType::kF16: return cpu::KvDType::kF16;
    case DType::kBF16: return cpu::KvDType::kBF16;
  }
  return static_cast<cpu::KvDType>(255);  // a value outside the enum: KvCache::Create rejects it
}

Result<CreatedBackend> CreateCpuBackend(const BackendConfig& config, const BackendGroup& group) {
  const ShardInfo shard = group.shard;
  // Only this rank's shard is loaded, one tensor at a time; a model that does not fit
  // fails on its shape, before any tensor is read.
  FLOVER_ASSIGN_OR_RETURN(LoadedModel model,
                          LoadModel(config.model, config.dummy_seed,
                                    LoadTarget{shard, config.check_model, config.cpu_weights}));
  const std::string weights = model.weights.FormatsString();
  CreatedBackend out;
  for (const auto& [format, n] : model.weights.BytesByFormat()) out.step_weight_bytes += n;
  if (!model.weights.spec.shared_classifier) out.step_weight_bytes -= model.weights.token_embedding.n_bytes();
  std::unique_ptr<HostCommunicator> comm;
  std::string transport;
  if (shard.world > 1) {
    FLOVER_ASSIGN_OR_RETURN(
        CpuCommunicator created,
        CreateCpuCommunicator(shard.rank, shard.world, *group.store, group.prefix + "/tp", group.cpu));
    out.note = std::move(created.note);
    transport = ", tensor parallel over " + std::string(created.transport == CpuTransport::kShm ? "shared memory" : "TCP");
    comm = std::move(created.comm);
  }
  const ModelSpec spec = model.weights.spec;
  const KvCacheConfig kv{config.kv_block_size, config.kv_memory_bytes,
                         CapKvBlocks(config.kv_max_blocks, config.kv_max_sequences, spec.max_seq_len, config.kv_block_size),
                         CpuKvDType(config.kv_dtype.value_or(DType::kF32))};
  FLOVER_ASSIGN_OR_RETURN(out.backend, CpuBackend::Create(std::move(model.weights), shard, std::move(comm), kv));
  const std::string kv_note = kv.dtype == cpu::KvDType::kF32 ? "" : std::string(", KV ") + cpu::KvDTypeName(kv.dtype);
  out.description = model.description + ", cpu, weights " + weights + kv_note + ", " +
                    std::to_string(omp_get_max_threads()) + " threads" + transport;
  out.tokenizer = std::move(model.tokenizer);
  return out;
}

}  // namespace

Result<CreatedBackend> CreateBackend(const BackendConfig& config, const BackendGroup& group) {
  const ShardInfo& shard = group.shard;
  if (shard.world < 1 || shard.rank < 0 || shard.rank >= shard.world)
    return InvalidArgument("tensor parallel rank " + std::to_string(shard.rank) + " of a group of " +
                           std::to_string(shard.world) + " is invalid");
  if (shard.world > 1 && group.store == nullptr)
    return InvalidArgument("tensor parallel size " + std::to_string(shard.world) +
                           " needs a rendezvous store for its communicator");
  if (config.device == "cpu") return CreateCpuBackend(config, group);
  FLOVER_ASSIGN_OR_RETURN(const int index, CudaIndex(config.device));
  if (config.kv_dtype && *config.kv_dtype != config.cuda_dtype)
    return InvalidArgument(std::string("KV cache dtype ") + DTypeName(*config.kv_dtype) +
                           " (kv_cache.dtype, --kv-dtype) is not what " + config.device +
                           " keeps its KV cache in: the weights' type, " + DTypeName(config.cuda_dtype) +
                           "; leave the KV dtype unset or set it to " + DTypeName(config.cuda_dtype));
  return CreateCudaDeviceBackend(index, config, group);
}

}  // namespace flover
