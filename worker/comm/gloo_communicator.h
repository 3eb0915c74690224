// GlooCommunicator: a HostCommunicator over Gloo's TCP transport, for CPU tensor
// parallelism (one process or thread per rank, on one host or several).
//
// Create() rendezvouses through a KvStore: every rank binds a TCP device to
// `bind_host`, publishes its pair addresses under `<prefix>/<rank>` and connects to
// every other rank (full mesh). All ranks of one group pass the same prefix; a new
// group (after a failure) needs a new prefix.
//
// Collectives: each rank sends its buffer straight to every peer and reduces the
// received buffers in rank order (one message round, the lowest latency for the small
// tensors of a decode step; results bit-identical on every rank). Large all-reduces in
// groups of more than two use Gloo's ring all-reduce, which moves less data. Scratch
// buffers are kept and grown on demand, so steady-state calls do not allocate.
//
// Every wait is bounded by `timeout`: a peer that never shows up or stops answering
// gives Unavailable, never a hang. Gloo's exceptions are caught here and become
// Statuses; after a failure the communicator stays broken (see communicator.h).
//
// Thread-safety: not thread-safe (one thread per communicator). Distinct communicators
// may be used from distinct threads of one process.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "worker/comm/communicator.h"
#include "worker/comm/kv_store.h"

namespace flover {

class GlooCommunicator final : public HostCommunicator {
 public:
  static constexpr std::chrono::milliseconds kDefaultTimeout{30000};

  // Joins the group `prefix` as `rank` of `world`, blocking until every rank has joined
  // (or `timeout` passes: Unavailable). InvalidArgument for a bad rank/world.
  // `store` is only used during Create.
  static Result<std::unique_ptr<HostCommunicator>> Create(int rank, int world, KvStore& store,
                                                          const std::string& prefix,
                                                          const std::string& bind_host = "127.0.0.1",
                                                          std::chrono::milliseconds timeout = kDefaultTimeout);

  ~GlooCommunicator() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  Status AllReduceSum(float* data, size_t n) override;
  Status AllGather(const float* in, size_t n, float* out) override;
  Status Barrier() override;

 private:
  struct Impl;  // Gloo objects; keeps Gloo's headers out of this one
  GlooCommunicator(int rank, int world, std::unique_ptr<Impl> impl);

  // Constant after construction.
  const int rank_;
  const int world_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flover
