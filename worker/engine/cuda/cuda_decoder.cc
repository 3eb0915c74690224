#include "worker/engine/cuda/cuda_decoder.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "common/check.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/activation.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/bias.h"
#include "kernels/cuda/convert.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/layernorm.h"
#include "kernels/cuda/matrix.h"
#include "kernels/cuda/rmsnorm.h"

namespace flover {
namespace {

using cuda::DeviceBuffer;
using cuda::Matrix;
using cuda::MatrixView;

// Bump allocator over the step descriptor: each region 16-byte aligned, so that the
// same offsets are valid in the pinned host copy and in the device copy.
class Arena {
 public:
  Arena(unsigned char* base, size_t capacity) : base_(base), capacity_(capacity) {}
  template <typename T>
  T* Take(size_t count) {
    used_ = (used_ + 15) & ~size_t{15};
    T* p = reinterpret_cast<T*>(base_ + used_);
    used_ += count * sizeof(T);
    FLOVER_CHECK(used_ <= capacity_) << "step descriptor needs " << used_ << " bytes of " << capacity_;
    return p;
  }
  size_t used() const { return used_; }
  static size_t Bound(size_t bytes) { return bytes + 16; }  // what one Take may use at most

 private:
  unsigned char* base_;
  size_t capacity_;
  size_t used_ = 0;
};

}  // namespace

// ---------------------------------------------------------------------------------
// CudaDecoder

void CudaDecoder::PinnedDeleter::operator()(unsigned char* p) const {
  if (p) (void)cudaFreeHost(p);
}

Result<std::unique_ptr<CudaDecoder>> CudaDecoder::Create(DeviceWeights weights, const DeviceKvCache* kv,
                                                         DeviceCommunicator* comm, cudaStream_t stream,
                                                         const CudaDecoderConfig& config) {
  if (config.max_step_tokens < 1 || config.max_rows < 1)
    return InvalidArgument("CUDA decoder needs max_step_tokens >= 1 and max_rows >= 1, got " +
                           std::to_string(config.max_step_tokens) + " and " + std::to_string(config.max_rows));
  FLOVER_RETURN_IF_ERROR(CheckShard(weights.spec, weights.shard));
  const ShardInfo& shard = weights.shard;
  if (shard.world > 1) {
    FLOVER_RETURN_IF_ERROR(CheckCommunicator(comm, shard.rank, shard.world));
    if (comm->stream() != stream)
      return InvalidArgument("the communicator enqueues its collectives on another stream than the decoder's");
  }
  if (kv == nullptr) return InvalidArgument("CUDA decoder needs a KV cache");
  const ShardDims local = ShardDimsFor(weights.spec, shard);
  if (kv->n_layers() != weights.spec.n_layers || kv->n_kv_heads() != local.n_kv_heads ||
      kv->layer(0).head_dim != weights.spec.head_dim() || kv->dtype() != weights.dtype)
    return InvalidArgument(std::string("KV cache (") + DTypeName(kv->dtype()) + ", " + std::to_string(kv->n_layers()) +
                           " layers, " + std::to_string(kv->n_kv_heads()) + " kv heads) does not match the " +
                           DTypeName(weights.dtype) + " shard (" + std::to_string(weights.spec.n_layers) +
                           " layers, " + std::to_string(local.n_kv_heads) + " kv heads)");
  std::unique_ptr<CudaDecoder> decoder(new CudaDecoder(std::move(weights), kv, comm, stream, config));
  FLOVER_RETURN_IF_ERROR(decoder->Allocate());
  return decoder;
}

CudaDecoder::CudaDecoder(DeviceWeights weights, const DeviceKvCache* kv, DeviceCommunicator* comm, cudaStream_t stream,
                         const CudaDecoderConfig& config)
    : weights_(std::move(weights)),
      local_(ShardDimsFor(weights_.spec, weights_.shard)),
      kv_(kv),
      comm_(weights_.shard.world > 1 ? comm : nullptr),
      stream_(stream),
      config_(config) {}

CudaDecoder::~CudaDecoder() {
  if (desc_copied_) (void)cudaEventDestroy(desc_copied_);
}

Status CudaDecoder::Allocate() {
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device_));
  const ModelSpec& s = spec();
  const size_t n = static_cast<size_t>(config_.max_step_tokens), rows = static_cast<size_t>(config_.max_rows);
  const size_t dim = static_cast<size_t>(s.dim), es = DTypeSize(dtype());
  const size_t qkv_cols = static_cast<size_t>(local_.q_dim + 2 * local_.kv_dim);
  const size_t hidden = static_cast<size_t>(local_.hidden_dim), vocab = static_cast<size_t>(s.vocab_size);
  const size_t vr = static_cast<size_t>(local_.vocab_per_rank), world = static_cast<size_t>(weights_.shard.world);
  const bool tp = world > 1;

  decode_cap_ = std::min(config_.max_rows, config_.max_step_tokens);
  // The legacy default stream cannot be captured.
  use_graphs_ = config_.cuda_graphs && config_.capture_graphs && !tp && stream_ != nullptr;
  attn_ws_bytes_ = cuda::AttentionWorkspaceBytes(config_.max_step_tokens, local_.n_heads, s.head_dim(), s.max_seq_len);
  sampling_ws_bytes_ = cuda::SamplingWorkspaceBytes(config_.max_rows, s.vocab_size);
  const size_t table_per_entry = static_cast<size_t>((s.max_seq_len + kv_->block_size() - 1) / kv_->block_size());
  table_capacity_ = n * table_per_entry;
  history_capacity_ = rows * (static_cast<size_t>(s.max_seq_len) + 1);
  // tokens, row_pos, row_entry [n]; three entry arrays [n]; last_rows [R]; sampling
  // rows [R]; tables, then histories.
  desc_bytes_ = 6 * Arena::Bound(n * sizeof(int)) + Arena::Bound(rows * sizeof(int)) +
                Arena::Bound(table_capacity_ * sizeof(int)) + Arena::Bound(history_capacity_ * sizeof(int)) +
                Arena::Bound(rows * sizeof(cuda::SamplingRow));

  const size_t scratch = n * dim * (4 + es) + n * qkv_cols * 4 + n * local_.q_dim * es + n * 2 * hidden * 4 +
                         n * hidden * es + (tp ? 2 * n * dim * 4 + rows * vr * 4 * (1 + world) : 0) +
                         rows * dim * (4 + es) + rows * vocab * 4 + attn_ws_bytes_ + sampling_ws_bytes_ + desc_bytes_ +
                         rows * 4 + cuda::GemmOptions::kDefaultWorkspaceBytes;
  FLOVER_RETURN_IF_ERROR(cuda::CheckFreeMemory(scratch, "the CUDA decoder's scratch for max_step_tokens=" +
                                                std::to_string(n) + " and max_rows=" + std::to_string(rows)));

  cuda::GemmOptions gemm_options;
  gemm_options.gemv_max_rows = config_.small_step_gemv ? cuda::kGemvMaxRows : 0;
  FLOVER_ASSIGN_OR_RETURN(gemm_, cuda::Gemm::Create(stream_, gemm_options));
  FLOVER_ASSIGN_OR_RETURN(rope_, cuda::UploadRopeTable(cpu::RopeTable(s.RopeFrequencies(), s.max_seq_len), stream_));
  FLOVER_ASSIGN_OR_RETURN(x_, DeviceBuffer::Allocate(n * dim * 4));
  FLOVER_ASSIGN_OR_RETURN(xb_, DeviceBuffer::Allocate(n * dim * es));
  FLOVER_ASSIGN_OR_RETURN(qkv_, DeviceBuffer::Allocate(n * qkv_cols * 4));
  FLOVER_ASSIGN_OR_RETURN(att_, DeviceBuffer::Allocate(n * local_.q_dim * es));
  // Attention never writes the rows of a decode step's padding: keep them finite.
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(att_.data(), 0, att_.bytes(), stream_));
  FLOVER_ASSIGN_OR_RETURN(gate_up_, DeviceBuffer::Allocate(n * 2 * hidden * 4));
  FLOVER_ASSIGN_OR_RETURN(hidden_, DeviceBuffer::Allocate(n * hidden * es));
  if (tp) {
    FLOVER_ASSIGN_OR_RETURN(proj_, DeviceBuffer::Allocate(n * dim * 4));
    FLOVER_ASSIGN_OR_RETURN(normed_, DeviceBuffer::Allocate(n * dim * 4));
    FLOVER_ASSIGN_OR_RETURN(logits_part_, DeviceBuffer::Allocate(rows * vr * 4));
    FLOVER_ASSIGN_OR_RETURN(logits_all_, DeviceBuffer::Allocate(world * rows * vr * 4));
  }
  FLOVER_ASSIGN_OR_RETURN(gathered_, DeviceBuffer::Allocate(rows * dim * 4));
  FLOVER_ASSIGN_OR_RETURN(head_in_, DeviceBuffer::Allocate(rows * dim * es));
  FLOVER_ASSIGN_OR_RETURN(logits_, DeviceBuffer::Allocate(rows * vocab * 4));
  FLOVER_ASSIGN_OR_RETURN(attn_ws_, DeviceBuffer::Allocate(attn_ws_bytes_));
  FLOVER_ASSIGN_OR_RETURN(sampling_ws_, DeviceBuffer::Allocate(sampling_ws_bytes_));
  FLOVER_ASSIGN_OR_RETURN(desc_device_, DeviceBuffer::Allocate(desc_bytes_));
  FLOVER_ASSIGN_OR_RETURN(tokens_device_, DeviceBuffer::Allocate(rows * sizeof(int)));
  void* pinned = nullptr;
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMallocHost(&pinned, desc_bytes_));
  desc_host_.reset(static_cast<unsigned char*>(pinned));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaMallocHost(&pinned, rows * sizeof(int)));
  tokens_host_.reset(static_cast<unsigned char*>(pinned));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&desc_copied_, cudaEventDisableTiming));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return Status::Ok();
}

Status CudaDecoder::Validate(std::span<const StepEntry> entries, std::span<const SampleRow> rows,
                             std::span<int> tokens, int64_t* n_table, int64_t* n_history) const {
  const ModelSpec& s = spec();
  const int block_size = kv_->block_size();
  if (rows.size() != tokens.size())
    return InvalidArgument("step has " + std::to_string(rows.size()) + " sampling rows but room for " +
                           std::to_string(tokens.size()) + " tokens");
  int64_t n = 0;
  size_t n_logits = 0;
  *n_table = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const StepEntry& e = entries[i];
    const std::string who = "step entry " + std::to_string(i) + ": ";
    if (e.n_tokens < 1 || e.tokens == nullptr || e.block_table == nullptr)
      return InvalidArgument(who + "needs n_tokens >= 1 (got " + std::to_string(e.n_tokens) +
                             "), its tokens and a block table");
    if (e.start_pos < 0 || e.start_pos + e.n_tokens > s.max_seq_len)
      return InvalidArgument(who + "positions [" + std::to_string(e.start_pos) + ", " +
                             std::to_string(e.start_pos + e.n_tokens) + ") are outside the model's context of " +
                             std::to_string(s.max_seq_len));
    n += e.n_tokens;
    n_logits += e.want_logits ? 1 : 0;
    *n_table += (e.start_pos + e.n_tokens + block_size - 1) / block_size;
  }
  if (n > config_.max_step_tokens)
    return InvalidArgument("step has " + std::to_string(n) + " tokens; this CUDA backend was sized for at most " +
                           std::to_string(config_.max_step_tokens) +
                           " per step (max_step_tokens): schedule smaller steps or raise it");
  if (n_logits != rows.size())
    return InvalidArgument("step has " + std::to_string(n_logits) + " entries that want logits but " +
                           std::to_string(rows.size()) + " sampling rows");
  if (n_logits > static_cast<size_t>(config_.max_rows))
    return InvalidArgument("step samples " + std::to_string(n_logits) + " tokens; this CUDA backend was sized for at most " +
                           std::to_string(config_.max_rows) + " per step (max_rows): schedule smaller steps or raise it");
  *n_history = 0;
  for (size_t j = 0; j < rows.size(); ++j) {
    if (rows[j].params == nullptr) return InvalidArgument("sampling row " + std::to_string(j) + " has no parameters");
    if (rows[j].params->repetition_penalty != 1.0f) *n_history += static_cast<int64_t>(rows[j].history.size());
  }
  if (static_cast<size_t>(*n_table) > table_capacity_)
    return InvalidArgument("step's block tables hold " + std::to_string(*n_table) + " ids; the descriptor holds " +
                           std::to_string(table_capacity_));
  if (static_cast<size_t>(*n_history) > history_capacity_)
    return InvalidArgument("step's repetition-penalty histories hold " + std::to_string(*n_history) +
                           " tokens; the descriptor holds " + std::to_string(history_capacity_) +
                           " (max_rows x (max_seq_len + 1))");
  return Status::Ok();
}

Result<size_t> CudaDecoder::Pack(std::span<const StepEntry> entries, bool separate_passes,
                                 std::span<const SampleRow> rows, int64_t n_table, int64_t n_history, int bucket) {
  // The previous step's upload must be done before its pinned source is overwritten
  // (it is, unless that step failed after enqueueing it).
  FLOVER_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(desc_copied_));
  const ModelSpec& s = spec();
  const int block_size = kv_->block_size(), n_blocks = kv_->n_blocks();
  const size_t n_real = static_cast<size_t>(entry_offset_.back()), n_real_entries = entries.size(),
               n_real_rows = rows.size();
  // A decode step is padded: bucket rows, entries and logits rows.
  const size_t n = std::max<size_t>(n_real, bucket), n_entries = std::max<size_t>(n_real_entries, bucket),
               n_rows = std::max<size_t>(n_real_rows, bucket);

  // Fixed-size arrays first, so that their addresses depend only on (n, n_entries,
  // n_rows); the tables and histories share the last region.
  unsigned char* const host = desc_host_.get();
  Arena arena(host, desc_bytes_);
  int* tok = arena.Take<int>(n);
  int* pos = arena.Take<int>(n);
  int* row_entry = arena.Take<int>(n);
  int* first_row = arena.Take<int>(n_entries);
  int* entry_rows = arena.Take<int>(n_entries);
  int* entry_table = arena.Take<int>(n_entries);
  int* last_rows = arena.Take<int>(n_rows);
  cuda::SamplingRow* sampling = arena.Take<cuda::SamplingRow>(n_rows);
  int* tables = arena.Take<int>(static_cast<size_t>(n_table + n_history));
  int* history = tables + n_table;

  passes_.clear();
  int table_offset = 0, j = 0, max_context = 0;
  for (size_t i = 0; i < n_real_entries; ++i) {
    const StepEntry& e = entries[i];
    const int row0 = entry_offset_[i];
    // Indices inside the entry's pass: the whole step, or the entry alone.
    const int local_entry = separate_passes ? 0 : static_cast<int>(i);
    const int local_row0 = separate_passes ? 0 : row0;
    for (int t = 0; t < e.n_tokens; ++t) {
      if (e.tokens[t] < 0 || e.tokens[t] >= s.vocab_size)
        return InvalidArgument("step entry " + std::to_string(i) + ": token id " + std::to_string(e.tokens[t]) +
                               " is outside the vocabulary of " + std::to_string(s.vocab_size));
      tok[row0 + t] = e.tokens[t];
      pos[row0 + t] = e.start_pos + t;
      row_entry[row0 + t] = local_entry;
    }
    first_row[i] = local_row0;
    entry_rows[i] = e.n_tokens;
    entry_table[i] = table_offset;
    const int context = e.start_pos + e.n_tokens;
    const int n_table_entry = (context + block_size - 1) / block_size;
    for (int b = 0; b < n_table_entry; ++b) {
      if (e.block_table[b] < 0 || e.block_table[b] >= n_blocks)
        return InvalidArgument("step entry " + std::to_string(i) + ": block " + std::to_string(e.block_table[b]) +
                               " is outside the KV pool of " + std::to_string(n_blocks));
      tables[table_offset + b] = e.block_table[b];
    }
    table_offset += n_table_entry;
    max_context = std::max(max_context, context);
    if (separate_passes)
      passes_.push_back(Pass{row0, e.n_tokens, static_cast<int>(i), 1, j, e.want_logits ? 1 : 0, context});
    if (e.want_logits) last_rows[j++] = local_row0 + e.n_tokens - 1;
  }
  // Padding of a decode step: token 0 at position 0 of no entry (WriteKv skips row_entry
  // -1), entries of no rows (attention skips them), greedy sampling rows.
  for (size_t r = n_real; r < n; ++r) {
    tok[r] = 0;
    pos[r] = 0;
    row_entry[r] = -1;
  }
  for (size_t e = n_real_entries; e < n_entries; ++e) {
    first_row[e] = static_cast<int>(e);
    entry_rows[e] = 0;
    entry_table[e] = 0;
  }
  for (size_t r = n_real_rows; r < n_rows; ++r) {
    last_rows[r] = static_cast<int>(r);
    sampling[r] = cuda::SamplingRow{};
  }
  if (!separate_passes)
    // A decode step attends with the model's full context, so its launches do not
    // depend on the positions (same results: attention.h).
    passes_.push_back(Pass{0, static_cast<int>(n), 0, static_cast<int>(n_entries), 0, static_cast<int>(n_rows),
                           bucket > 0 ? s.max_seq_len : max_context});

  int history_offset = 0;
  for (size_t r = 0; r < n_real_rows; ++r) {
    const SampleRow& row = rows[r];
    const int len = row.params->repetition_penalty != 1.0f ? static_cast<int>(row.history.size()) : 0;
    std::copy_n(row.history.data(), len, history + history_offset);
    sampling[r] = cuda::MakeSamplingRow(*row.params, row.draw_index, static_cast<int>(n_table) + history_offset, len);
    history_offset += len;
  }

  unsigned char* const device = desc_device_.as<unsigned char>();
  auto on_device = [&](auto* p) { return reinterpret_cast<decltype(p)>(device + (reinterpret_cast<unsigned char*>(p) - host)); };
  desc_ = Descriptor{on_device(tok),         on_device(pos),    on_device(row_entry), on_device(first_row),
                     on_device(entry_rows),  on_device(entry_table), on_device(last_rows), on_device(tables),
                     on_device(tables), on_device(sampling)};
  return arena.used();
}

bool CudaDecoder::IsDecodeStep(std::span<const StepEntry> entries, bool separate_passes) {
  if (separate_passes || entries.empty()) return false;
  return std::all_of(entries.begin(), entries.end(), [](const StepEntry& e) { return e.n_tokens == 1 && e.want_logits; });
}

int CudaDecoder::DecodeBucket(int n) const {
  FLOVER_CHECK(n >= 1 && n <= decode_cap_) << "decode step of " << n << " rows, cap " << decode_cap_;
  int bucket = 1;
  if (n <= 8) {
    while (bucket < n) bucket *= 2;
  } else {
    bucket = (n + 15) / 16 * 16;
  }
  return std::min(bucket, decode_cap_);
}

Status CudaDecoder::Step(std::span<const StepEntry> entries, bool separate_passes, std::span<const SampleRow> rows,
                         std::span<int> tokens) {
  int64_t n_table = 0, n_history = 0;
  FLOVER_RETURN_IF_ERROR(Validate(entries, rows, tokens, &n_table, &n_history));
  if (entries.empty()) return Status::Ok();
  FLOVER_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  entry_offset_.assign(1, 0);
  for (const StepEntry& e : entries) entry_offset_.push_back(entry_offset_.back() + e.n_tokens);
  const int bucket = config_.cuda_graphs && IsDecodeStep(entries, separate_passes)
                         ? DecodeBucket(static_cast<int>(entries.size()))
                         : 0;
  FLOVER_ASSIGN_OR_RETURN(const size_t bytes, Pack(entries, separate_passes, rows, n_table, n_history, bucket));

  // The one host-to-device copy of the step.
  FLOVER_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(desc_device_.data(), desc_host_.get(), bytes, cudaMemcpyHostToDevice, stream_));
  FLOVER_CUDA_RETURN_IF_ERROR(cudaEventRecord(desc_copied_, stream_));
  last_upload_bytes_ = bytes;
  if (bucket > 0 && use_graphs_) {
    FLOVER_RETURN_IF_ERROR(LaunchDecodeGraph(bucket));
  } else {
    FLOVER_RETURN_IF_ERROR(Enqueue(bucket > 0 ? bucket : static_cast<int>(rows.size())));
  }

  const int n_rows = static_cast<int>(rows.size());
  if (n_rows > 0)
    FLOVER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(tokens_host_.get(), tokens_device_.data(), n_rows * sizeof(int),
                                                cudaMemcpyDeviceToHost, stream_));
  // The one synchronisation of the step.
  FLOVER_RETURN_IF_ERROR(Wait());
  if (n_rows > 0) {
    std::copy_n(reinterpret_cast<const int*>(tokens_host_.get()), n_rows, tokens.data());
    last_n_logits_ = n_rows;
  }
  return Status::Ok();
}

Status CudaDecoder::Enqueue(int n_logits) {
  for (const Pass& pass : passes_) FLOVER_RETURN_IF_ERROR(Forward(pass));
  if (n_logits == 0) return Status::Ok();
  const MatrixView logits = Matrix(logits_.data(), DType::kF32, n_logits, spec().vocab_size);
  return cuda::SampleTokens(logits, desc_.sampling, desc_.history, tokens_device_.as<int>(), sampling_ws_.data(),
                            sampling_ws_bytes_, stream_);
}

void CudaDecoder::GraphExecDeleter::operator()(cudaGraphExec_t g) const {
  if (g) (void)cudaGraphExecDestroy(g);
}

Status CudaDecoder::LaunchDecodeGraph(int bucket) {
  auto it = std::find_if(graphs_.begin(), graphs_.end(), [&](const DecodeGraph& g) { return g.bucket == bucket; });
  if (it == graphs_.end()) {
    // Capture this thread's launches only; anything illegal in a capture fails it.
    FLOVER_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    const Status enqueued = Enqueue(bucket);
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
    if (!enqueued.ok() || ended != cudaSuccess) {
      if (graph) (void)cudaGraphDestroy(graph);
      FLOVER_RETURN_IF_ERROR(enqueued);
      FLOVER_CUDA_RETURN_IF_ERROR(ended);
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
    (void)cudaGraphDestroy(graph);
    FLOVER_CUDA_RETURN_IF_ERROR(made);
    DecodeGraph g;
    g.bucket = bucket;
    g.desc = desc_;
    g.exec.reset(exec);
    graphs_.push_back(std::move(g));
    it = graphs_.end() - 1;
  }
  // The graph reads the descriptor where it was captured; Pack puts a bucket's arrays
  // at fixed addresses.
  FLOVER_CHECK(it->desc == desc_) << "decode step of bucket " << bucket << " packed at other addresses";
  FLOVER_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(it->exec.get(), stream_));
  return Status::Ok();
}

Status CudaDecoder::Wait() {
  // The communicator's bounded wait notices a dead peer instead of hanging.
  if (comm_ != nullptr) return comm_->Synchronize();
  FLOVER_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return Status::Ok();
}

Status CudaDecoder::Forward(const Pass& pass) {
  const ModelSpec& s = spec();
  const DType t = dtype();
  const int n = pass.n_rows, dim = s.dim, q_dim = local_.q_dim, hidden = local_.hidden_dim;
  const int qkv_cols = q_dim + 2 * local_.kv_dim;
  const MatrixView x = Matrix(x_.data(), DType::kF32, n, dim);
  const MatrixView xb = Matrix(xb_.data(), t, n, dim);
  const MatrixView qkv = Matrix(qkv_.data(), DType::kF32, n, qkv_cols);
  const MatrixView att = Matrix(att_.data(), t, n, q_dim);
  const MatrixView hidden_rows = Matrix(hidden_.data(), t, n, hidden);
  const int* positions = desc_.row_pos + pass.row_begin;
  const cuda::AttentionBatch batch{desc_.row_entry + pass.row_begin,
                                   positions,
                                   desc_.entry_first_row + pass.entry_begin,
                                   desc_.entry_n_rows + pass.entry_begin,
                                   desc_.entry_table + pass.entry_begin,
                                   desc_.block_tables,
                                   n,
                                   pass.n_entries,
                                   pass.max_context};

  FLOVER_RETURN_IF_ERROR(cuda::EmbeddingGather(Matrix(weights_.token_embedding.data(), t, s.vocab_size, dim),
                                               desc_.tokens + pass.row_begin, x, stream_));
  FLOVER_RETURN_IF_ERROR(Norm(x, AttnNorm(0), xb));
  for (int l = 0; l < s.n_layers; ++l) {
    const DeviceLayerWeights& layer = weights_.layers[l];
    const cuda::PagedKvView kv = kv_->layer(l);
    // Attention block.
    FLOVER_RETURN_IF_ERROR(gemm_.Matmul(xb, Matrix(layer.wqkv.data(), t, qkv_cols, dim), qkv));
    if (s.qkv_bias) FLOVER_RETURN_IF_ERROR(cuda::AddBias(qkv, layer.bqkv.as<float>(), stream_));
    // The q heads and then the k heads are contiguous in a row: one launch rotates the
    // rotary dims of both.
    FLOVER_RETURN_IF_ERROR(cuda::ApplyRope(qkv_.as<float>(), n, qkv_cols, local_.n_heads + local_.n_kv_heads,
                                           s.head_dim(), positions, rope_, stream_));
    FLOVER_RETURN_IF_ERROR(cuda::WriteKv(kv, batch, qkv, local_.n_heads, stream_));
    FLOVER_RETURN_IF_ERROR(
        cuda::PagedAttention(kv, batch, qkv, local_.n_heads, att, attn_ws_.data(), attn_ws_bytes_, stream_));
    const Product attention{att, Matrix(layer.wo.data(), t, dim, q_dim)};
    const Product mlp{hidden_rows, Matrix(layer.w2.data(), t, dim, hidden)};
    const float* b2 = s.ffn_bias ? layer.b2.as<float>() : nullptr;

    // What follows the layer's last residual add: the next layer's attention norm; after
    // the last layer nothing with one rank (LmHead norms the gathered rows only), and
    // with tensor parallelism the final norm of every row, fused with the add.
    const bool last = l + 1 == s.n_layers;
    const std::optional<NormWeights> next =
        !last ? std::optional(AttnNorm(l + 1)) : comm_ != nullptr ? std::optional(FinalNorm()) : std::nullopt;
    const MatrixView next_out = last && comm_ != nullptr ? Matrix(normed_.data(), DType::kF32, n, dim) : xb;
    if (s.parallel_residual) {
      // x += attn(h) + mlp(h), h = xb: both products in one residual add (one all-reduce).
      FLOVER_RETURN_IF_ERROR(FeedForward(layer, n));
      const Product both[] = {attention, mlp};
      FLOVER_RETURN_IF_ERROR(Residual(both, b2, next, next_out));
    } else {
      FLOVER_RETURN_IF_ERROR(Residual({&attention, 1}, nullptr, FfnNorm(l), xb));
      FLOVER_RETURN_IF_ERROR(FeedForward(layer, n));
      FLOVER_RETURN_IF_ERROR(Residual({&mlp, 1}, b2, next, next_out));
    }
  }
  if (pass.n_logits > 0) FLOVER_RETURN_IF_ERROR(LmHead(pass));
  return Status::Ok();
}

Status CudaDecoder::FeedForward(const DeviceLayerWeights& layer, int n) {
  const ModelSpec& s = spec();
  const DType t = dtype();
  const int dim = s.dim, hidden = local_.hidden_dim;
  const MatrixView xb = Matrix(xb_.data(), t, n, dim);
  const MatrixView hidden_rows = Matrix(hidden_.data(), t, n, hidden);
  const float* b1 = s.ffn_bias ? layer.b1.as<float>() : nullptr;
  if (s.ffn == FfnKind::kGelu) {
    const MatrixView fc_in = Matrix(gate_up_.data(), DType::kF32, n, hidden);
    FLOVER_RETURN_IF_ERROR(gemm_.Matmul(xb, Matrix(layer.w13.data(), t, hidden, dim), fc_in));
    return cuda::GeluBias(fc_in, b1, hidden_rows, stream_);
  }
  const MatrixView w13 = Matrix(layer.w13.data(), t, 2 * hidden, dim);
  const MatrixView gate_up = Matrix(gate_up_.data(), DType::kF32, n, 2 * hidden);
  if (b1 == nullptr && n <= gemm_.gemv_max_rows() && cuda::GemvSupports(xb, w13, gate_up)) {
    // Small steps: the product and SiLU·up in one launch (the same bits).
    return cuda::GemvSiluMul(xb, w13, hidden_rows, stream_);
  }
  FLOVER_RETURN_IF_ERROR(gemm_.Matmul(xb, w13, gate_up));
  // A bias of W1 is the gate's (the first `hidden` columns of each row).
  if (b1 != nullptr)
    FLOVER_RETURN_IF_ERROR(cuda::AddBias(Matrix(gate_up_.data(), DType::kF32, n, hidden, 2 * hidden), b1, stream_));
  return cuda::SiluMul(gate_up, hidden_rows, stream_);
}

Status CudaDecoder::Residual(std::span<const Product> products, const float* bias,
                             const std::optional<NormWeights>& next, const MatrixView& out) {
  const ModelSpec& s = spec();
  const int n = products.front().in.rows;
  const MatrixView x = Matrix(x_.data(), DType::kF32, n, s.dim);
  if (comm_ == nullptr) {
    for (const Product& p : products) FLOVER_RETURN_IF_ERROR(gemm_.Matmul(p.in, p.w, x, /*accumulate=*/true));
    if (bias != nullptr) FLOVER_RETURN_IF_ERROR(cuda::AddBias(x, bias, stream_));
    return next ? Norm(x, *next, out) : Status::Ok();
  }
  FLOVER_CHECK(next.has_value()) << "a tensor-parallel residual add is fused with the next norm";
  const MatrixView proj = Matrix(proj_.data(), DType::kF32, n, s.dim);
  for (size_t i = 0; i < products.size(); ++i)
    FLOVER_RETURN_IF_ERROR(gemm_.Matmul(products[i].in, products[i].w, proj, /*accumulate=*/i > 0));
  FLOVER_RETURN_IF_ERROR(comm_->AllReduceSum(proj_.as<float>(), static_cast<size_t>(n) * s.dim));
  // The replicated bias once, after the sum of the ranks' partial products.
  if (bias != nullptr) FLOVER_RETURN_IF_ERROR(cuda::AddBias(proj, bias, stream_));
  if (s.norm == NormKind::kLayer) return cuda::AddLayerNorm(x, proj, next->weight, next->bias, out, s.norm_eps, stream_);
  return cuda::AddRmsNorm(x, proj, next->weight, out, s.norm_eps, stream_);
}

Status CudaDecoder::Norm(const MatrixView& x, const NormWeights& norm, const MatrixView& out) {
  const ModelSpec& s = spec();
  if (s.norm == NormKind::kLayer) return cuda::LayerNorm(x, norm.weight, norm.bias, out, s.norm_eps, stream_);
  return cuda::RmsNorm(x, norm.weight, out, s.norm_eps, stream_);
}

CudaDecoder::NormWeights CudaDecoder::AttnNorm(int layer) const {
  const DeviceLayerWeights& l = weights_.layers[layer];
  return {l.attn_norm.as<float>(), l.attn_norm_bias.as<float>()};
}

CudaDecoder::NormWeights CudaDecoder::FfnNorm(int layer) const {
  const DeviceLayerWeights& l = weights_.layers[layer];
  return {l.ffn_norm.as<float>(), l.ffn_norm_bias.as<float>()};
}

CudaDecoder::NormWeights CudaDecoder::FinalNorm() const {
  return {weights_.final_norm.as<float>(), weights_.final_norm_bias.as<float>()};
}

Status CudaDecoder::LmHead(const Pass& pass) {
  const ModelSpec& s = spec();
  const DType t = dtype();
  const int rows = pass.n_logits, dim = s.dim, vocab = s.vocab_size;
  const int* last_rows = desc_.last_rows + pass.logit_begin;
  const MatrixView gathered = Matrix(gathered_.data(), DType::kF32, rows, dim);
  const MatrixView head_in = Matrix(head_in_.data(), t, rows, dim);
  float* const logits = logits_.as<float>() + static_cast<size_t>(pass.logit_begin) * vocab;

  if (comm_ == nullptr) {
    // Gather the last rows of the residual stream, then the final norm of those only.
    FLOVER_RETURN_IF_ERROR(
        cuda::EmbeddingGather(Matrix(x_.data(), DType::kF32, pass.n_rows, dim), last_rows, gathered, stream_));
    FLOVER_RETURN_IF_ERROR(Norm(gathered, FinalNorm(), head_in));
    const DeviceBuffer& head = s.shared_classifier ? weights_.token_embedding : weights_.lm_head;
    const MatrixView out = Matrix(logits, DType::kF32, rows, vocab);
    FLOVER_RETURN_IF_ERROR(gemm_.Matmul(head_in, Matrix(head.data(), t, vocab, dim), out));
    return s.classifier_bias ? cuda::AddBias(out, weights_.lm_head_bias.as<float>(), stream_) : Status::Ok();
  }

  // Tensor parallel: the rows were normed with the last all-reduce (Forward).
  FLOVER_RETURN_IF_ERROR(
      cuda::EmbeddingGather(Matrix(normed_.data(), DType::kF32, pass.n_rows, dim), last_rows, gathered, stream_));
  MatrixView in = gathered;
  if (t != DType::kF32) {
    FLOVER_RETURN_IF_ERROR(
        cuda::ConvertFromF32(gathered_.as<float>(), head_in_.data(), t, static_cast<int64_t>(rows) * dim, stream_));
    in = head_in;
  }
  const int per_rank = local_.vocab_per_rank;
  const MatrixView part_view = Matrix(logits_part_.data(), DType::kF32, rows, per_rank);
  FLOVER_RETURN_IF_ERROR(gemm_.Matmul(in, Matrix(weights_.lm_head.data(), t, per_rank, dim), part_view));
  // This rank's entries of the bias (zeros on the padding).
  if (s.classifier_bias) FLOVER_RETURN_IF_ERROR(cuda::AddBias(part_view, weights_.lm_head_bias.as<float>(), stream_));
  const size_t part = static_cast<size_t>(rows) * per_rank;
  FLOVER_RETURN_IF_ERROR(comm_->AllGather(logits_part_.as<float>(), part, logits_all_.as<float>()));
  // Rank-major [world, rows, per_rank] -> [rows, vocab], without the last rank's padding.
  for (int r = 0; r < weights_.shard.world; ++r) {
    const int begin = r * per_rank;
    const int width = std::min(per_rank, vocab - begin);
    if (width <= 0) continue;
    FLOVER_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(logits + begin, static_cast<size_t>(vocab) * sizeof(float),
                                                  logits_all_.as<float>() + r * part, per_rank * sizeof(float),
                                                  width * sizeof(float), rows, cudaMemcpyDeviceToDevice, stream_));
  }
  return Status::Ok();
}

Status CudaDecoder::CopyLastLogits(std::vector<float>* logits) const {
  logits->resize(static_cast<size_t>(last_n_logits_) * spec().vocab_size);
  if (logits->empty()) return Status::Ok();
  FLOVER_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  return cuda::CopyToHost(logits->data(), logits_.data(), logits->size() * sizeof(float), stream_);
}

Status CudaDecoder::CopyLogitsRow(int row, std::span<float> out) const {
  FLOVER_CHECK(row >= 0 && row < last_n_logits_) << "logits row " << row << " of " << last_n_logits_;
  FLOVER_CHECK(out.size() == static_cast<size_t>(spec().vocab_size)) << out.size() << " floats for a row";
  FLOVER_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  return cuda::CopyToHost(out.data(), logits_.as<float>() + static_cast<size_t>(row) * out.size(),
                          out.size() * sizeof(float), stream_);
}

}  // namespace flover
