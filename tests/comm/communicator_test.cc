// The CPU communicators between threads of one process, each test over both transports
// (GlooCommunicator: TCP over loopback; ShmCommunicator: one shared segment), and
// LocalCommunicator. The multi-process cases are in communicator_process_test.cc; what
// only shared memory has (rounds, the rendezvous verdict, auto) in
// shm_communicator_test.cc.
#include "worker/comm/cpu_communicator.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "tests/comm/tp_group.h"
#include "tests/test_random.h"

namespace flover {
namespace {

using std::chrono::milliseconds;
using testing::RunGroup;

TEST(LocalCommunicatorTest, IsAGroupOfOne) {
  LocalCommunicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.world_size(), 1);
  std::vector<float> data = {1.5f, -2.0f};
  ASSERT_TRUE(comm.AllReduceSum(data.data(), data.size()).ok());
  EXPECT_EQ(data, (std::vector<float>{1.5f, -2.0f}));
  std::vector<float> out(2);
  ASSERT_TRUE(comm.AllGather(data.data(), data.size(), out.data()).ok());
  EXPECT_EQ(out, data);
  EXPECT_TRUE(comm.Barrier().ok());
}

// Rank r's value i is an integer, so every sum is exact whatever the order.
float Value(int rank, size_t i) { return static_cast<float>((rank + 1) * 1000 + static_cast<int>(i % 997)); }

class CommunicatorTest : public ::testing::TestWithParam<CpuTransport> {
 protected:
  CpuTransport transport() const { return GetParam(); }
  Result<CpuCommunicator> Create(int rank, int world, KvStore& store, const std::string& prefix,
                                 milliseconds timeout = milliseconds(20000)) const {
    return CreateCpuCommunicator(rank, world, store, prefix, {.transport = transport(), .timeout = timeout});
  }
};

void ExpectExactCollectives(int world, CpuTransport transport) {
  // Sizes: one float, a decode step of a 768-wide model, and one over the direct-path
  // limit (Gloo's ring all-reduce when world > 2); then small again (no shrinking).
  const std::vector<size_t> sizes = {1, 768, 100000, 5};
  RunGroup(
      world,
      [&](int rank, HostCommunicator& comm) {
    EXPECT_EQ(comm.rank(), rank);
    EXPECT_EQ(comm.world_size(), world);
    for (size_t n : sizes) {
      std::vector<float> data(n);
      for (size_t i = 0; i < n; ++i) data[i] = Value(rank, i);
      Status s = comm.AllReduceSum(data.data(), n);
      ASSERT_TRUE(s.ok()) << s.ToString();
      for (size_t i = 0; i < n; ++i) {
        float expected = 0.0f;
        for (int r = 0; r < world; ++r) expected += Value(r, i);
        ASSERT_EQ(data[i], expected) << "n=" << n << " i=" << i << " rank " << rank;
      }

      std::vector<float> in(n), out(n * world, -1.0f);
      for (size_t i = 0; i < n; ++i) in[i] = Value(rank, i) + 0.25f;
      s = comm.AllGather(in.data(), n, out.data());
      ASSERT_TRUE(s.ok()) << s.ToString();
      for (int r = 0; r < world; ++r)
        for (size_t i = 0; i < n; ++i)
          ASSERT_EQ(out[r * n + i], Value(r, i) + 0.25f) << "n=" << n << " from rank " << r << " on rank " << rank;
      ASSERT_TRUE(comm.Barrier().ok());
    }
      },
      std::chrono::seconds(20), transport);
}

TEST_P(CommunicatorTest, TwoRanksAllReduceAndAllGatherExactly) { ExpectExactCollectives(2, transport()); }
TEST_P(CommunicatorTest, ThreeRanksAllReduceAndAllGatherExactly) { ExpectExactCollectives(3, transport()); }
TEST_P(CommunicatorTest, FourRanksAllReduceAndAllGatherExactly) { ExpectExactCollectives(4, transport()); }

// With arbitrary floats the sum depends on the order of additions; every rank must
// still get the same bits (replicated state stays identical across ranks).
TEST_P(CommunicatorTest, AllReduceIsBitIdenticalOnEveryRank) {
  constexpr int kWorld = 3;
  for (size_t n : {size_t{768}, size_t{200000}}) {
    std::vector<std::vector<float>> results(kWorld);
    RunGroup(
        kWorld,
        [&](int rank, HostCommunicator& comm) {
          std::vector<float> data = testing::RandomFloats(n, 1234 + rank);
          ASSERT_TRUE(comm.AllReduceSum(data.data(), n).ok());
          results[rank] = std::move(data);
        },
        std::chrono::seconds(20), transport());
    for (int r = 1; r < kWorld; ++r) {
      ASSERT_EQ(results[r].size(), n);
      EXPECT_EQ(std::memcmp(results[r].data(), results[0].data(), n * sizeof(float)), 0) << "n=" << n << " rank " << r;
    }
  }
}

TEST_P(CommunicatorTest, RejectsBadRankOrWorld) {
  InMemoryKvStore store;
  EXPECT_EQ(Create(2, 2, store, "bad").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Create(-1, 2, store, "bad").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Create(0, 0, store, "bad").status().code(), StatusCode::kInvalidArgument);
}

TEST_P(CommunicatorTest, GroupOfOneNeedsNoPeer) {
  InMemoryKvStore store;
  Result<CpuCommunicator> created = Create(0, 1, store, testing::NewGroupName());
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  HostCommunicator& comm = *created->comm;
  std::vector<float> data = {3.0f}, out(1);
  EXPECT_TRUE(comm.AllReduceSum(data.data(), 1).ok());
  EXPECT_EQ(data[0], 3.0f);
  EXPECT_TRUE(comm.AllGather(data.data(), 1, out.data()).ok());
  EXPECT_EQ(out[0], 3.0f);
  EXPECT_TRUE(comm.Barrier().ok());
}

TEST_P(CommunicatorTest, PeerThatNeverShowsUpTimesOut) {
  InMemoryKvStore store;
  Result<CpuCommunicator> comm = Create(0, 2, store, testing::NewGroupName(), milliseconds(300));
  ASSERT_FALSE(comm.ok());
  EXPECT_EQ(comm.status().code(), StatusCode::kUnavailable) << comm.status().ToString();
  EXPECT_TRUE(comm.status().message().find("rank 0/2") != std::string::npos ||
              comm.status().message().find("rank 0:") != std::string::npos)
      << comm.status().ToString();
}

// Rank 1 joins, then leaves (its communicator is destroyed) before the collective:
// rank 0 gets Unavailable (at the latest at its timeout), and stays broken.
TEST_P(CommunicatorTest, PeerThatLeavesGivesUnavailableNotAHang) {
  InMemoryKvStore store;
  const std::string prefix = testing::NewGroupName();
  std::mutex mu;
  std::unique_ptr<HostCommunicator> rank1;
  std::thread peer([&] {
    Result<CpuCommunicator> c = Create(1, 2, store, prefix);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    std::lock_guard<std::mutex> lock(mu);
    rank1 = std::move(c->comm);
  });
  Result<CpuCommunicator> rank0 = Create(0, 2, store, prefix);
  peer.join();
  ASSERT_TRUE(rank0.ok()) << rank0.status().ToString();
  rank1.reset();  // closes rank 1's connections, or marks it gone in the segment

  std::vector<float> data(768, 1.0f);
  Status s = rank0->comm->AllReduceSum(data.data(), data.size());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("all-reduce of 768 floats"), std::string::npos) << s.ToString();
  // Broken for good: later calls fail at once with the same error.
  Status again = rank0->comm->AllGather(data.data(), 1, data.data() + 1);
  EXPECT_EQ(again.code(), StatusCode::kUnavailable);
  EXPECT_EQ(again.message(), s.message());
}

INSTANTIATE_TEST_SUITE_P(Transports, CommunicatorTest, ::testing::Values(CpuTransport::kTcp, CpuTransport::kShm),
                         [](const ::testing::TestParamInfo<CpuTransport>& info) {
                           return std::string(CpuTransportName(info.param));
                         });

}  // namespace
}  // namespace flover
