// Who may connect to the coordinator. See zap_handler.h.
#include "coordinator/zap_handler.h"

#include <array>
#include <iterator>

#include <zmq_addon.hpp>

namespace flover {
namespace {

constexpr const char* kLoopbackPeer = "loopback";
constexpr const char* kInsecurePeer = "insecure";

ZapDecision Admit(PeerRole role, const std::string& who) {
  return ZapDecision{.admitted = true,
                     .status_code = "200",
                     .status_text = "OK",
                     .user_id = std::string(PeerRoleName(role)) + ":" + who};
}

ZapDecision Refuse(const char* code, std::string why) {
  return ZapDecision{.admitted = false, .status_code = code, .status_text = std::move(why), .user_id = ""};
}

// The role part and the rest of a user id "<role>:<rest>".
std::optional<std::pair<std::string_view, std::string_view>> SplitUserId(const char* user_id) {
  if (user_id == nullptr) return std::nullopt;
  const std::string_view id(user_id);
  const size_t colon = id.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  return std::make_pair(id.substr(0, colon), id.substr(colon + 1));
}

// The role the keys of now give the user id's key; nullopt when not admitted (or not a
// CURVE user id).
std::optional<PeerRole> CurrentRole(std::string_view key_z85, const AccessList& keys) {
  Result<CurvePublicKey> key = ParseZ85PublicKey(key_z85);
  if (!key.ok()) return std::nullopt;
  const AccessList::Entry* entry = keys.Find(*key);
  if (!entry) return std::nullopt;
  return entry->role;
}

}  // namespace

const char* PeerRoleName(PeerRole role) {
  switch (role) {
    case PeerRole::kWorker: return "worker";
    case PeerRole::kClient: return "client";
    case PeerRole::kAdmin: return "admin";
  }
  return "unknown";
}

// ---------------------------------------------------------------- AccessList

Result<AccessList> AccessList::FromKeys(const std::vector<NamedCurveKey>& workers,
                                        const std::vector<NamedCurveKey>& clients,
                                        const std::vector<NamedCurveKey>& admins) {
  AccessList list;
  std::map<CurvePublicKey, std::string> paths;
  const std::pair<PeerRole, const std::vector<NamedCurveKey>*> groups[] = {
      {PeerRole::kWorker, &workers}, {PeerRole::kClient, &clients}, {PeerRole::kAdmin, &admins}};
  for (const auto& [role, keys] : groups) {
    for (const NamedCurveKey& k : *keys) {
      auto [it, inserted] = list.keys_.emplace(k.key, Entry{role, k.name});
      if (inserted) {
        paths[k.key] = k.path;
        continue;
      }
      if (it->second.role == PeerRole::kWorker || role == PeerRole::kWorker) {
        return InvalidArgument(k.path + " and " + paths[k.key] +
                               " hold the same public key, admitted as a worker's and as a client's: a key is a "
                               "worker's or a client's, never both (make one with flover keygen for each)");
      }
      it->second = Entry{PeerRole::kAdmin, k.name};  // client and admin: admin
    }
  }
  return list;
}

Result<AccessList> AccessList::Load(const SecuritySettings& security) {
  std::vector<NamedCurveKey> groups[3];
  const std::string* paths[3] = {&security.worker_keys, &security.client_keys, &security.admin_keys};
  const char* keys[3] = {"security.worker_keys", "security.client_keys", "security.admin_keys"};
  for (int i = 0; i < 3; ++i) {
    if (paths[i]->empty()) continue;
    Result<std::vector<NamedCurveKey>> loaded = LoadCurvePublicKeys(*paths[i]);
    if (!loaded.ok()) return loaded.status().WithContext(keys[i]);
    groups[i] = std::move(loaded).value();
  }
  return FromKeys(groups[0], groups[1], groups[2]);
}

const AccessList::Entry* AccessList::Find(const CurvePublicKey& key) const {
  auto it = keys_.find(key);
  return it == keys_.end() ? nullptr : &it->second;
}

int AccessList::Count(PeerRole role) const {
  int n = 0;
  for (const auto& [key, entry] : keys_) n += entry.role == role ? 1 : 0;
  return n;
}

// ---------------------------------------------------------------- decisions

ZapDecision DecideZap(const ZapRequest& request, const ZapPolicy& policy) {
  const bool client_domain = request.domain == kClientDomain;
  if (!client_domain && request.domain != kWorkerDomain)
    return Refuse(kZapRefused, "unknown ZAP domain '" + request.domain + "'");
  const bool curve = policy.mode == SecurityMode::kCurve;
  const char* expected_mechanism = curve ? "CURVE" : "NULL";
  if (request.mechanism != expected_mechanism) {
    return Refuse(kZapRefused, "mechanism " + request.mechanism + " is not accepted here (the cluster uses " +
                                   expected_mechanism + ")");
  }
  std::optional<ZapDecision> admitted;
  if (!curve) {
    const char* who = policy.mode == SecurityMode::kNone ? kLoopbackPeer : kInsecurePeer;
    const PeerRole role = !client_domain                       ? PeerRole::kWorker
                          : policy.mode == SecurityMode::kNone ? PeerRole::kAdmin
                                                               : PeerRole::kClient;
    admitted = Admit(role, who);
  } else {
    FLOVER_CHECK(policy.keys != nullptr) << "mode curve without keys";
    if (request.public_key.size() != kCurveKeyBytes)
      return Refuse(kZapRefused, "a CURVE request without a 32-byte public key");
    CurvePublicKey key;
    std::copy(request.public_key.begin(), request.public_key.end(), key.bytes.begin());
    const AccessList::Entry* entry = policy.keys->Find(key);
    if (!entry) return Refuse(kZapRefused, "public key " + key.Z85() + " is not admitted");
    const bool is_worker = entry->role == PeerRole::kWorker;
    if (client_domain && is_worker)
      return Refuse(kZapRefused, "worker key '" + entry->name + "' may not connect as a client");
    if (!client_domain && !is_worker) {
      return Refuse(kZapRefused, std::string(PeerRoleName(entry->role)) + " key '" + entry->name +
                                     "' may not connect as a worker (control, plans)");
    }
    admitted = Admit(entry->role, key.Z85());
  }
  if (client_domain && policy.client_connections > policy.max_client_connections) {
    return Refuse(kZapAtConnectionLimit, "the client socket is at its limit of " +
                                             std::to_string(policy.max_client_connections) +
                                             " connections (limits.max_client_connections)");
  }
  return *admitted;
}

std::optional<ClientRole> ClientRoleOf(const char* user_id, SecurityMode mode, const AccessList& keys) {
  const auto parts = SplitUserId(user_id);
  if (!parts) return std::nullopt;
  const auto [role, rest] = *parts;
  switch (mode) {
    case SecurityMode::kNone:
      if (role == "admin" && rest == kLoopbackPeer) return ClientRole::kAdmin;
      return std::nullopt;
    case SecurityMode::kInsecure:
      if (role == "client" && rest == kInsecurePeer) return ClientRole::kClient;
      return std::nullopt;
    case SecurityMode::kCurve: break;
  }
  if (role != "client" && role != "admin") return std::nullopt;
  const std::optional<PeerRole> now = CurrentRole(rest, keys);
  if (now == PeerRole::kClient) return ClientRole::kClient;
  if (now == PeerRole::kAdmin) return ClientRole::kAdmin;
  return std::nullopt;
}

bool IsAdmittedWorker(const char* user_id, SecurityMode mode, const AccessList& keys) {
  const auto parts = SplitUserId(user_id);
  if (!parts || parts->first != "worker") return false;
  switch (mode) {
    case SecurityMode::kNone: return parts->second == kLoopbackPeer;
    case SecurityMode::kInsecure: return parts->second == kInsecurePeer;
    case SecurityMode::kCurve: return CurrentRole(parts->second, keys) == PeerRole::kWorker;
  }
  return false;
}

// ---------------------------------------------------------------- the socket

ZapHandler::ZapHandler(zmq::context_t& context) : socket_(context, zmq::socket_type::rep) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.bind(kZapEndpoint);
}

std::vector<ZapDecision> ZapHandler::Drain(const std::function<ZapDecision(const ZapRequest&)>& decide) {
  std::vector<ZapDecision> decisions;
  for (;;) {
    // [version "1.0"][request id][domain][address][identity][mechanism][credentials...]
    std::vector<zmq::message_t> request;
    if (!zmq::recv_multipart(socket_, std::back_inserter(request), zmq::recv_flags::dontwait)) return decisions;
    ZapDecision decision;
    std::string request_id;
    if (request.size() < 6 || request[0].to_string_view() != "1.0") {
      decision = Refuse(kZapRefused, "a malformed ZAP request");
    } else {
      request_id = request[1].to_string();
      ZapRequest r{.domain = request[2].to_string(), .mechanism = request[5].to_string(), .public_key = ""};
      if (r.mechanism == "CURVE" && request.size() == 7) r.public_key = request[6].to_string();
      decision = decide(r);
    }
    // [version][request id][status code][status text][user id][metadata]
    const std::array<zmq::const_buffer, 6> reply = {zmq::str_buffer("1.0"),
                                                    zmq::buffer(request_id),
                                                    zmq::buffer(decision.status_code),
                                                    zmq::buffer(decision.status_text),
                                                    zmq::buffer(decision.user_id),
                                                    zmq::const_buffer()};
    (void)zmq::send_multipart(socket_, reply, zmq::send_flags::dontwait);
    decisions.push_back(std::move(decision));
  }
}

void ZapHandler::Close() {
  if (socket_.handle() != nullptr) socket_.close();
}

}  // namespace flover
