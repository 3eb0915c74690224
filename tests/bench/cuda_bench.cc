// cuda_bench: the CUDA backend's performance numbers, in one run on the GPU machine
// (scripts/gpu-check.sh runs it). Prints, nothing is asserted:
//   1. ceilings: device-to-device copy bandwidth (bytes read + written per second) and a
//      large bf16 GEMM rate through cuBLAS (kernels/cuda/gemm.h);
//   2. decode: step time and tokens/s of the CUDA backend at 1..128 concurrent requests
//      (dummy weights generated on the device), batch 1 against the memory roofline
//      weight_bytes / bandwidth, and the speed-up over batch 1;
//   3. prefill: one chunk of --prefill-len tokens, tokens/s;
//   4. attention alone (CUDA events around PagedAttention on a synthetic layer of the
//      model's shape): that prefill chunk on the CUDA-core and the tensor-core prefill
//      kernels against the step's weight GEMMs, and decode attention for 32 requests x
//      4096 cached positions as K/V bytes read per second against the copy bandwidth.
// The decode table is printed twice: the default path, then the fast decode path
// (CudaBackendConfig::cuda_graphs and small_step_gemv).
//
//   cuda_bench [--model dummy:llama-7b] [--dtype fp16] [--concurrency 1,8,32,64,128]
//              [--steps 32] [--prefill-len 2048] [--device 0]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/gemv.h"
#include "worker/engine/cuda/cuda_backend.h"
#include "worker/engine/executor.h"

namespace flover {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<int> SplitInts(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
  return out;
}

// Times `fn` (which enqueues work on `stream`) with CUDA events: best of `reps` after
// two warm-ups, in seconds.
template <typename Fn>
Result<double> TimeOnStream(cudaStream_t stream, int reps, Fn fn) {
  cudaEvent_t start, stop;
  FLOVER_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  double best = 1e30;
  for (int i = 0; i < reps + 2; ++i) {
    FLOVER_CUDA_RETURN_IF_ERROR(cudaEventRecord(start, stream));
    FLOVER_RETURN_IF_ERROR(fn());
    FLOVER_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, stream));
    FLOVER_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
    float ms = 0;
    FLOVER_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
    if (i >= 2) best = std::min(best, ms / 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return best;
}

struct Ceilings {
  double copy_bytes_per_s = 0;  // read + written
  double bf16_flops = 0;
};

Result<Ceilings> MeasureCeilings(cudaStream_t stream) {
  Ceilings c;
  const size_t bytes = size_t{4} << 30;  // 4 GiB copied: far beyond the 60 MB L2
  FLOVER_ASSIGN_OR_RETURN(cuda::DeviceBuffer a, cuda::DeviceBuffer::Allocate(bytes));
  FLOVER_ASSIGN_OR_RETURN(cuda::DeviceBuffer b, cuda::DeviceBuffer::Allocate(bytes));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(a.data(), 1, bytes, stream));
  FLOVER_ASSIGN_OR_RETURN(double copy_s, TimeOnStream(stream, 5, [&]() -> Status {
    FLOVER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, stream));
    return Status::Ok();
  }));
  c.copy_bytes_per_s = 2.0 * bytes / copy_s;

  const int m = 8192, n = 8192, k = 8192;  // y[n, m] = x[n, k] w[m, k]^T
  FLOVER_ASSIGN_OR_RETURN(cuda::DeviceBuffer x, cuda::DeviceBuffer::Allocate(size_t{2} * n * k));
  FLOVER_ASSIGN_OR_RETURN(cuda::DeviceBuffer w, cuda::DeviceBuffer::Allocate(size_t{2} * m * k));
  FLOVER_ASSIGN_OR_RETURN(cuda::DeviceBuffer y, cuda::DeviceBuffer::Allocate(size_t{2} * n * m));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(x.data(), 0x3c, x.bytes(), stream));  // bf16 ~0.01: finite
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(w.data(), 0x3c, w.bytes(), stream));
  FLOVER_ASSIGN_OR_RETURN(cuda::Gemm gemm, cuda::Gemm::Create(stream));
  const cuda::MatrixView xv = cuda::Matrix(x.data(), DType::kBF16, n, k);
  const cuda::MatrixView wv = cuda::Matrix(w.data(), DType::kBF16, m, k);
  const cuda::MatrixView yv = cuda::Matrix(y.data(), DType::kBF16, n, m);
  FLOVER_ASSIGN_OR_RETURN(double gemm_s, TimeOnStream(stream, 10, [&] { return gemm.Matmul(xv, wv, yv); }));
  c.bf16_flops = 2.0 * m * n * k / gemm_s;
  return c;
}

// The weight GEMMs of one step alone (n rows; per layer QKV, O, gate|up, down, then the
// LM head over head_rows rows: n for decode, 1 for a prefill chunk that samples its
// last row), back to back on one stream: what a step would cost if everything but the
// GEMMs were free. Compared with the backend's step, it splits GEMM time from the other
// kernels, launches and the host round trip.
Result<double> GemmOnlyStep(cuda::Gemm& gemm, cudaStream_t stream, const ModelSpec& spec, DType dtype, int n,
                            int head_rows) {
  struct Shape {
    int out, in;
  };
  const std::vector<Shape> layer = {{spec.q_dim() + 2 * spec.kv_dim(), spec.dim},
                                    {spec.dim, spec.q_dim()},
                                    {2 * spec.hidden_dim, spec.dim},
                                    {spec.dim, spec.hidden_dim}};
  size_t max_w = size_t{1} * spec.vocab_size * spec.dim;
  for (const Shape& sh : layer) max_w = std::max(max_w, size_t{1} * sh.out * sh.in);
  // Distinct weights per layer would not fit a 2x budget; one buffer per shape read 32
  // times is still DRAM traffic (each matrix is far larger than the L2).
  std::vector<cuda::DeviceBuffer> weights;
  for (const Shape& sh : layer) {
    FLOVER_ASSIGN_OR_RETURN(cuda::DeviceBuffer w, cuda::DeviceBuffer::Allocate(DTypeSize(dtype) * sh.out * sh.in));
    FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(w.data(), 0, w.bytes(), stream));
    weights.push_back(std::move(w));
  }
  FLOVER_ASSIGN_OR_RETURN(cuda::DeviceBuffer head, cuda::DeviceBuffer::Allocate(DTypeSize(dtype) * max_w));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(head.data(), 0, head.bytes(), stream));
  const int widest = std::max({spec.dim, spec.hidden_dim, spec.q_dim()});
  FLOVER_ASSIGN_OR_RETURN(cuda::DeviceBuffer x, cuda::DeviceBuffer::Allocate(DTypeSize(dtype) * n * widest));
  FLOVER_ASSIGN_OR_RETURN(cuda::DeviceBuffer y, cuda::DeviceBuffer::Allocate(sizeof(float) * n * std::max(spec.vocab_size, 2 * spec.hidden_dim + widest)));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(x.data(), 0, x.bytes(), stream));
  return TimeOnStream(stream, 5, [&]() -> Status {
    for (int l = 0; l < spec.n_layers; ++l) {
      for (size_t i = 0; i < layer.size(); ++i) {
        FLOVER_RETURN_IF_ERROR(gemm.Matmul(cuda::Matrix(x.data(), dtype, n, layer[i].in),
                                           cuda::Matrix(weights[i].data(), dtype, layer[i].out, layer[i].in),
                                           cuda::Matrix(y.data(), DType::kF32, n, layer[i].out)));
      }
    }
    return gemm.Matmul(cuda::Matrix(x.data(), dtype, head_rows, spec.dim),
                       cuda::Matrix(head.data(), dtype, spec.vocab_size, spec.dim),
                       cuda::Matrix(y.data(), DType::kF32, head_rows, spec.vocab_size));
  });
}

struct Options {
  std::string model = "dummy:llama-7b";
  std::string dtype = "fp16";
  std::vector<int> concurrency = {1, 8, 32, 64, 128};
  int steps = 32;
  int prefill_len = 2048;
  int device = 0;
};

// One layer's paged attention on a synthetic KV pool of the model's shape (local
// heads, head_dim, the backend's block size, dtype), for the attention benchmarks.
struct SyntheticLayer {
  cuda::DeviceBuffer k, v, qkv, out, workspace;
  cuda::DeviceBuffer row_entry, row_pos, entry_first_row, entry_n_rows, entry_table, block_tables;
  cuda::PagedKvView kv;
  cuda::AttentionBatch batch;
  cuda::MatrixView qkv_view, out_view;
  size_t workspace_bytes = 0;
  int n_heads = 0;

  Status Attend(cudaStream_t stream, const cuda::AttentionOptions& options) const {
    return cuda::PagedAttention(kv, batch, qkv_view, n_heads, out_view, workspace.data(), workspace_bytes, stream,
                                options);
  }
};

template <typename V>
Result<cuda::DeviceBuffer> UploadInts(const std::vector<V>& host, cudaStream_t stream) {
  FLOVER_ASSIGN_OR_RETURN(cuda::DeviceBuffer buffer, cuda::DeviceBuffer::Allocate(sizeof(V) * host.size()));
  FLOVER_RETURN_IF_ERROR(cuda::CopyToDevice(buffer.data(), host.data(), sizeof(V) * host.size(), stream));
  return buffer;
}

// `n_entries` entries of `rows_per_entry` rows each, the last at position context - 1,
// each on its own consecutive blocks; the pool holds every position 0 .. context - 1 of
// every entry. qkv is a constant finite pattern, written into the rows' slots (WriteKv);
// the earlier positions hold the pool's own constant pattern. Synchronises the stream.
Result<SyntheticLayer> MakeSyntheticLayer(const ModelSpec& spec, DType dtype, int block_size, int n_entries,
                                          int rows_per_entry, int context, cudaStream_t stream) {
  SyntheticLayer l;
  l.n_heads = spec.n_heads;
  const int d = spec.head_dim(), blocks_per_entry = (context + block_size - 1) / block_size;
  const int n_blocks = n_entries * blocks_per_entry, n_rows = n_entries * rows_per_entry;
  const size_t pool_bytes = DTypeSize(dtype) * n_blocks * spec.n_kv_heads * block_size * d;
  FLOVER_ASSIGN_OR_RETURN(l.k, cuda::DeviceBuffer::Allocate(pool_bytes));
  FLOVER_ASSIGN_OR_RETURN(l.v, cuda::DeviceBuffer::Allocate(pool_bytes));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(l.k.data(), 0x2c, pool_bytes, stream));  // fp16 ~0.06, bf16 ~2e-12
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(l.v.data(), 0x2c, pool_bytes, stream));
  const int cols = spec.q_dim() + 2 * spec.kv_dim();
  FLOVER_ASSIGN_OR_RETURN(l.qkv, cuda::DeviceBuffer::Allocate(sizeof(float) * n_rows * cols));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(l.qkv.data(), 0x3c, l.qkv.bytes(), stream));  // fp32 ~0.011
  FLOVER_ASSIGN_OR_RETURN(l.out, cuda::DeviceBuffer::Allocate(DTypeSize(dtype) * n_rows * spec.q_dim()));
  std::vector<int> row_entry, row_pos, first_row, n_rows_of, table_offset, tables;
  for (int e = 0; e < n_entries; ++e) {
    first_row.push_back(e * rows_per_entry);
    n_rows_of.push_back(rows_per_entry);
    table_offset.push_back(e * blocks_per_entry);
    for (int r = 0; r < rows_per_entry; ++r) {
      row_entry.push_back(e);
      row_pos.push_back(context - rows_per_entry + r);
    }
    for (int b = 0; b < blocks_per_entry; ++b) tables.push_back(e * blocks_per_entry + b);
  }
  FLOVER_ASSIGN_OR_RETURN(l.row_entry, UploadInts(row_entry, stream));
  FLOVER_ASSIGN_OR_RETURN(l.row_pos, UploadInts(row_pos, stream));
  FLOVER_ASSIGN_OR_RETURN(l.entry_first_row, UploadInts(first_row, stream));
  FLOVER_ASSIGN_OR_RETURN(l.entry_n_rows, UploadInts(n_rows_of, stream));
  FLOVER_ASSIGN_OR_RETURN(l.entry_table, UploadInts(table_offset, stream));
  FLOVER_ASSIGN_OR_RETURN(l.block_tables, UploadInts(tables, stream));
  l.kv = cuda::PagedKvView{l.k.data(), l.v.data(), dtype, n_blocks, block_size, spec.n_kv_heads, d};
  l.batch = cuda::AttentionBatch{l.row_entry.as<const int>(),     l.row_pos.as<const int>(),
                                 l.entry_first_row.as<const int>(), l.entry_n_rows.as<const int>(),
                                 l.entry_table.as<const int>(),   l.block_tables.as<const int>(),
                                 n_rows,                          n_entries,
                                 context};
  l.qkv_view = cuda::Matrix(l.qkv.data(), DType::kF32, n_rows, cols);
  l.out_view = cuda::Matrix(l.out.data(), dtype, n_rows, spec.q_dim());
  l.workspace_bytes = cuda::AttentionWorkspaceBytes(n_entries, spec.n_heads, d, context);
  FLOVER_ASSIGN_OR_RETURN(l.workspace, cuda::DeviceBuffer::Allocate(std::max<size_t>(l.workspace_bytes, 16)));
  FLOVER_RETURN_IF_ERROR(cuda::WriteKv(l.kv, l.batch, l.qkv_view, spec.n_heads, stream));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return l;
}

// Attention alone, timed with CUDA events around PagedAttention of one synthetic layer
// (times the model's layers for a step):
//   - the prefill chunk of prefill_len tokens at positions 0.., on the CUDA-core and the
//     tensor-core prefill kernels, against the weight GEMMs of that step;
//   - decode: 32 requests with 4096 cached positions each, the K/V bytes the step must
//     read per second against the device-to-device copy bandwidth.
Status AttentionBench(const Options& o, const ModelSpec& spec, DType dtype, int block_size, const Ceilings& ceilings,
                      cuda::Gemm& gemm, cudaStream_t stream) {
  const int layers = spec.n_layers;
  {
    FLOVER_ASSIGN_OR_RETURN(SyntheticLayer layer,
                            MakeSyntheticLayer(spec, dtype, block_size, 1, o.prefill_len, o.prefill_len, stream));
    FLOVER_ASSIGN_OR_RETURN(double gemm_s, GemmOnlyStep(gemm, stream, spec, dtype, o.prefill_len, 1));
    // Causal: each query row attends to (position + 1) keys; two products of head_dim.
    const double flops = 4.0 * spec.n_heads * spec.head_dim() * (0.5 * o.prefill_len * (o.prefill_len + 1.0));
    std::printf("\nprefill attention, one chunk of %d tokens (%d heads, %d kv heads, head_dim %d, %s KV), "
                "%d layers; weight GEMMs of the step alone: %.2f ms\n",
                o.prefill_len, spec.n_heads, spec.n_kv_heads, spec.head_dim(), DTypeName(dtype), layers, gemm_s * 1e3);
    for (cuda::PrefillKernel kernel : {cuda::PrefillKernel::kCudaCores, cuda::PrefillKernel::kTensorCores}) {
      const cuda::AttentionOptions options{kernel};
      const bool tensor = kernel == cuda::PrefillKernel::kTensorCores;
      if (cuda::SelectPrefillKernel(layer.kv, options) != kernel) {
        std::printf("  tensor cores: not run (%s)\n", cuda::CheckTensorCorePrefill(layer.kv).ToString().c_str());
        continue;
      }
      FLOVER_ASSIGN_OR_RETURN(double s, TimeOnStream(stream, 10, [&] { return layer.Attend(stream, options); }));
      std::printf("  %-12s %.3f ms per layer, %.2f ms per step (%.0f%% of the GEMMs), %.0f TFLOP/s\n",
                  tensor ? "tensor cores" : "CUDA cores", s * 1e3, s * layers * 1e3, 100.0 * s * layers / gemm_s,
                  flops / s / 1e12);
      std::fflush(stdout);
    }
  }
  {
    const int n = 32, context = 4096;
    FLOVER_ASSIGN_OR_RETURN(SyntheticLayer layer, MakeSyntheticLayer(spec, dtype, block_size, n, 1, context, stream));
    FLOVER_ASSIGN_OR_RETURN(double s, TimeOnStream(stream, 10, [&] { return layer.Attend(stream, {}); }));
    const double kv_bytes = 2.0 * n * context * spec.kv_dim() * DTypeSize(dtype);
    std::printf("decode attention, %d requests x %d cached positions: %.3f ms per layer, K/V read %.0f GB/s "
                "(%.0f%% of the device-to-device copy's %.0f GB/s read + write)\n",
                n, context, s * 1e3, kv_bytes / s / 1e9, 100.0 * kv_bytes / s / ceilings.copy_bytes_per_s,
                ceilings.copy_bytes_per_s / 1e9);
  }
  return Status::Ok();
}

// Decode: `n` requests of 8 random prompt tokens join in one prefill step, then every
// step decodes one token of each; the mean wall time of `steps` steps after 3 warm-ups
// (Executor::Run, which ends by reading the sampled tokens back: one sync per step).
Status Decode(const Options& o, const ModelSpec& spec, int n, int block_size, Executor& executor, double* step_s) {
  const int prompt_len = 8, total = prompt_len + o.steps + 4;
  const int blocks_per_request = (total + block_size - 1) / block_size;
  std::vector<std::vector<int>> blocks(n);
  std::vector<ExecEntry> entries;
  for (int i = 0; i < n; ++i) {
    RequestParams r;
    for (int t = 0; t < prompt_len; ++t) r.prompt.push_back(1 + (i * 7919 + t * 104729) % (spec.vocab_size - 1));
    r.stop.max_tokens = o.steps + 8;
    r.stop.ignore_eos = true;
    FLOVER_RETURN_IF_ERROR(executor.Join(static_cast<uint64_t>(i + 1), std::move(r)));
    for (int b = 0; b < blocks_per_request; ++b) blocks[i].push_back(i * blocks_per_request + b);
    entries.push_back(ExecEntry{static_cast<uint64_t>(i + 1), 0, prompt_len, blocks[i]});
  }
  std::vector<ExecOutput> outputs;
  FLOVER_RETURN_IF_ERROR(executor.Run(entries, &outputs));
  for (int step = 0; step < o.steps + 3; ++step) {
    if (step == 3) *step_s = 0;
    for (int i = 0; i < n; ++i) entries[i] = ExecEntry{static_cast<uint64_t>(i + 1), prompt_len + step, 1, {}};
    outputs.clear();
    const auto t0 = Clock::now();
    FLOVER_RETURN_IF_ERROR(executor.Run(entries, &outputs));
    if (step >= 3) *step_s += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  *step_s /= o.steps;
  for (int i = 0; i < n; ++i) executor.Leave(static_cast<uint64_t>(i + 1));
  return Status::Ok();
}

Status Prefill(const Options& o, const ModelSpec& spec, int block_size, Executor& executor, double* seconds) {
  RequestParams r;
  for (int t = 0; t < o.prefill_len; ++t) r.prompt.push_back(1 + (t * 104729) % (spec.vocab_size - 1));
  r.stop.max_tokens = 4;
  r.stop.ignore_eos = true;
  std::vector<int> blocks((o.prefill_len + 4 + block_size - 1) / block_size);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::vector<ExecOutput> outputs;
  *seconds = 1e30;
  for (int rep = 0; rep < 3; ++rep) {  // best of 3 (the first also warms up)
    FLOVER_RETURN_IF_ERROR(executor.Join(1000 + rep, r));
    const ExecEntry entry{static_cast<uint64_t>(1000 + rep), 0, o.prefill_len, blocks};
    outputs.clear();
    const auto t0 = Clock::now();
    FLOVER_RETURN_IF_ERROR(executor.Run(std::span<const ExecEntry>(&entry, 1), &outputs));
    *seconds = std::min(*seconds, std::chrono::duration<double>(Clock::now() - t0).count());
    executor.Leave(1000 + rep);
  }
  return Status::Ok();
}

Status Main(const Options& o) {
  if (cuda::DeviceCount() == 0) return Unavailable("cuda_bench: no CUDA GPU on this machine");
  FLOVER_CUDA_RETURN_IF_ERROR(cudaSetDevice(o.device));
  FLOVER_ASSIGN_OR_RETURN(std::string gpu, cuda::DeviceDescription(o.device));
  std::printf("GPU: %s\n", gpu.c_str());
  FLOVER_ASSIGN_OR_RETURN(cuda::Stream stream, cuda::Stream::Create());
  FLOVER_ASSIGN_OR_RETURN(Ceilings ceilings, MeasureCeilings(stream.get()));
  std::printf("ceilings: device-to-device copy %.0f GB/s (read + write), bf16 GEMM 8192^3 %.0f TFLOP/s\n",
              ceilings.copy_bytes_per_s / 1e9, ceilings.bf16_flops / 1e12);

  FLOVER_ASSIGN_OR_RETURN(DType dtype, ParseDType(o.dtype));
  const int max_n = *std::max_element(o.concurrency.begin(), o.concurrency.end());
  // The default path, then the fast decode path (CUDA graphs + Gemv for small steps;
  // off by default until verified), each with its own backend.
  for (bool fast : {false, true}) {
    CudaBackendConfig config;
    config.device = o.device;
    config.dtype = dtype;
    config.max_step_tokens = std::max(o.prefill_len, 8 * max_n);
    config.max_rows = max_n;
    config.kv_memory_bytes = int64_t{16} << 30;
    config.cuda_graphs = config.small_step_gemv = fast;
    const auto t_load = Clock::now();
    FLOVER_ASSIGN_OR_RETURN(std::unique_ptr<CudaBackend> backend,
                            CreateCudaBackend(o.model, /*dummy_seed=*/1, ShardInfo{}, nullptr, config));
    const ModelSpec& spec = backend->spec();
    const double weight_bytes = static_cast<double>(spec.n_params()) * DTypeSize(dtype);
    // Bytes a decode step must read: every weight but the embedding table (only its rows
    // for the step's tokens), unless the table is also the LM head.
    const int64_t embedding = spec.shared_classifier ? 0 : int64_t{spec.vocab_size} * spec.dim;
    const double step_bytes = static_cast<double>(spec.n_params() - embedding) * DTypeSize(dtype);
    std::printf("model: %s %s, %.2f GB of weights, made in %.1f s; KV pool %d blocks of %d\n", o.model.c_str(),
                DTypeName(dtype), weight_bytes / 1e9, std::chrono::duration<double>(Clock::now() - t_load).count(),
                backend->kv_blocks(), backend->kv_block_size());
    const double roofline_s = step_bytes / ceilings.copy_bytes_per_s;
    Executor executor(backend.get());

    cuda::GemmOptions gemm_options;
    gemm_options.gemv_max_rows = fast ? cuda::kGemvMaxRows : 0;
    FLOVER_ASSIGN_OR_RETURN(cuda::Gemm probe, cuda::Gemm::Create(stream.get(), gemm_options));
    std::printf("\n%s\n| requests | step ms | GEMMs alone ms | tokens/s | x batch 1 | batch-1 step / roofline |\n"
                "|---:|---:|---:|---:|---:|---:|\n",
                fast ? "fast decode path (cuda_graphs, small_step_gemv; GEMMs alone through Gemm with Gemv for n <= 8):"
                     : "default path (eager launches, cuBLAS):");
    double batch1_rate = 0;
    for (int n : o.concurrency) {
      double step_s = 0;
      FLOVER_RETURN_IF_ERROR(Decode(o, spec, n, backend->kv_block_size(), executor, &step_s));
      FLOVER_ASSIGN_OR_RETURN(double gemm_s, GemmOnlyStep(probe, stream.get(), spec, dtype, n, n));
      const double rate = n / step_s;
      if (n == 1) batch1_rate = rate;
      std::printf("| %d | %.3f | %.3f | %.0f | %s | %s |\n", n, step_s * 1e3, gemm_s * 1e3, rate,
                  batch1_rate > 0 ? std::to_string(rate / batch1_rate).substr(0, 5).c_str() : "-",
                  n == 1 ? (std::to_string(step_s / roofline_s).substr(0, 4) + " (roofline " +
                            std::to_string(roofline_s * 1e3).substr(0, 5) + " ms)").c_str()
                         : "");
      std::fflush(stdout);
    }
    if (!fast) {
      double prefill_s = 0;
      FLOVER_RETURN_IF_ERROR(Prefill(o, spec, backend->kv_block_size(), executor, &prefill_s));
      std::printf("\nprefill: one chunk of %d tokens in %.1f ms: %.0f tokens/s (%.0f TFLOP/s of weight GEMMs)\n",
                  o.prefill_len, prefill_s * 1e3, o.prefill_len / prefill_s,
                  2.0 * spec.n_params() * o.prefill_len / prefill_s / 1e12);
      FLOVER_RETURN_IF_ERROR(
          AttentionBench(o, spec, dtype, backend->kv_block_size(), ceilings, probe, stream.get()));
    }
  }
  return Status::Ok();
}

}  // namespace
}  // namespace flover

int main(int argc, char** argv) {
  flover::Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--model") o.model = value;
    else if (flag == "--dtype") o.dtype = value;
    else if (flag == "--concurrency") o.concurrency = flover::SplitInts(value);
    else if (flag == "--steps") o.steps = std::stoi(value);
    else if (flag == "--prefill-len") o.prefill_len = std::stoi(value);
    else if (flag == "--device") o.device = std::stoi(value);
    else {
      std::fprintf(stderr, "cuda_bench: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  const flover::Status s = flover::Main(o);
  if (!s.ok()) {
    std::fprintf(stderr, "cuda_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
