// TokenStreamDecoder: the text of generated tokens, one token at a time, as complete
// UTF-8 only. A token can end inside a character (byte-level BPE tokens, <0xNN> byte
// tokens), and a decoder may still change text it has seen (a run of byte tokens that a
// later byte makes invalid; a leading space stripped): what may still change is held
// until it is final, so that
//   Push(t1) + Push(t2) + ... + Finish() == ToValidUtf8(tokenizer.Decode({t1, t2, ...}, prev))
// and every returned piece is valid UTF-8 (for BPE tokenizers Decode is valid UTF-8
// already). Bytes that cannot be UTF-8 become U+FFFD.
//
// Thread-safety: one stream's state; use from one thread at a time. Holds a copy of the
// tokenizer (which shares its vocabulary), so it outlives the Tokenizer it came from.
#pragma once

#include <optional>
#include <string>

#include "common/token_decoder.h"
#include "common/tokenizer.h"
#include "common/utf8.h"

namespace flover {

class TokenStreamDecoder {
 public:
  // Decodes nothing: Push and Finish give "".
  TokenStreamDecoder() = default;
  // `prev_token`: the token before the first one pushed (-1: none), as in
  // Tokenizer::Decode.
  TokenStreamDecoder(const Tokenizer& tokenizer, int prev_token);

  // The text that is final once `token` is added (often "", when it only holds).
  std::string Push(int token);
  // The end of the stream: what was held (an unfinished character becomes U+FFFD).
  std::string Finish();

 private:
  std::optional<Tokenizer> tokenizer_;
  int prev_token_ = -1;
  Utf8Stream utf8_;                  // piece-score tokenizers: their bytes made UTF-8
  std::optional<DecodeChain> chain_;  // BPE tokenizers: their decoder, streaming
};

}  // namespace flover
