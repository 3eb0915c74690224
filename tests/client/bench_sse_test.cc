// Tests the Server-Sent Events parser (client/bench/sse_parser.h) and the reading of an
// OpenAI completion stream's events (client/bench/openai_protocol.h): events split at
// every byte, CR/LF/CRLF line ends, multi-line data, comments, [DONE], error events, and
// the request body, endpoint URLs, model lists and error bodies.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "client/bench/openai_protocol.h"
#include "client/bench/sse_parser.h"

namespace flover {
namespace {

std::vector<SseEvent> ParseInPieces(const std::string& stream, size_t piece) {
  SseParser parser;
  std::vector<SseEvent> events;
  for (size_t i = 0; i < stream.size(); i += piece)
    EXPECT_TRUE(parser.Feed(std::string_view(stream).substr(i, piece), [&](const SseEvent& e) { events.push_back(e); })
                    .ok());
  return events;
}

TEST(SseParserTest, EventsSplitAnywhereComeOutWhole) {
  const std::string stream =
      ": a comment\r\n"
      "data: {\"a\":1}\r\n\r\n"
      "event: update\n"
      "id: 7\n"
      "data:first line\n"
      "data:  second line keeps one space\n"
      "retry: 100\n"
      "unknown: ignored\n"
      "\n"
      "data: cr only\r\r"
      "data\n\n"
      "data: [DONE]\n\n"
      "data: not finished";
  for (size_t piece = 1; piece <= stream.size(); ++piece) {
    SCOPED_TRACE("pieces of " + std::to_string(piece) + " bytes");
    const std::vector<SseEvent> events = ParseInPieces(stream, piece);
    ASSERT_EQ(events.size(), 5u);
    EXPECT_EQ(events[0].type, "message");
    EXPECT_EQ(events[0].data, "{\"a\":1}");
    EXPECT_EQ(events[0].id, "");
    EXPECT_EQ(events[1].type, "update");
    EXPECT_EQ(events[1].id, "7");
    EXPECT_EQ(events[1].data, "first line\n second line keeps one space");
    EXPECT_EQ(events[2].type, "message") << "the event type does not carry over";
    EXPECT_EQ(events[2].data, "cr only");
    EXPECT_EQ(events[2].id, "7") << "the last event id does";
    EXPECT_EQ(events[3].data, "") << "a data field without a colon is empty data";
    EXPECT_EQ(events[4].data, "[DONE]");
  }
}

TEST(SseParserTest, EventsWithoutDataAreNotDispatchedAndIdleSaysWhatIsPending) {
  SseParser parser;
  int n = 0;
  ASSERT_TRUE(parser.Feed("event: ping\n\n: comment\n\n", [&](const SseEvent&) { ++n; }).ok());
  EXPECT_EQ(n, 0);
  EXPECT_TRUE(parser.idle());
  ASSERT_TRUE(parser.Feed("data: x", [&](const SseEvent&) { ++n; }).ok());
  EXPECT_FALSE(parser.idle());
  ASSERT_TRUE(parser.Feed("\n", [&](const SseEvent&) { ++n; }).ok());
  EXPECT_FALSE(parser.idle()) << "data waits for the blank line";
  ASSERT_TRUE(parser.Feed("\n", [&](const SseEvent&) { ++n; }).ok());
  EXPECT_EQ(n, 1);
  EXPECT_TRUE(parser.idle());
}

TEST(SseParserTest, ALineLongerThanTheLimitIsAnError) {
  SseParser parser(/*max_line_bytes=*/16);
  int n = 0;
  EXPECT_TRUE(parser.Feed("data: 0123456789\n\n", [&](const SseEvent&) { ++n; }).ok());
  EXPECT_EQ(n, 1);
  const Status s = parser.Feed("data: 0123456789abcdef", [&](const SseEvent&) { ++n; });
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("longer than 16 bytes"), std::string::npos) << s.message();
  EXPECT_FALSE(parser.Feed("\n\n", [&](const SseEvent&) { ++n; }).ok()) << "a failed parser stays failed";
}

SseEvent Data(const std::string& data, const std::string& type = "message") {
  SseEvent e;
  e.type = type;
  e.data = data;
  return e;
}

TEST(OpenAiStreamTest, ChunksTokensUsageDoneAndErrors) {
  StreamEvent e = InterpretStreamEvent(Data(R"({"choices":[{"index":0,"text":" Once","finish_reason":null}]})"));
  EXPECT_EQ(e.kind, StreamEvent::kChunk);
  EXPECT_TRUE(e.token);
  EXPECT_EQ(e.finish_reason, "");

  e = InterpretStreamEvent(Data(R"({"choices":[{"index":0,"text":"","finish_reason":null}]})"));
  EXPECT_TRUE(e.token) << "a token whose bytes are not a whole character yet";

  e = InterpretStreamEvent(Data(R"({"choices":[{"index":0,"text":"","finish_reason":"length"}]})"));
  EXPECT_FALSE(e.token) << "an empty closing chunk carries no token";
  EXPECT_EQ(e.finish_reason, "length");

  e = InterpretStreamEvent(Data(R"({"choices":[{"index":0,"text":" end","finish_reason":"stop"}]})"));
  EXPECT_TRUE(e.token);
  EXPECT_EQ(e.finish_reason, "stop");

  e = InterpretStreamEvent(
      Data(R"({"choices":[],"usage":{"prompt_tokens":8,"completion_tokens":128,"total_tokens":136}})"));
  EXPECT_FALSE(e.token);
  EXPECT_EQ(e.prompt_tokens, 8);
  EXPECT_EQ(e.completion_tokens, 128);

  EXPECT_EQ(InterpretStreamEvent(Data("[DONE]")).kind, StreamEvent::kDone);

  e = InterpretStreamEvent(Data(R"({"error":{"message":"out of memory","type":"server_error"}})"));
  EXPECT_EQ(e.kind, StreamEvent::kError);
  EXPECT_EQ(e.error, "out of memory");

  e = InterpretStreamEvent(Data(R"({"message":"context full"})", "error"));
  EXPECT_EQ(e.kind, StreamEvent::kError);
  EXPECT_EQ(e.error, "context full");

  e = InterpretStreamEvent(Data("plain words", "error"));
  EXPECT_EQ(e.kind, StreamEvent::kError);
  EXPECT_EQ(e.error, "plain words");

  e = InterpretStreamEvent(Data("{not json"));
  EXPECT_EQ(e.kind, StreamEvent::kError);
  EXPECT_NE(e.error.find("not a JSON object"), std::string::npos) << e.error;
}

TEST(OpenAiStreamTest, TheRequestSendsTokenIdsGreedyStreamingWithUsage) {
  CompletionRequest r;
  r.model = "stories260K";
  r.prompt_ids = {5, 17, 300};
  r.max_tokens = 128;
  r.seed = 9;
  r.ignore_eos = true;
  nlohmann::json j = nlohmann::json::parse(CompletionRequestBody(r));
  EXPECT_EQ(j["model"], "stories260K");
  EXPECT_EQ(j["prompt"], nlohmann::json({5, 17, 300}));
  EXPECT_EQ(j["max_tokens"], 128);
  EXPECT_EQ(j["temperature"], 0);
  EXPECT_EQ(j["seed"], 9);
  EXPECT_EQ(j["stream"], true);
  EXPECT_EQ(j["stream_options"]["include_usage"], true);
  EXPECT_EQ(j["ignore_eos"], true);
  EXPECT_EQ(j["min_tokens"], 128) << "llama-cpp-python's and vLLM's way to exact lengths";

  r.prompt_ids.clear();
  r.prompt_text = "Once upon a time";
  r.ignore_eos = false;
  j = nlohmann::json::parse(CompletionRequestBody(r));
  EXPECT_EQ(j["prompt"], "Once upon a time");
  EXPECT_FALSE(j.contains("ignore_eos"));
  EXPECT_FALSE(j.contains("min_tokens"));
}

TEST(OpenAiStreamTest, EndpointUrls) {
  Result<HttpEndpoint> e = ParseServerUrl("http://127.0.0.1:8080");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, "8080");
  EXPECT_EQ(e->base_path, "");
  e = ParseServerUrl("http://localhost/v1/");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->port, "80");
  EXPECT_EQ(e->base_path, "") << "paths add /v1 themselves";
  e = ParseServerUrl("http://[::1]:9000/proxy/v1");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->host, "::1");
  EXPECT_EQ(e->base_path, "/proxy");
  for (const char* bad : {"tcp://127.0.0.1:5555", "127.0.0.1:8000", "http://:80", "http://h:0", "http://h:99999",
                          "http://h:x", "http://h:80/?q=1", "http://[::1"}) {
    EXPECT_EQ(ParseServerUrl(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_NE(ParseServerUrl("https://h").status().message().find("https is not supported"), std::string::npos);
}

TEST(OpenAiStreamTest, ModelListsAndErrorBodies) {
  const std::string llama_cpp =
      R"({"object":"list","data":[{"id":"stories260K.gguf","object":"model","meta":{"n_vocab":512,"n_ctx_train":512}}]})";
  Result<ServedModelInfo> m = ParseModelList(llama_cpp, "");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->id, "stories260K.gguf");
  EXPECT_EQ(m->vocab_size, 512);
  EXPECT_EQ(m->max_seq_len, 512);
  m = ParseModelList(R"({"data":[{"id":"a"},{"id":"b","max_model_len":2048}]})", "b");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->id, "b");
  EXPECT_EQ(m->vocab_size, 0) << "not said: unknown";
  EXPECT_EQ(m->max_seq_len, 2048);
  const Status missing = ParseModelList(R"({"data":[{"id":"a"},{"id":"b"}]})", "c").status();
  EXPECT_EQ(missing.code(), StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("it serves: a, b"), std::string::npos) << missing.message();
  EXPECT_EQ(ParseModelList("<html>", "").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseModelList(R"({"data":[]})", "").status().code(), StatusCode::kInvalidArgument);

  EXPECT_EQ(HttpErrorText(400, R"({"error":{"message":"max_tokens must be >= 1","type":"invalid_request_error"}})"),
            "HTTP 400: max_tokens must be >= 1");
  EXPECT_EQ(HttpErrorText(422, R"({"detail":"field required"})"), "HTTP 422: field required");
  EXPECT_EQ(HttpErrorText(503, "Service Unavailable"), "HTTP 503: Service Unavailable");
  EXPECT_EQ(HttpErrorText(500, ""), "HTTP 500");
}

}  // namespace
}  // namespace flover
