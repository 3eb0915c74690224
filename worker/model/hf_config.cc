#include "worker/model/hf_config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

namespace flover {
namespace {

using Json = nlohmann::json;

constexpr const char* kConfig = "config.json";
constexpr const char* kGenerationConfig = "generation_config.json";
constexpr const char* kTokenizerConfig = "tokenizer_config.json";

enum class Arch : uint8_t { kLlama, kMistral, kQwen2, kGptj };

struct ArchName {
  const char* architecture;  // config.json "architectures"
  const char* model_type;    // config.json "model_type"
  const char* spec_name;     // ModelSpec::arch
  Arch arch;
};
constexpr ArchName kArchs[] = {
    {"LlamaForCausalLM", "llama", "llama", Arch::kLlama},
    {"MistralForCausalLM", "mistral", "mistral", Arch::kMistral},
    {"Qwen2ForCausalLM", "qwen2", "qwen2", Arch::kQwen2},
    {"GPTJForCausalLM", "gptj", "gptj", Arch::kGptj},
};

Result<Json> ParseObject(std::string_view text, const char* file) {
  Json j;
  try {
    j = Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    return Corruption(std::string(file) + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) return Corruption(std::string(file) + ": not a JSON object");
  return j;
}

// Typed reads of one JSON object's fields; messages name the file and the field. A
// field that is null counts as absent (transformers writes null for "not set").
class Fields {
 public:
  Fields(const Json& j, const char* file) : j_(j), file_(file) {}

  const Json* Get(const std::string& key) const {
    const auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  bool Has(const std::string& key) const { return Get(key) != nullptr; }
  // Present and null (as opposed to absent).
  bool IsNull(const std::string& key) const {
    const auto it = j_.find(key);
    return it != j_.end() && it->is_null();
  }

  Status Error(const std::string& key, const std::string& what) const {
    return Corruption(std::string(file_) + ": " + key + " " + what);
  }

  Result<int> Int(const std::string& key, std::optional<int> fallback = std::nullopt) const {
    const Json* v = Get(key);
    if (v == nullptr) {
      if (fallback) return *fallback;
      return Error(key, "is missing");
    }
    return IntValue(key, *v);
  }
  Result<int> IntValue(const std::string& key, const Json& v) const {
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(INT_MAX)) return Error(key, "= " + v.dump() + " is out of range");
      return static_cast<int>(v.get<uint64_t>());
    }
    if (!v.is_number_integer()) return Error(key, "must be an integer, got " + v.dump());
    if (v.get<int64_t>() < INT_MIN || v.get<int64_t>() > INT_MAX) return Error(key, "= " + v.dump() + " is out of range");
    return static_cast<int>(v.get<int64_t>());
  }
  // A required integer > 0 (a dimension).
  Result<int> Positive(const std::string& key) const {
    FLOVER_ASSIGN_OR_RETURN(int v, Int(key));
    if (v <= 0) return Error(key, "must be positive, got " + std::to_string(v));
    return v;
  }
  Result<float> Float(const std::string& key, std::optional<float> fallback = std::nullopt) const {
    const Json* v = Get(key);
    if (v == nullptr) {
      if (fallback) return *fallback;
      return Error(key, "is missing");
    }
    if (!v->is_number()) return Error(key, "must be a number, got " + v->dump());
    const double d = v->get<double>();
    if (!std::isfinite(static_cast<float>(d))) return Error(key, "= " + v->dump() + " is not a finite float");
    return static_cast<float>(d);
  }
  Result<bool> Bool(const std::string& key, bool fallback) const {
    const Json* v = Get(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) return Error(key, "must be true or false, got " + v->dump());
    return v->get<bool>();
  }
  Result<std::string> String(const std::string& key, std::optional<std::string> fallback = std::nullopt) const {
    const Json* v = Get(key);
    if (v == nullptr) {
      if (fallback) return *fallback;
      return Error(key, "is missing");
    }
    if (!v->is_string()) return Error(key, "must be a string, got " + v->dump());
    return v->get<std::string>();
  }
  // An id or a non-empty list of ids; nullopt when absent.
  Result<std::optional<std::vector<int>>> Ids(const std::string& key) const {
    const Json* v = Get(key);
    if (v == nullptr) return std::optional<std::vector<int>>();
    std::vector<int> ids;
    if (v->is_array()) {
      if (v->empty()) return Error(key, "is an empty list");
      for (const Json& e : *v) {
        FLOVER_ASSIGN_OR_RETURN(int id, IntValue(key, e));
        ids.push_back(id);
      }
    } else {
      FLOVER_ASSIGN_OR_RETURN(int id, IntValue(key, *v));
      ids.push_back(id);
    }
    return std::optional<std::vector<int>>(std::move(ids));
  }

 private:
  const Json& j_;
  const char* file_;
};

Result<const ArchName*> FindArch(const Fields& c) {
  std::string name;
  if (const Json* archs = c.Get("architectures")) {
    if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string())
      return c.Error("architectures", "must be a non-empty list of names, got " + archs->dump());
    name = (*archs)[0].get<std::string>();
    for (const ArchName& a : kArchs)
      if (name == a.architecture) return &a;
  } else {
    FLOVER_ASSIGN_OR_RETURN(name, c.String("model_type"));
    for (const ArchName& a : kArchs)
      if (name == a.model_type) return &a;
  }
  return InvalidArgument(std::string(kConfig) + ": unsupported architecture " + name + " (supported: " +
                         SupportedHfArchitectures() + ")");
}

Status ReadRopeScaling(const Fields& c, ModelSpec& spec) {
  const Json* rs = c.Get("rope_scaling");
  if (rs == nullptr) return Status::Ok();
  if (!rs->is_object()) return c.Error("rope_scaling", "must be an object or null, got " + rs->dump());
  const Fields f(*rs, "config.json: rope_scaling");
  const char* type_key = f.Has("rope_type") ? "rope_type" : "type";
  FLOVER_ASSIGN_OR_RETURN(std::string type, f.String(type_key));
  if (type == "default") return Status::Ok();
  if (type != "llama3")
    return InvalidArgument(std::string(kConfig) + ": rope_scaling type \"" + type +
                           "\" is not supported (supported: llama3)");
  RopeScaling& s = spec.rope_scaling;
  s.kind = RopeScaling::Kind::kLlama3;
  FLOVER_ASSIGN_OR_RETURN(s.factor, f.Float("factor"));
  FLOVER_ASSIGN_OR_RETURN(s.low_freq_factor, f.Float("low_freq_factor"));
  FLOVER_ASSIGN_OR_RETURN(s.high_freq_factor, f.Float("high_freq_factor"));
  FLOVER_ASSIGN_OR_RETURN(s.original_max_position, f.Int("original_max_position_embeddings"));
  return Status::Ok();
}

// Caps the context at the attention window: Flover attends over the whole context, so
// no sequence may outgrow the window the model was trained with.
void CapAtWindow(HfConfig& out, int window) {
  ModelSpec& spec = out.spec;
  spec.sliding_window = window;
  if (window > 0 && spec.max_seq_len > window) {
    out.notes.push_back("max_seq_len capped from " + std::to_string(spec.max_seq_len) + " to the sliding window of " +
                        std::to_string(window) + " tokens (Flover attends over the whole context)");
    spec.max_seq_len = window;
  }
}

Status ReadLlamaFamily(const Fields& c, Arch arch, HfConfig& out) {
  ModelSpec& spec = out.spec;
  FLOVER_ASSIGN_OR_RETURN(spec.dim, c.Positive("hidden_size"));
  FLOVER_ASSIGN_OR_RETURN(spec.hidden_dim, c.Positive("intermediate_size"));
  FLOVER_ASSIGN_OR_RETURN(spec.n_layers, c.Positive("num_hidden_layers"));
  FLOVER_ASSIGN_OR_RETURN(spec.n_heads, c.Positive("num_attention_heads"));
  FLOVER_ASSIGN_OR_RETURN(spec.n_kv_heads, c.Int("num_key_value_heads", spec.n_heads));
  FLOVER_ASSIGN_OR_RETURN(spec.vocab_size, c.Positive("vocab_size"));
  FLOVER_ASSIGN_OR_RETURN(spec.max_seq_len, c.Positive("max_position_embeddings"));
  FLOVER_ASSIGN_OR_RETURN(spec.norm_eps, c.Float("rms_norm_eps", 1e-6f));
  FLOVER_ASSIGN_OR_RETURN(spec.rope_theta, c.Float("rope_theta", 10000.0f));
  FLOVER_ASSIGN_OR_RETURN(bool tied, c.Bool("tie_word_embeddings", false));
  spec.shared_classifier = tied;
  if (spec.dim % spec.n_heads != 0)
    return c.Error("hidden_size", "= " + std::to_string(spec.dim) + " is not divisible by num_attention_heads = " +
                                      std::to_string(spec.n_heads));
  if (c.Has("head_dim")) {
    FLOVER_ASSIGN_OR_RETURN(int head_dim, c.Int("head_dim"));
    if (head_dim != spec.dim / spec.n_heads)
      return InvalidArgument(std::string(kConfig) + ": head_dim = " + std::to_string(head_dim) +
                             " differs from hidden_size / num_attention_heads = " +
                             std::to_string(spec.dim / spec.n_heads) + ", which Flover requires");
  }
  FLOVER_ASSIGN_OR_RETURN(std::string act, c.String("hidden_act", "silu"));
  if (act != "silu")
    return InvalidArgument(std::string(kConfig) + ": hidden_act \"" + act + "\" is not supported (" +
                           out.architecture + " needs silu)");
  FLOVER_RETURN_IF_ERROR(ReadRopeScaling(c, spec));
  if (arch == Arch::kLlama) {
    FLOVER_ASSIGN_OR_RETURN(bool attention_bias, c.Bool("attention_bias", false));
    FLOVER_ASSIGN_OR_RETURN(bool mlp_bias, c.Bool("mlp_bias", false));
    if (attention_bias || mlp_bias)
      return InvalidArgument(std::string(kConfig) + ": " + (attention_bias ? "attention_bias" : "mlp_bias") +
                             " true is not supported for LlamaForCausalLM");
  }
  if (arch == Arch::kQwen2) {
    spec.qkv_bias = true;
    FLOVER_ASSIGN_OR_RETURN(bool use_window, c.Bool("use_sliding_window", false));
    if (use_window) {
      FLOVER_ASSIGN_OR_RETURN(int window, c.Int("sliding_window", 4096));
      if (window <= 0) return c.Error("sliding_window", "must be positive, got " + std::to_string(window));
      CapAtWindow(out, window);
    }
  }
  if (arch == Arch::kMistral) {
    // Absent: transformers' MistralConfig default of 4096; null: no window.
    int window = 0;
    if (!c.IsNull("sliding_window")) {
      FLOVER_ASSIGN_OR_RETURN(window, c.Int("sliding_window", 4096));
      if (window <= 0) return c.Error("sliding_window", "must be positive or null, got " + std::to_string(window));
    }
    CapAtWindow(out, window);
  }
  return Status::Ok();
}

Status ReadGptj(const Fields& c, HfConfig& out) {
  ModelSpec& spec = out.spec;
  FLOVER_ASSIGN_OR_RETURN(spec.dim, c.Positive("n_embd"));
  FLOVER_ASSIGN_OR_RETURN(spec.n_layers, c.Positive("n_layer"));
  FLOVER_ASSIGN_OR_RETURN(spec.n_heads, c.Positive("n_head"));
  spec.n_kv_heads = spec.n_heads;
  FLOVER_ASSIGN_OR_RETURN(spec.vocab_size, c.Positive("vocab_size"));
  FLOVER_ASSIGN_OR_RETURN(spec.max_seq_len, c.Positive("n_positions"));
  if (spec.dim > INT_MAX / 4) return c.Error("n_embd", "= " + std::to_string(spec.dim) + " is out of range");
  FLOVER_ASSIGN_OR_RETURN(spec.hidden_dim, c.Int("n_inner", 4 * spec.dim));  // null: 4 * n_embd
  if (spec.hidden_dim <= 0) return c.Error("n_inner", "must be positive, got " + std::to_string(spec.hidden_dim));
  // Absent: GPTJConfig's default of 64; null: the whole head rotates.
  spec.rotary_dim = 0;
  if (!c.IsNull("rotary_dim")) {
    FLOVER_ASSIGN_OR_RETURN(spec.rotary_dim, c.Int("rotary_dim", 64));
    if (spec.rotary_dim <= 0) return c.Error("rotary_dim", "must be positive or null, got " + std::to_string(spec.rotary_dim));
  }
  if (spec.dim % spec.n_heads != 0)
    return c.Error("n_embd", "= " + std::to_string(spec.dim) + " is not divisible by n_head = " +
                                 std::to_string(spec.n_heads));
  if (spec.rotary_dim > spec.dim / spec.n_heads || spec.rotary_dim % 2 != 0)
    return c.Error("rotary_dim", "= " + std::to_string(spec.rotary_dim) + " must be even and at most the head size " +
                                     std::to_string(spec.dim / spec.n_heads));
  FLOVER_ASSIGN_OR_RETURN(spec.norm_eps, c.Float("layer_norm_epsilon", 1e-5f));
  FLOVER_ASSIGN_OR_RETURN(std::string act, c.String("activation_function", "gelu_new"));
  if (act != "gelu_new")
    return InvalidArgument(std::string(kConfig) + ": activation_function \"" + act +
                           "\" is not supported (GPTJForCausalLM needs gelu_new)");
  FLOVER_ASSIGN_OR_RETURN(bool tied, c.Bool("tie_word_embeddings", false));
  spec.shared_classifier = tied;
  spec.rope_theta = 10000.0f;
  spec.norm = NormKind::kLayer;
  spec.ffn = FfnKind::kGelu;
  spec.parallel_residual = true;
  spec.ffn_bias = true;
  spec.classifier_bias = true;
  return Status::Ok();
}

// bos/eos from generation_config.json, field by field falling back to config.json's.
Status ReadIds(const Fields& config, const Fields* generation, ModelSpec& spec) {
  std::optional<std::vector<int>> eos, bos;
  if (generation != nullptr) {
    FLOVER_ASSIGN_OR_RETURN(eos, generation->Ids("eos_token_id"));
    FLOVER_ASSIGN_OR_RETURN(bos, generation->Ids("bos_token_id"));
  }
  if (!eos) {
    FLOVER_ASSIGN_OR_RETURN(eos, config.Ids("eos_token_id"));
  }
  if (!bos) {
    FLOVER_ASSIGN_OR_RETURN(bos, config.Ids("bos_token_id"));
  }
  if (!eos)
    return Corruption(std::string("no eos_token_id in ") + kGenerationConfig + " or " + kConfig +
                      ": the model's end of text is unknown");
  spec.eos_id = eos->front();
  spec.extra_eos_ids.clear();
  for (size_t i = 1; i < eos->size(); ++i) {
    const int id = (*eos)[i];
    if (id != spec.eos_id && std::find(spec.extra_eos_ids.begin(), spec.extra_eos_ids.end(), id) == spec.extra_eos_ids.end())
      spec.extra_eos_ids.push_back(id);
  }
  if (bos && bos->size() != 1)
    return Corruption(std::string("bos_token_id in ") + (generation != nullptr && generation->Has("bos_token_id") ? kGenerationConfig : kConfig) +
                      " must be a single id");
  // Without a begin-of-text id (Qwen2, some GPT-J exports) BOS stands for EOS: the id
  // only ends sequences, as the end of text does.
  spec.bos_id = bos ? bos->front() : spec.eos_id;
  return Status::Ok();
}

Result<std::string> ReadChatTemplate(std::string_view tokenizer_config, std::string_view jinja) {
  if (!jinja.empty()) return std::string(jinja);
  if (tokenizer_config.empty()) return std::string();
  FLOVER_ASSIGN_OR_RETURN(Json tc, ParseObject(tokenizer_config, kTokenizerConfig));
  const Fields f(tc, kTokenizerConfig);
  const Json* t = f.Get("chat_template");
  if (t == nullptr) return std::string();
  if (t->is_string()) return t->get<std::string>();
  // A list of named templates: the one named "default" (transformers' choice).
  if (t->is_array()) {
    for (const Json& e : *t) {
      if (!e.is_object() || !e.contains("name") || !e.contains("template") || !e["name"].is_string() ||
          !e["template"].is_string())
        return f.Error("chat_template", "must be a string or a list of {name, template}");
      if (e["name"] == "default") return e["template"].get<std::string>();
    }
    return std::string();
  }
  return f.Error("chat_template", "must be a string or a list of {name, template}, got " + std::string(t->type_name()));
}

}  // namespace

std::string SupportedHfArchitectures() {
  std::string s;
  for (const ArchName& a : kArchs) s += (s.empty() ? "" : ", ") + std::string(a.architecture);
  return s;
}

Result<HfConfig> ParseHfConfig(std::string_view config, std::string_view generation_config,
                               std::string_view tokenizer_config, std::string_view chat_template) {
  FLOVER_ASSIGN_OR_RETURN(Json cj, ParseObject(config, kConfig));
  const Fields c(cj, kConfig);
  HfConfig out;
  FLOVER_ASSIGN_OR_RETURN(const ArchName* arch, FindArch(c));
  out.architecture = arch->architecture;
  out.spec.arch = arch->spec_name;
  if (arch->arch == Arch::kGptj) {
    out.layout = HfLayout::kGptj;
    FLOVER_RETURN_IF_ERROR(ReadGptj(c, out));
  } else {
    out.layout = HfLayout::kLlama;
    out.rotates_halves = true;
    FLOVER_RETURN_IF_ERROR(ReadLlamaFamily(c, arch->arch, out));
  }

  std::optional<Json> gj;
  if (!generation_config.empty()) {
    FLOVER_ASSIGN_OR_RETURN(gj, ParseObject(generation_config, kGenerationConfig));
  }
  std::optional<Fields> g;
  if (gj) g.emplace(*gj, kGenerationConfig);
  FLOVER_RETURN_IF_ERROR(ReadIds(c, g ? &*g : nullptr, out.spec));
  FLOVER_ASSIGN_OR_RETURN(out.spec.chat_template, ReadChatTemplate(tokenizer_config, chat_template));

  if (Status s = out.spec.Validate(); !s.ok())
    return Corruption(std::string(kConfig) + " describes an invalid model: " + s.message());
  return out;
}

Result<std::string> ReadSmallFile(const std::string& path, uint64_t limit) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return NotFound(path + ": no such file");
    return IoError(path + ": cannot stat: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return InvalidArgument(path + ": is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > limit)
    return InvalidArgument(path + ": has " + std::to_string(st.st_size) + " bytes, more than the " +
                           std::to_string(limit) + " a model folder's JSON file may have");
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return IoError(path + ": cannot open: " + std::strerror(errno));
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  const size_t n = std::fread(bytes.data(), 1, bytes.size(), f.get());
  if (n != bytes.size()) return IoError(path + ": short read (" + std::to_string(n) + " of " + std::to_string(bytes.size()) + " bytes)");
  return bytes;
}

Result<HfConfig> ReadHfConfig(const std::string& dir) {
  auto read = [&dir](const char* name, bool required) -> Result<std::string> {
    Result<std::string> r = ReadSmallFile(dir + "/" + name);
    if (!r.ok() && r.status().code() == StatusCode::kNotFound) {
      if (required) return NotFound(dir + ": no " + name + " (a Hugging Face model folder needs one)");
      return std::string();
    }
    return r;
  };
  FLOVER_ASSIGN_OR_RETURN(std::string config, read(kConfig, true));
  FLOVER_ASSIGN_OR_RETURN(std::string generation, read(kGenerationConfig, false));
  FLOVER_ASSIGN_OR_RETURN(std::string tokenizer, read(kTokenizerConfig, false));
  FLOVER_ASSIGN_OR_RETURN(std::string jinja, read("chat_template.jinja", false));
  Result<HfConfig> parsed = ParseHfConfig(config, generation, tokenizer, jinja);
  if (!parsed.ok()) return parsed.status().WithContext(dir);
  return parsed;
}

}  // namespace flover
