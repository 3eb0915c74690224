#include "client/status_command.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "client/client.h"
#include "client/status_json.h"

namespace flover {
namespace {

void Print(const proto::ClusterStatus& s) {
  std::printf("cluster %s (config generation %llu): %s, up %.0f s, %d queued, %llu completed", s.name().c_str(),
              static_cast<unsigned long long>(s.config_generation()), s.model().description().c_str(),
              s.uptime_seconds(), s.queued(), static_cast<unsigned long long>(s.completed()));
  if (s.moved() > 0)
    std::printf(", %llu moved from failed replicas", static_cast<unsigned long long>(s.moved()));
  if (s.abandoned() > 0)
    std::printf(", %llu cancelled as their client left", static_cast<unsigned long long>(s.abandoned()));
  if (s.rejected_messages() > 0)
    std::printf(", %llu worker messages rejected", static_cast<unsigned long long>(s.rejected_messages()));
  if (s.clients_cut_off() > 0)
    std::printf(", %llu client(s) cut off for not reading", static_cast<unsigned long long>(s.clients_cut_off()));
  std::printf("\n");
  if (const proto::LatencySummary& l = s.latency(); l.requests() > 0) {
    auto ms = [](const proto::LatencyPercentiles& p) {
      char buf[96];
      std::snprintf(buf, sizeof(buf), "p50 %.1f / p99 %.1f ms", 1000 * p.p50(), 1000 * p.p99());
      return std::string(buf);
    };
    std::printf("  latency, last %.0f s, %u requests: first token %s, per token %s, total %s, queued %s\n",
                l.window_seconds(), l.requests(), ms(l.first_token()).c_str(), ms(l.per_token()).c_str(),
                ms(l.total()).c_str(), ms(l.queue()).c_str());
  }
  for (const auto& r : s.replicas()) {
    std::printf("  replica %d: %-9s running %d, waiting %d, KV blocks %d/%d, %.1f steps/s, %.1f tokens/s%s%s\n",
                r.replica(), r.state().c_str(), r.running(), r.waiting(), r.kv_blocks_used(), r.kv_blocks_total(),
                r.steps_per_second(), r.tokens_per_second(), r.error().empty() ? "" : " - ", r.error().c_str());
    for (const auto& w : r.workers())
      std::printf("    rank %d: %-10s %s pid %d %s, heartbeat %.1f s ago\n", w.rank(), w.state().c_str(),
                  w.host().c_str(), w.pid(), w.device().c_str(), w.last_heartbeat_age_s());
  }
}

int Probe(Client& client, const StatusOptions& o) {
  Result<proto::ClusterStatus> status =
      client.FetchStatus(std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
  if (!status.ok()) {
    std::printf("not ready: %s: %s\n", o.endpoint.c_str(), status.status().ToString().c_str());
    return 1;
  }
  int ready = 0;
  std::string others;
  for (const auto& r : status->replicas()) {
    if (r.state() == "ready") {
      ++ready;
    } else {
      others += (others.empty() ? "" : ", ") + ("replica " + std::to_string(r.replica()) + " " + r.state());
    }
  }
  std::printf("%s: %d of %d replicas ready%s%s\n", ready > 0 ? "ready" : "not ready", ready,
              status->replicas_size(), others.empty() ? "" : "; ", others.c_str());
  return ready > 0 ? 0 : 1;
}

}  // namespace

int StatusCommand(const StatusOptions& o) {
  Result<std::unique_ptr<Client>> client = ConnectWithKeys(o.endpoint, o.keys);
  if (!client.ok()) {
    std::fprintf(stderr, "flover status: %s\n", client.status().ToString().c_str());
    return 1;
  }
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  if (o.wait_ready_s <= 0) {
    // Nothing listening is told apart from a coordinator that does not answer.
    if (Status connected = (*client)->WaitConnected(timeout); !connected.ok()) {
      if (o.probe) {
        std::printf("not ready: %s\n", connected.ToString().c_str());
      } else {
        std::fprintf(stderr, "flover status: %s\n", connected.ToString().c_str());
      }
      return 1;
    }
  }
  if (o.probe) return Probe(**client, o);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.wait_ready_s);
  for (;;) {
    Result<proto::ClusterStatus> status = (*client)->FetchStatus(timeout);
    const bool waiting = o.wait_ready_s > 0;
    if (status.ok() && (!waiting || AllReplicasReady(*status))) {
      if (o.json) {
        std::printf("%s\n", StatusJson(*status).c_str());
      } else {
        Print(*status);
      }
      return 0;
    }
    if (!waiting || std::chrono::steady_clock::now() >= deadline) {
      if (!status.ok()) {
        std::fprintf(stderr, "flover status: %s: %s\n", o.endpoint.c_str(), status.status().ToString().c_str());
      } else {
        Print(*status);
        std::fprintf(stderr, "flover status: not every replica is ready after %.0f s\n", o.wait_ready_s);
      }
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace flover
