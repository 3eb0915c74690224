// The CPU communicators (Gloo over TCP, and shared memory) between real processes: the
// test forks one child per rank (no threads exist yet in this binary when it forks), the
// children meet through a FileKvStore in a temporary folder, check their collectives and
// report through their exit status. The parent only waits (bounded) and kills what is
// left.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/comm/file_kv_store.h"
#include "worker/comm/cpu_communicator.h"

namespace flover {
namespace {

using std::chrono::milliseconds;

// A child's body: returns its exit code (0 = success) and explains failures on stderr.
using ChildBody = std::function<int(int rank, KvStore& store)>;

// Forks one child per rank, waits up to `limit` for all of them, kills stragglers.
// Returns each child's exit code, or minus the signal that killed it (-1: never finished).
std::vector<int> RunProcesses(int world, const ChildBody& body, std::chrono::seconds limit = std::chrono::seconds(60)) {
  testing::TempDir dir;
  EXPECT_FALSE(dir.path().empty());
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      testing::FileKvStore store(dir.path());
      const int code = body(rank, store);
      std::fflush(nullptr);
      ::_exit(code);
    }
    EXPECT_GT(pid, 0) << "fork failed";
    if (pid > 0) pids.push_back(pid);
  }
  std::vector<int> codes(pids.size(), -1);
  std::vector<bool> done(pids.size(), false);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (size_t left = pids.size(); left > 0;) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (done[i]) continue;
      int status = 0;
      if (::waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        done[i] = true;
        --left;
        codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? -WTERMSIG(status) : -1;
      }
    }
    if (left == 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "child processes did not finish within " << limit.count() << " s";
      for (size_t i = 0; i < pids.size(); ++i) {
        if (done[i]) continue;
        ::kill(pids[i], SIGKILL);
        ::waitpid(pids[i], nullptr, 0);
      }
      break;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  return codes;
}

float Value(int rank, size_t i) { return static_cast<float>((rank + 1) * 100 + static_cast<int>(i % 89)); }

#define CHILD_CHECK(cond, code, ...)                                 \
  do {                                                               \
    if (!(cond)) {                                                   \
      std::fprintf(stderr, "rank %d: %s\n", rank, (__VA_ARGS__).c_str()); \
      return code;                                                   \
    }                                                                \
  } while (0)

class CommunicatorProcessTest : public ::testing::TestWithParam<CpuTransport> {};

// Rank `rank` of a group of `world` over the test's transport; exits the child on failure.
std::unique_ptr<HostCommunicator> Join(CpuTransport transport, int rank, int world, KvStore& store,
                                   const std::string& prefix, milliseconds timeout) {
  Result<CpuCommunicator> comm =
      CreateCpuCommunicator(rank, world, store, prefix, {.transport = transport, .timeout = timeout});
  if (!comm.ok()) {
    std::fprintf(stderr, "rank %d: %s\n", rank, comm.status().ToString().c_str());
    ::_exit(10);
  }
  if (comm->transport != transport) {
    std::fprintf(stderr, "rank %d: asked for %s, got %s\n", rank, CpuTransportName(transport),
                 CpuTransportName(comm->transport));
    ::_exit(9);
  }
  return std::move(comm->comm);
}

TEST_P(CommunicatorProcessTest, TwoProcessesAllReduceAndAllGatherExactly) {
  constexpr int kWorld = 2;
  std::vector<int> codes = RunProcesses(kWorld, [&](int rank, KvStore& store) {
    std::unique_ptr<HostCommunicator> comm = Join(GetParam(), rank, kWorld, store, "procs", milliseconds(20000));
    for (size_t n : {size_t{1}, size_t{768}, size_t{300000}}) {
      std::vector<float> data(n);
      for (size_t i = 0; i < n; ++i) data[i] = Value(rank, i);
      Status s = comm->AllReduceSum(data.data(), n);
      CHILD_CHECK(s.ok(), 11, s.ToString());
      for (size_t i = 0; i < n; ++i)
        CHILD_CHECK(data[i] == Value(0, i) + Value(1, i), 12, "all-reduce value " + std::to_string(i));
      std::vector<float> out(kWorld * n);
      s = comm->AllGather(data.data(), n, out.data());
      CHILD_CHECK(s.ok(), 13, s.ToString());
      for (size_t i = 0; i < kWorld * n; ++i)
        CHILD_CHECK(out[i] == data[i % n], 14, "all-gather value " + std::to_string(i));
      s = comm->Barrier();
      CHILD_CHECK(s.ok(), 15, s.ToString());
    }
    return 0;
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
}

// Rank 1 joins, then its process exits without a word: rank 0's next collective fails
// with Unavailable naming the dead peer (a closed socket; a pid that no longer runs),
// not at the collective's timeout (two minutes here, whose message would say so).
TEST_P(CommunicatorProcessTest, PeerProcessThatDiesGivesUnavailableAtOnce) {
  std::vector<int> codes = RunProcesses(2, [&](int rank, KvStore& store) {
    std::unique_ptr<HostCommunicator> comm = Join(GetParam(), rank, 2, store, "dies", milliseconds(120000));
    Status s = comm->Barrier();  // both fully connected
    CHILD_CHECK(s.ok(), 11, s.ToString());
    if (rank == 1) ::_exit(0);  // no destructors, no goodbye
    std::vector<float> data(768, 1.0f);
    s = comm->AllReduceSum(data.data(), data.size());
    CHILD_CHECK(!s.ok(), 20, std::string("all-reduce succeeded without a peer"));
    CHILD_CHECK(s.code() == StatusCode::kUnavailable, 21, s.ToString());
    const bool named = GetParam() == CpuTransport::kShm ? s.message().find("rank 1 (pid ") != std::string::npos &&
                                                              s.message().find(") exited") != std::string::npos
                                                        : s.message().find("by peer") != std::string::npos;
    CHILD_CHECK(named, 22, "the failure does not name the dead peer: " + s.ToString());
    return 0;
  });
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
}

TEST_P(CommunicatorProcessTest, PeerProcessThatNeverStartsTimesOut) {
  std::vector<int> codes = RunProcesses(1, [&](int rank, KvStore& store) {
    Result<CpuCommunicator> comm =
        CreateCpuCommunicator(rank, 2, store, "alone", {.transport = GetParam(), .timeout = milliseconds(500)});
    CHILD_CHECK(!comm.ok(), 30, std::string("rendezvous succeeded without a peer"));
    CHILD_CHECK(comm.status().code() == StatusCode::kUnavailable, 31, comm.status().ToString());
    return 0;
  });
  EXPECT_EQ(codes, (std::vector<int>{0}));
}

INSTANTIATE_TEST_SUITE_P(Transports, CommunicatorProcessTest,
                         ::testing::Values(CpuTransport::kTcp, CpuTransport::kShm),
                         [](const ::testing::TestParamInfo<CpuTransport>& info) {
                           return std::string(CpuTransportName(info.param));
                         });

}  // namespace
}  // namespace flover
