#include "kernels/cpu/cpu_features.h"

#include <cpuid.h>

namespace flover::cpu {
namespace {

// CPUID leaf 7 (sub-leaf 0) register ecx, or 0 where the leaf does not exist.
unsigned Leaf7Ecx() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return 0;
  return ecx;
}

}  // namespace

// __builtin_cpu_supports also checks that the OS saves the wider registers (XGETBV) for
// "avx2" and "avx512f". The features it does not know in every supported compiler
// (clang 14 lacks "f16c" and "avx512vnni") are read from CPUID on top of those.

bool CpuHasAvx2Fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

bool CpuHasF16c() {
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __builtin_cpu_supports("avx") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  }();
  return has;
}

bool CpuHasAvx512() {
  static const bool has = CpuHasAvx2Fma() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq");
  return has;
}

bool CpuHasAvx512Vnni() {
  static const bool has = CpuHasAvx512() && (Leaf7Ecx() & bit_AVX512VNNI) != 0;
  return has;
}

}  // namespace flover::cpu
