#include "common/pretokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <utility>

#include "common/byte_level.h"
#include "common/check.h"
#include "common/utf8.h"

namespace flover {
namespace {

// A stretch of a piece: [begin, end) and whether the pattern matched it.
struct Span {
  size_t begin, end;
  bool match;
};

// tokenizers' Pattern::find_matches for a regex: matches and the gaps between them,
// covering the text (one unmatched empty span for empty text).
std::vector<Span> RegexSpans(const UnicodeRegex& regex, std::string_view text) {
  if (text.empty()) return {{0, 0, false}};
  std::vector<Span> spans;
  size_t prev = 0;
  for (const auto& [begin, end] : regex.FindAll(text)) {
    if (prev != begin) spans.push_back({prev, begin, false});
    spans.push_back({begin, end, true});
    prev = end;
  }
  if (prev != text.size()) spans.push_back({prev, text.size(), false});
  return spans;
}

// The same for a predicate over characters: each matching character is one match.
template <typename Pred>
std::vector<Span> CharSpans(std::string_view text, Pred pred) {
  if (text.empty()) return {{0, 0, false}};
  std::vector<Span> spans;
  size_t last = 0;
  for (size_t i = 0; i < text.size();) {
    size_t n = 0;
    const char32_t c = DecodeUtf8At(text, i, &n);
    if (pred(c)) {
      if (last < i) spans.push_back({last, i, false});
      spans.push_back({i, i + n, true});
      last = i + n;
    }
    i += n;
  }
  if (text.size() > last) spans.push_back({last, text.size(), false});
  return spans;
}

// NormalizedString::split: the spans that stay as pieces, by behaviour.
std::vector<Span> ApplyBehavior(std::vector<Span> spans, SplitBehavior behavior) {
  std::vector<Span> out;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (Span s : spans) out.push_back({s.begin, s.end, false});
      return out;
    case SplitBehavior::kRemoved:
      return spans;  // `match` marks those to remove
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Span& s : spans) {
        if (s.match == previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.begin, s.end, false});
        }
        previous_match = s.match;
      }
      return out;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Span& s : spans) {
        if (s.match && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.begin, s.end, false});
        }
        previous_match = s.match;
      }
      return out;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !previous_match && !out.empty()) {
          out.back().begin = it->begin;
        } else {
          out.push_back({it->begin, it->end, false});
        }
        previous_match = it->match;
      }
      std::reverse(out.begin(), out.end());
      return out;
    }
  }
  return out;
}

// Appends the kept, non-empty spans of `piece` to `out`.
void AppendPieces(const PreToken& piece, const std::vector<Span>& spans, std::vector<PreToken>* out) {
  for (const Span& s : spans) {
    if (s.match || s.end <= s.begin) continue;
    out->push_back({piece.text.substr(s.begin, s.end - s.begin), piece.at_start && s.begin == 0});
  }
}

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(UnicodeRegex pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}

  void Split(std::vector<PreToken>* pieces) const override {
    std::vector<PreToken> out;
    for (const PreToken& piece : *pieces) {
      std::vector<Span> spans = RegexSpans(pattern_, piece.text);
      if (invert_)
        for (Span& s : spans) s.match = !s.match;
      AppendPieces(piece, ApplyBehavior(std::move(spans), behavior_), &out);
    }
    *pieces = std::move(out);
  }
  bool drops_text() const override { return behavior_ == SplitBehavior::kRemoved; }

 private:
  UnicodeRegex pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

const UnicodeRegex& Gpt2Regex() {
  static const UnicodeRegex regex = [] {
    Result<UnicodeRegex> r = UnicodeRegex::Compile(kGpt2Pattern);
    FLOVER_CHECK(r.ok()) << r.status().ToString();
    return std::move(r).value();
  }();
  return regex;
}

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}

  void Split(std::vector<PreToken>* pieces) const override {
    std::vector<PreToken> split;
    for (PreToken& piece : *pieces) {
      if (add_prefix_space_ && (piece.text.empty() || piece.text.front() != ' ')) piece.text = " " + piece.text;
      if (use_regex_) {
        std::vector<Span> spans = RegexSpans(Gpt2Regex(), piece.text);
        AppendPieces(piece, ApplyBehavior(std::move(spans), SplitBehavior::kIsolated), &split);
      } else if (!piece.text.empty()) {
        split.push_back(std::move(piece));
      }
    }
    for (PreToken& piece : split) {
      std::string mapped;
      ByteLevelEncode(piece.text, &mapped);
      piece.text = std::move(mapped);
    }
    *pieces = std::move(split);
  }
  bool maps_to_byte_alphabet() const override { return true; }

 private:
  bool add_prefix_space_, use_regex_;
};

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {
    size_t n = 0;
    replacement_char_ = DecodeUtf8At(replacement_, 0, &n);
  }

  void Split(std::vector<PreToken>* pieces) const override {
    std::vector<PreToken> out;
    for (PreToken& piece : *pieces) {
      std::string text;
      for (const char c : piece.text) {
        if (c == ' ') {
          text.append(replacement_);
        } else {
          text.push_back(c);
        }
      }
      const bool starts_with = text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts_with && (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && piece.at_start)))
        text.insert(0, replacement_);
      PreToken replaced{std::move(text), piece.at_start};
      if (split_) {
        const char32_t r = replacement_char_;
        std::vector<Span> spans = CharSpans(replaced.text, [r](char32_t c) { return c == r; });
        AppendPieces(replaced, ApplyBehavior(std::move(spans), SplitBehavior::kMergedWithNext), &out);
      } else if (!replaced.text.empty()) {
        out.push_back(std::move(replaced));
      }
    }
    *pieces = std::move(out);
  }

 private:
  std::string replacement_;
  char32_t replacement_char_;
  PrependScheme scheme_;
  bool split_;
};

bool IsNumeric(char32_t c) {
  const utf8proc_category_t cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

class DigitsPreTokenizer final : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}

  void Split(std::vector<PreToken>* pieces) const override {
    std::vector<PreToken> out;
    for (const PreToken& piece : *pieces) {
      std::vector<Span> spans = CharSpans(piece.text, IsNumeric);
      AppendPieces(piece,
                   ApplyBehavior(std::move(spans), individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous),
                   &out);
    }
    *pieces = std::move(out);
  }

 private:
  bool individual_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::shared_ptr<const PreTokenizer>> steps) : steps_(std::move(steps)) {}
  void Split(std::vector<PreToken>* pieces) const override {
    for (const auto& step : steps_) step->Split(pieces);
  }
  bool drops_text() const override {
    for (const auto& step : steps_)
      if (step->drops_text()) return true;
    return false;
  }
  bool maps_to_byte_alphabet() const override {
    for (const auto& step : steps_)
      if (step->maps_to_byte_alphabet()) return true;
    return false;
  }

 private:
  std::vector<std::shared_ptr<const PreTokenizer>> steps_;
};

}  // namespace

std::shared_ptr<const PreTokenizer> MakeSplitPreTokenizer(UnicodeRegex pattern, SplitBehavior behavior,
                                                          bool invert) {
  return std::make_shared<SplitPreTokenizer>(std::move(pattern), behavior, invert);
}
std::shared_ptr<const PreTokenizer> MakeByteLevelPreTokenizer(bool add_prefix_space, bool use_regex) {
  return std::make_shared<ByteLevelPreTokenizer>(add_prefix_space, use_regex);
}
std::shared_ptr<const PreTokenizer> MakeMetaspacePreTokenizer(std::string replacement, PrependScheme scheme,
                                                              bool split) {
  FLOVER_CHECK(!replacement.empty() && IsValidUtf8(replacement));
  return std::make_shared<MetaspacePreTokenizer>(std::move(replacement), scheme, split);
}
std::shared_ptr<const PreTokenizer> MakeDigitsPreTokenizer(bool individual_digits) {
  return std::make_shared<DigitsPreTokenizer>(individual_digits);
}
std::shared_ptr<const PreTokenizer> MakeSequencePreTokenizer(std::vector<std::shared_ptr<const PreTokenizer>> steps) {
  for (const auto& step : steps) FLOVER_CHECK(step != nullptr);
  return std::make_shared<SequencePreTokenizer>(std::move(steps));
}

}  // namespace flover
