// Seeded random weights of a named shape, for benchmarks (as serving benchmarks run
// with dummy weights). The same preset and seed always give the same weights, whatever
// the number of OpenMP threads: element i of each tensor is a counter-based hash of
// (seed, tensor number, i). Matrices are uniform in [-a, a] with a = sqrt(3 / in_features)
// (unit-variance preserving), the embedding uniform in [-1, 1], other biases uniform in
// [-0.1, 0.1], norm weights 1 and norm biases 0.
// Presets (DummyPresetNames() lists them):
//   tiny (= stories260k's shape), stories260k, stories15m, stories110m / llama-110m,
//   llama-7b, llama-13b         LLaMA 2 family
//   llama3-1b, llama3-8b        LLaMA 3.2 1B, 3.1 8B: GQA, rope theta 500000 with
//                               llama3 scaling, 128256-token vocabulary
//   tinyllama-1.1b, mistral-7b  LLaMA-shaped with GQA (Mistral v0.2: theta 1e6)
//   qwen2-0.5b                  q/k/v biases, 14 heads over 2 kv heads
//   gptj-6b                     LayerNorm, parallel residual, partial rotary (64 of 256
//                               dims), GELU MLP with biases, LM head bias
// The tinyllamas shapes, llama3-1b and qwen2-0.5b share the classifier with the
// embedding; the others have a separate one, like the real checkpoints. Contexts are the
// checkpoints', capped at 8192 (dummy_model.cc).
//
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"
#include "worker/model/model_weights.h"
#include "worker/model/shard.h"

namespace flover {

std::optional<ModelSpec> DummyPreset(const std::string& preset);
std::vector<std::string> DummyPresetNames();

// Fails with ResourceExhausted, before allocating, when the weights (of the target's
// shard, in the formats target.weights chooses) would not fit in this machine's memory
// (the message gives the bytes needed and available). The message names the preset
// ("dummy:<preset>"). Each tensor is generated whole in fp32 and kept as
// LoadTarget::KeepF32 says: with a target of world > 1 only that rank's shard (the same
// values as ShardWeights of the whole model), each matrix in the target's format (the
// fp32 values converted), one whole tensor at a time.
Result<ModelWeights> MakeDummyWeights(const std::string& preset, uint64_t seed, const LoadTarget& target = {});
// The same generator for any valid spec (tests: shapes no preset has). No memory check.
Result<ModelWeights> MakeDummyWeights(const ModelSpec& spec, uint64_t seed, const LoadTarget& target = {});

// The generator of every dummy tensor: element i of tensor number `tensor_id` is
// DummyWeightValue(DummyWeightKey(seed, tensor_id), i, scale), uniform in [-scale, scale)
// with 24 random bits, a pure function of its arguments. The CUDA backend generates the
// same values on the device (kernels/cuda/convert.h).
uint64_t DummyWeightKey(uint64_t seed, uint64_t tensor_id);
float DummyWeightValue(uint64_t key, uint64_t i, float scale);

// How the generator fills one tensor kind (LayerTensors()/ModelTensors() `name`, its
// column count `cols`): norm weights the constant 1, norm biases 0; every other tensor
// random (taking the next tensor id) with scale 1 for the embedding, 0.1 for the other
// vectors (biases) and sqrt(3 / cols) for matrices.
struct DummyFill {
  bool random = false;
  float value = 0.0f;  // the constant, or the random values' scale
};
DummyFill DummyFillOf(std::string_view name, int64_t cols);

// Memory this process may still allocate: MemAvailable (or free pages), capped by a
// cgroup memory limit when one is set.
int64_t AvailableMemoryBytes();
// ResourceExhausted when the weights of one rank of `world` in the formats `policy`
// chooses for fp32 sources (ShardWeightBytes; auto keeps them fp32) exceed 90% of
// `available_bytes`:
// "dummy:llama-13b needs 52.1 GB of fp32 weights; this machine has 23.4 GB available".
Status CheckDummyWeightsFit(const std::string& preset, const ModelSpec& spec, int64_t available_bytes, int world = 1,
                            const WeightPolicy& policy = {});
// Bytes of one rank's weights when every tensor comes from fp32 (the formats `policy`
// chooses for it; a matrix the policy cannot split counts as fp32).
// REQUIRES: CheckTensorParallel(spec, world) is OK.
int64_t ShardWeightBytes(const ModelSpec& spec, int world, const WeightPolicy& policy);

}  // namespace flover
