// CUDA paged attention (kernels/cuda/attention.h) against the CPU reference
// (kernels/cpu/attention.h).
//
// The parity tests build one fused step of several entries mixing decode rows and
// prefill chunks (contexts from 1 to 2100 tokens, on and around the decode partition
// boundary of 256) over a pool whose blocks are handed out in shuffled order, write the
// earlier tokens and the step's K/V with WriteKv, and check:
//   - the device pools equal, element for element, the CPU pools written by
//     cpu::WriteKv rounded to the storage dtype (slots never written included);
//   - PagedAttention matches cpu::PagedAttention over those rounded pools, per entry,
//     and leaves the output's padding columns alone;
//   - every entry run alone gives bit-identical rows (batch invariance).
// The same checks run for the tensor-core prefill kernel (PrefillKernel::kTensorCores)
// on grouped-query fp16/bf16 shapes with head_dim 64 and 128.
// They skip without a GPU. The argument checks (and which prefill kernel a layer
// selects) run everywhere, without a device.
#include "kernels/cuda/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/matrix.h"
#include "tests/cuda/gpu_test.h"

namespace flover::cuda {
namespace {

using testing::Decode;
using testing::Encode;
using testing::NormalisedError;
using testing::RoundTrip;
using testing::Tolerance;

// ---------------------------------------------------------------------------------
// Argument checks (no GPU needed: the launchers must reject these before any device
// call; the pointers are host addresses that a launch would fault on).

struct Args {
  float dummy[4] = {};
  int ints[4] = {};
  int n_heads = 32;
  PagedKvView kv{dummy, dummy + 1, DType::kF16, 64, 16, 8, 128};
  AttentionBatch batch{ints, ints, ints + 1, ints + 2, ints + 3, ints, /*n_rows=*/5, /*n_entries=*/2,
                       /*max_context=*/300};
  MatrixView qkv = Matrix(dummy, DType::kF32, 5, (32 + 2 * 8) * 128);
  MatrixView out = Matrix(dummy, DType::kF16, 5, 32 * 128);
  void* workspace = dummy;
  size_t workspace_bytes = AttentionWorkspaceBytes(2, 32, 128, 300);

  Status Check() const { return CheckPagedAttentionArgs(kv, batch, qkv, n_heads, out, workspace, workspace_bytes); }
  Status Launch() const { return PagedAttention(kv, batch, qkv, n_heads, out, workspace, workspace_bytes, nullptr); }
  Status LaunchTensorCores() const {
    return PagedAttention(kv, batch, qkv, n_heads, out, workspace, workspace_bytes, nullptr,
                          AttentionOptions{PrefillKernel::kTensorCores});
  }
  Status CheckWrite() const { return CheckWriteKvArgs(kv, batch, qkv, n_heads); }
  Status LaunchWrite() const { return WriteKv(kv, batch, qkv, n_heads, nullptr); }
};

struct BadCase {
  const char* name;
  void (*mutate)(Args&);
  const char* message;  // a substring of the expected message
};

void ExpectInvalid(const Status& s, const char* message, const char* name) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << name << ": " << s.ToString();
  EXPECT_NE(s.message().find(message), std::string::npos) << name << ": " << s.ToString();
}

TEST(AttentionArgs, BaselineIsAccepted) {
  // Without this, every rejection below could be for the baseline's own fault.
  const Args a;
  EXPECT_TRUE(a.Check().ok()) << a.Check().ToString();
  EXPECT_TRUE(a.CheckWrite().ok()) << a.CheckWrite().ToString();
  EXPECT_GT(a.workspace_bytes, 0u);
}

TEST(AttentionArgs, PagedAttentionRejectsBadArgumentsBeforeTouchingTheDevice) {
  const BadCase cases[] = {
      {"heads not a multiple", [](Args& a) { a.n_heads = 30; }, "n_heads 30 is not a positive multiple of n_kv_heads 8"},
      {"zero heads", [](Args& a) { a.n_heads = 0; }, "n_heads 0"},
      {"out dtype", [](Args& a) { a.out.dtype = DType::kF32; }, "out is fp32 [5, 4096], expected fp16 [5, 4096]"},
      {"out rows", [](Args& a) { a.out.rows = 4; }, "out is fp16 [4, 4096]"},
      {"out cols", [](Args& a) { a.out.cols = 4000; a.out.stride = 4000; }, "out is fp16 [5, 4000]"},
      {"out stride", [](Args& a) { a.out.stride = 100; }, "out has stride 100"},
      {"out null", [](Args& a) { a.out.data = nullptr; }, "out is null"},
      {"qkv dtype", [](Args& a) { a.qkv.dtype = DType::kBF16; }, "qkv is bf16"},
      {"qkv without v", [](Args& a) { a.qkv.cols = (32 + 8) * 128; }, "qkv is fp32 [5, 5120], expected fp32 [5, 6144]"},
      {"qkv stride", [](Args& a) { a.qkv.stride = 6000; }, "qkv has stride 6000"},
      {"k null", [](Args& a) { a.kv.k = nullptr; }, "k or v is null"},
      {"v null", [](Args& a) { a.kv.v = nullptr; }, "k or v is null"},
      {"head_dim 0", [](Args& a) { a.kv.head_dim = 0; }, "all must be positive"},
      {"block_size 0", [](Args& a) { a.kv.block_size = 0; }, "all must be positive"},
      {"no blocks", [](Args& a) { a.kv.n_blocks = 0; }, "all must be positive"},
      {"no kv heads", [](Args& a) { a.kv.n_kv_heads = 0; }, "all must be positive"},
      {"entries > rows", [](Args& a) { a.batch.n_entries = 6; }, "every entry needs at least one row"},
      {"no entries", [](Args& a) { a.batch.n_entries = 0; }, "every entry needs at least one row"},
      {"negative rows", [](Args& a) { a.batch.n_rows = -1; }, "batch has -1 rows"},
      {"row_pos null", [](Args& a) { a.batch.row_pos = nullptr; }, "must not be null"},
      {"entry_first_row null", [](Args& a) { a.batch.entry_first_row = nullptr; }, "must not be null"},
      {"entry_n_rows null", [](Args& a) { a.batch.entry_n_rows = nullptr; }, "must not be null"},
      {"entry_table null", [](Args& a) { a.batch.entry_table = nullptr; }, "must not be null"},
      {"block_tables null", [](Args& a) { a.batch.block_tables = nullptr; }, "must not be null"},
      {"max_context 0", [](Args& a) { a.batch.max_context = 0; }, "max_context 0 is outside"},
      {"max_context huge", [](Args& a) { a.batch.max_context = kMaxAttentionContext + 1; }, "is outside"},
      {"workspace small", [](Args& a) { a.workspace_bytes -= 1; }, "(AttentionWorkspaceBytes)"},
      {"workspace null", [](Args& a) { a.workspace = nullptr; }, "(null)"},
      {"workspace unaligned", [](Args& a) { a.workspace = reinterpret_cast<char*>(a.dummy) + 1; }, "4-byte aligned"},
      {"group too wide",
       [](Args& a) {
         a.n_heads = 8 * 512;
         a.qkv.cols = a.qkv.stride = (a.n_heads + 16) * 128;
         a.out.cols = a.out.stride = a.n_heads * 128;
         a.workspace_bytes = AttentionWorkspaceBytes(2, a.n_heads, 128, 300);
       },
       "bytes of shared memory per block"},
  };
  for (const BadCase& c : cases) {
    Args a;
    c.mutate(a);
    ExpectInvalid(a.Check(), c.message, c.name);
    ExpectInvalid(a.Launch(), c.message, c.name);
    ExpectInvalid(a.LaunchTensorCores(), c.message, c.name);
  }
}

TEST(AttentionArgs, TensorCorePrefillTakesFp16AndBf16WithHeadDim64Or128) {
  alignas(16) static unsigned char pool[64];
  const PagedKvView base{pool, pool + 32, DType::kF16, 64, 16, 2, 128};
  const AttentionOptions tensor_cores{PrefillKernel::kTensorCores};
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (int head_dim : {64, 128}) {
      PagedKvView kv = base;
      kv.dtype = dtype;
      kv.head_dim = head_dim;
      EXPECT_TRUE(CheckTensorCorePrefill(kv).ok()) << CheckTensorCorePrefill(kv).ToString();
      EXPECT_EQ(SelectPrefillKernel(kv, tensor_cores), PrefillKernel::kTensorCores) << DTypeName(dtype) << head_dim;
      // The default stays on CUDA cores until a GPU run has verified the tensor-core path.
      EXPECT_EQ(SelectPrefillKernel(kv, AttentionOptions{}), PrefillKernel::kCudaCores);
    }
  }
  struct Unsupported {
    const char* name;
    PagedKvView kv;
    const char* message;
  };
  const Unsupported cases[] = {
      {"fp32", {pool, pool + 32, DType::kF32, 64, 16, 2, 128}, "the KV cache is fp32; only fp16 and bf16"},
      {"head_dim 96", {pool, pool + 32, DType::kF16, 64, 16, 2, 96}, "head_dim 96 is not supported (64 or 128)"},
      {"head_dim 32", {pool, pool + 32, DType::kBF16, 64, 16, 2, 32}, "head_dim 32 is not supported"},
      {"head_dim 256", {pool, pool + 32, DType::kF16, 64, 16, 2, 256}, "head_dim 256 is not supported"},
      {"k unaligned", {pool + 2, pool + 32, DType::kF16, 64, 16, 2, 128}, "16-byte aligned"},
      {"v unaligned", {pool, pool + 40, DType::kBF16, 64, 16, 2, 64}, "16-byte aligned"},
  };
  for (const Unsupported& c : cases) {
    ExpectInvalid(CheckTensorCorePrefill(c.kv), c.message, c.name);
    // Unsupported layers fall back to the CUDA-core kernel instead of failing.
    EXPECT_EQ(SelectPrefillKernel(c.kv, tensor_cores), PrefillKernel::kCudaCores) << c.name;
  }
}

TEST(AttentionArgs, WriteKvRejectsBadArguments) {
  const BadCase cases[] = {
      {"heads not a multiple", [](Args& a) { a.n_heads = 12; }, "not a positive multiple"},
      {"qkv cols", [](Args& a) { a.qkv.cols = 32 * 128; }, "qkv is fp32 [5, 4096]"},
      {"qkv rows", [](Args& a) { a.qkv.rows = 6; }, "qkv is fp32 [6, 6144]"},
      {"qkv null", [](Args& a) { a.qkv.data = nullptr; }, "qkv is null"},
      {"v null", [](Args& a) { a.kv.v = nullptr; }, "k or v is null"},
      {"row_entry null", [](Args& a) { a.batch.row_entry = nullptr; }, "must not be null"},
      {"row_pos null", [](Args& a) { a.batch.row_pos = nullptr; }, "must not be null"},
      {"block_tables null", [](Args& a) { a.batch.block_tables = nullptr; }, "must not be null"},
      {"entries > rows", [](Args& a) { a.batch.n_entries = 9; }, "every entry needs at least one row"},
  };
  for (const BadCase& c : cases) {
    Args a;
    c.mutate(a);
    ExpectInvalid(a.CheckWrite(), c.message, c.name);
    ExpectInvalid(a.LaunchWrite(), c.message, c.name);
  }
}

TEST(AttentionArgs, EmptyStepIsANoOp) {
  // No rows: OK without any device call (so without a GPU too), whatever the arrays.
  Args a;
  a.batch = AttentionBatch{};
  a.qkv.rows = 0;
  a.out.rows = 0;
  a.workspace = nullptr;
  a.workspace_bytes = 0;
  EXPECT_TRUE(a.Launch().ok()) << a.Launch().ToString();
  EXPECT_TRUE(a.LaunchWrite().ok()) << a.LaunchWrite().ToString();
}

TEST(AttentionWorkspace, SizedBySplitsOfTheLongestContext) {
  EXPECT_EQ(AttentionWorkspaceBytes(64, 32, 128, 1), 0u);
  EXPECT_EQ(AttentionWorkspaceBytes(64, 32, 128, kDecodePartitionTokens), 0u);  // one split: written directly
  EXPECT_EQ(AttentionWorkspaceBytes(64, 32, 128, kDecodePartitionTokens + 1), sizeof(float) * 64 * 32 * 2 * 130);
  EXPECT_EQ(AttentionWorkspaceBytes(3, 8, 8, 2100), sizeof(float) * 3 * 8 * 9 * 10);
  EXPECT_EQ(AttentionWorkspaceBytes(0, 8, 8, 2100), 0u);
  // Monotone, so one allocation at the maximum serves every step.
  size_t previous = 0;
  for (int context = 1; context <= 5000; context += 37) {
    const size_t bytes = AttentionWorkspaceBytes(7, 8, 64, context);
    EXPECT_GE(bytes, previous) << context;
    EXPECT_LE(bytes, AttentionWorkspaceBytes(8, 8, 64, context));
    EXPECT_LE(bytes, AttentionWorkspaceBytes(7, 16, 64, context));
    EXPECT_LE(bytes, AttentionWorkspaceBytes(7, 8, 128, context));
    previous = bytes;
  }
}

// ---------------------------------------------------------------------------------
// Parity with the CPU reference (GPU only).

struct Shape {
  int n_heads, n_kv_heads, head_dim, block_size;
};

struct ParityParam {
  DType dtype;
  Shape shape;
};

std::string ParamName(const ::testing::TestParamInfo<ParityParam>& info) {
  const Shape& s = info.param.shape;
  return std::string(DTypeName(info.param.dtype)) + "_h" + std::to_string(s.n_heads) + "_kv" +
         std::to_string(s.n_kv_heads) + "_d" + std::to_string(s.head_dim) + "_bs" + std::to_string(s.block_size);
}

// An entry of the step: rows at positions start_pos .. start_pos + n_tokens - 1.
struct Chunk {
  int start_pos, n_tokens;
};

// Decode rows (n_tokens 1) and prefill chunks interleaved, contexts 1 .. 2100, decode
// contexts 256 and 257 on both sides of the first split boundary; max_context 2100
// (9 decode splits).
const std::vector<Chunk> kLongStep = {{2099, 1}, {0, 37}, {0, 1},  {250, 50}, {16, 1},
                                      {255, 1},  {2036, 64}, {256, 1}, {299, 1}, {5, 2}};
// max_context <= 256: decode rows take the one-split path that writes out directly.
const std::vector<Chunk> kShortStep = {{0, 1}, {100, 9}, {16, 1}, {199, 1}, {0, 20}, {3, 1}};

constexpr float kSentinel = -96.0f;  // exact in every dtype; marks never-written slots and padding

// The int32 arrays of an AttentionBatch, on the host.
struct HostBatch {
  std::vector<int> row_entry, row_pos, entry_first_row, entry_n_rows, entry_table;
  int n_rows = 0, max_context = 0;

  // `chunks[i]` uses the block table at `table_offsets[i]`.
  static HostBatch Build(const std::vector<Chunk>& chunks, const std::vector<int>& table_offsets) {
    HostBatch b;
    for (size_t e = 0; e < chunks.size(); ++e) {
      b.entry_first_row.push_back(b.n_rows);
      b.entry_n_rows.push_back(chunks[e].n_tokens);
      b.entry_table.push_back(table_offsets[e]);
      for (int t = 0; t < chunks[e].n_tokens; ++t) {
        b.row_entry.push_back(static_cast<int>(e));
        b.row_pos.push_back(chunks[e].start_pos + t);
      }
      b.n_rows += chunks[e].n_tokens;
      b.max_context = std::max(b.max_context, chunks[e].start_pos + chunks[e].n_tokens);
    }
    return b;
  }
};

// A device copy of `bytes` at `data`; records a test failure (and returns an empty
// buffer) on error.
DeviceBuffer Upload(const void* data, size_t bytes, cudaStream_t stream) {
  Result<DeviceBuffer> buffer = DeviceBuffer::Allocate(std::max<size_t>(bytes, 16));
  EXPECT_TRUE(buffer.ok()) << buffer.status().ToString();
  if (!buffer.ok()) return DeviceBuffer();
  if (bytes > 0) {
    const Status s = CopyToDevice(buffer->data(), data, bytes, stream);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  return std::move(buffer).value();
}

template <typename V>
DeviceBuffer Upload(const std::vector<V>& host, cudaStream_t stream) {
  return Upload(host.data(), host.size() * sizeof(V), stream);
}

// HostBatch on the device, sharing the block tables.
struct DeviceBatch {
  DeviceBuffer row_entry, row_pos, entry_first_row, entry_n_rows, entry_table;
  AttentionBatch view;

  DeviceBatch(const HostBatch& h, const DeviceBuffer& block_tables, cudaStream_t stream)
      : row_entry(Upload(h.row_entry, stream)),
        row_pos(Upload(h.row_pos, stream)),
        entry_first_row(Upload(h.entry_first_row, stream)),
        entry_n_rows(Upload(h.entry_n_rows, stream)),
        entry_table(Upload(h.entry_table, stream)) {
    view.row_entry = row_entry.as<const int>();
    view.row_pos = row_pos.as<const int>();
    view.entry_first_row = entry_first_row.as<const int>();
    view.entry_n_rows = entry_n_rows.as<const int>();
    view.entry_table = entry_table.as<const int>();
    view.block_tables = block_tables.as<const int>();
    view.n_rows = h.n_rows;
    view.n_entries = static_cast<int>(h.entry_n_rows.size());
    view.max_context = h.max_context;
  }
};

std::vector<float> Download(const DeviceBuffer& buffer, size_t count, DType dtype, cudaStream_t stream) {
  std::vector<unsigned char> bytes(count * DTypeSize(dtype));
  const Status s = CopyToHost(bytes.data(), buffer.data(), bytes.size(), stream);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return Decode(bytes, dtype);
}

class AttentionParity : public ::testing::TestWithParam<ParityParam> {
 protected:
  void RunStep(const std::vector<Chunk>& chunks, uint32_t seed);

  AttentionOptions options_;          // passed to every PagedAttention call
  bool expect_tensor_cores_ = false;  // assert that options_ selects the tensor-core kernel
};

void AttentionParity::RunStep(const std::vector<Chunk>& chunks, uint32_t seed) {
  const DType dtype = GetParam().dtype;
  const Shape s = GetParam().shape;
  const int d = s.head_dim, bs = s.block_size;
  const int q_dim = s.n_heads * d, kv_dim = s.n_kv_heads * d, cols = q_dim + 2 * kv_dim;
  const int qkv_stride = cols + 5, out_stride = q_dim + 3;  // odd paddings, never read or written
  std::mt19937 rng(seed);

  // Block tables: every entry's blocks drawn from a shuffled pool with spare blocks.
  const int n_entries = static_cast<int>(chunks.size());
  std::vector<int> table_offsets, n_entry_blocks;
  int n_table = 0;
  for (const Chunk& c : chunks) {
    table_offsets.push_back(n_table);
    n_entry_blocks.push_back((c.start_pos + c.n_tokens + bs - 1) / bs);
    n_table += n_entry_blocks.back();
  }
  const int n_blocks = n_table + 5;
  std::vector<int> ids(n_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  const std::vector<int> block_tables(ids.begin(), ids.begin() + n_table);

  // Two steps over the same tables: the tokens before each chunk, then the chunks.
  std::vector<Chunk> history_chunks;
  std::vector<int> history_offsets;
  for (int e = 0; e < n_entries; ++e) {
    if (chunks[e].start_pos == 0) continue;
    history_chunks.push_back({0, chunks[e].start_pos});
    history_offsets.push_back(table_offsets[e]);
  }
  const HostBatch history = HostBatch::Build(history_chunks, history_offsets);
  const HostBatch step = HostBatch::Build(chunks, table_offsets);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> history_qkv(static_cast<size_t>(history.n_rows) * qkv_stride);
  std::vector<float> step_qkv(static_cast<size_t>(step.n_rows) * qkv_stride);
  for (float& x : history_qkv) x = normal(rng);
  for (float& x : step_qkv) x = normal(rng);

  // CPU: write both steps into fp32 pools.
  const size_t pool_size = static_cast<size_t>(n_blocks) * s.n_kv_heads * bs * d;
  std::vector<float> k_cpu(pool_size, kSentinel), v_cpu(pool_size, kSentinel);
  const cpu::PagedKvLayer cpu_layer{k_cpu.data(), v_cpu.data(), n_blocks, bs, s.n_kv_heads, d};
  auto cpu_write = [&](const std::vector<Chunk>& cs, const std::vector<int>& offsets, const std::vector<float>& qkv) {
    size_t row = 0;
    for (size_t i = 0; i < cs.size(); ++i) {
      const float* rows = qkv.data() + row * qkv_stride;
      cpu::WriteKv(cpu_layer, block_tables.data() + offsets[i], cs[i].start_pos, cs[i].n_tokens, rows + q_dim,
                   rows + q_dim + kv_dim, qkv_stride);
      row += cs[i].n_tokens;
    }
  };
  cpu_write(history_chunks, history_offsets, history_qkv);
  cpu_write(chunks, table_offsets, step_qkv);

  // GPU: the same two WriteKv steps into pools of dtype.
  Result<Stream> stream_or = Stream::Create();
  FLOVER_ASSERT_OK(stream_or);
  const cudaStream_t stream = stream_or->get();
  const std::vector<float> sentinel_pool(pool_size, kSentinel);
  DeviceBuffer k_dev = Upload(Encode(sentinel_pool, dtype), stream);
  DeviceBuffer v_dev = Upload(Encode(sentinel_pool, dtype), stream);
  DeviceBuffer tables_dev = Upload(block_tables, stream);
  DeviceBuffer history_qkv_dev = Upload(history_qkv, stream);
  DeviceBuffer step_qkv_dev = Upload(step_qkv, stream);
  DeviceBatch history_dev(history, tables_dev, stream);
  DeviceBatch step_dev(step, tables_dev, stream);
  ASSERT_FALSE(HasFailure());
  const PagedKvView kv{k_dev.data(), v_dev.data(), dtype, n_blocks, bs, s.n_kv_heads, d};
  if (expect_tensor_cores_) {
    ASSERT_EQ(SelectPrefillKernel(kv, options_), PrefillKernel::kTensorCores);
  }
  const MatrixView history_qkv_view = Matrix(history_qkv_dev.data(), DType::kF32, history.n_rows, cols, qkv_stride);
  const MatrixView step_qkv_view = Matrix(step_qkv_dev.data(), DType::kF32, step.n_rows, cols, qkv_stride);
  FLOVER_ASSERT_OK(WriteKv(kv, history_dev.view, history_qkv_view, s.n_heads, stream));
  FLOVER_ASSERT_OK(WriteKv(kv, step_dev.view, step_qkv_view, s.n_heads, stream));

  // The pools hold exactly what cpu::WriteKv wrote, rounded to dtype, in the same slots.
  const std::vector<float> k_want = RoundTrip(k_cpu, dtype), v_want = RoundTrip(v_cpu, dtype);
  {
    const std::vector<float> k_got = Download(k_dev, pool_size, dtype, stream);
    const std::vector<float> v_got = Download(v_dev, pool_size, dtype, stream);
    ASSERT_FALSE(HasFailure());
    size_t mismatches = 0, first = pool_size;
    for (size_t i = 0; i < pool_size; ++i) {
      if (k_got[i] != k_want[i] || v_got[i] != v_want[i]) {
        ++mismatches;
        first = std::min(first, i);
      }
    }
    ASSERT_EQ(mismatches, 0u) << "first at element " << first << ": k " << k_got[first] << " vs " << k_want[first]
                              << ", v " << v_got[first] << " vs " << v_want[first];
  }

  // CPU reference over the rounded pools.
  std::vector<float> k_round = k_want, v_round = v_want;
  const cpu::PagedKvLayer round_layer{k_round.data(), v_round.data(), n_blocks, bs, s.n_kv_heads, d};
  std::vector<float> want(static_cast<size_t>(step.n_rows) * q_dim);
  for (int e = 0; e < n_entries; ++e) {
    const size_t row = step.entry_first_row[e];
    cpu::PagedAttention(round_layer, block_tables.data() + table_offsets[e], chunks[e].start_pos, chunks[e].n_tokens,
                        step_qkv.data() + row * qkv_stride, qkv_stride, want.data() + row * q_dim, q_dim, s.n_heads,
                        0, s.n_heads);
  }

  // GPU attention for the whole step.
  const size_t workspace_bytes = AttentionWorkspaceBytes(n_entries, s.n_heads, d, step.max_context);
  DeviceBuffer workspace = Upload(nullptr, 0, stream);
  if (workspace_bytes > 0) {
    Result<DeviceBuffer> w = DeviceBuffer::Allocate(workspace_bytes);
    FLOVER_ASSERT_OK(w);
    workspace = std::move(w).value();
  }
  const size_t out_size = static_cast<size_t>(step.n_rows) * out_stride;
  const std::vector<unsigned char> sentinel_out = Encode(std::vector<float>(out_size, kSentinel), dtype);
  DeviceBuffer out_dev = Upload(sentinel_out.data(), sentinel_out.size(), stream);
  ASSERT_FALSE(HasFailure());
  const MatrixView out = Matrix(out_dev.data(), dtype, step.n_rows, q_dim, out_stride);
  FLOVER_ASSERT_OK(PagedAttention(kv, step_dev.view, step_qkv_view, s.n_heads, out,
                                  workspace_bytes > 0 ? workspace.data() : nullptr, workspace_bytes, stream,
                                  options_));
  const std::vector<float> got_padded = Download(out_dev, out_size, dtype, stream);
  ASSERT_FALSE(HasFailure());
  std::vector<float> got(want.size());
  for (int r = 0; r < step.n_rows; ++r) {
    for (int c = q_dim; c < out_stride; ++c)
      ASSERT_EQ(got_padded[static_cast<size_t>(r) * out_stride + c], kSentinel) << "padding of row " << r;
    std::copy_n(got_padded.begin() + static_cast<ptrdiff_t>(r) * out_stride, q_dim,
                got.begin() + static_cast<ptrdiff_t>(r) * q_dim);
  }

  // Per entry, so that a long context's small averages are not hidden behind another
  // entry's larger values. Bounds: fp32 sees the same inputs as the CPU and differs only
  // in summation order and expf (a few ulp over up to 2100 terms, ~1e-6); fp16/bf16
  // outputs are rounded to dtype, at most half an ulp of the value (2^-11 / 2^-8 of the
  // entry's largest value), under Tolerance()'s 2e-3 / 1.6e-2.
  // The tensor-core prefill kernel also rounds q and the softmax probabilities to dtype
  // (attention.h): relative errors of up to 2^-11 (fp16) / 2^-8 (bf16) per score input
  // and per probability, which average out over the keys. Emulating exactly those
  // roundings on the CPU (fp32 accumulation, 64-key tiles) over inputs like these (unit
  // normals, 8 heads, head_dim 64 and 128, the chunks of kTensorCoreStep,
  // kTensorCoreLongHistory and kShortStep, three seeds) gave normalised errors of at
  // most 8.0e-4 (fp16) and 7.4e-3 (bf16), against the same bounds of 2e-3 / 1.6e-2: a
  // margin of over 2x, where a wrong fragment, mask or rescale gives errors of order 1.
  for (int e = 0; e < n_entries; ++e) {
    const size_t begin = static_cast<size_t>(step.entry_first_row[e]) * q_dim;
    const size_t count = static_cast<size_t>(chunks[e].n_tokens) * q_dim;
    const double err = NormalisedError(std::span<const float>(got).subspan(begin, count),
                                       std::span<const float>(want).subspan(begin, count));
    EXPECT_LE(err, Tolerance(dtype)) << "entry " << e << " (start_pos " << chunks[e].start_pos << ", "
                                     << chunks[e].n_tokens << " rows)";
  }

  // Batch invariance: each entry alone (its own max_context, so other split counts and
  // prefill grids) gives the same bits.
  for (int e = 0; e < n_entries; ++e) {
    const int first_row = step.entry_first_row[e], n = chunks[e].n_tokens;
    const HostBatch alone = HostBatch::Build({chunks[e]}, {table_offsets[e]});
    DeviceBatch alone_dev(alone, tables_dev, stream);
    const size_t alone_size = static_cast<size_t>(n) * out_stride;
    DeviceBuffer alone_out_dev = Upload(sentinel_out.data(), alone_size * DTypeSize(dtype), stream);
    ASSERT_FALSE(HasFailure());
    const MatrixView alone_qkv =
        Matrix(step_qkv_dev.as<float>() + static_cast<size_t>(first_row) * qkv_stride, DType::kF32, n, cols, qkv_stride);
    FLOVER_ASSERT_OK(PagedAttention(kv, alone_dev.view, alone_qkv, s.n_heads,
                                    Matrix(alone_out_dev.data(), dtype, n, q_dim, out_stride),
                                    workspace_bytes > 0 ? workspace.data() : nullptr, workspace_bytes, stream,
                                    options_));
    const std::vector<float> alone_got = Download(alone_out_dev, alone_size, dtype, stream);
    ASSERT_FALSE(HasFailure());
    for (size_t i = 0; i < alone_size; ++i) {
      const float batched = got_padded[static_cast<size_t>(first_row) * out_stride + i];
      ASSERT_EQ(std::memcmp(&alone_got[i], &batched, sizeof(float)), 0)
          << "entry " << e << " element " << i << ": alone " << alone_got[i] << ", in the step " << batched;
    }
  }
}

TEST_P(AttentionParity, LongMixedStepMatchesCpu) {
  FLOVER_REQUIRE_GPU();
  RunStep(kLongStep, 1234);
}

TEST_P(AttentionParity, ShortStepMatchesCpu) {
  FLOVER_REQUIRE_GPU();
  RunStep(kShortStep, 99);
}

constexpr Shape kShapes[] = {
    {32, 8, 128, 16},  // LLaMA-style grouped-query heads (4 per kv head)
    {8, 4, 64, 8},     // 2 per kv head, small blocks
    {8, 4, 8, 16},     // stories260K
    {4, 4, 48, 16},    // multi-head, head_dim not a power of two
    {8, 1, 32, 8},     // multi-query: 8 heads share one kv head
    {4, 2, 256, 32},   // wide heads (prefill tiles shrink to fit shared memory)
};

std::vector<ParityParam> AllParams() {
  std::vector<ParityParam> params;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16})
    for (const Shape& shape : kShapes) params.push_back({dtype, shape});
  return params;
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionParity, ::testing::ValuesIn(AllParams()), ParamName);

// The short step again with the tensor-core option: the fp16/bf16 shapes with head_dim
// 64 or 128 take the tensor-core kernel, every other shape falls back to CUDA cores.
TEST_P(AttentionParity, ShortStepWithTensorCoreOptionMatchesCpu) {
  FLOVER_REQUIRE_GPU();
  options_.prefill = PrefillKernel::kTensorCores;
  RunStep(kShortStep, 99);
}

// ---------------------------------------------------------------------------------
// The tensor-core prefill kernel (GPU only): grouped-query heads (8 query heads on 2 kv
// heads), head_dim 64 and 128, prefill entries of 15, 17, 64, 100 and 300 rows (not
// multiples of the 64-row tile, one exactly one tile), chunks that start after cached
// positions (at 130: mid key tile; at 64: on a key tile boundary; at 1) joined in one
// step with decode rows of other entries (one past the first decode split), blocks in
// shuffled order. RunStep checks the CPU parity per entry and that every entry alone
// gives the same bits as in the step (batch invariance).
const std::vector<Chunk> kTensorCoreStep = {{0, 300}, {412, 1}, {0, 17}, {130, 100}, {7, 1},
                                            {0, 15},  {64, 64}, {255, 1}, {1, 2}};
// One long chunk after a long cached history: many key tiles before the diagonal ones.
const std::vector<Chunk> kTensorCoreLongHistory = {{1000, 150}, {1, 1}};

class TensorCorePrefillParity : public AttentionParity {
 protected:
  void SetUp() override {
    options_.prefill = PrefillKernel::kTensorCores;
    expect_tensor_cores_ = true;
  }
};

TEST_P(TensorCorePrefillParity, MixedStepMatchesCpu) {
  FLOVER_REQUIRE_GPU();
  RunStep(kTensorCoreStep, 4242);
}

TEST_P(TensorCorePrefillParity, ChunkAfterLongHistoryMatchesCpu) {
  FLOVER_REQUIRE_GPU();
  RunStep(kTensorCoreLongHistory, 77);
}

constexpr Shape kTensorCoreShapes[] = {
    {8, 2, 64, 16},
    {8, 2, 128, 16},
    {8, 2, 128, 8},  // blocks smaller than a key tile: 8 block-table lookups per tile
    {8, 2, 64, 32},
};

std::vector<ParityParam> TensorCoreParams() {
  std::vector<ParityParam> params;
  for (DType dtype : {DType::kF16, DType::kBF16})
    for (const Shape& shape : kTensorCoreShapes) params.push_back({dtype, shape});
  return params;
}

INSTANTIATE_TEST_SUITE_P(Shapes, TensorCorePrefillParity, ::testing::ValuesIn(TensorCoreParams()), ParamName);

}  // namespace
}  // namespace flover::cuda
