#include "client/generate_command.h"

#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>

#include "client/client.h"
#include "client/completion_output.h"
#include "common/protocol.h"

namespace flover {
namespace {

volatile std::sig_atomic_t g_interrupted = 0;
void OnInterrupt(int) { g_interrupted = 1; }

struct Pending {
  std::string prompt;
  std::vector<int> ids;
  int prompt_tokens = 0;
  std::vector<int> tokens;
  std::string text;
  std::string finish;   // empty while in flight
  std::string error;
};

}  // namespace

int GenerateCommand(const GenerateOptions& o) {
  std::vector<Pending> requests;
  for (const std::string& p : o.prompts) requests.push_back({p, {}, 0, {}, "", "", ""});
  for (const std::string& ids : o.prompt_ids) {
    Pending p;
    if (!ParseTokenIds(ids, &p.ids)) {
      std::fprintf(stderr, "flover generate: --prompt-ids: '%s' is not a list of token ids\n", ids.c_str());
      return 2;
    }
    requests.push_back(std::move(p));
  }
  if (requests.empty()) {
    std::fprintf(stderr, "flover generate: no prompts: use --prompt or --prompt-ids\n");
    return 2;
  }
  Result<std::unique_ptr<Client>> client = Client::Connect(o.endpoint);
  if (!client.ok()) {
    std::fprintf(stderr, "flover generate: %s\n", client.status().ToString().c_str());
    return 1;
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    SamplingParams sampling = o.sampling;
    sampling.seed += i;
    Status s = (*client)->Submit(std::to_string(i), requests[i].prompt, requests[i].ids, sampling, o.stop,
                                 o.stream || !o.json,
                                 std::chrono::milliseconds(static_cast<int64_t>(o.deadline_s * 1000)));
    if (!s.ok()) {
      std::fprintf(stderr, "flover generate: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  std::signal(SIGINT, OnInterrupt);
  std::signal(SIGTERM, OnInterrupt);
  const bool stream_text = !o.json && requests.size() == 1;
  size_t n_done = 0;
  bool cancel_sent = false;
  auto last_reply = std::chrono::steady_clock::now();
  while (n_done < requests.size()) {
    if (g_interrupted && !cancel_sent) {
      for (size_t i = 0; i < requests.size(); ++i)
        if (requests[i].finish.empty()) (void)(*client)->Cancel(std::to_string(i));
      cancel_sent = true;
    }
    Result<std::optional<proto::ServerMessage>> reply = (*client)->Receive(std::chrono::milliseconds(200));
    if (!reply.ok()) {
      std::fprintf(stderr, "flover generate: %s\n", reply.status().ToString().c_str());
      return 1;
    }
    if (!*reply) {
      const double silent = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_reply).count();
      if (silent > o.timeout_s) {
        std::fprintf(stderr, "flover generate: no reply from %s for %.0f s; is the cluster up? (flover status)\n",
                     o.endpoint.c_str(), silent);
        return 1;
      }
      continue;
    }
    last_reply = std::chrono::steady_clock::now();
    const proto::ServerMessage& m = **reply;
    std::string id;
    if (m.has_accepted()) id = m.accepted().client_request_id();
    if (m.has_token()) id = m.token().client_request_id();
    if (m.has_done()) id = m.done().client_request_id();
    if (m.has_error()) id = m.error().client_request_id();
    size_t i = 0;
    try {
      i = std::stoul(id);
    } catch (const std::exception&) {
      i = requests.size();
    }
    if (i >= requests.size()) {
      if (m.has_error()) std::fprintf(stderr, "flover generate: %s: %s\n", m.error().code().c_str(), m.error().message().c_str());
      continue;
    }
    Pending& p = requests[i];
    if (!p.finish.empty()) continue;
    if (m.has_accepted()) {
      p.prompt_tokens = m.accepted().prompt_tokens();
    } else if (m.has_token()) {
      if (stream_text) {
        if (p.tokens.empty()) std::fputs(p.prompt.c_str(), stdout);
        std::fputs(m.token().text().c_str(), stdout);
        std::fflush(stdout);
      }
      p.tokens.insert(p.tokens.end(), m.token().tokens().begin(), m.token().tokens().end());
    } else if (m.has_done()) {
      const proto::Done& d = m.done();
      p.tokens.assign(d.tokens().begin(), d.tokens().end());
      p.text = d.text();
      p.prompt_tokens = d.prompt_tokens();
      p.finish = FinishReasonName(FromProto(d.finish_reason()));
      ++n_done;
      if (!o.json && !stream_text) {
        std::printf("--- [%zu] %s\n%s%s\n", i, p.finish.c_str(), p.prompt.c_str(), p.text.c_str());
        std::fflush(stdout);
      }
    } else if (m.has_error()) {
      p.error = m.error().code() + ": " + m.error().message();
      p.finish = "error";
      ++n_done;
      std::fprintf(stderr, "flover generate: prompt %zu: %s\n", i, p.error.c_str());
    }
  }
  if (stream_text) std::printf("\n");
  int exit_code = 0;
  for (const Pending& p : requests) {
    if (!p.error.empty()) exit_code = 1;
    if (o.json)
      std::cout << CompletionJson(p.prompt, p.text, p.tokens, p.finish, static_cast<size_t>(p.prompt_tokens)) << "\n";
  }
  std::cout.flush();
  return g_interrupted ? 130 : exit_code;
}

}  // namespace flover
