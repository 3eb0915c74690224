#include "coordinator/admission.h"

#include <string>

#include "common/protocol.h"

namespace flover {

Result<proto::ClientMessage> ParseClientMessage(std::string_view bytes) {
  FLOVER_ASSIGN_OR_RETURN(proto::ClientMessage message,
                          Parse<proto::ClientMessage>(bytes, /*reject_unknown_fields=*/true));
  if (message.body_case() == proto::ClientMessage::BODY_NOT_SET)
    return InvalidArgument("ClientMessage has no body: send submit, cancel or status");
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

Result<RequestParams> Admit(const proto::SubmitRequest& submit, const AdmissionContext& context) {
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
  if (request.stop.stop_strings.size() > kMaxStopStrings)
    return InvalidArgument("at most " + std::to_string(kMaxStopStrings) + " stop strings, got " +
                           std::to_string(request.stop.stop_strings.size()));
  for (const std::string& text : request.stop.stop_strings)
    if (text.empty() || text.size() > kMaxStopStringBytes)
      return InvalidArgument("a stop string must have 1 to " + std::to_string(kMaxStopStringBytes) + " bytes, got " +
                             std::to_string(text.size()));

  if (context.n_queued >= context.max_queued)
    return ResourceExhausted("overloaded: " + std::to_string(context.n_queued) +
                             " requests are already waiting (scheduler.max_queued = " +
                             std::to_string(context.max_queued) + "); retry later");
  return request;
}

}  // namespace flover
