// PrometheusText: writes the Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/), the body of a
// /metrics response (Content-Type: text/plain; version=0.0.4; charset=utf-8).
//
// Each metric family is one Family() call (its # HELP and # TYPE lines) followed by its
// samples, which must come together. Escaping follows the format: in HELP text `\` and
// newline; in label values `\`, `"` and newline. Values are written in their shortest
// exact decimal form (2, 0.25, 1e-05), +Inf, -Inf or NaN. A histogram is written as
// cumulative `_bucket{le="..."}` samples ending with le="+Inf", then `_sum` and `_count`.
// Names and label names are the caller's constants: REQUIRES they match
// [a-zA-Z_:][a-zA-Z0-9_:]* (labels: no colon), checked.
//
// Thread-safety: none (one writer builds one text).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace flover {

class PrometheusText {
 public:
  using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

  // `type`: "counter", "gauge", "histogram" (or "untyped", "summary").
  void Family(std::string_view name, std::string_view type, std::string_view help);
  void Sample(std::string_view name, Labels labels, double value);
  // `bounds`: the buckets' upper bounds, ascending, without +Inf. `counts`: the
  // observations of each bucket, NOT cumulative, [bounds.size() + 1] (the last: above
  // every bound).
  void Histogram(std::string_view name, Labels labels, std::span<const double> bounds, std::span<const uint64_t> counts,
                 double sum);

  const std::string& text() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  // name{labels,extra="value"} value
  void Line(std::string_view name, std::string_view suffix, Labels labels,
            const std::pair<std::string_view, std::string_view>* extra, double value);

  std::string out_;
};

// The value as the format writes it.
std::string PrometheusValue(double value);

}  // namespace flover
