#include "client/interrupt_flag.h"

#include <atomic>

#include "common/check.h"

namespace flover {
namespace {

std::atomic<int> g_count{0};
std::atomic<bool> g_alive{false};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler adds to it");

void OnSignal(int) { g_count.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

InterruptFlag::InterruptFlag(std::initializer_list<int> signals) {
  FLOVER_CHECK(!g_alive.exchange(true)) << "one InterruptFlag at a time";
  g_count.store(0);
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int signal : signals) {
    struct sigaction previous = {};
    FLOVER_CHECK(sigaction(signal, &action, &previous) == 0) << "signal " << signal;
    saved_.emplace_back(signal, previous);
  }
}

InterruptFlag::~InterruptFlag() {
  for (const auto& [signal, previous] : saved_) sigaction(signal, &previous, nullptr);
  g_alive.store(false);
}

bool InterruptFlag::raised() const { return count() > 0; }

int InterruptFlag::count() const { return g_count.load(std::memory_order_relaxed); }

std::function<bool()> InterruptFlag::predicate() const {
  return [] { return g_count.load(std::memory_order_relaxed) > 0; };
}

}  // namespace flover
