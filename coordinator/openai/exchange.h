// The seam between the HTTP server (coordinator/http: connections, ids, the in-process
// client socket, cancellation) and the OpenAI API layer (coordinator/openai: JSON in,
// SubmitRequests out, ServerMessages in, response bytes out). The API layer does no
// I/O: it is pure translation, tested with canned messages.
//
// One Exchange per HTTP request: the server takes its submits, sends each with an id of
// its own, and hands every reply for submit i back to OnReply(i, ...), writing what
// comes out. When the client goes away the server cancels the submits that are not done;
// the Exchange is then dropped.
//
// Thread-safety: none; the HTTP thread owns every Exchange.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/proto/flover.pb.h"

namespace flover {
class Tokenizer;
}

namespace flover::openai {

// What the API serves, fixed once the HTTP server starts.
struct ServedModel {
  std::string id;                        // model.name: the id /v1/models lists and requests name
  const Tokenizer* tokenizer = nullptr;  // null: no tokenizer configured (text prompts refused)
  std::string chat_template;             // model.chat_template, else the model's metadata; "" = none
  uint32_t request_timeout_ms = 0;       // http.request_timeout_ms -> SubmitRequest.timeout_ms (0 = none)
  int max_n = 16;                        // http.max_n: the most choices one request may ask for
};

// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;                           // HTTP status
  std::string type = "invalid_request_error";
  std::string message;
  std::string param;  // the request field at fault; "" = null
  std::string code;   // "" = null
};

// The JSON body of `error` (application/json).
std::string ErrorBody(const ApiError& error);

// What the server writes next for one exchange.
struct Output {
  std::optional<int> head_status;  // set exactly once, with or before the first body bytes
  std::string content_type;        // with head_status: "text/event-stream" or "application/json"
  std::string bytes;               // body bytes to write now (SSE events, or the whole JSON)
  bool done = false;               // the response is complete
};

// One HTTP request's conversation with the cluster.
class Exchange {
 public:
  virtual ~Exchange() = default;

  // The submits to send, index = choice index (n per prompt, prompts in order). Their
  // client_request_id is empty: the server assigns ids and remembers the index. Called once.
  virtual std::vector<proto::SubmitRequest> TakeSubmits() = 0;

  // A ServerMessage (accepted, token, done or error) for submit `index`.
  virtual Output OnReply(size_t index, const proto::ServerMessage& reply) = 0;
};

// An exchange to run, or the error to answer at once.
using Started = std::variant<std::unique_ptr<Exchange>, ApiError>;

// POST /v1/completions and POST /v1/chat/completions with body `body`.
Started StartCompletions(std::string_view body, const ServedModel& model);
Started StartChatCompletions(std::string_view body, const ServedModel& model);

// GET /v1/models: the served model, created at `created_unix`.
std::string ModelsBody(const ServedModel& model, int64_t created_unix);

}  // namespace flover::openai
