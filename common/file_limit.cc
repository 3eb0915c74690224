// See file_limit.h.
#include "common/file_limit.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace flover {
namespace {

constexpr int64_t kReservedFiles = 64;
constexpr int kFilesPerWorker = 2;  // its control and plans connections

std::string LimitName(uint64_t limit) { return limit == RLIM_INFINITY ? "unlimited" : std::to_string(limit); }

}  // namespace

Result<FileLimit> RaiseFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0)
    return Internal(std::string("getrlimit(RLIMIT_NOFILE): ") + std::strerror(errno));
  FileLimit out{.soft_before = limit.rlim_cur, .soft = limit.rlim_cur, .hard = limit.rlim_max};
  if (limit.rlim_cur == limit.rlim_max) return out;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0)
    return Internal(std::string("setrlimit(RLIMIT_NOFILE) to the hard limit ") + LimitName(limit.rlim_max) + ": " +
                    std::strerror(errno));
  out.soft = limit.rlim_cur;
  return out;
}

int64_t CoordinatorFilesNeeded(const ClusterConfig& config) {
  const int64_t http = config.endpoints.http.empty() ? 0 : int64_t{config.http.max_connections};
  return int64_t{config.limits.max_client_connections} + http +
         int64_t{kFilesPerWorker} * config.replicas * config.tensor_parallel + kReservedFiles;
}

int ClientConnectionsThatFit(const ClusterConfig& config, uint64_t soft_limit) {
  const int wanted = config.limits.max_client_connections;
  if (soft_limit == RLIM_INFINITY) return wanted;
  const int64_t others = CoordinatorFilesNeeded(config) - wanted;
  const int64_t left = static_cast<int64_t>(soft_limit) - others;
  return static_cast<int>(std::clamp<int64_t>(left, 1, wanted));
}

std::optional<FileLimit> RaiseFileLimitAndLog(const std::string& who, int64_t needed, const std::string& need_why) {
  Result<FileLimit> limit = RaiseFileLimit();
  if (!limit.ok()) {
    spdlog::warn("{}: open files: {}", who, limit.status().ToString());
    return std::nullopt;
  }
  if (limit->soft == limit->soft_before)
    spdlog::info("{}: open files (RLIMIT_NOFILE): soft limit {} (the hard limit {})", who, LimitName(limit->soft),
                 LimitName(limit->hard));
  else
    spdlog::info("{}: open files (RLIMIT_NOFILE): soft limit {} raised to {}, hard limit {}", who,
                 LimitName(limit->soft_before), LimitName(limit->soft), LimitName(limit->hard));
  if (needed > 0 && limit->hard != RLIM_INFINITY && limit->hard < static_cast<uint64_t>(needed))
    spdlog::warn("{}: the open-file hard limit {} is below the {} descriptors that {} need: connections beyond it "
                 "fail; raise it (LimitNOFILE= in the systemd unit, ulimit -Hn, the container's nofile limit)",
                 who, LimitName(limit->hard), needed, need_why);
  return *limit;
}

}  // namespace flover
