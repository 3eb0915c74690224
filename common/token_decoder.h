// The decoder pipeline of Hugging Face tokenizers (tokenizer.json's "decoder"), run as
// a stream: token texts go in one at a time, text comes out as soon as it is final.
//
// Steps (DecoderStep), as in tokenizers:
//   ByteLevel     each token's characters back to the bytes they stand for (a token with
//                 a character outside the alphabet keeps its own bytes), all tokens joined,
//                 invalid UTF-8 replaced by U+FFFD (maximal subparts)
//   Replace       a string (or regex) replaced in each token
//   ByteFallback  runs of <0xNN> tokens become their bytes when these are valid UTF-8, else
//                 one U+FFFD per byte
//   Fuse          all tokens joined into one
//   Strip         up to `start` / `stop` copies of a character removed at each token's
//                 start / end
//   Metaspace     the replacement character becomes ' ', and is dropped in the first
//                 token when the pre-tokenizer prepends it
//   Join          (no decoder in the file) tokens joined with ' '
// A Sequence is its steps one after the other.
//
// Streaming is exact: the text of a chain is the same however it is read, and equals
// what tokenizers' decode gives for the same tokens. Text that may still change waits:
// an unfinished UTF-8 character, a run of byte tokens (a later byte may make the whole
// run invalid), trailing characters that Strip may remove.
//
// Thread-safety: DecoderStep is immutable. A DecodeChain is one stream's state: use it
// from one thread at a time.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/unicode_regex.h"

namespace flover {

struct DecoderStep {
  enum class Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace, kJoin };
  Kind kind = Kind::kFuse;
  std::optional<UnicodeRegex> pattern;  // kReplace
  std::string content;  // kReplace: the replacement; kStrip: the character; kMetaspace: the replacement character
  int start = 0, stop = 0;   // kStrip
  bool strip_first = false;  // kMetaspace: drop the replacement character in the first token
};

class DecodeChain {
 public:
  // at_start: the first token pushed begins the text (tokenizers' decode; e.g. Strip or
  // Metaspace may drop its leading space), else it continues earlier text. raw: bytes as
  // the tokens give them: byte tokens at once and no UTF-8 repair (for one token's
  // bytes); else the output is valid UTF-8.
  DecodeChain(const std::vector<DecoderStep>& steps, bool at_start, bool raw);
  ~DecodeChain();
  DecodeChain(DecodeChain&&) noexcept;
  DecodeChain& operator=(DecodeChain&&) noexcept;

  // One token's text (as the vocabulary spells it).
  void Push(std::string_view token);
  // The end of the tokens: what was held comes out.
  void Finish();
  // The text that came out since the last Take.
  std::string Take();

  class Stage;

 private:
  std::vector<std::unique_ptr<Stage>> stages_;  // stages_[i] feeds stages_[i + 1]; the last is the output
};

}  // namespace flover
