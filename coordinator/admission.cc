#include "coordinator/admission.h"

#include <string>

#include <fmt/format.h>

#include "common/protocol.h"

namespace flover {
namespace {

// "<what> has <value> <unit>, more than limits.<key> = <limit>".
Status OverLimit(const std::string& what, size_t value, const char* unit, const char* key, int limit) {
  return InvalidArgument(fmt::format("{} has {} {}, more than limits.{} = {}", what, value, unit, key, limit));
}

// Check 0 of admission.h: every size the client chose, before anything is copied.
Status CheckLimits(const proto::SubmitRequest& submit, const LimitsSettings& limits) {
  const size_t id_bytes = submit.client_request_id().size();
  if (id_bytes > static_cast<size_t>(limits.max_request_id_bytes))
    return OverLimit("client_request_id", id_bytes, "bytes", "max_request_id_bytes", limits.max_request_id_bytes);
  if (submit.prompt_case() == proto::SubmitRequest::kText &&
      submit.text().size() > static_cast<size_t>(limits.max_prompt_bytes))
    return OverLimit("the prompt text", submit.text().size(), "bytes", "max_prompt_bytes", limits.max_prompt_bytes);
  if (submit.prompt_case() == proto::SubmitRequest::kTokenIds &&
      submit.token_ids().ids_size() > limits.max_prompt_tokens)
    return OverLimit("the prompt", submit.token_ids().ids_size(), "token ids", "max_prompt_tokens",
                     limits.max_prompt_tokens);
  const proto::StopParams& stop = submit.stop();
  if (stop.stop_token_ids_size() > limits.max_stop_ids)
    return OverLimit("stop", stop.stop_token_ids_size(), "stop token ids", "max_stop_ids", limits.max_stop_ids);
  if (stop.stop_strings_size() > limits.max_stop_strings)
    return OverLimit("stop", stop.stop_strings_size(), "stop strings", "max_stop_strings", limits.max_stop_strings);
  for (int i = 0; i < stop.stop_strings_size(); ++i)
    if (stop.stop_strings(i).size() > static_cast<size_t>(limits.max_stop_string_bytes))
      return OverLimit(fmt::format("stop string {}", i), stop.stop_strings(i).size(), "bytes", "max_stop_string_bytes",
                       limits.max_stop_string_bytes);
  return Status::Ok();
}

}  // namespace

Result<proto::ClientMessage> ParseClientMessage(std::string_view bytes) {
  FLOVER_ASSIGN_OR_RETURN(proto::ClientMessage message,
                          Parse<proto::ClientMessage>(bytes, /*reject_unknown_fields=*/true));
  if (message.body_case() == proto::ClientMessage::BODY_NOT_SET)
    return InvalidArgument("ClientMessage has no body: send submit, cancel, status or reload");
  return message;
}

Status CheckAgainstModel(const RequestParams& request, const ModelSpec& model, int64_t kv_capacity_tokens) {
  FLOVER_RETURN_IF_ERROR(ValidateRequest(request, model));
  const int64_t positions = MaxKvPositions(request, model);
  if (positions > kv_capacity_tokens)
    return ResourceExhausted("request needs up to " + std::to_string(positions) + " KV slots (prompt " +
                             std::to_string(request.prompt.size()) + " + max_tokens " +
                             std::to_string(request.stop.max_tokens) + "), more than a replica's whole KV cache holds (" +
                             std::to_string(kv_capacity_tokens) + ")");
  return Status::Ok();
}

std::string EchoedRequestId(const std::string& id, int max_bytes) {
  if (id.size() <= static_cast<size_t>(max_bytes)) return id;
  size_t end = static_cast<size_t>(max_bytes);
  while (end > 0 && (static_cast<unsigned char>(id[end]) & 0xC0) == 0x80) --end;  // inside a character
  return id.substr(0, end);
}

Result<RequestParams> Admit(const proto::SubmitRequest& submit, const AdmissionContext& context) {
  FLOVER_RETURN_IF_ERROR(CheckLimits(submit, context.limits));
  const std::string& id = submit.client_request_id();
  if (id.empty()) return InvalidArgument("client_request_id is empty: every request needs an id unique per connection");
  if (context.id_in_flight)
    return InvalidArgument("client_request_id '" + id + "' is already in flight on this connection");

  RequestParams request;
  switch (submit.prompt_case()) {
    case proto::SubmitRequest::kText:
      if (!context.tokenizer) return InvalidArgument("this cluster has no tokenizer: send token ids");
      if (context.model && static_cast<int64_t>(submit.text().size()) >
                               static_cast<int64_t>(context.tokenizer->max_piece_bytes()) * context.model->max_seq_len)
        return InvalidArgument("prompt text of " + std::to_string(submit.text().size()) +
                               " bytes is longer than this model's context of " +
                               std::to_string(context.model->max_seq_len) + " tokens can hold");
      request.prompt = context.tokenizer->Encode(submit.text(), /*add_bos=*/true);
      break;
    case proto::SubmitRequest::kTokenIds:
      request.prompt.assign(submit.token_ids().ids().begin(), submit.token_ids().ids().end());
      break;
    case proto::SubmitRequest::PROMPT_NOT_SET:
      return InvalidArgument("submit has no prompt: set text or token_ids");
  }
  request.sampling = FromProto(submit.sampling());
  request.stop = FromProto(submit.stop());

  if (context.model) FLOVER_RETURN_IF_ERROR(CheckAgainstModel(request, *context.model, context.kv_capacity_tokens));
  if (!request.stop.stop_strings.empty() && !context.tokenizer)
    return InvalidArgument("stop strings need the cluster's tokenizer (model.tokenizer); use stop token ids");
  for (const std::string& text : request.stop.stop_strings)
    if (text.empty()) return InvalidArgument("a stop string is empty: each needs at least one byte");

  if (context.client_in_flight >= context.limits.max_requests_per_client)
    return ResourceExhausted(fmt::format("this connection has {} requests in flight, as many as "
                                         "limits.max_requests_per_client = {} allows; wait for some to finish",
                                         context.client_in_flight, context.limits.max_requests_per_client));
  if (context.n_queued >= context.max_queued)
    return ResourceExhausted("overloaded: " + std::to_string(context.n_queued) +
                             " requests are already waiting (scheduler.max_queued = " +
                             std::to_string(context.max_queued) + "); retry later");
  return request;
}

}  // namespace flover
