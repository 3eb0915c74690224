// The native BenchBackend: a Flover cluster's own client API over ZeroMQ (one Client
// connection, one RequestSession following every request; CURVE when keys are given).
// Tokens are timed at each TokenEvent (one event may carry several tokens); Accepted and
// the coordinator's queue time are reported; the step counters come from the status.
//
// Thread-safety: none (BenchBackend).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "client/bench/bench_backend.h"
#include "common/curve_socket.h"

namespace flover {

struct NativeBackendOptions {
  std::string endpoint;                  // the coordinator's client endpoint
  std::optional<CurveClientKeys> curve;  // security.mode: curve
  double silence_timeout_s = 60;
  std::function<bool()> interrupted;     // polled by the session
  std::string label;                     // for messages
};

Result<std::unique_ptr<BenchBackend>> ConnectNativeBackend(const NativeBackendOptions& options);

}  // namespace flover
