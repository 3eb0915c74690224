#include "common/utf8.h"

namespace flover {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// The length of the character a lead byte starts (0: not a lead byte), and the range
// its second byte must be in (which excludes overlong forms, surrogates and code points
// above U+10FFFF).
struct Lead {
  int length;
  unsigned char lo, hi;
};

Lead LeadOf(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// How many bytes of s[i..] form a valid prefix of the character starting at i (up to
// its whole length).
int ValidPrefix(std::string_view s, size_t i, const Lead& lead) {
  int n = 1;
  for (; n < lead.length && i + n < s.size(); ++n) {
    const auto b = static_cast<unsigned char>(s[i + n]);
    const bool ok = n == 1 ? (b >= lead.lo && b <= lead.hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
  }
  return n;
}

// Appends the valid UTF-8 of `s` to `out`; the start of an unfinished last character is
// left in `*rest` (or replaced when `at_end`).
void Convert(std::string_view s, bool at_end, std::string* out, std::string* rest) {
  size_t i = 0;
  while (i < s.size()) {
    const Lead lead = LeadOf(static_cast<unsigned char>(s[i]));
    if (lead.length == 0) {
      out->append(kReplacement);
      ++i;
      continue;
    }
    const int valid = ValidPrefix(s, i, lead);
    if (valid == lead.length) {
      out->append(s.substr(i, valid));
    } else if (i + valid == s.size() && !at_end) {
      rest->assign(s.substr(i));  // may still be completed
      return;
    } else {
      out->append(kReplacement);
    }
    i += valid;
  }
  rest->clear();
}

}  // namespace

std::string Utf8Stream::Push(std::string_view bytes) {
  const std::string s = held_ + std::string(bytes);
  std::string out;
  Convert(s, /*at_end=*/false, &out, &held_);
  return out;
}

std::string Utf8Stream::Finish() {
  std::string out;
  Convert(held_, /*at_end=*/true, &out, &held_);
  return out;
}

bool IsValidUtf8(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size();) {
    const Lead lead = LeadOf(static_cast<unsigned char>(bytes[i]));
    if (lead.length == 0 || ValidPrefix(bytes, i, lead) != lead.length) return false;
    i += static_cast<size_t>(lead.length);
  }
  return true;
}

char32_t DecodeUtf8At(std::string_view s, size_t i, size_t* length) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  const size_t n = Utf8CharLength(b0);
  *length = n;
  if (n == 1) return b0;
  char32_t cp = b0 & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsUnicodeWhitespace(char32_t c) {
  // PropList.txt, White_Space.
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string ToValidUtf8(std::string_view bytes) {
  std::string out, rest;
  Convert(bytes, /*at_end=*/true, &out, &rest);
  return out;
}

}  // namespace flover
