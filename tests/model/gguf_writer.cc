#include "tests/model/gguf_writer.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <span>

#include "tests/model/raw_bytes.h"
#include "worker/model/gguf_quant.h"

namespace flover::testing {
namespace {

void PutString(std::string& out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out += s;
}

// GGUF value type ids.
enum : uint32_t { kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kStr = 8, kArr = 9, kU64 = 10 };

std::vector<float> EncodeF32(GgufWriter& g, const std::string& name, const std::vector<uint64_t>& ne,
                             const std::vector<float>& data) {
  g.AddTensorF32(name, ne, data);
  return data;
}

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

float ReferenceHalfToFloat(uint16_t h) {
  const float sign = (h & 0x8000) ? -1.0f : 1.0f;
  const int exp = (h >> 10) & 0x1F;
  const int mant = h & 0x3FF;
  if (exp == 0x1F) return mant ? std::nanf("") : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -24);
  return sign * std::ldexp(static_cast<float>(mant + 1024), exp - 25);
}

std::string QuantizeQ8_0(std::span<const float> data, std::vector<float>* read_back) {
  constexpr size_t kBlock = 32;
  std::string out;
  if (read_back != nullptr) read_back->assign(data.size(), 0.0f);
  for (size_t b = 0; b < data.size() / kBlock; ++b) {
    const float* x = data.data() + b * kBlock;
    float amax = 0.0f;
    for (size_t j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d == 0.0f ? 0.0f : 1.0f / d;
    const uint16_t d_half = FloatToHalf(d);
    Put<uint16_t>(out, d_half);
    for (size_t j = 0; j < kBlock; ++j) {
      const int8_t q = static_cast<int8_t>(std::round(x[j] * id));  // half away from zero
      Put<int8_t>(out, q);
      if (read_back != nullptr) (*read_back)[b * kBlock + j] = static_cast<float>(q) * ReferenceHalfToFloat(d_half);
    }
  }
  return out;
}

std::string RandomGgmlBlocks(uint32_t ggml_type, size_t n_values, uint64_t seed) {
  const GgmlType* t = FindGgmlType(ggml_type);
  std::string bytes(n_values / t->block_size * t->block_bytes, '\0');
  uint64_t state = seed;
  for (char& c : bytes) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    c = static_cast<char>(state >> 56);
  }
  std::vector<size_t> scale_offsets;  // of the fp16 fields in a block
  switch (ggml_type) {
    case kGgmlTypeQ4_1:
    case kGgmlTypeQ5_1:
    case kGgmlTypeQ4_K:
    case kGgmlTypeQ5_K: scale_offsets = {0, 2}; break;
    case kGgmlTypeQ6_K: scale_offsets = {208}; break;
    case kGgmlTypeQ4_0:
    case kGgmlTypeQ5_0:
    case kGgmlTypeQ8_0: scale_offsets = {0}; break;
    case kGgmlTypeF16: scale_offsets = {0}; break;
    default: break;
  }
  for (size_t b = 0; b < bytes.size(); b += t->block_bytes) {
    for (size_t off : scale_offsets) {
      const uint16_t d = FloatToHalf(0.001f * static_cast<float>(static_cast<uint8_t>(bytes[b + off]) + 1));
      std::memcpy(&bytes[b + off], &d, 2);
    }
  }
  if (ggml_type == kGgmlTypeBF16) {  // finite: no exponent of all ones
    for (size_t i = 0; i < bytes.size(); i += 2) bytes[i + 1] = static_cast<char>(bytes[i + 1] & 0xBF);
  }
  if (ggml_type == kGgmlTypeF32) {  // finite floats
    for (size_t i = 0; i < bytes.size(); i += 4) {
      const float f = static_cast<float>(static_cast<int8_t>(bytes[i])) / 64.0f;
      std::memcpy(&bytes[i], &f, 4);
    }
  }
  return bytes;
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

void GgufWriter::AddTensorF32(const std::string& name, const std::vector<uint64_t>& ne, std::span<const float> data) {
  std::string bytes(data.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), data.data(), bytes.size());
  AddTensorRaw(name, ne, 0, bytes);
}

void GgufWriter::AddTensorF16(const std::string& name, const std::vector<uint64_t>& ne, std::span<const float> data) {
  std::string bytes;
  bytes.reserve(data.size() * 2);
  for (float f : data) Put<uint16_t>(bytes, FloatToHalf(f));
  AddTensorRaw(name, ne, 1, bytes);
}

void GgufWriter::AddTensorQ8_0(const std::string& name, const std::vector<uint64_t>& ne, std::span<const float> data) {
  AddTensorRaw(name, ne, /*Q8_0=*/8, QuantizeQ8_0(data));
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

std::vector<float> PermuteRotaryRows(std::span<const float> t, int head_dim, size_t cols, bool to_halves) {
  std::vector<float> out(t.size());
  const size_t half = static_cast<size_t>(head_dim / 2), head = static_cast<size_t>(head_dim) * cols;
  for (size_t h = 0; h < t.size(); h += head) {
    for (size_t i = 0; i < half; ++i) {
      // Pairs order: rows 2i and 2i + 1 of the head; halves order: rows i and i + half.
      const size_t pair_a = h + 2 * i * cols, pair_b = h + (2 * i + 1) * cols;
      const size_t half_a = h + i * cols, half_b = h + (i + half) * cols;
      std::copy_n(t.begin() + (to_halves ? pair_a : half_a), cols, out.begin() + (to_halves ? half_a : pair_a));
      std::copy_n(t.begin() + (to_halves ? pair_b : half_b), cols, out.begin() + (to_halves ? half_b : pair_b));
    }
  }
  return out;
}

GgufWriter ModelGgufWith(const ModelWeights& w, const std::string& arch, const TensorEncoder& encode,
                         ModelWeights* read_back) {
  const ModelSpec& s = w.spec;
  const bool qwen2 = arch == "qwen2";
  GgufWriter g;
  g.SetString("general.architecture", arch);
  g.SetString("general.name", "test");
  const std::string p = arch + ".";
  g.SetUint32(p + "context_length", s.max_seq_len);
  g.SetUint32(p + "embedding_length", s.dim);
  g.SetUint32(p + "feed_forward_length", s.hidden_dim);
  g.SetUint32(p + "block_count", s.n_layers);
  g.SetUint32(p + "attention.head_count", s.n_heads);
  g.SetUint32(p + "attention.head_count_kv", s.n_kv_heads);
  g.SetUint32(p + "rope.dimension_count", s.head_dim());
  g.SetFloat32(p + "attention.layer_norm_rms_epsilon", s.norm_eps);
  g.SetFloat32(p + "rope.freq_base", s.rope_theta);

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
  if (read_back != nullptr) *read_back = w;
  // `member` picks the same tensor out of a ModelWeights. `halves`: stored with the rows
  // of each head in half-split order (qwen2's Q/K), read back in pairs order.
  auto add = [&](const std::string& name, std::vector<uint64_t> ne, auto member, bool halves = false) {
    const size_t cols = ne.size() == 1 ? 1 : ne[0];
    std::vector<float> back;
    if (halves) {
      back = encode(g, name, ne, PermuteRotaryRows(member(w), s.head_dim(), cols, /*to_halves=*/true));
      back = PermuteRotaryRows(back, s.head_dim(), cols, /*to_halves=*/false);
    } else {
      back = encode(g, name, ne, std::vector<float>(member(w).begin(), member(w).end()));
    }
    if (read_back != nullptr) member(*read_back).assign(back.begin(), back.end());
  };
  auto model = [](WeightTensor ModelWeights::*m) {
    return [m](auto& weights) -> auto& { return (weights.*m).f32(); };
  };
  add("token_embd.weight", {d, v}, model(&ModelWeights::token_embedding));
  add("output_norm.weight", {d}, model(&ModelWeights::final_norm));
  if (!s.shared_classifier) add("output.weight", {d, v}, model(&ModelWeights::classifier));
  for (size_t l = 0; l < w.layers.size(); ++l) {
    auto layer = [l](WeightTensor LayerWeights::*m) {
      return [l, m](auto& weights) -> auto& { return (weights.layers[l].*m).f32(); };
    };
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_q.weight", {d, q}, layer(&LayerWeights::wq), qwen2);
    add(p + "attn_k.weight", {d, kv}, layer(&LayerWeights::wk), qwen2);
    add(p + "attn_v.weight", {d, kv}, layer(&LayerWeights::wv));
    if (s.qkv_bias) {
      add(p + "attn_q.bias", {q}, layer(&LayerWeights::bq), qwen2);
      add(p + "attn_k.bias", {kv}, layer(&LayerWeights::bk), qwen2);
      add(p + "attn_v.bias", {kv}, layer(&LayerWeights::bv));
    }
    add(p + "attn_output.weight", {q, d}, layer(&LayerWeights::wo));
    add(p + "attn_norm.weight", {d}, layer(&LayerWeights::attn_norm));
    add(p + "ffn_gate.weight", {d, h}, layer(&LayerWeights::w1));
    add(p + "ffn_down.weight", {h, d}, layer(&LayerWeights::w2));
    add(p + "ffn_up.weight", {d, h}, layer(&LayerWeights::w3));
    add(p + "ffn_norm.weight", {d}, layer(&LayerWeights::ffn_norm));
  }
  return g;
}

GgufWriter LlamaGgufWith(const ModelWeights& w, const TensorEncoder& encode, ModelWeights* read_back) {
  return ModelGgufWith(w, "llama", encode, read_back);
}

GgufWriter Qwen2Gguf(const ModelWeights& w) { return ModelGgufWith(w, "qwen2", EncodeF32); }

GgufWriter LlamaGguf(const ModelWeights& w, bool f16) {
  return LlamaGgufWith(w, [f16](GgufWriter& g, const std::string& name, const std::vector<uint64_t>& ne,
                                const std::vector<float>& data) {
    if (!f16) {
      g.AddTensorF32(name, ne, data);
      return data;
    }
    g.AddTensorF16(name, ne, data);
    std::vector<float> back(data.size());
    for (size_t i = 0; i < data.size(); ++i) back[i] = ReferenceHalfToFloat(FloatToHalf(data[i]));
    return back;
  });
}

GgufWriter LlamaGgufQ8_0(const ModelWeights& w, ModelWeights* read_back) {
  return LlamaGgufWith(
      w,
      [](GgufWriter& g, const std::string& name, const std::vector<uint64_t>& ne, const std::vector<float>& data) {
        if (ne.size() == 1) {
          g.AddTensorF32(name, ne, data);
          return data;
        }
        std::vector<float> back;
        g.AddTensorRaw(name, ne, /*Q8_0=*/8, QuantizeQ8_0(data, &back));
        return back;
      },
      read_back);
}

}  // namespace flover::testing
