// The lexer (common/jinja/lexer.h): tokens, whitespace control, errors with positions.
#include "common/jinja/lexer.h"

#include <gtest/gtest.h>

namespace flover::jinja {
namespace {

// "kind:text" per token, without the final end.
std::vector<std::string> Kinds(std::string_view source) {
  std::vector<std::string> out;
  for (const Token& t : Lex(source, {})) {
    switch (t.kind) {
      case TokenKind::kText: out.push_back("text:" + t.text); break;
      case TokenKind::kExpressionOpen: out.push_back("{{"); break;
      case TokenKind::kExpressionClose: out.push_back("}}"); break;
      case TokenKind::kStatementOpen: out.push_back("{%"); break;
      case TokenKind::kStatementClose: out.push_back("%}"); break;
      case TokenKind::kName: out.push_back("name:" + t.text); break;
      case TokenKind::kString: out.push_back("str:" + t.text); break;
      case TokenKind::kInteger: out.push_back("int:" + std::to_string(t.integer)); break;
      case TokenKind::kFloat: out.push_back("float:" + t.text); break;
      case TokenKind::kOperator: out.push_back("op:" + t.text); break;
      case TokenKind::kEnd: break;
    }
  }
  return out;
}

Error LexError(std::string_view source) {
  try {
    (void)Lex(source, {});
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no error for " << source;
  return {};
}

using Tokens = std::vector<std::string>;

TEST(JinjaLexer, TagsAndExpressions) {
  EXPECT_EQ(Kinds("a{{ x.y[0] | f(1, k='v') }}b"),
            (Tokens{"text:a", "{{", "name:x", "op:.", "name:y", "op:[", "int:0", "op:]", "op:|", "name:f", "op:(",
                    "int:1", "op:,", "name:k", "op:=", "str:v", "op:)", "}}", "text:b"}));
  EXPECT_EQ(Kinds("{% if a // 2 ** 3 != 1.5e3 %}"),
            (Tokens{"{%", "name:if", "name:a", "op://", "int:2", "op:**", "int:3", "op:!=", "float:1.5e3", "%}"}));
  EXPECT_EQ(Kinds("{{ x.0.1 }}"), (Tokens{"{{", "name:x", "op:.", "int:0", "op:.", "int:1", "}}"}));
  EXPECT_EQ(Kinds("{{ 0x1f + 0b11 + 1_000 }}"), (Tokens{"{{", "int:31", "op:+", "int:3", "op:+", "int:1000", "}}"}));
}

TEST(JinjaLexer, StringEscapesArePythons) {
  EXPECT_EQ(Kinds(R"({{ 'a\nb\t\'\\' "\x41\u00e9\U0001F389" '\d' '\101' }})"),
            (Tokens{"{{", "str:a\nb\t'\\", "str:Aé🎉", "str:\\d", "str:A", "}}"}));
  EXPECT_EQ(Kinds("{{ 'line\nbreak' }}"), (Tokens{"{{", "str:line\nbreak", "}}"}));
}

TEST(JinjaLexer, BracesInsideBracketsDoNotCloseTheTag) {
  EXPECT_EQ(Kinds("{{ {'a': {'b': 1}} }}"),
            (Tokens{"{{", "op:{", "str:a", "op::", "op:{", "str:b", "op::", "int:1", "op:}", "op:}", "}}"}));
}

TEST(JinjaLexer, WhitespaceControl) {
  EXPECT_EQ(Kinds("a  {{- 1 -}}  b"), (Tokens{"text:a", "{{", "int:1", "}}", "text:b"}));
  EXPECT_EQ(Kinds("a \n {%- if x -%} \n b"), (Tokens{"text:a", "{%", "name:if", "name:x", "%}", "text:b"}));
  EXPECT_EQ(Kinds("a {#- c -#} b"), (Tokens{"text:a", "text:b"}));
}

TEST(JinjaLexer, TrimAndLstripBlocks) {
  // The newline after %} and #} goes; the indentation before {% and {# on their own line goes.
  EXPECT_EQ(Kinds("x\n  {% if a %}\n  y\n  {# c #}\nz"),
            (Tokens{"text:x\n", "{%", "name:if", "name:a", "%}", "text:  y\n", "text:z"}));
  // Not for {{ }}.
  EXPECT_EQ(Kinds("x\n  {{ a }}\ny"), (Tokens{"text:x\n  ", "{{", "name:a", "}}", "text:\ny"}));
  // Not when text precedes the tag on its line; `+` turns both off.
  EXPECT_EQ(Kinds("x {% if a %}\ny"), (Tokens{"text:x ", "{%", "name:if", "name:a", "%}", "text:y"}));
  EXPECT_EQ(Kinds("  {%+ if a +%}\ny"), (Tokens{"text:  ", "{%", "name:if", "name:a", "%}", "text:\ny"}));
}

TEST(JinjaLexer, NewlinesAreNormalizedAndOneTrailingDropped) {
  EXPECT_EQ(Kinds("a\r\nb\rc\n\n"), (Tokens{"text:a\nb\nc\n"}));
  EXPECT_EQ(Kinds("a\n"), (Tokens{"text:a"}));
}

TEST(JinjaLexer, RawBlocksAreText) {
  EXPECT_EQ(Kinds("{% raw %}{{ x }}{% endraw %}"), (Tokens{"text:{{ x }}"}));
  EXPECT_EQ(LexError("{% raw %}{{ x }}").message, "missing end of raw directive ({% endraw %})");
}

TEST(JinjaLexer, ErrorsNameThePlace) {
  Error e = LexError("ok\n  {{ 'open }}");
  EXPECT_EQ(e.kind, ErrorKind::kSyntax);
  EXPECT_EQ(e.message, "a string is not closed");
  ASSERT_TRUE(e.position);
  EXPECT_EQ(e.position->line, 2);
  EXPECT_EQ(e.position->column, 6);
  e = LexError("é{{ x ");
  EXPECT_NE(e.message.find("not closed"), std::string::npos) << e.message;
  EXPECT_EQ(e.position->column, 2);  // characters, not bytes
  EXPECT_EQ(LexError("{{ (1, 2 }}").message, "unexpected '}', expected ')'");
  EXPECT_EQ(LexError("{{ ] }}").message, "unexpected ']'");
  EXPECT_EQ(LexError("{{ a $ b }}").message, "unexpected character '$'");
  EXPECT_EQ(LexError("{# no end").message, "missing end of comment tag");
  EXPECT_EQ(LexError("{{ '\\x4' }}").message, "a truncated \\x escape in a string");
  EXPECT_EQ(LexError("{{ '\\ud800' }}").kind, ErrorKind::kUnsupported);
  EXPECT_EQ(LexError("{{ 99999999999999999999 }}").kind, ErrorKind::kUnsupported);
  e = LexError("a\n\xff");
  EXPECT_EQ(e.message, "the template is not valid UTF-8");
  EXPECT_EQ(e.position->line, 2);
}

}  // namespace
}  // namespace flover::jinja
