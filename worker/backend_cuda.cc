// CreateCudaDeviceBackend with the CUDA backend.
#include "worker/backend_cuda.h"

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device.h"
#include "worker/comm/nccl_communicator.h"
#include "worker/engine/cuda/cuda_backend.h"

namespace flover {
namespace {

// Owns what the CudaBackend uses; members are destroyed backend first, stream last.
class OwningCudaBackend final : public ForwardBackend {
 public:
  OwningCudaBackend(cuda::Stream stream, std::unique_ptr<Communicator> comm, std::unique_ptr<CudaBackend> backend)
      : stream_(std::move(stream)), comm_(std::move(comm)), backend_(std::move(backend)) {}

  const ModelSpec& spec() const override { return backend_->spec(); }
  int kv_blocks() const override { return backend_->kv_blocks(); }
  int kv_block_size() const override { return backend_->kv_block_size(); }
  Status Step(std::span<const StepEntry> entries, bool separate_passes, std::span<const SampleRow> rows,
              std::span<int> tokens) override {
    return backend_->Step(entries, separate_passes, rows, tokens);
  }

 private:
  cuda::Stream stream_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<CudaBackend> backend_;
};

}  // namespace

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
  FLOVER_RETURN_IF_ERROR(ValidateCudaBackendConfig(c));

  const ShardInfo shard = group.shard;
  cuda::Stream stream;
  std::unique_ptr<Communicator> comm;
  if (shard.world > 1) {
    FLOVER_CUDA_RETURN_IF_ERROR(cudaSetDevice(index));
    FLOVER_ASSIGN_OR_RETURN(stream, cuda::Stream::Create());
    FLOVER_ASSIGN_OR_RETURN(comm, NcclCommunicator::Create(shard.rank, shard.world, index, *group.store,
                                                           group.prefix + "/nccl", stream.get()));
  }
  FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> backend,
                          CreateCudaBackend(config.model, config.dummy_seed, shard, comm.get(), c));
  CreatedBackend out;
  out.description = backend->description();
  out.backend = std::make_unique<OwningCudaBackend>(std::move(stream), std::move(comm), std::move(backend));
  return out;
}

}  // namespace flover
