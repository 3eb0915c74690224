// Chat templates (common/chat_template.h): the built-in templates, a model's own Jinja
// text, BOS handling and the end-of-turn stop strings.
#include "common/chat_template.h"

#include <gtest/gtest.h>

#include "common/tokenizer.h"
#include "tests/test_paths.h"

namespace flover {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}};

ChatTemplate MustParse(std::string_view source, ChatTokens tokens = {}) {
  Result<ChatTemplate> t = ChatTemplate::Parse(source, std::move(tokens));
  EXPECT_TRUE(t.ok()) << source << ": " << t.status().ToString();
  if (!t.ok()) std::abort();
  return std::move(t).value();
}

std::string MustRender(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool generation_prompt) {
  Result<std::string> text = t.Render(messages, generation_prompt);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return text.ok() ? *text : "";
}

struct Family {
  const char* name;
  std::string text;  // of kConversation with the generation prompt
  std::vector<std::string> end_of_turn;
};

// What the families rendered before they were Jinja templates: the built-in templates
// keep it (a leading BOS is no part of the text; the cluster adds BOS).
TEST(ChatTemplate, BuiltinTemplatesRenderTheirFamilies) {
  const std::vector<Family> families = {
      {"chatml",
       "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
       "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n",
       {"<|im_end|>"}},
      {"llama3",
       "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU1"
       "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_header_id|>user"
       "<|end_header_id|>\n\nU2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
       {"<|eot_id|>"}},
      {"llama2", "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]", {"</s>"}},
      {"mistral", "[INST] S\n\nU1 [/INST]A1</s>[INST] U2 [/INST]", {"</s>"}},
      {"zephyr", "<|system|>\nS</s>\n<|user|>\nU1</s>\n<|assistant|>\nA1</s>\n<|user|>\nU2</s>\n<|assistant|>\n",
       {"</s>"}},
      {"gemma",
       "<start_of_turn>user\nS\n\nU1<end_of_turn>\n<start_of_turn>model\nA1<end_of_turn>\n<start_of_turn>user\nU2"
       "<end_of_turn>\n<start_of_turn>model\n",
       {"<end_of_turn>"}},
      {"phi3",
       "<|system|>\nS<|end|>\n<|user|>\nU1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\nU2<|end|>\n<|assistant|>\n",
       {"<|end|>"}},
  };
  for (const Family& f : families) {
    const ChatTemplate t = MustParse(f.name);
    EXPECT_EQ(MustRender(t, kConversation, true), f.text) << f.name;
    EXPECT_EQ(t.end_of_turn(), f.end_of_turn) << f.name;
  }
}

TEST(ChatTemplate, GenerationPromptIsOptional) {
  const std::vector<ChatMessage> user = {{"user", " Hi \n"}};
  EXPECT_EQ(MustRender(MustParse("chatml"), user, false), "<|im_start|>user\n Hi \n<|im_end|>\n");
  EXPECT_EQ(MustRender(MustParse("llama3"), user, false), "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  EXPECT_EQ(MustRender(MustParse("gemma"), user, false), "<start_of_turn>user\nHi<end_of_turn>\n");
  EXPECT_EQ(MustRender(MustParse("llama2"), user, false), "[INST] Hi [/INST]");
  EXPECT_EQ(MustRender(MustParse("phi3"), user, false), "<|user|>\n Hi \n<|end|>\n</s>");  // phi3 ends with eos
  // A system message alone still reaches a family without a system role.
  EXPECT_EQ(MustRender(MustParse("mistral"), {{"system", "S"}}, true), "[INST] S\n\n [/INST]");
  EXPECT_EQ(MustRender(MustParse("llama2"), {{"system", "S"}}, true), "[INST] <<SYS>>\nS\n<</SYS>> [/INST]");
}

TEST(ChatTemplate, NamesInAnyCase) {
  EXPECT_EQ(KnownChatTemplates(), "chatml, llama2, llama3, mistral, zephyr, gemma, phi3");
  EXPECT_NE(BuiltinChatTemplate(" Llama3 "), nullptr);
  EXPECT_EQ(BuiltinChatTemplate("PHI3"), BuiltinChatTemplate("phi3"));
  EXPECT_EQ(BuiltinChatTemplate("vicuna"), nullptr);
  EXPECT_EQ(MustRender(MustParse("CHATML"), {{"user", "x"}}, false), "<|im_start|>user\nx<|im_end|>\n");
}

TEST(ChatTemplate, AJinjaTextIsRenderedAsIs) {
  const ChatTemplate t = MustParse(
      "{{ bos_token }}{% for m in messages %}<{{ m.role | upper }}>{{ m.content }}{{ eos_token }}{% endfor %}"
      "{% if add_generation_prompt %}<ASSISTANT>{% endif %}",
      ChatTokens{"<B>", "<E>"});
  // The leading BOS is removed; the end of turn is the EOS text (no known marker).
  EXPECT_EQ(MustRender(t, {{"user", "hi"}, {"assistant", "yo"}}, true), "<USER>hi<E><ASSISTANT>yo<E><ASSISTANT>");
  EXPECT_EQ(t.end_of_turn(), std::vector<std::string>{"<E>"});
  // Only a leading BOS: one later in the text stays.
  const ChatTemplate later = MustParse("x{{ bos_token }}", ChatTokens{"<B>", "<E>"});
  EXPECT_EQ(MustRender(later, {}, false), "x<B>");
  // A tokenizer that does not add BOS itself (GPT-2 style): the template's BOS stays.
  const ChatTemplate kept = MustParse("{{ bos_token }}x", ChatTokens{"<B>", "<E>", /*tokenizer_adds_bos=*/false});
  EXPECT_EQ(MustRender(kept, {}, false), "<B>x");
}

TEST(ChatTemplate, TheVariablesAreTransformers) {
  const ChatTemplate t = MustParse(
      "{{ tools is none }} {{ documents is none }} {{ messages | length }} {{ add_generation_prompt }} "
      "{{ raise_exception is defined }} {{ strftime_now is defined }} {{ messages[0] | tojson }}");
  EXPECT_EQ(MustRender(t, {{"user", "é\""}}, false),
            "True True 1 False True True {\"role\": \"user\", \"content\": \"é\\\"\"}");
}

TEST(ChatTemplate, ErrorsAreExplained) {
  EXPECT_NE(ChatTemplate::Parse("  ", {}).status().message().find("empty"), std::string::npos);
  const Status unknown = ChatTemplate::Parse("vicuna", {}).status();
  EXPECT_EQ(unknown.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.message().find("'vicuna' is neither a built-in chat template (chatml, llama2"), std::string::npos)
      << unknown.message();
  const Status unsupported = ChatTemplate::Parse("{% for m in messages %}{% include 'x' %}{% endfor %}", {}).status();
  EXPECT_EQ(unsupported.message(), "chat template: line 1, column 27: the 'include' tag is not supported");
  // The template's own refusal reaches the caller with its message.
  const ChatTemplate alternate = MustParse(
      "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}"
      "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
      "{% endfor %}");
  const Status raised = alternate.Render({{"user", "a"}, {"user", "b"}}, true).status();
  EXPECT_EQ(raised.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(raised.message().find("Conversation roles must alternate user/assistant/user/assistant/..."),
            std::string::npos)
      << raised.message();
  EXPECT_EQ(raised.message().rfind("chat template: line 1, column ", 0), 0u) << raised.message();
}

TEST(ChatTemplate, TokenTextsComeFromTheTokenizer) {
  Result<Tokenizer> tok = Tokenizer::LoadLlama2c(testing::Tok512Bin());
  ASSERT_TRUE(tok.ok()) << tok.status().ToString() << " (set FLOVER_MODELS_DIR)";
  const ChatTokens tokens = ChatTokensOf(*tok);  // llama2.c stores "\n<s>\n"
  EXPECT_EQ(tokens.bos, "<s>");
  EXPECT_EQ(tokens.eos, "</s>");
}

}  // namespace
}  // namespace flover
