// Matmul: kernel selection, the thread split over `out`, and the portable kernel.
// The per-element arithmetic every kernel follows is described in matmul_internal.h.
#include "kernels/cpu/matmul.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul_internal.h"

namespace flover::cpu {
namespace internal {

void MatmulRangeGeneric(const float* x, int x_stride, const float* w, float* y, int n, int in, int out, int o_begin,
                        int o_end, bool accumulate) {
  constexpr int kLanes = 16;
  const int full = in / kLanes * kLanes;
  for (int o = o_begin; o < o_end; ++o) {
    const float* wo = w + static_cast<size_t>(o) * in;
    for (int r = 0; r < n; ++r) {
      const float* xr = x + static_cast<size_t>(r) * x_stride;
      float a[kLanes] = {};
      for (int k = 0; k < full; k += kLanes) {
        for (int l = 0; l < kLanes; ++l) a[l] += xr[k + l] * wo[k + l];
      }
      if (full < in) {
        // Padding lanes add 0 * 0 like the SIMD kernels (this turns -0.0f into +0.0f).
        for (int l = 0; l < kLanes; ++l) a[l] += full + l < in ? xr[full + l] * wo[full + l] : 0.0f;
      }
      float b[8], c[4];
      for (int i = 0; i < 8; ++i) b[i] = a[i] + a[i + 8];
      for (int i = 0; i < 4; ++i) c[i] = b[i] + b[i + 4];
      const float s = (c[0] + c[2]) + (c[1] + c[3]);
      float& dst = y[static_cast<size_t>(r) * out + o];
      dst = accumulate ? dst + s : s;
    }
  }
}

namespace {

MatmulKernel SelectKernel() {
  if (const char* forced = std::getenv("FLOVER_MATMUL_KERNEL"); forced != nullptr && *forced != '\0') {
    const MatmulKernel k = FindMatmulKernel(forced);
    if (k.fn != nullptr) return k;
    std::fprintf(stderr, "flover: FLOVER_MATMUL_KERNEL=%s is unknown or unsupported by this CPU; ignoring it\n",
                 forced);
  }
  for (const char* name : {"avx512", "avx2", "generic"}) {
    const MatmulKernel k = FindMatmulKernel(name);
    if (k.fn != nullptr) return k;
  }
  return {};
}

// Below this many multiply-adds per thread, forking costs more than it saves.
constexpr long kMinMacsPerThread = 1L << 15;

// Rows a multiple of 4 KiB apart map to the same L1 sets, so the x rows of a register
// tile evict each other and the w rows (about 25% slower at in = 2048). Such x is
// copied to rows padded by one cache line first.
constexpr int kAliasFloats = 1024;
constexpr int kPadFloats = 16;

// At least `floats` floats of `buffer` (grown as needed), from its first 64-byte boundary.
float* CacheAligned(std::vector<float>& buffer, long floats) {
  constexpr long kAlignFloats = 16;
  if (buffer.size() < static_cast<size_t>(floats + kAlignFloats)) buffer.resize(floats + kAlignFloats);
  const auto address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + (-(address / sizeof(float)) & (kAlignFloats - 1));
}

}  // namespace

const float* UnaliasedRows(const float* x, int n, int in, int* stride) {
  *stride = in;
  if (n <= 1 || in % kAliasFloats != 0) return x;
  thread_local std::vector<float> buffer;
  *stride = in + kPadFloats;
  float* rows = CacheAligned(buffer, static_cast<long>(n) * *stride);
  for (int r = 0; r < n; ++r) {
    std::memcpy(rows + static_cast<size_t>(r) * *stride, x + static_cast<size_t>(r) * in, sizeof(float) * in);
  }
  return rows;
}

float* PanelScratch(long floats) {
  thread_local std::vector<float> buffer;
  return CacheAligned(buffer, floats);
}

const MatmulKernel& SelectedMatmulKernel() {
  static const MatmulKernel kernel = SelectKernel();
  return kernel;
}

MatmulKernel FindMatmulKernel(const char* name) {
  if (std::strcmp(name, "avx512") == 0 && CpuHasAvx512()) return {"avx512", MatmulRangeAvx512, 6};
  if (std::strcmp(name, "avx2") == 0 && CpuHasAvx2Fma()) return {"avx2", MatmulRangeAvx2, 4};
  if (std::strcmp(name, "generic") == 0) return {"generic", MatmulRangeGeneric, 1};
  return {};
}

void MatmulWithKernel(const MatmulKernel& kernel, const float* x, const float* w, float* y, int n, int in, int out,
                      bool accumulate) {
  if (n < 0 || in <= 0 || out <= 0) {
    // flover_kernels_cpu sits below flover_common, so no FLOVER_CHECK here.
    std::fprintf(stderr, "flover: Matmul: bad shape n=%d in=%d out=%d\n", n, in, out);
    std::abort();
  }
  if (n == 0) return;
  int x_stride = in;
  x = UnaliasedRows(x, n, in, &x_stride);
  // The split of `out` between threads changes which thread computes an element, never
  // how it is computed, so results do not depend on the thread count.
  const int n_units = (out + kernel.col_align - 1) / kernel.col_align;
  const long macs = static_cast<long>(n) * in * out;
  const int n_threads = static_cast<int>(std::min<long>({omp_get_max_threads(), macs / kMinMacsPerThread, n_units}));
  if (n_threads <= 1 || omp_in_parallel()) {
    kernel.fn(x, x_stride, w, y, n, in, out, 0, out, accumulate);
    return;
  }
#pragma omp parallel num_threads(n_threads)
  {
    const int t = omp_get_thread_num(), n_team = omp_get_num_threads();
    const int begin = std::min(out, static_cast<int>(static_cast<long>(n_units) * t / n_team) * kernel.col_align);
    const int end = std::min(out, static_cast<int>(static_cast<long>(n_units) * (t + 1) / n_team) * kernel.col_align);
    if (begin < end) kernel.fn(x, x_stride, w, y, n, in, out, begin, end, accumulate);
  }
}

}  // namespace internal

void Matmul(const float* x, const float* w, float* y, int n, int in, int out, bool accumulate) {
  internal::MatmulWithKernel(internal::SelectedMatmulKernel(), x, w, y, n, in, out, accumulate);
}

const char* MatmulKernelName() { return internal::SelectedMatmulKernel().name; }

}  // namespace flover::cpu
