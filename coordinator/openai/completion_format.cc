// /v1/completions shapes: {"index","text","logprobs","finish_reason"}, the legacy
// log-probability object {"tokens","token_logprobs","top_logprobs","text_offset"} whose
// top_logprobs maps token text to log-probability, most likely first, and always holds
// the chosen token (OpenAI: "up to logprobs+1 elements").
#include <algorithm>

#include "coordinator/openai/response_format.h"

namespace flover::openai {

namespace {

Json CompletionLogprobsJson(const std::vector<LogprobEntry>* entries) {
  if (!entries) return nullptr;
  Json tokens = Json::array(), token_logprobs = Json::array(), top_logprobs = Json::array(),
       offsets = Json::array();
  for (const LogprobEntry& e : *entries) {
    tokens.push_back(e.chosen.token);
    token_logprobs.push_back(ShownLogprob(e.chosen.logprob));
    Json top = Json::object();
    for (const TopToken& t : e.top)
      if (!top.contains(t.token)) top[t.token] = ShownLogprob(t.logprob);
    if (!top.contains(e.chosen.token)) top[e.chosen.token] = ShownLogprob(e.chosen.logprob);
    top_logprobs.push_back(std::move(top));
    offsets.push_back(e.text_offset);
  }
  return Json{{"tokens", std::move(tokens)},
              {"token_logprobs", std::move(token_logprobs)},
              {"top_logprobs", std::move(top_logprobs)},
              {"text_offset", std::move(offsets)}};
}

Json Choice(int index, const std::string& text, Json logprobs, Json finish_reason) {
  return Json{{"index", index}, {"text", text}, {"logprobs", std::move(logprobs)}, {"finish_reason", finish_reason}};
}

class Completion final : public ResponseFormat {
 public:
  const char* id_prefix() const override { return "cmpl-"; }
  const char* object() const override { return "text_completion"; }
  const char* chunk_object() const override { return "text_completion"; }

  std::optional<Json> OpenChoice(int index, const std::string& echo) const override {
    if (echo.empty()) return std::nullopt;
    return Choice(index, echo, nullptr, nullptr);
  }
  Json DeltaChoice(int index, const std::string& text, const std::vector<LogprobEntry>* logprobs) const override {
    return Choice(index, text, CompletionLogprobsJson(logprobs), nullptr);
  }
  Json FinishChoice(int index, const std::string& finish_reason) const override {
    return Choice(index, "", nullptr, finish_reason);
  }
  Json WholeChoice(int index, const std::string& text, const std::vector<LogprobEntry>* logprobs,
                   const std::string& finish_reason) const override {
    return Choice(index, text, CompletionLogprobsJson(logprobs), finish_reason);
  }
};

}  // namespace

std::unique_ptr<ResponseFormat> CompletionFormat() { return std::make_unique<Completion>(); }

}  // namespace flover::openai
