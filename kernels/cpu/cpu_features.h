// What this CPU (and its operating system) lets the kernels run, for choosing between a
// kernel's instruction-set variants at run time. Each answer is computed once.
//
// Thread-safety: safe to call from any thread.
#pragma once

namespace flover::cpu {

// AVX2 and FMA (the "avx2" kernels).
bool CpuHasAvx2Fma();
// F16C: the fp16 <-> fp32 conversion instructions (vcvtph2ps, vcvtps2ph).
bool CpuHasF16c();
// AVX-512 F, VL, BW and DQ, with AVX2 and FMA (the "avx512" kernels).
bool CpuHasAvx512();
// The above and AVX-512 VNNI (vpdpbusd, vpdpwssd).
bool CpuHasAvx512Vnni();

}  // namespace flover::cpu
