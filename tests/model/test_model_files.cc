#include "tests/model/test_model_files.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

#include "tests/model/raw_bytes.h"

namespace flover::testing {
namespace {

void PutFloats(std::string& out, const WeightTensor& t) {
  const auto& v = t.f32();
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

void ExpectSameTensor(const std::string& name, const WeightTensor& expected_tensor, const WeightTensor& actual_tensor) {
  ASSERT_EQ(expected_tensor.format(), actual_tensor.format()) << name;
  if (!expected_tensor.is_f32()) {
    EXPECT_TRUE(expected_tensor == actual_tensor) << name << ": the " << cpu::WeightFormatName(expected_tensor.format())
                                                  << " bytes differ";
    return;
  }
  const auto& expected = expected_tensor.f32();
  const auto& actual = actual_tensor.f32();
  ASSERT_EQ(expected.size(), actual.size()) << name;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::memcmp(&expected[i], &actual[i], sizeof(float)) != 0) {
      ADD_FAILURE() << name << "[" << i << "] is " << actual[i] << ", expected " << expected[i];
      return;
    }
  }
}

}  // namespace

ScratchDir::ScratchDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "flover-model-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp(" << tmpl << ") failed";
  dir_ = tmpl;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

ModelSpec SmallSpec(bool shared_classifier) {
  ModelSpec s;
  s.dim = 16;
  s.hidden_dim = 40;
  s.n_layers = 2;
  s.n_heads = 4;
  s.n_kv_heads = 2;
  s.vocab_size = 40;
  s.max_seq_len = 32;
  s.shared_classifier = shared_classifier;
  return s;
}

ModelSpec Q8Spec(bool shared_classifier) {
  ModelSpec s = SmallSpec(shared_classifier);
  s.dim = 64;
  s.hidden_dim = 96;
  s.vocab_size = 41;
  return s;
}

ModelWeights RandomWeights(const ModelSpec& spec, uint64_t seed) {
  uint64_t state = seed * 6364136223846793005ull + 1442695040888963407ull;
  auto next = [&]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<int>(state >> 40) - (1 << 23)) / static_cast<float>(1 << 23);
  };
  auto fill = [&](WeightTensor& t, int64_t n) {
    t = WeightTensor(std::vector<float>(static_cast<size_t>(n)));
    for (float& x : t.f32()) x = next();
  };
  const int64_t d = spec.dim, h = spec.hidden_dim, q = spec.q_dim(), kv = spec.kv_dim(), v = spec.vocab_size;
  ModelWeights w;
  w.spec = spec;
  fill(w.token_embedding, v * d);
  w.layers.resize(spec.n_layers);
  for (LayerWeights& l : w.layers) {
    fill(l.attn_norm, d);
    fill(l.wq, q * d);
    fill(l.wk, kv * d);
    fill(l.wv, kv * d);
    fill(l.wo, d * q);
    fill(l.ffn_norm, d);
    fill(l.w1, h * d);
    fill(l.w2, d * h);
    fill(l.w3, h * d);
  }
  fill(w.final_norm, d);
  if (!spec.shared_classifier) fill(w.classifier, v * d);
  if (spec.qkv_bias) {  // drawn last: the other tensors are those of the same spec without biases
    for (LayerWeights& l : w.layers) {
      fill(l.bq, q);
      fill(l.bk, kv);
      fill(l.bv, kv);
    }
  }
  return w;
}

std::string Llama2cBytes(const ModelWeights& w) {
  const ModelSpec& s = w.spec;
  std::string out;
  for (int32_t x : {s.dim, s.hidden_dim, s.n_layers, s.n_heads, s.n_kv_heads,
                    s.shared_classifier ? s.vocab_size : -s.vocab_size, s.max_seq_len})
    Put(out, x);
  PutFloats(out, w.token_embedding);
  for (auto member : {&LayerWeights::attn_norm, &LayerWeights::wq, &LayerWeights::wk, &LayerWeights::wv,
                      &LayerWeights::wo, &LayerWeights::ffn_norm, &LayerWeights::w1, &LayerWeights::w2,
                      &LayerWeights::w3})
    for (const LayerWeights& l : w.layers) PutFloats(out, l.*member);
  PutFloats(out, w.final_norm);
  out.append(static_cast<size_t>(s.max_seq_len) * s.head_dim() * sizeof(float), '\0');  // freq_cis
  if (!s.shared_classifier) PutFloats(out, w.classifier);
  return out;
}

bool WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(f);
}

std::string ReadBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void ExpectSameWeights(const ModelWeights& expected, const ModelWeights& actual) {
  const ModelSpec &e = expected.spec, &a = actual.spec;
  EXPECT_EQ(e.ToString(), a.ToString());
  EXPECT_EQ(e.norm_eps, a.norm_eps);
  EXPECT_EQ(e.rope_theta, a.rope_theta);
  EXPECT_EQ(e.bos_id, a.bos_id);
  EXPECT_EQ(e.eos_id, a.eos_id);
  for (const TensorInfo<ModelWeights>& t : ModelTensors())
    ExpectSameTensor(t.name, expected.*t.member, actual.*t.member);
  ASSERT_EQ(expected.layers.size(), actual.layers.size());
  for (size_t i = 0; i < expected.layers.size(); ++i) {
    for (const TensorInfo<LayerWeights>& t : LayerTensors())
      ExpectSameTensor("layers." + std::to_string(i) + "." + t.name, expected.layers[i].*t.member,
                       actual.layers[i].*t.member);
  }
}

}  // namespace flover::testing
