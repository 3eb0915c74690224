// CreateGpuBackend with the CUDA backend.
#include <algorithm>
#include <charconv>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device.h"
#include "worker/comm/nccl_communicator.h"
#include "worker/engine/cuda/cuda_backend.h"
#include "worker/gpu_backend.h"

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

Result<GpuBackend> CreateGpuBackend(const ClusterConfig& config, int replica, int rank, const std::string& device,
                                    KvStore& store) {
  int index = -1;  // "cuda:N": digits, checked by the config loader; N may still overflow
  const char* digits = device.data() + std::min<size_t>(5, device.size());
  const auto [end, error] = std::from_chars(digits, device.data() + device.size(), index);
  if (device.rfind("cuda:", 0) != 0 || error != std::errc() || end != device.data() + device.size())
    return InvalidArgument("device '" + device + "' is not cuda:N");
  const int n_devices = cuda::DeviceCount();
  if (index >= n_devices)
    return Unavailable(device + " is not visible to this worker (" + std::to_string(n_devices) + " CUDA device(s))");
  CudaBackendConfig c;
  c.device = index;
  c.dtype = WorkerDType(config.model, device);
  c.kv_memory_bytes = static_cast<int64_t>(config.kv_cache.memory_mib * 1024 * 1024);
  c.kv_block_size = config.kv_cache.block_size;
  c.max_step_tokens = config.scheduler.max_step_tokens;
  c.max_rows = config.scheduler.max_running;
  const int world = config.tensor_parallel;
  FLOVER_RETURN_IF_ERROR(ValidateCudaBackendConfig(c).WithContext(config.source));

  cuda::Stream stream;
  std::unique_ptr<Communicator> comm;
  if (world > 1) {
    FLOVER_CUDA_RETURN_IF_ERROR(cudaSetDevice(index));
    FLOVER_ASSIGN_OR_RETURN(stream, cuda::Stream::Create());
    FLOVER_ASSIGN_OR_RETURN(comm, NcclCommunicator::Create(rank, world, index, store,
                                                           "replica/" + std::to_string(replica) + "/nccl",
                                                           stream.get()));
  }
  FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> backend,
                          CreateCudaBackend(config.model.path, config.model.dummy_seed, ShardInfo{rank, world},
                                            comm.get(), c));
  GpuBackend out;
  out.description = backend->description();
  out.backend = std::make_unique<OwningCudaBackend>(std::move(stream), std::move(comm), std::move(backend));
  return out;
}

}  // namespace flover
