// Chat templates: how a conversation becomes one prompt text. A model's own template
// (tokenizer_config.json's chat_template, GGUF tokenizer.chat_template) is rendered by
// the Jinja engine (common/jinja/template.h) as transformers renders it, with the
// variables transformers passes: messages (role, content), bos_token, eos_token,
// add_generation_prompt, tools and documents (none), and the functions
// raise_exception(message) and strftime_now(format).
//
// A template is named by a built-in name or given as Jinja text. The built-in templates
// (common/chat_templates/<name>.jinja, compiled in) are Jinja texts of the common
// families: chatml, llama2, llama3, mistral, zephyr, gemma, phi3. They follow each
// family's published template, except that llama2, mistral and gemma put system
// messages into the next user turn instead of refusing them, and do not insist that
// turns alternate.
//
// BOS: the cluster adds the BOS token when it tokenizes a text prompt. So Render removes
// a bos_token the template writes at the very start; BOS texts later in the prompt (a
// llama2 conversation's later turns) and the other markers map to their special tokens
// with a tokenizer.json or GGUF vocabulary, and stay text with a llama2.c tokenizer.
//
// Thread-safety: ChatTemplate is immutable; Render may run on several threads at once.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/jinja/template.h"
#include "common/status.h"

namespace flover {

class Tokenizer;

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// The texts of the special tokens a template prints.
struct ChatTokens {
  std::string bos = "<s>";
  std::string eos = "</s>";
  // The tokenizer adds BOS itself when it encodes the prompt (Tokenizer::add_bos()): a
  // leading bos_token the template wrote is then removed from the text, so BOS is not
  // doubled. When false the template's BOS text stays (and encodes to its id).
  bool tokenizer_adds_bos = true;
};

// The BOS and EOS texts of `tokenizer`: its pieces without surrounding whitespace
// (llama2.c files store them as "\n<s>\n"), "<s>" and "</s>" where that leaves nothing.
ChatTokens ChatTokensOf(const Tokenizer& tokenizer);

// The built-in template names, ", "-separated, for messages.
std::string KnownChatTemplates();
// The Jinja text of the built-in template `name` (any case, surrounding whitespace
// ignored), or nullptr when there is none of that name.
const std::string* BuiltinChatTemplate(std::string_view name);

// Adds raise_exception(message) (a render error with that message) and
// strftime_now(format) (local time) to `variables`, as transformers defines them.
void AddTransformersFunctions(jinja::Object* variables);

class ChatTemplate {
 public:
  // `source`: a built-in name, or a Jinja text (one with a "{{" or "{%"). InvalidArgument
  // when it is empty or another name, or (with line and column) when the text does not
  // parse or uses a construct the engine does not support.
  static Result<ChatTemplate> Parse(std::string_view source, ChatTokens tokens);

  // The prompt text of `messages`, without a leading bos_token (see above). The
  // template's own errors (raise_exception, an undefined value used, an unsupported
  // construct met while rendering) are InvalidArgument with line and column;
  // ResourceExhausted when the render passes a limit.
  Result<std::string> Render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  // The texts that end an assistant turn, stop strings of a chat request: the markers
  // the template text holds (<|im_end|>, <|eot_id|>, <end_of_turn>, <|end|>), else the
  // eos_token text.
  const std::vector<std::string>& end_of_turn() const { return end_of_turn_; }

 private:
  ChatTemplate(jinja::Template t, ChatTokens tokens, std::vector<std::string> end_of_turn)
      : template_(std::move(t)), tokens_(std::move(tokens)), end_of_turn_(std::move(end_of_turn)) {}

  jinja::Template template_;
  ChatTokens tokens_;
  std::vector<std::string> end_of_turn_;
};

}  // namespace flover
