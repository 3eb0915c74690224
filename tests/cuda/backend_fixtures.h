// The fixtures of the CUDA backend tests (backend_test.cc, architectures_test.cc): a
// small backend config, and the schedule both a CUDA and a CPU backend run through the
// Executor so that their tokens can be compared.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "common/status.h"
#include "worker/engine/cuda/cuda_backend.h"
#include "worker/engine/executor.h"
#include "worker/engine/forward_backend.h"
#include "worker/engine/sequence.h"

namespace flover::testing {

inline constexpr int kBlockSize = 16;
inline constexpr int kPoolBlocks = 512;

inline CudaBackendConfig SmallConfig(DType dtype) {
  CudaBackendConfig c;
  c.dtype = dtype;
  c.kv_memory_bytes = int64_t{1} << 30;
  c.kv_block_size = kBlockSize;
  c.max_blocks = kPoolBlocks;
  c.max_step_tokens = 128;
  c.max_rows = 16;
  return c;
}

// The fast decode path of CudaBackendConfig (off by default): graphs, and Gemv for
// small steps.
inline CudaBackendConfig FastConfig(DType dtype) {
  CudaBackendConfig c = SmallConfig(dtype);
  c.cuda_graphs = true;
  c.small_step_gemv = true;
  return c;
}

template <typename T>
Status StatusOf(const Result<T>& r) {
  return r.ok() ? Status::Ok() : r.status();
}

// The schedule both backends run: requests join at given steps; each step every joined
// request computes min(chunk, uncomputed) tokens (a prefill chunk, or its one decode
// token), blocks handed out from a shuffled pool as positions need them.

struct Request {
  uint64_t id;
  int join_step;
  RequestParams params;
};

struct Outcome {
  std::map<uint64_t, std::vector<int>> tokens;  // generated, per request
  std::map<uint64_t, std::vector<TokenLogprobs>> logprobs;  // per token, of requests that asked
  int steps = 0;
  size_t max_upload_bytes = 0;
};

// With `cuda` and `step_logits`: the logits of the last sampling step, after every step.
inline Result<Outcome> Drive(ForwardBackend& backend, const std::vector<Request>& requests, int chunk,
                             bool separate_passes, CudaBackend* cuda = nullptr,
                             std::vector<std::vector<float>>* step_logits = nullptr) {
  Executor executor(&backend);
  std::vector<int> pool(backend.kv_blocks());
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), std::mt19937(42));
  size_t next_block = 0;
  std::vector<bool> live(requests.size(), false), done(requests.size(), false);
  Outcome run;
  for (int step = 0;; ++step) {
    for (size_t i = 0; i < requests.size(); ++i)
      if (requests[i].join_step == step) {
        FLOVER_RETURN_IF_ERROR(executor.Join(requests[i].id, requests[i].params));
        live[i] = true;
      }
    std::vector<std::vector<int>> new_blocks(requests.size());
    std::vector<ExecEntry> entries;
    for (size_t i = 0; i < requests.size(); ++i) {
      if (!live[i] || done[i]) continue;
      const Sequence* seq = executor.Find(requests[i].id);
      const int n = std::min(chunk, seq->n_uncomputed());
      const int need = (seq->n_computed + n + kBlockSize - 1) / kBlockSize - static_cast<int>(seq->block_table.size());
      for (int b = 0; b < need; ++b) {
        if (next_block == pool.size()) return ResourceExhausted("test pool too small");
        new_blocks[i].push_back(pool[next_block++]);
      }
      entries.push_back(ExecEntry{requests[i].id, seq->n_computed, n, new_blocks[i]});
    }
    const bool all_joined = std::all_of(requests.begin(), requests.end(), [&](const Request& r) {
      return r.join_step <= step;
    });
    if (entries.empty() && all_joined) break;
    std::vector<ExecOutput> outputs;
    FLOVER_RETURN_IF_ERROR(executor.Run(entries, &outputs, separate_passes));
    if (cuda) run.max_upload_bytes = std::max(run.max_upload_bytes, cuda->last_step_upload_bytes());
    if (cuda && step_logits) {
      step_logits->emplace_back();
      FLOVER_RETURN_IF_ERROR(cuda->CopyLastLogits(&step_logits->back()));
    }
    for (const ExecOutput& o : outputs) {
      if (o.token >= 0) run.tokens[o.request_id].push_back(o.token);
      if (o.token >= 0 && o.logprobs) run.logprobs[o.request_id].push_back(*o.logprobs);
      if (o.finish != FinishReason::kNone) {
        for (size_t i = 0; i < requests.size(); ++i)
          if (requests[i].id == o.request_id) done[i] = true;
        executor.Leave(o.request_id);
      }
    }
    ++run.steps;
  }
  return run;
}

// Length of the common prefix of two token sequences.
inline size_t CommonPrefix(const std::vector<int>& a, const std::vector<int>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

}  // namespace flover::testing
