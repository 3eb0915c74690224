#include "client/generate_command.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>

#include "client/chat_prompts.h"
#include "client/client.h"
#include "client/completion_output.h"
#include "client/interrupt_flag.h"
#include "client/request_session.h"
#include "common/protocol.h"
#include "common/utf8.h"

namespace flover {
namespace {

using namespace std::chrono_literals;

// How often the loop looks at the interrupt flag when no reply comes.
constexpr std::chrono::milliseconds kPollInterval = 200ms;
// Characters of a bad flag value quoted in its error.
constexpr size_t kQuotedChars = 40;

struct Prompt {
  std::string text;  // what is sent
  std::vector<int> ids;
  std::string shown;  // printed before the completion in text output
};

// The prompts of the flags, or the exit status of a bad flag (its message printed).
std::optional<int> ReadPrompts(const GenerateOptions& o, std::vector<Prompt>* prompts) {
  // The protocol carries text as proto3 strings, which must be valid UTF-8.
  auto bad_text = [](const char* flag, const std::string& value) {
    std::fprintf(stderr,
                 "flover generate: %s '%s' is not valid UTF-8 text (shown with U+FFFD); the cluster takes UTF-8 "
                 "only%s\n",
                 flag, ToValidUtf8(value.substr(0, kQuotedChars)).c_str(),
                 std::string(flag) == "--prompt" ? ": pass token ids with --prompt-ids instead" : "");
    return 2;
  };
  for (const std::string& p : o.prompts) {
    if (ToValidUtf8(p) != p) return bad_text("--prompt", p);
    prompts->push_back({p, {}, o.chat ? "" : p});
  }
  if (ToValidUtf8(o.system) != o.system) return bad_text("--system", o.system);
  if (!o.system.empty() && !o.chat) {
    std::fprintf(stderr, "flover generate: --system needs --chat\n");
    return 2;
  }
  if (o.chat && !o.prompt_ids.empty()) {
    std::fprintf(stderr, "flover generate: --chat renders --prompt texts; it cannot take --prompt-ids\n");
    return 2;
  }
  for (const std::string& s : o.stop.stop_strings) {
    if (ToValidUtf8(s) != s) return bad_text("--stop", s);
  }
  for (const std::string& ids : o.prompt_ids) {
    Prompt p;
    if (!ParseTokenIds(ids, &p.ids)) {
      std::fprintf(stderr, "flover generate: --prompt-ids: '%s' is not a list of token ids\n",
                   ToValidUtf8(ids.substr(0, kQuotedChars)).c_str());
      return 2;
    }
    prompts->push_back(std::move(p));
  }
  if (prompts->empty()) {
    std::fprintf(stderr, "flover generate: no prompts: use --prompt or --prompt-ids\n");
    return 2;
  }
  return std::nullopt;
}

// The --json object of a request that ended.
nlohmann::json EndObject(const RequestRecord& r, const std::string& prompt) {
  nlohmann::json j = CompletionObject(prompt, r.text, r.tokens, r.finish, static_cast<size_t>(r.prompt_tokens));
  if (r.failed()) j["error"] = r.ErrorString();
  return j;
}

// One NDJSON line of --stream --json.
void PrintEvent(const SessionEvent& e, const std::string& prompt) {
  const RequestRecord& r = e.request;
  nlohmann::json j;
  if (e.kind == SessionEventKind::kTokens) {
    j["event"] = "token";
    j["index"] = r.index;
    j["tokens"] = std::vector<int>(r.streamed.end() - e.n_tokens, r.streamed.end());
    j["text"] = e.text;
  } else {
    j = EndObject(r, prompt);
    j["event"] = "done";
    j["index"] = r.index;
  }
  std::cout << JsonLine(j) << "\n" << std::flush;
}

}  // namespace

// With --chat: each prompt's text rendered as a conversation, and the stop strings
// that end the assistant's turn; the exit status of a failure (its message printed).
std::optional<int> RenderChat(const GenerateOptions& o, std::optional<ChatTemplate> chat_template, Client& client,
                              std::vector<Prompt>* prompts, StopParams* stop) {
  if (!chat_template) {
    const Result<proto::ClusterStatus> status =
        client.FetchStatus(std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
    if (!status.ok()) {
      std::fprintf(stderr, "flover generate: --chat: the cluster's status: %s\n", status.status().ToString().c_str());
      return 1;
    }
    Result<ChatTemplate> own = ChatTemplateOfModel(status->model());
    if (!own.ok()) {
      std::fprintf(stderr, "flover generate: --chat: %s\n", own.status().message().c_str());
      return 1;
    }
    chat_template = std::move(own).value();
  }
  std::vector<std::string> texts;
  for (const Prompt& p : *prompts) texts.push_back(p.text);
  Result<std::vector<std::string>> rendered = RenderChatPrompts(*chat_template, texts, o.system);
  if (!rendered.ok()) {
    std::fprintf(stderr, "flover generate: --chat: %s\n", rendered.status().message().c_str());
    return 1;
  }
  for (size_t i = 0; i < prompts->size(); ++i) (*prompts)[i].text = std::move((*rendered)[i]);
  for (const std::string& end : chat_template->end_of_turn()) stop->stop_strings.push_back(end);
  return std::nullopt;
}

int GenerateCommand(const GenerateOptions& o) {
  std::vector<Prompt> prompts;
  if (std::optional<int> bad = ReadPrompts(o, &prompts)) return *bad;
  std::optional<ChatTemplate> chat_template;
  if (o.chat && !o.chat_template.empty()) {
    Result<ChatTemplate> named = ChatTemplateOfFlag(o.chat_template);
    if (!named.ok()) {
      std::fprintf(stderr, "flover generate: %s\n", named.status().message().c_str());
      return 2;
    }
    chat_template = std::move(named).value();
  } else if (!o.chat_template.empty()) {
    std::fprintf(stderr, "flover generate: --chat-template needs --chat\n");
    return 2;
  }
  const InterruptFlag interrupt;  // Ctrl-C: the session cancels what is in flight
  Result<std::unique_ptr<Client>> client = ConnectWithKeys(o.endpoint, o.keys);
  if (client.ok()) {
    const Status connected =
        (*client)->WaitConnected(std::chrono::milliseconds(static_cast<int64_t>(o.connect_timeout_s * 1000)));
    if (!connected.ok()) client = connected;
  }
  if (!client.ok()) {
    const Status& s = client.status();
    std::fprintf(stderr, "flover generate: %s%s\n", s.ToString().c_str(),
                 s.code() == StatusCode::kUnavailable ? " (--connect-timeout S waits longer)" : "");
    return interrupt.raised() ? 130 : 1;
  }
  StopParams stop = o.stop;
  if (o.chat) {
    if (std::optional<int> failed = RenderChat(o, std::move(chat_template), **client, &prompts, &stop))
      return interrupt.raised() ? 130 : *failed;
  }
  RequestSessionOptions session_options;
  session_options.silence_timeout_s = o.timeout_s;
  session_options.interrupted = interrupt.predicate();
  RequestSession session(**client, session_options);

  // Request i has the id "i" (session index i).
  const bool stream_text = !o.json && prompts.size() == 1;
  const bool stream_json = o.json && o.stream;
  bool prompt_shown = false;
  session.OnEvent([&](const SessionEvent& e) {
    const RequestRecord& r = e.request;
    const std::string& prompt = prompts[r.index].text;
    const std::string& shown = prompts[r.index].shown;
    if (e.kind == SessionEventKind::kError)
      std::fprintf(stderr, "flover generate: prompt %zu: %s\n", r.index, r.ErrorString().c_str());
    if (stream_json) {
      if (e.kind != SessionEventKind::kAccepted) PrintEvent(e, prompt);
    } else if (e.kind == SessionEventKind::kTokens && stream_text) {
      if (!prompt_shown) std::fputs(shown.c_str(), stdout);
      prompt_shown = true;
      std::fwrite(e.text.data(), 1, e.text.size(), stdout);
      std::fflush(stdout);
    } else if (e.kind == SessionEventKind::kDone && !o.json && !stream_text) {
      std::printf("--- [%zu] %s\n%s%s\n", r.index, r.finish.c_str(), shown.c_str(), r.text.c_str());
      std::fflush(stdout);
    }
  });
  session.OnUnmatchedError([](const proto::Error& e) {
    std::fprintf(stderr, "flover generate: %s: %s\n", e.code().c_str(), e.message().c_str());
  });

  for (size_t i = 0; i < prompts.size(); ++i) {
    SessionRequest q;
    q.id = std::to_string(i);
    q.text = prompts[i].text;
    q.token_ids = prompts[i].ids;
    q.sampling = o.sampling;
    q.sampling.seed += i;
    q.stop = stop;
    q.stream = o.stream || !o.json;
    q.deadline = std::chrono::milliseconds(static_cast<int64_t>(o.deadline_s * 1000));
    if (Status s = session.Submit(q); !s.ok()) {
      if (session.interrupted()) break;  // what was sent is cancelled; its completions follow
      std::fprintf(stderr, "flover generate: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  while (session.in_flight() > 0) {
    const Status s = session.Poll(kPollInterval);
    // A closed connection was reported with each request it ended.
    if (s.code() == StatusCode::kDeadlineExceeded) {
      std::fprintf(stderr, "flover generate: no reply from %s for %.0f s; is the cluster up? (flover status)\n",
                   o.endpoint.c_str(), o.timeout_s);
    } else if (!s.ok() && s.code() != StatusCode::kUnavailable) {
      std::fprintf(stderr, "flover generate: %s\n", s.ToString().c_str());
    }
  }
  if (stream_text) std::printf("\n");
  int exit_code = 0;
  for (const RequestRecord& r : session.records()) {
    if (r.failed()) exit_code = 1;
    if (o.json && !stream_json) std::cout << JsonLine(EndObject(r, prompts[r.index].text)) << "\n";
  }
  std::cout.flush();
  return interrupt.raised() ? 130 : exit_code;
}

}  // namespace flover
