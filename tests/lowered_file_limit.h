// LoweredFileLimit: while it lives, this process's soft RLIMIT_NOFILE is below its hard
// limit (half of it, at most 512), so that a test can see it raised again, by this
// process or by the children it starts (they inherit it). Restores the limit it found.
#pragma once

#include <sys/resource.h>

#include <algorithm>

#include <gtest/gtest.h>

namespace flover::testing {

class LoweredFileLimit {
 public:
  LoweredFileLimit() {
    EXPECT_EQ(::getrlimit(RLIMIT_NOFILE, &saved_), 0);
    rlimit lower = saved_;
    lower.rlim_cur = std::min<rlim_t>(saved_.rlim_max / 2, 512);
    EXPECT_EQ(::setrlimit(RLIMIT_NOFILE, &lower), 0);
    soft_ = lower.rlim_cur;
  }
  ~LoweredFileLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  LoweredFileLimit(const LoweredFileLimit&) = delete;
  LoweredFileLimit& operator=(const LoweredFileLimit&) = delete;

  rlim_t soft() const { return soft_; }  // as lowered
  rlim_t hard() const { return saved_.rlim_max; }

 private:
  rlimit saved_{};
  rlim_t soft_ = 0;
};

}  // namespace flover::testing
