// LocalCluster's pure parts (client/local_cluster.h): the command `flover up` prints for
// a worker of another host.
#include "client/local_cluster.h"

#include <gtest/gtest.h>

#include <string>

namespace flover {
namespace {

TEST(LocalClusterTest, RemoteWorkerCommandStartsTheWorkerAsTheFileSays) {
  const WorkerConfig w{.replica = 1, .rank = 0, .host = "10.0.0.2"};
  EXPECT_EQ(RemoteWorkerCommand("tcp://10.0.0.1:5556", w, "10.0.0.2", /*curve=*/false),
            "flover-worker --coordinator tcp://10.0.0.1:5556 --replica 1 --rank 0 --host 10.0.0.2");
  EXPECT_EQ(RemoteWorkerCommand("tcp://10.0.0.1:5556", w, "10.0.0.2", /*curve=*/true),
            "flover-worker --coordinator tcp://10.0.0.1:5556 --replica 1 --rank 0 --host 10.0.0.2 --key WORKER.key "
            "--coordinator-public-key COORDINATOR.pub");
  // No host named: the worker takes its address on the route to the coordinator.
  EXPECT_EQ(RemoteWorkerCommand("tcp://10.0.0.1:5556", w, std::nullopt, /*curve=*/false),
            "flover-worker --coordinator tcp://10.0.0.1:5556 --replica 1 --rank 0");
}

TEST(LocalClusterTest, RemoteWorkerCommandSaysThatALoopbackControlEndpointIsOutOfReach) {
  const WorkerConfig w{.replica = 0, .rank = 1, .host = "10.0.0.2"};
  const std::string command = RemoteWorkerCommand("tcp://127.0.0.1:5556", w, "10.0.0.2", /*curve=*/false);
  EXPECT_EQ(command.rfind("flover-worker --coordinator tcp://127.0.0.1:5556 --replica 0 --rank 1 --host 10.0.0.2", 0),
            0u)
      << command;
  EXPECT_NE(command.find("is on loopback, which other hosts cannot reach"), std::string::npos) << command;
}

}  // namespace
}  // namespace flover
