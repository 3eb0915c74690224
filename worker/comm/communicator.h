// Communicators: the collectives that the ranks of one tensor-parallel group run
// together (Megatron-style tensor parallelism needs an all-reduce after the row-split
// GEMMs and an all-gather of the vocabulary-split logits).
//
// Two kinds, by where their data lives, so that each backend takes only the kind that
// fits its memory (checked by the compiler, no casts):
//   HostCommunicator    pointers to host memory; a collective returns when this rank's
//                       part is done. LocalCommunicator (world 1, here),
//                       ShmCommunicator (shared memory), GlooCommunicator (TCP). The
//                       CPU decoder takes one.
//   DeviceCommunicator  pointers to CUDA device memory; collectives are enqueued on a
//                       stream (device_communicator.h, CUDA builds). NcclCommunicator.
//                       The CUDA decoder takes one.
// Communicator is what both share: the group, and Barrier.
//
// Every rank of the group calls the same collectives, in the same order, with the same
// sizes. The results are bit-identical on every rank (each rank reduces in the same
// order), so replicated state derived from them (the residual stream, the logits) stays
// identical across ranks.
//
// Errors (a peer that died or stopped answering within the timeout) are Statuses,
// never exceptions; after one, the communicator is broken and every later call fails
// with the same error: the group must be rebuilt.
//
// The decoders only see these interfaces, so flover_engine does not depend on any
// transport library.
//
// Thread-safety: not thread-safe; one thread drives a communicator.
#pragma once

#include <cstddef>

#include "common/status.h"

namespace flover {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;  // 0 <= rank() < world_size()
  virtual int world_size() const = 0;

  // Returns once every rank has entered Barrier (and, for a device communicator, its
  // stream's work so far has finished).
  virtual Status Barrier() = 0;
};

class HostCommunicator : public Communicator {
 public:
  // data[i] = sum over ranks of data[i], in place. data: host [n].
  virtual Status AllReduceSum(float* data, size_t n) = 0;

  // out = concatenation of every rank's `in`, rank-major. in: host [n], out: host
  // [world_size * n]. REQUIRES: in and out do not overlap.
  virtual Status AllGather(const float* in, size_t n, float* out) = 0;
};

// OK when `comm` can serve rank `rank` of a group of `world`: any (even null) for a group
// of one, else non-null with that rank and size. InvalidArgument naming both otherwise.
Status CheckCommunicator(const Communicator* comm, int rank, int world);

// The group of one: AllReduceSum is a no-op, AllGather a copy.
class LocalCommunicator final : public HostCommunicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  Status AllReduceSum(float* data, size_t n) override;
  Status AllGather(const float* in, size_t n, float* out) override;
  Status Barrier() override;
};

}  // namespace flover
