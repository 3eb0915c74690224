#include "common/protocol.h"

#include <cmath>
#include <vector>

#include <google/protobuf/unknown_field_set.h>

namespace flover {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

Status ParseEnvelope(std::string_view bytes, Message* message, bool reject_unknown_fields, const char* what) {
  if (!message->ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return Corruption(std::string("malformed ") + what + " (" + std::to_string(bytes.size()) + " bytes)");
  const FieldDescriptor* version_field = message->GetDescriptor()->FindFieldByName("protocol_version");
  if (version_field) {
    const uint32_t version = message->GetReflection()->GetUInt32(*message, version_field);
    if (version != kProtocolVersion)
      return InvalidArgument(std::string(what) + " has protocol version " + std::to_string(version) +
                             "; this build speaks version " + std::to_string(kProtocolVersion));
  }
  std::string path;
  if (reject_unknown_fields && HasUnknownFields(*message, &path))
    return InvalidArgument(std::string(what) + " has unknown fields" + (path.empty() ? "" : " in " + path) +
                           " (newer client or malformed message)");
  return Status::Ok();
}

bool HasUnknownFields(const Message& message, std::string* path) {
  const Reflection* r = message.GetReflection();
  if (!r->GetUnknownFields(message).empty()) return true;
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(message, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    const int n = f->is_repeated() ? r->FieldSize(message, f) : 1;
    for (int i = 0; i < n; ++i) {
      const Message& child = f->is_repeated() ? r->GetRepeatedMessage(message, f, i) : r->GetMessage(message, f);
      std::string sub;
      if (HasUnknownFields(child, &sub)) {
        if (path) *path = f->name() + (sub.empty() ? "" : "." + sub);
        return true;
      }
    }
  }
  return false;
}

Status PlanSequence::Accept(uint64_t seq) {
  if (seq != last_ + 1) {
    std::string msg = "plan " + std::to_string(seq) + " arrived after plan " + std::to_string(last_);
    if (seq <= last_) {
      msg += " (duplicate or reordered)";
    } else {
      msg += ": ";
      msg += std::to_string(seq - last_ - 1);
      msg += " plan(s) lost, from plan ";
      msg += std::to_string(last_ + 1);
    }
    return Unavailable(msg);
  }
  last_ = seq;
  return Status::Ok();
}

SamplingParams FromProto(const proto::SamplingParams& p) {
  SamplingParams s;
  s.temperature = p.temperature();
  s.top_k = p.top_k();
  s.top_p = p.top_p() == 0.0f ? 1.0f : p.top_p();
  s.repetition_penalty = p.repetition_penalty() == 0.0f ? 1.0f : p.repetition_penalty();
  s.seed = p.seed();
  s.presence_penalty = p.presence_penalty();
  s.frequency_penalty = p.frequency_penalty();
  s.logprobs = p.logprobs();
  s.top_logprobs = p.top_logprobs();
  return s;
}

proto::SamplingParams ToProto(const SamplingParams& s) {
  proto::SamplingParams p;
  p.set_temperature(s.temperature);
  p.set_top_k(s.top_k);
  p.set_top_p(s.top_p);
  p.set_repetition_penalty(s.repetition_penalty);
  p.set_seed(s.seed);
  p.set_presence_penalty(s.presence_penalty);
  p.set_frequency_penalty(s.frequency_penalty);
  p.set_logprobs(s.logprobs);
  p.set_top_logprobs(s.top_logprobs);
  return p;
}

StopParams FromProto(const proto::StopParams& p) {
  StopParams s;
  s.max_tokens = p.max_tokens();
  s.stop_token_ids.assign(p.stop_token_ids().begin(), p.stop_token_ids().end());
  s.ignore_eos = p.ignore_eos();
  s.stop_strings.assign(p.stop_strings().begin(), p.stop_strings().end());
  return s;
}

proto::StopParams ToProto(const StopParams& s) {
  proto::StopParams p;
  p.set_max_tokens(s.max_tokens);
  for (int id : s.stop_token_ids) p.add_stop_token_ids(id);
  p.set_ignore_eos(s.ignore_eos);
  for (const std::string& text : s.stop_strings) p.add_stop_strings(text);
  return p;
}

FinishReason FromProto(proto::FinishReason r) {
  switch (r) {
    case proto::FINISH_STOP: return FinishReason::kStop;
    case proto::FINISH_LENGTH: return FinishReason::kLength;
    case proto::FINISH_CANCELLED: return FinishReason::kCancelled;
    case proto::FINISH_ERROR: return FinishReason::kError;
    default: return FinishReason::kNone;
  }
}

proto::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return proto::FINISH_STOP;
    case FinishReason::kLength: return proto::FINISH_LENGTH;
    case FinishReason::kCancelled: return proto::FINISH_CANCELLED;
    case FinishReason::kError: return proto::FINISH_ERROR;
    case FinishReason::kNone: break;
  }
  return proto::FINISH_NONE;
}

ModelSpec FromProto(const proto::ModelInfo& m) {
  ModelSpec s;
  s.dim = m.dim();
  s.hidden_dim = m.hidden_dim();
  s.n_layers = m.n_layers();
  s.n_heads = m.n_heads();
  s.n_kv_heads = m.n_kv_heads();
  s.vocab_size = m.vocab_size();
  s.max_seq_len = m.max_seq_len();
  s.bos_id = m.bos_id();
  s.eos_id = m.eos_id();
  s.extra_eos_ids.assign(m.extra_eos_ids().begin(), m.extra_eos_ids().end());
  s.chat_template = m.chat_template();
  return s;
}

proto::ModelInfo ToProto(const ModelSpec& spec, const std::string& description) {
  proto::ModelInfo m;
  m.set_dim(spec.dim);
  m.set_hidden_dim(spec.hidden_dim);
  m.set_n_layers(spec.n_layers);
  m.set_n_heads(spec.n_heads);
  m.set_n_kv_heads(spec.n_kv_heads);
  m.set_vocab_size(spec.vocab_size);
  m.set_max_seq_len(spec.max_seq_len);
  m.set_bos_id(spec.bos_id);
  m.set_eos_id(spec.eos_id);
  for (int id : spec.extra_eos_ids) m.add_extra_eos_ids(id);
  m.set_description(description);
  m.set_chat_template(spec.chat_template);
  m.set_shape(spec.ToString());
  return m;
}

namespace {

template <typename Repeated>
std::vector<TokenLogprob> TopOf(const Repeated& top) {
  std::vector<TokenLogprob> out;
  out.reserve(top.size());
  for (const proto::TokenLogprob& t : top) out.push_back(TokenLogprob{t.token(), t.logprob()});
  return out;
}

template <typename Repeated>
void AddTop(const std::vector<TokenLogprob>& top, Repeated* out) {
  out->Reserve(static_cast<int>(top.size()));
  for (const TokenLogprob& t : top) {
    proto::TokenLogprob* p = out->Add();
    p->set_token(t.token);
    p->set_logprob(t.logprob);
  }
}

bool IsLogprob(float v) { return std::isfinite(v) && v <= 0.0f; }

}  // namespace

TokenLogprobs LogprobsOf(const proto::TokenOutput& out) {
  return TokenLogprobs{out.logprob(), TopOf(out.top_logprobs())};
}

void SetLogprobs(const TokenLogprobs& logprobs, proto::TokenOutput* out) {
  out->set_logprob(logprobs.logprob);
  AddTop(logprobs.top, out->mutable_top_logprobs());
}

proto::TokenLogprobs ToProto(const TokenLogprobs& logprobs) {
  proto::TokenLogprobs p;
  p.set_logprob(logprobs.logprob);
  AddTop(logprobs.top, p.mutable_top());
  return p;
}

TokenLogprobs FromProto(const proto::TokenLogprobs& p) { return TokenLogprobs{p.logprob(), TopOf(p.top())}; }

Status CheckOutputLogprobs(const proto::TokenOutput& out, int vocab_size) {
  const std::string who = "request " + std::to_string(out.request_id());
  if (!IsLogprob(out.logprob()))
    return InvalidArgument(who + " has log-probability " + std::to_string(out.logprob()) +
                           " for its token; a log-probability is finite and <= 0");
  for (const proto::TokenLogprob& t : out.top_logprobs()) {
    if (t.token() < 0 || t.token() >= vocab_size)
      return InvalidArgument(who + " has top log-probability token " + std::to_string(t.token()) +
                             ", outside the vocabulary of " + std::to_string(vocab_size));
    if (!IsLogprob(t.logprob()))
      return InvalidArgument(who + " has log-probability " + std::to_string(t.logprob()) + " for top token " +
                             std::to_string(t.token()) + "; a log-probability is finite and <= 0");
  }
  return Status::Ok();
}

proto::ServerMessage ErrorReply(const std::string& client_request_id, const Status& status) {
  proto::ServerMessage m;
  proto::Error* e = m.mutable_error();
  e->set_client_request_id(client_request_id);
  e->set_code(StatusCodeName(status.code()));
  e->set_message(status.message());
  return m;
}

}  // namespace flover
