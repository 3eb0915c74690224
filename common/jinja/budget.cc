#include "common/jinja/budget.h"

#include <string>

#include "common/jinja/error.h"

namespace flover::jinja {

void Budget::Charge(int64_t steps) {
  steps_left_ -= steps;
  if (steps_left_ < 0)
    Fail(ErrorKind::kLimit, "the template did more work than allowed (" + std::to_string(limits_.max_steps) +
                                " steps); it may loop without end");
}

void Budget::CheckString(size_t bytes) const {
  if (bytes > limits_.max_output_bytes)
    Fail(ErrorKind::kLimit, "a string of " + std::to_string(bytes) + " bytes is longer than the " +
                                std::to_string(limits_.max_output_bytes) + " bytes allowed");
}

void Budget::ChargeItems(size_t n) {
  if (n > limits_.max_items)
    Fail(ErrorKind::kLimit, "a list of " + std::to_string(n) + " items is longer than the " +
                                std::to_string(limits_.max_items) + " allowed");
  Charge(static_cast<int64_t>(n));
}

}  // namespace flover::jinja
