// Helpers of the OpenAI API layer's unit tests: the real stories260K tokenizer, starting
// exchanges and reading what they answer, canned ServerMessages, SSE parsing.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/proto/flover.pb.h"
#include "common/tokenizer.h"
#include "coordinator/openai/exchange.h"
#include "tests/test_paths.h"

namespace flover::openai::testing {

inline const Tokenizer& Tok512() {
  static const Tokenizer* tokenizer = [] {
    Result<Tokenizer> t = Tokenizer::LoadLlama2c(flover::testing::Tok512Bin());
    EXPECT_TRUE(t.ok()) << t.status().ToString() << " (set FLOVER_MODELS_DIR)";
    return t.ok() ? new Tokenizer(std::move(t).value()) : nullptr;
  }();
  return *tokenizer;
}

inline ServedModel Model(std::string chat_template = "chatml") {
  return ServedModel{.id = "stories260K", .tokenizer = &Tok512(), .chat_template = std::move(chat_template),
                     .request_timeout_ms = 600000, .max_n = 16};
}

// The error a start answered; fails the test when it started an exchange.
inline ApiError ErrorOf(Started started) {
  if (auto* error = std::get_if<ApiError>(&started)) return *error;
  ADD_FAILURE() << "the request was accepted";
  return {};
}

// Expects `started` to be a 400 invalid_request_error naming `param`, whose message
// holds `part`; `body` is what was sent, for the failure message.
inline void ExpectRefused(Started started, const std::string& body, const std::string& param,
                          const std::string& part) {
  const ApiError e = ErrorOf(std::move(started));
  EXPECT_EQ(e.status, 400) << body;
  EXPECT_EQ(e.type, "invalid_request_error") << body;
  EXPECT_EQ(e.param, param) << body;
  EXPECT_NE(e.message.find(part), std::string::npos) << body << " -> " << e.message;
}

// The exchange a start made; fails the test (and returns null) when it answered an error.
inline std::unique_ptr<Exchange> ExchangeOf(Started started) {
  if (auto* error = std::get_if<ApiError>(&started)) {
    ADD_FAILURE() << "refused: " << error->status << " " << error->param << ": " << error->message;
    return nullptr;
  }
  return std::move(std::get<std::unique_ptr<Exchange>>(started));
}

// The submits of a started exchange (none, and a failure, when it was refused).
inline std::vector<proto::SubmitRequest> SubmitsOf(Started started) {
  std::unique_ptr<Exchange> exchange = ExchangeOf(std::move(started));
  return exchange ? exchange->TakeSubmits() : std::vector<proto::SubmitRequest>{};
}

inline proto::ServerMessage Accepted(int prompt_tokens) {
  proto::ServerMessage m;
  m.mutable_accepted()->set_prompt_tokens(prompt_tokens);
  return m;
}

// A TokenEvent; `logprobs` one {logprob, {{alt, logprob}...}} per token when given.
struct Lp {
  float logprob;
  std::vector<std::pair<int, float>> top;
};
inline void AddLogprobs(google::protobuf::RepeatedPtrField<proto::TokenLogprobs>* out, const std::vector<Lp>& lps) {
  for (const Lp& lp : lps) {
    proto::TokenLogprobs* l = out->Add();
    l->set_logprob(lp.logprob);
    for (auto [token, logprob] : lp.top) {
      proto::TokenLogprob* t = l->add_top();
      t->set_token(token);
      t->set_logprob(logprob);
    }
  }
}

inline proto::ServerMessage Token(std::vector<int> tokens, std::string text, std::vector<Lp> lps = {}) {
  proto::ServerMessage m;
  m.mutable_token()->mutable_tokens()->Add(tokens.begin(), tokens.end());
  m.mutable_token()->set_text(std::move(text));
  AddLogprobs(m.mutable_token()->mutable_logprobs(), lps);
  return m;
}

inline proto::ServerMessage Done(std::vector<int> tokens, std::string text, proto::FinishReason reason,
                                 int prompt_tokens, std::vector<Lp> lps = {}) {
  proto::ServerMessage m;
  proto::Done* d = m.mutable_done();
  d->mutable_tokens()->Add(tokens.begin(), tokens.end());
  d->set_text(std::move(text));
  d->set_finish_reason(reason);
  d->set_prompt_tokens(prompt_tokens);
  d->set_completion_tokens(static_cast<int>(tokens.size()));
  AddLogprobs(d->mutable_logprobs(), lps);
  return m;
}

inline proto::ServerMessage Error(std::string code, std::string message) {
  proto::ServerMessage m;
  m.mutable_error()->set_code(std::move(code));
  m.mutable_error()->set_message(std::move(message));
  return m;
}

// The JSON of each "data: {...}\n\n" event of `bytes`; `done` says whether it ended with
// "data: [DONE]\n\n". Fails the test on bytes that are not such events.
inline std::vector<nlohmann::json> SseEvents(const std::string& bytes, bool* done = nullptr) {
  std::vector<nlohmann::json> events;
  if (done) *done = false;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t end = bytes.find("\n\n", pos);
    if (end == std::string::npos || bytes.compare(pos, 6, "data: ") != 0) {
      ADD_FAILURE() << "not an SSE event at " << pos << ": " << bytes.substr(pos);
      break;
    }
    const std::string data = bytes.substr(pos + 6, end - pos - 6);
    if (data == "[DONE]") {
      EXPECT_EQ(end + 2, bytes.size()) << "events after [DONE]";
      if (done) *done = true;
    } else {
      events.push_back(nlohmann::json::parse(data));  // throws (fails the test) when not valid JSON/UTF-8
    }
    pos = end + 2;
  }
  return events;
}

}  // namespace flover::openai::testing
