// The workload of `flover bench`: N requests with their arrival times, prompts and
// output lengths, generated from a WorkloadSpec and a seed. Pure functions: the same
// spec gives the same requests on every machine (own generators, not the
// implementation-defined std:: distributions), so runs under different policies, and
// on different days, see identical work.
//
// Arrivals: fixed interval (0 = all at once) or a Poisson process (exponential gaps of
// the given mean); the first request arrives at 0. Prompts: token ids drawn uniformly
// from [kFirstRandomToken, vocab_size) (the paper's random 8-token prompts), as many as
// a length uniform in [prompt_min, prompt_max], or one text for every request. Output
// lengths: uniform in [output_min, output_max]. The four random streams (arrivals,
// prompt ids, prompt lengths, output lengths) are independent: changing the output
// range does not change the prompts, and a fixed prompt length draws no length.
//
// Thread-safety: pure functions and value types.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace flover {

// Ids 0..2 are <unk>, BOS and EOS in llama2.c vocabularies: random prompts avoid them.
inline constexpr int kFirstRandomToken = 3;

enum class ArrivalProcess { kFixedInterval, kPoisson };

struct WorkloadSpec {
  int n_requests = 16;
  ArrivalProcess arrival = ArrivalProcess::kFixedInterval;
  double interval_ms = 0;  // kFixedInterval: the gap (0 = all at once); kPoisson: the mean gap (> 0)
  uint64_t seed = 0;
  int prompt_min = 8;       // random prompts' lengths, uniform in [prompt_min, prompt_max];
  int prompt_max = 8;       //   ignored when prompt_text is set
  std::string prompt_text;  // the same text for every request (tokenized by the coordinator)
  int output_min = 128;     // output tokens, uniform in [output_min, output_max]
  int output_max = 128;
  int vocab_size = 0;       // random prompt ids are < vocab_size; 0 = not known yet
};

struct BenchRequest {
  int index = 0;
  double arrival_s = 0;         // offset from the start of the workload
  std::vector<int> prompt_ids;  // empty when prompt_text is used
  std::string prompt_text;
  int output_len = 0;           // max_tokens (exact with ignore_eos)
};

// InvalidArgument naming the flag: n_requests < 1, a negative interval, a Poisson mean
// <= 0, a prompt length range that is empty or starts below 1, an output range that is empty or starts below 1, a known
// vocabulary too small for random prompts.
Status ValidateWorkload(const WorkloadSpec& spec);

// The requests, in arrival order; ValidateWorkload's error for a bad spec, and an error
// for random prompts without a vocabulary size.
Result<std::vector<BenchRequest>> GenerateWorkload(const WorkloadSpec& spec);

// "N" or "A:B" (uniform in [A, B]) into *min, *max. InvalidArgument naming the flag and
// the text on anything else, on values < 1 or on A > B ("--output-len 5:2: ...").
Status ParseLengthRange(const std::string& flag, const std::string& text, int* min, int* max);
inline Status ParseOutputLen(const std::string& text, int* min, int* max) {
  return ParseLengthRange("--output-len", text, min, max);
}

// The deterministic generator behind the workload (SplitMix64), exposed for tests.
class WorkloadRng {
 public:
  explicit WorkloadRng(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  int UniformInt(int lo, int hi);           // [lo, hi], REQUIRES lo <= hi
  double Uniform01();                       // (0, 1]
  double Exponential(double mean);          // mean > 0

 private:
  uint64_t state_;
};

}  // namespace flover
