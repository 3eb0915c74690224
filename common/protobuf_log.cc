#include "common/protobuf_log.h"

#include <google/protobuf/stubs/logging.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <mutex>
#include <string>

#include "common/log_limiter.h"

namespace flover {
namespace {

std::mutex g_mutex;
LogLimiter g_limiter(kProtobufLogLines, std::chrono::seconds(1));  // guarded by g_mutex

void ToSpdlog(google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
  using google::protobuf::LogLevel;
  if (level == LogLevel::LOGLEVEL_FATAL) {
    spdlog::critical("libprotobuf {}:{}: {}", file, line, message);
    return;
  }
  std::optional<uint64_t> more;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    more = g_limiter.Allow(LogLimiter::Clock::now());
  }
  if (!more) return;
  const spdlog::level::level_enum to = level == LogLevel::LOGLEVEL_INFO      ? spdlog::level::info
                                       : level == LogLevel::LOGLEVEL_WARNING ? spdlog::level::warn
                                                                             : spdlog::level::err;
  spdlog::log(to, "libprotobuf: {}{}", message, SuppressedSuffix(*more));
}

}  // namespace

void RouteProtobufLogs() { google::protobuf::SetLogHandler(&ToSpdlog); }

}  // namespace flover
