// flover generate --chat's prompts (client/chat_prompts.h): which template, and the
// text each prompt becomes.
#include "client/chat_prompts.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace flover {
namespace {

TEST(ChatPrompts, ABuiltinNameOrATemplateFile) {
  Result<ChatTemplate> named = ChatTemplateOfFlag("ChatML");
  ASSERT_TRUE(named.ok()) << named.status().ToString();
  Result<std::vector<std::string>> texts = RenderChatPrompts(*named, {"Hi", "Bye"}, "Be brief.");
  ASSERT_TRUE(texts.ok()) << texts.status().ToString();
  EXPECT_EQ(*texts, (std::vector<std::string>{
                        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
                        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"}));
  EXPECT_EQ(named->end_of_turn(), std::vector<std::string>{"<|im_end|>"});

  const std::string path = ::testing::TempDir() + "chat_prompts_test_" + std::to_string(getpid()) + ".jinja";
  std::ofstream(path) << "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant]";
  Result<ChatTemplate> file = ChatTemplateOfFlag(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  texts = RenderChatPrompts(*file, {"Hi"}, "");
  ASSERT_TRUE(texts.ok()) << texts.status().ToString();
  EXPECT_EQ(*texts, std::vector<std::string>{"[user] Hi\n[assistant]"});  // the leading <s> is the cluster's
  std::ofstream(path) << "{% include 'x' %}";
  EXPECT_NE(ChatTemplateOfFlag(path).status().message().find("line 1, column 4: the 'include' tag is not supported"),
            std::string::npos);
  std::remove(path.c_str());
}

TEST(ChatPrompts, NeitherANameNorAFileIsExplained) {
  const Status s = ChatTemplateOfFlag("vicuna").status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--chat-template 'vicuna' is neither a built-in chat template (chatml, llama2"),
            std::string::npos)
      << s.message();
}

TEST(ChatPrompts, TheModelsOwnTemplate) {
  proto::ModelInfo model;
  const Status none = ChatTemplateOfModel(model).status();
  EXPECT_NE(none.message().find("has no chat template"), std::string::npos) << none.message();
  EXPECT_NE(none.message().find("--chat-template"), std::string::npos) << none.message();
  model.set_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}<|eot_id|>");
  Result<ChatTemplate> own = ChatTemplateOfModel(model);
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  EXPECT_EQ(own->end_of_turn(), std::vector<std::string>{"<|eot_id|>"});
  model.set_chat_template("{{ messages[0].content | wordwrap }}");
  EXPECT_NE(ChatTemplateOfModel(model).status().message().find("not supported"), std::string::npos);
}

TEST(ChatPrompts, TheTemplatesRefusalIsAnError) {
  Result<ChatTemplate> t = ChatTemplate::Parse(
      "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}", {});
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(RenderChatPrompts(*t, {"Hi"}, "").ok());
  const Status s = RenderChatPrompts(*t, {"Hi"}, "S").status();
  EXPECT_NE(s.message().find("System role not supported"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace flover
