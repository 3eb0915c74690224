// RenderLimits and Budget: the bounds on one render. A template can come from a model
// file, so a hostile one must end with an error, not hang, exhaust memory or overflow
// the stack: every expression evaluation, loop iteration and copied item costs steps,
// recursion (nested blocks, expressions, macro calls) is bounded, and so is every
// string built and the output.
//
// Thread-safety: a Budget belongs to one render on one thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flover::jinja {

struct RenderLimits {
  size_t max_output_bytes = size_t{8} << 20;  // the rendered text, and any one string built while rendering
  int64_t max_steps = 20'000'000;             // evaluations, loop iterations, items and bytes/64 copied
  int max_depth = 500;                        // nested statements, expressions and macro calls
  size_t max_items = 1'000'000;               // in any one list built while rendering
};

class Budget {
 public:
  explicit Budget(const RenderLimits& limits) : limits_(limits), steps_left_(limits.max_steps) {}

  const RenderLimits& limits() const { return limits_; }

  // Spends `steps`; throws a Limit error when the budget is spent.
  void Charge(int64_t steps);
  // Throws a Limit error when a string of `bytes` would be longer than max_output_bytes.
  void CheckString(size_t bytes) const;
  // Charges for building a list of `n` items; throws a Limit error above max_items.
  void ChargeItems(size_t n);
  // Charges, before it starts, for searching a text of `haystack` bytes for one of
  // `needle` bytes (find, count, replace, split, `in`), at the worst case of a plain
  // search, so that no pattern can make the search itself the unbounded work.
  void ChargeSearch(size_t haystack, size_t needle) {
    Charge(static_cast<int64_t>((haystack / 64 + 1) * (needle / 64 + 1)));
  }

 private:
  const RenderLimits limits_;
  int64_t steps_left_;
};

}  // namespace flover::jinja
