#include "common/file_limit.h"

#include <sys/resource.h>

#include <algorithm>

#include <gtest/gtest.h>

#include "tests/captured_log.h"
#include "tests/lowered_file_limit.h"

namespace flover {
namespace {

TEST(FileLimitTest, RaisesTheSoftLimitToTheHardLimit) {
  testing::LoweredFileLimit lowered;
  Result<FileLimit> limit = RaiseFileLimit();
  ASSERT_TRUE(limit.ok()) << limit.status().ToString();
  EXPECT_EQ(limit->soft_before, lowered.soft());
  EXPECT_EQ(limit->hard, lowered.hard());
  EXPECT_EQ(limit->soft, limit->hard);
  rlimit now{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(now.rlim_cur, now.rlim_max);
}

TEST(FileLimitTest, TheCoordinatorNeedsADescriptorPerConnectionAndTwoPerWorker) {
  ClusterConfig config;
  config.replicas = 2;
  config.tensor_parallel = 4;
  config.limits.max_client_connections = 1000;
  EXPECT_EQ(CoordinatorFilesNeeded(config), 1000 + 2 * 8 + 64);
}

// Under a limit too low for max_client_connections, clients get what is left once the
// workers and the reserve have theirs.
TEST(FileLimitTest, ClientConnectionsAreLoweredToWhatTheLimitLeavesAfterTheWorkers) {
  ClusterConfig config;
  config.replicas = 2;
  config.tensor_parallel = 4;
  config.limits.max_client_connections = 1000;
  EXPECT_EQ(ClientConnectionsThatFit(config, RLIM_INFINITY), 1000);
  EXPECT_EQ(ClientConnectionsThatFit(config, 1000 + 16 + 64), 1000);
  EXPECT_EQ(ClientConnectionsThatFit(config, 524288), 1000);
  EXPECT_EQ(ClientConnectionsThatFit(config, 1024), 1024 - 16 - 64);
  EXPECT_EQ(ClientConnectionsThatFit(config, 50), 1) << "at least one";
}

std::string Logged(int64_t needed) {
  testing::CapturedLog log;
  RaiseFileLimitAndLog("flover-coordinator", needed, "limits.max_client_connections (1024) and 2 worker(s)");
  return log.Text();
}

TEST(FileLimitTest, LogsBothNumbersAndWarnsWhenTheHardLimitIsTooLow) {
  rlimit hard{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &hard), 0);
  if (hard.rlim_max == RLIM_INFINITY) {
    // No hard limit to fall short of: give this process one (lowering it is always
    // allowed; it stays lowered for the rest of this test process).
    hard.rlim_max = 4096;
    hard.rlim_cur = std::min<rlim_t>(hard.rlim_cur, hard.rlim_max);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &hard), 0);
  }
  {
    testing::LoweredFileLimit lowered;
    const std::string log = Logged(/*needed=*/static_cast<int64_t>(hard.rlim_max));
    EXPECT_NE(log.find("flover-coordinator: open files (RLIMIT_NOFILE): soft limit " + std::to_string(lowered.soft()) +
                       " raised to " + std::to_string(hard.rlim_max) + ", hard limit " + std::to_string(hard.rlim_max)),
              std::string::npos)
        << log;
    EXPECT_EQ(log.find("warning"), std::string::npos) << "the hard limit covers the need: " << log;
  }
  const std::string log = Logged(static_cast<int64_t>(hard.rlim_max) + 1);
  EXPECT_NE(log.find("[warning] flover-coordinator: the open-file hard limit " + std::to_string(hard.rlim_max) +
                     " is below the " + std::to_string(hard.rlim_max + 1) +
                     " descriptors that limits.max_client_connections (1024) and 2 worker(s) need"),
            std::string::npos)
      << log;
}

}  // namespace
}  // namespace flover
