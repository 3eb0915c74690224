// The JSON shape of one endpoint's responses: what a choice looks like whole
// (non-streaming) and as stream chunks. ChoiceExchange assembles responses and leaves
// only these shapes to the endpoint: CompletionFormat (/v1/completions, "text_completion")
// and ChatFormat (/v1/chat/completions, "chat.completion" / "chat.completion.chunk").
//
// Thread-safety: immutable; methods are const.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/openai/json_output.h"
#include "coordinator/openai/token_logprobs.h"

namespace flover::openai {

class ResponseFormat {
 public:
  virtual ~ResponseFormat() = default;

  virtual const char* id_prefix() const = 0;     // "cmpl-", "chatcmpl-"
  virtual const char* object() const = 0;        // of the whole response
  virtual const char* chunk_object() const = 0;  // of a stream chunk

  // Stream: the chunk choice that opens choice `index` before its first text (chat: the
  // assistant role; completions: the echoed prompt `echo`), or nothing.
  virtual std::optional<Json> OpenChoice(int index, const std::string& echo) const = 0;
  // Stream: a chunk choice with more text and, when non-null, its tokens' log-probabilities.
  virtual Json DeltaChoice(int index, const std::string& text, const std::vector<LogprobEntry>* logprobs) const = 0;
  // Stream: the choice's last chunk, with its finish reason ("stop", "length").
  virtual Json FinishChoice(int index, const std::string& finish_reason) const = 0;
  // Whole response: the choice with all its text (echo included) and log-probabilities.
  virtual Json WholeChoice(int index, const std::string& text, const std::vector<LogprobEntry>* logprobs,
                           const std::string& finish_reason) const = 0;
};

std::unique_ptr<ResponseFormat> CompletionFormat();
std::unique_ptr<ResponseFormat> ChatFormat();

}  // namespace flover::openai
