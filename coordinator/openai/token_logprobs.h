// Log-probabilities of generated tokens as the API shows them: each token with its text
// (the tokenizer's piece after the token before it, "token_id:<n>" without a
// tokenizer, as vLLM writes tokens it has no text for), its log-probability, the most
// likely alternatives, and where its text starts in the choice's text.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <google/protobuf/repeated_field.h>

#include "common/proto/flover.pb.h"

namespace flover {
class Tokenizer;
}

namespace flover::openai {

struct TopToken {
  int id = 0;
  std::string token;  // its text: raw bytes, possibly part of a UTF-8 character
  float logprob = 0;
};

struct LogprobEntry {
  TopToken chosen;
  std::vector<TopToken> top;  // most likely first
  size_t text_offset = 0;     // byte offset of chosen.token in the choice's text
};

// The text of `token` after `prev_token` (DecodeToken), or "token_id:<token>" when there
// is no tokenizer or the id is outside its vocabulary.
std::string TokenString(const Tokenizer* tokenizer, int prev_token, int token);

// A log-probability as JSON shows it: -9999.0 for -inf (or NaN), as OpenAI does.
double ShownLogprob(float logprob);

// Entries for `tokens` (tokens[i] has logprobs[i]), continuing a choice whose previous
// token was *prev_token and whose shown text so far is *text_offset bytes long; both
// are advanced. REQUIRES: logprobs.size() == tokens.size().
std::vector<LogprobEntry> LogprobEntries(const Tokenizer* tokenizer,
                                         const google::protobuf::RepeatedField<int32_t>& tokens,
                                         const google::protobuf::RepeatedPtrField<proto::TokenLogprobs>& logprobs,
                                         int* prev_token, size_t* text_offset);

}  // namespace flover::openai
