// MatmulWeights: the variants of each weight format, the choice between them, and the
// thread split over W's rows. The arithmetic is in weight_matmul_internal.h.
#include "kernels/cpu/weight_matmul.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/weight_matmul_internal.h"

namespace flover::cpu {
namespace internal {

bool IsIntFormat(WeightFormat format) {
  return format == WeightFormat::kQ8_0 || format == WeightFormat::kQ4_0 || format == WeightFormat::kQ4_K;
}

namespace {

bool Always() { return true; }
bool HasAvx2FmaF16c() { return CpuHasAvx2Fma() && CpuHasF16c(); }
bool HasAvx512Vnni() { return CpuHasAvx512Vnni() && CpuHasF16c(); }

constexpr const char* kAvx512Features = "AVX-512 F/VL/BW/DQ and FMA";
constexpr const char* kAvx2Features = "AVX2 and FMA";
constexpr const char* kAvx2F16cFeatures = "AVX2, FMA and F16C";
constexpr const char* kVnniFeatures = "AVX-512 F/VL/BW/DQ, AVX-512 VNNI, FMA and F16C";

struct Variant {
  WeightFormat format;
  WeightKernel kernel;  // fn set whether or not the CPU can run it
  const char* requirement;
  bool (*supported)();
};

// Every variant, best first within a format.
constexpr Variant kVariants[] = {
    {WeightFormat::kF32, {"avx512", WeightRangeF32InPlace, 6, 0, MatmulRangeAvx512}, kAvx512Features, CpuHasAvx512},
    {WeightFormat::kF32, {"avx2", WeightRangeF32InPlace, 4, 0, MatmulRangeAvx2}, kAvx2Features, CpuHasAvx2Fma},
    {WeightFormat::kF32, {"generic", WeightRangeF32InPlace, 1, 0, MatmulRangeGeneric}, "", Always},

    {WeightFormat::kF16, {"avx512", WeightRangeF16Avx512, 6, 0, MatmulRangeAvx512}, kAvx512Features, CpuHasAvx512},
    {WeightFormat::kF16, {"avx2", WeightRangeF16Avx2, 4, 0, MatmulRangeAvx2}, kAvx2F16cFeatures, HasAvx2FmaF16c},
    {WeightFormat::kF16, {"widen+avx512", WeightRangeWidened, 6, 0, MatmulRangeAvx512}, kAvx512Features, CpuHasAvx512},
    {WeightFormat::kF16, {"widen+avx2", WeightRangeWidened, 4, 0, MatmulRangeAvx2}, kAvx2Features, CpuHasAvx2Fma},
    {WeightFormat::kF16, {"widen+generic", WeightRangeWidened, 1, 0, MatmulRangeGeneric}, "", Always},

    {WeightFormat::kBF16, {"avx512", WeightRangeBf16Avx512, 6, 0, MatmulRangeAvx512}, kAvx512Features, CpuHasAvx512},
    {WeightFormat::kBF16, {"avx2", WeightRangeBf16Avx2, 4, 0, MatmulRangeAvx2}, kAvx2Features, CpuHasAvx2Fma},
    {WeightFormat::kBF16, {"widen+avx512", WeightRangeWidened, 6, 0, MatmulRangeAvx512}, kAvx512Features, CpuHasAvx512},
    {WeightFormat::kBF16, {"widen+avx2", WeightRangeWidened, 4, 0, MatmulRangeAvx2}, kAvx2Features, CpuHasAvx2Fma},
    {WeightFormat::kBF16, {"widen+generic", WeightRangeWidened, 1, 0, MatmulRangeGeneric}, "", Always},

    {WeightFormat::kQ8_0, {"avx512-vnni", WeightRangeQ8_0Avx512Vnni, kInterleaveRows, 32}, kVnniFeatures,
     HasAvx512Vnni},
    {WeightFormat::kQ8_0, {"avx2", WeightRangeQ8_0Avx2, kInterleaveRows, 32}, kAvx2F16cFeatures, HasAvx2FmaF16c},
    {WeightFormat::kQ8_0, {"generic", WeightRangeQ8_0Generic, 1, 32}, "", Always},

    {WeightFormat::kQ4_0, {"avx512-vnni", WeightRangeQ4_0Avx512Vnni, kInterleaveRows, 32}, kVnniFeatures,
     HasAvx512Vnni},
    {WeightFormat::kQ4_0, {"avx2", WeightRangeQ4_0Avx2, kInterleaveRows, 32}, kAvx2F16cFeatures, HasAvx2FmaF16c},
    {WeightFormat::kQ4_0, {"generic", WeightRangeQ4_0Generic, 1, 32}, "", Always},

    {WeightFormat::kQ4_K, {"avx512-vnni", WeightRangeQ4_KAvx512Vnni, kInterleaveRows, 256}, kVnniFeatures,
     HasAvx512Vnni},
    {WeightFormat::kQ4_K, {"avx2", WeightRangeQ4_KAvx2, kInterleaveRows, 256}, kAvx2F16cFeatures, HasAvx2FmaF16c},
    {WeightFormat::kQ4_K, {"generic", WeightRangeQ4_KGeneric, 1, 256}, "", Always},
};

const Variant* FindVariant(WeightFormat format, const char* name) {
  for (const Variant& v : kVariants) {
    if (v.format == format && std::strcmp(v.kernel.name, name) == 0) return &v;
  }
  return nullptr;
}

// The variants whose arithmetic is that of Matmul kernel `level`, best first.
std::vector<const char*> CandidatesFor(WeightFormat format, const char* level) {
  const bool avx512 = std::strcmp(level, "avx512") == 0, avx2 = std::strcmp(level, "avx2") == 0;
  if (format == WeightFormat::kF32) {
    if (avx512) return {"avx512"};
    if (avx2) return {"avx2"};
    return {"generic"};
  }
  if (IsIntFormat(format)) {
    if (avx512) return {"avx512-vnni", "avx2", "generic"};
    if (avx2) return {"avx2", "generic"};
    return {"generic"};
  }
  if (avx512) return {"avx512", "widen+avx512"};
  if (avx2) return {"avx2", "widen+avx2"};
  return {"widen+generic"};
}

WeightKernel SelectKernel(WeightFormat format) {
  for (const char* name : CandidatesFor(format, SelectedMatmulKernel().name)) {
    const WeightKernel k = FindWeightKernel(format, name);
    if (k.fn != nullptr) return k;
  }
  return {};
}

// Below this many multiply-adds per thread, forking costs more than it saves.
constexpr long kMinMacsPerThread = 1L << 15;

}  // namespace

std::vector<const char*> WeightKernelNames(WeightFormat format) {
  std::vector<const char*> names;
  for (const Variant& v : kVariants) {
    if (v.format == format) names.push_back(v.kernel.name);
  }
  return names;
}

WeightKernel FindWeightKernel(WeightFormat format, const char* name) {
  const Variant* v = FindVariant(format, name);
  if (v == nullptr || !v->supported()) return {};
  return v->kernel;
}

const char* WeightKernelRequirement(WeightFormat format, const char* name) {
  const Variant* v = FindVariant(format, name);
  return v == nullptr ? nullptr : v->requirement;
}

const WeightKernel& SelectedWeightKernel(WeightFormat format) {
  if (static_cast<unsigned>(format) > static_cast<unsigned>(WeightFormat::kQ4_K)) {
    std::fprintf(stderr, "flover: no weight format %d\n", static_cast<int>(format));
    std::abort();
  }
  static const WeightKernel kernels[] = {
      SelectKernel(WeightFormat::kF32),  SelectKernel(WeightFormat::kF16),  SelectKernel(WeightFormat::kBF16),
      SelectKernel(WeightFormat::kQ8_0), SelectKernel(WeightFormat::kQ4_0), SelectKernel(WeightFormat::kQ4_K),
  };
  return kernels[static_cast<int>(format)];
}

void MatmulWeightsWithKernel(const WeightKernel& chosen, const float* x, const WeightView& w, float* y, int n,
                             bool accumulate) {
  // The int8 formats' SIMD variants read only the interleaved layout; the portable one
  // reads both and gives the same bits. Every float variant reads both.
  const bool int8_rows = IsIntFormat(w.format) && w.layout == WeightLayout::kRows;
  const WeightKernel portable = int8_rows ? FindWeightKernel(w.format, "generic") : WeightKernel{};
  const WeightKernel& kernel = int8_rows ? portable : chosen;
  if (n < 0 || w.rows <= 0 || w.cols <= 0 || w.cols % WeightBlockValues(w.format) != 0 || kernel.fn == nullptr ||
      (w.layout == WeightLayout::kInterleaved && !HasInterleavedLayout(w.format))) {
    // flover_kernels_cpu sits below flover_common, so no FLOVER_CHECK here.
    std::fprintf(stderr, "flover: MatmulWeights: bad call: n=%d, %s matrix of %d x %d%s, kernel %s\n", n,
                 WeightFormatName(w.format), w.rows, w.cols,
                 w.layout == WeightLayout::kInterleaved ? " (interleaved)" : "",
                 kernel.name != nullptr ? kernel.name : "(none)");
    std::abort();
  }
  if (n == 0) return;
  WeightMatmulArgs a;
  a.format = w.format;
  a.w = static_cast<const uint8_t*>(w.data);
  a.w_row_bytes = WeightRowBytes(w.format, w.cols);
  a.layout = w.layout;
  a.y = y;
  a.n = n;
  a.cols = w.cols;
  a.rows = w.rows;
  a.accumulate = accumulate;
  a.widened = kernel.widened;
  if (kernel.activation_block > 0) {
    thread_local std::vector<uint8_t> storage;  // reused by the next call on this thread
    a.qx = QuantizeActivationRows(x, n, w.cols, kernel.activation_block, storage);
  } else {
    a.x = UnaliasedRows(x, n, w.cols, &a.x_stride);
  }
  // The split of W's rows between threads changes which thread computes an element,
  // never how it is computed, so results do not depend on the thread count.
  // Interleaved matrices split on whole groups of rows.
  const int col_align =
      w.layout == WeightLayout::kInterleaved ? std::max(kernel.col_align, kInterleaveRows) : kernel.col_align;
  const int n_units = (w.rows + col_align - 1) / col_align;
  const long macs = static_cast<long>(n) * w.cols * w.rows;
  const int n_threads = static_cast<int>(std::min<long>({omp_get_max_threads(), macs / kMinMacsPerThread, n_units}));
  if (n_threads <= 1 || omp_in_parallel()) {
    kernel.fn(a, 0, w.rows);
    return;
  }
#pragma omp parallel num_threads(n_threads)
  {
    const int t = omp_get_thread_num(), n_team = omp_get_num_threads();
    const int begin = std::min(w.rows, static_cast<int>(static_cast<long>(n_units) * t / n_team) * col_align);
    const int end = std::min(w.rows, static_cast<int>(static_cast<long>(n_units) * (t + 1) / n_team) * col_align);
    if (begin < end) kernel.fn(a, begin, end);
  }
}

}  // namespace internal

void MatmulWeights(const float* x, const WeightView& w, float* y, int n, bool accumulate) {
  internal::MatmulWeightsWithKernel(internal::SelectedWeightKernel(w.format), x, w, y, n, accumulate);
}

const char* MatmulWeightsKernelName(WeightFormat format) { return internal::SelectedWeightKernel(format).name; }

WeightLayout PreferredWeightLayout(WeightFormat format) {
  // The float formats' "avx2" variants (not "widen+avx2") read interleaved groups in place.
  if (internal::IsIntFormat(format) || std::strcmp(internal::SelectedWeightKernel(format).name, "avx2") == 0)
    return WeightLayout::kInterleaved;
  return WeightLayout::kRows;
}

}  // namespace flover::cpu
