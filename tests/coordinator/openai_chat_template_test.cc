// Chat template families: rendering and recognition (coordinator/openai/chat_template.h).
#include "coordinator/openai/chat_template.h"

#include <gtest/gtest.h>

namespace flover::openai {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}};

struct Rendered {
  ChatFamily family;
  std::string text;  // of kConversation with the generation prompt
  const char* end_of_turn;
};

TEST(ChatTemplate, EachFamilyRendersAsItsReferenceTemplate) {
  const std::vector<Rendered> cases = {
      {ChatFamily::kChatml,
       "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
       "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n",
       "<|im_end|>"},
      {ChatFamily::kLlama3,
       "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU1"
       "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_header_id|>user"
       "<|end_header_id|>\n\nU2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
       "<|eot_id|>"},
      {ChatFamily::kLlama2, "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]", "</s>"},
      {ChatFamily::kMistral, "[INST] S\n\nU1 [/INST]A1</s>[INST] U2 [/INST]", "</s>"},
      {ChatFamily::kZephyr,
       "<|system|>\nS</s>\n<|user|>\nU1</s>\n<|assistant|>\nA1</s>\n<|user|>\nU2</s>\n<|assistant|>\n", "</s>"},
      {ChatFamily::kGemma,
       "<start_of_turn>user\nS\n\nU1<end_of_turn>\n<start_of_turn>model\nA1<end_of_turn>\n<start_of_turn>user\nU2"
       "<end_of_turn>\n<start_of_turn>model\n",
       "<end_of_turn>"},
      {ChatFamily::kPhi3,
       "<|system|>\nS<|end|>\n<|user|>\nU1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\nU2<|end|>\n<|assistant|>\n",
       "<|end|>"},
  };
  for (const Rendered& c : cases) {
    EXPECT_EQ(RenderChat(c.family, kConversation, true), c.text) << ChatFamilyName(c.family);
    EXPECT_STREQ(EndOfTurn(c.family), c.end_of_turn) << ChatFamilyName(c.family);
  }
}

TEST(ChatTemplate, GenerationPromptIsOptional) {
  const std::vector<ChatMessage> user = {{"user", " Hi \n"}};
  EXPECT_EQ(RenderChat(ChatFamily::kChatml, user, false), "<|im_start|>user\n Hi \n<|im_end|>\n");
  EXPECT_EQ(RenderChat(ChatFamily::kLlama3, user, false),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");  // llama3 trims
  EXPECT_EQ(RenderChat(ChatFamily::kGemma, user, false), "<start_of_turn>user\nHi<end_of_turn>\n");
  EXPECT_EQ(RenderChat(ChatFamily::kLlama2, user, false), "[INST] Hi [/INST]");
  EXPECT_EQ(RenderChat(ChatFamily::kPhi3, user, false), "<|user|>\n Hi \n<|end|>\n");
  // A system message alone still reaches a family without a system role.
  EXPECT_EQ(RenderChat(ChatFamily::kMistral, {{"system", "S"}}, true), "[INST] S\n\n [/INST]");
}

TEST(ChatTemplate, FamilyNamesInAnyCase) {
  EXPECT_EQ(std::get<ChatFamily>(FindChatFamily("chatml")), ChatFamily::kChatml);
  EXPECT_EQ(std::get<ChatFamily>(FindChatFamily(" Llama3 ")), ChatFamily::kLlama3);
  EXPECT_EQ(std::get<ChatFamily>(FindChatFamily("PHI3")), ChatFamily::kPhi3);
  EXPECT_EQ(KnownChatFamilies(), "chatml, llama2, llama3, mistral, zephyr, gemma, phi3");
}

TEST(ChatTemplate, JinjaTextsAreMappedByTheirMarkers) {
  const std::vector<std::pair<const char*, ChatFamily>> cases = {
      {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
       "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
       ChatFamily::kChatml},
      {"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
       "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
       "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
       "{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}",
       ChatFamily::kLlama3},
      {"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
       "messages[0]['content'] %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and "
       "system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + "
       "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
       "content.strip() + ' [/INST]' }}{% endif %}{% endfor %}",
       ChatFamily::kLlama2},
      {"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
       "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + "
       "eos_token}}{% endif %}{% endfor %}",
       ChatFamily::kMistral},
      {"{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + "
       "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token "
       "}}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n"
       "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
       ChatFamily::kZephyr},
      {"{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' "
       "%}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + "
       "message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}"
       "{{'<start_of_turn>model\\n'}}{% endif %}",
       ChatFamily::kGemma},
      {"{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + "
       "'<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}"
       "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}"
       "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}",
       ChatFamily::kPhi3},
  };
  for (const auto& [jinja, family] : cases) {
    const auto found = FindChatFamily(jinja);
    ASSERT_TRUE(std::holds_alternative<ChatFamily>(found)) << jinja << " -> " << std::get<std::string>(found);
    EXPECT_EQ(std::get<ChatFamily>(found), family) << jinja;
  }
}

TEST(ChatTemplate, NoneOrUnknownIsExplained) {
  for (const char* t : {"", "  ", "vicuna", "{% for m in messages %}USER: {{ m.content }}{% endfor %}"}) {
    const auto found = FindChatFamily(t);
    ASSERT_TRUE(std::holds_alternative<std::string>(found)) << t;
    const std::string& why = std::get<std::string>(found);
    EXPECT_NE(why.find("model.chat_template"), std::string::npos) << why;
    EXPECT_NE(why.find(KnownChatFamilies()), std::string::npos) << why;
  }
  EXPECT_NE(std::get<std::string>(FindChatFamily("vicuna")).find("'vicuna' is not a known"), std::string::npos);
  EXPECT_NE(std::get<std::string>(FindChatFamily("")).find("has no chat template"), std::string::npos);
}

}  // namespace
}  // namespace flover::openai
