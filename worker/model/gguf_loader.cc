#include "worker/model/gguf_loader.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include "worker/model/gguf_architecture.h"
#include "worker/model/gguf_reader.h"
#include "worker/model/gguf_vocab.h"
#include "worker/model/rotary_layout.h"

namespace flover {
namespace {

// An integer metadata value as an int; `fallback` when the key is absent (nullopt: the
// key is required).
Result<int> GetInt(const GgufReader& r, const std::string& key, std::optional<int> fallback = std::nullopt) {
  const GgufValue* v = r.Find(key);
  if (v == nullptr) {
    if (fallback) return *fallback;
    return Corruption("metadata " + key + " is missing");
  }
  if (!v->is_integer())
    return Corruption("metadata " + key + " must be an integer, got " + GgufValueTypeName(v->type));
  const bool is_unsigned = v->type == GgufValueType::kUint8 || v->type == GgufValueType::kUint16 ||
                           v->type == GgufValueType::kUint32 || v->type == GgufValueType::kUint64;
  if (is_unsigned ? v->u > static_cast<uint64_t>(INT_MAX) : (v->i < INT_MIN || v->i > INT_MAX))
    return Corruption("metadata " + key + " = " + (is_unsigned ? std::to_string(v->u) : std::to_string(v->i)) +
                      " is out of range");
  return static_cast<int>(is_unsigned ? static_cast<int64_t>(v->u) : v->i);
}

Result<float> GetFloat(const GgufReader& r, const std::string& key, std::optional<float> fallback = std::nullopt) {
  const GgufValue* v = r.Find(key);
  if (v == nullptr) {
    if (fallback) return *fallback;
    return Corruption("metadata " + key + " is missing");
  }
  if (!v->is_float()) return Corruption("metadata " + key + " must be a float, got " + GgufValueTypeName(v->type));
  return static_cast<float>(v->f);
}

Result<std::string> GetString(const GgufReader& r, const std::string& key) {
  const GgufValue* v = r.Find(key);
  if (v == nullptr) return Corruption("metadata " + key + " is missing");
  if (v->type != GgufValueType::kString)
    return Corruption("metadata " + key + " must be a string, got " + GgufValueTypeName(v->type));
  return v->str;
}

// Missing trailing dimensions count as 1 on either side.
bool ShapeMatches(const std::vector<uint64_t>& actual, const std::vector<uint64_t>& expected) {
  const size_t n = std::max(actual.size(), expected.size());
  for (size_t i = 0; i < n; ++i) {
    const uint64_t a = i < actual.size() ? actual[i] : 1;
    const uint64_t e = i < expected.size() ? expected[i] : 1;
    if (a != e) return false;
  }
  return true;
}

// The tensor `name`, checked to exist, to be of a loadable type (gguf_quant.h) and to
// have the shape `expected` (ggml order, ne0 = columns); `meaning` names the dims for the
// message ("[dim, q_dim]").
Result<const GgufTensorInfo*> CheckTensor(const GgufReader& r, const std::string& name,
                                          const std::vector<uint64_t>& expected, const char* meaning) {
  const GgufTensorInfo* info = r.FindTensor(name);
  if (info == nullptr) return Corruption("tensor " + name + " is missing");
  FLOVER_RETURN_IF_ERROR(CheckLoadableGgmlType(info->ggml_type).WithContext("tensor " + name));
  if (!ShapeMatches(info->ne, expected))
    return Corruption("tensor " + name + " has shape " + GgufShapeString(info->ne) + ", expected " + GgufShapeString(expected) + " " +
                      meaning + " (ggml order, ne0 first)");
  FLOVER_CHECK(info->layout.has_value()) << name;  // the reader lays out every known type
  return info;
}

// About this many fp32 values of a tensor are held at a time besides the result.
constexpr uint64_t kChunkFloats = uint64_t{1} << 20;

// The format the CPU computes a ggml type in, if it has one.
std::optional<cpu::WeightFormat> NativeFormat(uint32_t ggml_type) {
  switch (ggml_type) {
    case kGgmlTypeF32: return cpu::WeightFormat::kF32;
    case kGgmlTypeF16: return cpu::WeightFormat::kF16;
    case kGgmlTypeBF16: return cpu::WeightFormat::kBF16;
    case kGgmlTypeQ8_0: return cpu::WeightFormat::kQ8_0;
    case kGgmlTypeQ4_0: return cpu::WeightFormat::kQ4_0;
    case kGgmlTypeQ4_K: return cpu::WeightFormat::kQ4_K;
    default: return std::nullopt;
  }
}

// The part `slice` of a vector or matrix (after CheckTensor) as fp32, where the slice's
// rows are the file's (slice.cols == ne[0]). Only the rows in the slice are read and
// dequantized; a column slice goes a chunk of whole rows at a time.
Result<std::vector<float>> ReadSlice(GgufReader& r, const GgufTensorInfo& info, const TensorSlice& slice) {
  const uint64_t n_cols = info.layout->n_cols;
  std::vector<float> out(static_cast<size_t>(slice.padded_rows * slice.n_cols), 0.0f);
  if (slice.n_rows == 0) return out;  // an LM head slice that is all padding
  if (slice.col_begin == 0 && static_cast<uint64_t>(slice.n_cols) == n_cols) {
    FLOVER_RETURN_IF_ERROR(r.ReadRowsAsFloat(info, slice.row_begin, slice.n_rows, out.data()));
    return out;
  }
  const uint64_t rows_per_chunk = std::clamp<uint64_t>(kChunkFloats / std::max<uint64_t>(n_cols, 1), 1,
                                                       std::max<int64_t>(slice.n_rows, 1));
  std::vector<float> rows(rows_per_chunk * n_cols);
  for (uint64_t done = 0; done < static_cast<uint64_t>(slice.n_rows); done += rows_per_chunk) {
    const uint64_t n = std::min<uint64_t>(rows_per_chunk, slice.n_rows - done);
    FLOVER_RETURN_IF_ERROR(r.ReadRowsAsFloat(info, slice.row_begin + done, n, rows.data()));
    for (uint64_t i = 0; i < n; ++i)
      std::copy_n(rows.begin() + i * n_cols + slice.col_begin, slice.n_cols, out.begin() + (done + i) * slice.n_cols);
  }
  return out;
}

// The part `slice` of a matrix stored in `format` (its native format), as stored: the
// slice's rows, or of each row the byte range of its columns (whole blocks: the format
// choice checked that), read a chunk of rows at a time. No value is converted.
Result<WeightTensor> ReadStoredSlice(GgufReader& r, const GgufTensorInfo& info, cpu::WeightFormat format,
                                     const TensorSlice& slice) {
  const uint64_t file_row = info.layout->row_bytes;
  const int64_t out_row = cpu::WeightRowBytes(format, slice.n_cols);
  FLOVER_CHECK(cpu::WeightRowBytes(format, slice.cols) == static_cast<int64_t>(file_row)) << info.name;
  WeightTensor out = WeightTensor::Zeros(format, slice.padded_rows * out_row);
  if (slice.n_rows == 0) return out;  // an LM head slice that is all padding
  uint8_t* dst = out.mutable_bytes().data();
  if (slice.n_cols == slice.cols) {
    FLOVER_RETURN_IF_ERROR(r.ReadTensorRows(info, slice.row_begin, slice.n_rows, dst));
    return out;
  }
  const int64_t begin = cpu::WeightRowBytes(format, slice.col_begin);
  const uint64_t rows_per_chunk =
      std::clamp<uint64_t>(GgufReader::kDefaultChunkBytes / std::max<uint64_t>(file_row, 1), 1, slice.n_rows);
  std::vector<uint8_t> rows(rows_per_chunk * file_row);
  for (uint64_t done = 0; done < static_cast<uint64_t>(slice.n_rows); done += rows_per_chunk) {
    const uint64_t n = std::min<uint64_t>(rows_per_chunk, slice.n_rows - done);
    FLOVER_RETURN_IF_ERROR(r.ReadTensorRows(info, slice.row_begin + done, n, rows.data()));
    for (uint64_t i = 0; i < n; ++i)
      std::memcpy(dst + (done + i) * out_row, rows.data() + i * file_row + begin, static_cast<size_t>(out_row));
  }
  return out;
}

// The part `slice` of a matrix converted to `format`: dequantized to fp32 a chunk of rows
// at a time (ReadSlice's arithmetic) and converted chunk by chunk.
Result<WeightTensor> ReadConvertedSlice(GgufReader& r, const GgufTensorInfo& info, cpu::WeightFormat format,
                                        const TensorSlice& slice) {
  const int64_t chunk_rows = std::max<int64_t>(1, static_cast<int64_t>(kChunkFloats) / slice.cols);
  Result<WeightTensor> out = WeightTensor::FromF32Rows(
      format, slice.padded_rows, slice.n_cols, [&](int64_t begin, int64_t n, float* dst) -> Status {
        const int64_t real = std::clamp<int64_t>(slice.n_rows - begin, 0, n);  // the rest is padding
        std::fill(dst + real * slice.n_cols, dst + n * slice.n_cols, 0.0f);
        for (int64_t done = 0; done < real; done += chunk_rows) {
          TensorSlice part = slice;
          part.row_begin = slice.row_begin + begin + done;
          part.n_rows = part.padded_rows = std::min(chunk_rows, real - done);
          FLOVER_ASSIGN_OR_RETURN(std::vector<float> values, ReadSlice(r, info, part));
          std::copy(values.begin(), values.end(), dst + done * slice.n_cols);
        }
        return Status::Ok();
      });
  if (out.ok()) out->ZeroRowsFrom(slice.n_rows, slice.n_cols);  // padding: zero bytes
  return out;
}

// Whether rows [0, n_rows) of row_len T's agree as `read(0, ...)` and `read(1, ...)`
// give them (read(which, first_row, n, out)), compared about chunk_len values at a time.
template <class T, class ReadRows>
Result<bool> SameRows(uint64_t n_rows, uint64_t row_len, uint64_t chunk_len, const ReadRows& read) {
  const uint64_t rows_per_chunk =
      std::clamp<uint64_t>(chunk_len / std::max<uint64_t>(row_len, 1), 1, std::max<uint64_t>(n_rows, 1));
  std::vector<T> x(rows_per_chunk * row_len), y(x.size());
  for (uint64_t done = 0; done < n_rows; done += rows_per_chunk) {
    const uint64_t n = std::min(rows_per_chunk, n_rows - done);
    FLOVER_RETURN_IF_ERROR(read(0, done, n, x.data()));
    FLOVER_RETURN_IF_ERROR(read(1, done, n, y.data()));
    if (std::memcmp(x.data(), y.data(), n * row_len * sizeof(T)) != 0) return false;
  }
  return true;
}

// Whether two tensors (after CheckTensor, of one shape) hold the same values: the same
// bytes for one type, else the same fp32 values; compared a chunk of rows at a time.
Result<bool> SameValues(GgufReader& r, const GgufTensorInfo& a, const GgufTensorInfo& b) {
  const GgmlTensorLayout& l = *a.layout;
  FLOVER_CHECK(l.n_rows == b.layout->n_rows && l.n_cols == b.layout->n_cols) << a.name << " " << b.name;
  if (a.ggml_type == b.ggml_type) {
    return SameRows<uint8_t>(l.n_rows, l.row_bytes, GgufReader::kDefaultChunkBytes,
                             [&](int which, uint64_t first, uint64_t n, uint8_t* out) {
                               return r.ReadTensorRows(which == 0 ? a : b, first, n, out);
                             });
  }
  return SameRows<float>(l.n_rows, l.n_cols, kChunkFloats, [&](int which, uint64_t first, uint64_t n, float* out) {
    return r.ReadRowsAsFloat(which == 0 ? a : b, first, n, out);
  });
}

// llama.cpp's names of ModelWeights' tensors (common to the architectures of
// gguf_architecture.h; a layer's follow "blk.N."), and what their ggml dimensions are,
// for messages. Tensors without a name here are never in a spec ReadSpec makes.
template <typename Owner>
struct GgufName {
  WeightTensor Owner::*member;
  const char* name;
  const char* meaning;  // "[dim, n_heads*head_dim]" (ggml order)
  bool vector;          // shape [n] rather than [cols, rows]
};

const std::vector<GgufName<LayerWeights>>& GgufLayerNames() {
  using L = LayerWeights;
  static const std::vector<GgufName<L>> kNames = {
      {&L::attn_norm, "attn_norm.weight", "[dim]", true},
      {&L::wq, "attn_q.weight", "[dim, n_heads*head_dim]", false},
      {&L::wk, "attn_k.weight", "[dim, n_kv_heads*head_dim]", false},
      {&L::wv, "attn_v.weight", "[dim, n_kv_heads*head_dim]", false},
      {&L::bq, "attn_q.bias", "[n_heads*head_dim]", true},
      {&L::bk, "attn_k.bias", "[n_kv_heads*head_dim]", true},
      {&L::bv, "attn_v.bias", "[n_kv_heads*head_dim]", true},
      {&L::wo, "attn_output.weight", "[n_heads*head_dim, dim]", false},
      {&L::ffn_norm, "ffn_norm.weight", "[dim]", true},
      {&L::w1, "ffn_gate.weight", "[dim, hidden]", false},
      {&L::w2, "ffn_down.weight", "[hidden, dim]", false},
      {&L::w3, "ffn_up.weight", "[dim, hidden]", false},
  };
  return kNames;
}

const std::vector<GgufName<ModelWeights>>& GgufModelNames() {
  using M = ModelWeights;
  static const std::vector<GgufName<M>> kNames = {
      {&M::token_embedding, "token_embd.weight", "[dim, vocab]", false},
      {&M::final_norm, "output_norm.weight", "[dim]", true},
      {&M::classifier, "output.weight", "[dim, vocab]", false},
  };
  return kNames;
}

template <typename Owner>
const GgufName<Owner>& Find(const std::vector<GgufName<Owner>>& names, const TensorInfo<Owner>& info) {
  for (const GgufName<Owner>& n : names)
    if (n.member == info.member) return n;
  FLOVER_CHECK(false) << "tensor " << info.name << " has no GGUF name";
  std::abort();
}
const GgufName<LayerWeights>& GgufNameOf(const TensorInfo<LayerWeights>& info) { return Find(GgufLayerNames(), info); }
const GgufName<ModelWeights>& GgufNameOf(const TensorInfo<ModelWeights>& info) { return Find(GgufModelNames(), info); }

// One tensor to read: its name in the file, expected ggml shape, whether it is a matrix
// (kept in a chosen format) or a vector (fp32), how a rank's shard cuts it, and where it
// goes.
struct PlannedGgufTensor {
  std::string name;
  std::vector<uint64_t> ne;
  const char* meaning;
  bool matrix;
  TensorSplit split;
  bool halves_to_pairs;  // rows permuted per head (Q/K of an architecture that rotates halves)
  WeightTensor* dst;     // nullptr in a checking pass
};

// Calls fn(PlannedGgufTensor) for every required tensor of the spec (all but output.weight, which
// is optional: an absent one means a classifier shared with the embedding), model
// tensors first, and stops at the first error. dst is nullptr when `w` is (a checking
// pass); otherwise w->layers must already have spec.n_layers entries.
template <typename Fn>
Status ForEachTensor(const ModelSpec& spec, const GgufArchitecture& arch, ModelWeights* w, Fn&& fn) {
  auto plan = [&](const auto& info, const std::string& prefix, WeightTensor* dst) {
    const auto& gguf = GgufNameOf(info);
    const uint64_t rows = info.rows(spec), cols = info.cols(spec);
    return PlannedGgufTensor{prefix + gguf.name,
                             gguf.vector ? std::vector<uint64_t>{rows} : std::vector<uint64_t>{cols, rows},
                             gguf.meaning,
                             info.matrix,
                             info.split,
                             false,
                             dst};
  };
  for (const TensorInfo<ModelWeights>& info : ModelTensors()) {
    if (!info.present(spec) || info.member == &ModelWeights::classifier) continue;
    FLOVER_RETURN_IF_ERROR(fn(plan(info, "", w ? &(w->*info.member) : nullptr)));
  }
  for (int l = 0; l < spec.n_layers; ++l) {
    const std::string prefix = "blk." + std::to_string(l) + ".";
    for (const TensorInfo<LayerWeights>& info : LayerTensors()) {
      if (!info.present(spec)) continue;
      PlannedGgufTensor p = plan(info, prefix, w ? &(w->layers[l].*info.member) : nullptr);
      p.halves_to_pairs = arch.rotates_halves && (info.member == &LayerWeights::wq || info.member == &LayerWeights::wk ||
                                                  info.member == &LayerWeights::bq || info.member == &LayerWeights::bk);
      FLOVER_RETURN_IF_ERROR(fn(p));
    }
  }
  return Status::Ok();
}

Result<const GgufArchitecture*> ReadArchitecture(const GgufReader& r) {
  FLOVER_ASSIGN_OR_RETURN(std::string name, GetString(r, "general.architecture"));
  const GgufArchitecture* arch = FindGgufArchitecture(name);
  if (arch == nullptr)
    return InvalidArgument("architecture is \"" + name + "\"; supported: " + SupportedGgufArchitectures());
  return arch;
}

Result<ModelSpec> ReadSpec(const GgufReader& r, const GgufArchitecture& arch) {
  const std::string p = std::string(arch.name) + ".";
  ModelSpec spec;
  spec.arch = arch.spec_arch;
  spec.qkv_bias = arch.qkv_bias;
  FLOVER_ASSIGN_OR_RETURN(spec.dim, GetInt(r, p + "embedding_length"));
  FLOVER_ASSIGN_OR_RETURN(spec.hidden_dim, GetInt(r, p + "feed_forward_length"));
  FLOVER_ASSIGN_OR_RETURN(spec.n_layers, GetInt(r, p + "block_count"));
  FLOVER_ASSIGN_OR_RETURN(spec.n_heads, GetInt(r, p + "attention.head_count"));
  FLOVER_ASSIGN_OR_RETURN(spec.n_kv_heads, GetInt(r, p + "attention.head_count_kv", spec.n_heads));
  FLOVER_ASSIGN_OR_RETURN(spec.max_seq_len, GetInt(r, p + "context_length"));
  FLOVER_ASSIGN_OR_RETURN(spec.norm_eps, GetFloat(r, p + "attention.layer_norm_rms_epsilon"));
  FLOVER_ASSIGN_OR_RETURN(spec.rope_theta, GetFloat(r, p + "rope.freq_base", 10000.0f));
  FLOVER_ASSIGN_OR_RETURN(spec.bos_id, GetInt(r, "tokenizer.ggml.bos_token_id", 1));
  FLOVER_ASSIGN_OR_RETURN(spec.eos_id, GetInt(r, "tokenizer.ggml.eos_token_id", 2));
  if (const GgufValue* chat_template = r.Find("tokenizer.chat_template")) {
    if (chat_template->type != GgufValueType::kString)
      return Corruption("metadata tokenizer.chat_template must be a string, got " +
                        std::string(GgufValueTypeName(chat_template->type)));
    spec.chat_template = chat_template->str;
  }

  // The vocabulary size is the embedding's row count.
  const GgufTensorInfo* emb = r.FindTensor("token_embd.weight");
  if (emb == nullptr) return Corruption("tensor token_embd.weight is missing");
  if (emb->ne.size() != 2 || emb->ne[0] != static_cast<uint64_t>(spec.dim) || emb->ne[1] == 0 ||
      emb->ne[1] > static_cast<uint64_t>(INT_MAX))
    return Corruption("tensor token_embd.weight has shape " + GgufShapeString(emb->ne) + ", expected [" +
                      std::to_string(spec.dim) + ", vocab] (embedding_length " + std::to_string(spec.dim) + ")");
  spec.vocab_size = static_cast<int>(emb->ne[1]);
  FLOVER_ASSIGN_OR_RETURN(int declared_vocab, GetInt(r, p + "vocab_size", spec.vocab_size));
  if (declared_vocab != spec.vocab_size)
    return Corruption(p + "vocab_size is " + std::to_string(declared_vocab) + " but token_embd.weight has " +
                      std::to_string(spec.vocab_size) + " rows");

  Status valid = spec.Validate();
  if (!valid.ok()) return Corruption("metadata describes an invalid model (" + valid.message() + ")");
  FLOVER_ASSIGN_OR_RETURN(int rope_dims, GetInt(r, p + "rope.dimension_count", spec.head_dim()));
  if (rope_dims != spec.head_dim())
    return InvalidArgument(p + "rope.dimension_count is " + std::to_string(rope_dims) + " but head_dim is " +
                           std::to_string(spec.head_dim()) + "; partial rotary embeddings are not supported");
  return spec;
}

Result<GgufModel> Load(GgufReader& r, const LoadTarget& target) {
  GgufModel model;
  ModelWeights& w = model.weights;
  FLOVER_ASSIGN_OR_RETURN(const GgufArchitecture* arch, ReadArchitecture(r));
  FLOVER_ASSIGN_OR_RETURN(w.spec, ReadSpec(r, *arch));
  ModelSpec& spec = w.spec;
  const uint64_t d = spec.dim, v = spec.vocab_size;

  // Check every tensor before allocating anything: metadata can claim any number of
  // layers, but tensors that exist, have the right shapes and lie inside the file bound
  // what the loading pass allocates by the file size.
  FLOVER_RETURN_IF_ERROR(ForEachTensor(spec, *arch, nullptr, [&](const PlannedGgufTensor& p) {
    return CheckTensor(r, p.name, p.ne, p.meaning).status();
  }));
  // LLaMA 3.1+ files carry their rescaled rotary frequencies as divisors.
  if (const GgufTensorInfo* factors = r.FindTensor("rope_freqs.weight")) {
    const uint64_t pairs = static_cast<uint64_t>(spec.rotary_dims() / 2);
    FLOVER_ASSIGN_OR_RETURN(factors, CheckTensor(r, "rope_freqs.weight", {pairs}, "[head_dim / 2]"));
    spec.rope_freq_factors.resize(pairs);
    FLOVER_RETURN_IF_ERROR(r.ReadRowsAsFloat(*factors, 0, factors->layout->n_rows, spec.rope_freq_factors.data()));
    const Status valid = spec.Validate();
    if (!valid.ok()) return Corruption("tensor rope_freqs.weight: " + valid.message());
  }
  const bool has_output = r.FindTensor("output.weight") != nullptr;
  if (has_output) FLOVER_RETURN_IF_ERROR(CheckTensor(r, "output.weight", {d, v}, "[dim, vocab]").status());
  FLOVER_ASSIGN_OR_RETURN(model.tokenizer, ReadGgufVocab(r, spec));

  FLOVER_RETURN_IF_ERROR(target.Check(spec));

  // Only this rank's part of each tensor is read: vectors as fp32, matrices as stored
  // when the policy keeps their type, else dequantized and converted a chunk at a time.
  FormatNotes notes;
  auto read_shard = [&](const std::string& name, const std::vector<uint64_t>& ne, const char* meaning, bool matrix,
                        TensorSplit split) -> Result<WeightTensor> {
    FLOVER_ASSIGN_OR_RETURN(const GgufTensorInfo* info, CheckTensor(r, name, ne, meaning));
    const GgmlTensorLayout& l = *info->layout;
    if (!matrix) {
      const TensorSlice slice = SliceOf(split, spec, target.shard, static_cast<int64_t>(info->n_elements));
      if (static_cast<uint64_t>(slice.rows) == l.n_rows && static_cast<uint64_t>(slice.cols) == l.n_cols) {
        FLOVER_ASSIGN_OR_RETURN(std::vector<float> part, ReadSlice(r, *info, slice));
        return WeightTensor(std::move(part));
      }
      // All of it (world 1, a replicated vector) or a split vector: read it whole.
      std::vector<float> whole(info->n_elements);
      FLOVER_RETURN_IF_ERROR(r.ReadRowsAsFloat(*info, 0, l.n_rows, whole.data()));
      return WeightTensor(ShardTensor(split, spec, target.shard, std::move(whole)));
    }
    const int64_t rows = static_cast<int64_t>(l.n_rows), cols = static_cast<int64_t>(l.n_cols);
    const std::optional<cpu::WeightFormat> native = NativeFormat(info->ggml_type);
    FLOVER_ASSIGN_OR_RETURN(const MatrixFormat format,
                            ChooseMatrixFormat(target.weights, {native, FindGgmlType(info->ggml_type)->name}, name,
                                               cols, split, spec, target.shard.world));
    notes.Add(format.note);
    const TensorSlice slice = MatrixSliceOf(split, spec, target.shard, rows, cols);
    if (native == format.format) return ReadStoredSlice(r, *info, format.format, slice);
    return ReadConvertedSlice(r, *info, format.format, slice);
  };
  w.layers.resize(spec.n_layers);
  FLOVER_RETURN_IF_ERROR(ForEachTensor(spec, *arch, &w, [&](const PlannedGgufTensor& p) -> Status {
    FLOVER_ASSIGN_OR_RETURN(*p.dst, read_shard(p.name, p.ne, p.meaning, p.matrix, p.split));
    if (p.halves_to_pairs) {
      // A rank's rows are whole heads (shard.h), so each head is permuted in place; a
      // vector (bias) has rows of one value.
      const int64_t cols = p.matrix ? spec.dim : 1;
      HalvesToPairs(p.dst->mutable_bytes(), spec.head_dim(), cpu::WeightRowBytes(p.dst->format(), cols));
    }
    return Status::Ok();
  }));
  spec.shared_classifier = true;
  if (has_output) {
    // Converters often write the tied embedding out again; share it instead of keeping
    // a second copy.
    FLOVER_ASSIGN_OR_RETURN(const GgufTensorInfo* output, CheckTensor(r, "output.weight", {d, v}, "[dim, vocab]"));
    FLOVER_ASSIGN_OR_RETURN(const GgufTensorInfo* embedding, CheckTensor(r, "token_embd.weight", {d, v}, "[dim, vocab]"));
    FLOVER_ASSIGN_OR_RETURN(bool tied, SameValues(r, *output, *embedding));
    if (!tied) {
      spec.shared_classifier = false;
      FLOVER_ASSIGN_OR_RETURN(w.classifier,
                              read_shard("output.weight", {d, v}, "[dim, vocab]", true, TensorSplit::kVocabRows));
    }
  }
  notes.Log(r.path());
  FinishShard(w, target.shard);
  FLOVER_RETURN_IF_ERROR(ValidateShard(w, target.shard));
  return model;
}

}  // namespace

Result<GgufModel> LoadGgufModel(const std::string& path, const LoadTarget& target) {
  FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<GgufReader> reader, GgufReader::Open(path));
  return LoadGgufModel(*reader, target);
}

Result<GgufModel> LoadGgufModel(GgufReader& reader, const LoadTarget& target) {
  Result<GgufModel> model = Load(reader, target);
  if (!model.ok()) return model.status().WithContext(reader.path());
  return model;
}

Result<std::optional<Tokenizer>> LoadGgufTokenizer(const std::string& path) {
  FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<GgufReader> reader, GgufReader::Open(path));
  Result<std::optional<Tokenizer>> tokenizer = [&]() -> Result<std::optional<Tokenizer>> {
    FLOVER_ASSIGN_OR_RETURN(const GgufArchitecture* arch, ReadArchitecture(*reader));
    FLOVER_ASSIGN_OR_RETURN(const ModelSpec spec, ReadSpec(*reader, *arch));
    return ReadGgufVocab(*reader, spec);
  }();
  if (!tokenizer.ok()) return tokenizer.status().WithContext(path);
  return tokenizer;
}

}  // namespace flover
