#include "common/file_limit.h"

#include <sys/resource.h>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <sstream>

namespace flover {
namespace {

// This process's soft limit lowered (below the hard limit) while it lives.
class LoweredSoftLimit {
 public:
  LoweredSoftLimit() {
    EXPECT_EQ(::getrlimit(RLIMIT_NOFILE, &saved_), 0);
    rlimit lower = saved_;
    lower.rlim_cur = std::min<rlim_t>(saved_.rlim_max / 2, 256);
    EXPECT_EQ(::setrlimit(RLIMIT_NOFILE, &lower), 0);
  }
  ~LoweredSoftLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  const rlimit& saved() const { return saved_; }

 private:
  rlimit saved_{};
};

TEST(FileLimitTest, RaisesTheSoftLimitToTheHardLimit) {
  LoweredSoftLimit lowered;
  Result<FileLimit> limit = RaiseFileLimit();
  ASSERT_TRUE(limit.ok()) << limit.status().ToString();
  EXPECT_EQ(limit->soft_before, std::min<rlim_t>(lowered.saved().rlim_max / 2, 256));
  EXPECT_EQ(limit->hard, lowered.saved().rlim_max);
  EXPECT_EQ(limit->soft, limit->hard);
  rlimit now{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(now.rlim_cur, now.rlim_max);
}

TEST(FileLimitTest, TheCoordinatorNeedsADescriptorPerConnectionAndThreePerWorker) {
  ClusterConfig config;
  config.replicas = 2;
  config.tensor_parallel = 4;
  config.limits.max_client_connections = 1000;
  EXPECT_EQ(CoordinatorFilesNeeded(config), 1000 + 3 * 8 + 64);
}

std::string Logged(int64_t needed) {
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("captured", std::make_shared<spdlog::sinks::ostream_sink_mt>(out)));
  RaiseFileLimitAndLog("flover-coordinator", needed, "limits.max_client_connections (1024) and 2 worker(s)");
  spdlog::set_default_logger(previous);
  return out.str();
}

TEST(FileLimitTest, LogsBothNumbersAndWarnsWhenTheHardLimitIsTooLow) {
  rlimit hard{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &hard), 0);
  if (hard.rlim_max == RLIM_INFINITY) GTEST_SKIP() << "no hard limit here to fall short of";
  {
    LoweredSoftLimit lowered;
    const std::string log = Logged(/*needed=*/static_cast<int64_t>(hard.rlim_max));
    EXPECT_NE(log.find("flover-coordinator: open files (RLIMIT_NOFILE): soft limit " +
                       std::to_string(std::min<rlim_t>(hard.rlim_max / 2, 256)) + " raised to " +
                       std::to_string(hard.rlim_max) + ", hard limit " + std::to_string(hard.rlim_max)),
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
