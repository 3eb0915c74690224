#include "common/unicode_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace flover {
namespace {

// Bounds on one match attempt: backtracking steps and the depth of its backtracking
// stack. The tokenizer patterns need a few per character.
constexpr uint32_t kMatchLimit = 10'000'000;
constexpr uint32_t kDepthLimit = 100'000;

struct MatchDataFree {
  void operator()(pcre2_match_data* d) const { pcre2_match_data_free(d); }
};

size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  return 2;
}

}  // namespace

struct UnicodeRegex::Code {
  pcre2_code* code = nullptr;
  pcre2_match_context* context = nullptr;
  ~Code() {
    pcre2_match_context_free(context);
    pcre2_code_free(code);
  }
};

Result<UnicodeRegex> UnicodeRegex::Compile(std::string_view pattern, bool literal) {
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  const uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error,
                                   &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return InvalidArgument("regex \"" + std::string(pattern) + "\" does not compile at offset " +
                           std::to_string(error_offset) + ": " + reinterpret_cast<const char*>(message));
  }
  auto compiled = std::make_shared<Code>();
  compiled->code = code;
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // without JIT (unsupported CPU), the interpreter runs
  compiled->context = pcre2_match_context_create(nullptr);
  if (compiled->context == nullptr) return Internal("PCRE2 cannot allocate a match context");
  pcre2_set_match_limit(compiled->context, kMatchLimit);
  pcre2_set_depth_limit(compiled->context, kDepthLimit);
  UnicodeRegex regex;
  regex.pattern_ = std::string(pattern);
  regex.literal_ = literal;
  regex.code_ = std::move(compiled);
  return regex;
}

std::vector<std::pair<size_t, size_t>> UnicodeRegex::FindAll(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  std::unique_ptr<pcre2_match_data, MatchDataFree> data(pcre2_match_data_create_from_pattern(code_->code, nullptr));
  if (!data) return matches;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  bool have_last_end = false;
  size_t last_end = 0;
  while (start <= text.size()) {
    int rc = pcre2_match(code_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, data.get(), code_->context);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // the interpreter keeps its backtracking on the heap
      rc = pcre2_match(code_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data.get(),
                       code_->context);
    if (rc < 0) break;  // no match, or a limit: the rest is unmatched
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    const size_t begin = ovector[0], end = ovector[1];
    if (begin == end && have_last_end && end == last_end) {
      if (start >= text.size()) break;
      start += Utf8Length(static_cast<unsigned char>(text[start]));
      continue;
    }
    matches.emplace_back(begin, end);
    have_last_end = true;
    last_end = end;
    start = end;
  }
  return matches;
}

}  // namespace flover
