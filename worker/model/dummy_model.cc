#include "worker/model/dummy_model.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>
#include <utility>

namespace flover {
namespace {

struct Preset {
  const char* name;
  ModelSpec spec;
};

ModelSpec Shape(int dim, int hidden, int layers, int heads, int kv_heads, int vocab, int seq, bool shared) {
  ModelSpec s;
  s.dim = dim;
  s.hidden_dim = hidden;
  s.n_layers = layers;
  s.n_heads = heads;
  s.n_kv_heads = kv_heads;
  s.vocab_size = vocab;
  s.max_seq_len = seq;
  s.shared_classifier = shared;
  return s;
}

// Dummy weights serve benchmarks, which need the shapes, not the checkpoints' longest
// contexts: a KV cache is sized by max_seq_len, and RoPE works at any position, so the
// context is capped here (the speed per token does not change).
constexpr int kDummyContextCap = 8192;

// LLaMA 3.1 / 3.2 rotary embeddings: theta 500000, llama3 scaling of an 8192-token
// original context by `factor`.
ModelSpec Llama3(ModelSpec s, float factor) {
  s.rope_theta = 500000.0f;
  s.rope_scaling = RopeScaling{RopeScaling::Kind::kLlama3, factor, 1.0f, 4.0f, 8192};
  s.bos_id = 128000;  // <|begin_of_text|>
  s.eos_id = 128001;  // <|end_of_text|>
  s.extra_eos_ids = {128008, 128009};  // <|eom_id|>, <|eot_id|>
  return s;
}

// Mistral 7B v0.2 and later: theta 1e6, no sliding window (v0.1's 4096-token window
// would cap the context at 4096).
ModelSpec Mistral(ModelSpec s) {
  s.arch = "mistral";
  s.rope_theta = 1000000.0f;
  return s;
}

// Qwen2: biases on q, k and v; theta 1e6; RMSNorm eps 1e-6; <|endoftext|> begins and ends.
ModelSpec Qwen2(ModelSpec s) {
  s.arch = "qwen2";
  s.rope_theta = 1000000.0f;
  s.norm_eps = 1e-6f;
  s.qkv_bias = true;
  s.bos_id = s.eos_id = 151643;
  return s;
}

// GPT-J: LayerNorm, attention and MLP in parallel from one norm, rotary on the first
// `rotary_dim` dims of each head, GELU MLP with biases, LM head with a bias.
ModelSpec GptJ(ModelSpec s, int rotary_dim) {
  s.arch = "gptj";
  s.norm = NormKind::kLayer;
  s.ffn = FfnKind::kGelu;
  s.parallel_residual = true;
  s.rotary_dim = rotary_dim;
  s.ffn_bias = true;
  s.classifier_bias = true;
  s.bos_id = s.eos_id = 50256;  // <|endoftext|>
  return s;
}

// The tinyllamas checkpoints tie the classifier to the embedding; LLaMA-7B/13B do not.
// Context lengths are the real models' (capped at kDummyContextCap) except stories15m
// (256 in the checkpoint): the paper's experiments need 8-token prompts with up to 768
// generated tokens, so its dummy twin gets 1024.
const std::vector<Preset>& Presets() {
  static const std::vector<Preset> kPresets = {
      {"tiny", Shape(64, 172, 5, 8, 4, 512, 512, true)},  // stories260K's shape
      {"stories260k", Shape(64, 172, 5, 8, 4, 512, 512, true)},
      {"stories15m", Shape(288, 768, 6, 6, 6, 32000, 1024, true)},
      {"stories110m", Shape(768, 2048, 12, 12, 12, 32000, 1024, true)},
      {"llama-110m", Shape(768, 2048, 12, 12, 12, 32000, 1024, true)},
      {"llama-7b", Shape(4096, 11008, 32, 32, 32, 32000, 4096, false)},
      {"llama-13b", Shape(5120, 13824, 40, 40, 40, 32000, 4096, false)},
      // LLaMA 3.2 1B (context 131072) and LLaMA 3.1 8B (131072).
      {"llama3-1b", Llama3(Shape(2048, 8192, 16, 32, 8, 128256, kDummyContextCap, true), 32.0f)},
      {"llama3-8b", Llama3(Shape(4096, 14336, 32, 32, 8, 128256, kDummyContextCap, false), 8.0f)},
      {"tinyllama-1.1b", Shape(2048, 5632, 22, 32, 4, 32000, 2048, false)},
      {"mistral-7b", Mistral(Shape(4096, 14336, 32, 32, 8, 32000, kDummyContextCap, false))},  // context 32768
      {"qwen2-0.5b", Qwen2(Shape(896, 4864, 24, 14, 2, 151936, kDummyContextCap, true))},  // context 32768
      {"gptj-6b", GptJ(Shape(4096, 16384, 28, 16, 16, 50400, 2048, false), 64)},
  };
  return kPresets;
}

// Fills `t` with tensor number `tensor_id`; any thread split gives the same bytes.
void FillUniform(std::vector<float>& t, uint64_t seed, uint64_t tensor_id, float scale) {
  const uint64_t key = DummyWeightKey(seed, tensor_id);
  const int64_t n = static_cast<int64_t>(t.size());
  float* data = t.data();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) data[i] = DummyWeightValue(key, static_cast<uint64_t>(i), scale);
}

float Scale(int64_t in_features) { return std::sqrt(3.0f / static_cast<float>(in_features)); }

std::string Gigabytes(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f GB", static_cast<double>(bytes) / 1e9);
  return buf;
}

// A cgroup limit minus its usage, when a limit is set.
std::optional<int64_t> CgroupRoom() {
  auto read = [](const char* path) -> std::optional<int64_t> {
    std::ifstream f(path);
    std::string s;
    if (!(f >> s) || s == "max") return std::nullopt;
    try {
      return static_cast<int64_t>(std::stoll(s));
    } catch (...) {
      return std::nullopt;
    }
  };
  for (auto [limit_path, usage_path] : {std::pair{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
                                        std::pair{"/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                                  "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    const std::optional<int64_t> limit = read(limit_path), usage = read(usage_path);
    if (limit && usage && *limit < (int64_t{1} << 60)) return std::max<int64_t>(0, *limit - *usage);
  }
  return std::nullopt;
}

}  // namespace

std::optional<ModelSpec> DummyPreset(const std::string& preset) {
  for (const Preset& p : Presets())
    if (preset == p.name) return p.spec;
  return std::nullopt;
}

std::vector<std::string> DummyPresetNames() {
  std::vector<std::string> names;
  for (const Preset& p : Presets()) names.push_back(p.name);
  return names;
}

int64_t AvailableMemoryBytes() {
  int64_t available = -1;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (meminfo >> key >> kb) {
    std::getline(meminfo, unit);
    if (key == "MemAvailable:") {
      available = kb * 1024;
      break;
    }
  }
  if (available < 0) {
    const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    available = pages > 0 && page > 0 ? int64_t{pages} * page : std::numeric_limits<int64_t>::max();
  }
  if (const std::optional<int64_t> room = CgroupRoom()) available = std::min(available, *room);
  return available;
}

int64_t ShardWeightBytes(const ModelSpec& spec, int world, const WeightPolicy& policy) {
  const ShardDims d = ShardDimsFor(spec, ShardInfo{0, world});
  auto bytes = [&](const auto& t) -> int64_t {
    const LocalShape shape = LocalShapeOf(t, spec, d, world);
    if (shape.rows == 0) return 0;
    cpu::WeightFormat format = cpu::WeightFormat::kF32;
    if (t.matrix) {
      Result<MatrixFormat> chosen =
          ChooseMatrixFormat(policy, {cpu::WeightFormat::kF32, "fp32"}, t.name, t.cols(spec), t.split, spec, world);
      if (chosen.ok()) format = chosen->format;
    }
    return shape.rows * cpu::WeightRowBytes(format, shape.cols);
  };
  int64_t per_layer = 0;
  for (const auto& t : LayerTensors()) per_layer += bytes(t);
  int64_t total = spec.n_layers * per_layer;
  for (const auto& t : ModelTensors()) total += bytes(t);
  if (world > 1 && spec.shared_classifier) total += bytes(TensorInfoOf(&ModelWeights::token_embedding)) / spec.vocab_size * d.vocab_per_rank;
  return total;
}

Status CheckDummyWeightsFit(const std::string& preset, const ModelSpec& spec, int64_t available_bytes, int world,
                            const WeightPolicy& policy) {
  const int64_t bytes = ShardWeightBytes(spec, world, policy);
  if (static_cast<double>(bytes) > 0.9 * static_cast<double>(available_bytes))
    return ResourceExhausted("dummy:" + preset + " needs " + Gigabytes(bytes) + " of " +
                             (policy.format ? policy.ToString() : std::string("fp32")) + " weights" +
                             (world > 1 ? " per tensor-parallel rank of " + std::to_string(world) : std::string()) +
                             "; this machine has " + Gigabytes(available_bytes) + " available");
  return Status::Ok();
}

static uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t DummyWeightKey(uint64_t seed, uint64_t tensor_id) {
  return SplitMix64(SplitMix64(seed) ^ (tensor_id * 0xD1B54A32D192ED03ull));
}

float DummyWeightValue(uint64_t key, uint64_t i, float scale) {
  constexpr float kInv2p24 = 1.0f / 16777216.0f;
  // 24 random bits -> [0, 1) exactly representable, then to [-1, 1).
  const float u = static_cast<float>(SplitMix64(key + i) >> 40) * kInv2p24;
  return (2.0f * u - 1.0f) * scale;
}

DummyFill DummyFillOf(std::string_view name, int64_t cols) {
  if (name.ends_with("norm")) return {.random = false, .value = 1.0f};
  if (name.ends_with("norm_bias")) return {.random = false, .value = 0.0f};
  const float scale = name == "token_embedding" ? 1.0f : cols == 1 ? 0.1f : Scale(cols);
  return {.random = true, .value = scale};
}

namespace {

// REQUIRES: spec validated, target checked against it (LoadTarget::Check).
Result<ModelWeights> GenerateDummyShard(const ModelSpec& spec, uint64_t seed, const LoadTarget& target,
                                        const std::string& where) {
  ModelWeights w;
  w.spec = spec;
  FormatNotes notes;
  // Every tensor is generated whole (its values do not depend on the shard) and kept as
  // the target says at once. Tensors take ids in table order (LayerTensors(),
  // ModelTensors()), counting only the random ones (DummyFillOf).
  uint64_t tensor_id = 0;
  auto fill = [&](const auto& t, WeightTensor& out, const std::string& name) -> Status {
    if (!t.present(spec)) return Status::Ok();
    std::vector<float> full(t.size(spec));
    const DummyFill how = DummyFillOf(t.name, t.cols(spec));
    if (how.random) {
      FillUniform(full, seed, tensor_id++, how.value);
    } else {
      std::fill(full.begin(), full.end(), how.value);
    }
    FLOVER_ASSIGN_OR_RETURN(out, target.KeepF32(t, spec, std::move(full), name, &notes));
    return Status::Ok();
  };
  const auto& model_tensors = ModelTensors();
  FLOVER_RETURN_IF_ERROR(fill(model_tensors[0], w.token_embedding, model_tensors[0].name));  // id 0, before the layers
  w.layers.resize(spec.n_layers);
  for (size_t i = 0; i < w.layers.size(); ++i)
    for (const auto& t : LayerTensors())
      FLOVER_RETURN_IF_ERROR(fill(t, w.layers[i].*t.member, "layers." + std::to_string(i) + "." + t.name));
  for (size_t i = 1; i < model_tensors.size(); ++i)
    FLOVER_RETURN_IF_ERROR(fill(model_tensors[i], w.*model_tensors[i].member, model_tensors[i].name));
  FinishShard(w, target.shard);
  notes.Log(where);

  FLOVER_RETURN_IF_ERROR(ValidateShard(w, target.shard));
  return w;
}

}  // namespace

Result<ModelWeights> MakeDummyWeights(const std::string& preset, uint64_t seed, const LoadTarget& target) {
  const std::optional<ModelSpec> spec = DummyPreset(preset);
  if (!spec) {
    std::string names;
    for (const std::string& n : DummyPresetNames()) names += (names.empty() ? "" : ", ") + n;
    return InvalidArgument("dummy:" + preset + ": unknown preset; known presets: " + names);
  }
  FLOVER_RETURN_IF_ERROR(target.Check(*spec));
  FLOVER_RETURN_IF_ERROR(
      CheckDummyWeightsFit(preset, *spec, AvailableMemoryBytes(), target.shard.world, target.weights));
  Result<ModelWeights> w = GenerateDummyShard(*spec, seed, target, "dummy:" + preset);
  if (!w.ok()) return w.status().WithContext("dummy:" + preset);
  return w;
}

Result<ModelWeights> MakeDummyWeights(const ModelSpec& spec, uint64_t seed, const LoadTarget& target) {
  FLOVER_RETURN_IF_ERROR(spec.Validate());
  FLOVER_RETURN_IF_ERROR(target.Check(spec));
  return GenerateDummyShard(spec, seed, target, "dummy " + spec.ToString());
}


}  // namespace flover
