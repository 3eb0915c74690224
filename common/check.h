// FLOVER_CHECK: aborts the process, with the failed condition, its location and any
// streamed values, when an internal invariant is broken. Not for user errors: those
// are Statuses (status.h).
//
//   FLOVER_CHECK(n_tokens <= capacity_) << "n_tokens=" << n_tokens;
#pragma once

#include <sstream>

namespace flover::internal {

class CheckFailure {
 public:
  CheckFailure(const char* condition, const char* file, int line);
  [[noreturn]] ~CheckFailure();
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Makes `cond ? (void)0 : Voidify() & stream` type-check.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace flover::internal

#define FLOVER_CHECK(cond)                                  \
  (cond) ? (void)0                                          \
         : ::flover::internal::Voidify() &                  \
               ::flover::internal::CheckFailure(#cond, __FILE__, __LINE__).stream()

#define FLOVER_CHECK_EQ(a, b) FLOVER_CHECK((a) == (b)) << #a "=" << (a) << " " #b "=" << (b) << " "
#define FLOVER_CHECK_LE(a, b) FLOVER_CHECK((a) <= (b)) << #a "=" << (a) << " " #b "=" << (b) << " "
#define FLOVER_CHECK_LT(a, b) FLOVER_CHECK((a) < (b)) << #a "=" << (a) << " " #b "=" << (b) << " "
#define FLOVER_CHECK_GE(a, b) FLOVER_CHECK((a) >= (b)) << #a "=" << (a) << " " #b "=" << (b) << " "
