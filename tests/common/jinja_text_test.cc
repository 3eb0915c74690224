// Python's str semantics over UTF-8 (common/jinja/text.h).
#include "common/jinja/text.h"

#include <gtest/gtest.h>

#include "common/jinja/error.h"

namespace flover::jinja {
namespace {

TEST(JinjaText, FloatsPrintAsPythonRepr) {
  EXPECT_EQ(FloatRepr(1.0), "1.0");
  EXPECT_EQ(FloatRepr(-0.0), "-0.0");
  EXPECT_EQ(FloatRepr(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(FloatRepr(1e15), "1000000000000000.0");
  EXPECT_EQ(FloatRepr(1e16), "1e+16");
  EXPECT_EQ(FloatRepr(1.5e300), "1.5e+300");
  EXPECT_EQ(FloatRepr(0.0001), "0.0001");
  EXPECT_EQ(FloatRepr(0.00001), "1e-05");
  EXPECT_EQ(FloatRepr(123.456), "123.456");
  EXPECT_EQ(FloatRepr(5e-324), "5e-324");
  EXPECT_EQ(FloatRepr(1.0 / 0.0), "inf");
}

TEST(JinjaText, StringsQuoteAsPythonRepr) {
  EXPECT_EQ(StringRepr("abc"), "'abc'");
  EXPECT_EQ(StringRepr("it's"), "\"it's\"");
  EXPECT_EQ(StringRepr("it's \"x\""), "'it\\'s \"x\"'");
  EXPECT_EQ(StringRepr("a\nb\t\\"), "'a\\nb\\t\\\\'");
  EXPECT_EQ(StringRepr("\x01\x7f"), "'\\x01\\x7f'");
  EXPECT_EQ(StringRepr("é世\u00a0\u2028"), "'é世\\xa0\\u2028'");
}

TEST(JinjaText, JsonQuotesAsPythonJsonDumps) {
  EXPECT_EQ(JsonQuote("a\"b\\c\n\x01/é", false), "\"a\\\"b\\\\c\\n\\u0001/é\"");
  EXPECT_EQ(JsonQuote("é🎉\x7f", true), "\"\\u00e9\\ud83c\\udf89\\u007f\"");
}

TEST(JinjaText, CharactersAreCodePoints) {
  EXPECT_EQ(CharCount("Grüße 世界 🎉"), 10u);
  EXPECT_EQ(Decode("é🎉"), std::u32string(U"é🎉"));
  // Invalid bytes survive a round trip (Python's surrogateescape).
  const std::string invalid = "a\xff\xc3(b";
  EXPECT_EQ(Decode(invalid).size(), 5u);
  EXPECT_EQ(Encode(Decode(invalid)), invalid);
  EXPECT_EQ(FindInvalidUtf8(invalid), std::optional<size_t>(1));
  EXPECT_EQ(FindInvalidUtf8("ok é"), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("\xed\xa0\x80"), std::optional<size_t>(0));  // a surrogate
  EXPECT_EQ(FindInvalidUtf8("\xc0\x80"), std::optional<size_t>(0));      // an overlong NUL
}

TEST(JinjaText, WhitespaceIsPythonWhitespace) {
  for (char32_t c : {U' ', U'\t', U'\n', U'\x0b', U'\x0c', U'\r', U'\x1c', U'\x1f', U'\x85', U'\xa0', U'\u2003', U'\u3000'})
    EXPECT_TRUE(IsSpace(c)) << static_cast<unsigned>(c);
  for (char32_t c : {U'a', U'\0', U'\u200b', U'\ufeff'}) EXPECT_FALSE(IsSpace(c)) << static_cast<unsigned>(c);
  EXPECT_EQ(Strip("\u00a0 x \u3000", std::nullopt), "x");
  EXPECT_EQ(Strip("xxaxx", std::string("x")), "a");
  EXPECT_EQ(LStrip("  a  ", std::nullopt), "a  ");
  EXPECT_EQ(RStrip("  a  ", std::nullopt), "  a");
  EXPECT_EQ(Strip("éaé", std::string("é")), "a");
}

TEST(JinjaText, SplitAndReplaceAsPython) {
  using V = std::vector<std::string>;
  EXPECT_EQ(Split(" a  b\u3000c ", std::nullopt, -1), (V{"a", "b", "c"}));
  EXPECT_EQ(Split(" a b c ", std::nullopt, 1), (V{"a", "b c "}));
  EXPECT_EQ(Split("", std::nullopt, -1), V{});
  EXPECT_EQ(Split("a,,b", std::string(","), -1), (V{"a", "", "b"}));
  EXPECT_EQ(Split("a,b,c", std::string(","), 1), (V{"a", "b,c"}));
  EXPECT_EQ(Split("", std::string(","), -1), V{""});
  EXPECT_EQ(Replace("aaa", "a", "b", 2), "bba");
  EXPECT_EQ(Replace("aaa", "a", "", -1), "");
  EXPECT_EQ(Replace("é", "", "-", -1), "-é-");
  EXPECT_EQ(Replace("ab", "", "-", 1), "-ab");
}

TEST(JinjaText, CaseMappingsAsPython) {
  EXPECT_EQ(Upper("straße ÿ"), "STRASSE Ÿ");
  EXPECT_EQ(Lower("ÀÉÎ İ ΑΒΓ Ж"), "àéî i̇ αβγ ж");
  EXPECT_EQ(Upper("ſ µ ς"), "S Μ Σ");
  EXPECT_EQ(Capitalize("hELLO wORLD"), "Hello world");
  EXPECT_EQ(Capitalize("ßa"), "Ssa");
  EXPECT_EQ(TitleMethod("they're 1st x"), "They'Re 1St X");
  EXPECT_EQ(TitleFilter("they're 1st-x(y"), "They're 1st-X(Y");
  // Caseless scripts pass unchanged.
  EXPECT_EQ(Upper("世界 🎉 שלום"), "世界 🎉 שלום");
}

TEST(JinjaText, UnknownCaseMappingsAreRefusedNotGuessed) {
  for (const char* text : {"ǆ", "Ꭰ", "ᾳ", "Ⓐ"}) {
    try {
      (void)Upper(text);
      ADD_FAILURE() << text << " was mapped";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind, ErrorKind::kUnsupported);
      EXPECT_NE(e.message.find("case mapping of U+"), std::string::npos) << e.message;
    }
  }
  // The lower case of a capital sigma depends on where it stands in a word.
  EXPECT_THROW((void)Lower("ΟΔΟΣ"), Error);
  EXPECT_EQ(Upper("οδος"), "ΟΔΟΣ");
}

}  // namespace
}  // namespace flover::jinja
