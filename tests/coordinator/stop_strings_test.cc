#include "coordinator/stop_strings.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace flover {
namespace {

// Pushes pieces; the text sent, and whether a stop string ended it.
std::pair<std::string, bool> Feed(StopStrings& s, const std::vector<std::string>& pieces) {
  std::string sent;
  for (const std::string& p : pieces) {
    StopStrings::Piece out = s.Push(p);
    sent += out.text;
    if (out.stopped) return {sent, true};
  }
  return {sent + s.Flush(), false};
}

TEST(StopStringsTest, TheTextEndsBeforeTheFirstStopString) {
  StopStrings s({"The end", "\n\n"});
  EXPECT_EQ(Feed(s, {"Once", " upon", " a time.", "\n", "\n", "Then"}),
            std::make_pair(std::string("Once upon a time."), true));
}

TEST(StopStringsTest, AStopStringOverSeveralTokensIsNeverSentInPart) {
  StopStrings s({"The end"});
  StopStrings::Piece p = s.Push("happily. The");
  EXPECT_EQ(p.text, "happily. ");  // "The" may begin "The end"
  EXPECT_FALSE(p.stopped);
  p = s.Push(" e");
  EXPECT_EQ(p.text, "");
  p = s.Push("nd!");
  EXPECT_EQ(p.text, "");
  EXPECT_TRUE(p.stopped);
}

TEST(StopStringsTest, HeldTextThatTurnsOutOtherwiseIsSentWithTheNextPiece) {
  StopStrings s({"The end"});
  EXPECT_EQ(s.Push("The").text, "");
  EXPECT_EQ(s.Push(" dog").text, "The dog");
  EXPECT_EQ(s.Push(" ran. The en").text, " ran. ");
  EXPECT_EQ(s.Flush(), "The en");  // the request ended for another reason: nothing is lost
  EXPECT_EQ(s.Flush(), "");
}

TEST(StopStringsTest, TheEarliestOfSeveralStopStringsWins) {
  StopStrings s({"cat", "a c"});
  EXPECT_EQ(Feed(s, {"I saw a cat"}), std::make_pair(std::string("I saw "), true));
  StopStrings t({"xyz"});
  EXPECT_EQ(Feed(t, {"xyz"}), std::make_pair(std::string(""), true));  // right at the start
}

TEST(StopStringsTest, MultiByteCharactersAreHeldWhole) {
  StopStrings s({"\xC3\xA9t\xC3\xA9"});  // "été"
  StopStrings::Piece p = s.Push("caf\xC3\xA9");  // "café": "é" may begin "été"
  EXPECT_EQ(p.text, "caf");
  EXPECT_EQ(s.Push("!").text, "\xC3\xA9!");
}

}  // namespace
}  // namespace flover
