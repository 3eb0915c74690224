// CreateBackend: the ForwardBackend of a device, made from a model name and a device
// name. The one way both the worker daemon and the in-process engine (`flover run`,
// tests, benchmarks) get a backend, for every device:
//   "cpu"     CpuBackend (worker/engine/cpu_backend.h): this rank's shard loaded one
//             tensor at a time, its matrices in the formats cpu_weights chooses
//             (weight_policy.h), its KV cache, and with tensor parallelism a CPU
//             communicator over the transport of group.cpu (auto | shm | tcp,
//             worker/comm/cpu_communicator.h), keys under "<prefix>/tp";
//   "cuda:N"  CudaBackend (worker/engine/cuda/cuda_backend.h) on GPU N, its stream, KV
//             cache and with tensor parallelism an NCCL communicator on that stream,
//             keys under "<prefix>/nccl". In a build without CUDA: Unavailable, saying
//             so; on a machine without that GPU: Unavailable, saying so.
// The backend owns everything it runs on (communicator, KV cache, stream), destroyed in
// the right order with it.
//
// Thread-safety: CreateBackend is reentrant (every rank of an in-process group may call
// it on its own thread; they meet through the store).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/dtype.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "common/tokenizer.h"
#include "worker/comm/cpu_communicator.h"
#include "worker/comm/kv_store.h"
#include "worker/engine/forward_backend.h"
#include "worker/model/shard.h"

namespace flover {

struct BackendConfig {
  std::string device = "cpu";  // "cpu" or "cuda:N"
  std::string model;           // a model file or "dummy:<preset>" (model_loader.h)
  uint64_t dummy_seed = 0;
  // CPU: runs on the model's shape before any tensor is read (the worker checks it
  // against its cluster config; it checks a CUDA backend's spec once it is made); may
  // be empty.
  std::function<Status(const ModelSpec&)> check_model;

  // The paged KV cache of this rank: its byte budget sizes the pool.
  int kv_block_size = 16;                       // tokens per block, >= 1
  int64_t kv_memory_bytes = int64_t{1} << 30;   // K+V of all layers
  int kv_max_blocks = 0;                        // if > 0, at most this many blocks
  int kv_max_sequences = 0;                     // if > 0, at most what this many full
                                                // contexts use (CapKvBlocks)
  // The element type of K and V (kv_cache.dtype). nullopt: fp32 on the CPU, cuda_dtype
  // on a GPU. The CPU stores any DType; a CUDA backend only cuda_dtype (its KV cache
  // has the weights' type), anything else is InvalidArgument.
  std::optional<DType> kv_dtype;

  // CPU only: the formats of the weight matrices (model.dtype; auto keeps the file's
  // where the CPU computes it natively).
  WeightPolicy cpu_weights = WeightPolicy::Auto();

  // CUDA only (the CPU backend sizes its scratch on demand).
  DType cuda_dtype = DType::kF16;  // weights and KV cache on the GPU
  int max_step_tokens = 512;       // tokens of the largest step (device scratch)
  int max_rows = 64;               // sampled tokens of the largest step (logits rows)
};

// This rank's place in a tensor-parallel group and how its communicator meets the
// others. The default is no group (world 1).
struct BackendGroup {
  ShardInfo shard;
  KvStore* store = nullptr;  // the rendezvous store; required when shard.world > 1
  std::string prefix;        // the same on every rank of the group, new for a new group
  CpuCommunicatorOptions cpu;  // the CPU transport, bind address and timeout
};

struct CreatedBackend {
  std::unique_ptr<ForwardBackend> backend;
  // The model and device, for logs and WorkerReady: "llama2.c m.bin, cpu, weights fp32
  // 1.1 MB, 2 threads, tensor parallel over shared memory", "NVIDIA H200 (...), fp16,
  // dummy:llama-7b ...".
  std::string description;
  // CPU: the bytes of weights one decode step reads (every matrix and vector held,
  // less an embedding table that is not also the LM head: a step reads one row of
  // it); for bandwidth rooflines. 0 on CUDA.
  int64_t step_weight_bytes = 0;
  std::optional<Tokenizer> tokenizer;  // a vocabulary embedded in the model file, if any
  std::string note;                    // worth logging: why `auto` fell back to TCP; or empty
};

// Errors, each naming its cause: InvalidArgument for a device that is neither "cpu" nor
// "cuda:N", a bad config or group (a world > 1 without a store); Unavailable for a CUDA
// device this build or machine does not have; the loader's errors for the model;
// check_model's; the communicator's (a rank missing at the rendezvous: Unavailable).
Result<CreatedBackend> CreateBackend(const BackendConfig& config, const BackendGroup& group = {});

}  // namespace flover
