// Private to the Matmul implementation: the per-ISA kernels Matmul dispatches to.
//
// Every kernel computes each element of y with the same "canonical" arithmetic, which is
// what makes Matmul batch-invariant. For y[r, o] = dot(x[r, :], w[o, :]):
//   1. sixteen lane accumulators a[0..15] = +0.0f;
//   2. for each chunk c = 0, 1, ... of 16 consecutive k (the last chunk zero-padded):
//        a[l] = fma(x[16c + l], w[16c + l], a[l])   (padding lanes add 0 * 0)
//   3. fixed pairwise tree: b[i] = a[i] + a[i+8], c[i] = b[i] + b[i+4],
//      d[i] = c[i] + c[i+2], s = d[0] + d[1];
//   4. y = s, or y = y + s when accumulating.
// Only the tiling (how many x rows and w rows share a pass over k, or, in AVX2's panels
// for many x rows, which outputs share the fmas of one lane: matmul_avx2_panels.h) and
// the thread split differ with n and the thread count; none changes the operations above.
//
// The AVX-512 and AVX2 kernels implement exactly these steps (AVX2 runs the two 8-lane
// halves of each accumulator as separate passes), so they give identical bits, which
// matmul_test checks. The portable kernel uses the same lanes and tree but a separate
// multiply and add (x86-64 without FMA has no fast fused multiply-add), so it rounds
// differently from the SIMD kernels; it is still batch-invariant on its own.
#pragma once

namespace flover::cpu::internal {

// Computes y[r, o] for all rows r in [0, n) and columns o in [o_begin, o_end).
// x: [n, in], row r at x + r * x_stride (x_stride >= in); w: [out, in]; y: [n, out].
// Single-threaded.
using MatmulRangeFn = void (*)(const float* x, int x_stride, const float* w, float* y, int n, int in, int out,
                               int o_begin, int o_end, bool accumulate);

void MatmulRangeGeneric(const float* x, int x_stride, const float* w, float* y, int n, int in, int out, int o_begin,
                        int o_end, bool accumulate);
// REQUIRES: the CPU supports AVX2 and FMA.
void MatmulRangeAvx2(const float* x, int x_stride, const float* w, float* y, int n, int in, int out, int o_begin,
                     int o_end, bool accumulate);
// MatmulRangeAvx2's contract and bits, with w an interleaved fp32 matrix ([out, in]
// in the kInterleaved layout of weight_matmul.h, any alignment) instead of rows.
// REQUIRES: the CPU supports AVX2 and FMA; o_begin is a multiple of kInterleaveRows.
void MatmulRangeAvx2Interleaved(const float* x, int x_stride, const void* w, float* y, int n, int in, int out,
                                int o_begin, int o_end, bool accumulate);
// REQUIRES: the CPU supports AVX-512 F/VL/BW/DQ and FMA.
void MatmulRangeAvx512(const float* x, int x_stride, const float* w, float* y, int n, int in, int out, int o_begin,
                       int o_end, bool accumulate);

// A register tile of the SIMD kernels: y[r, c] (+)= dot(x[r], w[c]) for the tile's R x
// rows and C w rows (x rows x_stride floats apart, w rows `in` elements, y rows `out`).
// W is the weights' element type: float, or uint16_t for fp16/bf16 weights that the
// tile widens in registers (weight_matmul_internal.h). Each full 16-element step over k
// also prefetches `pf_per_step` cache lines of w, from w + pf_begin on but not at or
// beyond w + pf_end (offsets in elements).
template <typename W>
using MatmulTileFnOf = void (*)(const float* x, long x_stride, const W* w, float* y, int in, int out, bool accumulate,
                                long pf_begin, long pf_end, int pf_per_step);
using MatmulTileFn = MatmulTileFnOf<float>;

// How far past the current w tile MatmulRangeTiled's row tiles prefetch: with few x
// rows (decode) the w rows stream from DRAM and prefetching a few tiles ahead keeps it
// busy; with many (prefill) the tiles are compute-bound and the prefetch is only
// overhead once this far ahead.
constexpr long kPrefetchAheadBytes = 32 * 1024;

// The blocking and prefetching driver of the SIMD kernels (MatmulRangeFn's contract):
// tiles[R - 1][C - 1] computes an R x C tile, for R <= kTileRows and C <= kTileCols.
// Rows of x are processed in blocks of about row_block_bytes, which stay in L2. Within a
// block, each tile of kTileCols w rows is read from memory once and reused from cache by
// every row tile, and while they run they prefetch the next w tile (contiguous in
// memory), spread evenly over the block's row tiles: the hardware prefetcher alone
// restarts on every short w row and leaves bandwidth unused. It uses no intrinsics.
template <int kTileRows, int kTileCols, typename W>
__attribute__((always_inline)) inline void MatmulRangeTiled(const MatmulTileFnOf<W> (&tiles)[kTileRows][kTileCols],
                                                            long row_block_bytes, const float* x, int x_stride,
                                                            const W* w, float* y, int n, int in, int out, int o_begin,
                                                            int o_end, bool accumulate) {
  constexpr long kLineElements = 64 / sizeof(W);
  constexpr long kPrefetchAhead = kPrefetchAheadBytes / static_cast<long>(sizeof(W));
  long row_block = row_block_bytes / (4L * x_stride) / kTileRows * kTileRows;
  if (row_block < kTileRows) row_block = kTileRows;
  const long full_steps = in / 16;  // steps over k that prefetch (not the masked tail)
  const long tile_lines = (kTileCols * static_cast<long>(in) * static_cast<long>(sizeof(W)) + 63) / 64;
  for (long r0 = 0; r0 < n; r0 += row_block) {
    const long r1 = r0 + row_block < n ? r0 + row_block : n;
    const long row_tiles = (r1 - r0 + kTileRows - 1) / kTileRows;
    // Lines each step prefetches so that the block's row tiles cover the next w tile.
    const long slots = row_tiles * full_steps;
    const int pf_per_step = slots > 0 ? static_cast<int>((tile_lines + slots - 1) / slots) : 0;
    for (long o = o_begin; o < o_end; o += kTileCols) {
      const long c = o_end - o < kTileCols ? o_end - o : kTileCols;
      const W* wo = w + o * in;
      // Offsets from wo: from the next tile's start, c * in, on for kPrefetchAheadBytes,
      // and nothing past this range's end.
      long pf = c * in;
      const long range_end = (o_end - o) * in;
      const long pf_end = range_end - pf < kPrefetchAhead ? range_end : pf + kPrefetchAhead;
      for (long r = r0; r < r1; r += kTileRows) {
        const long rr = r1 - r < kTileRows ? r1 - r : kTileRows;
        tiles[rr - 1][c - 1](x + r * x_stride, x_stride, wo, y + r * out + o, in, out, accumulate, pf, pf_end,
                             pf_per_step);
        pf += pf_per_step * full_steps * kLineElements;
      }
    }
  }
}

// A kernel and how Matmul splits `out` between threads for it.
struct MatmulKernel {
  const char* name = nullptr;  // "avx512", "avx2", "generic"
  MatmulRangeFn fn = nullptr;
  int col_align = 1;  // thread ranges start at multiples of this (the kernel's tile width)
};

// The kernel called `name` if this CPU can run it, else nullopt-like {} (fn == nullptr).
MatmulKernel FindMatmulKernel(const char* name);

// The kernel Matmul uses in this process (chosen once, from the CPU and
// FLOVER_MATMUL_KERNEL). Other kernels (attention scores) reuse it single-threaded.
const MatmulKernel& SelectedMatmulKernel();

// x itself with *stride = in, or (when its rows are a multiple of 4 KiB apart, which
// makes the rows of a register tile evict each other from L1) a copy with rows padded by
// one cache line, starting on a cache line, in a buffer of the calling thread that the
// next call reuses.
const float* UnaliasedRows(const float* x, int n, int in, int* stride);

// A buffer of at least `floats` floats, 64-byte aligned, of the calling thread: the next
// call on the thread may reuse or move it. For the SIMD kernels' packed operands (they are
// compiled for their instruction set and use no std:: templates).
float* PanelScratch(long floats);

// Matmul through a given kernel (Matmul itself uses the one chosen for the process).
// For tests that compare kernels. REQUIRES: kernel.fn != nullptr.
void MatmulWithKernel(const MatmulKernel& kernel, const float* x, const float* w, float* y, int n, int in, int out,
                      bool accumulate);

}  // namespace flover::cpu::internal
