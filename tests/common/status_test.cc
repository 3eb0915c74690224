#include "common/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace flover {
namespace {

TEST(StatusTest, DefaultIsOk) {
  const Status status;
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::kOk);
  EXPECT_EQ(status.message(), "");
  EXPECT_EQ(status.ToString(), "OK");
  EXPECT_TRUE(Status::Ok().ok());
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  const Status status = InvalidArgument("prompt has 700 tokens; this model allows 512");
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "prompt has 700 tokens; this model allows 512");
  EXPECT_EQ(status.ToString(), "InvalidArgument: prompt has 700 tokens; this model allows 512");
}

TEST(StatusTest, HelpersSetTheirCodes) {
  const std::vector<std::pair<Status, std::string>> cases = {
      {InvalidArgument("m"), "InvalidArgument: m"},
      {NotFound("m"), "NotFound: m"},
      {Corruption("m"), "Corruption: m"},
      {IoError("m"), "IoError: m"},
      {ResourceExhausted("m"), "ResourceExhausted: m"},
      {Unavailable("m"), "Unavailable: m"},
      {Cancelled("m"), "Cancelled: m"},
      {FailedPrecondition("m"), "FailedPrecondition: m"},
      {Internal("m"), "Internal: m"},
  };
  for (const auto& [status, text] : cases) {
    EXPECT_FALSE(status.ok()) << text;
    EXPECT_EQ(status.ToString(), text);
    EXPECT_STREQ(StatusCodeName(status.code()), text.substr(0, text.find(':')).c_str());
  }
}

TEST(StatusTest, WithContextPrefixesMessageAndKeepsCode) {
  const Status status = Corruption("entry 3 is truncated").WithContext("tok512.bin");
  EXPECT_EQ(status.code(), StatusCode::kCorruption);
  EXPECT_EQ(status.message(), "tok512.bin: entry 3 is truncated");
  EXPECT_EQ(status.WithContext("loading model").message(),
            "loading model: tok512.bin: entry 3 is truncated");
}

TEST(StatusTest, WithContextOnOkStaysOk) {
  const Status status = Status::Ok().WithContext("anything");
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.message(), "");
}

TEST(ResultTest, HoldsValue) {
  Result<int> result = 42;
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result.status().ok());
  EXPECT_EQ(result.value(), 42);
  EXPECT_EQ(*result, 42);
  *result = 7;
  EXPECT_EQ(result.value(), 7);

  const Result<std::string> text = std::string("abc");
  EXPECT_EQ(text->size(), 3u);
}

TEST(ResultTest, HoldsError) {
  const Result<int> result = NotFound("no request 17");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(result.status().message(), "no request 17");
}

TEST(ResultTest, MovesOutMoveOnlyValue) {
  Result<std::unique_ptr<int>> result = std::make_unique<int>(5);
  ASSERT_TRUE(result.ok());
  std::unique_ptr<int> owned = std::move(result).value();
  ASSERT_NE(owned, nullptr);
  EXPECT_EQ(*owned, 5);
}

Result<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgument(std::to_string(x) + " is odd");
  return x / 2;
}

// Two uses in one scope check that the macro's temporaries do not collide.
Result<int> Quarter(int x) {
  FLOVER_ASSIGN_OR_RETURN(const int half, Half(x));
  FLOVER_ASSIGN_OR_RETURN(const int quarter, Half(half));
  return quarter;
}

Result<std::string> QuarterAsText(int x) {
  std::string text = "unset";
  int value = -1;
  FLOVER_ASSIGN_OR_RETURN(value, Quarter(x));  // assigns to an existing variable
  text = std::to_string(value);
  return text;
}

TEST(StatusMacrosTest, AssignOrReturnAssignsValue) {
  const Result<int> quarter = Quarter(12);
  ASSERT_TRUE(quarter.ok()) << quarter.status().ToString();
  EXPECT_EQ(*quarter, 3);
  const Result<std::string> text = QuarterAsText(20);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text, "5");
}

TEST(StatusMacrosTest, AssignOrReturnReturnsFirstError) {
  const Result<int> odd_at_first = Quarter(7);
  ASSERT_FALSE(odd_at_first.ok());
  EXPECT_EQ(odd_at_first.status().ToString(), "InvalidArgument: 7 is odd");

  const Result<int> odd_at_second = Quarter(6);  // 6 -> 3, and 3 is odd
  ASSERT_FALSE(odd_at_second.ok());
  EXPECT_EQ(odd_at_second.status().message(), "3 is odd");

  const Result<std::string> text = QuarterAsText(10);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().message(), "5 is odd");
}

Status CheckAll(const std::vector<int>& values, int* n_checked) {
  for (const int v : values) {
    FLOVER_RETURN_IF_ERROR(v >= 0 ? Status::Ok() : InvalidArgument("negative value " + std::to_string(v)));
    ++*n_checked;
  }
  return Status::Ok();
}

TEST(StatusMacrosTest, ReturnIfErrorContinuesOnOk) {
  int n_checked = 0;
  EXPECT_TRUE(CheckAll({1, 2, 3}, &n_checked).ok());
  EXPECT_EQ(n_checked, 3);
}

TEST(StatusMacrosTest, ReturnIfErrorStopsAtFirstError) {
  int n_checked = 0;
  const Status status = CheckAll({1, -2, -3, 4}, &n_checked);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "negative value -2");
  EXPECT_EQ(n_checked, 1);
}

TEST(StatusMacrosTest, ReturnIfErrorPassesThroughWithContext) {
  auto load = []() -> Status {
    FLOVER_RETURN_IF_ERROR(Corruption("bad magic").WithContext("model.gguf"));
    return Status::Ok();
  };
  EXPECT_EQ(load().ToString(), "Corruption: model.gguf: bad magic");
}

TEST(CheckTest, PassingCheckDoesNothing) {
  int evaluated = 0;
  FLOVER_CHECK(++evaluated == 1) << "never printed";
  FLOVER_CHECK_EQ(evaluated, 1);
  FLOVER_CHECK_LT(evaluated, 2);
  EXPECT_EQ(evaluated, 1);  // the condition is evaluated exactly once
}

TEST(CheckDeathTest, FailedCheckAbortsWithConditionAndValues) {
  const int n_tokens = 700;
  const int capacity = 512;
  EXPECT_DEATH(FLOVER_CHECK(n_tokens <= capacity) << "n_tokens=" << n_tokens,
               "check failed: n_tokens <= capacity.*n_tokens=700");
}

TEST(CheckDeathTest, FailedCheckEqPrintsBothValues) {
  const int blocks = 3;
  EXPECT_DEATH(FLOVER_CHECK_EQ(blocks, 4) << "after free", "blocks=3 4=4 after free");
}

TEST(CheckDeathTest, ValueOfFailedResultAborts) {
  const Result<int> result = NotFound("no such file");
  EXPECT_DEATH((void)result.value(), "value\\(\\) of a failed Result: NotFound: no such file");
}

TEST(CheckDeathTest, ResultFromOkStatusAborts) {
  EXPECT_DEATH((void)Result<int>{Status::Ok()}, "Result built from an OK Status");
}

}  // namespace
}  // namespace flover
