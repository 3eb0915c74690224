// POST /v1/completions: `prompt` in its four forms (a string, an array of token ids, an
// array of strings, an array of token arrays), each prompt one group of n choices;
// max_tokens (default 16), logprobs (0..20) and echo; the shared fields in
// generation_options.h.
#include <limits>

#include <fmt/format.h>

#include "common/tokenizer.h"
#include "coordinator/openai/api_error.h"
#include "coordinator/openai/choice_exchange.h"
#include "coordinator/openai/generation_options.h"
#include "coordinator/openai/json_fields.h"
#include "coordinator/openai/request_body.h"

namespace flover::openai {

namespace {

constexpr int kDefaultMaxTokens = 16;  // as OpenAI
constexpr int kMaxLogprobs = 20;       // as vLLM

struct PromptChoice {
  proto::SubmitRequest submit;  // only its prompt set
  ChoiceSetup choice;           // echo and prev_token
};

bool IsTokenArray(const nlohmann::json& value) {
  if (!value.is_array() || value.empty()) return false;
  for (const nlohmann::json& x : value)
    if (!x.is_number_integer()) return false;
  return true;
}

// A token array as ids; 400 naming `param` when one is out of int32 or negative.
std::optional<ApiError> ReadTokenIds(const nlohmann::json& value, const std::string& param, std::vector<int>* ids) {
  for (size_t i = 0; i < value.size(); ++i) {
    const nlohmann::json& x = value[i];
    const bool ok = x.is_number_unsigned() ? x.get<uint64_t>() <= std::numeric_limits<int32_t>::max()
                                           : x.get<int64_t>() >= 0 && x.get<int64_t>() <= std::numeric_limits<int32_t>::max();
    if (!ok) return InvalidParam(param, fmt::format("{}[{}] must be a token id (0 or more), got {}", param, i, x.dump()));
    ids->push_back(x.get<int>());
  }
  return std::nullopt;
}

// The prompt's text for echo: its ids decoded, without a leading BOS.
std::string EchoOfTokens(const Tokenizer& tokenizer, const std::vector<int>& ids) {
  if (!ids.empty() && ids.front() == tokenizer.bos_id())
    return tokenizer.Decode(std::vector<int>(ids.begin() + 1, ids.end()), tokenizer.bos_id());
  return tokenizer.Decode(ids, -1);
}

std::optional<ApiError> AddTextPrompt(std::string text, const ServedModel& model, bool echo,
                                      std::vector<PromptChoice>* prompts) {
  if (!model.tokenizer)
    return InvalidParam("prompt",
                        "text prompts need the cluster's tokenizer (model.tokenizer in the cluster config), and this "
                        "cluster has none; send token ids (an array of integers) instead");
  PromptChoice& p = prompts->emplace_back();
  // The coordinator adds BOS: an empty text is BOS alone, which the first token follows.
  p.choice.prev_token = text.empty() ? model.tokenizer->bos_id() : -1;
  if (echo) p.choice.echo = text;
  p.submit.set_text(std::move(text));
  return std::nullopt;
}

std::optional<ApiError> AddTokenPrompt(const nlohmann::json& value, const std::string& param,
                                       const ServedModel& model, bool echo, std::vector<PromptChoice>* prompts) {
  std::vector<int> ids;
  if (std::optional<ApiError> error = ReadTokenIds(value, param, &ids)) return error;
  if (echo && !model.tokenizer)
    return InvalidParam("echo", "echo of a token prompt needs the cluster's tokenizer (model.tokenizer in the "
                                "cluster config), and this cluster has none");
  PromptChoice& p = prompts->emplace_back();
  p.choice.prev_token = ids.back();
  if (echo) p.choice.echo = EchoOfTokens(*model.tokenizer, ids);
  p.submit.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
  return std::nullopt;
}

constexpr const char* kPromptForms =
    "a string, an array of token ids, an array of strings, or an array of token-id arrays";

std::optional<ApiError> ReadPrompts(const nlohmann::json& body, const ServedModel& model, bool echo,
                                    std::vector<PromptChoice>* prompts) {
  const auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return InvalidParam("prompt", "prompt is required");
  const nlohmann::json& prompt = *it;
  if (prompt.is_string()) return AddTextPrompt(prompt.get<std::string>(), model, echo, prompts);
  if (!prompt.is_array())
    return InvalidParam("prompt", fmt::format("prompt must be {}, got {}", kPromptForms, JsonKind(prompt)));
  if (prompt.empty()) return InvalidParam("prompt", "prompt must not be an empty array");
  if (IsTokenArray(prompt)) return AddTokenPrompt(prompt, "prompt", model, echo, prompts);
  for (size_t i = 0; i < prompt.size(); ++i) {
    const nlohmann::json& item = prompt[i];
    const std::string param = fmt::format("prompt[{}]", i);
    std::optional<ApiError> error;
    if (item.is_string()) {
      error = AddTextPrompt(item.get<std::string>(), model, echo, prompts);
    } else if (IsTokenArray(item)) {
      error = AddTokenPrompt(item, param, model, echo, prompts);
    } else {
      error = InvalidParam("prompt", fmt::format("prompt must be {}; {} is {}", kPromptForms, param,
                                                 item.is_array() && item.empty() ? "an empty array"
                                                 : item.is_array()               ? "an array that is not all integers"
                                                                                 : JsonKind(item)));
    }
    if (error) return error;
  }
  return std::nullopt;
}

}  // namespace

Started StartCompletions(std::string_view body_text, const ServedModel& model) {
  std::variant<GenerationRequest, ApiError> request = ReadGenerationRequest(body_text, model);
  if (ApiError* error = std::get_if<ApiError>(&request)) return std::move(*error);
  const nlohmann::json& body = std::get<GenerationRequest>(request).body;
  GenerationOptions& options = std::get<GenerationRequest>(request).options;
  FieldReader fields(body);
  options.stop.set_max_tokens(static_cast<int32_t>(
      fields.Integer("max_tokens", 1, std::numeric_limits<int32_t>::max()).value_or(kDefaultMaxTokens)));
  const std::optional<int64_t> logprobs = fields.Integer("logprobs", 0, kMaxLogprobs);
  const bool echo = fields.Bool("echo").value_or(false);
  if (!fields.error() && echo && logprobs)
    fields.Fail("echo",
                "echo with logprobs is not supported: Flover does not compute the log-probabilities of prompt "
                "tokens; drop echo, or logprobs");
  RefuseUnsupported(fields, "suffix", " (no insertion: the completion follows the prompt)", IsEmptyValue);
  RefuseUnsupported(fields, "best_of", " (each choice is returned; use n)",
                    [](const nlohmann::json& v) { return v.is_number_integer() && v.get<int64_t>() == 1; });
  if (fields.error()) return *fields.error();
  if (logprobs) {
    options.sampling.set_logprobs(true);
    options.sampling.set_top_logprobs(static_cast<int32_t>(*logprobs));
  }

  std::vector<PromptChoice> prompts;
  if (std::optional<ApiError> error = ReadPrompts(body, model, echo, &prompts)) return *error;
  if (std::optional<ApiError> error = CheckChoiceCount(prompts.size(), options.n, model)) return *error;

  ExchangeSetup setup = ExchangeSetupOf(options, model);
  std::vector<proto::SubmitRequest> prompt_submits;
  for (size_t p = 0; p < prompts.size(); ++p) {
    prompt_submits.push_back(prompts[p].submit);
    for (int i = 0; i < options.n; ++i) {
      ChoiceSetup& choice = setup.choices.emplace_back(prompts[p].choice);
      choice.prompt_index = p;
    }
  }
  setup.submits = ExpandSubmits(prompt_submits, options, model);
  setup.n_prompts = prompts.size();
  setup.logprobs = logprobs.has_value();
  setup.format = CompletionFormat();
  return MakeChoiceExchange(std::move(setup));
}

}  // namespace flover::openai
