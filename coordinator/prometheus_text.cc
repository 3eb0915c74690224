#include "coordinator/prometheus_text.h"

#include <cmath>

#include <fmt/format.h>

#include "common/check.h"

namespace flover {
namespace {

bool ValidName(std::string_view name, bool colon_allowed) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_allowed && c == ':');
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// `quotes`: label values escape `"` too; HELP text does not.
void AppendEscaped(std::string& out, std::string_view s, bool quotes) {
  for (const char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (quotes && c == '"') out += "\\\"";
    else out += c;
  }
}

}  // namespace

std::string PrometheusValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", value);
}

void PrometheusText::Family(std::string_view name, std::string_view type, std::string_view help) {
  FLOVER_CHECK(ValidName(name, true)) << "metric name '" << name << "'";
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  AppendEscaped(out_, help, /*quotes=*/false);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void PrometheusText::Line(std::string_view name, std::string_view suffix, Labels labels,
                          const std::pair<std::string_view, std::string_view>* extra, double value) {
  out_ += name;
  out_ += suffix;
  if (labels.size() > 0 || extra) {
    out_ += '{';
    bool first = true;
    auto label = [&](const std::pair<std::string_view, std::string_view>& l) {
      FLOVER_CHECK(ValidName(l.first, false)) << "label name '" << l.first << "'";
      if (!first) out_ += ',';
      first = false;
      out_ += l.first;
      out_ += "=\"";
      AppendEscaped(out_, l.second, /*quotes=*/true);
      out_ += '"';
    };
    for (const auto& l : labels) label(l);
    if (extra) label(*extra);
    out_ += '}';
  }
  out_ += ' ';
  out_ += PrometheusValue(value);
  out_ += '\n';
}

void PrometheusText::Sample(std::string_view name, Labels labels, double value) {
  FLOVER_CHECK(ValidName(name, true)) << "metric name '" << name << "'";
  Line(name, "", labels, nullptr, value);
}

void PrometheusText::Histogram(std::string_view name, Labels labels, std::span<const double> bounds,
                               std::span<const uint64_t> counts, double sum) {
  FLOVER_CHECK(ValidName(name, true)) << "metric name '" << name << "'";
  FLOVER_CHECK_EQ(counts.size(), bounds.size() + 1);
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += counts[i];
    const std::string le = i < bounds.size() ? PrometheusValue(bounds[i]) : "+Inf";
    const std::pair<std::string_view, std::string_view> extra{"le", le};
    Line(name, "_bucket", labels, &extra, static_cast<double>(cumulative));
  }
  Line(name, "_sum", labels, nullptr, sum);
  Line(name, "_count", labels, nullptr, static_cast<double>(cumulative));
}

}  // namespace flover
