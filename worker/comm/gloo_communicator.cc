#include "worker/comm/gloo_communicator.h"

#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>
#include <gloo/types.h>

#include <signal.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <optional>
#include <vector>

namespace flover {
namespace {

// Slot prefix of our own collectives; Gloo's built-in ones use 0x01..0x08.
constexpr uint8_t kSlotPrefix = 0x46;
constexpr uint32_t kAllReduceTag = 1;
constexpr uint32_t kAllGatherTag = 2;
constexpr uint32_t kRingTag = 3;
constexpr uint32_t kBarrierTag = 4;
// In groups of more than two ranks, all-reduces above this size take Gloo's ring
// algorithm (2(w-1)/w of the data per rank instead of (w-1)).
constexpr size_t kDirectAllReduceMaxBytes = size_t{256} << 10;

// gloo::rendezvous::Store over a flover KvStore, keys under `prefix/`. Gloo expects
// failures as exceptions; they are caught again in Create.
class StoreAdapter final : public gloo::rendezvous::Store {
 public:
  StoreAdapter(KvStore& store, std::string prefix, std::chrono::milliseconds timeout)
      : store_(store), prefix_(std::move(prefix)), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    const Status s = store_.Set(prefix_ + key, data);
    if (!s.ok()) throw gloo::IoException("rendezvous store: " + s.ToString());
  }

  std::vector<char> get(const std::string& key) override {
    Result<std::vector<char>> value = store_.Get(prefix_ + key, timeout_);
    if (!value.ok()) throw gloo::IoException("rendezvous store: " + value.status().ToString());
    return std::move(value).value();
  }

  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }

  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + std::min(timeout, timeout_);
    for (const std::string& key : keys) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      Result<std::vector<char>> value = store_.Get(prefix_ + key, std::max(left, std::chrono::milliseconds(0)));
      if (!value.ok()) throw gloo::IoException("rendezvous store: " + value.status().ToString());
    }
  }

 private:
  KvStore& store_;
  const std::string prefix_;
  const std::chrono::milliseconds timeout_;
};

// Gloo's TCP pairs write with writev(), which raises SIGPIPE when the peer has gone: its
// default action would kill this process instead of letting the collective fail with
// Unavailable. Ignore it, unless the program installed its own handler.
void IgnoreSigpipe() {
  struct sigaction current{};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) ::signal(SIGPIPE, SIG_IGN);
}

// Runs `body`; returns what Gloo threw (gloo::Exception, gloo::IoException and
// gloo::EnforceNotMet all derive from std::exception), or nullopt.
template <typename Body>
std::optional<std::string> RunGloo(Body&& body) {
  try {
    body();
    return std::nullopt;
  } catch (const std::exception& e) {
    return std::string(e.what());
  }
}

}  // namespace

struct GlooCommunicator::Impl {
  std::shared_ptr<gloo::transport::Device> device;
  std::shared_ptr<gloo::rendezvous::Context> context;
  std::chrono::milliseconds timeout{0};
  Status broken;  // OK until the first failure, then that failure forever

  // Scratch of the direct collectives, grown on demand; each UnboundBuffer wraps the
  // vector beside it and is recreated when that vector moves.
  std::vector<float> send;  // [capacity]
  std::vector<float> recv;  // [world * capacity]: rank p's contribution at p * n
  std::unique_ptr<gloo::transport::UnboundBuffer> send_buffer, recv_buffer;

  void EnsureCapacity(size_t n, int world) {
    if (send.size() >= n) return;
    const size_t capacity = std::max(n, 2 * send.size());
    send_buffer.reset();
    recv_buffer.reset();
    send.assign(capacity, 0.0f);
    recv.assign(capacity * world, 0.0f);
    send_buffer = context->createUnboundBuffer(send.data(), send.size() * sizeof(float));
    recv_buffer = context->createUnboundBuffer(recv.data(), recv.size() * sizeof(float));
  }

  // OK when `error` is empty; otherwise breaks the communicator for good with it.
  Status Check(const std::optional<std::string>& error, const char* op, size_t n, int rank, int world) {
    if (!error) return Status::Ok();
    std::string message = std::string(op);
    if (n > 0) message += " of " + std::to_string(n) + " floats";
    broken = Unavailable(message + " on tensor-parallel rank " + std::to_string(rank) + "/" + std::to_string(world) +
                         " failed: " + *error);
    return broken;
  }

  // Sends send[0, n) to every peer and receives each peer p's into recv[p*n, (p+1)*n).
  void Exchange(size_t n, int rank, int world, uint32_t tag) {
    const uint64_t slot = gloo::Slot::build(kSlotPrefix, tag);
    const size_t bytes = n * sizeof(float);
    for (int p = 0; p < world; ++p)
      if (p != rank) recv_buffer->recv(p, slot, p * bytes, bytes);
    for (int p = 0; p < world; ++p)
      if (p != rank) send_buffer->send(p, slot, 0, bytes);
    for (int p = 0; p < world; ++p) {
      if (p == rank) continue;
      if (!recv_buffer->waitRecv(timeout)) throw gloo::IoException("receive aborted");
    }
    for (int p = 0; p < world; ++p) {
      if (p == rank) continue;
      if (!send_buffer->waitSend(timeout)) throw gloo::IoException("send aborted");
    }
  }
};

Result<std::unique_ptr<HostCommunicator>> GlooCommunicator::Create(int rank, int world, KvStore& store,
                                                                   const std::string& prefix,
                                                                   const std::string& bind_host,
                                                                   std::chrono::milliseconds timeout) {
  if (world < 1) return InvalidArgument("tensor parallel world size must be >= 1, got " + std::to_string(world));
  if (rank < 0 || rank >= world)
    return InvalidArgument("rank " + std::to_string(rank) + " is outside a group of " + std::to_string(world));
  if (timeout.count() <= 0) return InvalidArgument("communicator timeout must be positive");
  IgnoreSigpipe();
  auto impl = std::make_unique<Impl>();
  impl->timeout = timeout;
  const std::optional<std::string> error = RunGloo([&] {
    gloo::transport::tcp::attr attr;
    attr.hostname = bind_host;
    impl->device = gloo::transport::tcp::CreateDevice(attr);
    impl->context = std::make_shared<gloo::rendezvous::Context>(rank, world);
    impl->context->setTimeout(timeout);
    StoreAdapter adapter(store, prefix + "/", timeout);
    impl->context->connectFullMesh(adapter, impl->device);
    impl->EnsureCapacity(1024, world);
  });
  if (error)
    return Unavailable("gloo rendezvous of rank " + std::to_string(rank) + "/" + std::to_string(world) + " (group '" +
                       prefix + "', host " + bind_host + "): " + *error);
  return std::unique_ptr<HostCommunicator>(new GlooCommunicator(rank, world, std::move(impl)));
}

GlooCommunicator::GlooCommunicator(int rank, int world, std::unique_ptr<Impl> impl)
    : rank_(rank), world_(world), impl_(std::move(impl)) {}

GlooCommunicator::~GlooCommunicator() {
  if (!impl_) return;
  // Buffers before the context that made them, the context before its device.
  impl_->send_buffer.reset();
  impl_->recv_buffer.reset();
  impl_->context.reset();
  impl_->device.reset();
}

Status GlooCommunicator::AllReduceSum(float* data, size_t n) {
  if (!impl_->broken.ok()) return impl_->broken;
  if (world_ == 1 || n == 0) return Status::Ok();
  const std::optional<std::string> error = RunGloo([&] {
    if (world_ > 2 && n * sizeof(float) > kDirectAllReduceMaxBytes) {
      gloo::AllreduceOptions opts(impl_->context);
      opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
      opts.setOutput(data, n);
      opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
      opts.setTag(kRingTag);
      opts.setTimeout(impl_->timeout);
      gloo::allreduce(opts);
      return;
    }
    impl_->EnsureCapacity(n, world_);
    std::memcpy(impl_->send.data(), data, n * sizeof(float));
    impl_->Exchange(n, rank_, world_, kAllReduceTag);
    // Own contribution into its slot, then the same rank-order sum on every rank.
    float* recv = impl_->recv.data();
    std::memcpy(recv + rank_ * n, data, n * sizeof(float));
    std::memcpy(data, recv, n * sizeof(float));
    for (int p = 1; p < world_; ++p) {
      const float* part = recv + p * n;
      for (size_t i = 0; i < n; ++i) data[i] += part[i];
    }
  });
  return impl_->Check(error, "all-reduce", n, rank_, world_);
}

Status GlooCommunicator::AllGather(const float* in, size_t n, float* out) {
  if (!impl_->broken.ok()) return impl_->broken;
  if (n == 0) return Status::Ok();
  if (world_ == 1) {
    std::memcpy(out, in, n * sizeof(float));
    return Status::Ok();
  }
  const std::optional<std::string> error = RunGloo([&] {
    impl_->EnsureCapacity(n, world_);
    std::memcpy(impl_->send.data(), in, n * sizeof(float));
    impl_->Exchange(n, rank_, world_, kAllGatherTag);
    for (int p = 0; p < world_; ++p)
      std::memcpy(out + p * n, p == rank_ ? in : impl_->recv.data() + p * n, n * sizeof(float));
  });
  return impl_->Check(error, "all-gather", n, rank_, world_);
}

Status GlooCommunicator::Barrier() {
  if (!impl_->broken.ok()) return impl_->broken;
  if (world_ == 1) return Status::Ok();
  const std::optional<std::string> error = RunGloo([&] {
    gloo::BarrierOptions opts(impl_->context);
    opts.setTag(kBarrierTag);
    opts.setTimeout(impl_->timeout);
    gloo::barrier(opts);
  });
  return impl_->Check(error, "barrier", 0, rank_, world_);
}

}  // namespace flover
