// Communicator: the collectives that the ranks of one tensor-parallel group run
// together (Megatron-style tensor parallelism needs an all-reduce after the row-split
// GEMMs and an all-gather of the vocabulary-split logits).
//
// Every rank of the group calls the same collectives, in the same order, with the same
// sizes; a collective returns when this rank's part is done. The results are bit-
// identical on every rank (each rank reduces in the same order), so replicated state
// derived from them (the residual stream, the logits) stays identical across ranks.
//
// Errors (a peer that died or stopped answering within the timeout) are Statuses,
// never exceptions; after one, the communicator is broken and every later call fails
// with the same error: the group must be rebuilt.
//
// Implementations: LocalCommunicator (world 1, here), GlooCommunicator (CPU, TCP;
// gloo_communicator.h). The decoder only sees this interface, so flover_engine does not
// depend on any transport library.
//
// Thread-safety: not thread-safe; one thread drives a communicator.
#pragma once

#include <cstddef>

#include "common/status.h"

namespace flover {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;        // 0 <= rank() < world_size()
  virtual int world_size() const = 0;

  // data[i] = sum over ranks of data[i], in place. data: [n].
  virtual Status AllReduceSum(float* data, size_t n) = 0;

  // out = concatenation of every rank's `in`, rank-major. in: [n], out: [world_size * n].
  // REQUIRES: in and out do not overlap.
  virtual Status AllGather(const float* in, size_t n, float* out) = 0;

  // Returns once every rank has entered Barrier.
  virtual Status Barrier() = 0;
};

// OK when `comm` can serve rank `rank` of a group of `world`: any (even null) for a group
// of one, else non-null with that rank and size. InvalidArgument naming both otherwise.
Status CheckCommunicator(const Communicator* comm, int rank, int world);

// The group of one: AllReduceSum is a no-op, AllGather a copy.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  Status AllReduceSum(float* data, size_t n) override;
  Status AllGather(const float* in, size_t n, float* out) override;
  Status Barrier() override;
};

}  // namespace flover
