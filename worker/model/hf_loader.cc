#include "worker/model/hf_loader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>
#include <utility>
#include <vector>

#include "worker/model/rotary_layout.h"
#include "worker/model/safetensors_reader.h"

namespace flover {
namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

// Every tensor of the folder and the file it is in.
struct TensorFiles {
  struct Where {
    const SafetensorsReader* reader;
    const SafetensorsTensor* tensor;
  };
  std::vector<std::unique_ptr<SafetensorsReader>> readers;
  std::map<std::string, Where> tensors;

  const Where* Find(const std::string& name) const {
    const auto it = tensors.find(name);
    return it == tensors.end() ? nullptr : &it->second;
  }
};

// A file name the index may name: inside the folder, no path.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

Result<TensorFiles> OpenTensorFiles(const std::string& dir) {
  TensorFiles files;
  std::error_code ec;
  if (std::filesystem::exists(dir + "/" + kSingleFile, ec)) {
    FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsReader> r, SafetensorsReader::Open(dir + "/" + kSingleFile));
    for (const SafetensorsTensor& t : r->tensors()) files.tensors.emplace(t.name, TensorFiles::Where{r.get(), &t});
    files.readers.push_back(std::move(r));
    return files;
  }
  Result<std::string> text = ReadSmallFile(dir + "/" + kIndexFile);
  if (!text.ok() && text.status().code() == StatusCode::kNotFound)
    return NotFound(dir + ": has neither " + kSingleFile + " nor " + kIndexFile +
                    " (Flover reads safetensors weights; pytorch_model.bin is not supported)");
  if (!text.ok()) return text.status();

  const std::string index_path = dir + "/" + kIndexFile;
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(*text);
  } catch (const nlohmann::json::exception& e) {
    return Corruption(index_path + ": not valid JSON: " + e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    return Corruption(index_path + ": has no \"weight_map\" object");
  std::map<std::string, const SafetensorsReader*> opened;
  for (const auto& [tensor, file_json] : index["weight_map"].items()) {
    if (!file_json.is_string())
      return Corruption(index_path + ": weight_map[\"" + tensor + "\"] is not a file name: " + file_json.dump());
    const std::string file = file_json.get<std::string>();
    if (!IsPlainFileName(file))
      return Corruption(index_path + ": weight_map[\"" + tensor + "\"] = \"" + file +
                        "\" is not a file name inside the folder");
    auto it = opened.find(file);
    if (it == opened.end()) {
      Result<std::unique_ptr<SafetensorsReader>> r = SafetensorsReader::Open(dir + "/" + file);
      if (!r.ok() && r.status().code() == StatusCode::kNotFound)
        return NotFound(dir + "/" + file + ": missing shard file (" + kIndexFile + " puts " + tensor + " in it)");
      if (!r.ok()) return r.status();
      it = opened.emplace(file, r->get()).first;
      files.readers.push_back(std::move(r).value());
    }
    const SafetensorsTensor* t = it->second->Find(tensor);
    if (t == nullptr)
      return Corruption(it->second->path() + ": has no tensor " + tensor + ", which " + kIndexFile + " puts there");
    files.tensors.emplace(tensor, TensorFiles::Where{it->second, t});
  }
  return files;
}

// The checkpoint's names of ModelWeights' tensors, per layout (nullptr: the layout has no
// such tensor; the spec never asks for it).
template <typename Owner>
struct HfName {
  WeightTensor Owner::*member;
  const char* llama;
  const char* gptj;
  bool vector;  // shape [n] rather than [rows, cols]
};

const std::vector<HfName<LayerWeights>>& LayerNames() {
  using L = LayerWeights;
  static const std::vector<HfName<L>> kNames = {
      {&L::attn_norm, "input_layernorm.weight", "ln_1.weight", true},
      {&L::attn_norm_bias, nullptr, "ln_1.bias", true},
      {&L::wq, "self_attn.q_proj.weight", "attn.q_proj.weight", false},
      {&L::wk, "self_attn.k_proj.weight", "attn.k_proj.weight", false},
      {&L::wv, "self_attn.v_proj.weight", "attn.v_proj.weight", false},
      {&L::bq, "self_attn.q_proj.bias", nullptr, true},
      {&L::bk, "self_attn.k_proj.bias", nullptr, true},
      {&L::bv, "self_attn.v_proj.bias", nullptr, true},
      {&L::wo, "self_attn.o_proj.weight", "attn.out_proj.weight", false},
      {&L::ffn_norm, "post_attention_layernorm.weight", nullptr, true},
      {&L::ffn_norm_bias, nullptr, nullptr, true},
      {&L::w1, "mlp.gate_proj.weight", "mlp.fc_in.weight", false},
      {&L::w2, "mlp.down_proj.weight", "mlp.fc_out.weight", false},
      {&L::w3, "mlp.up_proj.weight", nullptr, false},
      {&L::b1, nullptr, "mlp.fc_in.bias", true},
      {&L::b2, nullptr, "mlp.fc_out.bias", true},
  };
  return kNames;
}

const std::vector<HfName<ModelWeights>>& ModelNames() {
  using M = ModelWeights;
  static const std::vector<HfName<M>> kNames = {
      {&M::token_embedding, "model.embed_tokens.weight", "transformer.wte.weight", false},
      {&M::final_norm, "model.norm.weight", "transformer.ln_f.weight", true},
      {&M::final_norm_bias, nullptr, "transformer.ln_f.bias", true},
      {&M::classifier, "lm_head.weight", "lm_head.weight", false},
      {&M::classifier_bias, nullptr, "lm_head.bias", true},
  };
  return kNames;
}

template <typename Owner>
const HfName<Owner>& NameOf(const std::vector<HfName<Owner>>& names, WeightTensor Owner::*member) {
  for (const auto& n : names)
    if (n.member == member) return n;
  FLOVER_CHECK(false) << "tensor without a Hugging Face name";
  return names.front();
}

// One tensor to read: its name in the checkpoint, full shape, whether it is a matrix
// (kept in a chosen format) or a vector (fp32), split, and destination.
struct Planned {
  std::string name;
  std::vector<int64_t> shape;
  bool matrix;
  TensorSplit split;
  bool halves_to_pairs;  // rows of each head permuted (q/k of Llama-family checkpoints)
  WeightTensor* dst;     // nullptr in the checking pass
};

// Calls fn(Planned) for every tensor the spec has, layers first, and stops at the first
// error. dst is nullptr when `w` is; otherwise w->layers has spec.n_layers entries.
template <typename Fn>
Status ForEachHfTensor(const HfConfig& config, ModelWeights* w, Fn&& fn) {
  const ModelSpec& spec = config.spec;
  const bool llama = config.layout == HfLayout::kLlama;
  auto plan = [&](const auto& info, const auto& hf, const std::string& prefix, WeightTensor* dst) {
    const char* name = llama ? hf.llama : hf.gptj;
    FLOVER_CHECK(name != nullptr) << info.name << " has no name in " << config.architecture;
    Planned p{prefix + name, {}, info.matrix, info.split, false, dst};
    if (hf.vector) {
      p.shape = {info.rows(spec)};
    } else {
      p.shape = {info.rows(spec), info.cols(spec)};
    }
    return p;
  };
  for (int l = 0; l < spec.n_layers; ++l) {
    const std::string prefix = (llama ? "model.layers." : "transformer.h.") + std::to_string(l) + ".";
    for (const auto& info : LayerTensors()) {
      if (!info.present(spec)) continue;
      Planned p = plan(info, NameOf(LayerNames(), info.member), prefix, w ? &(w->layers[l].*info.member) : nullptr);
      p.halves_to_pairs = config.rotates_halves && (info.member == &LayerWeights::wq || info.member == &LayerWeights::wk ||
                                                    info.member == &LayerWeights::bq || info.member == &LayerWeights::bk);
      FLOVER_RETURN_IF_ERROR(fn(p));
    }
  }
  for (const auto& info : ModelTensors()) {
    if (!info.present(spec)) continue;
    FLOVER_RETURN_IF_ERROR(fn(plan(info, NameOf(ModelNames(), info.member), "", w ? &(w->*info.member) : nullptr)));
  }
  return Status::Ok();
}

bool Convertible(SafetensorsDtype d) {
  return d == SafetensorsDtype::kF32 || d == SafetensorsDtype::kF16 || d == SafetensorsDtype::kBF16;
}

Status CheckHfTensor(const std::string& dir, const TensorFiles& files, const HfConfig& config, const Planned& p) {
  const TensorFiles::Where* where = files.Find(p.name);
  if (where == nullptr) {
    std::string why;
    if (p.name == "lm_head.weight") why = " (config.json has tie_word_embeddings false, so the LM head is separate)";
    return Corruption(dir + ": tensor " + p.name + " is missing" + why);
  }
  const SafetensorsTensor& t = *where->tensor;
  if (!Convertible(t.dtype))
    return InvalidArgument(where->reader->path() + ": tensor " + p.name + " has dtype " +
                           SafetensorsDtypeName(t.dtype) + "; only F32, F16 and BF16 weights are supported");
  if (t.shape != p.shape)
    return Corruption(where->reader->path() + ": tensor " + p.name + " has shape " + ShapeString(t.shape) +
                      ", expected " + ShapeString(p.shape) + " from config.json (" + config.spec.ToString() + ")");
  return Status::Ok();
}

// Rank shard.rank's slice of vector t (SliceOf, shard.h), converted to fp32, read from
// the mapping alone. The LM head bias's last rank is padded with zeros.
Result<std::vector<float>> ReadVectorSlice(const SafetensorsReader& r, const SafetensorsTensor& t, TensorSplit split,
                                           const ModelSpec& spec, const ShardInfo& shard) {
  if (shard.world == 1 || split == TensorSplit::kReplicated) return r.ReadFloat(t);
  const TensorSlice s = SliceOf(split, spec, shard, t.n_elements);
  FLOVER_CHECK(s.rows == t.rows() && s.cols == t.cols())
      << t.name << " " << ShapeString(t.shape) << " sliced as [" << s.rows << ", " << s.cols << "]";
  std::vector<float> out(static_cast<size_t>(s.padded_rows * s.n_cols), 0.0f);
  if (s.n_rows > 0)  // a last rank of the LM head may hold padding only (vocabulary 5 over 4 ranks)
    FLOVER_RETURN_IF_ERROR(r.ReadFloat(t, s.row_begin, s.n_rows, s.col_begin, s.n_cols, out.data()));
  return out;
}

cpu::WeightFormat FormatOf(SafetensorsDtype dtype) {
  switch (dtype) {
    case SafetensorsDtype::kF16: return cpu::WeightFormat::kF16;
    case SafetensorsDtype::kBF16: return cpu::WeightFormat::kBF16;
    default: break;
  }
  return cpu::WeightFormat::kF32;
}

// Rank shard.rank's slice of matrix t in `format`: the bytes of the slice's rows and
// columns copied from the mapping when t is stored in that format, else converted from
// fp32 a chunk of rows at a time. The LM head's last rank is padded with zero rows.
Result<WeightTensor> ReadMatrixSlice(const SafetensorsReader& r, const SafetensorsTensor& t, cpu::WeightFormat format,
                                     const TensorSlice& s) {
  if (FormatOf(t.dtype) == format) {
    const int64_t elem = static_cast<int64_t>(SafetensorsDtypeSize(t.dtype));
    WeightTensor out = WeightTensor::Zeros(format, s.padded_rows * s.n_cols * elem);
    const uint8_t* src = r.Data(t).data();
    uint8_t* dst = out.mutable_bytes().data();
    for (int64_t row = 0; row < s.n_rows; ++row)
      std::memcpy(dst + row * s.n_cols * elem, src + ((s.row_begin + row) * s.cols + s.col_begin) * elem,
                  static_cast<size_t>(s.n_cols * elem));
    return out;
  }
  Result<WeightTensor> out = WeightTensor::FromF32Rows(format, s.padded_rows, s.n_cols, [&](int64_t begin, int64_t n,
                                                                                          float* dst) {
    const int64_t real = std::clamp<int64_t>(s.n_rows - begin, 0, n);  // the rest is padding
    std::fill(dst + real * s.n_cols, dst + n * s.n_cols, 0.0f);
    if (real == 0) return Status::Ok();
    return r.ReadFloat(t, s.row_begin + begin, real, s.col_begin, s.n_cols, dst);
  });
  if (out.ok()) out->ZeroRowsFrom(s.n_rows, s.n_cols);  // padding: zero bytes
  return out;
}

std::string Listing(const std::vector<std::string>& names, size_t max_shown) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < max_shown; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > max_shown) s += ", ...";
  return s;
}

Result<HfModel> LoadFolder(const std::string& dir, const LoadTarget& target) {
  FLOVER_ASSIGN_OR_RETURN(HfConfig config, ReadHfConfig(dir));
  for (const std::string& note : config.notes) spdlog::info("{}: {}", dir, note);
  FLOVER_ASSIGN_OR_RETURN(TensorFiles files, OpenTensorFiles(dir));
  const ModelSpec& spec = config.spec;

  // Every tensor checked before anything is allocated: config.json may claim any shape,
  // but tensors that exist with that shape bound the allocations by the files' sizes.
  std::set<std::string> used;
  FLOVER_RETURN_IF_ERROR(ForEachHfTensor(config, nullptr, [&](const Planned& p) {
    FLOVER_RETURN_IF_ERROR(CheckHfTensor(dir, files, config, p));
    used.insert(p.name);
    return Status::Ok();
  }));
  std::vector<std::string> unused;
  for (const auto& [name, where] : files.tensors)
    if (!used.count(name) && !(spec.shared_classifier && name == "lm_head.weight")) unused.push_back(name);
  if (!unused.empty())
    spdlog::warn("{}: {} tensor(s) of the checkpoint are not part of a {} model and are ignored: {}", dir,
                 unused.size(), config.architecture, Listing(unused, 5));

  FLOVER_RETURN_IF_ERROR(target.Check(spec));

  HfModel model;
  model.architecture = config.architecture;
  ModelWeights& w = model.weights;
  w.spec = spec;
  w.layers.resize(spec.n_layers);
  FormatNotes notes;
  FLOVER_RETURN_IF_ERROR(ForEachHfTensor(config, &w, [&](const Planned& p) -> Status {
    const TensorFiles::Where& where = *files.Find(p.name);
    const SafetensorsTensor& t = *where.tensor;
    if (!p.matrix) {
      Result<std::vector<float>> slice = ReadVectorSlice(*where.reader, t, p.split, spec, target.shard);
      if (!slice.ok()) return slice.status().WithContext(where.reader->path());
      *p.dst = WeightTensor(std::move(slice).value());
    } else {
      FLOVER_ASSIGN_OR_RETURN(const MatrixFormat format,
                              ChooseMatrixFormat(target.weights, {FormatOf(t.dtype), SafetensorsDtypeName(t.dtype)},
                                                 p.name, t.cols(), p.split, spec, target.shard.world));
      notes.Add(format.note);
      const TensorSlice slice = MatrixSliceOf(p.split, spec, target.shard, t.rows(), t.cols());
      Result<WeightTensor> part = ReadMatrixSlice(*where.reader, t, format.format, slice);
      if (!part.ok()) return part.status().WithContext(where.reader->path());
      *p.dst = std::move(part).value();
    }
    if (p.halves_to_pairs) {
      const int64_t cols = p.matrix ? spec.dim : 1;
      HalvesToPairs(p.dst->mutable_bytes(), spec.head_dim(), cpu::WeightRowBytes(p.dst->format(), cols));
    }
    return Status::Ok();
  }));
  notes.Log(dir);
  FinishShard(w, target.shard);
  FLOVER_RETURN_IF_ERROR(ValidateShard(w, target.shard));
  return model;
}

}  // namespace

bool IsHfModelPath(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec) || std::filesystem::path(path).filename() == "config.json";
}

Result<HfModel> LoadHfModel(const std::string& path, const LoadTarget& target) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return NotFound(path + ": no such folder");
  std::string dir = path;
  if (!std::filesystem::is_directory(path, ec)) {
    if (std::filesystem::path(path).filename() != "config.json")
      return InvalidArgument(path + ": not a Hugging Face model folder (a folder, or its config.json)");
    dir = std::filesystem::path(path).parent_path().string();
    if (dir.empty()) dir = ".";
  }
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return LoadFolder(dir, target);
}

}  // namespace flover
