#include "common/token_decoder.h"

#include <utf8proc.h>

#include <algorithm>
#include <utility>

#include "common/byte_level.h"
#include "common/utf8.h"

namespace flover {

// One step's state. Parts of tokens flow through: `begins` marks a token's first part,
// `ends` its last (a token may come in several parts after a step that joins tokens).
class DecodeChain::Stage {
 public:
  virtual ~Stage() = default;
  virtual void Push(std::string_view text, bool begins, bool ends) = 0;
  virtual void Finish() { next_->Finish(); }
  void set_next(Stage* next) { next_ = next; }

 protected:
  Stage* next_ = nullptr;
};

namespace {

using Stage = DecodeChain::Stage;
constexpr std::string_view kFffd = "\xEF\xBF\xBD";  // U+FFFD

// The character at s[i] and its length; bytes that are not UTF-8 (raw chains) count as
// one character each, matching nothing.
size_t CharAt(std::string_view s, size_t i, char32_t* c) {
  utf8proc_int32_t cp = -1;
  const utf8proc_ssize_t n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                              static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
  if (n <= 0) {
    *c = 0xFFFFFFFF;
    return 1;
  }
  *c = static_cast<char32_t>(cp);
  return static_cast<size_t>(n);
}

char32_t FirstChar(std::string_view s) {
  char32_t c = 0;
  CharAt(s, 0, &c);
  return c;
}

// Collects the parts of a token until its last.
class WholeToken {
 public:
  // The token when `ends`, else nullopt (the part is kept).
  std::optional<std::string> Add(std::string_view text, bool ends) {
    buffer_.append(text);
    if (!ends) return std::nullopt;
    std::string token = std::move(buffer_);
    buffer_.clear();
    return token;
  }

 private:
  std::string buffer_;
};

class ReplaceStage final : public Stage {
 public:
  ReplaceStage(const DecoderStep& step, bool raw) : pattern_(*step.pattern), content_(step.content), raw_(raw) {}

  void Push(std::string_view text, bool begins, bool ends) override {
    if (begins) pending_begin_ = true;
    if (!pattern_.literal()) {  // a regex sees whole tokens
      std::optional<std::string> token = whole_.Add(text, ends);
      if (!token) return;
      Emit(ReplaceRegex(*token), ends);
      return;
    }
    std::string s = std::move(held_) + std::string(text);
    held_.clear();
    const std::string& pattern = pattern_.pattern();
    std::string out;
    size_t at = 0;
    if (!pattern.empty()) {
      for (size_t pos = s.find(pattern); pos != std::string::npos; pos = s.find(pattern, at)) {
        out.append(s, at, pos - at).append(content_);
        at = pos + pattern.size();
      }
    }
    size_t keep = 0;  // the end may be the start of a match that continues in the next part
    if (!ends) {
      for (size_t k = std::min(pattern.size() - (pattern.empty() ? 0 : 1), s.size() - at); k > 0; --k) {
        if (s.compare(s.size() - k, k, pattern, 0, k) == 0) {
          keep = k;
          break;
        }
      }
    }
    out.append(s, at, s.size() - at - keep);
    held_ = s.substr(s.size() - keep);
    Emit(out, ends);
  }

 private:
  std::string ReplaceRegex(const std::string& token) const {
    if (raw_ && !IsValidUtf8(token)) return token;
    std::string out;
    size_t at = 0;
    for (const auto& [begin, end] : pattern_.FindAll(token)) {
      out.append(token, at, begin - at).append(content_);
      at = end;
    }
    out.append(token, at, std::string::npos);
    return out;
  }
  void Emit(std::string_view text, bool ends) {
    next_->Push(text, pending_begin_, ends);
    pending_begin_ = false;
  }

  UnicodeRegex pattern_;
  std::string content_;
  bool raw_;
  bool pending_begin_ = false;
  std::string held_;
  WholeToken whole_;
};

// The byte NN of a token spelled "<0xNN>" (Rust's u8::from_str_radix(NN, 16), which
// also takes "+N"), else -1.
int ByteTokenValue(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (token[3] == '+') return hex(token[4]);
  const int hi = hex(token[3]), lo = hex(token[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

class ByteFallbackStage final : public Stage {
 public:
  explicit ByteFallbackStage(bool raw) : raw_(raw) {}

  void Push(std::string_view text, bool /*begins*/, bool ends) override {
    std::optional<std::string> token = whole_.Add(text, ends);
    if (!token) return;
    const int byte = ByteTokenValue(*token);
    if (byte >= 0 && raw_) {
      next_->Push(std::string(1, static_cast<char>(byte)), true, true);
    } else if (byte >= 0) {
      bytes_.push_back(static_cast<char>(byte));
    } else {
      Flush();
      next_->Push(*token, true, true);
    }
  }
  void Finish() override {
    Flush();
    next_->Finish();
  }

 private:
  void Flush() {
    if (bytes_.empty()) return;
    if (IsValidUtf8(bytes_)) {
      next_->Push(bytes_, true, true);
    } else {
      for (size_t i = 0; i < bytes_.size(); ++i) next_->Push(kFffd, true, true);
    }
    bytes_.clear();
  }

  bool raw_;
  std::string bytes_;  // a run of byte tokens
  WholeToken whole_;
};

// Emits parts of a single token that spans the whole stream (what Fuse and ByteLevel
// make of all tokens).
class FusedOutput {
 public:
  explicit FusedOutput(bool at_start) : at_start_(at_start) {}
  void Part(Stage* next, std::string_view text) {
    next->Push(text, first_ && at_start_, false);
    first_ = false;
  }
  void End(Stage* next, std::string_view text) {
    next->Push(text, first_ && at_start_, true);
    first_ = false;
  }

 private:
  bool at_start_;
  bool first_ = true;
};

class FuseStage final : public Stage {
 public:
  explicit FuseStage(bool at_start) : out_(at_start) {}
  void Push(std::string_view text, bool, bool) override { out_.Part(next_, text); }
  void Finish() override {
    out_.End(next_, "");
    next_->Finish();
  }

 private:
  FusedOutput out_;
};

class ByteLevelStage final : public Stage {
 public:
  ByteLevelStage(bool at_start, bool raw) : out_(at_start), raw_(raw) {}
  void Push(std::string_view text, bool, bool ends) override {
    std::optional<std::string> token = whole_.Add(text, ends);
    if (!token) return;
    // A token that is not UTF-8 (raw chains) cannot be in the alphabet.
    std::optional<std::string> bytes = IsValidUtf8(*token) ? ByteLevelDecode(*token) : std::nullopt;
    const std::string& b = bytes ? *bytes : *token;
    out_.Part(next_, raw_ ? b : utf8_.Push(b));
  }
  void Finish() override {
    out_.End(next_, raw_ ? std::string() : utf8_.Finish());
    next_->Finish();
  }

 private:
  FusedOutput out_;
  bool raw_;
  Utf8Stream utf8_;
  WholeToken whole_;
};

class StripStage final : public Stage {
 public:
  explicit StripStage(const DecoderStep& step) : content_(FirstChar(step.content)), start_(step.start), stop_(step.stop) {}

  void Push(std::string_view text, bool begins, bool ends) override {
    if (begins) {
      stripping_start_ = start_ > 0;
      n_stripped_ = 0;
    }
    std::string out;
    for (size_t i = 0; i < text.size();) {
      char32_t c = 0;
      const size_t n = CharAt(text, i, &c);
      const std::string_view ch = text.substr(i, n);
      i += n;
      if (stripping_start_ && c == content_) {
        if (++n_stripped_ >= start_) stripping_start_ = false;
        continue;
      }
      stripping_start_ = false;
      if (stop_ > 0 && c == content_) {
        held_.append(ch);
        ++n_held_;
        continue;
      }
      out.append(held_).append(ch);
      held_.clear();
      n_held_ = 0;
    }
    if (ends) {
      // Drop up to `stop` trailing copies (each is the same character).
      const int drop = std::min(stop_, n_held_);
      const size_t char_bytes = n_held_ > 0 ? held_.size() / static_cast<size_t>(n_held_) : 0;
      out.append(held_, 0, held_.size() - static_cast<size_t>(drop) * char_bytes);
      held_.clear();
      n_held_ = 0;
    }
    next_->Push(out, begins, ends);
  }

 private:
  char32_t content_;
  int start_, stop_;
  bool stripping_start_ = false;
  int n_stripped_ = 0;
  std::string held_;  // trailing copies of content_ that `stop` may remove
  int n_held_ = 0;
};

class MetaspaceStage final : public Stage {
 public:
  MetaspaceStage(const DecoderStep& step, bool at_start)
      : replacement_(FirstChar(step.content)), strip_first_(step.strip_first), at_start_(at_start) {}

  void Push(std::string_view text, bool begins, bool ends) override {
    if (begins) {
      in_first_token_ = at_start_ && !seen_token_;
      seen_token_ = true;
    }
    std::string out;
    for (size_t i = 0; i < text.size();) {
      char32_t c = 0;
      const size_t n = CharAt(text, i, &c);
      if (c != replacement_) {
        out.append(text.substr(i, n));
      } else if (!(in_first_token_ && strip_first_)) {
        out.push_back(' ');
      }
      i += n;
    }
    next_->Push(out, begins, ends);
  }

 private:
  char32_t replacement_;
  bool strip_first_;
  bool at_start_;
  bool seen_token_ = false;
  bool in_first_token_ = false;
};

class JoinStage final : public Stage {
 public:
  explicit JoinStage(bool at_start) : at_start_(at_start) {}
  void Push(std::string_view text, bool begins, bool ends) override {
    if (begins && (seen_token_ || !at_start_)) {
      next_->Push(" " + std::string(text), begins, ends);
    } else {
      next_->Push(text, begins, ends);
    }
    if (begins) seen_token_ = true;
  }

 private:
  bool at_start_;
  bool seen_token_ = false;
};

// The end of the chain: collects the text (made valid UTF-8 unless raw).
class OutputStage final : public Stage {
 public:
  explicit OutputStage(bool raw) : raw_(raw) {}
  void Push(std::string_view text, bool, bool) override { text_ += raw_ ? std::string(text) : utf8_.Push(text); }
  void Finish() override {
    if (!raw_) text_ += utf8_.Finish();
  }
  std::string Take() { return std::exchange(text_, std::string()); }

 private:
  bool raw_;
  Utf8Stream utf8_;
  std::string text_;
};

}  // namespace

DecodeChain::DecodeChain(const std::vector<DecoderStep>& steps, bool at_start, bool raw) {
  for (const DecoderStep& step : steps) {
    switch (step.kind) {
      case DecoderStep::Kind::kByteLevel: stages_.push_back(std::make_unique<ByteLevelStage>(at_start, raw)); break;
      case DecoderStep::Kind::kReplace: stages_.push_back(std::make_unique<ReplaceStage>(step, raw)); break;
      case DecoderStep::Kind::kByteFallback: stages_.push_back(std::make_unique<ByteFallbackStage>(raw)); break;
      case DecoderStep::Kind::kFuse: stages_.push_back(std::make_unique<FuseStage>(at_start)); break;
      case DecoderStep::Kind::kStrip: stages_.push_back(std::make_unique<StripStage>(step)); break;
      case DecoderStep::Kind::kMetaspace: stages_.push_back(std::make_unique<MetaspaceStage>(step, at_start)); break;
      case DecoderStep::Kind::kJoin: stages_.push_back(std::make_unique<JoinStage>(at_start)); break;
    }
  }
  stages_.push_back(std::make_unique<OutputStage>(raw));
  for (size_t i = 0; i + 1 < stages_.size(); ++i) stages_[i]->set_next(stages_[i + 1].get());
}

DecodeChain::~DecodeChain() = default;
DecodeChain::DecodeChain(DecodeChain&&) noexcept = default;
DecodeChain& DecodeChain::operator=(DecodeChain&&) noexcept = default;

void DecodeChain::Push(std::string_view token) { stages_.front()->Push(token, true, true); }

void DecodeChain::Finish() { stages_.front()->Finish(); }

std::string DecodeChain::Take() { return static_cast<OutputStage*>(stages_.back().get())->Take(); }

}  // namespace flover
