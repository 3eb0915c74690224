// SseParser: the Server-Sent Events wire format (the WHATWG HTML standard's
// "text/event-stream" interpretation), incrementally: bytes go in as they arrive, split
// anywhere (inside a line, between CR and LF, inside a UTF-8 sequence), and complete
// events come out.
//  * Lines end with CRLF, LF or CR. An empty line dispatches the event being built.
//  * "field: value" (one space after the colon is dropped; a line without a colon is a
//    field with an empty value); lines starting with ':' are comments (keep-alives).
//  * data: lines accumulate, joined by '\n' (multi-line data); event: sets the type
//    ("message" when absent); id: sets the last event id (kept across events); other
//    fields (retry, unknown ones) are ignored.
//  * An event without any data line is not dispatched (as the standard says).
//  * A line longer than `max_line_bytes` is an error (a server that never ends a line
//    cannot make the client buffer without bound); the parser is then unusable.
//
// Thread-safety: none; one parser per stream.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace flover {

struct SseEvent {
  std::string type = "message";
  std::string data;
  std::string id;  // the last event id seen on the stream
};

class SseParser {
 public:
  using Handler = std::function<void(const SseEvent&)>;
  explicit SseParser(size_t max_line_bytes = 16 << 20) : max_line_bytes_(max_line_bytes) {}

  // Parses `bytes`, calling `on_event` for every event they complete. InvalidArgument
  // when a line grows past the limit.
  Status Feed(std::string_view bytes, const Handler& on_event);

  // True when nothing is pending: no partial line, no undispatched data.
  bool idle() const { return line_.empty() && !has_data_; }

 private:
  void Line(std::string_view line, const Handler& on_event);

  size_t max_line_bytes_;
  std::string line_;          // the line being read
  bool after_cr_ = false;     // the last byte was a CR: an LF right after it belongs to it
  bool failed_ = false;
  std::string type_, data_, last_id_;
  bool has_data_ = false;
};

}  // namespace flover
