// The coordinator's defences over real sockets (docs/security.md): CURVE with ZAP on the
// client, control and plans sockets; each key on its own side; plain-text peers, unknown
// keys and a wrong server key refused with a clear error for the client library; a plans
// sniffer reads nothing; keys reloaded while running (revocation included); the
// client-connection limit, with and without CURVE; the loopback-only start-up rule. The
// decisions themselves are tested without sockets in zap_handler_test.cc.
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "client/client.h"
#include "common/curve_keys.h"
#include "tests/coordinator/coordinator_fixture.h"

namespace flover {
namespace {

namespace fs = std::filesystem;
using namespace coordinator_testing;

// Key files in a temporary folder: the coordinator's, a worker's, a client's, an
// admin's, and a stranger's that no list admits.
class Keys {
 public:
  Keys() {
    char tmpl[] = "/tmp/flover-security-test-XXXXXX";
    FLOVER_CHECK(mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    for (const char* name : {"coordinator", "workers/w", "clients/alice", "admins/root", "other/eve"}) Make(name);
  }
  ~Keys() { fs::remove_all(dir_); }

  // Writes DIR/NAME.key and .pub.
  void Make(const std::string& name) {
    Result<CurveKeyPair> pair = GenerateCurveKeyPair();
    FLOVER_CHECK(pair.ok());
    const Status s = WriteCurveKeyFiles(dir_ + "/" + name, *pair);
    FLOVER_CHECK(s.ok()) << s.ToString();
  }
  std::string Path(const std::string& file) const { return dir_ + "/" + file; }

  SecuritySettings Security() const {
    SecuritySettings s;
    s.mode = SecurityMode::kCurve;
    s.coordinator_key = Path("coordinator.key");
    s.coordinator_public_key = Path("coordinator.pub");
    s.worker_keys = Path("workers");
    s.client_keys = Path("clients");
    s.admin_keys = Path("admins");
    return s;
  }
  // The credentials of NAME (its .key) pinning the coordinator's public key.
  CurveClientKeys Of(const std::string& name, const std::string& server = "coordinator.pub") const {
    Result<CurveClientKeys> keys = LoadCurveClientKeys(Path(name + ".key"), Path(server));
    FLOVER_CHECK(keys.ok()) << keys.status().ToString();
    return *keys;
  }

 private:
  std::string dir_;
};

// The first error the client library reports for a connection, within kWait.
Status ClientError(const std::string& endpoint, const std::optional<CurveClientKeys>& keys) {
  Result<std::unique_ptr<Client>> client = Client::Connect(endpoint, keys);
  if (!client.ok()) return client.status();
  Result<proto::ClusterStatus> status = (*client)->FetchStatus(kWait);
  return status.ok() ? Status::Ok() : status.status();
}

// What a socket's monitor reports about its handshakes: the first refusal's event, or 0.
class RefusalWatch {
 public:
  RefusalWatch(zmq::context_t& context, zmq::socket_t& socket, const std::string& name) : monitor_(context) {
    monitor_.Watch(socket, name, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL);
  }
  // Waits up to `timeout` for a refusal; the event (and its value), or 0.
  std::pair<int, uint32_t> Wait(milliseconds timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    while (SteadyClock::now() < deadline) {
      for (const DisconnectMonitor::Event& e : monitor_.DrainEvents())
        if (e.event != ZMQ_EVENT_DISCONNECTED) return {e.event, e.value};
      std::this_thread::sleep_for(5ms);
    }
    return {0, 0};
  }

 private:
  DisconnectMonitor monitor_;
};

class CoordinatorSecurityTest : public CoordinatorTest {
 protected:
  void StartSecured(Options o = Options()) {
    o.security = keys_.Security();
    Start(o);
  }
  Keys keys_;
};

TEST_F(CoordinatorSecurityTest, AdmittedKeysAreServedEachOnItsSide) {
  StartSecured();
  FakeWorker& w = AddWorker(0, 0, keys_.Of("workers/w"));
  w.Start();
  FakeClient& alice = AddClient(keys_.Of("clients/alice"));
  ASSERT_TRUE(WaitReplicaState(alice, 0, "ready"));
  alice.Submit("r", {1, 2}, 1);
  const uint64_t id = ExpectAccepted(alice, "r");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {{id, 9, proto::FINISH_LENGTH}});
  ASSERT_TRUE(Reply(alice).has_token());
  ASSERT_TRUE(Reply(alice).has_done());
  // The roles: a client key does not see where the workers run, an admin key does.
  EXPECT_EQ(GetStatus(alice).replicas(0).workers(0).pid(), 0);
  FakeClient& root = AddClient(keys_.Of("admins/root"));
  EXPECT_EQ(GetStatus(root).replicas(0).workers(0).pid(), w.pid());
  // The library client, with the same keys.
  EXPECT_TRUE(ClientError(endpoints_.client, keys_.Of("clients/alice")).ok());
}

TEST_F(CoordinatorSecurityTest, RegistrationCarriesNoKeyMaterial) {
  StartSecured();
  FakeWorker& w = AddWorker(0, 0, keys_.Of("workers/w"));
  const proto::RegisterReply reply = w.Register();
  ASSERT_TRUE(reply.accepted()) << reply.error();
  const std::string bytes = reply.SerializeAsString();
  EXPECT_EQ(bytes.find(keys_.Path("")), std::string::npos) << "a key path went over the wire";
  EXPECT_EQ(bytes.find(".key"), std::string::npos);
  Result<CurveKeyPair> own = LoadCurveKeyPair(keys_.Path("coordinator.key"));
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(bytes.find(own->secret_key.Z85()), std::string::npos);
}

TEST_F(CoordinatorSecurityTest, StrangersPlainTextPeersAndWrongServerKeysAreRefusedClearly) {
  StartSecured();
  Status s = ClientError(endpoints_.client, keys_.Of("other/eve"));
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("refused this client's key"), std::string::npos) << s.ToString();
  // A worker's key is not a client's.
  s = ClientError(endpoints_.client, keys_.Of("workers/w"));
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  // Plain text against CURVE.
  s = ClientError(endpoints_.client, std::nullopt);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("requires CURVE"), std::string::npos) << s.ToString();
  // A client that pins another server key: the coordinator cannot read its HELLO.
  s = ClientError(endpoints_.client, keys_.Of("clients/alice", "other/eve.pub"));
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("dropped the connection during the CURVE handshake"), std::string::npos) << s.ToString();
  // The coordinator still serves an admitted client.
  EXPECT_TRUE(ClientError(endpoints_.client, keys_.Of("clients/alice")).ok());
}

TEST_F(CoordinatorSecurityTest, AClientKeyCanNeitherRegisterNorReadThePlans) {
  StartSecured();
  FakeWorker& w = AddWorker(0, 0, keys_.Of("workers/w"));
  const proto::RegisterReply reply = w.Register();
  ASSERT_TRUE(reply.accepted()) << reply.error();

  // A client key on the control socket: refused in the handshake; no reply ever.
  zmq::socket_t control(context_, zmq::socket_type::dealer);
  control.set(zmq::sockopt::linger, 0);
  ASSERT_TRUE(ApplyCurveClient(control, keys_.Of("clients/alice")).ok());
  RefusalWatch control_refusal(context_, control, "control-as-client");
  control.connect(endpoints_.control);
  control.send(zmq::buffer(Serialize(RegisterMessage(0, 0, 4242))), zmq::send_flags::dontwait);
  EXPECT_EQ(control_refusal.Wait(kWait), std::make_pair(int(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH), 400u));

  // Sniffers of the plans: a client key, a stranger's key, plain text. Each subscribes to
  // everything.
  std::vector<std::unique_ptr<zmq::socket_t>> sniffers;
  std::vector<std::unique_ptr<RefusalWatch>> refusals;
  const std::optional<CurveClientKeys> sniffer_keys[] = {keys_.Of("admins/root"), keys_.Of("other/eve"), std::nullopt};
  for (const std::optional<CurveClientKeys>& k : sniffer_keys) {
    auto sub = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::sub);
    sub->set(zmq::sockopt::linger, 0);
    sub->set(zmq::sockopt::subscribe, "");
    if (k) {
      ASSERT_TRUE(ApplyCurveClient(*sub, *k).ok());
    }
    refusals.push_back(std::make_unique<RefusalWatch>(context_, *sub, "sniffer-" + std::to_string(sniffers.size())));
    sub->connect(endpoints_.plans);
    sniffers.push_back(std::move(sub));
  }
  for (auto& refusal : refusals) EXPECT_NE(refusal->Wait(kWait).first, 0) << "a sniffer's handshake went through";

  // The real worker gets its plans meanwhile; the sniffers get nothing.
  w.Connect(reply);
  w.Ready(TestModel(), 16);
  FakeClient& alice = AddClient(keys_.Of("clients/alice"));
  ASSERT_TRUE(WaitReplicaState(alice, 0, "ready"));
  alice.Submit("secret prompt", {1, 2, 3}, 1);
  const uint64_t id = ExpectAccepted(alice, "secret prompt");
  std::optional<proto::StepPlan> plan = ExpectPlan(w);
  ASSERT_TRUE(plan.has_value());
  w.Answer(*plan, {{id, 9, proto::FINISH_LENGTH}});
  ASSERT_TRUE(Reply(alice).has_token());
  for (auto& sub : sniffers) {
    zmq::message_t m;
    EXPECT_FALSE(sub->recv(m, zmq::recv_flags::dontwait)) << "a sniffer read " << m.size() << " bytes";
  }
}

TEST_F(CoordinatorSecurityTest, ReloadAdmitsNewKeysAndRevokesRemovedOnesOnOpenConnections) {
  StartSecured();
  FakeClient& alice = AddClient(keys_.Of("clients/alice"));
  GetStatus(alice);  // connected and served
  keys_.Make("clients/bob");
  Status bob = ClientError(endpoints_.client, keys_.Of("clients/bob"));
  EXPECT_EQ(bob.code(), StatusCode::kPermissionDenied) << "not admitted before the reload: " << bob.ToString();

  fs::remove(keys_.Path("clients/alice.pub"));
  coordinator_->ReloadKeys();  // what SIGHUP does
  // Bob gets in once the loop has reloaded (it does before its next poll).
  const auto deadline = SteadyClock::now() + kWait;
  while (!(bob = ClientError(endpoints_.client, keys_.Of("clients/bob"))).ok() && SteadyClock::now() < deadline) {
  }
  EXPECT_TRUE(bob.ok()) << bob.ToString();
  // Alice's connection is open, but her key is no longer admitted.
  proto::ClientMessage m;
  m.mutable_status();
  alice.Send(m);
  const proto::ServerMessage refused = Reply(alice);
  ASSERT_TRUE(refused.has_error()) << refused.DebugString();
  EXPECT_EQ(refused.error().code(), "PermissionDenied");

  // A bad key file does not take the keys away: the old ones stay.
  std::ofstream(keys_.Path("clients/broken.pub")) << "public-key: nope\n";
  coordinator_->ReloadKeys();
  EXPECT_TRUE(ClientError(endpoints_.client, keys_.Of("clients/bob")).ok());
}

// The limit holds without CURVE too: libzmq 4.3 asks ZAP about plain-text (NULL)
// connections of a socket with a ZAP domain.
TEST_F(CoordinatorSecurityTest, ClientConnectionLimitRefusesOneMoreClientButNotWorkers) {
  for (bool curve : {false, true}) {
    SCOPED_TRACE(curve ? "curve" : "plain text");
    Options o;
    o.limits.max_client_connections = 2;
    if (curve) o.security = keys_.Security();
    Start(o);
    const std::optional<CurveClientKeys> client_keys = curve ? std::optional(keys_.Of("clients/alice")) : std::nullopt;
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 2; ++i) {
      Result<std::unique_ptr<Client>> c = Client::Connect(endpoints_.client, client_keys);
      ASSERT_TRUE(c.ok());
      ASSERT_TRUE((*c)->FetchStatus(kWait).ok()) << "client " << i;
      clients.push_back(std::move(c).value());
    }
    const Status third = ClientError(endpoints_.client, client_keys);
    EXPECT_EQ(third.code(), StatusCode::kResourceExhausted) << third.ToString();
    EXPECT_NE(third.message().find("limits.max_client_connections"), std::string::npos) << third.ToString();
    // Workers have their own socket.
    FakeWorker& w = AddWorker(0, 0, curve ? std::optional(keys_.Of("workers/w")) : std::nullopt);
    EXPECT_TRUE(w.Register().accepted());
    // A client that leaves makes room.
    clients.pop_back();
    Status again;
    const auto deadline = SteadyClock::now() + kWait;
    while (!(again = ClientError(endpoints_.client, client_keys)).ok() && SteadyClock::now() < deadline) {
    }
    EXPECT_TRUE(again.ok()) << again.ToString();
    StopCoordinator();
    workers_.clear();
    alive_.clear();
  }
}

// ---- the start-up rule

Status CreateWith(const std::string& client_endpoint, SecurityMode mode) {
  ClusterConfig config = TestConfig(Options());
  config.endpoints.client = client_endpoint;
  config.security.mode = mode;
  return Coordinator::Create(config).status();
}

TEST(CoordinatorStartupRule, NonLoopbackBindsNeedASecuritySection) {
  for (const char* endpoint : {"tcp://*:*", "tcp://0.0.0.0:*"}) {
    const Status s = CreateWith(endpoint, SecurityMode::kNone);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << endpoint;
    EXPECT_NE(s.message().find("add a security section (docs/security.md) or bind 127.0.0.1"), std::string::npos)
        << s.ToString();
    // Plain text on the network only when the config says so.
    EXPECT_TRUE(CreateWith(endpoint, SecurityMode::kInsecure).ok()) << endpoint;
  }
  EXPECT_TRUE(CreateWith("tcp://127.0.0.1:*", SecurityMode::kNone).ok());
}

// The first interface with an IPv4 address off loopback ("eth0"), or "".
std::string NonLoopbackInterface() {
  ifaddrs* addresses = nullptr;
  if (getifaddrs(&addresses) != 0) return "";
  std::string name;
  for (ifaddrs* a = addresses; a != nullptr && name.empty(); a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET || (a->ifa_flags & IFF_LOOPBACK)) continue;
    name = a->ifa_name;
  }
  freeifaddrs(addresses);
  return name;
}

// A name in a bind is an interface's (libzmq resolves no DNS names when it binds): the
// address it bound is what is checked.
TEST(CoordinatorStartupRule, ANameThatBindsOffLoopbackIsRefused) {
  EXPECT_TRUE(CreateWith("tcp://lo:*", SecurityMode::kNone).ok()) << "loopback by name";
  const std::string nic = NonLoopbackInterface();
  if (nic.empty()) GTEST_SKIP() << "this machine has no network interface off loopback to bind";
  const Status s = CreateWith("tcp://" + nic + ":*", SecurityMode::kNone);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("which is not a loopback address"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("add a security section (docs/security.md) or bind 127.0.0.1"), std::string::npos);
}

TEST(CoordinatorStartupRule, KeyFilesAreCheckedAtStart) {
  Keys keys;
  ClusterConfig config = TestConfig(Options());
  config.security = keys.Security();
  ASSERT_TRUE(Coordinator::Create(config).ok());
  // A key pair others may read.
  ASSERT_EQ(chmod(keys.Path("coordinator.key").c_str(), 0644), 0);
  Status s = Coordinator::Create(config).status();
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("chmod 600 " + keys.Path("coordinator.key")), std::string::npos) << s.ToString();
  ASSERT_EQ(chmod(keys.Path("coordinator.key").c_str(), 0600), 0);
  // A public key that is not the coordinator's: workers pinning it would be refused.
  config.security.coordinator_public_key = keys.Path("other/eve.pub");
  s = Coordinator::Create(config).status();
  EXPECT_NE(s.message().find("is not the public key of security.coordinator_key"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace flover
