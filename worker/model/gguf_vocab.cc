#include "worker/model/gguf_vocab.h"

#include <cstring>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/bpe_merges.h"
#include "common/normalizer.h"
#include "common/pretokenizer.h"
#include "common/unicode_regex.h"

namespace flover {
namespace {

// llama.cpp's token types (tokenizer.ggml.token_type).
constexpr int kTokenTypeControl = 3;
constexpr int kTokenTypeUserDefined = 4;

Result<std::vector<int32_t>> ReadTokenTypes(const GgufReader& r, size_t n_tokens) {
  const std::string key = "tokenizer.ggml.token_type";
  const GgufValue* v = r.Find(key);
  if (v == nullptr) return std::vector<int32_t>();
  if (v->type != GgufValueType::kArray ||
      (v->array_type != GgufValueType::kInt32 && v->array_type != GgufValueType::kUint32))
    return Corruption("metadata " + key + " must be an array of int32");
  if (v->array_size != n_tokens)
    return Corruption("metadata " + key + " has " + std::to_string(v->array_size) + " entries for " +
                      std::to_string(n_tokens) + " tokens");
  std::vector<int32_t> types(n_tokens);
  std::memcpy(types.data(), v->data.data(), n_tokens * sizeof(int32_t));
  return types;
}

// Control and user-defined tokens, found in text before encoding.
std::vector<AddedToken> AddedTokensOf(const std::vector<std::string>& tokens, const std::vector<int32_t>& types) {
  std::vector<AddedToken> added;
  for (size_t id = 0; id < types.size(); ++id) {
    if (types[id] != kTokenTypeControl && types[id] != kTokenTypeUserDefined) continue;
    AddedToken t;
    t.id = static_cast<int>(id);
    t.content = tokens[id];
    t.special = types[id] == kTokenTypeControl;
    added.push_back(std::move(t));
  }
  return added;
}

Result<bool> AddBos(const GgufReader& r, bool fallback) {
  const GgufValue* v = r.Find("tokenizer.ggml.add_bos_token");
  if (v == nullptr) return fallback;
  if (v->type != GgufValueType::kBool) return Corruption("metadata tokenizer.ggml.add_bos_token must be a bool");
  return v->i != 0;
}

// The pre-tokenizer (and normalizer) of a "gpt2" vocabulary, by tokenizer.ggml.pre.
Status ByteLevelPipeline(const GgufReader& r, BpeTokenizerParts* parts, bool* ignore_merges) {
  std::string pre = "default";
  if (const GgufValue* v = r.Find("tokenizer.ggml.pre")) {
    if (v->type != GgufValueType::kString) return Corruption("metadata tokenizer.ggml.pre must be a string");
    pre = v->str;
  }
  std::string_view pattern;
  if (pre == "default" || pre == "gpt-2" || pre == "gpt2") {
    pattern = kGpt2Pattern;
  } else if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
    pattern = kLlama3Pattern;
    *ignore_merges = true;
  } else if (pre == "qwen2") {
    pattern = kQwen2Pattern;
    parts->normalizer = MakeUnicodeNormalizer(UnicodeForm::kNfc);
  } else {
    return InvalidArgument("tokenizer.ggml.pre is \"" + pre +
                           "\", a pre-tokenizer Flover does not know; it reads \"default\", \"gpt-2\", "
                           "\"llama-bpe\", \"llama3\" and \"qwen2\" (or use the model's tokenizer.json)");
  }
  FLOVER_ASSIGN_OR_RETURN(UnicodeRegex regex, UnicodeRegex::Compile(pattern));
  parts->pre_tokenizer = MakeSequencePreTokenizer(
      {MakeSplitPreTokenizer(std::move(regex), SplitBehavior::kIsolated, /*invert=*/false),
       MakeByteLevelPreTokenizer(/*add_prefix_space=*/false, /*use_regex=*/false)});
  DecoderStep byte_level;
  byte_level.kind = DecoderStep::Kind::kByteLevel;
  parts->decoder = {std::move(byte_level)};
  return Status::Ok();
}

Result<Tokenizer> ReadByteLevelVocab(const GgufReader& r, const ModelSpec& spec, const std::vector<std::string>& tokens,
                                     const std::vector<int32_t>& types) {
  const GgufValue* merges_value = r.Find("tokenizer.ggml.merges");
  if (merges_value == nullptr) return Corruption("metadata tokenizer.ggml.merges is missing (a \"gpt2\" vocabulary needs it)");
  if (merges_value->type != GgufValueType::kArray || merges_value->array_type != GgufValueType::kString)
    return Corruption("metadata tokenizer.ggml.merges must be an array of strings");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(merges_value->strings.size());
  for (size_t i = 0; i < merges_value->strings.size(); ++i) {
    const std::string& m = merges_value->strings[i];
    const size_t space = m.find(' ');
    if (space == std::string::npos || m.find(' ', space + 1) != std::string::npos)
      return Corruption("tokenizer.ggml.merges[" + std::to_string(i) + "] is \"" + m.substr(0, 64) +
                        "\"; a merge is two tokens with one space between them");
    merges.emplace_back(m.substr(0, space), m.substr(space + 1));
  }

  BpeTokenizerParts parts;
  bool ignore_merges = false;
  FLOVER_RETURN_IF_ERROR(ByteLevelPipeline(r, &parts, &ignore_merges));
  std::unordered_map<std::string, int> vocab;
  vocab.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) vocab.emplace(tokens[id], static_cast<int>(id));  // first id wins
  BpeOptions options;
  options.ignore_merges = ignore_merges;
  Result<BpeModel> model = BpeModel::Build(std::move(vocab), merges, std::move(options));
  if (!model.ok()) return Corruption("tokenizer.ggml.merges: " + model.status().message());
  parts.model = std::make_shared<const BpeModel>(std::move(model).value());
  parts.added_tokens = AddedTokensOf(tokens, types);
  // The model's ids when the keys are there (ModelSpec's defaults 1 and 2 are llama's).
  parts.bos_id = r.Find("tokenizer.ggml.bos_token_id") ? spec.bos_id : -1;
  parts.eos_id = r.Find("tokenizer.ggml.eos_token_id") ? spec.eos_id : -1;
  FLOVER_ASSIGN_OR_RETURN(parts.add_bos, AddBos(r, /*fallback=*/false));
  if (parts.add_bos && parts.bos_id < 0)
    return Corruption("tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing");
  return Tokenizer::FromBpe(std::move(parts));
}

}  // namespace

Result<std::optional<Tokenizer>> ReadGgufVocab(const GgufReader& r, const ModelSpec& spec) {
  const GgufValue* tokens = r.Find("tokenizer.ggml.tokens");
  if (tokens == nullptr) return std::optional<Tokenizer>();
  std::string model = "llama";
  if (const GgufValue* m = r.Find("tokenizer.ggml.model")) {
    if (m->type != GgufValueType::kString) return Corruption("metadata tokenizer.ggml.model must be a string");
    model = m->str;
  }
  if (model != "llama" && model != "gpt2")
    return InvalidArgument("tokenizer.ggml.model is \"" + model +
                           "\"; Flover reads \"llama\" (SentencePiece) and \"gpt2\" (byte-level BPE) vocabularies");
  if (tokens->type != GgufValueType::kArray || tokens->array_type != GgufValueType::kString)
    return Corruption("metadata tokenizer.ggml.tokens must be an array of strings");
  if (tokens->strings.size() != static_cast<size_t>(spec.vocab_size))
    return Corruption("tokenizer.ggml.tokens has " + std::to_string(tokens->strings.size()) +
                      " tokens but token_embd.weight has " + std::to_string(spec.vocab_size) + " rows");
  if (tokens->strings.size() > static_cast<size_t>(kMaxTokenizerVocab))
    return InvalidArgument("tokenizer.ggml.tokens has " + std::to_string(tokens->strings.size()) +
                           " tokens; at most " + std::to_string(kMaxTokenizerVocab) + " are read");
  FLOVER_ASSIGN_OR_RETURN(const std::vector<int32_t> types, ReadTokenTypes(r, tokens->strings.size()));

  if (model == "gpt2") {
    Result<Tokenizer> tok = ReadByteLevelVocab(r, spec, tokens->strings, types);
    if (!tok.ok()) return tok.status().WithContext("embedded vocabulary");
    return std::optional<Tokenizer>(std::move(tok).value());
  }
  std::vector<float> scores(tokens->strings.size(), 0.0f);
  if (const GgufValue* s = r.Find("tokenizer.ggml.scores")) {
    FLOVER_ASSIGN_OR_RETURN(scores, r.FloatArray("tokenizer.ggml.scores", *s));
    if (scores.size() != tokens->strings.size())
      return Corruption("tokenizer.ggml.scores has " + std::to_string(scores.size()) + " entries for " +
                        std::to_string(tokens->strings.size()) + " tokens");
  }
  Result<Tokenizer> tok = Tokenizer::FromPieces(tokens->strings, std::move(scores), spec.bos_id, spec.eos_id,
                                                AddedTokensOf(tokens->strings, types));
  if (!tok.ok()) return tok.status().WithContext("embedded vocabulary");
  return std::optional<Tokenizer>(std::move(tok).value());
}

}  // namespace flover
