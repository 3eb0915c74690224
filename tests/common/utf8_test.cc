#include "common/utf8.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace flover {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8Stream, AsciiAndCompleteCharactersPassAtOnce) {
  Utf8Stream s;
  EXPECT_EQ(s.Push("Once"), "Once");
  EXPECT_EQ(s.Push(" \xC3\xA9t\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80"), " \xC3\xA9t\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80");
  EXPECT_EQ(s.Finish(), "");
}

TEST(Utf8Stream, ACharacterSplitOverByteTokensWaitsForItsLastByte) {
  // U+2713 CHECK MARK as three byte-fallback tokens, then U+1F600 as four.
  Utf8Stream s;
  EXPECT_EQ(s.Push("a\xE2"), "a");
  EXPECT_EQ(s.Push("\x9C"), "");
  EXPECT_EQ(s.Push("\x93"), "\xE2\x9C\x93");
  for (const char* b : {"\xF0", "\x9F", "\x98"}) EXPECT_EQ(s.Push(b), "");
  EXPECT_EQ(s.Push("\x80!"), "\xF0\x9F\x98\x80!");
  EXPECT_EQ(s.Finish(), "");
}

TEST(Utf8Stream, BytesThatCannotBeUtf8BecomeReplacementCharacters) {
  Utf8Stream s;
  EXPECT_EQ(s.Push("\x80"), kFffd);          // a continuation byte alone
  EXPECT_EQ(s.Push("\xFF" "b"), kFffd + "b");  // never a UTF-8 byte
  EXPECT_EQ(s.Push("\xC0\xAF"), kFffd + kFffd);  // overlong: C0 is never a lead
  EXPECT_EQ(s.Push("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // a surrogate
  EXPECT_EQ(s.Push("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // above U+10FFFF
  // An unfinished character followed by something else: one U+FFFD for its bytes.
  EXPECT_EQ(s.Push("\xE2\x9C"), "");
  EXPECT_EQ(s.Push("x"), kFffd + "x");
}

TEST(Utf8Stream, AnUnfinishedCharacterAtTheEndBecomesOneReplacement) {
  Utf8Stream s;
  EXPECT_EQ(s.Push("ok\xF0\x9F\x98"), "ok");
  EXPECT_EQ(s.Finish(), kFffd);
  EXPECT_EQ(s.Finish(), "");
  EXPECT_EQ(s.Push("again"), "again");
}

TEST(Utf8Stream, PiecesJoinToTheWholeTextConvertedAtOnce) {
  // Every split of a mixed byte string gives the same text as converting it whole.
  const std::string bytes = "A\xC3\xA9\xE2\x9C\x93\x80\xF0\x9F\x98\x80\xE2\x9C" "z\xC3";
  const std::string whole = ToValidUtf8(bytes);
  EXPECT_EQ(whole, "A\xC3\xA9\xE2\x9C\x93" + kFffd + "\xF0\x9F\x98\x80" + kFffd + "z" + kFffd);
  for (size_t cut1 = 0; cut1 <= bytes.size(); ++cut1) {
    for (size_t cut2 = cut1; cut2 <= bytes.size(); ++cut2) {
      Utf8Stream s;
      std::string joined = s.Push(bytes.substr(0, cut1));
      joined += s.Push(bytes.substr(cut1, cut2 - cut1));
      joined += s.Push(bytes.substr(cut2));
      joined += s.Finish();
      EXPECT_EQ(joined, whole) << cut1 << " " << cut2;
    }
  }
}

}  // namespace
}  // namespace flover
