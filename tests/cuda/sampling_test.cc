// SampleTokens (kernels/cuda/sampling.h) against the CPU Sampler (worker/engine/sampler.h):
// the penalised logits / probabilities each row is turned into must be bit-identical, and
// the tokens identical, except for a draw that lands within double rounding of a
// cumulative-probability boundary, which is recomputed in long double to prove it is one.
// Argument checks run everywhere; the rest skips without a GPU.
#include "kernels/cuda/sampling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/device.h"
#include "tests/cuda/gpu_test.h"
#include "worker/engine/sampler.h"

namespace flover::cuda {
namespace {

// ---- argument checks: no device calls, no GPU needed ------------------------------------

// Never dereferenced: every call below fails its checks before touching the device.
alignas(256) unsigned char fake_device_memory[1024];
void* FakeDevicePointer() { return fake_device_memory; }

TEST(SampleTokensArgs, RejectsBadLogits) {
  int* tokens = static_cast<int*>(FakeDevicePointer());
  const auto* rows = static_cast<const SamplingRow*>(FakeDevicePointer());
  const size_t bytes = SamplingWorkspaceBytes(2, 10);

  Status s = SampleTokens(Matrix(FakeDevicePointer(), DType::kF16, 2, 10), rows, nullptr, tokens,
                          FakeDevicePointer(), bytes, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("logits is fp16"), std::string::npos) << s.ToString();

  s = SampleTokens(Matrix(FakeDevicePointer(), DType::kF32, 2, 10, 5), rows, nullptr, tokens, FakeDevicePointer(),
                   bytes, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("stride"), std::string::npos) << s.ToString();

  s = SampleTokens(Matrix(nullptr, DType::kF32, 2, 10), rows, nullptr, tokens, FakeDevicePointer(), bytes, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);

  s = SampleTokens(Matrix(FakeDevicePointer(), DType::kF32, 2, 0), rows, nullptr, tokens, FakeDevicePointer(), bytes,
                   nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("vocab"), std::string::npos) << s.ToString();

  s = SampleTokens(Matrix(FakeDevicePointer(), DType::kF32, 70000, 32000), rows, nullptr, tokens,
                   FakeDevicePointer(), bytes, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("smaller batches"), std::string::npos) << s.ToString();
}

TEST(SampleTokensArgs, RejectsNullOperandsAndSmallWorkspace) {
  int* tokens = static_cast<int*>(FakeDevicePointer());
  const auto* rows = static_cast<const SamplingRow*>(FakeDevicePointer());
  const MatrixView logits = Matrix(FakeDevicePointer(), DType::kF32, 3, 100);
  const size_t bytes = SamplingWorkspaceBytes(3, 100);

  EXPECT_EQ(SampleTokens(logits, nullptr, nullptr, tokens, FakeDevicePointer(), bytes, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(SampleTokens(logits, rows, nullptr, nullptr, FakeDevicePointer(), bytes, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(SampleTokens(logits, rows, nullptr, tokens, nullptr, bytes, nullptr).code(),
            StatusCode::kInvalidArgument);
  Status s = SampleTokens(logits, rows, nullptr, tokens, fake_device_memory + 4, bytes, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("aligned"), std::string::npos) << s.ToString();

  s = SampleTokens(logits, rows, nullptr, tokens, FakeDevicePointer(), bytes - 1, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("need " + std::to_string(bytes)), std::string::npos) << s.ToString();
  // A workspace sized for 2 rows is too small for 3.
  s = SampleTokens(logits, rows, nullptr, tokens, FakeDevicePointer(), SamplingWorkspaceBytes(2, 100), nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
}

TEST(SampleTokensArgs, EmptyBatchIsANoOp) {
  EXPECT_TRUE(SampleTokens(Matrix(nullptr, DType::kF32, 0, 32000), nullptr, nullptr, nullptr, nullptr, 0, nullptr).ok());
}

TEST(SampleTokensArgs, WorkspaceGrowsWithTheBatch) {
  for (int vocab : {1, 517, 32000, 128256}) {
    size_t previous = 0;
    for (int rows : {1, 2, 7, 64, 256}) {
      const size_t bytes = SamplingWorkspaceBytes(rows, vocab);
      EXPECT_GE(bytes, size_t{16} * rows * vocab) << rows << " x " << vocab;
      EXPECT_GE(bytes, previous) << rows << " x " << vocab;
      previous = bytes;
    }
  }
}

TEST(UniformDrawsArgs, RejectsBadArguments) {
  auto* p = static_cast<uint64_t*>(FakeDevicePointer());
  auto* f = static_cast<float*>(FakeDevicePointer());
  EXPECT_EQ(UniformDraws(p, p, -1, f, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(UniformDraws(nullptr, p, 4, f, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(UniformDraws(p, p, 4, nullptr, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(UniformDraws(nullptr, nullptr, 0, nullptr, nullptr).ok());
}

// ---- GPU parity -------------------------------------------------------------------------

struct RowCase {
  SamplingParams params;
  std::vector<int> history;
  uint64_t draw_index = 0;
};

struct DeviceResult {
  std::vector<int> tokens;
  std::vector<float> logits;  // [rows, vocab] after SampleTokens
};

// Runs SampleTokens on `logits` ([cases.size(), vocab], rows `stride` apart on the device,
// the padding filled with a sentinel that must survive).
void RunOnDevice(const std::vector<float>& logits, int vocab, int stride, const std::vector<RowCase>& cases,
                 DeviceResult* out) {
  const int n = static_cast<int>(cases.size());
  std::vector<float> padded(static_cast<size_t>(n) * stride, 12345.0f);
  for (int r = 0; r < n; ++r)
    std::copy_n(logits.begin() + static_cast<size_t>(r) * vocab, vocab, padded.begin() + static_cast<size_t>(r) * stride);
  std::vector<int> history;
  std::vector<SamplingRow> rows;
  for (const RowCase& c : cases) {
    rows.push_back(MakeSamplingRow(c.params, c.draw_index, static_cast<int>(history.size()),
                                   static_cast<int>(c.history.size())));
    history.insert(history.end(), c.history.begin(), c.history.end());
  }
  history.push_back(0);  // never empty

  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  const size_t ws_bytes = SamplingWorkspaceBytes(n, vocab);
  Result<DeviceBuffer> d_logits = DeviceBuffer::Allocate(padded.size() * sizeof(float));
  Result<DeviceBuffer> d_rows = DeviceBuffer::Allocate(rows.size() * sizeof(SamplingRow));
  Result<DeviceBuffer> d_history = DeviceBuffer::Allocate(history.size() * sizeof(int));
  Result<DeviceBuffer> d_tokens = DeviceBuffer::Allocate(n * sizeof(int));
  Result<DeviceBuffer> d_ws = DeviceBuffer::Allocate(ws_bytes);
  FLOVER_ASSERT_OK(d_logits);
  FLOVER_ASSERT_OK(d_rows);
  FLOVER_ASSERT_OK(d_history);
  FLOVER_ASSERT_OK(d_tokens);
  FLOVER_ASSERT_OK(d_ws);
  // Garbage in the workspace and tokens: nothing may depend on their previous contents.
  ASSERT_EQ(cudaMemset(d_ws->data(), 0xA5, ws_bytes), cudaSuccess);
  ASSERT_EQ(cudaMemset(d_tokens->data(), 0xFF, n * sizeof(int)), cudaSuccess);
  FLOVER_ASSERT_OK(CopyToDevice(d_logits->data(), padded.data(), padded.size() * sizeof(float), stream->get()));
  FLOVER_ASSERT_OK(CopyToDevice(d_rows->data(), rows.data(), rows.size() * sizeof(SamplingRow), stream->get()));
  FLOVER_ASSERT_OK(CopyToDevice(d_history->data(), history.data(), history.size() * sizeof(int), stream->get()));
  FLOVER_ASSERT_OK(SampleTokens(Matrix(d_logits->data(), DType::kF32, n, vocab, stride), d_rows->as<SamplingRow>(),
                                d_history->as<int>(), d_tokens->as<int>(), d_ws->data(), ws_bytes, stream->get()));
  FLOVER_ASSERT_OK(stream->Synchronize());
  out->tokens.assign(n, -1);
  FLOVER_ASSERT_OK(CopyToHost(out->tokens.data(), d_tokens->data(), n * sizeof(int), stream->get()));
  FLOVER_ASSERT_OK(CopyToHost(padded.data(), d_logits->data(), padded.size() * sizeof(float), stream->get()));
  out->logits.assign(static_cast<size_t>(n) * vocab, 0.0f);
  for (int r = 0; r < n; ++r) {
    std::copy_n(padded.begin() + static_cast<size_t>(r) * stride, vocab, out->logits.begin() + static_cast<size_t>(r) * vocab);
    for (int j = vocab; j < stride; ++j) ASSERT_EQ(padded[static_cast<size_t>(r) * stride + j], 12345.0f) << "row " << r;
  }
}

// True when `params`' draw over `probs` (the CPU Sampler's probabilities) lands within
// `eps` (relative to the mass) of a cumulative-probability boundary, or its top-p mass
// within eps of a nucleus boundary, computed in long double: then the CPU's and the
// device's summation orders may legitimately pick neighbouring tokens.
bool IsBoundaryCase(const std::vector<float>& probs, const SamplingParams& params, uint64_t draw_index) {
  constexpr long double kEps = 1e-9L;
  const int vocab = static_cast<int>(probs.size());
  const bool use_top_p = params.top_p < 1.0f;
  const bool use_top_k = params.top_k > 0 && params.top_k < vocab;
  const float cutoff = use_top_p && params.top_k == 0 && vocab > 1
                           ? (1.0f - params.top_p) / static_cast<float>(vocab - 1)
                           : 0.0f;
  std::vector<std::pair<float, int>> c;
  for (int i = 0; i < vocab; ++i)
    if (probs[i] >= cutoff) c.emplace_back(probs[i], i);
  if (use_top_k || use_top_p)
    std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
  if (use_top_k) c.resize(std::min<size_t>(c.size(), params.top_k));
  bool near = false;
  if (use_top_p) {
    long double total = 0;
    for (const auto& x : c) total += x.first;
    const long double goal = static_cast<long double>(params.top_p) * total;
    long double mass = 0;
    size_t n = 0;
    while (n < c.size()) {
      mass += c[n++].first;
      if (std::fabs(mass - goal) <= kEps * total) near = true;
      if (mass >= goal) break;
    }
    c.resize(n);
  }
  long double total = 0;
  for (const auto& x : c) total += x.first;
  const long double target = static_cast<long double>(UniformDraw(params.seed, draw_index)) * total;
  long double cumulative = 0;
  for (const auto& x : c) {
    cumulative += x.first;
    if (std::fabs(cumulative - target) <= kEps * total) near = true;
  }
  return near;
}

struct ParityStats {
  int rows = 0;
  int sampled_rows = 0;
  int boundary_mismatches = 0;
};

// Samples `cases` on the CPU and the device and checks them against each other.
void ExpectParity(const std::vector<float>& logits, int vocab, int stride, const std::vector<RowCase>& cases,
                  ParityStats* stats) {
  DeviceResult got;
  ASSERT_NO_FATAL_FAILURE(RunOnDevice(logits, vocab, stride, cases, &got));
  Sampler sampler;
  for (size_t r = 0; r < cases.size(); ++r) {
    const RowCase& c = cases[r];
    std::vector<float> row(logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
    const int want = sampler.Sample(row, c.params, c.history, c.draw_index);
    const std::string what = "row " + std::to_string(r) + " (T " + std::to_string(c.params.temperature) + ", top_k " +
                             std::to_string(c.params.top_k) + ", top_p " + std::to_string(c.params.top_p) +
                             ", penalty " + std::to_string(c.params.repetition_penalty) + ", seed " +
                             std::to_string(c.params.seed) + ", draw " + std::to_string(c.draw_index) + ")";
    ASSERT_EQ(std::memcmp(row.data(), got.logits.data() + r * vocab, vocab * sizeof(float)), 0)
        << what << ": the device's penalised logits / probabilities differ from the CPU's";
    ++stats->rows;
    if (!c.params.greedy()) ++stats->sampled_rows;
    if (got.tokens[r] == want) continue;
    ASSERT_FALSE(c.params.greedy()) << what << ": greedy token " << got.tokens[r] << ", CPU " << want;
    ASSERT_TRUE(IsBoundaryCase(row, c.params, c.draw_index))
        << what << ": token " << got.tokens[r] << ", CPU " << want << ", and the draw is not at a boundary";
    ++stats->boundary_mismatches;
  }
}

// Logits of one row, in one of four shapes: flat, medium, peaked, or coarsely quantised
// (hundreds of exact ties, which exercise the id-ascending order among equal probabilities).
std::vector<float> RandomLogits(int vocab, int shape, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(vocab);
  const float scale = shape == 0 ? 0.5f : shape == 1 ? 2.0f : 6.0f;
  for (float& v : x) v = scale * normal(rng);
  if (shape == 3)
    for (float& v : x) v = std::round(v * 2.0f) / 2.0f;
  return x;
}

// Prompt + output of a request: ids drawn from a small range so that they repeat, plus
// ids outside the vocabulary that both samplers must ignore.
std::vector<int> RandomHistory(int vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> len(0, 300);
  std::uniform_int_distribution<int> id(0, std::min(vocab - 1, 400));
  std::vector<int> h(len(rng));
  for (int& t : h) t = id(rng);
  if (!h.empty()) h[h.size() / 2] = -1;
  if (h.size() > 2) h[1] = vocab;
  if (h.size() > 3) h[3] = h[0];
  return h;
}

// Every combination of temperature {0, 0.7, 1.0, 1.3}, top_k {0, 1, 40}, top_p {1, 0.9,
// 0.5}, penalty {1, 1.3}, plus top_k at and beyond the vocabulary, with and without top-p.
std::vector<SamplingParams> ParamGrid(int vocab) {
  std::vector<SamplingParams> grid;
  for (float t : {0.0f, 0.7f, 1.0f, 1.3f})
    for (int k : {0, 1, 40})
      for (float p : {1.0f, 0.9f, 0.5f})
        for (float penalty : {1.0f, 1.3f}) grid.push_back(SamplingParams{t, k, p, penalty, 0});
  for (int k : {vocab - 1, vocab, vocab + 1000})
    for (float p : {1.0f, 0.95f}) grid.push_back(SamplingParams{1.0f, k, p, 1.3f, 0});
  // A nucleus of one token. (Below top_p = 1 / vocab the CPU's cutoff can leave no
  // candidate on a flat distribution, so only for a large vocabulary.)
  if (vocab >= 512) grid.push_back(SamplingParams{0.8f, 0, 1e-6f, 1.0f, 0});
  return grid;
}

void RunParity(int vocab, int stride, int iterations, uint64_t rng_seed) {
  std::mt19937_64 rng(rng_seed);
  const std::vector<SamplingParams> grid = ParamGrid(vocab);
  ParityStats stats;
  for (int it = 0; it < iterations; ++it) {
    std::vector<RowCase> cases;
    std::vector<float> logits;
    for (size_t g = 0; g < grid.size(); ++g) {
      RowCase c;
      c.params = grid[g];
      c.params.seed = it % 3 == 0 ? g : rng();  // small and full-range seeds
      c.draw_index = it % 2 == 0 ? static_cast<uint64_t>(it) : rng() % 1000000;
      c.history = RandomHistory(vocab, rng);
      const std::vector<float> row = RandomLogits(vocab, static_cast<int>((g + it) % 4), rng);
      logits.insert(logits.end(), row.begin(), row.end());
      cases.push_back(std::move(c));
    }
    ASSERT_NO_FATAL_FAILURE(ExpectParity(logits, vocab, stride, cases, &stats));
  }
  // Boundary cases have probability ~1e-12 per draw: seeing more than a couple means the
  // summation differs by more than rounding.
  EXPECT_LE(stats.boundary_mismatches, 2);
  std::printf("vocab %d: %d rows (%d sampled), %d boundary mismatches\n", vocab, stats.rows, stats.sampled_rows,
              stats.boundary_mismatches);
}

TEST(SampleTokens, MatchesCpuSamplerVocab32000) {
  FLOVER_REQUIRE_GPU();
  RunParity(32000, 32000, 8, 1);
}

TEST(SampleTokens, MatchesCpuSamplerVocab517WithPaddedRows) {
  FLOVER_REQUIRE_GPU();
  RunParity(517, 517 + 11, 40, 2);
}

TEST(SampleTokens, MatchesCpuSamplerVocab128256) {
  FLOVER_REQUIRE_GPU();
  RunParity(128256, 128256, 2, 3);
}

TEST(SampleTokens, MatchesCpuSamplerForOneRowAndTinyVocab) {
  FLOVER_REQUIRE_GPU();
  ParityStats stats;
  std::mt19937_64 rng(4);
  for (int vocab : {1, 2, 33}) {
    for (const SamplingParams& p : ParamGrid(vocab)) {
      RowCase c{p, RandomHistory(vocab, rng), rng() % 100};
      c.params.seed = rng();
      ASSERT_NO_FATAL_FAILURE(ExpectParity(RandomLogits(vocab, 1, rng), vocab, vocab, {c}, &stats));
    }
  }
  EXPECT_LE(stats.boundary_mismatches, 1);
}

TEST(SampleTokens, GreedyTiesPickTheLowestId) {
  FLOVER_REQUIRE_GPU();
  const int vocab = 1000;
  std::vector<RowCase> cases;
  std::vector<float> logits;
  auto add = [&](std::vector<float> row, std::vector<int> history, float penalty) {
    RowCase c;
    c.params.repetition_penalty = penalty;
    c.history = std::move(history);
    cases.push_back(std::move(c));
    logits.insert(logits.end(), row.begin(), row.end());
  };
  std::vector<float> row(vocab, -1.0f);
  row[5] = row[17] = row[999] = 4.0f;
  add(row, {}, 1.0f);                                  // -> 5
  add(std::vector<float>(vocab, 0.25f), {}, 1.0f);     // all equal -> 0
  row.assign(vocab, -1.0f);
  row[999] = 3.0f;
  add(row, {}, 1.0f);                                  // -> 999
  row.assign(vocab, 0.0f);
  row[3] = 2.0f;
  row[7] = 3.0f;
  add(row, {7, 7, 7, 9, -1, vocab}, 1.5f);             // 3 / 1.5 == 2: tie with 3 -> 3
  row.assign(vocab, -5.0f);
  row[600] = -2.0f;
  row[100] = -4.0f / 3.0f;
  add(row, {100, 100}, 1.5f);                          // negative: -4/3 * 1.5 = -2 -> tie -> 100
  row.assign(vocab, -std::numeric_limits<float>::infinity());
  add(row, {}, 1.0f);                                  // all -inf -> 0

  DeviceResult got;
  ASSERT_NO_FATAL_FAILURE(RunOnDevice(logits, vocab, vocab, cases, &got));
  EXPECT_EQ(got.tokens, (std::vector<int>{5, 0, 999, 3, 100, 0}));
  ParityStats stats;
  ASSERT_NO_FATAL_FAILURE(ExpectParity(logits, vocab, vocab, cases, &stats));
  EXPECT_EQ(stats.boundary_mismatches, 0);
}

TEST(SampleTokens, TopKOneIsGreedyAndSamplingFollowsTheDistribution) {
  FLOVER_REQUIRE_GPU();
  // Two tokens with probabilities 0.75 / 0.25 (logits log 3 and 0): over 4000 draws the
  // first one's share is 0.75 +- 0.03 (about 4.4 sigma), and top_k 1 always picks it.
  const int vocab = 64, n = 4000;
  std::vector<float> row(vocab, -std::numeric_limits<float>::infinity());
  row[10] = std::log(3.0f);
  row[20] = 0.0f;
  std::vector<RowCase> cases;
  std::vector<float> logits;
  for (int i = 0; i < n; ++i) {
    RowCase c;
    c.params = SamplingParams{1.0f, i % 8 == 0 ? 1 : 0, 1.0f, 1.0f, 99};
    c.draw_index = i;
    cases.push_back(c);
    logits.insert(logits.end(), row.begin(), row.end());
  }
  DeviceResult got;
  ASSERT_NO_FATAL_FAILURE(RunOnDevice(logits, vocab, vocab, cases, &got));
  int first = 0, sampled = 0;
  for (int i = 0; i < n; ++i) {
    if (cases[i].params.top_k == 1) {
      EXPECT_EQ(got.tokens[i], 10) << i;
      continue;
    }
    ASSERT_TRUE(got.tokens[i] == 10 || got.tokens[i] == 20) << i << ": " << got.tokens[i];
    ++sampled;
    first += got.tokens[i] == 10;
  }
  EXPECT_NEAR(static_cast<double>(first) / sampled, 0.75, 0.03);
  ParityStats stats;
  ASSERT_NO_FATAL_FAILURE(ExpectParity(logits, vocab, vocab, cases, &stats));
}

TEST(UniformDraws, MatchTheHostBitForBit) {
  FLOVER_REQUIRE_GPU();
  std::mt19937_64 rng(5);
  std::vector<uint64_t> seeds, indices;
  const uint64_t kMax = std::numeric_limits<uint64_t>::max();
  for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{42}, kMax - 1, kMax})
    for (uint64_t index : {uint64_t{0}, uint64_t{1}, uint64_t{2}, uint64_t{1} << 32, kMax - 1, kMax}) {
      seeds.push_back(seed);
      indices.push_back(index);
    }
  for (int i = 0; i < (1 << 20); ++i) {
    seeds.push_back(i % 2 == 0 ? rng() : static_cast<uint64_t>(i % 97));
    indices.push_back(i % 3 == 0 ? rng() : static_cast<uint64_t>(i));
  }
  const int n = static_cast<int>(seeds.size());
  Result<Stream> stream = Stream::Create();
  FLOVER_ASSERT_OK(stream);
  Result<DeviceBuffer> d_seeds = DeviceBuffer::Allocate(n * sizeof(uint64_t));
  Result<DeviceBuffer> d_indices = DeviceBuffer::Allocate(n * sizeof(uint64_t));
  Result<DeviceBuffer> d_draws = DeviceBuffer::Allocate(n * sizeof(float));
  FLOVER_ASSERT_OK(d_seeds);
  FLOVER_ASSERT_OK(d_indices);
  FLOVER_ASSERT_OK(d_draws);
  FLOVER_ASSERT_OK(CopyToDevice(d_seeds->data(), seeds.data(), n * sizeof(uint64_t), stream->get()));
  FLOVER_ASSERT_OK(CopyToDevice(d_indices->data(), indices.data(), n * sizeof(uint64_t), stream->get()));
  FLOVER_ASSERT_OK(UniformDraws(d_seeds->as<uint64_t>(), d_indices->as<uint64_t>(), n, d_draws->as<float>(),
                                stream->get()));
  std::vector<float> draws(n, -1.0f);
  FLOVER_ASSERT_OK(CopyToHost(draws.data(), d_draws->data(), n * sizeof(float), stream->get()));
  for (int i = 0; i < n; ++i) {
    const float want = UniformDraw(seeds[i], indices[i]);
    ASSERT_EQ(std::memcmp(&draws[i], &want, sizeof(float)), 0)
        << "seed " << seeds[i] << " index " << indices[i] << ": " << draws[i] << " vs " << want;
  }
}

}  // namespace
}  // namespace flover::cuda
