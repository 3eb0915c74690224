// Outbox: the messages the coordinator's core decided to send, addressed, in the order
// it decided them. The ZeroMQ shell (coordinator.h) sends them; tests read them.
//
// Per peer, messages keep their order (a client sees Accepted, its tokens, then Done).
// Between the three sockets there is no order, as on the wire.
//
// Thread-safety: a value type.
#pragma once

#include <string>
#include <vector>

#include "flover.pb.h"

namespace flover {

struct Outbox {
  struct ToClient {
    std::string identity;  // ROUTER identity of the client connection
    proto::ServerMessage message;
  };
  struct ToWorker {
    std::string identity;  // ROUTER identity of the worker's control connection
    proto::CoordinatorMessage message;
  };
  struct Plan {
    int replica = 0;  // published on topic PlanTopic(replica)
    proto::CoordinatorMessage message;  // carries the StepPlan
  };

  std::vector<ToClient> clients;
  std::vector<ToWorker> workers;
  std::vector<Plan> plans;
  // Replicas whose plan topic gets a probe: the single frame [PlanTopic(replica)], which
  // tells a starting worker that its subscription has reached the plans socket.
  std::vector<int> topic_probes;
  // Clients (ROUTER identities) that asked for the cluster file to be read again: the
  // shell reads it and answers each with CoordinatorCore::AnswerReload.
  std::vector<std::string> reloads;

  bool empty() const {
    return clients.empty() && workers.empty() && plans.empty() && topic_probes.empty() && reloads.empty();
  }
};

// "replica/<i>/": the PUB topic of a replica's plans (workers subscribe to their own).
inline std::string PlanTopic(int replica) { return "replica/" + std::to_string(replica) + "/"; }

}  // namespace flover
