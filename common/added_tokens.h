// AddedVocabulary: tokenizers' added tokens (special tokens such as <|eot_id|> or <s>,
// and user tokens), which are found in the text before anything else and encode to
// their id whatever the model would make of their text.
//
// Matching follows tokenizers' AddedVocabulary: tokens with normalized = false are
// found in the raw text, leftmost-longest; the text between them is normalized, then
// tokens with normalized = true are found in it (their patterns are their content
// normalized). lstrip / rstrip widen a match over the whitespace before / after it;
// single_word drops matches that touch a word character on either side.
//
// Thread-safety: immutable after construction; Split may run from many threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace flover {

class Normalizer;

struct AddedToken {
  int id = -1;
  std::string content;
  bool special = false;      // a control token (tokenizers' skip_special_tokens drops it)
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;   // matched in normalized text
};

// A stretch of the text to encode: an added token, or (normalized) text between them.
struct TextSegment {
  std::string text;   // token_id < 0: normalized text, never empty
  int token_id = -1;  // >= 0: an added token's id
  bool at_start = false;  // begins where the whole text begins
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // Tokens with empty content are left out, as tokenizers does. `normalizer` (may be
  // null) makes the patterns of normalized tokens.
  AddedVocabulary(std::vector<AddedToken> tokens, const Normalizer* normalizer);

  // The segments of `text`, in order; `normalizer` (may be null, and should be the one
  // given to the constructor) normalizes the text between added tokens.
  // REQUIRES: text is valid UTF-8 when there are lstrip, rstrip or single_word tokens or
  // a normalizer.
  std::vector<TextSegment> Split(std::string_view text, const Normalizer* normalizer) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool empty() const { return tokens_.empty(); }
  // Whether a match can take in any amount of whitespace (lstrip or rstrip tokens).
  bool strips_whitespace() const { return strips_whitespace_; }

 private:
  // Leftmost-longest search for a set of patterns: a byte trie.
  class Matcher {
   public:
    void Add(std::string_view pattern, int token_index);
    struct Match {
      size_t begin, end;
      int token_index;
    };
    std::optional<Match> Find(std::string_view text, size_t from) const;
    bool empty() const { return n_patterns_ == 0; }

   private:
    int Child(int node, unsigned char byte) const;
    std::vector<int> terminal_{-1};  // per node: token index, -1 when no pattern ends there
    std::unordered_map<uint64_t, int> edges_;  // (node << 8 | byte) -> child node
    int n_patterns_ = 0;
  };
  struct Piece {
    int token_index;  // -1: text
    size_t begin, end;
  };
  std::vector<Piece> FindMatches(std::string_view text, const Matcher& matcher) const;

  // Constant after construction.
  std::vector<AddedToken> tokens_;
  Matcher raw_;         // normalized = false
  Matcher normalized_;  // normalized = true
  bool strips_whitespace_ = false;
};

}  // namespace flover
