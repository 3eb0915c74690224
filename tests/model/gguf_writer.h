// GgufWriter: builds small GGUF v3 files for loader tests (tests only; binary files are
// never committed). It writes exactly what it is given, so tests can also build
// malformed files: a wrong magic or version, raw value bytes, forged counts.
//
// Layout written: magic, version, tensor count, kv count, the kv pairs in the order they
// were first set, the tensor infos in insertion order, zero padding to the alignment,
// then each tensor's data at the next aligned offset.
//
// Not thread-safe; a plain value type.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "worker/model/model_weights.h"

namespace flover::testing {

// binary32 -> binary16, round to nearest even (overflow to inf, NaN kept).
uint16_t FloatToHalf(float f);
// binary16 -> binary32 straight from the definition (independent of the loader's bit
// manipulation).
float ReferenceHalfToFloat(uint16_t h);

// Q8_0 blocks for `data` (a multiple of 32 values) as gguf-py's quantize makes them: per
// block d = max|x| / 127 stored as fp16 and q = x / d rounded half away from zero (all
// zero when d is 0). `read_back`, when set, receives what a reader dequantizes: q * d
// with d as stored.
std::string QuantizeQ8_0(std::span<const float> data, std::vector<float>* read_back = nullptr);

// n_values values of a loadable ggml type as random bytes whose fp16 scale fields are
// finite (0.001 to 0.256): valid blocks of any content. REQUIRES: n_values is a multiple
// of the type's block size.
std::string RandomGgmlBlocks(uint32_t ggml_type, size_t n_values, uint64_t seed);

class GgufWriter {
 public:
  // Header fields (defaults: "GGUF", 3, alignment 32). SetAlignment also writes
  // general.alignment.
  void SetMagic(const std::string& four_bytes) { magic_ = four_bytes; }
  void SetVersion(uint32_t version) { version_ = version; }
  void SetAlignment(uint32_t alignment);
  // Write these instead of the real counts.
  void ForgeTensorCount(uint64_t n) { forged_tensor_count_ = n; }
  void ForgeKvCount(uint64_t n) { forged_kv_count_ = n; }

  // Metadata. Setting an existing key replaces its value in place.
  void SetString(const std::string& key, const std::string& value);
  void SetUint32(const std::string& key, uint32_t value);
  void SetInt32(const std::string& key, int32_t value);
  void SetUint64(const std::string& key, uint64_t value);
  void SetFloat32(const std::string& key, float value);
  void SetBool(const std::string& key, bool value);
  void SetStringArray(const std::string& key, const std::vector<std::string>& values);
  void SetFloat32Array(const std::string& key, const std::vector<float>& values);
  void SetInt32Array(const std::string& key, const std::vector<int32_t>& values);
  // `value_bytes` follow the u32 type id verbatim.
  void SetRaw(const std::string& key, uint32_t type, const std::string& value_bytes);
  void RemoveKey(const std::string& key);

  // Tensors. `ne` is in ggml order (ne[0] = columns); data is row-major [ne1, ne0].
  void AddTensorF32(const std::string& name, const std::vector<uint64_t>& ne, std::span<const float> data);
  // Stores FloatToHalf(data[i]).
  void AddTensorF16(const std::string& name, const std::vector<uint64_t>& ne, std::span<const float> data);
  // Stores QuantizeQ8_0(data). REQUIRES: ne[0] % 32 == 0.
  void AddTensorQ8_0(const std::string& name, const std::vector<uint64_t>& ne, std::span<const float> data);
  void AddTensorRaw(const std::string& name, const std::vector<uint64_t>& ne, uint32_t ggml_type,
                    const std::string& bytes);
  void RemoveTensor(const std::string& name);

  std::string Serialize() const;
  // False (and a message on stderr) when the file cannot be written.
  bool WriteFile(const std::string& path) const;

 private:
  struct Kv {
    std::string key;
    uint32_t type;
    std::string value;  // encoded bytes after the type id
  };
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::string bytes;
  };
  void Set(const std::string& key, uint32_t type, std::string value);

  std::string magic_ = "GGUF";
  uint32_t version_ = 3;
  uint32_t alignment_ = 32;
  std::optional<uint64_t> forged_tensor_count_, forged_kv_count_;
  std::vector<Kv> kvs_;
  std::vector<Tensor> tensors_;
};

// A complete llama GGUF for `w`: the metadata llama.cpp writes (architecture, shape,
// epsilon, rope base, context length), tensors as F32 or F16, output.weight only when
// the classifier is separate, and a vocabulary of spec.vocab_size pieces ("<unk>",
// "<s>", "</s>", then "t3", "t4", ...) with scores -id.
GgufWriter LlamaGguf(const ModelWeights& w, bool f16 = false);

// Adds one tensor of the model to `g` in an encoding of its choice and returns the fp32
// values a loader reads back from it. `ne` is in ggml order; `data` row-major.
using TensorEncoder = std::function<std::vector<float>(GgufWriter& g, const std::string& name,
                                                       const std::vector<uint64_t>& ne, const std::vector<float>& data)>;
// A GGUF of architecture `arch` ("llama" or "qwen2") for `w`, its metadata under the
// architecture's prefix, every tensor written by `encode`; `read_back`, when set,
// receives `w` with each tensor replaced by what `encode` returned for it. With
// spec.qkv_bias the q/k/v biases are written (blk.N.attn_{q,k,v}.bias). "qwen2" stores
// the rows of each head of attn_q/attn_k (and of their biases) in Hugging Face's
// half-split order, as llama.cpp's converter leaves them; "llama" in pairs order, as
// ModelWeights holds them.
GgufWriter ModelGgufWith(const ModelWeights& w, const std::string& arch, const TensorEncoder& encode,
                         ModelWeights* read_back = nullptr);
GgufWriter LlamaGgufWith(const ModelWeights& w, const TensorEncoder& encode, ModelWeights* read_back = nullptr);
// ModelGgufWith(w, "qwen2", ...) with F32 tensors. REQUIRES: w.spec.qkv_bias.
GgufWriter Qwen2Gguf(const ModelWeights& w);

// Rows of `t` (heads of head_dim rows of `cols` values) from pairs order (2i, 2i+1) to
// half-split order (i, i + head_dim/2) when to_halves, else back.
std::vector<float> PermuteRotaryRows(std::span<const float> t, int head_dim, size_t cols, bool to_halves);
// As llama.cpp's Q8_0 files: matrices Q8_0, norms F32. REQUIRES: dim, hidden_dim,
// q_dim and kv_dim are multiples of 32.
GgufWriter LlamaGgufQ8_0(const ModelWeights& w, ModelWeights* read_back = nullptr);

}  // namespace flover::testing
