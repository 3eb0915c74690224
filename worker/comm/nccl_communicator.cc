#include "worker/comm/nccl_communicator.h"

#include <nccl.h>

#include <algorithm>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device.h"

namespace flover {
namespace {

using Clock = std::chrono::steady_clock;

// Key suffix under which rank 0 publishes the group's ncclUniqueId.
constexpr const char* kUniqueIdKey = "/nccl_unique_id";

const char* NcclResultName(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "ncclSuccess";
    case ncclUnhandledCudaError: return "ncclUnhandledCudaError";
    case ncclSystemError: return "ncclSystemError";
    case ncclInternalError: return "ncclInternalError";
    case ncclInvalidArgument: return "ncclInvalidArgument";
    case ncclInvalidUsage: return "ncclInvalidUsage";
    case ncclRemoteError: return "ncclRemoteError";
    case ncclInProgress: return "ncclInProgress";
    default: return "ncclResult_t?";
  }
}

// "InternalError: ncclAllReduce(...) failed on tensor-parallel rank 0/2 (CUDA device 0):
// remote process exited or there was a network error (ncclRemoteError); NCCL: <last>".
// A peer or the network failing is Unavailable (rebuild the group); the rest Internal.
Status NcclError(ncclResult_t r, const std::string& call, ncclComm_t comm, const std::string& where) {
  std::string message = call + " failed on " + where + ": " + ncclGetErrorString(r) + " (" + NcclResultName(r) + ")";
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0') message += "; NCCL: " + std::string(last);
  const StatusCode code =
      r == ncclSystemError || r == ncclRemoteError ? StatusCode::kUnavailable : StatusCode::kInternal;
  return Status(code, std::move(message));
}

std::string Milliseconds(std::chrono::milliseconds t) { return std::to_string(t.count()) + " ms"; }

// "all-reduce of 768 floats (ncclAllReduce)"; just `op` when n == 0. Built only for
// error messages: the steady-state path does not allocate.
std::string Describe(const char* op, size_t n, const char* call) {
  std::string s = op;
  if (n > 0) s += " of " + std::to_string(n) + " floats";
  if (call != nullptr) s += std::string(" (") + call + ")";
  return s;
}

// Makes a device current until the end of the scope, then restores the previous one.
class ScopedDevice {
 public:
  ScopedDevice() = default;
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;
  ~ScopedDevice() {
    if (previous_ >= 0) (void)cudaSetDevice(previous_);
  }

  Status Enter(int device) {
    int current = -1;
    FLOVER_CUDA_RETURN_IF_ERROR(cudaGetDevice(&current));
    if (current == device) return Status::Ok();
    FLOVER_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
    previous_ = current;
    return Status::Ok();
  }

 private:
  int previous_ = -1;
};

// Back-off of the polling loops: spin briefly (an enqueue usually completes at once),
// then sleep so a long wait does not burn a core.
void Pause(int spins) {
  if (spins < 64)
    std::this_thread::yield();
  else
    std::this_thread::sleep_for(std::chrono::microseconds(100));
}

}  // namespace

struct NcclCommunicator::Impl {
  ncclComm_t comm = nullptr;  // null once aborted or destroyed
  int device = 0;
  std::chrono::milliseconds timeout{0};
  std::string where;           // "tensor-parallel rank 0/2 (CUDA device 0)", for messages
  cuda::DeviceBuffer scratch;  // [1] float: Barrier's all-reduce
  Status broken;               // OK until the first failure, then that failure forever

  // Polls the communicator until it leaves ncclInProgress (an init, enqueue or finalize
  // that NCCL completes in the background): OK, NCCL's error, or Unavailable at
  // `deadline`.
  // `op`, `n`, `call` describe the operation in messages (see Describe).
  Status WaitForNccl(const char* op, size_t n, const char* call, Clock::time_point deadline) const {
    for (int spins = 0;; ++spins) {
      ncclResult_t state = ncclInProgress;
      const ncclResult_t r = ncclCommGetAsyncError(comm, &state);
      if (r != ncclSuccess) return NcclError(r, "ncclCommGetAsyncError", comm, where);
      if (state == ncclSuccess) return Status::Ok();
      if (state != ncclInProgress) return NcclError(state, Describe(op, n, call), comm, where);
      if (Clock::now() >= deadline)
        return Unavailable(Describe(op, n, call) + " did not complete within " + Milliseconds(timeout) + " on " +
                           where + " (a peer that never joined or stopped answering?)");
      Pause(spins);
    }
  }

  // Records the first failure, aborts the communicator (which also ends its kernels
  // that wait for a dead peer) and returns the failure.
  Status Fail(Status s) {
    if (broken.ok()) broken = std::move(s);
    Abort();
    return broken;
  }

  void Abort() {
    if (comm == nullptr) return;
    ScopedDevice scoped;
    (void)scoped.Enter(device);
    (void)ncclCommAbort(comm);
    comm = nullptr;
  }

  // Enqueues one NCCL collective (`enqueue` returns its ncclResult_t) and waits for the
  // enqueue (not for the GPU).
  template <typename Enqueue>
  Status Run(const char* op, size_t n, const char* call, Enqueue&& enqueue) {
    ScopedDevice scoped;
    if (Status s = scoped.Enter(device); !s.ok()) return Fail(s.WithContext(Describe(op, n, call) + " on " + where));
    const ncclResult_t r = enqueue(comm);
    if (r != ncclSuccess && r != ncclInProgress) return Fail(NcclError(r, Describe(op, n, call), comm, where));
    if (Status s = WaitForNccl(op, n, call, Clock::now() + timeout); !s.ok()) return Fail(std::move(s));
    return Status::Ok();
  }
};

Result<std::unique_ptr<DeviceCommunicator>> NcclCommunicator::Create(int rank, int world, int device, KvStore& store,
                                                                     const std::string& prefix, cudaStream_t stream,
                                                                     std::chrono::milliseconds timeout) {
  if (world < 1) return InvalidArgument("tensor parallel world size must be >= 1, got " + std::to_string(world));
  if (rank < 0 || rank >= world)
    return InvalidArgument("rank " + std::to_string(rank) + " is outside a group of " + std::to_string(world));
  if (timeout.count() <= 0) return InvalidArgument("communicator timeout must be positive");
  if (device < 0) return InvalidArgument("CUDA device index must be >= 0, got " + std::to_string(device));
  const int n_devices = cuda::DeviceCount();
  if (n_devices == 0)
    return Unavailable("no CUDA device is visible to this process; the NCCL communicator needs one GPU per rank");
  if (device >= n_devices)
    return InvalidArgument("CUDA device " + std::to_string(device) + " does not exist; this process sees " +
                           std::to_string(n_devices));

  const Clock::time_point deadline = Clock::now() + timeout;
  const std::string group = "NCCL rendezvous of rank " + std::to_string(rank) + "/" + std::to_string(world) +
                            " (group '" + prefix + "', CUDA device " + std::to_string(device) + ")";
  ScopedDevice scoped;  // declared before impl: impl's device memory is freed on `device`
  FLOVER_RETURN_IF_ERROR(scoped.Enter(device));
  auto impl = std::make_unique<Impl>();
  impl->timeout = timeout;
  impl->device = device;
  impl->where = "tensor-parallel rank " + std::to_string(rank) + "/" + std::to_string(world) + " (CUDA device " +
                std::to_string(device) + ")";
  FLOVER_ASSIGN_OR_RETURN(impl->scratch, cuda::DeviceBuffer::Allocate(sizeof(float)));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemset(impl->scratch.data(), 0, sizeof(float)));

  // Rank 0 makes the id (its bootstrap root listens from now on); the others fetch it.
  ncclUniqueId id{};
  const std::string key = prefix + kUniqueIdKey;
  if (rank == 0) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) return NcclError(r, "ncclGetUniqueId", nullptr, impl->where).WithContext(group);
    const Status s = store.Set(key, std::vector<char>(id.internal, id.internal + NCCL_UNIQUE_ID_BYTES));
    if (!s.ok()) return s.WithContext(group);
  } else {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    Result<std::vector<char>> value = store.Get(key, std::max(left, std::chrono::milliseconds(1)));
    if (!value.ok()) return Unavailable(group + ": " + value.status().message());
    if (value->size() != NCCL_UNIQUE_ID_BYTES)
      return Corruption(group + ": '" + key + "' holds " + std::to_string(value->size()) + " bytes, not an " +
                        std::to_string(NCCL_UNIQUE_ID_BYTES) + "-byte ncclUniqueId");
    std::copy(value->begin(), value->end(), id.internal);
  }

  // Non-blocking: the call returns at once and NCCL joins the group in the background,
  // so a missing peer is a timeout here, not a hang.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const ncclResult_t r = ncclCommInitRankConfig(&impl->comm, world, id, rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    Status s = NcclError(r, "ncclCommInitRankConfig", impl->comm, impl->where);
    impl->Abort();
    return s.WithContext(group);
  }
  if (Status s = impl->WaitForNccl("ncclCommInitRankConfig", 0, nullptr, deadline); !s.ok()) {
    impl->Abort();
    return s.WithContext(group);
  }
  return std::unique_ptr<DeviceCommunicator>(new NcclCommunicator(rank, world, device, stream, std::move(impl)));
}

NcclCommunicator::NcclCommunicator(int rank, int world, int device, cudaStream_t stream, std::unique_ptr<Impl> impl)
    : rank_(rank), world_(world), device_(device), stream_(stream), impl_(std::move(impl)) {}

NcclCommunicator::~NcclCommunicator() {
  if (!impl_) return;
  ScopedDevice scoped;
  (void)scoped.Enter(device_);
  if (impl_->comm != nullptr) {
    // Finalize flushes this rank's outstanding work and waits for the peers; destroy
    // then frees what is local. A peer that does not finalize in time: abort.
    const ncclResult_t r = ncclCommFinalize(impl_->comm);
    const bool finalized = (r == ncclSuccess || r == ncclInProgress) &&
                           impl_->WaitForNccl("ncclCommFinalize", 0, nullptr, Clock::now() + impl_->timeout).ok();
    if (finalized) {
      (void)ncclCommDestroy(impl_->comm);
      impl_->comm = nullptr;
    } else {
      impl_->Abort();
    }
  }
  impl_->scratch = cuda::DeviceBuffer();  // freed while its device is current
}

Status NcclCommunicator::AllReduceSum(float* data, size_t n) {
  if (!impl_->broken.ok()) return impl_->broken;
  if (n == 0) return Status::Ok();
  if (data == nullptr)
    return impl_->Fail(InvalidArgument(Describe("all-reduce", n, nullptr) + " on " + impl_->where + ": data is null"));
  return impl_->Run("all-reduce", n, "ncclAllReduce", [&](ncclComm_t comm) {
    return ncclAllReduce(data, data, n, ncclFloat32, ncclSum, comm, stream_);
  });
}

Status NcclCommunicator::AllGather(const float* in, size_t n, float* out) {
  if (!impl_->broken.ok()) return impl_->broken;
  if (n == 0) return Status::Ok();
  if (in == nullptr || out == nullptr)
    return impl_->Fail(InvalidArgument(Describe("all-gather", n, nullptr) + " on " + impl_->where + ": " +
                                       (in == nullptr ? "in" : "out") + " is null"));
  return impl_->Run("all-gather", n, "ncclAllGather", [&](ncclComm_t comm) {
    return ncclAllGather(in, out, n, ncclFloat32, comm, stream_);
  });
}

Status NcclCommunicator::Barrier() {
  if (!impl_->broken.ok()) return impl_->broken;
  FLOVER_RETURN_IF_ERROR(impl_->Run("barrier", 0, "ncclAllReduce of 1 float", [&](ncclComm_t comm) {
    float* one = impl_->scratch.as<float>();
    return ncclAllReduce(one, one, 1, ncclFloat32, ncclSum, comm, stream_);
  }));
  return Synchronize();
}

Status NcclCommunicator::Synchronize() {
  if (!impl_->broken.ok()) return impl_->broken;
  ScopedDevice scoped;
  if (Status s = scoped.Enter(device_); !s.ok()) return impl_->Fail(s.WithContext("synchronize on " + impl_->where));
  const Clock::time_point deadline = Clock::now() + impl_->timeout;
  for (int spins = 0;; ++spins) {
    const cudaError_t e = cudaStreamQuery(stream_);
    if (e != cudaSuccess && e != cudaErrorNotReady)
      return impl_->Fail(cuda::CudaError(e, "cudaStreamQuery(stream)", __FILE__, __LINE__)
                             .WithContext("synchronize on " + impl_->where));
    // Asynchronous NCCL errors (a peer that failed) whether or not the stream is done.
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(impl_->comm, &state);
    if (r != ncclSuccess) return impl_->Fail(NcclError(r, "ncclCommGetAsyncError", impl_->comm, impl_->where));
    if (state != ncclSuccess && state != ncclInProgress)
      return impl_->Fail(NcclError(state, "synchronize (asynchronous NCCL error)", impl_->comm, impl_->where));
    if (e == cudaSuccess) return Status::Ok();
    if (Clock::now() >= deadline)
      return impl_->Fail(Unavailable("synchronize on " + impl_->where + ": the stream did not finish within " +
                                     Milliseconds(impl_->timeout) +
                                     " (a collective waiting for a peer that died or never called it?)"));
    Pause(spins);
  }
}

}  // namespace flover
