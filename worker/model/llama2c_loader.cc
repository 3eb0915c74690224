#include "worker/model/llama2c_loader.h"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <system_error>

namespace flover {
namespace {

constexpr int64_t kHeaderBytes = 7 * 4;
constexpr int32_t kLlama2cV1Magic = 0x616b3432;  // "ak42": llama2.c export versions 1 and 2

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// a * b + c, or nullopt on int64 overflow. All inputs are non-negative.
std::optional<int64_t> MulAdd(int64_t a, int64_t b, int64_t c = 0) {
  int64_t p;
  if (__builtin_mul_overflow(a, b, &p) || __builtin_add_overflow(p, c, &p)) return std::nullopt;
  return p;
}

std::string HeaderString(const int32_t h[7]) {
  return "dim=" + std::to_string(h[0]) + ", hidden_dim=" + std::to_string(h[1]) + ", n_layers=" +
         std::to_string(h[2]) + ", n_heads=" + std::to_string(h[3]) + ", n_kv_heads=" + std::to_string(h[4]) +
         ", vocab_size=" + std::to_string(h[5]) + ", seq_len=" + std::to_string(h[6]);
}

// Floats the file holds for `spec` (run.c's order, freq_cis included), or nullopt when
// that count overflows.
std::optional<int64_t> ExpectedFloats(const ModelSpec& s) {
  const int64_t d = s.dim, h = s.hidden_dim, L = s.n_layers, q = s.q_dim(), kv = s.kv_dim();
  // Per layer: 2 norms + wq + wk + wv + wo + w1 + w2 + w3, each term bounded by int32^2.
  std::optional<int64_t> per_layer = MulAdd(d, 2 + q + 2 * kv + q);
  if (!per_layer) return std::nullopt;
  per_layer = MulAdd(3 * d, h, *per_layer);
  if (!per_layer) return std::nullopt;
  std::optional<int64_t> n = MulAdd(L, *per_layer);
  if (!n) return std::nullopt;
  const int64_t n_embedding_like = s.shared_classifier ? 1 : 2;
  n = MulAdd(n_embedding_like * s.vocab_size, d, *n + d);           // embedding, [wcls], rms_final
  if (!n) return std::nullopt;
  return MulAdd(int64_t{s.max_seq_len}, s.head_dim(), *n);          // freq_cis real + imag
}

}  // namespace

Result<ModelWeights> LoadLlama2cCheckpoint(const std::string& path, const LoadTarget& target) {
  std::error_code ec;
  const auto fs_status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(fs_status)) return NotFound(path + ": no such file");
  if (std::filesystem::is_directory(fs_status))
    return InvalidArgument(path + ": is a directory, not a llama2.c checkpoint");
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) return IoError(path + ": cannot open: " + std::strerror(errno));
  return LoadLlama2cCheckpoint(file.get(), path, target);
}

Result<ModelWeights> LoadLlama2cCheckpoint(std::FILE* file, const std::string& path, const LoadTarget& target) {
  if (fseeko(file, 0, SEEK_END) != 0) return IoError(path + ": cannot seek to the end: " + std::strerror(errno));
  const off_t end = ftello(file);
  if (end < 0 || fseeko(file, 0, SEEK_SET) != 0)
    return IoError(path + ": cannot get the file size: " + std::strerror(errno));
  const auto file_size = static_cast<uintmax_t>(end);

  if (file_size < static_cast<uintmax_t>(kHeaderBytes))
    return Corruption(path + ": file has " + std::to_string(file_size) +
                      " bytes, too few for the 28-byte llama2.c header");
  int32_t header[7];
  if (std::fread(header, sizeof(header), 1, file) != 1)
    return IoError(path + ": cannot read the header: " + std::strerror(errno));
  if (header[0] == kLlama2cV1Magic)
    return InvalidArgument(path + ": is a llama2.c version 1/2 export (magic \"ak42\"); only the legacy version-0 "
                           "format is supported (export with --version 0)");

  ModelSpec spec;
  spec.dim = header[0];
  spec.hidden_dim = header[1];
  spec.n_layers = header[2];
  spec.n_heads = header[3];
  spec.n_kv_heads = header[4];
  spec.shared_classifier = header[5] > 0;
  spec.vocab_size = header[5] == INT32_MIN ? 0 : (header[5] < 0 ? -header[5] : header[5]);
  spec.max_seq_len = header[6];
  spec.norm_eps = 1e-5f;
  spec.rope_theta = 10000.0f;
  spec.bos_id = 1;
  spec.eos_id = 2;
  if (Status s = spec.Validate(); !s.ok())
    return Corruption(path + ": header (" + HeaderString(header) + ") is inconsistent: " + s.message());

  const std::optional<int64_t> n_floats = ExpectedFloats(spec);
  const std::optional<int64_t> expected = n_floats ? MulAdd(*n_floats, 4, kHeaderBytes) : std::nullopt;
  if (!expected || static_cast<uintmax_t>(*expected) != file_size)
    return Corruption(path + ": file has " + std::to_string(file_size) + " bytes, header (" + HeaderString(header) +
                      ") implies " + (expected ? std::to_string(*expected) : std::string("more than 2^63")) +
                      (spec.shared_classifier ? "" : " (with a separate classifier, as vocab_size < 0)"));

  FLOVER_RETURN_IF_ERROR(target.Check(spec));

  // One sequential pass in the file's order; the per-layer arrays of one kind are
  // contiguous, layer after layer. Each tensor is cut to this rank's shard (and
  // converted to the target's format) as soon as it is read, so at most one whole fp32
  // tensor is held beside the shard.
  ModelWeights w;
  w.spec = spec;
  w.layers.resize(spec.n_layers);
  FormatNotes notes;
  const char* failed = nullptr;
  Status kept = Status::Ok();
  auto read = [&](WeightTensor& dst, const auto& info, const std::string& name, const char* file_name) {
    if (failed != nullptr || !kept.ok()) return;
    std::vector<float> full(info.size(spec));
    if (std::fread(full.data(), sizeof(float), full.size(), file) != full.size()) {
      failed = file_name;
      return;
    }
    Result<WeightTensor> t = target.KeepF32(info, spec, std::move(full), name, &notes);
    if (t.ok()) {
      dst = std::move(t).value();
    } else {
      kept = t.status();
    }
  };
  auto read_layers = [&](WeightTensor LayerWeights::*member, const char* file_name) {
    const TensorInfo<LayerWeights>& info = TensorInfoOf(member);
    for (size_t i = 0; i < w.layers.size(); ++i)
      read(w.layers[i].*member, info, "layers." + std::to_string(i) + "." + info.name, file_name);
  };
  read(w.token_embedding, TensorInfoOf(&ModelWeights::token_embedding), "token_embedding", "token_embedding_table");
  read_layers(&LayerWeights::attn_norm, "rms_att_weight");
  read_layers(&LayerWeights::wq, "wq");
  read_layers(&LayerWeights::wk, "wk");
  read_layers(&LayerWeights::wv, "wv");
  read_layers(&LayerWeights::wo, "wo");
  read_layers(&LayerWeights::ffn_norm, "rms_ffn_weight");
  read_layers(&LayerWeights::w1, "w1");
  read_layers(&LayerWeights::w2, "w2");
  read_layers(&LayerWeights::w3, "w3");
  read(w.final_norm, TensorInfoOf(&ModelWeights::final_norm), "final_norm", "rms_final_weight");
  if (!spec.shared_classifier && failed == nullptr && kept.ok()) {
    // Skip freq_cis_real and freq_cis_imag: [seq_len * head_dim / 2] floats each.
    const int64_t skip = int64_t{spec.max_seq_len} * spec.head_dim() * static_cast<int64_t>(sizeof(float));
    if (std::fseek(file, static_cast<long>(skip), SEEK_CUR) != 0) failed = "freq_cis";
    read(w.classifier, TensorInfoOf(&ModelWeights::classifier), "classifier", "wcls");
  }
  if (failed != nullptr) {
    if (std::feof(file))
      return Corruption(path + ": file ended while reading " + failed + " (did it change while loading?)");
    return IoError(path + ": cannot read " + failed + ": " + std::strerror(errno));
  }
  if (!kept.ok()) return kept.WithContext(path);
  notes.Log(path);

  FinishShard(w, target.shard);
  if (Status s = ValidateShard(w, target.shard); !s.ok()) return s.WithContext(path);
  return w;
}

}  // namespace flover
