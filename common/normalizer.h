// Normalizer: tokenizers' normalizers, which rewrite text before it is split into
// words: Prepend, Replace (a string or a regex), Unicode normalization (NFC, NFD, NFKC,
// NFKD, by utf8proc), Strip (whitespace) and Sequence. A tokenizer applies its
// normalizer to each stretch of text between added tokens, not to the text as a whole.
//
// Invariants: valid UTF-8 in, valid UTF-8 out.
// Thread-safety: immutable after construction; Normalize may run from many threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/unicode_regex.h"

namespace flover {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // REQUIRES: *text is valid UTF-8.
  virtual void Normalize(std::string* text) const = 0;
  // At most how many input bytes one byte of the output stands for (text may shrink);
  // 0 when there is no bound (text may be removed).
  virtual int max_shrink() const { return 1; }
};

enum class UnicodeForm { kNfc, kNfd, kNfkc, kNfkd };

// Prepends `prefix` to non-empty text.
std::shared_ptr<const Normalizer> MakePrependNormalizer(std::string prefix);
// Replaces every match of `pattern` (found as UnicodeRegex::FindAll does) by `content`.
std::shared_ptr<const Normalizer> MakeReplaceNormalizer(UnicodeRegex pattern, std::string content);
std::shared_ptr<const Normalizer> MakeUnicodeNormalizer(UnicodeForm form);
// Removes Unicode whitespace on the left and/or right.
std::shared_ptr<const Normalizer> MakeStripNormalizer(bool left, bool right);
std::shared_ptr<const Normalizer> MakeSequenceNormalizer(std::vector<std::shared_ptr<const Normalizer>> steps);

}  // namespace flover
