// What only the shared-memory communicator has: collectives split into rounds, many
// rounds reusing the two buffers of each rank, the rendezvous verdict that every rank
// shares (and with it `auto` falling back to TCP together), results bit-identical to
// Gloo's, and nothing left behind in /dev/shm. The collectives common to both transports
// are tested in communicator_test.cc.
#include "worker/comm/shm_communicator.h"

#include <dirent.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/comm/tp_group.h"
#include "tests/test_random.h"
#include "worker/comm/cpu_communicator.h"

namespace flover {
namespace {

using std::chrono::milliseconds;

// fn(rank, comm) on one thread per rank, each with a ShmCommunicator made with `options`.
template <typename Fn>
void RunShmGroup(int world, const ShmCommunicatorOptions& options, Fn fn) {
  InMemoryKvStore store;
  const std::string prefix = testing::NewGroupName();
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      Result<std::unique_ptr<HostCommunicator>> comm = ShmCommunicator::Create(rank, world, store, prefix, options);
      ASSERT_TRUE(comm.ok()) << comm.status().ToString();
      fn(rank, **comm);
    });
  }
  for (std::thread& t : threads) t.join();
}

// Collectives larger than a round (7 floats) take several rounds; 2000 iterations cycle
// each rank's two buffers many times, with every value checked.
TEST(ShmCommunicatorTest, ManyRoundsOfSmallChunksAreExact) {
  constexpr int kWorld = 3;
  ShmCommunicatorOptions options;
  options.chunk_floats = 7;
  options.timeout = milliseconds(20000);
  RunShmGroup(kWorld, options, [&](int rank, HostCommunicator& comm) {
    for (int it = 0; it < 2000; ++it) {
      const size_t n = 1 + static_cast<size_t>(it * 13 % 40);  // 1..40 floats: 1 to 6 rounds
      std::vector<float> data(n);
      for (size_t i = 0; i < n; ++i) data[i] = static_cast<float>(rank * 1000 + it + static_cast<int>(i));
      Status s = comm.AllReduceSum(data.data(), n);
      ASSERT_TRUE(s.ok()) << s.ToString();
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(data[i], static_cast<float>(3000 + 3 * (it + static_cast<int>(i)))) << "it " << it << " i " << i;
      }
      std::vector<float> out(kWorld * n);
      s = comm.AllGather(data.data(), n, out.data());
      ASSERT_TRUE(s.ok()) << s.ToString();
      for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_EQ(out[i], data[i % n]) << "it " << it << " i " << i;
      }
      if (it % 100 == 0) {
        ASSERT_TRUE(comm.Barrier().ok());
      }
    }
  });
}

// The same inputs give the same bits over shared memory and over Gloo: which transport
// a replica picks never changes its tokens.
TEST(ShmCommunicatorTest, AllReduceBitsEqualGloos) {
  constexpr int kWorld = 3;
  constexpr size_t kN = 5000;
  std::vector<std::vector<float>> by_transport[2];
  const CpuTransport transports[2] = {CpuTransport::kTcp, CpuTransport::kShm};
  for (int t = 0; t < 2; ++t) {
    by_transport[t].resize(kWorld);
    testing::RunGroup(
        kWorld,
        [&](int rank, HostCommunicator& comm) {
          std::vector<float> data = testing::RandomFloats(kN, 99 + rank);
          ASSERT_TRUE(comm.AllReduceSum(data.data(), kN).ok());
          by_transport[t][rank] = std::move(data);
        },
        std::chrono::seconds(20), transports[t]);
  }
  for (int r = 0; r < kWorld; ++r)
    EXPECT_EQ(std::memcmp(by_transport[0][r].data(), by_transport[1][r].data(), kN * sizeof(float)), 0) << "rank " << r;
}

// A store that makes rank 1 look like it runs on another host (another kernel's boot id).
class OtherHostStore final : public KvStore {
 public:
  Status Set(const std::string& key, const std::vector<char>& value) override {
    std::vector<char> v = value;
    if (key.size() >= 11 && key.compare(key.size() - 11, 11, "/shm/host/1") == 0) {
      const std::string other = "another-boot-id:";
      v.insert(v.begin(), other.begin(), other.end());
    }
    return inner_.Set(key, v);
  }
  Result<std::vector<char>> Get(const std::string& key, std::chrono::milliseconds timeout) override {
    return inner_.Get(key, timeout);
  }

 private:
  InMemoryKvStore inner_;
};

// Runs CreateCpuCommunicator on two threads; each rank's result.
std::vector<Result<CpuCommunicator>> CreateTwo(KvStore& store, CpuTransport transport) {
  const std::string prefix = testing::NewGroupName();
  std::vector<Result<CpuCommunicator>> results;
  for (int rank = 0; rank < 2; ++rank) results.emplace_back(Internal("not run"));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      results[rank] =
          CreateCpuCommunicator(rank, 2, store, prefix, {.transport = transport, .timeout = milliseconds(20000)});
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

TEST(CpuCommunicatorTest, AutoUsesSharedMemoryOnOneHost) {
  InMemoryKvStore store;
  std::vector<Result<CpuCommunicator>> results = CreateTwo(store, CpuTransport::kAuto);
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(results[rank].ok()) << results[rank].status().ToString();
    EXPECT_EQ(results[rank]->transport, CpuTransport::kShm);
    EXPECT_EQ(results[rank]->note, "");
  }
}

// Ranks that cannot share memory: with auto both fall back to TCP (and their collectives
// work); with shm both get the same FailedPrecondition.
TEST(CpuCommunicatorTest, RanksOnDifferentHostsFallBackToTcpTogether) {
  OtherHostStore store;
  std::vector<Result<CpuCommunicator>> results = CreateTwo(store, CpuTransport::kAuto);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(results[rank].ok()) << results[rank].status().ToString();
    EXPECT_EQ(results[rank]->transport, CpuTransport::kTcp);
    EXPECT_NE(results[rank]->note.find("do not share"), std::string::npos) << results[rank]->note;
    threads.emplace_back([&, rank] {
      std::vector<float> data = {static_cast<float>(rank + 1)};
      ASSERT_TRUE(results[rank]->comm->AllReduceSum(data.data(), 1).ok());
      EXPECT_EQ(data[0], 3.0f);
    });
  }
  for (std::thread& t : threads) t.join();

  OtherHostStore strict_store;
  results = CreateTwo(strict_store, CpuTransport::kShm);
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_FALSE(results[rank].ok());
    EXPECT_EQ(results[rank].status().code(), StatusCode::kFailedPrecondition) << results[rank].status().ToString();
    EXPECT_NE(results[rank].status().message().find("another-boot-id:"), std::string::npos)
        << results[rank].status().ToString();
  }
}

TEST(ShmCommunicatorTest, RejectsBadOptions) {
  InMemoryKvStore store;
  ShmCommunicatorOptions options;
  options.chunk_floats = 0;
  EXPECT_EQ(ShmCommunicator::Create(0, 1, store, "bad", options).status().code(), StatusCode::kInvalidArgument);
  options = {};
  options.timeout = milliseconds(0);
  EXPECT_EQ(ShmCommunicator::Create(0, 1, store, "bad", options).status().code(), StatusCode::kInvalidArgument);
}

std::vector<std::string> OurSegments() {
  std::vector<std::string> names;
  const std::string mine = "flover-" + std::to_string(::getpid()) + "-";
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (const dirent* e = ::readdir(dir))
      if (std::string(e->d_name).rfind(mine, 0) == 0) names.push_back(e->d_name);
    ::closedir(dir);
  }
  return names;
}

// The segment's name is unlinked once every rank has mapped it, and after a failed
// rendezvous too: nothing accumulates in /dev/shm.
TEST(ShmCommunicatorTest, LeavesNothingInDevShm) {
  ShmCommunicatorOptions options;
  options.timeout = milliseconds(20000);
  RunShmGroup(2, options, [&](int, HostCommunicator& comm) {
    ASSERT_TRUE(comm.Barrier().ok());
    EXPECT_EQ(OurSegments(), std::vector<std::string>{});
  });
  // Rank 0 creates the segment, then times out waiting for rank 1, which said hello (the
  // same host) and then vanished. Rank 1's hello is this host's identity, which a rank
  // alone publishes before it gives up; it is in the store before rank 0 starts, so the
  // only wait that can time out is the one for rank 1 to map the segment.
  InMemoryKvStore store;
  options.timeout = milliseconds(1);
  ASSERT_FALSE(ShmCommunicator::Create(0, 2, store, "identity", options).ok());
  Result<std::vector<char>> identity = store.Get("identity/shm/host/0", milliseconds(0));
  ASSERT_TRUE(identity.ok()) << identity.status().ToString();
  ASSERT_TRUE(store.Set("lonely/shm/host/1", *identity).ok());
  options.timeout = milliseconds(300);
  Result<std::unique_ptr<HostCommunicator>> comm = ShmCommunicator::Create(0, 2, store, "lonely", options);
  ASSERT_FALSE(comm.ok());
  EXPECT_EQ(comm.status().code(), StatusCode::kUnavailable) << comm.status().ToString();
  Result<std::vector<char>> segment = store.Get("lonely/shm/segment", milliseconds(0));
  ASSERT_TRUE(segment.ok()) << "rank 0 never created the segment";
  EXPECT_EQ(OurSegments(), std::vector<std::string>{});
}

}  // namespace
}  // namespace flover
