// Response assembly from canned ServerMessages: non-streaming JSON, SSE streams, n > 1,
// usage, log-probabilities, errors before and after the stream started, UTF-8 safety.
#include <gtest/gtest.h>

#include <regex>

#include "tests/coordinator/openai_test_util.h"

namespace flover::openai {
namespace {

using nlohmann::json;
using testing::Accepted;
using testing::Done;
using testing::Error;
using testing::ExchangeOf;
using testing::Model;
using testing::SseEvents;
using testing::Token;
using testing::Tok512;

std::unique_ptr<Exchange> Completions(const std::string& body, const ServedModel& model = Model()) {
  std::unique_ptr<Exchange> e = ExchangeOf(StartCompletions(body, model));
  if (e) e->TakeSubmits();
  return e;
}
std::unique_ptr<Exchange> Chat(const std::string& body) {
  std::unique_ptr<Exchange> e = ExchangeOf(StartChatCompletions(body, Model()));
  if (e) e->TakeSubmits();
  return e;
}

TEST(OpenAiResponse, CompletionWhole) {
  auto e = Completions(R"({"prompt":"Once","max_tokens":3})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->OnReply(0, Accepted(2)).head_status, std::nullopt);
  const Output out = e->OnReply(0, Done({403, 407, 9}, " upon a", proto::FINISH_LENGTH, 2));
  EXPECT_EQ(out.head_status, 200);
  EXPECT_EQ(out.content_type, "application/json");
  EXPECT_TRUE(out.done);
  const json body = json::parse(out.bytes);
  EXPECT_TRUE(std::regex_match(body["id"].get<std::string>(), std::regex("cmpl-[0-9a-f]{32}"))) << body["id"];
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_GT(body["created"].get<int64_t>(), 1600000000);
  EXPECT_EQ(body["model"], "stories260K");
  EXPECT_EQ(body["choices"], json::parse(R"([{"index":0,"text":" upon a","logprobs":null,"finish_reason":"length"}])"));
  EXPECT_EQ(body["usage"], json::parse(R"({"prompt_tokens":2,"completion_tokens":3,"total_tokens":5})"));
  EXPECT_EQ(e->OnReply(0, Done({}, "", proto::FINISH_STOP, 2)).bytes, "");  // nothing after done
}

TEST(OpenAiResponse, WholeWithTwoChoicesPerPromptInIndexOrderAndUsageCountsEachPromptOnce) {
  auto e = Completions(R"({"prompt":["a","bb"],"n":2})");
  ASSERT_TRUE(e);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(e->OnReply(i, Accepted(i < 2 ? 2 : 3)).bytes, "");
  EXPECT_FALSE(e->OnReply(3, Done({5}, "d", proto::FINISH_STOP, 3)).done);
  EXPECT_FALSE(e->OnReply(1, Done({5, 6}, "b", proto::FINISH_LENGTH, 2)).done);
  EXPECT_FALSE(e->OnReply(0, Done({5}, "a", proto::FINISH_STOP, 2)).done);
  const Output out = e->OnReply(2, Done({7}, "c", proto::FINISH_STOP, 3));
  ASSERT_TRUE(out.done);
  const json body = json::parse(out.bytes);
  ASSERT_EQ(body["choices"].size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(body["choices"][i]["index"], i);
    EXPECT_EQ(body["choices"][i]["text"], std::string(1, static_cast<char>('a' + i)));
  }
  EXPECT_EQ(body["choices"][1]["finish_reason"], "length");
  EXPECT_EQ(body["usage"], json::parse(R"({"prompt_tokens":5,"completion_tokens":5,"total_tokens":10})"));
}

TEST(OpenAiResponse, CompletionStreamWithUsage) {
  auto e = Completions(R"({"prompt":"Once","stream":true,"stream_options":{"include_usage":true}})");
  ASSERT_TRUE(e);
  Output out = e->OnReply(0, Accepted(2));
  EXPECT_EQ(out.head_status, 200);
  EXPECT_EQ(out.content_type, "text/event-stream");
  EXPECT_EQ(out.bytes, "");
  out = e->OnReply(0, Token({403}, " upon"));
  EXPECT_EQ(out.head_status, std::nullopt);
  std::vector<json> events = SseEvents(out.bytes);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["object"], "text_completion");
  EXPECT_EQ(events[0]["choices"], json::parse(R"([{"index":0,"text":" upon","logprobs":null,"finish_reason":null}])"));
  EXPECT_TRUE(events[0].contains("usage") && events[0]["usage"].is_null());
  EXPECT_EQ(e->OnReply(0, Token({3}, "")).bytes, "");  // nothing to show (a held-back character)
  out = e->OnReply(0, Done({403, 3}, " upon", proto::FINISH_STOP, 2));
  EXPECT_TRUE(out.done);
  bool done = false;
  events = SseEvents(out.bytes, &done);
  EXPECT_TRUE(done);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(events[0]["choices"][0]["text"], "");
  EXPECT_EQ(events[1]["choices"], json::array());
  EXPECT_EQ(events[1]["usage"], json::parse(R"({"prompt_tokens":2,"completion_tokens":2,"total_tokens":4})"));
  EXPECT_EQ(events[0]["id"], events[1]["id"]);
}

TEST(OpenAiResponse, ChatStreamTwoChoicesInterleaved) {
  auto e = Chat(R"({"messages":[{"role":"user","content":"Hi"}],"n":2,"stream":true})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->OnReply(1, Accepted(9)).head_status, std::nullopt);
  Output out = e->OnReply(0, Accepted(9));
  EXPECT_EQ(out.head_status, 200);
  std::vector<json> events = SseEvents(out.bytes);
  ASSERT_EQ(events.size(), 2u);  // each choice opens with the assistant role
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(events[i]["object"], "chat.completion.chunk");
    EXPECT_TRUE(std::regex_match(events[i]["id"].get<std::string>(), std::regex("chatcmpl-[0-9a-f]{32}")));
    EXPECT_EQ(events[i]["choices"], json::parse("[{\"index\":" + std::to_string(i) +
                                                R"(,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}])"));
    EXPECT_FALSE(events[i].contains("usage"));
  }
  events = SseEvents(e->OnReply(1, Token({5}, "B")).bytes);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["choices"][0]["index"], 1);
  EXPECT_EQ(events[0]["choices"][0]["delta"], json::parse(R"({"content":"B"})"));
  events = SseEvents(e->OnReply(0, Token({6}, "A")).bytes);
  EXPECT_EQ(events[0]["choices"][0]["index"], 0);
  bool done = true;
  out = e->OnReply(1, Done({5}, "B", proto::FINISH_STOP, 9));
  events = SseEvents(out.bytes, &done);
  EXPECT_FALSE(done);
  EXPECT_FALSE(out.done);
  EXPECT_EQ(events[0]["choices"][0], json::parse(R"({"index":1,"delta":{},"logprobs":null,"finish_reason":"stop"})"));
  out = e->OnReply(0, Done({6, 7}, "A", proto::FINISH_LENGTH, 9));
  events = SseEvents(out.bytes, &done);
  EXPECT_TRUE(done);
  EXPECT_TRUE(out.done);
  ASSERT_EQ(events.size(), 1u);  // no usage chunk without include_usage
  EXPECT_EQ(events[0]["choices"][0]["finish_reason"], "length");
}

TEST(OpenAiResponse, StreamStartsWithTheFirstTextWhenAChoiceIsNotYetAccepted) {
  auto e = Chat(R"({"messages":[{"role":"user","content":"Hi"}],"n":2,"stream":true})");
  ASSERT_TRUE(e);
  e->OnReply(0, Accepted(9));
  const Output out = e->OnReply(0, Token({6}, "A"));
  EXPECT_EQ(out.head_status, 200);
  const std::vector<json> events = SseEvents(out.bytes);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(events[1]["choices"][0]["delta"]["content"], "A");
  // Choice 1 opens with its own first text, once.
  const std::vector<json> later = SseEvents(e->OnReply(1, Accepted(9)).bytes + e->OnReply(1, Token({5}, "B")).bytes);
  ASSERT_EQ(later.size(), 2u);
  EXPECT_EQ(later[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(later[0]["choices"][0]["index"], 1);
}

TEST(OpenAiResponse, ChatWhole) {
  auto e = Chat(R"({"messages":[{"role":"user","content":"Hi"}]})");
  ASSERT_TRUE(e);
  e->OnReply(0, Accepted(9));
  const json body = json::parse(e->OnReply(0, Done({5}, "Hello", proto::FINISH_STOP, 9)).bytes);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["choices"], json::parse(R"([{"index":0,"message":{"role":"assistant","content":"Hello"},
                                               "logprobs":null,"finish_reason":"stop"}])"));
}

TEST(OpenAiResponse, CompletionLogprobsWithTokenStrings) {
  const Tokenizer& tok = Tok512();
  std::vector<int> ids = tok.Encode(" upon a", false);
  ASSERT_GE(ids.size(), 2u);
  ids.resize(2);
  const std::string t0 = tok.DecodeToken(1, ids[0]), t1 = tok.DecodeToken(ids[0], ids[1]);
  ASSERT_NE(t0, tok.piece(ids[0]));  // after BOS the piece's leading space is dropped
  auto e = Completions(R"({"prompt":[1],"logprobs":2})");  // a prompt of BOS alone: the first token follows BOS
  ASSERT_TRUE(e);
  e->OnReply(0, Accepted(1));
  const Output out = e->OnReply(
      0, Done(ids, t0 + t1, proto::FINISH_LENGTH, 1, {{-0.5f, {{ids[0], -0.5f}, {7, -1.25f}}}, {-2.0f, {{9, -0.25f}, {10, -1.0f}}}}));
  const json lp = json::parse(out.bytes)["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], json::array({t0, t1}));
  EXPECT_EQ(lp["token_logprobs"], json::parse("[-0.5,-2.0]"));
  EXPECT_EQ(lp["text_offset"], json::array({0, t0.size()}));
  ASSERT_EQ(lp["top_logprobs"].size(), 2u);
  EXPECT_EQ(lp["top_logprobs"][0].size(), 2u);  // the chosen token is among the top
  EXPECT_EQ(lp["top_logprobs"][0][t0], -0.5);
  EXPECT_EQ(lp["top_logprobs"][0][tok.DecodeToken(1, 7)], -1.25);
  EXPECT_EQ(lp["top_logprobs"][1].size(), 3u);  // ... or added to them
  EXPECT_EQ(lp["top_logprobs"][1][t1], -2.0);
  // Most likely first, as the cluster sent them.
  EXPECT_EQ(lp["top_logprobs"][1].begin().key(), tok.DecodeToken(ids[0], 9));
}

TEST(OpenAiResponse, LogprobsWithoutATokenizerNameTokenIds) {
  ServedModel model = Model();
  model.tokenizer = nullptr;
  auto e = Completions(R"({"prompt":[1,2],"logprobs":0,"stream":true})", model);
  ASSERT_TRUE(e);
  e->OnReply(0, Accepted(2));
  const std::vector<json> events = SseEvents(e->OnReply(0, Token({42}, "", {{-9999.5f, {}}})).bytes);
  ASSERT_EQ(events.size(), 1u);  // no text, but log-probabilities to show
  const json lp = events[0]["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], json::array({"token_id:42"}));
  EXPECT_EQ(lp["top_logprobs"][0], json::parse(R"({"token_id:42":-9999.5})"));
}

TEST(OpenAiResponse, ChatLogprobsStreamWithBytes) {
  const Tokenizer& tok = Tok512();
  auto e = Chat(R"({"messages":[{"role":"user","content":"Hi"}],"logprobs":true,"top_logprobs":1,"stream":true})");
  ASSERT_TRUE(e);
  e->OnReply(0, Accepted(9));
  const int byte_e2 = 0xE2 + 3;  // the <0xE2> byte piece: part of a character
  const std::vector<json> events =
      SseEvents(e->OnReply(0, Token({byte_e2}, "", {{-std::numeric_limits<float>::infinity(), {{byte_e2, -0.1f}}}})).bytes);
  ASSERT_EQ(events.size(), 1u);
  ASSERT_EQ(tok.DecodeToken(5, byte_e2), "\xE2");
  const json content = events[0]["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 1u);
  EXPECT_EQ(content[0]["token"], "\xEF\xBF\xBD");  // U+FFFD: JSON stays valid UTF-8
  EXPECT_EQ(content[0]["bytes"], json::array({0xE2}));
  EXPECT_EQ(content[0]["logprob"], -9999.0);  // -inf, as OpenAI shows it
  EXPECT_EQ(content[0]["top_logprobs"], json::parse(R"([{"token":"\ufffd","logprob":-0.10000000149011612,"bytes":[226]}])"));
}

TEST(OpenAiResponse, InvalidUtf8TextIsReplaced) {
  auto e = Completions(R"({"prompt":"x","stream":true})");
  ASSERT_TRUE(e);
  e->OnReply(0, Accepted(2));
  const std::vector<json> events = SseEvents(e->OnReply(0, Token({5}, "a\xff" "b")).bytes);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["choices"][0]["text"], "a\xEF\xBF\xBD" "b");
}

TEST(OpenAiResponse, EchoPrecedesTheCompletion) {
  auto whole = Completions(R"({"prompt":"Once upon","echo":true})");
  ASSERT_TRUE(whole);
  whole->OnReply(0, Accepted(3));
  EXPECT_EQ(json::parse(whole->OnReply(0, Done({5}, " a", proto::FINISH_STOP, 3)).bytes)["choices"][0]["text"],
            "Once upon a");
  const std::vector<int> ids = Tok512().Encode("Once upon", true);
  auto stream = Completions(R"({"stream":true,"echo":true,"prompt":)" + json(ids).dump() + "}");
  ASSERT_TRUE(stream);
  const std::vector<json> events = SseEvents(stream->OnReply(0, Accepted(3)).bytes);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["choices"][0]["text"], "Once upon");  // decoded without BOS
}

TEST(OpenAiResponse, ErrorBeforeTheStreamIsTheResponse) {
  auto e = Completions(R"({"prompt":"x","n":2,"stream":true})");
  ASSERT_TRUE(e);
  e->OnReply(0, Accepted(2));
  const Output out = e->OnReply(1, Error("ResourceExhausted", "the queue is full (max_queued 4)"));
  EXPECT_EQ(out.head_status, 429);
  EXPECT_EQ(out.content_type, "application/json");
  EXPECT_TRUE(out.done);
  const json body = json::parse(out.bytes);
  EXPECT_EQ(body["error"]["message"], "the queue is full (max_queued 4)");
  EXPECT_EQ(body["error"]["code"], "ResourceExhausted");
  EXPECT_EQ(e->OnReply(0, Token({5}, "a")).bytes, "");  // the exchange is over
}

TEST(OpenAiResponse, ErrorAfterTheStreamStartedIsAnEvent) {
  auto e = Chat(R"({"messages":[{"role":"user","content":"Hi"}],"stream":true})");
  ASSERT_TRUE(e);
  e->OnReply(0, Accepted(9));
  e->OnReply(0, Token({5}, "a"));
  const Output out = e->OnReply(0, Error("DeadlineExceeded", "not done within 600000 ms"));
  EXPECT_EQ(out.head_status, std::nullopt);
  EXPECT_TRUE(out.done);
  bool done = false;
  const std::vector<json> events = SseEvents(out.bytes, &done);
  EXPECT_TRUE(done);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["error"]["message"], "not done within 600000 ms");
  EXPECT_EQ(events[0]["error"]["type"], "timeout_error");
}

TEST(OpenAiResponse, ErrorOfOneChoiceEndsAWholeResponse) {
  auto e = Completions(R"({"prompt":"x","n":2})");
  ASSERT_TRUE(e);
  e->OnReply(0, Accepted(2));
  e->OnReply(1, Accepted(2));
  EXPECT_EQ(e->OnReply(0, Done({5}, "a", proto::FINISH_STOP, 2)).bytes, "");
  const Output out = e->OnReply(1, Error("Unavailable", "replica 0 failed"));
  EXPECT_EQ(out.head_status, 503);
  EXPECT_TRUE(out.done);
}

TEST(OpenAiResponse, UnfinishedDoneAndMissingLogprobsAreServerErrors) {
  auto e = Completions(R"({"prompt":"x"})");
  ASSERT_TRUE(e);
  Output out = e->OnReply(0, Done({}, "", proto::FINISH_CANCELLED, 2));
  EXPECT_EQ(out.head_status, 500);
  EXPECT_NE(out.bytes.find("FINISH_CANCELLED"), std::string::npos);
  e = Completions(R"({"prompt":"x","logprobs":1})");
  ASSERT_TRUE(e);
  out = e->OnReply(0, Done({5}, "a", proto::FINISH_STOP, 2));  // no logprobs in the reply
  EXPECT_EQ(out.head_status, 500);
  EXPECT_NE(out.bytes.find("log-probabilities"), std::string::npos);
}

TEST(OpenAiResponse, KeepalivesWriteNothing) {
  auto e = Completions(R"({"prompt":"x"})");
  ASSERT_TRUE(e);
  proto::ServerMessage keepalive;
  keepalive.mutable_keepalive();
  const Output out = e->OnReply(0, keepalive);
  EXPECT_EQ(out.head_status, std::nullopt);
  EXPECT_EQ(out.bytes, "");
  EXPECT_FALSE(out.done);
}

}  // namespace
}  // namespace flover::openai
