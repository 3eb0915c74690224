// coordinator_bench: the coordinator's own cost of one decode step of one replica, at
// 32, 256 and 1024 in-flight requests, split as the event loop spends it
// (coordinator.cc, RunSteps and HandleStepResult):
//   schedule   Scheduler::Schedule() -> proto::StepPlan
//   serialize  the plan moved into a CoordinatorMessage, Serialize()d (copy included)
//   send       topic frame + payload, zmq::send_multipart(dontwait) on a PUB socket
//   free       the plan, the message and the payload destroyed
//   apply      Scheduler::Apply(StepResult with one token per request)
// step_us is their sum, pct_of_5ms_step = step_us / 5 ms in percent; the Time column is
// the same sum (manual time). Not included: parsing the StepResult off the results
// socket and delivering each token to its client.
//
// Steady state: every request is running and decodes one token per step (max_tokens is
// huge, so none finishes). Requests start with a 128-token prompt; after kWindow decode
// steps the scheduler is rebuilt and primed again (untimed), so contexts stay within
// 129..1152 tokens and the KV pool never runs out.
//
// The plan goes over a real socket pair: PUB bound to tcp://127.0.0.1:* (or inproc://),
// a SUB connected and subscribed to the replica's topic, drained in lockstep after each
// send (untimed; its latency is reported as sub_recv_us, which is not coordinator cost).
//
//   coordinator_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/block_allocator.h"
#include "common/protocol.h"
#include "coordinator/scheduler.h"

namespace {

using Clock = std::chrono::steady_clock;
using flover::Scheduler;
using flover::SchedulerConfig;

constexpr int kPrompt = 128;              // prompt tokens per request
constexpr int kWindow = 1024;             // decode steps before the state is rebuilt
constexpr int kMaxContext = 2048;         // max_seq_len; > kPrompt + kWindow
constexpr int kBlockSize = 16;
constexpr int kToken = 7;                 // every sampled token
constexpr double kStepBudgetUs = 5000.0;  // the 5 ms step the cost is compared with
const std::string kTopic = "replica/0/";  // coordinator.cc: PlanTopic(0)

enum class Transport { kTcp, kInproc };

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// The call sites of the Scheduler's time-taking API: adapt here if it changes.
std::optional<flover::proto::StepPlan> ScheduleNext(Scheduler& scheduler, Clock::time_point now) {
  return scheduler.Schedule(now);
}
void AddRequest(Scheduler& scheduler, uint64_t id, flover::RequestParams params) {
  scheduler.Add(id, std::move(params), /*priority=*/0, Clock::now());
}

// What a fake executor reports for `plan`: one token for every entry that samples
// (the request's n_pending was raised by this plan; pipeline_depth is 1).
void MakeResult(const Scheduler& scheduler, const flover::proto::StepPlan& plan, flover::proto::StepResult* result) {
  result->Clear();
  result->set_replica(plan.replica());
  result->set_seq(plan.seq());
  for (const flover::proto::PlanEntry& entry : plan.entries()) {
    const flover::SchedRequest* r = scheduler.Find(entry.request_id());
    if (r == nullptr || r->n_pending == 0) continue;
    flover::proto::TokenOutput* out = result->add_outputs();
    out->set_request_id(entry.request_id());
    out->set_token(kToken);
    out->set_finish(flover::proto::FINISH_NONE);
  }
}

// True when all n requests are running, known to the workers and have exactly one
// token to decode.
bool AllDecoding(const Scheduler& scheduler, int n) {
  if (scheduler.n_running() != n || scheduler.n_in_flight() != 0) return false;
  for (uint64_t id = 1; id <= static_cast<uint64_t>(n); ++id) {
    const flover::SchedRequest* r = scheduler.Find(id);
    if (r == nullptr || !r->known || r->n_pending != 0 || r->n_computed != r->n_tokens() - 1) return false;
  }
  return true;
}

// A scheduler with n requests, all past their prompt and ready to decode. Empty on failure.
std::unique_ptr<Scheduler> Prime(int n, std::string* error) {
  SchedulerConfig config;
  config.replica = 0;
  config.block_size = kBlockSize;
  config.max_seq_len = kMaxContext;
  config.n_blocks = n * flover::BlockAllocator::BlocksFor(kMaxContext, kBlockSize);
  config.max_step_tokens = std::max(2048, n);
  config.max_running = n;
  config.pipeline_depth = 1;
  config.policy = flover::SchedulerPolicy::kFused;
  auto scheduler = std::make_unique<Scheduler>(config);
  for (int i = 0; i < n; ++i) {
    flover::RequestParams params;
    params.prompt.resize(kPrompt);
    for (int t = 0; t < kPrompt; ++t) params.prompt[t] = 1 + (i + t) % 255;
    params.stop.max_tokens = 1 << 30;
    params.stop.ignore_eos = true;
    AddRequest(*scheduler, static_cast<uint64_t>(i + 1), std::move(params));
  }
  flover::proto::StepResult result;
  for (int step = 0; step < 10000 && !AllDecoding(*scheduler, n); ++step) {
    std::optional<flover::proto::StepPlan> plan = ScheduleNext(*scheduler, Clock::now());
    if (!plan) {
      *error = "priming: Schedule() returned no plan";
      return nullptr;
    }
    MakeResult(*scheduler, *plan, &result);
    if (!scheduler->Apply(result).ok()) {
      *error = "priming: Apply() failed";
      return nullptr;
    }
  }
  if (!AllDecoding(*scheduler, n)) {
    *error = "priming: the requests never reached a pure decode step";
    return nullptr;
  }
  return scheduler;
}

// A PUB socket and a SUB connected to it and subscribed to kTopic, with the
// subscription known to have reached the PUB (no slow-joiner loss afterwards).
struct Link {
  zmq::context_t context{1};
  zmq::socket_t pub{context, zmq::socket_type::pub};
  zmq::socket_t sub{context, zmq::socket_type::sub};

  // Empty string on success, else what failed.
  std::string Open(Transport transport) {
    try {
      for (zmq::socket_t* s : {&pub, &sub}) s->set(zmq::sockopt::linger, 0);
      pub.set(zmq::sockopt::sndhwm, 100000);  // as the coordinator's plans socket
      sub.set(zmq::sockopt::rcvhwm, 100000);
      sub.set(zmq::sockopt::rcvtimeo, 5000);
      pub.bind(transport == Transport::kTcp ? "tcp://127.0.0.1:*" : "inproc://coordinator-bench-plans");
      sub.connect(pub.get(zmq::sockopt::last_endpoint));
      sub.set(zmq::sockopt::subscribe, kTopic);
      // Probe until one arrives, then read up to the last probe sent.
      int sent = 0;
      int got = -1;
      const auto deadline = Clock::now() + std::chrono::seconds(5);
      while (got < 0 && Clock::now() < deadline) {
        const std::string probe = "probe " + std::to_string(++sent);
        const std::array<zmq::const_buffer, 2> frames = {zmq::buffer(kTopic), zmq::buffer(probe)};
        zmq::send_multipart(pub, frames, zmq::send_flags::dontwait);
        std::array<zmq::pollitem_t, 1> items = {{{sub.handle(), 0, ZMQ_POLLIN, 0}}};
        if (zmq::poll(items, std::chrono::milliseconds(10)) > 0) got = ReadProbe();
      }
      while (got >= 0 && got < sent) got = ReadProbe();
      if (got != sent) return "the SUB socket never got the probes";
      return "";
    } catch (const zmq::error_t& e) {
      return std::string("zmq: ") + e.what();
    }
  }

  // The probe number of the next message, -1 on a timeout or an unexpected message.
  int ReadProbe() {
    zmq::message_t topic;
    zmq::message_t body;
    if (!sub.recv(topic) || !topic.more() || !sub.recv(body)) return -1;
    const std::string text = body.to_string();
    if (text.rfind("probe ", 0) != 0) return -1;
    return std::stoi(text.substr(6));
  }
};

void BM_CoordinatorStep(benchmark::State& state, Transport transport) {
  const int n = static_cast<int>(state.range(0));
  Link link;
  if (const std::string error = link.Open(transport); !error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  std::string error;
  std::unique_ptr<Scheduler> scheduler = Prime(n, &error);
  if (!scheduler) {
    state.SkipWithError(error.c_str());
    return;
  }
  int steps_in_window = 0;
  flover::proto::StepResult result;
  zmq::message_t got_topic;
  zmq::message_t got_payload;
  double t_schedule = 0, t_serialize = 0, t_send = 0, t_free = 0, t_apply = 0, t_recv = 0;
  double plan_bytes = 0;

  for (auto _ : state) {
    if (steps_in_window == kWindow) {  // untimed: fresh requests at the prompt length
      scheduler = Prime(n, &error);
      if (!scheduler) {
        state.SkipWithError(error.c_str());
        break;
      }
      steps_in_window = 0;
    }
    ++steps_in_window;

    const Clock::time_point t0 = Clock::now();
    std::optional<flover::proto::StepPlan> plan = ScheduleNext(*scheduler, t0);
    const Clock::time_point t1 = Clock::now();
    if (!plan) {
      state.SkipWithError("Schedule() returned no plan in steady state");
      break;
    }
    std::optional<flover::proto::CoordinatorMessage> message(std::in_place);
    *message->mutable_plan() = std::move(*plan);
    std::optional<std::string> payload(flover::Serialize(*message));
    const Clock::time_point t2 = Clock::now();
    const std::array<zmq::const_buffer, 2> frames = {zmq::buffer(kTopic), zmq::buffer(*payload)};
    const bool sent = zmq::send_multipart(link.pub, frames, zmq::send_flags::dontwait).has_value();
    const Clock::time_point t3 = Clock::now();

    // Untimed: the SUB side gets the plan; the fake executor builds the StepResult.
    const bool received = link.sub.recv(got_topic).has_value() && got_topic.more() &&
                          link.sub.recv(got_payload).has_value() && !got_payload.more();
    const Clock::time_point t4 = Clock::now();
    const flover::proto::StepPlan& published = message->plan();
    if (!sent || !received || got_topic.to_string_view() != kTopic || got_payload.size() != payload->size() ||
        published.entries_size() != n || published.joins_size() != 0) {
      state.SkipWithError("the plan was not a full decode step, or did not arrive intact");
      break;
    }
    if (steps_in_window == 1) {  // once per window: the bytes parse back to this plan
      auto parsed = flover::Parse<flover::proto::CoordinatorMessage>(got_payload.to_string_view());
      if (!parsed.ok() || parsed->plan().seq() != published.seq() ||
          !std::all_of(parsed->plan().entries().begin(), parsed->plan().entries().end(),
                       [](const flover::proto::PlanEntry& e) { return e.n_tokens() == 1; })) {
        state.SkipWithError("the published plan does not parse back to a decode step");
        break;
      }
    }
    MakeResult(*scheduler, published, &result);
    plan_bytes += static_cast<double>(payload->size());

    const Clock::time_point t5 = Clock::now();
    message.reset();
    payload.reset();
    plan.reset();
    const Clock::time_point t6 = Clock::now();
    const bool applied = scheduler->Apply(result).ok();
    const Clock::time_point t7 = Clock::now();
    if (!applied) {
      state.SkipWithError("Apply() failed");
      break;
    }

    t_schedule += Us(t1 - t0);
    t_serialize += Us(t2 - t1);
    t_send += Us(t3 - t2);
    t_recv += Us(t4 - t3);
    t_free += Us(t6 - t5);
    t_apply += Us(t7 - t6);
    state.SetIterationTime(std::chrono::duration<double>((t3 - t0) + (t7 - t5)).count());
  }

  const double iters = static_cast<double>(std::max<benchmark::IterationCount>(state.iterations(), 1));
  const double step = (t_schedule + t_serialize + t_send + t_free + t_apply) / iters;
  state.counters["schedule_us"] = t_schedule / iters;
  state.counters["serialize_us"] = t_serialize / iters;
  state.counters["send_us"] = t_send / iters;
  state.counters["free_us"] = t_free / iters;
  state.counters["apply_us"] = t_apply / iters;
  state.counters["step_us"] = step;
  state.counters["pct_of_5ms_step"] = 100.0 * step / kStepBudgetUs;
  state.counters["sub_recv_us"] = t_recv / iters;
  state.counters["plan_bytes"] = plan_bytes / iters;
}

BENCHMARK_CAPTURE(BM_CoordinatorStep, tcp, Transport::kTcp)
    ->ArgName("inflight")
    ->Arg(32)
    ->Arg(256)
    ->Arg(1024)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_CoordinatorStep, inproc, Transport::kInproc)
    ->ArgName("inflight")
    ->Arg(32)
    ->Arg(256)
    ->Arg(1024)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
