// The lexer: template source to tokens, with jinja2's whitespace rules applied to the
// text between tags, so the parser never sees whitespace control:
//   - newlines are normalized to "\n" and one trailing newline of the source is dropped
//     (keep_trailing_newline=False);
//   - `{%-`, `{{-`, `{#-` strip the whitespace before the tag, `-%}`, `-}}`, `-#}` the
//     whitespace after it;
//   - trim_blocks: the first newline after a `%}` or `#}` is removed (not after `}}`);
//   - lstrip_blocks: spaces and tabs from the start of a line to a `{%` or `{#` are
//     removed (not before `{{`); `{%+` and `+%}` turn these two off for one tag;
//   - `{% raw %}...{% endraw %}` is text.
// Comments produce no token. Inside tags: names, string literals (Python escapes),
// integers, floats and operators; brackets must balance, and a `}}` or `%}` inside
// open brackets is two operators, not the end of the tag.
//
// Errors (unclosed tags, comments, strings or brackets, unknown characters, invalid
// UTF-8) throw a Syntax jinja::Error with the position.
//
// Thread-safety: pure function.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/jinja/error.h"

namespace flover::jinja {

enum class TokenKind {
  kText,            // template data (text): already whitespace-controlled, never empty
  kExpressionOpen,  // {{
  kExpressionClose, // }}
  kStatementOpen,   // {%
  kStatementClose,  // %}
  kName,            // identifier or keyword (and, or, not, in, is, if, else, true, none, ...)
  kString,          // text: the literal's value, escapes decoded
  kInteger,         // integer
  kFloat,           // number
  kOperator,        // text: "+", "//", "==", "(", "|", ...
  kEnd,             // end of the source
};

struct Token {
  TokenKind kind = TokenKind::kEnd;
  std::string text;
  int64_t integer = 0;
  double number = 0;
  Position position;
};

struct LexOptions {
  bool trim_blocks = true;   // as transformers renders chat templates
  bool lstrip_blocks = true;
};

// The tokens of `source`, ending with one kEnd.
std::vector<Token> Lex(std::string_view source, const LexOptions& options);

}  // namespace flover::jinja
