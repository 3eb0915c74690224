// CreateCudaDeviceBackend with the CUDA backend.
#include "worker/backend_cuda.h"

#include "kernels/cuda/device.h"
#include "worker/comm/nccl_communicator.h"
#include "worker/engine/cuda/cuda_backend.h"

namespace flover {

Result<CreatedBackend> CreateCudaDeviceBackend(int index, const BackendConfig& config, const BackendGroup& group) {
  const int n_devices = cuda::DeviceCount();
  if (index >= n_devices)
    return Unavailable(config.device + " is not visible to this process (" + std::to_string(n_devices) +
                       " CUDA device(s))");
  CudaBackendConfig c;
  c.device = index;
  c.dtype = config.cuda_dtype;
  c.kv_memory_bytes = config.kv_memory_bytes;
  c.kv_block_size = config.kv_block_size;
  c.max_blocks = config.kv_max_blocks;
  c.kv_max_sequences = config.kv_max_sequences;
  c.max_step_tokens = config.max_step_tokens;
  c.max_rows = config.max_rows;

  const ShardInfo shard = group.shard;
  DeviceCommunicatorFactory make_comm;
  if (shard.world > 1) {
    make_comm = [&](cudaStream_t stream) {
      return NcclCommunicator::Create(shard.rank, shard.world, index, *group.store, group.prefix + "/nccl", stream);
    };
  }
  CreatedBackend out;
  FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> backend,
                          CreateCudaBackend(config.model, config.dummy_seed, shard, make_comm, c, &out.tokenizer));
  out.description = backend->description();
  out.backend = std::move(backend);
  return out;
}

}  // namespace flover
