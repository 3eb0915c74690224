#include "coordinator/stop_strings.h"

#include <algorithm>
#include <utility>

namespace flover {

StopStrings::StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {}

StopStrings::Piece StopStrings::Push(std::string_view text) {
  std::string s = held_ + std::string(text);
  held_.clear();
  size_t first = std::string::npos;
  for (const std::string& stop : stops_) first = std::min(first, s.find(stop));
  if (first != std::string::npos) {
    s.resize(first);
    return Piece{std::move(s), true};
  }
  // The longest end of `s` that begins some stop string waits for the next piece.
  size_t keep = 0;
  for (const std::string& stop : stops_)
    for (size_t k = std::min(stop.size() - 1, s.size()); k > keep; --k)
      if (std::string_view(s).substr(s.size() - k) == std::string_view(stop).substr(0, k)) {
        keep = k;
        break;
      }
  held_ = s.substr(s.size() - keep);
  s.resize(s.size() - keep);
  return Piece{std::move(s), false};
}

std::string StopStrings::Flush() { return std::exchange(held_, std::string()); }

}  // namespace flover
