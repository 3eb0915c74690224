// RouteProtobufLogs: libprotobuf writes its own lines to stderr, one for each message a
// peer sends with invalid UTF-8 in a string field ("String field ... contains invalid
// UTF-8 data when parsing a protocol buffer"), beside the error the parse returns
// anyway. Unthrottled, a peer that sends such bytes in a loop floods the daemon's log.
// After RouteProtobufLogs() those lines go through spdlog, at most kProtobufLogLines
// per second (the next line let through says how many were held back); FATAL lines are
// never held back.
//
// Thread-safety: call once at start-up, before any thread parses (libprotobuf's
// SetLogHandler is not thread-safe); the handler itself may run on any thread.
#pragma once

namespace flover {

inline constexpr int kProtobufLogLines = 10;

void RouteProtobufLogs();

}  // namespace flover
