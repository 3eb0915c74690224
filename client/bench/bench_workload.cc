#include "client/bench/bench_workload.h"

#include <cmath>
#include <limits>

#include "common/check.h"

namespace flover {
namespace {

// Seeds of the independent streams derived from the user's seed.
constexpr uint64_t kArrivalStream = 0x61727269766c7331ULL;
constexpr uint64_t kPromptStream = 0x70726f6d70747331ULL;
constexpr uint64_t kLengthStream = 0x6c656e6774687331ULL;
constexpr uint64_t kPromptLengthStream = 0x706c656e67746831ULL;

bool ParsePositiveInt(const std::string& text, int* value) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 9) return false;
  *value = std::stoi(text);
  return true;
}

}  // namespace

uint64_t WorkloadRng::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

int WorkloadRng::UniformInt(int lo, int hi) {
  FLOVER_CHECK(lo <= hi) << lo << " > " << hi;
  const uint64_t range = static_cast<uint64_t>(static_cast<int64_t>(hi) - lo) + 1;
  // Rejection sampling: no modulo bias.
  const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % range;
  uint64_t x = Next();
  while (x >= limit) x = Next();
  return static_cast<int>(lo + static_cast<int64_t>(x % range));
}

double WorkloadRng::Uniform01() { return static_cast<double>((Next() >> 11) + 1) * 0x1.0p-53; }

double WorkloadRng::Exponential(double mean) { return -mean * std::log(Uniform01()); }

Status ValidateWorkload(const WorkloadSpec& s) {
  if (s.n_requests < 1) return InvalidArgument("--requests: " + std::to_string(s.n_requests) + " must be >= 1");
  if (!std::isfinite(s.interval_ms) || s.interval_ms < 0)
    return InvalidArgument("--interval-ms: " + std::to_string(s.interval_ms) + " must be >= 0");
  if (s.arrival == ArrivalProcess::kPoisson && s.interval_ms <= 0)
    return InvalidArgument("Poisson arrivals need a mean interval > 0 (--rate R or --mean-interval-ms M)");
  if (s.output_min < 1 || s.output_max < s.output_min)
    return InvalidArgument("--output-len: [" + std::to_string(s.output_min) + ", " + std::to_string(s.output_max) +
                           "] is not a range of lengths >= 1");
  if (s.prompt_text.empty()) {
    if (s.prompt_min < 1 || s.prompt_max < s.prompt_min)
      return InvalidArgument("--prompt-len: [" + std::to_string(s.prompt_min) + ", " + std::to_string(s.prompt_max) +
                             "] is not a range of lengths >= 1");
    if (s.vocab_size != 0 && s.vocab_size <= kFirstRandomToken)
      return InvalidArgument("random prompts need a vocabulary of more than " + std::to_string(kFirstRandomToken) +
                             " tokens; the model has " + std::to_string(s.vocab_size));
  }
  return Status::Ok();
}

Result<std::vector<BenchRequest>> GenerateWorkload(const WorkloadSpec& s) {
  FLOVER_RETURN_IF_ERROR(ValidateWorkload(s));
  if (s.prompt_text.empty() && s.vocab_size == 0)
    return InvalidArgument("random prompts need the model's vocabulary size (0 = unknown)");
  WorkloadRng arrivals(s.seed ^ kArrivalStream);
  WorkloadRng prompts(s.seed ^ kPromptStream);
  WorkloadRng lengths(s.seed ^ kLengthStream);
  WorkloadRng prompt_lengths(s.seed ^ kPromptLengthStream);
  std::vector<BenchRequest> requests(static_cast<size_t>(s.n_requests));
  double t_ms = 0;
  for (int i = 0; i < s.n_requests; ++i) {
    BenchRequest& r = requests[static_cast<size_t>(i)];
    r.index = i;
    if (i > 0) t_ms += s.arrival == ArrivalProcess::kPoisson ? arrivals.Exponential(s.interval_ms) : s.interval_ms;
    r.arrival_s = t_ms / 1000.0;
    if (s.prompt_text.empty()) {
      const int len = s.prompt_min == s.prompt_max ? s.prompt_min : prompt_lengths.UniformInt(s.prompt_min, s.prompt_max);
      r.prompt_ids.resize(static_cast<size_t>(len));
      for (int& id : r.prompt_ids) id = prompts.UniformInt(kFirstRandomToken, s.vocab_size - 1);
    } else {
      r.prompt_text = s.prompt_text;
    }
    r.output_len = lengths.UniformInt(s.output_min, s.output_max);
  }
  return requests;
}

Status ParseLengthRange(const std::string& flag, const std::string& text, int* min, int* max) {
  const size_t colon = text.find(':');
  const std::string a = text.substr(0, colon);
  const std::string b = colon == std::string::npos ? a : text.substr(colon + 1);
  int lo = 0, hi = 0;
  if (!ParsePositiveInt(a, &lo) || !ParsePositiveInt(b, &hi) || lo < 1 || hi < 1)
    return InvalidArgument(flag + " " + text + ": expected a token count N >= 1 or a range A:B");
  if (lo > hi)
    return InvalidArgument(flag + " " + text + ": the range is empty (" + a + " > " + b +
                           "); write the smaller bound first");
  *min = lo;
  *max = hi;
  return Status::Ok();
}

}  // namespace flover
