#include "tests/model/gguf_writer.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "tests/model/raw_bytes.h"

namespace flover::testing {
namespace {

void PutString(std::string& out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out += s;
}

// GGUF value type ids.
enum : uint32_t { kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kStr = 8, kArr = 9, kU64 = 10 };

}  // namespace

uint16_t FloatToHalf(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) return sign | 0x7E00u | static_cast<uint16_t>((ax >> 13) & 0x3FFu);  // NaN
  if (ax >= 0x47800000u) return sign | 0x7C00u;  // >= 2^16 (or inf): inf
  if (ax < 0x38800000u) {                        // below 2^-14: subnormal half (or 0)
    // Scaling by 2^24 is exact; nearbyint rounds half to even.
    const float units = std::bit_cast<float>(ax) * 16777216.0f;
    return sign | static_cast<uint16_t>(std::nearbyint(units));
  }
  uint32_t h = ((((ax >> 23) - 127 + 15) << 10) | ((ax & 0x7FFFFFu) >> 13));
  const uint32_t rest = ax & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent (-> inf)
  return sign | static_cast<uint16_t>(h);
}

void GgufWriter::Set(const std::string& key, uint32_t type, std::string value) {
  for (Kv& kv : kvs_) {
    if (kv.key == key) {
      kv.type = type;
      kv.value = std::move(value);
      return;
    }
  }
  kvs_.push_back({key, type, std::move(value)});
}

void GgufWriter::SetAlignment(uint32_t alignment) {
  alignment_ = alignment;
  SetUint32("general.alignment", alignment);
}

void GgufWriter::SetString(const std::string& key, const std::string& value) {
  std::string v;
  PutString(v, value);
  Set(key, kStr, v);
}

void GgufWriter::SetUint32(const std::string& key, uint32_t value) {
  std::string v;
  Put(v, value);
  Set(key, kU32, v);
}

void GgufWriter::SetInt32(const std::string& key, int32_t value) {
  std::string v;
  Put(v, value);
  Set(key, kI32, v);
}

void GgufWriter::SetUint64(const std::string& key, uint64_t value) {
  std::string v;
  Put(v, value);
  Set(key, kU64, v);
}

void GgufWriter::SetFloat32(const std::string& key, float value) {
  std::string v;
  Put(v, value);
  Set(key, kF32, v);
}

void GgufWriter::SetBool(const std::string& key, bool value) {
  std::string v;
  Put<uint8_t>(v, value ? 1 : 0);
  Set(key, kBool, v);
}

void GgufWriter::SetStringArray(const std::string& key, const std::vector<std::string>& values) {
  std::string v;
  Put<uint32_t>(v, kStr);
  Put<uint64_t>(v, values.size());
  for (const std::string& s : values) PutString(v, s);
  Set(key, kArr, v);
}

void GgufWriter::SetFloat32Array(const std::string& key, const std::vector<float>& values) {
  std::string v;
  Put<uint32_t>(v, kF32);
  Put<uint64_t>(v, values.size());
  for (float f : values) Put(v, f);
  Set(key, kArr, v);
}

void GgufWriter::SetInt32Array(const std::string& key, const std::vector<int32_t>& values) {
  std::string v;
  Put<uint32_t>(v, kI32);
  Put<uint64_t>(v, values.size());
  for (int32_t i : values) Put(v, i);
  Set(key, kArr, v);
}

void GgufWriter::SetRaw(const std::string& key, uint32_t type, const std::string& value_bytes) {
  Set(key, type, value_bytes);
}

void GgufWriter::RemoveKey(const std::string& key) {
  std::erase_if(kvs_, [&](const Kv& kv) { return kv.key == key; });
}

void GgufWriter::AddTensorF32(const std::string& name, const std::vector<uint64_t>& ne,
                              const std::vector<float>& data) {
  std::string bytes(data.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), data.data(), bytes.size());
  AddTensorRaw(name, ne, 0, bytes);
}

void GgufWriter::AddTensorF16(const std::string& name, const std::vector<uint64_t>& ne,
                              const std::vector<float>& data) {
  std::string bytes;
  bytes.reserve(data.size() * 2);
  for (float f : data) Put<uint16_t>(bytes, FloatToHalf(f));
  AddTensorRaw(name, ne, 1, bytes);
}

void GgufWriter::AddTensorRaw(const std::string& name, const std::vector<uint64_t>& ne, uint32_t ggml_type,
                              const std::string& bytes) {
  tensors_.push_back({name, ne, ggml_type, bytes});
}

void GgufWriter::RemoveTensor(const std::string& name) {
  std::erase_if(tensors_, [&](const Tensor& t) { return t.name == name; });
}

std::string GgufWriter::Serialize() const {
  auto align = [this](uint64_t n) { return (n + alignment_ - 1) / alignment_ * alignment_; };
  std::string out = magic_;
  Put(out, version_);
  Put<uint64_t>(out, forged_tensor_count_.value_or(tensors_.size()));
  Put<uint64_t>(out, forged_kv_count_.value_or(kvs_.size()));
  for (const Kv& kv : kvs_) {
    PutString(out, kv.key);
    Put(out, kv.type);
    out += kv.value;
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    PutString(out, t.name);
    Put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (uint64_t n : t.ne) Put(out, n);
    Put(out, t.type);
    Put(out, offset);
    offset = align(offset + t.bytes.size());
  }
  out.resize(align(out.size()), '\0');
  for (const Tensor& t : tensors_) {
    out += t.bytes;
    if (&t != &tensors_.back()) out.resize(align(out.size()), '\0');
  }
  return out;
}

bool GgufWriter::WriteFile(const std::string& path) const {
  const std::string bytes = Serialize();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

GgufWriter LlamaGguf(const ModelWeights& w, bool f16) {
  const ModelSpec& s = w.spec;
  GgufWriter g;
  g.SetString("general.architecture", "llama");
  g.SetString("general.name", "test");
  g.SetUint32("llama.context_length", s.max_seq_len);
  g.SetUint32("llama.embedding_length", s.dim);
  g.SetUint32("llama.feed_forward_length", s.hidden_dim);
  g.SetUint32("llama.block_count", s.n_layers);
  g.SetUint32("llama.attention.head_count", s.n_heads);
  g.SetUint32("llama.attention.head_count_kv", s.n_kv_heads);
  g.SetUint32("llama.rope.dimension_count", s.head_dim());
  g.SetFloat32("llama.attention.layer_norm_rms_epsilon", s.norm_eps);
  g.SetFloat32("llama.rope.freq_base", s.rope_theta);

  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0.0f, 0.0f, 0.0f};
  for (int i = 3; i < s.vocab_size; ++i) {
    std::string piece = "t";  // not "t" + to_string(i): GCC 12 -Wrestrict false positive
    piece += std::to_string(i);
    pieces.push_back(piece);
    scores.push_back(-static_cast<float>(i));
  }
  pieces.resize(s.vocab_size);
  scores.resize(s.vocab_size);
  g.SetString("tokenizer.ggml.model", "llama");
  g.SetStringArray("tokenizer.ggml.tokens", pieces);
  g.SetFloat32Array("tokenizer.ggml.scores", scores);
  g.SetUint32("tokenizer.ggml.bos_token_id", s.bos_id);
  g.SetUint32("tokenizer.ggml.eos_token_id", s.eos_id);

  const uint64_t d = s.dim, h = s.hidden_dim, q = s.q_dim(), kv = s.kv_dim(), v = s.vocab_size;
  auto add = [&](const std::string& name, std::vector<uint64_t> ne, const std::vector<float>& data) {
    if (f16) {
      g.AddTensorF16(name, ne, data);
    } else {
      g.AddTensorF32(name, ne, data);
    }
  };
  add("token_embd.weight", {d, v}, w.token_embedding);
  add("output_norm.weight", {d}, w.final_norm);
  if (!s.shared_classifier) add("output.weight", {d, v}, w.classifier);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_q.weight", {d, q}, L.wq);
    add(p + "attn_k.weight", {d, kv}, L.wk);
    add(p + "attn_v.weight", {d, kv}, L.wv);
    add(p + "attn_output.weight", {q, d}, L.wo);
    add(p + "attn_norm.weight", {d}, L.attn_norm);
    add(p + "ffn_gate.weight", {d, h}, L.w1);
    add(p + "ffn_down.weight", {h, d}, L.w2);
    add(p + "ffn_up.weight", {d, h}, L.w3);
    add(p + "ffn_norm.weight", {d}, L.ffn_norm);
  }
  return g;
}

}  // namespace flover::testing
