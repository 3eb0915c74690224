#include "client/generate_command.h"

#include <chrono>
#include <cstdio>
#include <iostream>

#include "client/client.h"
#include "client/completion_output.h"
#include "client/interrupt_flag.h"
#include "client/request_session.h"
#include "common/protocol.h"

namespace flover {
namespace {

using namespace std::chrono_literals;

// How often the loop looks at the interrupt flag when no reply comes.
constexpr std::chrono::milliseconds kPollInterval = 200ms;

struct Prompt {
  std::string text;
  std::vector<int> ids;
};

}  // namespace

int GenerateCommand(const GenerateOptions& o) {
  std::vector<Prompt> prompts;
  for (const std::string& p : o.prompts) prompts.push_back({p, {}});
  for (const std::string& ids : o.prompt_ids) {
    Prompt p;
    if (!ParseTokenIds(ids, &p.ids)) {
      std::fprintf(stderr, "flover generate: --prompt-ids: '%s' is not a list of token ids\n", ids.c_str());
      return 2;
    }
    prompts.push_back(std::move(p));
  }
  if (prompts.empty()) {
    std::fprintf(stderr, "flover generate: no prompts: use --prompt or --prompt-ids\n");
    return 2;
  }
  Result<std::unique_ptr<Client>> client = ConnectWithKeys(o.endpoint, o.keys);
  if (!client.ok()) {
    std::fprintf(stderr, "flover generate: %s\n", client.status().ToString().c_str());
    return 1;
  }
  const InterruptFlag interrupt;  // Ctrl-C: the session cancels what is in flight
  RequestSessionOptions session_options;
  session_options.silence_timeout_s = o.timeout_s;
  session_options.interrupted = interrupt.predicate();
  RequestSession session(**client, session_options);

  // Request i has the id "i" (session index i).
  const bool stream_text = !o.json && prompts.size() == 1;
  bool prompt_shown = false;
  session.OnEvent([&](const SessionEvent& e) {
    const RequestRecord& r = e.request;
    const std::string& prompt = prompts[r.index].text;
    if (e.kind == SessionEventKind::kTokens && stream_text) {
      if (!prompt_shown) std::fputs(prompt.c_str(), stdout);
      prompt_shown = true;
      std::fwrite(e.text.data(), 1, e.text.size(), stdout);
      std::fflush(stdout);
    } else if (e.kind == SessionEventKind::kDone && !o.json && !stream_text) {
      std::printf("--- [%zu] %s\n%s%s\n", r.index, r.finish.c_str(), prompt.c_str(), r.text.c_str());
      std::fflush(stdout);
    } else if (e.kind == SessionEventKind::kError) {
      std::fprintf(stderr, "flover generate: prompt %zu: %s\n", r.index, r.ErrorString().c_str());
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
    q.stop = o.stop;
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
    if (o.json)
      std::cout << CompletionJson(prompts[r.index].text, r.text, r.tokens, r.finish,
                                  static_cast<size_t>(r.prompt_tokens))
                << "\n";
  }
  std::cout.flush();
  return interrupt.raised() ? 130 : exit_code;
}

}  // namespace flover
