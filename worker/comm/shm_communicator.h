// ShmCommunicator: a HostCommunicator over one POSIX shared-memory segment, for the ranks of
// a CPU tensor-parallel group that run on one host. A decode step's collectives are a
// few KiB; over Gloo's TCP transport on loopback each costs ~100 us of socket and
// thread wake-ups, here a few microseconds (comm_bench measures both).
//
// Layout: a header, one cache line of state per rank (its round counter, a sleeper
// count, its pid) and two data buffers per rank. A collective is one or more rounds of
// at most `chunk_floats` floats: a rank copies its chunk into its buffer of the round's
// parity, publishes the round number and waits until every peer has published it, then
// reads every rank's buffer (all-reduce: sums in rank order, bit-identical on every rank
// and to GlooCommunicator's direct path; all-gather: copies). A peer can only start
// round r+2, which reuses the parity of round r, after this rank has published r+1,
// that is after it finished reading round r: one synchronisation per round suffices.
// Waiting spins briefly, then sleeps on a futex on the peer's round counter.
//
// Create() rendezvouses through a KvStore under `<prefix>/shm/`: every rank publishes
// its host identity (boot id, and the device and inode of /dev/shm); when all agree,
// rank 0 creates the segment (random name, reserved with posix_fallocate so a full
// /dev/shm fails here, not with SIGBUS later) and publishes its name; every rank maps
// it, checks a nonce, and publishes whether that worked. Rank 0 unlinks the name once every rank has
// answered, so nothing is left in /dev/shm. The outcome is the same on every rank:
// FailedPrecondition (with the reason) when the ranks cannot share memory — they are
// on different hosts or containers — so a caller can fall back to TCP together
// (cpu_communicator.h); Unavailable when a rank does not show up within the timeout.
//
// Failures: every wait is bounded by `timeout`; a peer whose process has exited (checked
// by pid while waiting, when both share a pid namespace) fails the wait at once. The
// first failure is written into the segment, so every other rank's next wait fails too,
// and the communicator stays broken (communicator.h).
//
// Thread-safety: not thread-safe (one thread per communicator). Distinct communicators
// may be used from distinct threads of one process.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "worker/comm/communicator.h"
#include "worker/comm/kv_store.h"

namespace flover {

struct ShmCommunicatorOptions {
  // Bound of every wait: the rendezvous and each collective.
  std::chrono::milliseconds timeout{30000};
  // Floats per rank and round; larger collectives take several rounds. The segment
  // holds 2 * world * chunk_floats floats.
  size_t chunk_floats = size_t{1} << 18;
  // How long a waiting rank polls before it sleeps on a futex.
  std::chrono::microseconds spin{50};
};

class ShmCommunicator final : public HostCommunicator {
 public:
  // Joins the group `prefix` as `rank` of `world` (see above). InvalidArgument for a bad
  // rank, world or option; FailedPrecondition when the ranks cannot share a segment (on
  // every rank alike); Unavailable when a rank is missing at the timeout.
  static Result<std::unique_ptr<HostCommunicator>> Create(int rank, int world, KvStore& store,
                                                          const std::string& prefix,
                                                          const ShmCommunicatorOptions& options = {});

  ~ShmCommunicator() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  Status AllReduceSum(float* data, size_t n) override;
  Status AllGather(const float* in, size_t n, float* out) override;
  Status Barrier() override;

 private:
  struct Segment;

  ShmCommunicator(int rank, int world, const ShmCommunicatorOptions& options, std::unique_ptr<Segment> segment);

  // One round: publishes `round_ + 1` (after the caller filled this rank's buffer of
  // that parity) and waits for every peer to publish it.
  Status Round(const char* op, size_t n);
  float* Buffer(int rank, uint32_t round) const;
  Status Fail(Status status);

  const int rank_;
  const int world_;
  const ShmCommunicatorOptions options_;
  std::unique_ptr<Segment> segment_;
  uint32_t round_ = 0;  // the last round this rank published
  Status broken_;       // OK until the first failure, then that failure forever
};

}  // namespace flover
