#include "coordinator/openai/generation_options.h"

#include <limits>
#include <random>

#include <fmt/format.h>

#include "coordinator/openai/api_error.h"

namespace flover::openai {

namespace {

constexpr int kMaxStopStrings = 4;  // as OpenAI

void ReadStop(FieldReader& fields, const ServedModel& model, proto::StopParams* stop) {
  const nlohmann::json* value = fields.Find("stop");
  if (fields.error() || !value) return;
  std::vector<std::string> strings;
  if (value->is_string()) {
    strings.push_back(value->get<std::string>());
  } else if (value->is_array()) {
    if (value->size() > kMaxStopStrings)
      return fields.Fail("stop", fmt::format("stop may hold at most {} strings, got {}", kMaxStopStrings,
                                             value->size()));
    for (size_t i = 0; i < value->size(); ++i) {
      if (!(*value)[i].is_string())
        return fields.Fail("stop", fmt::format("stop[{}] must be a string, got {}", i, JsonKind((*value)[i])));
      strings.push_back((*value)[i].get<std::string>());
    }
  } else {
    return fields.Fail("stop", "stop must be a string or an array of strings, got " + JsonKind(*value));
  }
  for (std::string& s : strings)
    if (!s.empty()) stop->add_stop_strings(std::move(s));
  if (stop->stop_strings_size() > 0 && !model.tokenizer)
    fields.Fail("stop",
                "stop strings need the cluster's tokenizer (model.tokenizer in the cluster config), and this "
                "cluster has none");
}

}  // namespace

bool IsEmptyValue(const nlohmann::json& value) {
  return (value.is_string() || value.is_array() || value.is_object()) && value.empty();
}

void RefuseUnsupported(FieldReader& fields, const std::string& name, const std::string& why,
                       bool (*harmless)(const nlohmann::json&)) {
  const nlohmann::json* value = fields.Find(name);
  if (!value || harmless(*value)) return;
  fields.Fail(name, name + " is not supported by this server" + why);
}

std::optional<ApiError> ReadGenerationOptions(FieldReader& fields, const ServedModel& model,
                                              GenerationOptions* options) {
  if (const std::optional<std::string> name = fields.String("model"); name && *name != model.id)
    return ModelNotFound(*name, model.id);
  proto::SamplingParams& sampling = options->sampling;
  sampling.set_temperature(static_cast<float>(fields.Number("temperature", 0, 2).value_or(1.0)));
  sampling.set_top_p(static_cast<float>(fields.Number("top_p", 0, 1, /*min_exclusive=*/true).value_or(1.0)));
  const int64_t top_k = fields.Integer("top_k", -1, std::numeric_limits<int32_t>::max()).value_or(0);
  sampling.set_top_k(top_k < 0 ? 0 : static_cast<int32_t>(top_k));
  sampling.set_presence_penalty(static_cast<float>(fields.Number("presence_penalty", -2, 2).value_or(0)));
  sampling.set_frequency_penalty(static_cast<float>(fields.Number("frequency_penalty", -2, 2).value_or(0)));
  sampling.set_repetition_penalty(static_cast<float>(
      fields.Number("repetition_penalty", 0, std::numeric_limits<double>::max(), true).value_or(1.0)));
  options->seed = fields.Bits64("seed");
  options->n = static_cast<int>(fields.Integer("n", 1, model.max_n).value_or(1));
  options->stop.set_ignore_eos(fields.Bool("ignore_eos").value_or(false));
  (void)fields.String("user");  // accepted and ignored
  options->stream = fields.Bool("stream").value_or(false);
  ReadStop(fields, model, &options->stop);
  if (const nlohmann::json* value = fields.Find("stream_options"); value && !fields.error()) {
    if (!value->is_object()) {
      fields.Fail("stream_options", "stream_options must be an object, got " + JsonKind(*value));
    } else if (!options->stream) {
      fields.Fail("stream_options", "stream_options is only allowed when stream is true");
    } else {
      FieldReader nested(*value, "stream_options.");
      options->include_usage = nested.Bool("include_usage").value_or(false);
      if (nested.error()) return nested.error();
    }
  }
  RefuseUnsupported(fields, "logit_bias", " (token biases are not applied)", IsEmptyValue);
  return fields.error();
}

std::optional<ApiError> CheckChoiceCount(size_t n_prompts, int n, const ServedModel& model) {
  if (n_prompts * static_cast<size_t>(n) <= static_cast<size_t>(model.max_n)) return std::nullopt;
  return InvalidParam("n", fmt::format("this request asks for {} prompts x n={} = {} choices; this server allows at "
                                       "most {} per request (http.max_n)",
                                       n_prompts, n, n_prompts * static_cast<size_t>(n), model.max_n));
}

ExchangeSetup ExchangeSetupOf(const GenerationOptions& options, const ServedModel& model) {
  ExchangeSetup setup;
  setup.stream = options.stream;
  setup.include_usage = options.include_usage;
  setup.model_id = model.id;
  setup.tokenizer = model.tokenizer;
  return setup;
}

std::vector<proto::SubmitRequest> ExpandSubmits(const std::vector<proto::SubmitRequest>& prompts,
                                                const GenerationOptions& options, const ServedModel& model) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::vector<proto::SubmitRequest> submits;
  submits.reserve(prompts.size() * static_cast<size_t>(options.n));
  for (const proto::SubmitRequest& prompt : prompts) {
    for (int i = 0; i < options.n; ++i) {
      proto::SubmitRequest& submit = submits.emplace_back(prompt);
      *submit.mutable_sampling() = options.sampling;
      submit.mutable_sampling()->set_seed(options.seed ? *options.seed + static_cast<uint64_t>(i) : rng());
      *submit.mutable_stop() = options.stop;
      submit.set_stream(options.stream);
      submit.set_timeout_ms(model.request_timeout_ms);
    }
  }
  return submits;
}

}  // namespace flover::openai
