// Protocol helpers around the generated messages of common/proto/flover.proto:
// versioned serialisation, strict parsing (version check, unknown fields rejected),
// plan-sequence gap detection, and conversions between wire and engine types.
// No sockets here; see protocol.md for which process binds what.
//
// Thread-safety: free functions are reentrant; PlanSequence is not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/model_spec.h"
#include "common/request_params.h"
#include "common/status.h"
#include "flover.pb.h"

namespace flover {

// 2: RegisterReply carries the cluster config as a ClusterConfig message, no longer as
// YAML text (config_yaml).
// 3: step results travel on the control connection (no results socket); a stop's
// TokenOutput carries the stop token (-1 before).
inline constexpr uint32_t kProtocolVersion = 3;

// Serialises with protocol_version set. M is one of the four envelopes (ClientMessage,
// ServerMessage, WorkerMessage, CoordinatorMessage).
template <typename M>
std::string Serialize(M message) {
  message.set_protocol_version(kProtocolVersion);
  return message.SerializeAsString();
}

// Parses an envelope. Corruption if the bytes are not a message of this type;
// InvalidArgument if the version differs or (reject_unknown_fields) any nested message
// carries fields this build does not know. `what` names the message in errors.
Status ParseEnvelope(std::string_view bytes, google::protobuf::Message* message, bool reject_unknown_fields,
                     const char* what);

template <typename M>
Result<M> Parse(std::string_view bytes, bool reject_unknown_fields = false) {
  M message;
  FLOVER_RETURN_IF_ERROR(ParseEnvelope(bytes, &message, reject_unknown_fields, M::descriptor()->name().c_str()));
  return message;
}

// True if `message` or any message nested in it has unknown fields; `path` gets the
// field path of the first one ("submit.sampling").
bool HasUnknownFields(const google::protobuf::Message& message, std::string* path);

// Detects lost step plans: plans of a replica must arrive with seq 1, 2, 3, ...
// (PUB/SUB drops silently on slow joiners and at high-water marks).
class PlanSequence {
 public:
  // OK and advances if seq is the next one; Unavailable ("plan 7 arrived after plan 5:
  // plan 6 was lost") otherwise, and the replica must stop.
  Status Accept(uint64_t seq);
  uint64_t last() const { return last_; }

 private:
  uint64_t last_ = 0;
};

// Wire <-> engine conversions. Proto3 cannot tell unset from zero, so top_p and
// repetition_penalty of 0 read as 1 (off).
SamplingParams FromProto(const proto::SamplingParams& p);
proto::SamplingParams ToProto(const SamplingParams& s);
StopParams FromProto(const proto::StopParams& p);
proto::StopParams ToProto(const StopParams& s);
FinishReason FromProto(proto::FinishReason r);
proto::FinishReason ToProto(FinishReason r);
ModelSpec FromProto(const proto::ModelInfo& m);  // norm_eps/rope_theta are not carried
proto::ModelInfo ToProto(const ModelSpec& spec, const std::string& description);

// Log-probabilities: a TokenOutput's (logprob, top_logprobs) <-> TokenLogprobs, and the
// client's TokenLogprobs message.
TokenLogprobs LogprobsOf(const proto::TokenOutput& out);
void SetLogprobs(const TokenLogprobs& logprobs, proto::TokenOutput* out);
proto::TokenLogprobs ToProto(const TokenLogprobs& logprobs);
TokenLogprobs FromProto(const proto::TokenLogprobs& p);

// What an honest worker's TokenOutput holds in its log-probabilities: every logprob
// finite and <= 0, every top token inside [0, vocab_size). InvalidArgument naming the
// request and the value otherwise. (Whether the count matches what the request asked
// is the scheduler's check.)
Status CheckOutputLogprobs(const proto::TokenOutput& out, int vocab_size);

// An Error reply from a Status.
proto::ServerMessage ErrorReply(const std::string& client_request_id, const Status& status);

}  // namespace flover
