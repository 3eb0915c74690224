// BenchBackend: the seam between `flover bench`'s workload driver (bench_runner.h) and
// the API a target speaks. A backend sends one request at a time when the driver says
// so and reports what happened to it as BackendEvents stamped on the client's steady
// clock; the workload, the timing of arrivals, the metrics and the reports are shared by
// every backend. Two exist:
//  * native (native_backend.h): the cluster's own ZeroMQ client API (a RequestSession);
//  * openai (openai_backend.h): POST /v1/completions with "stream": true on any
//    OpenAI-compatible HTTP server (Flover's, llama.cpp's, vLLM), read as Server-Sent
//    Events.
//
// Contract of a backend:
//  * Every request the driver submits ends exactly once, with a kDone or a kError event
//    (Submit's own error counts as its end: no event follows it).
//  * Events of one request come in order: kAccepted (optional), kTokens..., then the end.
//  * Poll waits at most `max_wait` and returns early once it delivered an event.
//  * Silence: when requests are in flight and nothing arrives for the backend's silence
//    timeout, each of them ends with kError and Poll returns DeadlineExceeded.
//
// Thread-safety: none; a backend belongs to the thread that drives it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "client/bench/bench_metrics.h"
#include "client/bench/bench_workload.h"
#include "common/status.h"

namespace flover {

using BenchClock = std::chrono::steady_clock;

struct BackendEvent {
  enum Kind { kAccepted, kTokens, kDone, kError };
  Kind kind = kTokens;
  size_t slot = 0;  // the driver's id of the request (given to Submit)
  BenchClock::time_point at;
  int n_tokens = 0;                      // kTokens: tokens this event carried (>= 1)
  int prompt_tokens = 0;                 // kDone (and kAccepted when known); 0 = unknown
  int completion_tokens = 0;             // kDone
  std::optional<double> queue_s;         // kDone: the server's own queue time, when it says
  std::string finish_reason;             // kDone: "length", "stop", ...
  std::string error;                     // kError: "Code: message"
};

// What the target says about itself once it is ready.
struct TargetInfo {
  std::string model;        // its description (native) or model id (openai)
  int vocab_size = 0;       // 0 = unknown (random prompts then need --vocab-size)
  int max_seq_len = 0;      // 0 = unknown
};

// One request as the driver sends it.
struct BackendRequest {
  size_t slot = 0;
  const BenchRequest* request = nullptr;  // prompt and output length
  uint64_t seed = 0;
  bool ignore_eos = false;
};

class BenchBackend {
 public:
  using EventSink = std::function<void(const BackendEvent&)>;
  virtual ~BenchBackend() = default;

  // Waits until the target serves (every replica ready; the HTTP model list answers),
  // at most `timeout_s`. Unavailable naming the endpoint when it does not; Cancelled
  // when `interrupted` says so.
  virtual Result<TargetInfo> WaitReady(double timeout_s, const std::function<bool()>& interrupted) = 0;
  // Sends one request. An error means it was not sent (the driver records it failed).
  virtual Status Submit(const BackendRequest& request) = 0;
  // Waits up to `max_wait` for replies, handing each event to `sink`. Ok when events came
  // or the wait passed; DeadlineExceeded on silence (see above); another error is a
  // problem worth printing (a closed connection: its requests ended with kError).
  virtual Status Poll(std::chrono::milliseconds max_wait, const EventSink& sink) = 0;
  // Cancels (or abandons) every request in flight; they still end with events.
  virtual void CancelAll() = 0;
  // The target's cumulative step counters, when it has them (a Flover cluster over the
  // native API); nullopt otherwise.
  virtual std::optional<StepCounters> ReadCounters() = 0;
};

}  // namespace flover
