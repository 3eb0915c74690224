// RunRanks: runs one function per rank of an in-process tensor-parallel group, each on
// its own thread, with one InMemoryKvStore and a fresh group prefix for the ranks to
// meet through (CreateBackend's BackendGroup). RunGroup: the same, each rank with its
// own communicator made here (`transport`: kTcp = GlooCommunicator over loopback,
// kShm = ShmCommunicator; see cpu_communicator.h). Both return when every rank's
// function has returned.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "worker/comm/cpu_communicator.h"
#include "worker/comm/kv_store.h"

namespace flover::testing {

inline std::string NewGroupName() {
  static std::atomic<int> counter{0};
  return "group" + std::to_string(counter++);
}

// fn(int rank, KvStore& store, const std::string& prefix) runs on rank's thread; gtest
// assertions work there.
template <typename Fn>
void RunRanks(int world, Fn fn) {
  InMemoryKvStore store;
  const std::string prefix = NewGroupName();
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) threads.emplace_back([&, rank] { fn(rank, store, prefix); });
  for (std::thread& t : threads) t.join();
}

// fn(int rank, HostCommunicator& comm) runs on rank's thread; gtest assertions work there.
template <typename Fn>
void RunGroup(int world, Fn fn, std::chrono::milliseconds timeout = std::chrono::seconds(20),
              CpuTransport transport = CpuTransport::kTcp) {
  RunRanks(world, [&](int rank, KvStore& store, const std::string& prefix) {
    Result<CpuCommunicator> comm =
        CreateCpuCommunicator(rank, world, store, prefix, {.transport = transport, .timeout = timeout});
    ASSERT_TRUE(comm.ok()) << comm.status().ToString();
    ASSERT_EQ(comm->transport, transport);
    fn(rank, *comm->comm);
  });
}

}  // namespace flover::testing
