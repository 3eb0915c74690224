// RouteProtobufLogs: libprotobuf's line for each message with invalid UTF-8 goes through
// spdlog, rate-limited, so that a peer sending such messages in a loop cannot flood the log.
#include "common/protobuf_log.h"

#include <gtest/gtest.h>

#include <string>

#include "common/protocol.h"
#include "flover.pb.h"
#include "tests/captured_log.h"

namespace flover {
namespace {

// A ClientMessage whose submit's client_request_id (a string) is not UTF-8.
std::string BadUtf8Message() {
  proto::ClientMessage m;
  m.set_protocol_version(kProtocolVersion);
  m.mutable_submit()->set_client_request_id("id-XX");
  std::string bytes = m.SerializeAsString();
  const size_t at = bytes.find("id-XX");
  EXPECT_NE(at, std::string::npos);
  bytes[at + 3] = '\xff';
  bytes[at + 4] = '\xfe';
  return bytes;
}

TEST(ProtobufLogTest, InvalidUtf8InAFloodLogsABoundedNumberOfLines) {
  RouteProtobufLogs();
  testing::CapturedLog log(spdlog::level::debug);
  const std::string bytes = BadUtf8Message();
  for (int i = 0; i < 5000; ++i) {
    proto::ClientMessage parsed;
    EXPECT_FALSE(parsed.ParseFromString(bytes)) << "a proto3 string must be UTF-8";
  }
  const std::vector<std::string> lines = log.Lines();
  ASSERT_GE(lines.size(), 1u) << "libprotobuf's line goes through spdlog";
  EXPECT_LE(lines.size(), static_cast<size_t>(kProtobufLogLines)) << log.Text();
  EXPECT_NE(lines.front().find("libprotobuf: "), std::string::npos) << lines.front();
  EXPECT_NE(lines.front().find("UTF-8"), std::string::npos) << lines.front();
}

}  // namespace
}  // namespace flover
