#include "common/jinja/text.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/jinja/error.h"

namespace flover::jinja {

namespace {

constexpr char32_t kEscapedByteBase = 0xDC00;  // invalid byte b decodes to U+DC00 + b

// The length of the valid UTF-8 sequence at s[i], or 0 when none starts there.
size_t ValidSequenceLength(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  return n;
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c >= kEscapedByteBase + 0x80 && c <= kEscapedByteBase + 0xFF) {
    out->push_back(static_cast<char>(c - kEscapedByteBase));
    return;
  }
  if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) c = 0xFFFD;
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// How one character behaves under the case functions.
struct CaseInfo {
  bool cased = false;    // a cased letter: ends a word for title()
  std::u32string upper;  // full mappings
  std::u32string lower;  // empty: depends on context (capital sigma); not supported
  std::u32string title;
};

// Pairs of upper/lower case letters that alternate even/odd code points.
bool EvenIsUpper(char32_t c) { return c % 2 == 0; }

// The case behaviour of `c`, or nullopt when Flover does not know it.
std::optional<CaseInfo> CaseOf(char32_t c) {
  CaseInfo info;
  const auto pair = [&](char32_t upper, char32_t lower) {
    info.cased = true;
    info.upper = info.title = std::u32string(1, upper);
    info.lower = std::u32string(1, lower);
    return info;
  };
  const auto special = [&](std::u32string upper, std::u32string lower, std::u32string title) {
    info.cased = true;
    info.upper = std::move(upper);
    info.lower = std::move(lower);
    info.title = std::move(title);
    return info;
  };
  const auto caseless = [&]() {
    info.upper = info.lower = info.title = std::u32string(1, c);
    return info;
  };
  const auto alternating = [&](bool even_upper) {
    return (EvenIsUpper(c) == even_upper) ? pair(c, c + 1) : pair(c - 1, c);
  };
  const auto in = [c](char32_t lo, char32_t hi) { return c >= lo && c <= hi; };
  const std::u32string self(1, c);

  if (c < 0x80) {
    if (in('A', 'Z')) return pair(c, c + 32);
    if (in('a', 'z')) return pair(c - 32, c);
    return caseless();
  }
  if (c < 0xC0) {
    if (c == 0xB5) return special(U"\u039C", self, U"\u039C");  // micro sign
    if (c == 0xAA || c == 0xBA) return std::nullopt;           // ordinal indicators (lowercase, no upper)
    return caseless();
  }
  if (c <= 0xFF) {
    if (c == 0xD7 || c == 0xF7) return caseless();
    if (c == 0xDF) return special(U"SS", self, U"Ss");
    if (c == 0xFF) return pair(0x178, 0xFF);
    return c < 0xDF ? pair(c, c + 32) : pair(c - 32, c);
  }
  if (c <= 0x17F) {  // Latin Extended-A
    if (c == 0x130) return special(self, U"i\u0307", self);
    if (c == 0x131) return special(U"I", self, U"I");
    if (c == 0x138) return special(self, self, self);
    if (c == 0x149) return special(U"\u02BCN", self, U"\u02BCN");
    if (c == 0x178) return pair(0x178, 0xFF);
    if (c == 0x17F) return special(U"S", self, U"S");
    return alternating(c < 0x138 || in(0x14A, 0x177));
  }
  if (in(0x300, 0x36F)) return c == 0x345 ? std::optional<CaseInfo>() : caseless();  // combining marks
  if (in(0x370, 0x3FF)) {  // Greek
    if (c == 0x386) return pair(0x386, 0x3AC);
    if (in(0x388, 0x38A)) return pair(c, c + 37);
    if (c == 0x38C) return pair(0x38C, 0x3CC);
    if (c == 0x38E || c == 0x38F) return pair(c, c + 63);
    if (c == 0x390) return special(U"\u0399\u0308\u0301", self, U"\u0399\u0308\u0301");
    if (c == 0x3A3) return special(self, U"", self);  // lower depends on the position in a word
    if (in(0x391, 0x3AB) && c != 0x3A2) return pair(c, c + 32);
    if (c == 0x3AC) return pair(0x386, c);
    if (in(0x3AD, 0x3AF)) return pair(c - 37, c);
    if (c == 0x3B0) return special(U"\u03A5\u0308\u0301", self, U"\u03A5\u0308\u0301");
    if (c == 0x3C2) return pair(0x3A3, c);
    if (in(0x3B1, 0x3CB)) return pair(c - 32, c);
    if (c == 0x3CC) return pair(0x38C, c);
    if (c == 0x3CD || c == 0x3CE) return pair(c - 63, c);
    return std::nullopt;
  }
  if (in(0x400, 0x4FF)) {  // Cyrillic
    if (in(0x400, 0x40F)) return pair(c, c + 80);
    if (in(0x410, 0x42F)) return pair(c, c + 32);
    if (in(0x430, 0x44F)) return pair(c - 32, c);
    if (in(0x450, 0x45F)) return pair(c - 80, c);
    if (in(0x482, 0x489)) return caseless();
    if (c == 0x4C0) return pair(0x4C0, 0x4CF);
    if (c == 0x4CF) return pair(0x4C0, 0x4CF);
    if (in(0x4C1, 0x4CE)) return alternating(false);
    return alternating(true);
  }
  if (in(0xFF21, 0xFF3A)) return pair(c, c + 32);  // fullwidth Latin
  if (in(0xFF41, 0xFF5A)) return pair(c - 32, c);
  // Blocks whose characters have no case.
  static constexpr std::pair<char32_t, char32_t> kCaseless[] = {
      {0x590, 0x109F},   {0x1100, 0x139F},  {0x1400, 0x1C7F},   {0x2000, 0x206F},   {0x20A0, 0x20FF},
      {0x2190, 0x245F},  {0x2500, 0x2BFF},  {0x2E00, 0xA4CF},   {0xAC00, 0xD7FF},   {0xDC80, 0xDCFF},
      {0xE000, 0xFAFF},  {0xFB1D, 0xFDFF},  {0xFE00, 0xFF20},   {0xFF3B, 0xFF40},   {0xFF5B, 0xFFFF},
      {0x1F000, 0x1F12F}, {0x1F18A, 0x1FBFF}, {0x20000, 0x3FFFF}, {0xE0000, 0x10FFFF},
  };
  for (const auto& [lo, hi] : kCaseless)
    if (in(lo, hi)) return caseless();
  return std::nullopt;
}

CaseInfo KnownCase(char32_t c, const char* function) {
  std::optional<CaseInfo> info = CaseOf(c);
  if (!info) {
    char code[16];
    std::snprintf(code, sizeof(code), "U+%04X", static_cast<unsigned>(c));
    Fail(ErrorKind::kUnsupported, std::string(function) + ": the case mapping of " + code + " is not supported");
  }
  return *info;
}

const std::u32string& KnownLower(const CaseInfo& info, char32_t c, const char* function) {
  if (info.lower.empty()) {
    char code[16];
    std::snprintf(code, sizeof(code), "U+%04X", static_cast<unsigned>(c));
    Fail(ErrorKind::kUnsupported, std::string(function) + ": the lower case of " + code +
                                      " depends on its place in a word, which is not supported");
  }
  return info.lower;
}

bool IsAscii(std::string_view s) {
  for (char ch : s)
    if (static_cast<unsigned char>(ch) >= 0x80) return false;
  return true;
}

// Whether `c` is stripped: in `chars` when given, else whitespace.
bool InStripSet(char32_t c, const std::optional<std::u32string>& chars) {
  return chars ? chars->find(c) != std::u32string::npos : IsSpace(c);
}

std::string StripImpl(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  const std::u32string text = Decode(s);
  std::optional<std::u32string> set;
  if (chars) set = Decode(*chars);
  size_t begin = 0, end = text.size();
  if (left)
    while (begin < end && InStripSet(text[begin], set)) ++begin;
  if (right)
    while (end > begin && InStripSet(text[end - 1], set)) --end;
  return Encode(std::u32string_view(text).substr(begin, end - begin));
}

bool IsTitleFilterSeparator(char32_t c) { return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || IsSpace(c); }

void AppendHex(char prefix, unsigned value, int digits, std::string* out) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "\\%c%0*x", prefix, digits, value);
  out->append(buf);
}

// Python's str.isprintable() for the characters repr() must escape: controls, format
// characters, separators other than the space.
bool IsPrintable(char32_t c) {
  if (c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0xA0) || c == 0xAD) return false;
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
      (c >= 0x205F && c <= 0x2064) || c == 0x3000 || c == 0xFEFF || c == 0x061C)
    return false;
  if (c >= 0xD800 && c <= 0xDFFF) return false;
  return true;
}

}  // namespace

std::u32string Decode(std::string_view utf8) {
  std::u32string out;
  out.reserve(utf8.size());
  size_t i = 0;
  while (i < utf8.size()) {
    const size_t n = ValidSequenceLength(utf8, i);
    const auto byte = [&](size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(utf8[k])); };
    switch (n) {
      case 0: out.push_back(kEscapedByteBase + byte(i)); i += 1; continue;
      case 1: out.push_back(byte(i)); break;
      case 2: out.push_back(((byte(i) & 0x1F) << 6) | (byte(i + 1) & 0x3F)); break;
      case 3: out.push_back(((byte(i) & 0x0F) << 12) | ((byte(i + 1) & 0x3F) << 6) | (byte(i + 2) & 0x3F)); break;
      default:
        out.push_back(((byte(i) & 0x07) << 18) | ((byte(i + 1) & 0x3F) << 12) | ((byte(i + 2) & 0x3F) << 6) |
                      (byte(i + 3) & 0x3F));
    }
    i += n;
  }
  return out;
}

std::string Encode(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) AppendUtf8(c, &out);
  return out;
}

char32_t DecodeAt(std::string_view utf8, size_t offset, size_t* length) {
  const size_t n = ValidSequenceLength(utf8, offset);
  *length = n == 0 ? 1 : n;
  if (n == 0) return kEscapedByteBase + static_cast<unsigned char>(utf8[offset]);
  return Decode(utf8.substr(offset, n))[0];
}

size_t CharCount(std::string_view utf8) {
  size_t n = 0, i = 0;
  while (i < utf8.size()) {
    const size_t len = ValidSequenceLength(utf8, i);
    i += len == 0 ? 1 : len;
    ++n;
  }
  return n;
}

std::optional<size_t> FindInvalidUtf8(std::string_view utf8) {
  size_t i = 0;
  while (i < utf8.size()) {
    const size_t len = ValidSequenceLength(utf8, i);
    if (len == 0) return i;
    i += len;
  }
  return std::nullopt;
}

bool IsSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string Strip(std::string_view s, const std::optional<std::string>& chars) { return StripImpl(s, chars, true, true); }
std::string LStrip(std::string_view s, const std::optional<std::string>& chars) { return StripImpl(s, chars, true, false); }
std::string RStrip(std::string_view s, const std::optional<std::string>& chars) { return StripImpl(s, chars, false, true); }

std::string Upper(std::string_view s) {
  std::u32string out;
  for (char32_t c : Decode(s)) out += KnownCase(c, "upper").upper;
  return Encode(out);
}

std::string Lower(std::string_view s) {
  if (IsAscii(s)) {
    std::string out(s);
    for (char& ch : out)
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + 32);
    return out;
  }
  std::u32string out;
  for (char32_t c : Decode(s)) out += KnownLower(KnownCase(c, "lower"), c, "lower");
  return Encode(out);
}

std::string Capitalize(std::string_view s) {
  const std::u32string text = Decode(s);
  std::u32string out;
  for (size_t i = 0; i < text.size(); ++i) {
    const CaseInfo info = KnownCase(text[i], "capitalize");
    out += i == 0 ? info.title : KnownLower(info, text[i], "capitalize");
  }
  return Encode(out);
}

std::string TitleMethod(std::string_view s) {
  std::u32string out;
  bool previous_is_cased = false;
  for (char32_t c : Decode(s)) {
    const CaseInfo info = KnownCase(c, "title");
    out += previous_is_cased ? KnownLower(info, c, "title") : info.title;
    previous_is_cased = info.cased;
  }
  return Encode(out);
}

std::string TitleFilter(std::string_view s) {
  std::u32string out;
  bool word_start = true;
  for (char32_t c : Decode(s)) {
    const CaseInfo info = KnownCase(c, "title");
    if (IsTitleFilterSeparator(c)) {
      out += c;
      word_start = true;
      continue;
    }
    out += word_start ? info.upper : KnownLower(info, c, "title");
    word_start = false;
  }
  return Encode(out);
}

std::vector<std::string> Split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  int64_t left = maxsplit < 0 ? INT64_MAX : maxsplit;
  if (sep) {
    size_t start = 0;
    while (left-- > 0) {
      const size_t at = s.find(*sep, start);
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(start, at - start));
      start = at + sep->size();
    }
    out.emplace_back(s.substr(start));
    return out;
  }
  const std::u32string text = Decode(s);
  size_t i = 0;
  const size_t n = text.size();
  while (left-- > 0) {
    while (i < n && IsSpace(text[i])) ++i;
    if (i == n) break;
    const size_t j = i;
    while (i < n && !IsSpace(text[i])) ++i;
    out.push_back(Encode(std::u32string_view(text).substr(j, i - j)));
  }
  if (i < n) {
    while (i < n && IsSpace(text[i])) ++i;
    if (i != n) out.push_back(Encode(std::u32string_view(text).substr(i)));
  }
  return out;
}

std::string Replace(std::string_view s, std::string_view old, std::string_view replacement, int64_t count) {
  int64_t left = count < 0 ? INT64_MAX : count;
  std::string out;
  if (old.empty()) {
    const std::u32string text = Decode(s);
    for (char32_t c : text) {
      if (left-- > 0) out.append(replacement);
      AppendUtf8(c, &out);
    }
    if (left > 0) out.append(replacement);
    return out;
  }
  size_t start = 0;
  while (left-- > 0) {
    const size_t at = s.find(old, start);
    if (at == std::string_view::npos) break;
    out.append(s.substr(start, at - start)).append(replacement);
    start = at + old.size();
  }
  out.append(s.substr(start));
  return out;
}

std::string FloatRepr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  char buf[64];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  const std::string_view sci(buf, static_cast<size_t>(r.ptr - buf));  // "-1.2345e+02": shortest round trip
  const size_t e = sci.find('e');
  std::string sign, digits;
  for (char ch : sci.substr(0, e)) {
    if (ch == '-') sign = "-";
    else if (ch != '.') digits.push_back(ch);
  }
  const int exponent = std::atoi(std::string(sci.substr(e + 1)).c_str());
  const int point = exponent + 1;  // digits[0 .. point) come before the decimal point
  const int n = static_cast<int>(digits.size());
  if (point > -4 && point <= 16) {
    if (point <= 0) return sign + "0." + std::string(static_cast<size_t>(-point), '0') + digits;
    if (point >= n) return sign + digits + std::string(static_cast<size_t>(point - n), '0') + ".0";
    return sign + digits.substr(0, static_cast<size_t>(point)) + "." + digits.substr(static_cast<size_t>(point));
  }
  std::string out = sign + digits.substr(0, 1);
  if (n > 1) out += "." + digits.substr(1);
  char exp[16];
  std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + exp;
}

std::string StringRepr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : Decode(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c >= kEscapedByteBase + 0x80 && c <= kEscapedByteBase + 0xFF) {
      AppendHex('u', static_cast<unsigned>(c), 4, &out);  // as Python shows a surrogate escape
    } else if (IsPrintable(c)) {
      AppendUtf8(c, &out);
    } else if (c <= 0xFF) {
      AppendHex('x', static_cast<unsigned>(c), 2, &out);
    } else if (c <= 0xFFFF) {
      AppendHex('u', static_cast<unsigned>(c), 4, &out);
    } else {
      AppendHex('U', static_cast<unsigned>(c), 8, &out);
    }
  }
  out.push_back(quote);
  return out;
}

std::string JsonQuote(std::string_view s, bool ensure_ascii) {
  std::string out = "\"";
  const auto escape_unit = [&](unsigned unit) { AppendHex('u', unit, 4, &out); };
  for (char32_t c : Decode(s)) {
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
      if (c >= 0x10000) {
        const char32_t v = c - 0x10000;
        escape_unit(static_cast<unsigned>(0xD800 + (v >> 10)));
        escape_unit(static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
      } else {
        escape_unit(static_cast<unsigned>(c));
      }
    } else {
      AppendUtf8(c, &out);
    }
  }
  out += "\"";
  return out;
}

}  // namespace flover::jinja
