// Reading a sample back from Prometheus text in tests.
#pragma once

#include <limits>
#include <string>

namespace flover::testing {

// The value of the sample line `series` (name and labels exactly as rendered), or NaN
// when there is no such line.
inline double SampleValue(const std::string& text, const std::string& series) {
  const std::string line_start = "\n" + series + " ";
  const std::string lines = "\n" + text;
  const size_t at = lines.find(line_start);
  if (at == std::string::npos) return std::numeric_limits<double>::quiet_NaN();
  return std::stod(lines.substr(at + line_start.size()));
}

}  // namespace flover::testing
