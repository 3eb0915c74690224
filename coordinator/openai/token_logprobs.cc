#include "coordinator/openai/token_logprobs.h"

#include <cmath>

#include "common/check.h"
#include "common/tokenizer.h"

namespace flover::openai {

std::string TokenString(const Tokenizer* tokenizer, int prev_token, int token) {
  if (!tokenizer || token < 0 || token >= tokenizer->vocab_size()) return "token_id:" + std::to_string(token);
  return tokenizer->DecodeToken(prev_token, token);
}

double ShownLogprob(float logprob) { return std::isfinite(logprob) ? logprob : -9999.0; }

std::vector<LogprobEntry> LogprobEntries(const Tokenizer* tokenizer,
                                         const google::protobuf::RepeatedField<int32_t>& tokens,
                                         const google::protobuf::RepeatedPtrField<proto::TokenLogprobs>& logprobs,
                                         int* prev_token, size_t* text_offset) {
  FLOVER_CHECK(tokens.size() == logprobs.size()) << tokens.size() << " tokens, " << logprobs.size() << " logprobs";
  std::vector<LogprobEntry> entries;
  entries.reserve(static_cast<size_t>(tokens.size()));
  for (int i = 0; i < tokens.size(); ++i) {
    LogprobEntry& entry = entries.emplace_back();
    const int token = tokens[i];
    entry.chosen = {token, TokenString(tokenizer, *prev_token, token), logprobs[i].logprob()};
    for (const proto::TokenLogprob& alt : logprobs[i].top())
      entry.top.push_back({alt.token(), TokenString(tokenizer, *prev_token, alt.token()), alt.logprob()});
    entry.text_offset = *text_offset;
    *text_offset += entry.chosen.token.size();
    *prev_token = token;
  }
  return entries;
}

}  // namespace flover::openai
