// FLOVER_ISA_REGION_BEGIN("avx2,fma") ... FLOVER_ISA_REGION_END(): every function defined
// between the two is compiled for the named instruction sets, whatever the file's own
// flags (GCC: a target pragma; clang: the same target attribute on every function); the
// code that calls them checks the CPU first (cpu_features.h). Include only <immintrin.h>
// and headers without intrinsics before a region, so that no inline library function is
// emitted with the region's instructions.
//
// A region also silences -Wuninitialized and -Wmaybe-uninitialized: GCC 12 warns about
// the _mm512_undefined_ps() inside unmasked shuffle and conversion intrinsics (GCC bug
// 105593, fixed in GCC 13); no region reads an undefined value.
#pragma once

#define FLOVER_ISA_PRAGMA(x) _Pragma(#x)

#if defined(__clang__)
#define FLOVER_ISA_REGION_BEGIN(isa)                                                    \
  FLOVER_ISA_PRAGMA(clang attribute push(__attribute__((target(isa))), apply_to = function)) \
  FLOVER_ISA_PRAGMA(GCC diagnostic push)                                                \
  FLOVER_ISA_PRAGMA(GCC diagnostic ignored "-Wuninitialized")
#define FLOVER_ISA_REGION_END() \
  FLOVER_ISA_PRAGMA(GCC diagnostic pop) FLOVER_ISA_PRAGMA(clang attribute pop)
#else
#define FLOVER_ISA_REGION_BEGIN(isa)                           \
  FLOVER_ISA_PRAGMA(GCC push_options)                          \
  FLOVER_ISA_PRAGMA(GCC target(isa))                           \
  FLOVER_ISA_PRAGMA(GCC diagnostic push)                       \
  FLOVER_ISA_PRAGMA(GCC diagnostic ignored "-Wuninitialized")  \
  FLOVER_ISA_PRAGMA(GCC diagnostic ignored "-Wmaybe-uninitialized")
#define FLOVER_ISA_REGION_END() FLOVER_ISA_PRAGMA(GCC diagnostic pop) FLOVER_ISA_PRAGMA(GCC pop_options)
#endif
