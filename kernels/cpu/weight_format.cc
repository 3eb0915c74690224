// WeightFormat's names and sizes (weight_matmul.h).
#include <cstdio>
#include <cstdlib>

#include "kernels/cpu/weight_blocks.h"
#include "kernels/cpu/weight_matmul.h"

namespace flover::cpu {

const char* WeightFormatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::kF32: return "fp32";
    case WeightFormat::kF16: return "fp16";
    case WeightFormat::kBF16: return "bf16";
    case WeightFormat::kQ8_0: return "q8_0";
    case WeightFormat::kQ4_0: return "q4_0";
    case WeightFormat::kQ4_K: return "q4_k";
  }
  return "unknown";
}

int WeightBlockValues(WeightFormat format) {
  switch (format) {
    case WeightFormat::kF32:
    case WeightFormat::kF16:
    case WeightFormat::kBF16: return 1;
    case WeightFormat::kQ8_0:
    case WeightFormat::kQ4_0: return 32;
    case WeightFormat::kQ4_K: return 256;
  }
  return 1;
}

int WeightBlockBytes(WeightFormat format) {
  switch (format) {
    case WeightFormat::kF32: return 4;
    case WeightFormat::kF16:
    case WeightFormat::kBF16: return 2;
    case WeightFormat::kQ8_0: return kQ8_0Bytes;
    case WeightFormat::kQ4_0: return kQ4_0Bytes;
    case WeightFormat::kQ4_K: return kQ4_KBytes;
  }
  return 4;
}

int64_t WeightRowBytes(WeightFormat format, int64_t cols) {
  const int block = WeightBlockValues(format);
  if (cols < 0 || cols % block != 0) {
    // flover_kernels_cpu sits below flover_common, so no FLOVER_CHECK here.
    std::fprintf(stderr, "flover: WeightRowBytes: %lld values of %s are not whole blocks of %d\n",
                 static_cast<long long>(cols), WeightFormatName(format), block);
    std::abort();
  }
  return cols / block * WeightBlockBytes(format);
}

}  // namespace flover::cpu
