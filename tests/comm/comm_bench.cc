// comm_bench: latency of the CPU communicators' collectives between two processes (Gloo
// over loopback TCP, and shared memory), for the sizes of a decode step (all-reduce of
// [tokens, dim] floats).
//   comm_bench [iterations]
// Prints, per transport and size, the median / mean / p99 microseconds of one call as
// seen by rank 0.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <vector>

#include "tests/comm/file_kv_store.h"
#include "worker/comm/cpu_communicator.h"

namespace {

using Clock = std::chrono::steady_clock;

int RunTransport(int rank, flover::KvStore& store, flover::CpuTransport transport, int iterations) {
  const std::string transport_name = flover::CpuTransportName(transport);
  auto created = flover::CreateCpuCommunicator(rank, 2, store, "bench-" + transport_name,
                                               {.transport = transport, .timeout = std::chrono::seconds(30)});
  if (!created.ok()) {
    std::fprintf(stderr, "rank %d: %s\n", rank, created.status().ToString().c_str());
    return 1;
  }
  flover::HostCommunicator* comm = created->comm.get();
  if (rank == 0)
    std::printf("%-5s %-26s %10s %10s %10s\n", "", "collective (2 processes)", "median_us", "mean_us", "p99_us");
  for (const size_t n : {size_t{768}, size_t{4096}, size_t{16 * 4096}, size_t{256 * 4096}}) {
    std::vector<float> data(n, 1.0f), out(2 * n);
    for (int op = 0; op < 2; ++op) {
      const int iters = n > 100000 ? std::max(10, iterations / 50) : iterations;
      std::vector<double> us;
      us.reserve(iters);
      for (int i = -iters / 10; i < iters; ++i) {  // warm-up first
        const auto start = Clock::now();
        const flover::Status s =
            op == 0 ? comm->AllReduceSum(data.data(), n) : comm->AllGather(data.data(), n, out.data());
        const auto end = Clock::now();
        if (!s.ok()) {
          std::fprintf(stderr, "rank %d: %s\n", rank, s.ToString().c_str());
          return 1;
        }
        if (op == 0) std::fill(data.begin(), data.end(), 1.0f);
        if (i >= 0) us.push_back(std::chrono::duration<double, std::micro>(end - start).count());
      }
      std::sort(us.begin(), us.end());
      if (rank == 0) {
        const double mean = std::accumulate(us.begin(), us.end(), 0.0) / us.size();
        char name[64];
        std::snprintf(name, sizeof(name), "%s %zu floats", op == 0 ? "all-reduce" : "all-gather", n);
        std::printf("%-5s %-26s %10.1f %10.1f %10.1f\n", transport_name.c_str(), name, us[us.size() / 2], mean,
                    us[us.size() * 99 / 100]);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}

int RunRank(int rank, const std::string& dir, int iterations) {
  flover::testing::FileKvStore store(dir);
  for (const flover::CpuTransport transport : {flover::CpuTransport::kTcp, flover::CpuTransport::kShm})
    if (RunTransport(rank, store, transport, iterations) != 0) return 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 2000;
  flover::testing::TempDir dir;
  std::vector<pid_t> pids;
  for (int rank = 0; rank < 2; ++rank) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(RunRank(rank, dir.path(), iterations));
    pids.push_back(pid);
  }
  int failures = 0;
  for (pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
  }
  return failures == 0 ? 0 : 1;
}
