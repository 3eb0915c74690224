#include "client/run_command.h"

#include <omp.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "client/completion_output.h"
#include "common/cluster_config.h"
#include "common/token_stream_decoder.h"
#include "common/tokenizer.h"
#include "common/tokenizer_loader.h"
#include "worker/backend.h"
#include "worker/engine/engine.h"

namespace flover {
namespace {

namespace fs = std::filesystem;

struct PromptInput {
  std::string text;         // as given (empty for --prompt-ids)
  std::vector<int> tokens;  // what the engine runs
};

struct Output {
  uint64_t request_id = 0;
  std::vector<int> generated;
  FinishReason finish = FinishReason::kNone;
  bool streamed_header = false;
  TokenStreamDecoder text;  // when streaming: the text of `generated`
};

int Fail(const Status& status) {
  std::fprintf(stderr, "flover run: %s\n", status.ToString().c_str());
  return 1;
}

// --dtype into the backend's settings: the CPU's weight formats, or the CUDA storage
// type (fp16 for auto); the block formats are CPU only.
Status ApplyDType(const std::string& dtype, BackendConfig* backend) {
  Result<std::optional<WeightDType>> model_dtype = ParseModelDType(dtype);
  if (!model_dtype.ok()) return InvalidArgument("--dtype " + model_dtype.status().message());
  const std::optional<WeightDType> parsed = *model_dtype;
  if (backend->device == "cpu") {
    backend->cpu_weights = WeightPolicyFor(parsed);
    return Status::Ok();
  }
  if (!parsed) return Status::Ok();  // fp16
  const std::optional<DType> storage = StorageDType(*parsed);
  if (!storage)
    return InvalidArgument("--dtype " + dtype + " is a CPU weight format; " + backend->device +
                           " stores fp32, fp16 or bf16");
  backend->cuda_dtype = *storage;
  return Status::Ok();
}

// The tokenizer the user named, else one embedded in the model, else the one tokenizer
// file in the model's folder (tokenizer.json, tokenizer.bin, or a tok*.bin): the model
// folder itself (a Hugging Face folder), or the folder of the model file.
Result<std::optional<Tokenizer>> ResolveTokenizer(const RunOptions& o, std::optional<Tokenizer> embedded) {
  if (!o.tokenizer.empty()) {
    FLOVER_ASSIGN_OR_RETURN(Tokenizer t, LoadTokenizer(o.tokenizer));
    return std::optional<Tokenizer>(std::move(t));
  }
  if (embedded) return embedded;
  if (o.model.rfind("dummy:", 0) == 0) return std::optional<Tokenizer>();
  std::error_code ec;
  const fs::path dir = fs::is_directory(o.model, ec)               ? fs::path(o.model)
                       : fs::path(o.model).parent_path().empty() ? fs::path(".")
                                                                  : fs::path(o.model).parent_path();
  std::vector<fs::path> found;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name == "tokenizer.json" || name == "tokenizer.bin" ||
        (name.rfind("tok", 0) == 0 && entry.path().extension() == ".bin"))
      found.push_back(entry.path());
  }
  if (found.size() != 1) return std::optional<Tokenizer>();
  FLOVER_ASSIGN_OR_RETURN(Tokenizer t, LoadTokenizer(found[0].string()));
  return std::optional<Tokenizer>(std::move(t));
}

Result<std::vector<PromptInput>> CollectPrompts(const RunOptions& o, const std::optional<Tokenizer>& tokenizer) {
  std::vector<std::string> texts = o.prompts;
  if (!o.prompts_file.empty()) {
    std::ifstream in(o.prompts_file);
    if (!in) return NotFound("cannot open prompts file " + o.prompts_file);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) texts.push_back(line);
    }
  }
  std::vector<PromptInput> prompts;
  for (const std::string& text : texts) {
    if (!tokenizer)
      return InvalidArgument("model " + o.model + " has no tokenizer: pass --tokenizer FILE or use --prompt-ids");
    prompts.push_back({text, tokenizer->Encode(text, /*add_bos=*/true)});
  }
  for (const std::string& ids : o.prompt_ids) {
    std::vector<int> tokens;
    if (!ParseTokenIds(ids, &tokens))
      return InvalidArgument("--prompt-ids: '" + ids + "' is not a list of token ids (expected e.g. 1,301,295)");
    prompts.push_back({"", std::move(tokens)});
  }
  if (prompts.empty()) return InvalidArgument("no prompts: use --prompt, --prompts-file or --prompt-ids");
  return prompts;
}

std::string Decode(const std::optional<Tokenizer>& tokenizer, const PromptInput& p, const std::vector<int>& generated) {
  if (!tokenizer) {  // no vocabulary: show the ids
    std::string ids;
    for (int id : generated) {
      if (!ids.empty()) ids += ' ';
      ids += std::to_string(id);
    }
    return "[" + ids + "]";
  }
  return tokenizer->Decode(generated, p.tokens.empty() ? tokenizer->bos_id() : p.tokens.back());
}

}  // namespace

int RunCommand(const RunOptions& o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
  EngineConfig config;
  config.max_step_tokens = o.max_step_tokens;
  config.max_running = o.max_running;
  config.pipeline_depth = o.pipeline_depth;
  if (const std::optional<SchedulerPolicy> policy = SchedulerPolicyFromName(o.policy)) {
    config.policy = *policy;
  } else {
    return Fail(InvalidArgument("--policy '" + o.policy + "' is not one of fused, dynamic, instances, sequential"));
  }

  const auto t_load = std::chrono::steady_clock::now();
  BackendConfig backend;
  backend.device = o.device;
  backend.model = o.model;
  backend.dummy_seed = o.dummy_seed;
  backend.kv_block_size = o.block_size;
  backend.kv_memory_bytes = static_cast<int64_t>(o.kv_cache_mib * 1024 * 1024);
  backend.kv_max_sequences = o.max_running;  // a larger pool is never used
  backend.max_step_tokens = o.max_step_tokens;
  backend.max_rows = o.max_running;
  if (Status s = ApplyDType(o.dtype, &backend); !s.ok()) return Fail(s);
  if (!o.kv_dtype.empty()) {
    Result<DType> kv_dtype = ParseDType(o.kv_dtype);
    if (!kv_dtype.ok()) return Fail(InvalidArgument("--kv-dtype '" + o.kv_dtype + "' is not fp32, fp16 or bf16"));
    backend.kv_dtype = *kv_dtype;
  }
  Result<CreatedBackend> created = CreateBackend(backend);
  if (!created.ok()) return Fail(created.status());
  const ModelSpec spec = created->backend->spec();
  Result<std::optional<Tokenizer>> tokenizer = ResolveTokenizer(o, std::move(created->tokenizer));
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  // A model's embedding may have more rows than its tokenizer has ids (Qwen2 pads them).
  if (*tokenizer && tokenizer->value().vocab_size() > spec.vocab_size)
    return Fail(InvalidArgument("tokenizer has " + std::to_string(tokenizer->value().vocab_size()) +
                                " tokens but the model's vocabulary has " + std::to_string(spec.vocab_size)));
  Result<std::vector<PromptInput>> prompts = CollectPrompts(o, *tokenizer);
  if (!prompts.ok()) return Fail(prompts.status());

  Result<std::unique_ptr<Engine>> engine_or = Engine::Create(std::move(created->backend), config);
  if (!engine_or.ok()) return Fail(engine_or.status());
  Engine& engine = **engine_or;
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
  std::fprintf(stderr, "flover run: %s (%s), %d KV blocks of %d tokens, policy %s, loaded in %.2f s\n",
               created->description.c_str(), spec.ToString().c_str(), engine.n_blocks(), engine.block_size(),
               SchedulerPolicyName(config.policy), load_s);

  const std::vector<PromptInput>& inputs = *prompts;
  std::vector<Output> outputs(inputs.size());
  std::unordered_map<uint64_t, size_t> index_of;
  const bool stream = !o.json && inputs.size() == 1 && tokenizer->has_value();
  size_t n_admitted = 0, n_done = 0;
  int64_t n_steps = 0, n_fused_entries = 0, n_prompt_tokens = 0, n_generated = 0;
  std::vector<EngineEvent> events;
  const auto t_start = std::chrono::steady_clock::now();

  while (n_done < inputs.size()) {
    // Admission: everything at once, or one prompt every `stagger` steps.
    while (n_admitted < inputs.size() && (o.stagger == 0 || n_steps >= static_cast<int64_t>(n_admitted) * o.stagger)) {
      const PromptInput& p = inputs[n_admitted];
      RequestParams request{p.tokens, o.sampling, o.stop};
      request.sampling.seed = o.sampling.seed + n_admitted;
      Result<uint64_t> id = engine.Add(std::move(request));
      if (!id.ok()) {
        std::fprintf(stderr, "flover run: prompt %zu rejected: %s\n", n_admitted, id.status().ToString().c_str());
        outputs[n_admitted].finish = FinishReason::kError;
        ++n_done;
      } else {
        outputs[n_admitted].request_id = *id;
        if (stream) outputs[n_admitted].text = TokenStreamDecoder(tokenizer->value(), p.tokens.empty() ? -1 : p.tokens.back());
        index_of[*id] = n_admitted;
        n_prompt_tokens += static_cast<int64_t>(p.tokens.size());
      }
      ++n_admitted;
      if (o.stagger != 0) break;
    }
    events.clear();
    StepStats stats;
    if (Status s = engine.Step(&events, &stats); !s.ok()) return Fail(s);
    ++n_steps;
    n_fused_entries += stats.n_entries;
    for (const EngineEvent& e : events) {
      const size_t i = index_of.at(e.request_id);
      Output& out = outputs[i];
      if (e.token >= 0) {
        out.generated.push_back(e.token);
        ++n_generated;
        if (stream) {
          if (!out.streamed_header) std::fputs(inputs[i].text.c_str(), stdout), out.streamed_header = true;
          std::fputs(out.text.Push(e.token).c_str(), stdout);
          std::fflush(stdout);
        }
      }
      if (e.finish != FinishReason::kNone) {
        out.finish = e.finish;
        ++n_done;
        if (stream) std::fputs(out.text.Finish().c_str(), stdout);
        if (!o.json && !stream) {
          std::printf("--- [%zu] %s\n%s%s\n", i, FinishReasonName(e.finish), inputs[i].text.c_str(),
                      Decode(*tokenizer, inputs[i], out.generated).c_str());
          std::fflush(stdout);
        }
      }
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  if (stream) std::printf("\n");
  std::fflush(stdout);

  if (o.json) {
    for (size_t i = 0; i < inputs.size(); ++i) {
      const std::string text = *tokenizer ? Decode(*tokenizer, inputs[i], outputs[i].generated) : "";
      std::cout << CompletionJson(inputs[i].text, text, outputs[i].generated, FinishReasonName(outputs[i].finish),
                                  inputs[i].tokens.size())
                << "\n";
    }
    std::cout.flush();
  }
  std::fprintf(stderr,
               "flover run: %zu requests, %lld prompt + %lld generated tokens in %.3f s: %.1f generated tokens/s, "
               "%lld steps, %.1f requests per step\n",
               inputs.size(), static_cast<long long>(n_prompt_tokens), static_cast<long long>(n_generated), seconds,
               seconds > 0 ? n_generated / seconds : 0.0, static_cast<long long>(n_steps),
               n_steps > 0 ? static_cast<double>(n_fused_entries) / n_steps : 0.0);
  for (const Output& out : outputs)
    if (out.finish == FinishReason::kError) return 1;
  return 0;
}

}  // namespace flover
