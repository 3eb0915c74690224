// Seeded random weights of a named shape, for benchmarks (as serving benchmarks run
// with dummy weights). The same preset and seed always give the same weights.
// Presets: tiny, stories260k, stories15m, stories110m / llama-110m, llama-7b, llama-13b
// (and any later additions, listed by DummyPresetNames()).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"
#include "worker/model/model_weights.h"

namespace flover {

std::optional<ModelSpec> DummyPreset(const std::string& preset);
std::vector<std::string> DummyPresetNames();

// Fails with ResourceExhausted, before allocating, when the fp32 weights would not fit in
// this machine's memory (the message gives the bytes needed and available).
Result<ModelWeights> MakeDummyWeights(const std::string& preset, uint64_t seed);

}  // namespace flover
