#include "common/token_stream_decoder.h"

namespace flover {

TokenStreamDecoder::TokenStreamDecoder(const Tokenizer& tokenizer, int prev_token)
    : tokenizer_(tokenizer), prev_token_(prev_token) {
  if (tokenizer.kind() == Tokenizer::Kind::kBpe)
    chain_.emplace(tokenizer.decoder_steps(), tokenizer.StartsText(prev_token), /*raw=*/false);
}

std::string TokenStreamDecoder::Push(int token) {
  if (!tokenizer_) return "";
  if (!chain_) {
    std::string text = utf8_.Push(tokenizer_->DecodeToken(prev_token_, token));
    prev_token_ = token;
    return text;
  }
  if (tokenizer_->HasToken(token))
    chain_->Push(tokenizer_->piece(token));
  return chain_->Take();
}

std::string TokenStreamDecoder::Finish() {
  if (!tokenizer_) return "";
  if (!chain_) return utf8_.Finish();
  chain_->Finish();
  return chain_->Take();
}

}  // namespace flover
