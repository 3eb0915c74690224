#include "common/jinja/lexer.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <optional>

#include "common/jinja/text.h"

namespace flover::jinja {

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "\r\n" and "\r" become "\n"; one trailing newline is dropped (jinja2's
// keep_trailing_newline=False).
std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  Lexer(std::string_view source, const LexOptions& options) : src_(NormalizeNewlines(source)), options_(options) {
    if (std::optional<size_t> bad = FindInvalidUtf8(src_))
      Fail(ErrorKind::kSyntax, "the template is not valid UTF-8", PositionAt(*bad));
  }

  std::vector<Token> Run() {
    size_t pos = 0;
    bool line_starting = true;  // the previous tag's match ended a line (or nothing came before)
    while (pos < src_.size()) {
      const size_t open = FindOpen(pos);
      if (open == std::string::npos) {
        EmitText(src_.substr(pos), pos);
        break;
      }
      const char type = src_[open + 1];  // '{', '%' or '#'
      if (type == '%') {
        if (std::optional<size_t> after = RawBlock(pos, open, &line_starting)) {
          pos = *after;
          continue;
        }
      }
      const char sign = SignAt(open + 2);
      EmitText(ControlLeft(src_.substr(pos, open - pos), sign, type != '{', line_starting), pos);
      const size_t body = open + 2 + (sign ? 1 : 0);
      if (type == '#') {
        pos = SkipComment(open, body, &line_starting);
        continue;
      }
      Emit(type == '%' ? TokenKind::kStatementOpen : TokenKind::kExpressionOpen, open);
      pos = LexTag(open, body, type == '%', &line_starting);
    }
    Emit(TokenKind::kEnd, src_.size());
    return std::move(tokens_);
  }

 private:
  // The position of `offset`. Tokens ask in increasing order, so the count goes on
  // from the last answer (linear in the source, not quadratic).
  Position PositionAt(size_t offset) const {
    if (offset < cursor_offset_) {
      cursor_offset_ = 0;
      cursor_ = Position{};
    }
    for (; cursor_offset_ < offset && cursor_offset_ < src_.size(); ++cursor_offset_) {
      const unsigned char c = static_cast<unsigned char>(src_[cursor_offset_]);
      if (c == '\n') {
        ++cursor_.line;
        cursor_.column = 1;
      } else if ((c & 0xC0) != 0x80) {
        ++cursor_.column;
      }
    }
    return cursor_;
  }

  [[noreturn]] void SyntaxError(std::string message, size_t offset) const {
    Fail(ErrorKind::kSyntax, std::move(message), PositionAt(offset));
  }

  char SignAt(size_t i) const { return i < src_.size() && (src_[i] == '-' || src_[i] == '+') ? src_[i] : 0; }

  bool StartsWith(size_t i, std::string_view s) const { return std::string_view(src_).substr(i).starts_with(s); }

  // The first "{{", "{%" or "{#" at or after `pos`.
  size_t FindOpen(size_t pos) const {
    for (size_t i = src_.find('{', pos); i != std::string::npos; i = src_.find('{', i + 1))
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    return std::string::npos;
  }

  // The end of the whitespace that starts at `i`.
  size_t SkipSpace(size_t i) const {
    while (i < src_.size()) {
      size_t length;
      if (!IsSpace(DecodeAt(src_, i, &length))) break;
      i += length;
    }
    return i;
  }

  // The text before a tag, after that tag's left whitespace control.
  std::string ControlLeft(std::string text, char sign, bool lstrip_applies, bool line_starting) const {
    if (sign == '-') return RStrip(text, std::nullopt);
    if (sign == '+' || !options_.lstrip_blocks || !lstrip_applies) return text;
    const size_t newline = text.rfind('\n');
    const size_t line_start = newline == std::string::npos ? 0 : newline + 1;
    if (line_start == 0 && !line_starting) return text;
    if (line_start == text.size()) return text;
    const std::u32string tail = Decode(std::string_view(text).substr(line_start));
    if (std::all_of(tail.begin(), tail.end(), IsSpace)) text.resize(line_start);
    return text;
  }

  // Where the text after a tag's end (`end` is just past "%}", "#}" or "}}") starts:
  // `sign` '-' strips whitespace, trim_blocks one newline.
  size_t ControlRight(size_t end, char sign, bool trim_applies, bool* line_starting) const {
    size_t after = end;
    if (sign == '-') {
      after = SkipSpace(end);
    } else if (sign != '+' && trim_applies && options_.trim_blocks && after < src_.size() && src_[after] == '\n') {
      ++after;
    }
    *line_starting = src_[after - 1] == '\n';
    return after;
  }

  size_t SkipComment(size_t open, size_t body, bool* line_starting) {
    const size_t close = src_.find("#}", body);
    if (close == std::string::npos) SyntaxError("missing end of comment tag", open);
    const char sign = close > body ? SignAt(close - 1) : 0;
    return ControlRight(close + 2, sign, true, line_starting);
  }

  // `{% raw %}...{% endraw %}` at `open`: emits its text, returns where the template
  // goes on. nullopt when the tag at `open` is not `raw`.
  std::optional<size_t> RawBlock(size_t pos, size_t open, bool* line_starting) {
    const std::optional<std::pair<char, size_t>> begin = MatchRawTag(open, "raw", false);
    if (!begin) return std::nullopt;
    EmitText(ControlLeft(src_.substr(pos, open - pos), begin->first, true, *line_starting), pos);
    *line_starting = src_[begin->second - 1] == '\n';
    for (size_t at = FindOpen(begin->second); at != std::string::npos; at = FindOpen(at + 1)) {
      if (src_[at + 1] != '%') continue;
      const std::optional<std::pair<char, size_t>> end = MatchRawTag(at, "endraw", true);
      if (!end) continue;
      EmitText(ControlLeft(src_.substr(begin->second, at - begin->second), end->first, true, *line_starting),
               begin->second);
      *line_starting = src_[end->second - 1] == '\n';
      return end->second;
    }
    SyntaxError("missing end of raw directive ({% endraw %})", open);
  }

  // Matches "{%[-+] <word> [-+]%}" at `open`: the left sign and the offset after the
  // tag (after its right whitespace control; trim_blocks only when `trim`).
  std::optional<std::pair<char, size_t>> MatchRawTag(size_t open, std::string_view word, bool trim) const {
    size_t i = open + 2;
    const char sign = SignAt(i);
    if (sign) ++i;
    i = SkipSpace(i);
    if (!StartsWith(i, word)) return std::nullopt;
    i = SkipSpace(i + word.size());
    bool ignored;
    if (StartsWith(i, "-%}")) return std::make_pair(sign, ControlRight(i + 3, '-', trim, &ignored));
    if (trim && StartsWith(i, "+%}")) return std::make_pair(sign, i + 3);
    if (StartsWith(i, "%}")) return std::make_pair(sign, ControlRight(i + 2, 0, trim, &ignored));
    return std::nullopt;
  }

  // Tokens of a `{{ }}` or `{% %}` tag whose body starts at `body`; returns the offset
  // after its end.
  size_t LexTag(size_t open, size_t body, bool statement, bool* line_starting) {
    std::string brackets;  // the open brackets' closers, innermost last
    size_t p = body;
    while (true) {
      p = SkipSpace(p);
      if (p >= src_.size())
        SyntaxError(std::string("unexpected end of template: this ") + (statement ? "{%" : "{{") +
                        " tag is not closed" + (brackets.empty() ? "" : std::string(" (missing '") + brackets.back() + "')"),
                    open);
      if (brackets.empty()) {
        const std::string_view close = statement ? "%}" : "}}";
        if (StartsWith(p, close)) {
          Emit(statement ? TokenKind::kStatementClose : TokenKind::kExpressionClose, p);
          return ControlRight(p + 2, 0, statement, line_starting);
        }
        if ((src_[p] == '-' || (statement && src_[p] == '+')) && StartsWith(p + 1, close)) {
          Emit(statement ? TokenKind::kStatementClose : TokenKind::kExpressionClose, p);
          return ControlRight(p + 3, src_[p], statement, line_starting);
        }
      }
      p = LexToken(p, &brackets);
    }
  }

  size_t LexToken(size_t p, std::string* brackets) {
    const char c = src_[p];
    if (IsDigit(c)) return LexNumber(p);
    if (IsNameStart(c)) {
      size_t end = p;
      while (end < src_.size() && IsNameChar(src_[end])) ++end;
      Emit(TokenKind::kName, p, src_.substr(p, end - p));
      return end;
    }
    if (c == '\'' || c == '"') return LexString(p);
    for (std::string_view op : {"//", "**", "==", "!=", ">=", "<="}) {
      if (StartsWith(p, op)) {
        Emit(TokenKind::kOperator, p, std::string(op));
        return p + 2;
      }
    }
    static constexpr std::string_view kSingle = "+-/*%~[](){}><=.:|,;";
    if (kSingle.find(c) == std::string_view::npos) {
      size_t length;
      const char32_t ch = DecodeAt(src_, p, &length);
      SyntaxError(ch < 0x80 ? std::string("unexpected character '") + c + "'"
                            : "unexpected character '" + src_.substr(p, length) + "' (names are ASCII)",
                  p);
    }
    if (c == '(' || c == '[' || c == '{') brackets->push_back(c == '(' ? ')' : (c == '[' ? ']' : '}'));
    if (c == ')' || c == ']' || c == '}') {
      if (brackets->empty()) SyntaxError(std::string("unexpected '") + c + "'", p);
      if (brackets->back() != c)
        SyntaxError(std::string("unexpected '") + c + "', expected '" + brackets->back() + "'", p);
      brackets->pop_back();
    }
    Emit(TokenKind::kOperator, p, std::string(1, c));
    return p + 1;
  }

  // The end of `(\d+_)*\d+` at `i` (i itself when no digit is there).
  size_t DigitsEnd(size_t i) const {
    size_t j = i;
    while (j < src_.size() && IsDigit(src_[j])) {
      while (j < src_.size() && IsDigit(src_[j])) ++j;
      if (j + 1 < src_.size() && src_[j] == '_' && IsDigit(src_[j + 1])) ++j;
    }
    return j;
  }

  size_t LexNumber(size_t p) {
    const auto without_underscores = [&](size_t from, size_t to) {
      std::string s = src_.substr(from, to - from);
      s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
      return s;
    };
    // A float, unless right after a '.' (x.0.1 is x[0][1]).
    if (p == 0 || src_[p - 1] != '.') {
      size_t end = DigitsEnd(p);
      bool is_float = false;
      if (end + 1 < src_.size() && src_[end] == '.' && IsDigit(src_[end + 1])) {
        end = DigitsEnd(end + 1);
        is_float = true;
      }
      if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
        size_t e = end + 1;
        if (e < src_.size() && (src_[e] == '+' || src_[e] == '-')) ++e;
        if (e < src_.size() && IsDigit(src_[e])) {
          end = DigitsEnd(e);
          is_float = true;
        }
      }
      if (is_float) {
        const std::string text = without_underscores(p, end);
        Token& t = Emit(TokenKind::kFloat, p, text);
        std::from_chars(text.data(), text.data() + text.size(), t.number);
        return end;
      }
    }
    int base = 10;
    size_t digits = p, end;
    if (src_[p] == '0' && p + 1 < src_.size() && std::string_view("bBoOxX").find(src_[p + 1]) != std::string_view::npos) {
      const char b = static_cast<char>(src_[p + 1] | 0x20);
      base = b == 'b' ? 2 : (b == 'o' ? 8 : 16);
      digits = end = p + 2;
      while (end < src_.size()) {
        const size_t k = src_[end] == '_' ? end + 1 : end;
        if (k >= src_.size()) break;
        const int d = HexDigit(src_[k]);
        if (d < 0 || d >= base) break;
        end = k + 1;
      }
      if (end == digits) SyntaxError("a number has no digits after its base prefix", p);
    } else if (src_[p] == '0') {
      end = p + 1;  // `0(_?0)*`: "012" is 0 followed by 12, as in jinja2
      while (end < src_.size() && (src_[end] == '0' || (src_[end] == '_' && end + 1 < src_.size() && src_[end + 1] == '0')))
        end += src_[end] == '_' ? 2 : 1;
    } else {
      end = DigitsEnd(p);
    }
    const std::string text = without_underscores(digits, end);
    Token& t = Emit(TokenKind::kInteger, p, src_.substr(p, end - p));
    const std::from_chars_result r = std::from_chars(text.data(), text.data() + text.size(), t.integer, base);
    if (r.ec != std::errc()) Fail(ErrorKind::kUnsupported, "the integer " + t.text + " is too large (int64 at most)", t.position);
    return end;
  }

  size_t LexString(size_t p) {
    const char quote = src_[p];
    std::string value;
    size_t i = p + 1;
    while (true) {
      if (i >= src_.size()) SyntaxError("a string is not closed", p);
      const char c = src_[i];
      if (c == quote) break;
      if (c != '\\') {
        value.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 >= src_.size()) SyntaxError("a string is not closed", p);
      i = Escape(i, &value);
    }
    Emit(TokenKind::kString, p, std::move(value));
    return i + 1;
  }

  // Decodes the escape at src_[i] == '\\' into `value` (Python's unicode-escape);
  // returns the offset after it.
  size_t Escape(size_t i, std::string* value) {
    const char e = src_[i + 1];
    const auto code_point = [&](size_t from, int n, int base) {
      uint32_t cp = 0;
      for (int k = 0; k < n; ++k) {
        const int d = from + k < src_.size() ? HexDigit(src_[from + k]) : -1;
        if (d < 0 || d >= base) SyntaxError(std::string("a truncated \\") + e + " escape in a string", i);
        cp = cp * base + d;
      }
      if (cp > 0x10FFFF) SyntaxError(std::string("a \\") + e + " escape beyond U+10FFFF", i);
      if (cp >= 0xD800 && cp <= 0xDFFF)
        Fail(ErrorKind::kUnsupported, "a \\" + std::string(1, e) + " escape of a lone surrogate is not supported",
             PositionAt(i));
      *value += Encode(std::u32string(1, static_cast<char32_t>(cp)));
      return from + n;
    };
    switch (e) {
      case '\n': return i + 2;  // line continuation
      case '\\': *value += '\\'; return i + 2;
      case '\'': *value += '\''; return i + 2;
      case '"': *value += '"'; return i + 2;
      case 'a': *value += '\a'; return i + 2;
      case 'b': *value += '\b'; return i + 2;
      case 'f': *value += '\f'; return i + 2;
      case 'n': *value += '\n'; return i + 2;
      case 'r': *value += '\r'; return i + 2;
      case 't': *value += '\t'; return i + 2;
      case 'v': *value += '\v'; return i + 2;
      case 'x': return code_point(i + 2, 2, 16);
      case 'u': return code_point(i + 2, 4, 16);
      case 'U': return code_point(i + 2, 8, 16);
      case 'N': Fail(ErrorKind::kUnsupported, "\\N{...} escapes are not supported", PositionAt(i));
      default: break;
    }
    if (e >= '0' && e <= '7') {
      size_t n = 1;
      while (n < 3 && i + 1 + n < src_.size() && src_[i + 1 + n] >= '0' && src_[i + 1 + n] <= '7') ++n;
      return code_point(i + 1, static_cast<int>(n), 8);
    }
    if (static_cast<unsigned char>(e) >= 0x80)
      Fail(ErrorKind::kUnsupported, "a backslash before a non-ASCII character in a string is not supported",
           PositionAt(i));
    *value += '\\';  // an unknown escape stays as written
    *value += e;
    return i + 2;
  }

  void EmitText(std::string text, size_t offset) {
    if (!text.empty()) Emit(TokenKind::kText, offset, std::move(text));
  }

  Token& Emit(TokenKind kind, size_t offset, std::string text = {}) {
    Token& t = tokens_.emplace_back();
    t.kind = kind;
    t.text = std::move(text);
    t.position = PositionAt(offset);
    return t;
  }

  const std::string src_;
  const LexOptions options_;
  mutable size_t cursor_offset_ = 0;  // PositionAt's last answer: the position of this offset
  mutable Position cursor_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> Lex(std::string_view source, const LexOptions& options) { return Lexer(source, options).Run(); }

}  // namespace flover::jinja
