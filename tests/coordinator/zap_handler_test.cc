// Who may connect to the coordinator (coordinator/zap_handler.h): the ZAP decision as a
// table of (mode, domain, mechanism, key) -> admitted with a user id / refused with a
// code; the client-connection limit; the roles of messages under reloaded keys; the
// access list's rules. Real sockets are in coordinator_security_test.cc.
#include "coordinator/zap_handler.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace flover {
namespace {

NamedCurveKey Key(const std::string& name) {
  Result<CurveKeyPair> pair = GenerateCurveKeyPair();
  EXPECT_TRUE(pair.ok());
  return NamedCurveKey{name, "/keys/" + name + ".pub", pair->public_key};
}

class ZapDecisionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<AccessList> list = AccessList::FromKeys({worker_}, {client_}, {admin_});
    ASSERT_TRUE(list.ok()) << list.status().ToString();
    keys_ = *list;
  }
  ZapDecision Decide(SecurityMode mode, const char* domain, const std::string& mechanism, const NamedCurveKey* key,
                     int connections = 1, int max_connections = 10) {
    ZapPolicy policy{
        .mode = mode, .keys = &keys_, .client_connections = connections, .max_client_connections = max_connections};
    return DecideZap(ZapRequest{domain, mechanism, key ? key->key.Binary() : ""}, policy);
  }

  NamedCurveKey worker_ = Key("w1"), client_ = Key("alice"), admin_ = Key("root"), stranger_ = Key("eve");
  AccessList keys_;
};

TEST_F(ZapDecisionTest, CurveAdmitsEachKeyOnlyInItsDomain) {
  struct Case {
    const char* domain;
    const NamedCurveKey* key;
    std::string code;     // "200" or a refusal
    std::string user_id;  // when admitted
    std::string reason;   // part of the status text when refused
  };
  const Case cases[] = {
      {kWorkerDomain, &worker_, "200", "worker:" + worker_.key.Z85(), ""},
      {kClientDomain, &client_, "200", "client:" + client_.key.Z85(), ""},
      {kClientDomain, &admin_, "200", "admin:" + admin_.key.Z85(), ""},
      // A client key never registers as a worker nor reads the plans.
      {kWorkerDomain, &client_, "400", "", "client key 'alice' may not connect as a worker"},
      {kWorkerDomain, &admin_, "400", "", "admin key 'root' may not connect as a worker"},
      {kClientDomain, &worker_, "400", "", "worker key 'w1' may not connect as a client"},
      {kClientDomain, &stranger_, "400", "", "is not admitted"},
      {kWorkerDomain, &stranger_, "400", "", "is not admitted"},
      {"results", &worker_, "400", "", "unknown ZAP domain"},
  };
  for (const Case& c : cases) {
    const ZapDecision d = Decide(SecurityMode::kCurve, c.domain, "CURVE", c.key);
    EXPECT_EQ(d.status_code, c.code) << c.domain << " " << c.key->name << ": " << d.status_text;
    EXPECT_EQ(d.admitted, c.code == "200");
    EXPECT_EQ(d.user_id, c.user_id);
    if (!c.reason.empty()) {
      EXPECT_NE(d.status_text.find(c.reason), std::string::npos) << d.status_text;
    }
  }
}

TEST_F(ZapDecisionTest, EachModeTakesOnlyItsMechanism) {
  EXPECT_EQ(Decide(SecurityMode::kCurve, kClientDomain, "NULL", nullptr).status_code, "400");
  EXPECT_EQ(Decide(SecurityMode::kCurve, kClientDomain, "PLAIN", nullptr).status_code, "400");
  EXPECT_EQ(Decide(SecurityMode::kNone, kClientDomain, "CURVE", &admin_).status_code, "400");
  ZapPolicy policy{.mode = SecurityMode::kCurve, .keys = &keys_, .client_connections = 1, .max_client_connections = 9};
  EXPECT_EQ(DecideZap(ZapRequest{kClientDomain, "CURVE", "short"}, policy).status_code, "400");
}

TEST_F(ZapDecisionTest, PlainTextModes) {
  // No security section (loopback only): every local peer is an admin.
  ZapDecision d = Decide(SecurityMode::kNone, kClientDomain, "NULL", nullptr);
  EXPECT_TRUE(d.admitted);
  EXPECT_EQ(d.user_id, "admin:loopback");
  EXPECT_EQ(Decide(SecurityMode::kNone, kWorkerDomain, "NULL", nullptr).user_id, "worker:loopback");
  // mode insecure: anyone may connect, nobody is an admin.
  d = Decide(SecurityMode::kInsecure, kClientDomain, "NULL", nullptr);
  EXPECT_TRUE(d.admitted);
  EXPECT_EQ(d.user_id, "client:insecure");
  EXPECT_EQ(Decide(SecurityMode::kInsecure, kWorkerDomain, "NULL", nullptr).user_id, "worker:insecure");
}

TEST_F(ZapDecisionTest, ClientConnectionLimitRefusesClientsOnlyWith500) {
  for (SecurityMode mode : {SecurityMode::kNone, SecurityMode::kInsecure, SecurityMode::kCurve}) {
    const std::string mechanism = mode == SecurityMode::kCurve ? "CURVE" : "NULL";
    // The asking connection is counted: 3 open of at most 3 is fine, 4 is one too many.
    EXPECT_TRUE(Decide(mode, kClientDomain, mechanism, &client_, 3, 3).admitted);
    const ZapDecision d = Decide(mode, kClientDomain, mechanism, &client_, 4, 3);
    EXPECT_FALSE(d.admitted);
    EXPECT_EQ(d.status_code, kZapAtConnectionLimit);
    EXPECT_NE(d.status_text.find("limits.max_client_connections"), std::string::npos) << d.status_text;
    // Workers have their own socket: no limit.
    EXPECT_TRUE(Decide(mode, kWorkerDomain, mechanism, &worker_, 4, 3).admitted);
  }
  // A key that is not admitted hears 400, not that the server is busy.
  EXPECT_EQ(Decide(SecurityMode::kCurve, kClientDomain, "CURVE", &stranger_, 4, 3).status_code, "400");
}

TEST_F(ZapDecisionTest, MessagesAreCheckedAgainstTheKeysOfNow) {
  const std::string alice = "client:" + client_.key.Z85(), root = "admin:" + admin_.key.Z85();
  const std::string w1 = "worker:" + worker_.key.Z85();
  EXPECT_EQ(ClientRoleOf(alice.c_str(), SecurityMode::kCurve, keys_), ClientRole::kClient);
  EXPECT_EQ(ClientRoleOf(root.c_str(), SecurityMode::kCurve, keys_), ClientRole::kAdmin);
  EXPECT_EQ(ClientRoleOf(w1.c_str(), SecurityMode::kCurve, keys_), std::nullopt);
  EXPECT_EQ(ClientRoleOf(nullptr, SecurityMode::kCurve, keys_), std::nullopt);
  EXPECT_TRUE(IsAdmittedWorker(w1.c_str(), SecurityMode::kCurve, keys_));
  EXPECT_FALSE(IsAdmittedWorker(alice.c_str(), SecurityMode::kCurve, keys_));
  // Reloaded: alice revoked, root demoted to a client, the worker key revoked.
  Result<AccessList> reloaded = AccessList::FromKeys({}, {admin_}, {});
  ASSERT_TRUE(reloaded.ok());
  EXPECT_EQ(ClientRoleOf(alice.c_str(), SecurityMode::kCurve, *reloaded), std::nullopt);
  EXPECT_EQ(ClientRoleOf(root.c_str(), SecurityMode::kCurve, *reloaded), ClientRole::kClient);
  EXPECT_FALSE(IsAdmittedWorker(w1.c_str(), SecurityMode::kCurve, *reloaded));
  // Plain text: the ids the decisions give.
  const AccessList none;
  EXPECT_EQ(ClientRoleOf("admin:loopback", SecurityMode::kNone, none), ClientRole::kAdmin);
  EXPECT_EQ(ClientRoleOf("client:insecure", SecurityMode::kInsecure, none), ClientRole::kClient);
  EXPECT_EQ(ClientRoleOf("admin:loopback", SecurityMode::kInsecure, none), std::nullopt);
  EXPECT_TRUE(IsAdmittedWorker("worker:loopback", SecurityMode::kNone, none));
  EXPECT_FALSE(IsAdmittedWorker("worker:loopback", SecurityMode::kInsecure, none));
}

TEST(AccessListTest, AKeyIsAWorkersOrAClientsNeverBoth) {
  const NamedCurveKey a = Key("a");
  NamedCurveKey same = a;
  same.name = "b";
  same.path = "/keys/clients/b.pub";
  Result<AccessList> both = AccessList::FromKeys({a}, {same}, {});
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.status().message().find("/keys/clients/b.pub and /keys/a.pub hold the same public key"),
            std::string::npos)
      << both.status().ToString();
  EXPECT_FALSE(AccessList::FromKeys({a}, {}, {same}).ok());
  // Client and admin: an admin.
  Result<AccessList> promoted = AccessList::FromKeys({}, {a}, {same});
  ASSERT_TRUE(promoted.ok());
  EXPECT_EQ(promoted->Find(a.key)->role, PeerRole::kAdmin);
  EXPECT_EQ(promoted->Count(PeerRole::kAdmin), 1);
  EXPECT_EQ(promoted->Count(PeerRole::kClient), 0);
}

}  // namespace
}  // namespace flover
