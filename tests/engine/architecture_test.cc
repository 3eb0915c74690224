// The decoder on every architecture shape ModelSpec describes (architectures.h), on one
// rank: its logits equal the independent reference model's up to float rounding, its
// greedy argmax equals the argmax of its logits, and a sequence's logits are the same
// bits fused with others as alone; an engine over it generates the reference's greedy
// tokens. (Tensor parallelism: tests/comm/tensor_parallel_test.cc.)
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <vector>

#include "tests/engine/architectures.h"
#include "tests/engine/decoder_runs.h"
#include "tests/engine/reference_model.h"
#include "worker/engine/cpu_backend.h"
#include "worker/engine/decoder.h"
#include "worker/engine/engine.h"

namespace flover {
namespace {

using testing::Architecture;
using testing::ArchitectureWeights;
using testing::Argmax;
using testing::NormalisedError;
using testing::RunDecoder;

const std::vector<std::vector<int>> kPrompts = {{1, 5, 7, 3, 9}, {2, 9}, {4, 4, 10, 11, 12, 13, 14, 15, 16, 36}};
constexpr int kDecodeSteps = 12;

std::vector<int> PromptLengths() {
  std::vector<int> n;
  for (const auto& p : kPrompts) n.push_back(static_cast<int>(p.size()));
  return n;
}

// Row s of a step's logits [n_sequences, vocab].
std::vector<float> Row(const std::vector<float>& logits, size_t s, int vocab) {
  return {logits.begin() + static_cast<long>(s) * vocab, logits.begin() + static_cast<long>(s + 1) * vocab};
}

// The reference's logits at every position of `seq` from n_prompt - 1 on: the positions
// whose logits the decoder returns in RunDecoder's steps.
std::vector<std::vector<float>> ReferenceLogits(const ModelWeights& w, const std::vector<int>& seq, int n_prompt) {
  testing::ReferenceModel ref(w);
  std::vector<std::vector<float>> out;
  for (int pos = 0; pos < static_cast<int>(seq.size()); ++pos) {
    const std::vector<float>& logits = ref.Forward(seq[pos], pos);
    if (pos >= n_prompt - 1) out.push_back(logits);
  }
  return out;
}

class ArchitectureTest : public ::testing::TestWithParam<Architecture> {};

TEST_P(ArchitectureTest, LogitsMatchTheReferenceModel) {
  const ModelWeights w = ArchitectureWeights(GetParam().spec, 21);
  ASSERT_TRUE(w.Validate().ok()) << w.Validate().ToString();
  const int vocab = w.spec.vocab_size;
  Decoder decoder(w);
  std::vector<std::vector<int>> seqs = kPrompts;
  std::vector<std::vector<int>> argmax;
  const std::vector<std::vector<float>> got =
      RunDecoder(decoder, seqs, PromptLengths(), kDecodeSteps, /*extend=*/true, &argmax);
  ASSERT_EQ(got.size(), static_cast<size_t>(kDecodeSteps + 1));
  for (size_t s = 0; s < seqs.size(); ++s) {
    // The last token was appended but never forwarded.
    const std::vector<int> forwarded(seqs[s].begin(), seqs[s].end() - 1);
    const std::vector<std::vector<float>> want = ReferenceLogits(w, forwarded, static_cast<int>(kPrompts[s].size()));
    ASSERT_EQ(want.size(), got.size());
    for (size_t step = 0; step < got.size(); ++step) {
      const std::vector<float> row = Row(got[step], s, vocab);
      EXPECT_LT(NormalisedError(row, want[step]), 1e-5) << "sequence " << s << " step " << step;
      EXPECT_EQ(argmax[step][s], Argmax(row.data(), vocab)) << "sequence " << s << " step " << step;
    }
  }
}

TEST_P(ArchitectureTest, FusedLogitsAreTheBitsOfEachSequenceAlone) {
  const ModelWeights w = ArchitectureWeights(GetParam().spec, 22);
  const int vocab = w.spec.vocab_size;
  std::vector<std::vector<int>> seqs = kPrompts;
  Decoder fused_decoder(w);
  const std::vector<std::vector<float>> fused =
      RunDecoder(fused_decoder, seqs, PromptLengths(), kDecodeSteps, /*extend=*/true);
  ASSERT_EQ(fused.size(), static_cast<size_t>(kDecodeSteps + 1));
  for (size_t s = 0; s < seqs.size(); ++s) {
    Decoder alone_decoder(w);
    std::vector<std::vector<int>> one = {seqs[s]};
    const std::vector<std::vector<float>> alone =
        RunDecoder(alone_decoder, one, {static_cast<int>(kPrompts[s].size())}, kDecodeSteps, /*extend=*/false);
    ASSERT_EQ(alone.size(), fused.size());
    for (size_t step = 0; step < fused.size(); ++step)
      EXPECT_EQ(std::memcmp(alone[step].data(), fused[step].data() + s * vocab, sizeof(float) * vocab), 0)
          << "sequence " << s << " step " << step;
  }
}

// The serving path: an engine over a CPU backend, requests joining at successive steps
// and their prompts split into prefill chunks fused with the others' decodes, generates
// the reference's greedy tokens.
TEST_P(ArchitectureTest, EngineGeneratesTheReferenceGreedyTokens) {
  const ModelWeights w = ArchitectureWeights(GetParam().spec, 25);
  constexpr int kMaxTokens = 40;
  std::vector<std::vector<int>> expected;
  for (const std::vector<int>& prompt : kPrompts) {
    testing::ReferenceModel ref(w);
    expected.push_back(ref.Greedy(prompt, static_cast<int>(prompt.size()) - 1 + kMaxTokens));
  }
  Result<std::unique_ptr<CpuBackend>> backend =
      CpuBackend::Create(w, ShardInfo{}, nullptr, KvCacheConfig{16, int64_t{1} << 30, 64});
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  EngineConfig config;
  config.max_step_tokens = 3;
  Result<std::unique_ptr<Engine>> engine = Engine::Create(std::move(backend).value(), config);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();

  std::map<uint64_t, size_t> index;
  std::vector<std::vector<int>> got(kPrompts.size());
  std::vector<EngineEvent> events;
  for (int step = 0; step < 1000 && (step < static_cast<int>(kPrompts.size()) || (*engine)->has_work()); ++step) {
    if (step < static_cast<int>(kPrompts.size())) {
      RequestParams r;
      r.prompt = kPrompts[step];
      r.stop.max_tokens = kMaxTokens;
      Result<uint64_t> id = (*engine)->Add(r);
      ASSERT_TRUE(id.ok()) << id.status().ToString();
      index[*id] = static_cast<size_t>(step);
    }
    events.clear();
    const Status status = (*engine)->Step(&events);
    ASSERT_TRUE(status.ok()) << status.ToString();
    for (const EngineEvent& e : events)
      if (e.token >= 0) got[index.at(e.request_id)].push_back(e.token);
  }
  size_t n_generated = 0;
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    EXPECT_EQ(got[i], expected[i]) << "prompt " << i;
    n_generated += expected[i].size();
  }
  EXPECT_GE(n_generated, static_cast<size_t>(kMaxTokens)) << "the sequences ended at once: nothing was compared";
}

INSTANTIATE_TEST_SUITE_P(EveryShape, ArchitectureTest, ::testing::ValuesIn(testing::SmallArchitectures()),
                         [](const ::testing::TestParamInfo<Architecture>& info) { return info.param.name; });

// The LLaMA 3 rope scaling of the test shape changes the logits far beyond the tolerance
// above, so the comparison with the reference would see a decoder that ignored it.
TEST(ArchitectureFeatureTest, Llama3RopeScalingChangesTheLogits) {
  const ModelSpec spec = testing::SmallArchitecture("llama3");
  ASSERT_EQ(spec.rope_scaling.kind, RopeScaling::Kind::kLlama3);
  ModelWeights scaled = ArchitectureWeights(spec, 23);
  ModelWeights plain = scaled;
  plain.spec.rope_scaling = RopeScaling{};
  Decoder scaled_decoder(scaled), plain_decoder(plain);
  std::vector<std::vector<int>> a = {kPrompts[2]}, b = {kPrompts[2]};
  const auto with = RunDecoder(scaled_decoder, a, {10}, 0, /*extend=*/false);
  const auto without = RunDecoder(plain_decoder, b, {10}, 0, /*extend=*/false);
  ASSERT_EQ(with.size(), 1u);
  ASSERT_EQ(without.size(), 1u);
  EXPECT_GT(NormalisedError(with[0], without[0]), 1e-3);
}

// The LM head bias reaches both the logits and the greedy argmax.
TEST(ArchitectureFeatureTest, ClassifierBiasDecidesTheGreedyToken) {
  const ModelSpec spec = testing::SmallArchitecture("gptj");
  ASSERT_TRUE(spec.classifier_bias);
  const ModelWeights w = ArchitectureWeights(spec, 24);
  const int vocab = w.spec.vocab_size;
  for (int favourite : {0, 17, vocab - 1}) {
    ModelWeights biased = w;
    biased.classifier_bias.f32()[favourite] += 1000.0f;
    Decoder decoder(std::move(biased));
    std::vector<std::vector<int>> seqs = kPrompts;
    std::vector<std::vector<int>> argmax;
    const auto logits = RunDecoder(decoder, seqs, PromptLengths(), 4, /*extend=*/true, &argmax);
    ASSERT_EQ(argmax.size(), 5u);
    for (size_t step = 0; step < argmax.size(); ++step)
      for (size_t s = 0; s < seqs.size(); ++s) {
        EXPECT_EQ(argmax[step][s], favourite) << "step " << step;
        EXPECT_EQ(Argmax(&logits[step][s * vocab], vocab), favourite) << "step " << step;
      }
  }
}

}  // namespace
}  // namespace flover
