// PreTokenizer: tokenizers' pre-tokenizers, which split normalized text into the words
// that the model encodes one by one: Split (a regex or string, with its delimiter
// behaviour), ByteLevel (GPT-2's regex and the byte-level alphabet, byte_level.h),
// Metaspace (spaces as "▁"), Digits and Sequence. Splitting follows tokenizers exactly:
// which pieces a match makes (Isolated, Removed, MergedWithPrevious, MergedWithNext,
// Contiguous, inverted or not) and that empty pieces are dropped.
//
// Invariants: pieces are valid UTF-8.
// Thread-safety: immutable after construction; Split may run from many threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/unicode_regex.h"

namespace flover {

// The pre-tokenizer patterns of well-known models (Split's regex; GPT-2's is the one
// ByteLevel uses with use_regex).
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct PreToken {
  std::string text;
  bool at_start = false;  // begins where the encoded text begins (Metaspace's "first")
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces each piece by the pieces it splits into, in order.
  virtual void Split(std::vector<PreToken>* pieces) const = 0;
  // Whether some text may be dropped (Split with Removed behaviour).
  virtual bool drops_text() const { return false; }
  // Whether pieces come out in the byte-level alphabet (a ByteLevel step).
  virtual bool maps_to_byte_alphabet() const { return false; }
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
enum class PrependScheme { kAlways, kFirst, kNever };

std::shared_ptr<const PreTokenizer> MakeSplitPreTokenizer(UnicodeRegex pattern, SplitBehavior behavior,
                                                          bool invert);
// add_prefix_space: a piece not starting with ' ' gets one. use_regex: split with
// kGpt2Pattern (Isolated) first. Then each piece's bytes become the byte-level alphabet.
std::shared_ptr<const PreTokenizer> MakeByteLevelPreTokenizer(bool add_prefix_space, bool use_regex);
// Spaces become `replacement` (one character); a piece gets it prepended (kAlways:
// each piece that does not start with it; kFirst: only the piece at the start of the
// text); `split`: pieces are then split before each replacement character.
std::shared_ptr<const PreTokenizer> MakeMetaspacePreTokenizer(std::string replacement, PrependScheme scheme,
                                                              bool split);
// Numeric characters (Unicode N*) apart from the rest: each alone, or runs together.
std::shared_ptr<const PreTokenizer> MakeDigitsPreTokenizer(bool individual_digits);
std::shared_ptr<const PreTokenizer> MakeSequencePreTokenizer(std::vector<std::shared_ptr<const PreTokenizer>> steps);

}  // namespace flover
