// Helpers for the loader tests: a scratch directory that cleans up after itself, small
// random models of any shape, a llama2.c .bin serializer, and a tensor-by-tensor
// comparison of two ModelWeights. Tests only.
#pragma once

#include <cstdint>
#include <string>

#include "worker/model/model_weights.h"

namespace flover::testing {

// A fresh directory under the system temp dir, removed with its contents on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
};

// dim 16, hidden 40, 2 layers, 4 heads, 2 kv heads, vocab 40, seq 32: grouped-query
// attention and every dimension distinct enough to catch a swapped shape.
ModelSpec SmallSpec(bool shared_classifier = true);
// dim 64, hidden 96, 2 layers, 4 heads, 2 kv heads, vocab 41, seq 32: every matrix row
// is whole Q8_0 blocks (ne0 a multiple of 32), tensor parallel 2 splits it, and the
// vocabulary does not split evenly.
ModelSpec Q8Spec(bool shared_classifier = true);

// Weights uniform in [-1, 1) from a fixed generator (norms included, so nothing is
// accidentally 1.0). Only the llama tensors, plus the q/k/v biases when spec.qkv_bias.
ModelWeights RandomWeights(const ModelSpec& spec, uint64_t seed);

// The llama2.c version-0 file for `w` (negative vocab_size when the classifier is
// separate; freq_cis arrays filled with zeros).
std::string Llama2cBytes(const ModelWeights& w);

bool WriteBytes(const std::string& path, const std::string& bytes);
std::string ReadBytes(const std::string& path);  // "" when unreadable

// EXPECTs every tensor (model_weights.h's tables, absent ones included) and the spec of
// `actual` equal to `expected`, bit for bit.
void ExpectSameWeights(const ModelWeights& expected, const ModelWeights& actual);

}  // namespace flover::testing
