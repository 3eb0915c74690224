#include "common/chat_template.h"

#include <algorithm>
#include <cctype>
#include <ctime>

#include "common/builtin_chat_templates.h"
#include "common/jinja/error.h"
#include "common/jinja/function.h"
#include "common/tokenizer.h"

namespace flover {

namespace {

// Markers that end a turn in the common template families.
constexpr std::string_view kEndOfTurnMarkers[] = {"<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"};

// The longest strftime format and result strftime_now takes.
constexpr size_t kMaxTimeFormat = 256;

std::string_view TrimAscii(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string LowerAscii(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

jinja::Value RaiseException(jinja::Args& args, jinja::Budget&) {
  const jinja::BoundArgs a("raise_exception", std::move(args), {"message"});
  jinja::Fail(jinja::ErrorKind::kRaised, jinja::Str(a.Required(0), 4096));
}

jinja::Value StrftimeNow(jinja::Args& args, jinja::Budget&) {
  const jinja::BoundArgs a("strftime_now", std::move(args), {"format"});
  (void)a.Required(0);
  const std::string format = *a.String(0);
  if (format.size() > kMaxTimeFormat)
    jinja::Fail(jinja::ErrorKind::kLimit, "strftime_now: a format of more than " + std::to_string(kMaxTimeFormat) + " bytes");
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buf[kMaxTimeFormat * 8 + 1];
  const size_t n = std::strftime(buf, sizeof(buf), format.c_str(), &local);
  if (n == 0 && !format.empty())
    jinja::Fail(jinja::ErrorKind::kRender, "strftime_now: the format '" + format + "' gives no text");
  return jinja::Value::String(std::string(buf, n));
}

}  // namespace

ChatTokens ChatTokensOf(const Tokenizer& tokenizer) {
  ChatTokens tokens;
  const auto text = [&](int id, const std::string& fallback) {
    if (id < 0 || id >= tokenizer.vocab_size()) return fallback;
    const std::string_view piece = TrimAscii(tokenizer.piece(id));
    return piece.empty() ? fallback : std::string(piece);
  };
  tokens.bos = text(tokenizer.bos_id(), tokens.bos);
  tokens.eos = text(tokenizer.eos_id(), tokens.eos);
  tokens.tokenizer_adds_bos = tokenizer.add_bos();
  return tokens;
}

std::string KnownChatTemplates() {
  std::string names;
  for (const BuiltinChatTemplateText& t : BuiltinChatTemplateTexts()) names += (names.empty() ? "" : ", ") + t.name;
  return names;
}

const std::string* BuiltinChatTemplate(std::string_view name) {
  const std::string key = LowerAscii(TrimAscii(name));
  for (const BuiltinChatTemplateText& t : BuiltinChatTemplateTexts())
    if (t.name == key) return &t.text;
  return nullptr;
}

void AddTransformersFunctions(jinja::Object* variables) {
  variables->Set("raise_exception", jinja::Value::Callable(jinja::Function{"raise_exception", RaiseException}));
  variables->Set("strftime_now", jinja::Value::Callable(jinja::Function{"strftime_now", StrftimeNow}));
}

Result<ChatTemplate> ChatTemplate::Parse(std::string_view source, ChatTokens tokens) {
  if (TrimAscii(source).empty()) return InvalidArgument("the chat template is empty");
  const std::string* builtin = BuiltinChatTemplate(source);
  const bool jinja = source.find("{{") != std::string_view::npos || source.find("{%") != std::string_view::npos;
  if (!builtin && !jinja)
    return InvalidArgument("'" + std::string(TrimAscii(source).substr(0, 64)) +
                           "' is neither a built-in chat template (" + KnownChatTemplates() + ") nor a Jinja text");
  const std::string_view text = builtin ? std::string_view(*builtin) : source;
  Result<jinja::Template> parsed = jinja::Template::Parse(text);
  if (!parsed.ok())
    return parsed.status().WithContext(builtin ? "built-in chat template '" + LowerAscii(TrimAscii(source)) + "'"
                                               : std::string("chat template"));
  std::vector<std::string> end_of_turn;
  for (std::string_view marker : kEndOfTurnMarkers)
    if (text.find(marker) != std::string_view::npos) end_of_turn.emplace_back(marker);
  if (end_of_turn.empty() && !tokens.eos.empty()) end_of_turn.push_back(tokens.eos);
  return ChatTemplate(std::move(parsed).value(), std::move(tokens), std::move(end_of_turn));
}

Result<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::vector<jinja::Value> list;
  list.reserve(messages.size());
  for (const ChatMessage& m : messages) {
    jinja::Object message;
    message.Set("role", jinja::Value::String(m.role));
    message.Set("content", jinja::Value::String(m.content));
    list.push_back(jinja::Value::Dict(std::move(message)));
  }
  jinja::Object variables;
  variables.Set("messages", jinja::Value::List(std::move(list)));
  variables.Set("bos_token", jinja::Value::String(tokens_.bos));
  variables.Set("eos_token", jinja::Value::String(tokens_.eos));
  variables.Set("add_generation_prompt", jinja::Value::Bool(add_generation_prompt));
  variables.Set("tools", jinja::Value::None());
  variables.Set("documents", jinja::Value::None());
  AddTransformersFunctions(&variables);
  Result<std::string> text = template_.Render(variables);
  if (!text.ok()) return text.status().WithContext("chat template");
  if (tokens_.tokenizer_adds_bos && !tokens_.bos.empty() && text->starts_with(tokens_.bos))
    text->erase(0, tokens_.bos.size());
  return text;
}

}  // namespace flover
