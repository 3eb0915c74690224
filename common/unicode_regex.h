// UnicodeRegex: a compiled regular expression over UTF-8 text (PCRE2 in UTF mode with
// Unicode properties: \p{L}, \p{N}, \s and \w by Unicode, case-insensitive groups by
// Unicode case folding, lookahead), for the pre-tokenizer patterns of tokenizer.json
// (Llama 3's, Qwen2's, GPT-2's) and similar.
//
// FindAll enumerates matches the way the Oniguruma iterator of Hugging Face tokenizers
// does: leftmost matches, left to right, each search starting where the last match
// ended; an empty match right where the previous match ended is skipped by one
// character. Matching is bounded (PCRE2's match and depth limits): a pattern that would
// backtrack without end stops matching, and the rest of the text counts as unmatched.
//
// Thread-safety: immutable after Compile; FindAll may run from many threads at once.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace flover {

class UnicodeRegex {
 public:
  // InvalidArgument naming the pattern and PCRE2's reason (with the offset) when it does
  // not compile. `literal`: the pattern is plain text to find, not a regex.
  static Result<UnicodeRegex> Compile(std::string_view pattern, bool literal = false);

  // Byte ranges [begin, end) of the matches in `text`.
  // REQUIRES: text is valid UTF-8.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }
  bool literal() const { return literal_; }

 private:
  struct Code;
  UnicodeRegex() = default;

  std::string pattern_;
  bool literal_ = false;
  std::shared_ptr<const Code> code_;  // shared: compiled code is immutable
};

}  // namespace flover
