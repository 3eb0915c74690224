// See client_limiter.h.
#include "coordinator/client_limiter.h"

namespace flover {

bool ClientLimiter::AllowStatus(const std::string& client, Clock::time_point now) {
  Entry& e = clients_[client];
  if (e.n_status == 0 || now - e.status_window >= kStatusWindow) {
    e.status_window = now;
    e.n_status = 0;
  }
  if (e.n_status >= status_per_second_) return false;
  ++e.n_status;
  return true;
}

bool ClientLimiter::CutOff(const std::string& client, Clock::time_point now) {
  Entry& e = clients_[client];
  const bool first = !e.cut_off || now - *e.cut_off >= kRememberCutOff;
  if (first) e.cut_off = now;
  return first;
}

void ClientLimiter::Prune(Clock::time_point now) {
  std::erase_if(clients_, [&](const auto& item) {
    const Entry& e = item.second;
    const bool counting = e.n_status > 0 && now - e.status_window < kStatusWindow;
    const bool remembered = e.cut_off && now - *e.cut_off < kRememberCutOff;
    return !counting && !remembered;
  });
}

}  // namespace flover
