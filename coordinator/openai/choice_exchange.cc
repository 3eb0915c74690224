#include "coordinator/openai/choice_exchange.h"

#include <algorithm>
#include <map>

#include "common/check.h"
#include "coordinator/openai/api_error.h"
#include "coordinator/openai/json_output.h"

namespace flover::openai {

namespace {

struct ChoiceState {
  ChoiceSetup setup;
  bool accepted = false;
  bool opened = false;  // stream: its opening chunk was written
  bool done = false;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  size_t text_offset = 0;  // bytes of text shown so far (echo included)
  std::string finish_reason;
};

const char* FinishReasonText(proto::FinishReason reason) {
  switch (reason) {
    case proto::FINISH_STOP: return "stop";
    case proto::FINISH_LENGTH: return "length";
    default: return nullptr;
  }
}

class ChoiceExchange final : public Exchange {
 public:
  explicit ChoiceExchange(ExchangeSetup setup)
      : setup_(std::move(setup)), id_(NewResponseId(setup_.format->id_prefix())), created_(UnixNow()) {
    FLOVER_CHECK(!setup_.choices.empty() && setup_.choices.size() == setup_.submits.size())
        << setup_.choices.size() << " choices, " << setup_.submits.size() << " submits";
    for (const ChoiceSetup& c : setup_.choices) {
      FLOVER_CHECK(c.prompt_index < setup_.n_prompts) << c.prompt_index << " of " << setup_.n_prompts;
      ChoiceState& choice = choices_.emplace_back();
      choice.setup = c;
      choice.text_offset = c.echo.size();
    }
  }

  std::vector<proto::SubmitRequest> TakeSubmits() override { return std::move(setup_.submits); }

  Output OnReply(size_t index, const proto::ServerMessage& reply) override {
    if (finished_ || index >= choices_.size()) return {};
    ChoiceState& choice = choices_[index];
    switch (reply.body_case()) {
      case proto::ServerMessage::kAccepted: return OnAccepted(choice, reply.accepted());
      case proto::ServerMessage::kToken: return OnToken(index, choice, reply.token());
      case proto::ServerMessage::kDone: return OnDone(index, choice, reply.done());
      case proto::ServerMessage::kError: return Fail(ErrorFromCore(reply.error()));
      default: return {};
    }
  }

 private:
  Output OnAccepted(ChoiceState& choice, const proto::Accepted& accepted) {
    choice.accepted = true;
    choice.prompt_tokens = accepted.prompt_tokens();
    Output out;
    if (setup_.stream && !head_sent_ &&
        std::all_of(choices_.begin(), choices_.end(), [](const ChoiceState& c) { return c.accepted; })) {
      StartStream(&out);
      for (size_t i = 0; i < choices_.size(); ++i) OpenChoice(i, &out);
    }
    return out;
  }

  Output OnToken(size_t index, ChoiceState& choice, const proto::TokenEvent& event) {
    if (!setup_.stream || choice.done) return {};
    std::vector<LogprobEntry> entries;
    if (setup_.logprobs && !event.tokens().empty()) {
      if (event.logprobs_size() != event.tokens_size()) return MissingLogprobs();
      entries = LogprobEntries(setup_.tokenizer, event.tokens(), event.logprobs(), &choice.setup.prev_token,
                               &choice.text_offset);
    }
    if (event.text().empty() && entries.empty()) return {};
    Output out;
    StartStream(&out);
    OpenChoice(index, &out);
    out.bytes += Chunk(setup_.format->DeltaChoice(static_cast<int>(index), event.text(),
                                                  entries.empty() ? nullptr : &entries));
    return out;
  }

  Output OnDone(size_t index, ChoiceState& choice, const proto::Done& done) {
    const char* reason = FinishReasonText(done.finish_reason());
    if (!reason)
      return Fail(ApiError{.status = 500, .type = "server_error",
                           .message = std::string("the cluster ended the request without completing it (") +
                                      proto::FinishReason_Name(done.finish_reason()) + ")",
                           .param = "", .code = ""});
    choice.done = true;
    choice.finish_reason = reason;
    choice.prompt_tokens = done.prompt_tokens();
    choice.completion_tokens = done.completion_tokens();
    const bool all_done = std::all_of(choices_.begin(), choices_.end(), [](const ChoiceState& c) { return c.done; });
    if (!setup_.stream) {
      if (setup_.logprobs && done.logprobs_size() != done.tokens_size()) return MissingLogprobs();
      whole_[index] = WholeChoice(index, choice, done);
      return all_done ? WholeResponse() : Output{};
    }
    Output out;
    StartStream(&out);
    OpenChoice(index, &out);
    out.bytes += Chunk(setup_.format->FinishChoice(static_cast<int>(index), reason));
    if (all_done) {
      if (setup_.include_usage) {
        Json usage = Envelope(setup_.format->chunk_object());
        usage["choices"] = Json::array();
        usage["usage"] = Usage();
        out.bytes += SseEvent(usage);
      }
      out.bytes += kSseDone;
      out.done = finished_ = true;
    }
    return out;
  }

  Json WholeChoice(size_t index, ChoiceState& choice, const proto::Done& done) {
    std::vector<LogprobEntry> entries;
    if (setup_.logprobs)
      entries = LogprobEntries(setup_.tokenizer, done.tokens(), done.logprobs(), &choice.setup.prev_token,
                               &choice.text_offset);
    return setup_.format->WholeChoice(static_cast<int>(index), choice.setup.echo + done.text(),
                                      setup_.logprobs ? &entries : nullptr, choice.finish_reason);
  }

  Output WholeResponse() {
    Json body = Envelope(setup_.format->object());
    Json choices = Json::array();
    for (size_t i = 0; i < choices_.size(); ++i) choices.push_back(std::move(whole_.at(i)));
    body["choices"] = std::move(choices);
    body["usage"] = Usage();
    finished_ = true;
    return Output{.head_status = 200, .content_type = "application/json", .bytes = DumpJson(body), .done = true};
  }

  Output MissingLogprobs() {
    return Fail(ApiError{.status = 500, .type = "server_error",
                         .message = "log-probabilities were asked for, but the cluster's replies carry none (are the "
                                    "coordinator and workers of the same version?)",
                         .param = "", .code = ""});
  }

  Output Fail(const ApiError& error) {
    finished_ = true;
    if (!head_sent_)
      return Output{.head_status = error.status, .content_type = "application/json", .bytes = ErrorBody(error),
                    .done = true};
    return Output{.head_status = std::nullopt, .content_type = "",
                  .bytes = "data: " + ErrorBody(error) + "\n\n" + std::string(kSseDone), .done = true};
  }

  void StartStream(Output* out) {
    if (head_sent_) return;
    head_sent_ = true;
    out->head_status = 200;
    out->content_type = "text/event-stream";
  }

  void OpenChoice(size_t index, Output* out) {
    ChoiceState& choice = choices_[index];
    if (choice.opened) return;
    choice.opened = true;
    if (std::optional<Json> open = setup_.format->OpenChoice(static_cast<int>(index), choice.setup.echo))
      out->bytes += Chunk(std::move(*open));
  }

  // A stream event holding one chunk choice.
  std::string Chunk(Json choice) {
    Json chunk = Envelope(setup_.format->chunk_object());
    chunk["choices"] = Json::array({std::move(choice)});
    if (setup_.include_usage) chunk["usage"] = nullptr;
    return SseEvent(chunk);
  }

  Json Envelope(const char* object) const {
    return Json{{"id", id_}, {"object", object}, {"created", created_}, {"model", setup_.model_id}};
  }

  Json Usage() const {
    std::vector<int> prompt_tokens(setup_.n_prompts, 0);
    int completion_tokens = 0;
    for (const ChoiceState& c : choices_) {
      int& p = prompt_tokens[c.setup.prompt_index];
      p = std::max(p, c.prompt_tokens);
      completion_tokens += c.completion_tokens;
    }
    int prompt_total = 0;
    for (int p : prompt_tokens) prompt_total += p;
    return Json{{"prompt_tokens", prompt_total},
                {"completion_tokens", completion_tokens},
                {"total_tokens", prompt_total + completion_tokens}};
  }

  ExchangeSetup setup_;
  const std::string id_;
  const int64_t created_;
  std::vector<ChoiceState> choices_;
  std::map<size_t, Json> whole_;  // non-streaming: finished choices
  bool head_sent_ = false;
  bool finished_ = false;
};

}  // namespace

std::unique_ptr<Exchange> MakeChoiceExchange(ExchangeSetup setup) {
  return std::make_unique<ChoiceExchange>(std::move(setup));
}

}  // namespace flover::openai
