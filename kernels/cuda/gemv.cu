#include "kernels/cuda/gemv.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <string>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/dtype_traits.cuh"
#include "kernels/cuda/gemm.h"

namespace flover::cuda {
namespace {

constexpr int kGemvThreads = 256;
constexpr int kWarps = kGemvThreads / 32;
constexpr int kRowsPerBlock = 4;  // output columns (weight rows) per block
constexpr int kVec = 8;           // 16-bit elements per 128-bit load
constexpr int kChunk = kGemvThreads * kVec;  // elements of `in` one pass of the block covers

// The 8 elements of a 128-bit load as floats.
__device__ __forceinline__ void Unpack(const uint4& v, __half, float (&f)[kVec]) {
  const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __half22float2(h[i]);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}
__device__ __forceinline__ void Unpack(const uint4& v, __nv_bfloat16, float (&f)[kVec]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __bfloat1622float2(h[i]);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}

// Block b: weight rows [b * kRowsPerBlock, +kRowsPerBlock) against the n (<= N) rows of x.
// Thread t covers elements t * 8 + i * kChunk of `in`, two chunks per iteration so that
// each thread has 2 * kRowsPerBlock 128-bit weight loads in flight.
// kGated (GemvSiluMul): w is [2 * hidden, in] (gate rows, then up rows), out_rows is
// hidden, and block b reads gate rows [b * 4, +4) and the same up rows (8 rows, one
// chunk per iteration), writing y[j, o] = SiLU(gate) * up as SiluMul computes it.
template <typename T, typename Out, int N, bool kGated = false>
__global__ void __launch_bounds__(kGemvThreads)
    GemvKernel(const T* __restrict__ x, int64_t x_stride, const T* __restrict__ w, int64_t w_stride,
               Out* __restrict__ y, int64_t y_stride, int n, int out_rows, int in, bool accumulate) {
  constexpr int kRows = kGated ? 2 * kRowsPerBlock : kRowsPerBlock;  // weight rows read
  constexpr int kChunks = kGated ? 1 : 2;                            // chunks per iteration
  const int row0 = blockIdx.x * kRowsPerBlock;
  // Weight row of accumulator r (-1: past the matrix).
  auto weight_row = [&](int r) {
    const int o = row0 + (kGated ? r % kRowsPerBlock : r);
    if (o >= out_rows) return -1;
    return kGated && r >= kRowsPerBlock ? out_rows + o : o;
  };
  float acc[kRows][N];
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int j = 0; j < N; ++j) acc[r][j] = 0.0f;

  for (int base = threadIdx.x * kVec; base < in; base += kChunks * kChunk) {
    uint4 wv[kChunks][kRows];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int k = base + c * kChunk;
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        wv[c][r] = make_uint4(0, 0, 0, 0);
        const int wr = weight_row(r);
        if (k < in && wr >= 0)
          wv[c][r] = __ldcs(reinterpret_cast<const uint4*>(w + static_cast<int64_t>(wr) * w_stride + k));
      }
    }
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int k = base + c * kChunk;
      if (k >= in) break;
      float wf[kRows][kVec];
#pragma unroll
      for (int r = 0; r < kRows; ++r) Unpack(wv[c][r], T(), wf[r]);
#pragma unroll
      for (int j = 0; j < N; ++j) {
        if (j >= n) break;
        float xf[kVec];
        Unpack(__ldg(reinterpret_cast<const uint4*>(x + static_cast<int64_t>(j) * x_stride + k)), T(), xf);
#pragma unroll
        for (int r = 0; r < kRows; ++r)
#pragma unroll
          for (int i = 0; i < kVec; ++i) acc[r][j] = fmaf(wf[r][i], xf[i], acc[r][j]);
      }
    }
  }

  // Warp sums (butterfly), then the warps' sums in warp order.
  __shared__ float partial[kWarps][kRows * N];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int j = 0; j < N; ++j) {
      float v = acc[r][j];
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
      if (lane == 0) partial[warp][r * N + j] = v;
    }
  __syncthreads();
  const int t = threadIdx.x;
  if (t < kRowsPerBlock * N) {
    const int r = t / N, j = t - r * N;
    if (j < n && row0 + r < out_rows) {
      float sum = 0.0f;
#pragma unroll
      for (int q = 0; q < kWarps; ++q) sum += partial[q][t];
      Out* dst = y + static_cast<int64_t>(j) * y_stride + row0 + r;
      if constexpr (kGated) {
        float up = 0.0f;
#pragma unroll
        for (int q = 0; q < kWarps; ++q) up += partial[q][t + kRowsPerBlock * N];
        sum *= (1.0f / (1.0f + expf(-sum)));  // SiluMul's (run.c's) silu
        *dst = FromFloat<Out>(sum * up);
      } else {
        if (accumulate) sum += ToFloat(*dst);
        *dst = FromFloat<Out>(sum);
      }
    }
  }
}

template <typename T, typename Out, bool kGated = false>
void Launch(const MatrixView& x, const MatrixView& w, const MatrixView& y, bool accumulate, cudaStream_t stream) {
  const int n = x.rows;
  const int out_rows = kGated ? w.rows / 2 : w.rows;
  const dim3 grid(static_cast<unsigned>((out_rows + kRowsPerBlock - 1) / kRowsPerBlock));
  auto go = [&]<int N>() {
    GemvKernel<T, Out, N, kGated><<<grid, kGemvThreads, 0, stream>>>(
        x.as<const T>(), x.stride, w.as<const T>(), w.stride, y.as<Out>(), y.stride, n, out_rows, w.cols, accumulate);
  };
  if (n <= 1) go.template operator()<1>();
  else if (n <= 2) go.template operator()<2>();
  else if (n <= 4) go.template operator()<4>();
  else go.template operator()<8>();
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool GemvSupports(const MatrixView& x, const MatrixView& w, const MatrixView& y) {
  if (w.dtype != DType::kF16 && w.dtype != DType::kBF16) return false;
  if (x.dtype != w.dtype || (y.dtype != DType::kF32 && y.dtype != w.dtype)) return false;
  if (x.rows < 1 || x.rows > kGemvMaxRows || w.rows < 1 || w.cols < 1) return false;
  if (w.cols % kVec != 0 || w.stride % kVec != 0 || x.stride % kVec != 0) return false;
  return Aligned16(x.data) && Aligned16(w.data);
}

Status Gemv(const MatrixView& x, const MatrixView& w, const MatrixView& y, bool accumulate, cudaStream_t stream) {
  FLOVER_RETURN_IF_ERROR(CheckMatmul(x, w, y));
  if (!GemvSupports(x, w, y))
    return InvalidArgument("Gemv: needs 1.." + std::to_string(kGemvMaxRows) +
                           " rows of fp16/bf16 x and w, in and row strides multiples of 8 and 16-byte aligned "
                           "data; got " +
                           std::to_string(x.rows) + " rows of " + DTypeName(w.dtype) + " [" + std::to_string(w.rows) +
                           ", " + std::to_string(w.cols) + "]");
  if (w.dtype == DType::kF16) {
    if (y.dtype == DType::kF32) Launch<__half, float>(x, w, y, accumulate, stream);
    else Launch<__half, __half>(x, w, y, accumulate, stream);
  } else {
    if (y.dtype == DType::kF32) Launch<__nv_bfloat16, float>(x, w, y, accumulate, stream);
    else Launch<__nv_bfloat16, __nv_bfloat16>(x, w, y, accumulate, stream);
  }
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

Status GemvSiluMul(const MatrixView& x, const MatrixView& w, const MatrixView& out, cudaStream_t stream) {
  if (w.rows % 2 != 0 || out.cols != w.rows / 2)
    return InvalidArgument("GemvSiluMul: w has " + std::to_string(w.rows) + " rows; expected 2 x out's " +
                           std::to_string(out.cols) + " columns (gate rows, then up rows)");
  // The checks of the unfused product, whose fp32 [n, 2 * hidden] result is not stored.
  const MatrixView y = Matrix(out.data, DType::kF32, x.rows, w.rows);
  FLOVER_RETURN_IF_ERROR(CheckMatrix(x, w.dtype, -1, w.cols, "GemvSiluMul", "x"));
  FLOVER_RETURN_IF_ERROR(CheckMatrix(out, w.dtype, x.rows, w.rows / 2, "GemvSiluMul", "out"));
  if (!GemvSupports(x, w, y))
    return InvalidArgument("GemvSiluMul: needs what Gemv needs (1.." + std::to_string(kGemvMaxRows) +
                           " rows of fp16/bf16, multiples of 8, 16-byte aligned)");
  if (w.dtype == DType::kF16) Launch<__half, __half, true>(x, w, out, false, stream);
  else Launch<__nv_bfloat16, __nv_bfloat16, true>(x, w, out, false, stream);
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return Status::Ok();
}

}  // namespace flover::cuda
