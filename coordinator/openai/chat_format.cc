// /v1/chat/completions shapes: whole {"index","message":{"role","content"},"logprobs",
// "finish_reason"}; chunks {"index","delta",...}, the first with the assistant role; and
// log-probabilities {"content":[{"token","logprob","bytes","top_logprobs":[...]}]}, where
// bytes are the token's UTF-8 bytes (a token may hold part of a character).
#include "coordinator/openai/response_format.h"

namespace flover::openai {

namespace {

Json Bytes(const std::string& token) {
  Json bytes = Json::array();
  for (const char c : token) bytes.push_back(static_cast<int>(static_cast<unsigned char>(c)));
  return bytes;
}

Json TokenJson(const TopToken& t) {
  return Json{{"token", t.token}, {"logprob", ShownLogprob(t.logprob)}, {"bytes", Bytes(t.token)}};
}

Json ChatLogprobsJson(const std::vector<LogprobEntry>* entries) {
  if (!entries) return nullptr;
  Json content = Json::array();
  for (const LogprobEntry& e : *entries) {
    Json item = TokenJson(e.chosen);
    Json top = Json::array();
    for (const TopToken& t : e.top) top.push_back(TokenJson(t));
    item["top_logprobs"] = std::move(top);
    content.push_back(std::move(item));
  }
  return Json{{"content", std::move(content)}};
}

Json Chunk(int index, Json delta, Json logprobs, Json finish_reason) {
  return Json{{"index", index},
              {"delta", std::move(delta)},
              {"logprobs", std::move(logprobs)},
              {"finish_reason", std::move(finish_reason)}};
}

class Chat final : public ResponseFormat {
 public:
  const char* id_prefix() const override { return "chatcmpl-"; }
  const char* object() const override { return "chat.completion"; }
  const char* chunk_object() const override { return "chat.completion.chunk"; }

  std::optional<Json> OpenChoice(int index, const std::string& /*echo*/) const override {
    return Chunk(index, Json{{"role", "assistant"}, {"content", ""}}, nullptr, nullptr);
  }
  Json DeltaChoice(int index, const std::string& text, const std::vector<LogprobEntry>* logprobs) const override {
    return Chunk(index, Json{{"content", text}}, ChatLogprobsJson(logprobs), nullptr);
  }
  Json FinishChoice(int index, const std::string& finish_reason) const override {
    return Chunk(index, Json::object(), nullptr, finish_reason);
  }
  Json WholeChoice(int index, const std::string& text, const std::vector<LogprobEntry>* logprobs,
                   const std::string& finish_reason) const override {
    return Json{{"index", index},
                {"message", Json{{"role", "assistant"}, {"content", text}}},
                {"logprobs", ChatLogprobsJson(logprobs)},
                {"finish_reason", finish_reason}};
  }
};

}  // namespace

std::unique_ptr<ResponseFormat> ChatFormat() { return std::make_unique<Chat>(); }

}  // namespace flover::openai
