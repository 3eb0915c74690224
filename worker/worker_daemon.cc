#include "worker/worker_daemon.h"

#include <malloc.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <string_view>

#include <zmq_addon.hpp>

#include "common/cluster_config_proto.h"
#include "common/local_address.h"
#include "common/log_limiter.h"
#include "worker/backend.h"
#include "worker/model/shard.h"

namespace flover {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {
constexpr int kLogLinesPerSecond = 10;  // of each kind that the coordinator's messages trigger
}  // namespace

WorkerDaemon::WorkerDaemon(const WorkerOptions& options) : options_(options) {}

WorkerDaemon::~WorkerDaemon() = default;

std::string WorkerDaemon::Name() const {
  return "worker " + std::to_string(options_.replica) + "/" + std::to_string(options_.rank);
}

Result<std::unique_ptr<WorkerDaemon>> WorkerDaemon::Start(const WorkerOptions& options, const std::atomic<bool>* stop) {
  std::unique_ptr<WorkerDaemon> w(new WorkerDaemon(options));
  w->stop_ = stop;
  if (w->options_.host.empty()) {
    Result<std::string> local = LocalAddressToward(options.coordinator);
    if (local.ok()) {
      w->options_.host = *local;
      spdlog::info("{}: collectives on {}, this host's address toward the coordinator {} (--host overrides)", w->Name(),
                   w->options_.host, options.coordinator);
    } else {
      w->options_.host = "127.0.0.1";
      spdlog::warn("{}: collectives on 127.0.0.1, so only ranks on this host reach them: {}; give --host ADDRESS",
                   w->Name(), local.status().ToString());
    }
  }
  FLOVER_ASSIGN_OR_RETURN(
      w->control_, ControlChannel::Connect(w->context_, options.coordinator, options.curve ? &*options.curve : nullptr,
                                           options.max_message_bytes));
  try {
    FLOVER_RETURN_IF_ERROR(w->Register());
    if (Status s = w->Load(); !s.ok()) {
      if (!w->stopping()) w->ReportFailure("startup failed: " + s.ToString());  // so the coordinator can say why
      return s;
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return Cancelled("interrupted by a signal while starting");
    return Unavailable(std::string("ZeroMQ error while starting: ") + e.what());
  }
  return w;
}

bool WorkerDaemon::stopping() const { return stop_ != nullptr && stop_->load(); }

Status WorkerDaemon::Register() {
  proto::WorkerMessage m;
  proto::RegisterWorker* r = m.mutable_register_();
  r->set_replica(options_.replica);
  r->set_rank(options_.rank);
  r->set_host(options_.host);
  r->set_pid(static_cast<int32_t>(getpid()));
  r->set_device("cpu");
  FLOVER_RETURN_IF_ERROR(control_->Send(m));
  // A refusal with `retry` (this rank is still live under an old process of ours that
  // the coordinator has not yet declared dead) is asked again until the deadline.
  const auto deadline = Clock::now() + options_.register_timeout;
  auto next_retry = Clock::time_point::max();
  bool waiting = false;
  proto::RegisterReply reply;
  for (;;) {
    if (stopping()) return Cancelled("stopped by a signal while registering");
    if (Clock::now() > deadline)
      return Unavailable(reply.retry()
                             ? "the coordinator still refuses " + Name() + " after " +
                                   std::to_string(options_.register_timeout.count() / 1000) + " s: " + reply.error()
                             : "no answer from the coordinator at " + options_.coordinator + " within " +
                                   std::to_string(options_.register_timeout.count() / 1000) + " s");
    if (Clock::now() >= next_retry) {
      FLOVER_RETURN_IF_ERROR(control_->Send(m));
      next_retry = Clock::time_point::max();
    }
    FLOVER_ASSIGN_OR_RETURN(std::optional<proto::CoordinatorMessage> msg, control_->Receive(200ms));
    if (!msg || !msg->has_register_reply()) continue;
    reply = msg->register_reply();
    if (reply.accepted() || !reply.retry()) break;
    if (!waiting) spdlog::warn("{}: {}; registering again every 500 ms", Name(), reply.error());
    waiting = true;
    next_retry = Clock::now() + 500ms;
  }
  if (!reply.accepted()) return InvalidArgument("the coordinator refused " + Name() + ": " + reply.error());
  if (!reply.has_config()) return InvalidArgument("the coordinator's RegisterReply carries no cluster config");
  Result<ClusterConfig> config = FromProto(reply.config());
  if (!config.ok()) return config.status().WithContext("the coordinator's cluster config");
  config_ = std::move(config).value();
  plan_topic_ = reply.plan_topic();
  // The cluster's bound: for the plans from their first connection, for the control
  // connection from its next one.
  const int64_t max_message_bytes = config_.limits.max_worker_message_bytes;
  control_->SetMaxMessageBytes(max_message_bytes);

  plans_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::sub);
  plans_->set(zmq::sockopt::rcvhwm, 0);  // never drop plans on our side
  plans_->set(zmq::sockopt::maxmsgsize, max_message_bytes);
  plans_->set(zmq::sockopt::subscribe, plan_topic_);
  if (options_.curve) FLOVER_RETURN_IF_ERROR(ApplyCurveClient(*plans_, *options_.curve));
  plans_->connect(reply.plans_endpoint());
  plans_endpoint_ = reply.plans_endpoint();
  spdlog::info("{}: registered with {} (cluster '{}', TP {})", Name(), options_.coordinator, config_.name,
               config_.tensor_parallel);
  return Status::Ok();
}

namespace {

// Loading frees one whole tensor after another and the decoder repacks its weights;
// glibc keeps much of what was freed in its heap (tens of MB for a 110M model). Hand it
// back, so that the worker's resident memory is its shard and KV cache.
void ReleaseFreedMemory() {
#ifdef __GLIBC__
  ::malloc_trim(0);
#endif
}

}  // namespace

Status WorkerDaemon::Load() {
  const WorkerConfig* wc = config_.FindWorker(options_.replica, options_.rank);
  const int threads = options_.threads > 0 ? options_.threads : (wc && wc->threads > 0 ? wc->threads : 0);
  if (threads > 0) omp_set_num_threads(threads);
  compute_threads_ = omp_get_max_threads();

  const auto t0 = Clock::now();
  BackendConfig backend;
  backend.device = wc ? wc->device : "cpu";
  backend.model = config_.model.path;
  backend.dummy_seed = config_.model.dummy_seed;
  // A model that does not fit the config fails on its shape, before any tensor is read.
  backend.check_model = [this](const ModelSpec& spec) {
    FLOVER_RETURN_IF_ERROR(ValidateAgainstModel(config_, spec));
    return CheckTensorParallel(spec, config_.tensor_parallel).WithContext(config_.source);
  };
  backend.kv_block_size = config_.kv_cache.block_size;
  backend.kv_memory_bytes = static_cast<int64_t>(config_.kv_cache.memory_mib * 1024 * 1024);
  backend.kv_dtype = config_.kv_cache.dtype;
  if (backend.device == "cpu") {
    backend.cpu_weights = WeightPolicyFor(config_.model.dtype);
  } else {
    backend.cuda_dtype = CudaWorkerDType(config_.model);
  }
  backend.max_step_tokens = config_.scheduler.max_step_tokens;
  backend.max_rows = config_.scheduler.max_running;
  BackendGroup group;
  group.shard = ShardInfo{options_.rank, config_.tensor_parallel};
  group.store = control_.get();
  group.prefix = "replica/" + std::to_string(options_.replica);
  group.cpu.transport = config_.cpu_transport;
  group.cpu.bind_host = options_.host;
  FLOVER_ASSIGN_OR_RETURN(CreatedBackend created, CreateBackend(backend, group));
  if (!created.note.empty()) spdlog::info("{}: collectives over TCP: {}", Name(), created.note);
  backend_ = std::move(created.backend);
  ReleaseFreedMemory();
  return Ready(created.description, t0);
}

Status WorkerDaemon::AwaitPlanTopic() {
  const auto deadline = Clock::now() + options_.register_timeout;
  for (;;) {
    if (stopping()) return Cancelled("stopped by a signal while waiting for the plans");
    zmq::pollitem_t items[] = {{plans_->handle(), 0, ZMQ_POLLIN, 0}, {control_->socket().handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, 100ms);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // a signal: stopping() says whether to stop
      throw;
    }
    if (items[0].revents & ZMQ_POLLIN) {
      // Probes only: no plan is published for this replica before this rank is ready.
      for (zmq::message_t m; plans_->recv(m, zmq::recv_flags::dontwait);) {
      }
      return Status::Ok();
    }
    if (items[1].revents & ZMQ_POLLIN) {
      FLOVER_ASSIGN_OR_RETURN(std::optional<proto::CoordinatorMessage> msg, control_->Receive(0ms));
      if (msg && msg->has_shutdown()) {
        pending_shutdown_ = msg->shutdown();  // Run() acts on it
        return Status::Ok();
      }
    }
    if (Clock::now() >= deadline)
      return Unavailable("nothing arrived on the coordinator's plans endpoint " + plans_endpoint_ + " within " +
                         std::to_string(options_.register_timeout.count() / 1000) +
                         " s: is it reachable from this host (the coordinator advertises its host name for '*' "
                         "binds)?");
  }
}

Status WorkerDaemon::Ready(const std::string& description, Clock::time_point t0) {
  executor_ = std::make_unique<Executor>(backend_.get());
  runner_ = std::make_unique<PlanRunner>(executor_.get());
  const ModelSpec& spec = backend_->spec();
  FLOVER_RETURN_IF_ERROR(ValidateAgainstModel(config_, spec));
  FLOVER_RETURN_IF_ERROR(AwaitPlanTopic());
  if (pending_shutdown_) return Status::Ok();
  proto::WorkerMessage ready;
  proto::WorkerReady* r = ready.mutable_ready();
  r->set_replica(options_.replica);
  r->set_rank(options_.rank);
  *r->mutable_model() = ToProto(spec, description);
  r->set_kv_blocks(backend_->kv_blocks());
  FLOVER_RETURN_IF_ERROR(control_->Send(ready));
  spdlog::info("{}: ready in {:.2f} s: {} ({}), {} KV blocks of {} tokens", Name(),
               std::chrono::duration<double>(Clock::now() - t0).count(), description, spec.ToString(),
               backend_->kv_blocks(), backend_->kv_block_size());
  return Status::Ok();
}

Status WorkerDaemon::ExecutePlan(const proto::StepPlan& plan, std::string* result) {
  FLOVER_RETURN_IF_ERROR(plan_sequence_.Accept(plan.seq()).WithContext("replica " + std::to_string(plan.replica())));
  last_plan_seq_.store(plan_sequence_.last(), std::memory_order_relaxed);
  FLOVER_RETURN_IF_ERROR(runner_->Run(plan, step_result_.mutable_step_result()));
  if (options_.rank == 0) *result = Serialize(step_result_);
  return Status::Ok();
}

// Pipe protocol. I/O -> compute: one frame, a StepPlan's CoordinatorMessage bytes, or an
// empty frame for "stop". Compute -> I/O: two frames, kind ("result" | "failure") and
// payload (serialized WorkerMessage | message text). Rank > 0 sends only failures.
namespace {
constexpr std::string_view kPipeResult = "result";
constexpr std::string_view kPipeFailure = "failure";
}  // namespace

void WorkerDaemon::ComputeLoop(zmq::socket_t pipe) {
  auto send = [&](std::string_view kind, std::string_view payload) {
    std::array<zmq::const_buffer, 2> frames = {zmq::buffer(kind), zmq::buffer(payload)};
    (void)zmq::send_multipart(pipe, frames);
  };
  // SIGTERM/SIGINT go to the I/O thread, whose waits they end; not to this one (nor to
  // the OpenMP threads it starts), whose wait on the pipe they would break.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  omp_set_num_threads(compute_threads_);  // OpenMP's thread count is per calling thread
  std::string result;
  // After a failure this thread runs no more plans but keeps its end of the pipe open
  // and drops what comes until "stop": with the end closed, the failure could be lost
  // and the I/O thread could not hand over the plans already queued behind it.
  bool failed = false;
  try {
    for (;;) {
      zmq::message_t frame;
      if (!pipe.recv(frame, zmq::recv_flags::none) || frame.size() == 0) break;  // stop
      if (failed) continue;
      Result<proto::CoordinatorMessage> msg = Parse<proto::CoordinatorMessage>(frame.to_string_view());
      if (!msg.ok() || !msg->has_plan()) {
        send(kPipeFailure, "unreadable plan: " + (msg.ok() ? std::string("not a plan") : msg.status().ToString()));
        failed = true;
        continue;
      }
      result.clear();
      if (Status s = ExecutePlan(msg->plan(), &result); !s.ok()) {
        send(kPipeFailure, "plan " + std::to_string(msg->plan().seq()) + " failed: " + s.ToString());
        failed = true;
        continue;
      }
      if (!result.empty()) send(kPipeResult, result);
    }
  } catch (const zmq::error_t& e) {
    spdlog::error("{}: compute thread: ZeroMQ error: {}", Name(), e.what());  // context closed
  }
  compute_exited_ = true;
}

bool WorkerDaemon::StopCompute(zmq::socket_t& pipe) {
  if (!compute_thread_.joinable()) return true;
  (void)pipe.send(zmq::message_t(), zmq::send_flags::dontwait);
  // A step in flight finishes first; one blocked in a collective whose peer died ends
  // with the collective's timeout, or never: do not wait for that.
  const auto deadline = Clock::now() + std::chrono::milliseconds(std::max(config_.heartbeat.timeout_ms, 1000));
  while (!compute_exited_ && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  if (!compute_exited_) {
    spdlog::error("{}: the compute thread did not stop (stuck in a step); exiting without it", Name());
    compute_thread_.detach();
    return false;
  }
  compute_thread_.join();
  return true;
}

void WorkerDaemon::ReportFailure(const std::string& message) {
  spdlog::error("{}: {}", Name(), message);
  proto::WorkerMessage m;
  proto::WorkerFailure* f = m.mutable_failure();
  f->set_replica(options_.replica);
  f->set_rank(options_.rank);
  f->set_message(message);
  (void)control_->Send(m);
}

int WorkerDaemon::Run(const std::atomic<bool>& stop) {
  const auto interval = std::chrono::milliseconds(config_.heartbeat.interval_ms);
  const auto timeout = std::chrono::milliseconds(config_.heartbeat.timeout_ms);
  auto next_heartbeat = Clock::now();
  const std::string pipe_endpoint = "inproc://compute";
  zmq::socket_t pipe(context_, zmq::socket_type::pair);
  pipe.set(zmq::sockopt::linger, 0);
  pipe.bind(pipe_endpoint);
  {
    zmq::socket_t compute_end(context_, zmq::socket_type::pair);
    compute_end.set(zmq::sockopt::linger, 0);
    compute_end.connect(pipe_endpoint);
    compute_thread_ = std::thread(&WorkerDaemon::ComputeLoop, this, std::move(compute_end));
  }
  // The exit code once the compute thread is stopped; a thread stuck in a step makes
  // the process exit at once (the caller must not destroy state that thread uses).
  auto finish = [&](int code) {
    if (!StopCompute(pipe)) std::_Exit(code);
    return code;
  };
  // Exit 0 when the coordinator stops; non-zero when the replica failed, so that a
  // supervisor restarts this worker and the replica comes back.
  auto shut_down = [&](const proto::Shutdown& shutdown) {
    if (shutdown.replica_failed()) {
      spdlog::error("{}: shut down to be started again: {} (exit {})", Name(), shutdown.reason(), kExitReplicaFailed);
      return finish(kExitReplicaFailed);
    }
    spdlog::info("{}: shutdown: {}", Name(), shutdown.reason());
    return finish(kExitOk);
  };
  if (pending_shutdown_) return shut_down(*pending_shutdown_);
  LogLimiter control_log(kLogLinesPerSecond, 1s);  // unreadable control messages
  try {
    while (!stop.load()) {
      const auto now = Clock::now();
      if (now >= next_heartbeat) {
        proto::WorkerMessage hb;
        hb.mutable_heartbeat()->set_replica(options_.replica);
        hb.mutable_heartbeat()->set_rank(options_.rank);
        hb.mutable_heartbeat()->set_last_plan_seq(last_plan_seq_.load(std::memory_order_relaxed));
        (void)control_->Send(hb);
        next_heartbeat = now + interval;
      }
      zmq::pollitem_t items[] = {{control_->socket().handle(), 0, ZMQ_POLLIN, 0},
                                 {plans_->handle(), 0, ZMQ_POLLIN, 0},
                                 {pipe.handle(), 0, ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 3, std::min<std::chrono::milliseconds>(interval, 100ms));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;  // a signal: `stop` says whether to stop
        throw;
      }
      if (items[0].revents & ZMQ_POLLIN) {
        Result<std::optional<proto::CoordinatorMessage>> msg = control_->Receive(0ms);
        if (!msg.ok()) {
          if (auto more = control_log.Allow(Clock::now()))
            spdlog::warn("{}: ignoring control message: {}{}", Name(), msg.status().ToString(),
                         SuppressedSuffix(*more));
        } else if (*msg && (*msg)->has_shutdown()) {
          return shut_down((*msg)->shutdown());
        }
      }
      // After reading the control socket: what queued up while we were loading counts.
      if (!(items[0].revents & ZMQ_POLLIN) && Clock::now() - control_->last_heard() > timeout) {
        spdlog::error("{}: no word from the coordinator for {} ms; exiting", Name(), timeout.count());
        return finish(kExitOrphaned);
      }
      // The compute thread's news first: after a failure, the plans are not wanted.
      if (items[2].revents & ZMQ_POLLIN) {
        std::vector<zmq::message_t> frames;
        if (zmq::recv_multipart(pipe, std::back_inserter(frames), zmq::recv_flags::dontwait) && frames.size() == 2) {
          if (frames[0].to_string_view() == kPipeFailure) {
            ReportFailure(frames[1].to_string());
            return finish(kExitFailure);
          }
          // Rank 0's result, on the control connection: the coordinator takes it from
          // this registered connection only.
          if (Status s = control_->SendSerialized(frames[1].to_string_view()); !s.ok()) {
            ReportFailure("cannot send the result of a step: " + s.ToString());
            return finish(kExitFailure);
          }
        }
      }
      if (items[1].revents & ZMQ_POLLIN) {
        std::vector<zmq::message_t> frames;
        if (zmq::recv_multipart(*plans_, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
          // [topic] alone is a probe, sent while the replica was starting: ignored.
          if (frames.size() != 1 && (frames.size() != 2 || frames[1].size() == 0)) {
            ReportFailure("plan with " + std::to_string(frames.size()) + " frames (expected topic + body)");
            return finish(kExitFailure);
          }
          // Never blocks: the compute thread always reads the pipe, so a full one (as
          // many plans waiting as its high-water mark, 1000) is a step that never ends.
          if (frames.size() == 2 && !pipe.send(frames[1], zmq::send_flags::dontwait)) {
            ReportFailure("the compute thread takes no plans (a step does not end)");
            return finish(kExitFailure);
          }
        }
      }
    }
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR || !stop.load()) {  // else a signal interrupted a send: stop
      spdlog::error("{}: ZeroMQ error: {}", Name(), e.what());
      return finish(kExitFailure);
    }
  }
  spdlog::info("{}: stopping on signal", Name());
  return finish(kExitOk);
}

}  // namespace flover
