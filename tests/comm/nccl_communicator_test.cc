// NcclCommunicator: argument checks (no GPU needed), the group of one on one GPU, a full
// group of every visible GPU (one thread per rank; needs two or more), and rendezvous
// timeouts. GPU cases skip with a message where there are too few GPUs.
#include "worker/comm/nccl_communicator.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda/device.h"
#include "tests/cuda/gpu_test.h"
#include "tests/test_random.h"
#include "worker/comm/kv_store.h"

namespace flover {
namespace {

using std::chrono::milliseconds;

std::string NewGroupName() {
  static std::atomic<int> counter{0};
  return "nccl-group" + std::to_string(counter++);
}

// ---- argument checks: no GPU needed --------------------------------------------------

TEST(NcclCommunicatorTest, RejectsBadArgumentsBeforeTouchingAGpu) {
  InMemoryKvStore store;
  auto code = [&](int rank, int world, int device, milliseconds timeout) {
    return NcclCommunicator::Create(rank, world, device, store, "bad", nullptr, timeout).status().code();
  };
  EXPECT_EQ(code(2, 2, 0, milliseconds(100)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(-1, 2, 0, milliseconds(100)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(0, 0, 0, milliseconds(100)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(0, 1, -1, milliseconds(100)), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(0, 1, 0, milliseconds(0)), StatusCode::kInvalidArgument);
  const Status s = NcclCommunicator::Create(3, 2, 0, store, "bad", nullptr).status();
  EXPECT_EQ(s.message(), "rank 3 is outside a group of 2");
}

TEST(NcclCommunicatorTest, WithoutAGpuIsUnavailable) {
  if (cuda::DeviceCount() > 0) GTEST_SKIP() << "a GPU is visible; this checks the machine without one";
  InMemoryKvStore store;
  const Status s = NcclCommunicator::Create(0, 1, 0, store, NewGroupName(), nullptr, milliseconds(100)).status();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("no CUDA device"), std::string::npos) << s.ToString();
}

// ---- one GPU -------------------------------------------------------------------------

TEST(NcclCommunicatorTest, RejectsADeviceThatDoesNotExist) {
  FLOVER_REQUIRE_GPU();
  InMemoryKvStore store;
  const int n = cuda::DeviceCount();
  const Status s = NcclCommunicator::Create(0, 1, n, store, NewGroupName(), nullptr, milliseconds(100)).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("CUDA device " + std::to_string(n) + " does not exist"), std::string::npos);
}

using testing::RandomFloats;

TEST(NcclCommunicatorTest, GroupOfOneOnOneGpu) {
  FLOVER_REQUIRE_GPU();
  Result<cuda::Stream> stream = cuda::Stream::Create();  // outlives the communicator
  FLOVER_ASSERT_OK(stream);
  InMemoryKvStore store;
  Result<std::unique_ptr<DeviceCommunicator>> created =
      NcclCommunicator::Create(0, 1, 0, store, NewGroupName(), stream->get(), milliseconds(20000));
  FLOVER_ASSERT_OK(created);
  DeviceCommunicator& comm = **created;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.world_size(), 1);
  EXPECT_EQ(comm.device(), 0);
  EXPECT_EQ(comm.stream(), stream->get());

  for (size_t n : {size_t{1}, size_t{768}, size_t{100000}}) {
    const std::vector<float> values = RandomFloats(n, static_cast<uint32_t>(n));
    Result<cuda::DeviceBuffer> data = cuda::DeviceBuffer::Allocate(n * sizeof(float));
    Result<cuda::DeviceBuffer> gathered = cuda::DeviceBuffer::Allocate(n * sizeof(float));
    FLOVER_ASSERT_OK(data);
    FLOVER_ASSERT_OK(gathered);
    FLOVER_ASSERT_OK(cuda::CopyToDevice(data->data(), values.data(), n * sizeof(float), stream->get()));

    // The sum over a group of one is the identity, bit for bit.
    FLOVER_ASSERT_OK(comm.AllReduceSum(data->as<float>(), n));
    FLOVER_ASSERT_OK(comm.Synchronize());
    EXPECT_EQ(cudaStreamQuery(stream->get()), cudaSuccess);
    std::vector<float> got(n);
    FLOVER_ASSERT_OK(cuda::CopyToHost(got.data(), data->data(), n * sizeof(float), stream->get()));
    EXPECT_EQ(std::memcmp(got.data(), values.data(), n * sizeof(float)), 0) << "n=" << n;

    // The gather of one is a copy.
    FLOVER_ASSERT_OK(comm.AllGather(data->as<float>(), n, gathered->as<float>()));
    std::vector<float> out(n, -1.0f);
    FLOVER_ASSERT_OK(cuda::CopyToHost(out.data(), gathered->data(), n * sizeof(float), stream->get()));
    EXPECT_EQ(std::memcmp(out.data(), values.data(), n * sizeof(float)), 0) << "n=" << n;

    FLOVER_ASSERT_OK(comm.Barrier());
  }
  // Nothing to move: no-ops (null pointers are fine then).
  FLOVER_ASSERT_OK(comm.AllReduceSum(nullptr, 0));
  FLOVER_ASSERT_OK(comm.AllGather(nullptr, 0, nullptr));
  FLOVER_ASSERT_OK(comm.Barrier());
}

TEST(NcclCommunicatorTest, AFailedCallBreaksTheCommunicatorForGood) {
  FLOVER_REQUIRE_GPU();
  Result<cuda::Stream> stream = cuda::Stream::Create();
  FLOVER_ASSERT_OK(stream);
  InMemoryKvStore store;
  Result<std::unique_ptr<DeviceCommunicator>> comm =
      NcclCommunicator::Create(0, 1, 0, store, NewGroupName(), stream->get(), milliseconds(20000));
  FLOVER_ASSERT_OK(comm);
  Result<cuda::DeviceBuffer> data = cuda::DeviceBuffer::Allocate(4 * sizeof(float));
  FLOVER_ASSERT_OK(data);

  const Status first = (*comm)->AllReduceSum(nullptr, 4);
  ASSERT_EQ(first.code(), StatusCode::kInvalidArgument) << first.ToString();
  EXPECT_NE(first.message().find("all-reduce of 4 floats"), std::string::npos) << first.ToString();
  EXPECT_NE(first.message().find("rank 0/1"), std::string::npos) << first.ToString();
  // Valid calls now fail with the first error.
  for (const Status& later : {(*comm)->AllReduceSum(data->as<float>(), 4), (*comm)->Barrier(),
                              (*comm)->AllGather(data->as<float>(), 1, data->as<float>() + 2)}) {
    EXPECT_EQ(later.code(), first.code());
    EXPECT_EQ(later.message(), first.message());
  }
}

// Rank 0 of two, alone: NCCL's non-blocking creation never completes; Create gives
// Unavailable after its timeout (aborting the half-made communicator), not a hang.
TEST(NcclCommunicatorTest, PeerThatNeverJoinsTimesOut) {
  FLOVER_REQUIRE_GPU();
  Result<cuda::Stream> stream = cuda::Stream::Create();
  FLOVER_ASSERT_OK(stream);
  InMemoryKvStore store;
  const std::string prefix = NewGroupName();
  const auto start = std::chrono::steady_clock::now();
  Result<std::unique_ptr<DeviceCommunicator>> comm =
      NcclCommunicator::Create(0, 2, 0, store, prefix, stream->get(), milliseconds(2000));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(comm.ok());
  EXPECT_EQ(comm.status().code(), StatusCode::kUnavailable) << comm.status().ToString();
  EXPECT_NE(comm.status().message().find("rank 0/2"), std::string::npos) << comm.status().ToString();
  EXPECT_NE(comm.status().message().find("did not complete within 2000 ms"), std::string::npos)
      << comm.status().ToString();
  EXPECT_GE(elapsed, milliseconds(2000));
  EXPECT_LT(elapsed, std::chrono::seconds(20));
  // Rank 0 published the group's id for its peers.
  EXPECT_TRUE(store.Get(prefix + "/nccl_unique_id", milliseconds(0)).ok());
}

// Rank 1 of two, alone: rank 0 never publishes the id.
TEST(NcclCommunicatorTest, MissingRankZeroTimesOut) {
  FLOVER_REQUIRE_GPU();
  Result<cuda::Stream> stream = cuda::Stream::Create();
  FLOVER_ASSERT_OK(stream);
  InMemoryKvStore store;
  const auto start = std::chrono::steady_clock::now();
  Result<std::unique_ptr<DeviceCommunicator>> comm =
      NcclCommunicator::Create(1, 2, 0, store, NewGroupName(), stream->get(), milliseconds(300));
  ASSERT_FALSE(comm.ok());
  EXPECT_EQ(comm.status().code(), StatusCode::kUnavailable) << comm.status().ToString();
  EXPECT_NE(comm.status().message().find("nccl_unique_id"), std::string::npos) << comm.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

// ---- every visible GPU (needs two or more) --------------------------------------------

// fn(rank, comm, stream) on rank's own thread, with rank's device current; gtest
// assertions work there.
template <typename Fn>
void RunGpuGroup(int world, Fn fn) {
  InMemoryKvStore store;
  const std::string prefix = NewGroupName();
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      ASSERT_EQ(cudaSetDevice(rank), cudaSuccess);
      Result<cuda::Stream> stream = cuda::Stream::Create();
      ASSERT_TRUE(stream.ok()) << stream.status().ToString();
      Result<std::unique_ptr<DeviceCommunicator>> comm =
          NcclCommunicator::Create(rank, world, rank, store, prefix, stream->get(), milliseconds(60000));
      ASSERT_TRUE(comm.ok()) << comm.status().ToString();
      fn(rank, **comm, stream->get());
      comm->reset();  // before the stream it uses
    });
  }
  for (std::thread& t : threads) t.join();
}

#define FLOVER_REQUIRE_GPUS(n)                                                                   \
  do {                                                                                           \
    if (::flover::cuda::DeviceCount() < (n))                                                     \
      GTEST_SKIP() << "needs " << (n) << " CUDA GPUs, this machine has " << ::flover::cuda::DeviceCount(); \
  } while (0)

// Rank r's value i is an integer, so every sum is exact whatever the order.
float Value(int rank, size_t i) { return static_cast<float>((rank + 1) * 1000 + static_cast<int>(i % 997)); }

TEST(NcclCommunicatorTest, EveryGpuAllReducesAndAllGathersExactly) {
  FLOVER_REQUIRE_GPUS(2);
  const int world = cuda::DeviceCount();
  RunGpuGroup(world, [&](int rank, DeviceCommunicator& comm, cudaStream_t stream) {
    EXPECT_EQ(comm.rank(), rank);
    EXPECT_EQ(comm.world_size(), world);
    for (size_t n : {size_t{1}, size_t{768}, size_t{100000}, size_t{5}}) {
      std::vector<float> host(n);
      for (size_t i = 0; i < n; ++i) host[i] = Value(rank, i);
      Result<cuda::DeviceBuffer> data = cuda::DeviceBuffer::Allocate(n * sizeof(float));
      Result<cuda::DeviceBuffer> gathered = cuda::DeviceBuffer::Allocate(world * n * sizeof(float));
      ASSERT_TRUE(data.ok() && gathered.ok());
      ASSERT_TRUE(cuda::CopyToDevice(data->data(), host.data(), n * sizeof(float), stream).ok());

      // The gather first (of the inputs), then the sum in place.
      Status s = comm.AllGather(data->as<float>(), n, gathered->as<float>());
      ASSERT_TRUE(s.ok()) << s.ToString();
      s = comm.AllReduceSum(data->as<float>(), n);
      ASSERT_TRUE(s.ok()) << s.ToString();
      s = comm.Barrier();
      ASSERT_TRUE(s.ok()) << s.ToString();

      std::vector<float> sum(n), all(world * n);
      ASSERT_TRUE(cuda::CopyToHost(sum.data(), data->data(), n * sizeof(float), stream).ok());
      ASSERT_TRUE(cuda::CopyToHost(all.data(), gathered->data(), all.size() * sizeof(float), stream).ok());
      for (size_t i = 0; i < n; ++i) {
        float expected = 0.0f;
        for (int r = 0; r < world; ++r) expected += Value(r, i);
        ASSERT_EQ(sum[i], expected) << "n=" << n << " i=" << i << " rank " << rank;
      }
      for (int r = 0; r < world; ++r)
        for (size_t i = 0; i < n; ++i)
          ASSERT_EQ(all[r * n + i], Value(r, i)) << "n=" << n << " from rank " << r << " on rank " << rank;
    }
  });
}

// With arbitrary floats the sum depends on the order of additions; every rank must
// still get the same bits (replicated state stays identical across ranks).
TEST(NcclCommunicatorTest, EveryGpuGetsBitIdenticalSums) {
  FLOVER_REQUIRE_GPUS(2);
  const int world = cuda::DeviceCount();
  constexpr size_t kN = 200000;
  std::vector<std::vector<float>> results(world);
  RunGpuGroup(world, [&](int rank, DeviceCommunicator& comm, cudaStream_t stream) {
    const std::vector<float> host = RandomFloats(kN, 1234 + rank);
    Result<cuda::DeviceBuffer> data = cuda::DeviceBuffer::Allocate(kN * sizeof(float));
    ASSERT_TRUE(data.ok());
    ASSERT_TRUE(cuda::CopyToDevice(data->data(), host.data(), kN * sizeof(float), stream).ok());
    const Status s = comm.AllReduceSum(data->as<float>(), kN);
    ASSERT_TRUE(s.ok()) << s.ToString();
    std::vector<float> out(kN);
    ASSERT_TRUE(cuda::CopyToHost(out.data(), data->data(), kN * sizeof(float), stream).ok());
    results[rank] = std::move(out);
  });
  for (int r = 1; r < world; ++r) {
    ASSERT_EQ(results[r].size(), kN);
    EXPECT_EQ(std::memcmp(results[r].data(), results[0].data(), kN * sizeof(float)), 0) << "rank " << r;
  }
}

}  // namespace
}  // namespace flover
