#include "client/bench/sse_parser.h"

namespace flover {

Status SseParser::Feed(std::string_view bytes, const Handler& on_event) {
  if (failed_) return FailedPrecondition("the event stream already failed");
  for (char c : bytes) {
    if (after_cr_) {
      after_cr_ = false;
      if (c == '\n') continue;  // CRLF: the CR ended the line
    }
    if (c == '\r' || c == '\n') {
      after_cr_ = c == '\r';
      std::string line;
      line.swap(line_);
      Line(line, on_event);
      continue;
    }
    line_.push_back(c);
    if (line_.size() > max_line_bytes_) {
      failed_ = true;
      return InvalidArgument("an event-stream line is longer than " + std::to_string(max_line_bytes_) + " bytes");
    }
  }
  return Status::Ok();
}

void SseParser::Line(std::string_view line, const Handler& on_event) {
  if (line.empty()) {
    if (has_data_) {
      SseEvent event;
      if (!type_.empty()) event.type = type_;
      event.data = std::move(data_);
      event.id = last_id_;
      if (on_event) on_event(event);
    }
    type_.clear();
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // a comment
  const size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field == "data") {
    if (has_data_) data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    type_.assign(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) last_id_.assign(value);
  }
}

}  // namespace flover
