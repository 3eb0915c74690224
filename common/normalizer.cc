#include "common/normalizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "common/check.h"
#include "common/utf8.h"

namespace flover {
namespace {

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void Normalize(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(UnicodeRegex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Normalize(std::string* text) const override {
    const auto matches = pattern_.FindAll(*text);
    if (matches.empty()) return;
    std::string out;
    size_t at = 0;
    for (const auto& [begin, end] : matches) {
      out.append(*text, at, begin - at).append(content_);
      at = end;
    }
    out.append(*text, at, std::string::npos);
    *text = std::move(out);
  }
  // A literal pattern becomes the content; a regex may match any length.
  int max_shrink() const override {
    if (!pattern_.literal() || content_.empty()) return 0;
    return static_cast<int>(std::max<size_t>(1, (pattern_.pattern().size() + content_.size() - 1) / content_.size()));
  }

 private:
  UnicodeRegex pattern_;
  std::string content_;
};

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(UnicodeForm form) : form_(form) {}
  void Normalize(std::string* text) const override {
    if (text->empty()) return;
    int options = UTF8PROC_STABLE;
    switch (form_) {
      case UnicodeForm::kNfc: options |= UTF8PROC_COMPOSE; break;
      case UnicodeForm::kNfd: options |= UTF8PROC_DECOMPOSE; break;
      case UnicodeForm::kNfkc: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
      case UnicodeForm::kNfkd: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    }
    utf8proc_uint8_t* out = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text->data()),
                                            static_cast<utf8proc_ssize_t>(text->size()), &out,
                                            static_cast<utf8proc_option_t>(options));
    // Valid UTF-8 cannot fail; out of memory leaves the text as it is.
    if (n >= 0 && out != nullptr) text->assign(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
    std::free(out);
  }
  // Composition turns up to 3 characters into one (a Hangul syllable from its jamo:
  // 9 bytes into 3); combining marks are 2 or 3 bytes.
  int max_shrink() const override { return 4; }

 private:
  UnicodeForm form_;
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void Normalize(std::string* text) const override {
    size_t begin = 0, end = text->size();
    if (left_) {
      while (begin < end) {
        size_t n = 0;
        if (!IsUnicodeWhitespace(DecodeUtf8At(*text, begin, &n))) break;
        begin += n;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>((*text)[start]) & 0xC0) == 0x80) --start;
        size_t n = 0;
        if (!IsUnicodeWhitespace(DecodeUtf8At(*text, start, &n))) break;
        end = start;
      }
    }
    *text = text->substr(begin, end - begin);
  }
  int max_shrink() const override { return 0; }

 private:
  bool left_, right_;
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::shared_ptr<const Normalizer>> steps) : steps_(std::move(steps)) {}
  void Normalize(std::string* text) const override {
    for (const auto& step : steps_) step->Normalize(text);
  }
  int max_shrink() const override {
    long shrink = 1;
    for (const auto& step : steps_) {
      const int s = step->max_shrink();
      if (s == 0) return 0;
      shrink *= s;
      if (shrink > 1 << 16) return 0;
    }
    return static_cast<int>(shrink);
  }

 private:
  std::vector<std::shared_ptr<const Normalizer>> steps_;
};

}  // namespace

std::shared_ptr<const Normalizer> MakePrependNormalizer(std::string prefix) {
  return std::make_shared<PrependNormalizer>(std::move(prefix));
}
std::shared_ptr<const Normalizer> MakeReplaceNormalizer(UnicodeRegex pattern, std::string content) {
  return std::make_shared<ReplaceNormalizer>(std::move(pattern), std::move(content));
}
std::shared_ptr<const Normalizer> MakeUnicodeNormalizer(UnicodeForm form) {
  return std::make_shared<UnicodeNormalizer>(form);
}
std::shared_ptr<const Normalizer> MakeStripNormalizer(bool left, bool right) {
  return std::make_shared<StripNormalizer>(left, right);
}
std::shared_ptr<const Normalizer> MakeSequenceNormalizer(std::vector<std::shared_ptr<const Normalizer>> steps) {
  for (const auto& step : steps) FLOVER_CHECK(step != nullptr);
  return std::make_shared<SequenceNormalizer>(std::move(steps));
}

}  // namespace flover
