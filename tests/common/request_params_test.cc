// The length rule of request_params.h: when a request stops by length, and the KV
// positions that makes it need at most.
#include "common/request_params.h"

#include <gtest/gtest.h>

namespace flover {
namespace {

TEST(StopsByLengthTest, StopsAtMaxTokens) {
  // Prompt 3, max_tokens 4, a context of 16: the 4th generated token is the last.
  EXPECT_FALSE(StopsByLength(3, 0, 4, 16));
  EXPECT_FALSE(StopsByLength(3, 3, 4, 16));
  EXPECT_TRUE(StopsByLength(3, 4, 4, 16));
  EXPECT_TRUE(StopsByLength(3, 5, 4, 16));
}

TEST(StopsByLengthTest, StopsWhenTheNewestTokenHasNoPosition) {
  // Prompt 10, context 16: 6 generated tokens put the newest at position 15, which a
  // step can still compute; the 7th sits at 16, beyond the context.
  EXPECT_FALSE(StopsByLength(10, 6, 100, 16));
  EXPECT_TRUE(StopsByLength(10, 7, 100, 16));
  // A prompt that fills the context may still sample one token (from position 15).
  EXPECT_FALSE(StopsByLength(16, 0, 100, 16));
  EXPECT_TRUE(StopsByLength(16, 1, 100, 16));
}

TEST(MaxKvPositionsTest, PromptPlusMaxTokensMinusOneCappedByContext) {
  RequestParams r;
  r.prompt = {1, 2, 3};
  r.stop.max_tokens = 4;
  EXPECT_EQ(MaxKvPositions(r, 16), 6);
  r.stop.max_tokens = 100;
  EXPECT_EQ(MaxKvPositions(r, 16), 16);
  ModelSpec model;
  model.max_seq_len = 5;
  EXPECT_EQ(MaxKvPositions(r, model), 5);
}

// MaxKvPositions counts the positions a request computes before StopsByLength ends it:
// every token it holds at that point but the last.
TEST(MaxKvPositionsTest, AgreesWithStopsByLength) {
  for (int max_seq_len : {1, 7, 16}) {
    for (int n_prompt = 1; n_prompt <= max_seq_len; ++n_prompt) {
      for (int max_tokens : {1, 2, 5, 40}) {
        int n_generated = 1;
        while (!StopsByLength(n_prompt, n_generated, max_tokens, max_seq_len)) ++n_generated;
        RequestParams r;
        r.prompt.assign(n_prompt, 1);
        r.stop.max_tokens = max_tokens;
        EXPECT_EQ(MaxKvPositions(r, max_seq_len), n_prompt + n_generated - 1)
            << "prompt " << n_prompt << " max_tokens " << max_tokens << " context " << max_seq_len;
      }
    }
  }
}

}  // namespace
}  // namespace flover
