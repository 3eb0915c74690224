// POST /v1/chat/completions: `messages` (system, developer as system, user, assistant;
// content a string or text parts) rendered with the model's chat template
// (chat_template.h), whose end-of-turn texts are added to the stop strings;
// max_completion_tokens (or max_tokens; default: until the context is full), logprobs +
// top_logprobs, add_generation_prompt (extension, default true); the shared fields in
// generation_options.h.
#include <limits>

#include <fmt/format.h>

#include "common/tokenizer.h"
#include "coordinator/openai/api_error.h"
#include "coordinator/openai/chat_template.h"
#include "coordinator/openai/choice_exchange.h"
#include "coordinator/openai/generation_options.h"
#include "coordinator/openai/json_fields.h"
#include "coordinator/openai/request_body.h"

namespace flover::openai {

namespace {

constexpr int kMaxTopLogprobs = 20;

// The text of a message's content: a string, or an array of {"type":"text","text"} parts.
std::optional<ApiError> ReadContent(const nlohmann::json& message, const std::string& path, bool may_be_null,
                                    std::string* content) {
  const auto it = message.find("content");
  const std::string param = path + ".content";
  if (it == message.end() || it->is_null()) {
    if (may_be_null) return std::nullopt;
    return InvalidParam(param, param + " is required");
  }
  if (it->is_string()) {
    *content = it->get<std::string>();
    return std::nullopt;
  }
  if (!it->is_array())
    return InvalidParam(param, fmt::format("{} must be a string or an array of text parts, got {}", param, JsonKind(*it)));
  for (size_t j = 0; j < it->size(); ++j) {
    const nlohmann::json& part = (*it)[j];
    const std::string part_path = fmt::format("{}[{}]", param, j);
    if (!part.is_object())
      return InvalidParam(part_path, fmt::format("{} must be an object, got {}", part_path, JsonKind(part)));
    FieldReader fields(part, part_path + ".");
    const std::optional<std::string> type = fields.String("type");
    if (!fields.error() && type != "text")
      fields.Fail("type", fmt::format("{}.type must be \"text\" (only text parts are supported), got {}", part_path,
                                      part.contains("type") ? part["type"].dump() : "none"));
    const std::optional<std::string> text = fields.String("text");
    if (!fields.error() && !text) fields.Fail("text", part_path + ".text is required");
    if (fields.error()) return fields.error();
    *content += *text;
  }
  return std::nullopt;
}

std::optional<ApiError> ReadMessages(const nlohmann::json& body, std::vector<ChatMessage>* messages) {
  const auto it = body.find("messages");
  if (it == body.end() || it->is_null()) return InvalidParam("messages", "messages is required");
  if (!it->is_array()) return InvalidParam("messages", "messages must be an array, got " + JsonKind(*it));
  if (it->empty()) return InvalidParam("messages", "messages must not be empty");
  for (size_t i = 0; i < it->size(); ++i) {
    const nlohmann::json& message = (*it)[i];
    const std::string path = fmt::format("messages[{}]", i);
    if (!message.is_object()) return InvalidParam(path, fmt::format("{} must be an object, got {}", path, JsonKind(message)));
    FieldReader fields(message, path + ".");
    std::string role = fields.String("role").value_or("");
    if (fields.error()) return fields.error();
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant")
      return InvalidParam(path + ".role", fmt::format("{}.role must be \"system\", \"developer\", \"user\" or "
                                                      "\"assistant\" (tools are not supported), got {}",
                                                      path, message.contains("role") ? message["role"].dump() : "none"));
    RefuseUnsupported(fields, "tool_calls", " (tools are not supported)", IsEmptyValue);
    if (fields.error()) return fields.error();
    ChatMessage& m = messages->emplace_back();
    m.role = std::move(role);
    if (std::optional<ApiError> error = ReadContent(message, path, m.role == "assistant", &m.content)) return error;
  }
  return std::nullopt;
}

bool IsNoTool(const nlohmann::json& v) { return v == "none" || IsEmptyValue(v); }
bool IsTextFormat(const nlohmann::json& v) { return v.is_object() && v.value("type", "") == "text"; }

}  // namespace

Started StartChatCompletions(std::string_view body_text, const ServedModel& model) {
  std::variant<GenerationRequest, ApiError> request = ReadGenerationRequest(body_text, model);
  if (ApiError* error = std::get_if<ApiError>(&request)) return std::move(*error);
  const nlohmann::json& body = std::get<GenerationRequest>(request).body;
  GenerationOptions& options = std::get<GenerationRequest>(request).options;
  FieldReader fields(body);
  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
  std::optional<int64_t> max_tokens = fields.Integer("max_completion_tokens", 1, kMaxInt);
  if (!max_tokens) max_tokens = fields.Integer("max_tokens", 1, kMaxInt);
  // No limit asked: until the context is full (the cluster stops there by length).
  options.stop.set_max_tokens(static_cast<int32_t>(max_tokens.value_or(kMaxInt)));
  const bool logprobs = fields.Bool("logprobs").value_or(false);
  const std::optional<int64_t> top_logprobs = fields.Integer("top_logprobs", 0, kMaxTopLogprobs);
  if (!fields.error() && top_logprobs && !logprobs)
    fields.Fail("top_logprobs", "top_logprobs needs logprobs: true");
  const bool add_generation_prompt = fields.Bool("add_generation_prompt").value_or(true);
  RefuseUnsupported(fields, "tools", " (tools are not supported)", IsEmptyValue);
  RefuseUnsupported(fields, "tool_choice", " (tools are not supported)", IsNoTool);
  RefuseUnsupported(fields, "functions", " (functions are not supported)", IsEmptyValue);
  RefuseUnsupported(fields, "function_call", " (functions are not supported)", IsNoTool);
  RefuseUnsupported(fields, "response_format", " (only {\"type\": \"text\"}: output is not constrained)", IsTextFormat);
  if (fields.error()) return *fields.error();

  std::vector<ChatMessage> messages;
  if (std::optional<ApiError> error = ReadMessages(body, &messages)) return *error;
  if (!model.tokenizer)
    return InvalidParam("messages",
                        "chat completions need the cluster's tokenizer (model.tokenizer in the cluster config), and "
                        "this cluster has none; use /v1/completions with token ids");
  std::variant<ChatPrompt, ApiError> rendered = RenderChatPrompt(model, messages, add_generation_prompt);
  if (ApiError* error = std::get_if<ApiError>(&rendered)) return std::move(*error);
  ChatPrompt& chat = std::get<ChatPrompt>(rendered);
  for (const std::string& end : chat.end_of_turn) options.stop.add_stop_strings(end);
  if (logprobs) {
    options.sampling.set_logprobs(true);
    options.sampling.set_top_logprobs(static_cast<int32_t>(top_logprobs.value_or(0)));
  }
  if (std::optional<ApiError> error = CheckChoiceCount(1, options.n, model)) return *error;

  proto::SubmitRequest prompt;
  prompt.set_text(std::move(chat.text));
  ExchangeSetup setup = ExchangeSetupOf(options, model);
  setup.submits = ExpandSubmits({prompt}, options, model);
  setup.choices.assign(setup.submits.size(), ChoiceSetup{});
  setup.logprobs = logprobs;
  setup.format = ChatFormat();
  return MakeChoiceExchange(std::move(setup));
}

}  // namespace flover::openai
