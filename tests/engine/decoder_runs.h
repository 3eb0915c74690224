// Drives a Decoder directly (no engine, no scheduler) over several sequences, for tests
// that compare logits: against a reference, across tensor-parallel ranks, fused against
// alone. Also the comparisons those tests make.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "worker/engine/decoder.h"
#include "worker/engine/kv_cache.h"

namespace flover::testing {

// ||got - want|| / ||want|| (Euclidean norms, in double).
inline double NormalisedError(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    norm += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

// The lowest index of the maximum of v[0, n).
inline int Argmax(const float* v, int n) { return static_cast<int>(std::max_element(v, v + n) - v); }

// Several sequences decoded together through one decoder: a fused prefill of all
// prompts, then `n_decode` steps of one token each. With `extend`, each step appends the
// argmax to its sequence (greedy); otherwise the sequences already hold their tokens.
// Returns the logits of every step, [n_sequences, vocab] each.
// With `argmax`, each step also runs ForwardArgmax over the same entries and appends its
// tokens ([n_sequences] per step). The KV cache holds kv_dtype values.
inline std::vector<std::vector<float>> RunDecoder(Decoder& decoder, std::vector<std::vector<int>>& seqs,
                                                  const std::vector<int>& n_prompt, int n_decode, bool extend,
                                                  std::vector<std::vector<int>>* argmax = nullptr,
                                                  cpu::KvDType kv_dtype = cpu::KvDType::kF32) {
  const ModelSpec& spec = decoder.spec();
  const int vocab = spec.vocab_size, block_size = 16;
  const int blocks_per_seq = (spec.max_seq_len + block_size - 1) / block_size;
  Result<std::unique_ptr<KvCache>> kv = KvCache::Create(
      spec, KvCacheConfig{block_size, int64_t{1} << 40, blocks_per_seq * static_cast<int>(seqs.size()), kv_dtype},
      decoder.shard().world);
  EXPECT_TRUE(kv.ok()) << kv.status().ToString();
  if (!kv.ok()) return {};
  std::vector<std::vector<int>> tables(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s)
    for (int b = 0; b < blocks_per_seq; ++b) tables[s].push_back(static_cast<int>(s) * blocks_per_seq + b);

  std::vector<std::vector<float>> out;
  for (int step = 0; step <= n_decode; ++step) {
    std::vector<StepEntry> entries;
    for (size_t s = 0; s < seqs.size(); ++s) {
      const int start = step == 0 ? 0 : n_prompt[s] + step - 1;
      const int n = step == 0 ? n_prompt[s] : 1;
      entries.push_back(StepEntry{seqs[s].data() + start, n, start, tables[s].data(), true});
    }
    std::vector<float> logits(seqs.size() * vocab, std::nanf(""));
    const Status status = decoder.Forward(entries, **kv, logits.data());
    EXPECT_TRUE(status.ok()) << status.ToString();
    if (!status.ok()) return out;
    if (argmax) {
      std::vector<int> tokens(seqs.size(), -1);
      const Status again = decoder.ForwardArgmax(entries, **kv, tokens.data());  // rewrites the same KV
      EXPECT_TRUE(again.ok()) << again.ToString();
      argmax->push_back(std::move(tokens));
    }
    if (extend)
      for (size_t s = 0; s < seqs.size(); ++s) seqs[s].push_back(Argmax(&logits[s * vocab], vocab));
    out.push_back(std::move(logits));
  }
  return out;
}

}  // namespace flover::testing
