// WorkerDaemon's registration against a scripted coordinator (a real ROUTER socket on
// loopback): the cluster config in RegisterReply is checked before anything is loaded,
// so a coordinator that sends a bad one (buggy, hostile, another version) gets the
// worker to stop with a clear error naming the key, never to crash.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/cluster_config_proto.h"
#include "common/protocol.h"
#include "worker/worker_daemon.h"

namespace flover {
namespace {

using namespace std::chrono_literals;

// A valid one-worker config, as a coordinator would send it.
proto::ClusterConfig ValidConfig() {
  ClusterConfig config;
  config.source = "c.yaml";
  config.endpoints.control = "tcp://127.0.0.1:5556";
  config.model.path = "dummy:tiny";
  config.workers = {WorkerConfig{}};
  EXPECT_TRUE(config.Validate().ok()) << config.Validate().ToString();
  return ToProto(config);
}

// Starts a WorkerDaemon against a ROUTER that answers its RegisterWorker with `reply`;
// returns what Start returned.
Status StartAgainst(const proto::RegisterReply& reply) {
  zmq::context_t context(1);
  zmq::socket_t router(context, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  WorkerOptions options;
  options.coordinator = router.get(zmq::sockopt::last_endpoint);
  options.register_timeout = 60s;  // an upper bound: the reply comes at once

  Status started = Internal("not run");
  std::thread worker([&] {
    Result<std::unique_ptr<WorkerDaemon>> daemon = WorkerDaemon::Start(options);
    started = daemon.ok() ? Status::Ok() : daemon.status();
  });
  std::vector<zmq::message_t> frames;
  std::array<zmq::pollitem_t, 1> items = {{{router.handle(), 0, ZMQ_POLLIN, 0}}};
  zmq::poll(items, 60s);
  EXPECT_TRUE(zmq::recv_multipart(router, std::back_inserter(frames), zmq::recv_flags::dontwait));
  if (frames.size() == 2) {
    Result<proto::WorkerMessage> m = Parse<proto::WorkerMessage>(frames[1].to_string_view());
    EXPECT_TRUE(m.ok() && m->has_register_()) << (m.ok() ? m->DebugString() : m.status().ToString());
    proto::CoordinatorMessage answer;
    *answer.mutable_register_reply() = reply;
    const std::string payload = Serialize(answer);
    const std::array<zmq::const_buffer, 2> out = {zmq::buffer(frames[0].to_string_view()), zmq::buffer(payload)};
    EXPECT_TRUE(zmq::send_multipart(router, out));
  } else {
    ADD_FAILURE() << "no RegisterWorker from the worker";
  }
  worker.join();
  return started;
}

TEST(WorkerRegisterTest, ABadConfigFromTheCoordinatorIsAClearError) {
  using Mutation = std::function<void(proto::RegisterReply&)>;
  const std::vector<std::pair<Mutation, std::string>> cases = {
      {[](proto::RegisterReply& r) { r.clear_config(); }, "the coordinator's RegisterReply carries no cluster config"},
      {[](proto::RegisterReply& r) {
         r.mutable_config()->mutable_scheduler()->set_policy(static_cast<proto::SchedulerPolicy>(99));
       },
       "the coordinator's cluster config: c.yaml: scheduler.policy: 99 is not a value this build knows"},
      {[](proto::RegisterReply& r) { r.mutable_config()->mutable_model()->set_dtype(proto::MODEL_DTYPE_UNSPECIFIED); },
       "the coordinator's cluster config: c.yaml: model.dtype: is not set"},
      {[](proto::RegisterReply& r) { r.mutable_config()->mutable_kv_cache()->set_block_size(0); },
       "the coordinator's cluster config: c.yaml: kv_cache.block_size: must be >= 1, got 0"},
      {[](proto::RegisterReply& r) { r.mutable_config()->mutable_workers(0)->set_device("cuda:x"); },
       "the coordinator's cluster config: c.yaml: workers[0].device: 'cuda:x' is not cpu or cuda:N"},
  };
  for (const auto& [mutate, expected] : cases) {
    proto::RegisterReply reply;
    reply.set_accepted(true);
    *reply.mutable_config() = ValidConfig();
    reply.set_plans_endpoint("tcp://127.0.0.1:1");
    reply.set_plan_topic("replica/0/");
    mutate(reply);
    const Status status = StartAgainst(reply);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_EQ(status.message(), expected);
  }
}

}  // namespace
}  // namespace flover
