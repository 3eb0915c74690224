// `flover run`: serves prompts with the in-process engine (no daemons): the backend of
// `device` (CreateBackend: cpu or cuda:N) and the coordinator's scheduler under
// `policy`, optionally admitting one new prompt every `stagger` steps so requests join
// a running batch. Prints stories (or one JSON object per prompt with --json) on stdout
// and a timing summary on stderr.
#pragma once

#include <string>
#include <vector>

#include "common/request_params.h"

namespace flover {

struct RunOptions {
  std::string model;                   // path or dummy:<preset>
  std::string tokenizer;               // llama2.c tokenizer .bin; found beside the model if empty
  std::vector<std::string> prompts;
  std::string prompts_file;            // one prompt per line
  std::vector<std::string> prompt_ids; // "1,301,295" per prompt: token ids in, no tokenizer needed
  SamplingParams sampling;
  StopParams stop;
  int stagger = 0;                     // steps between admissions; 0 = all at once
  bool json = false;
  std::string device = "cpu";          // cpu | cuda:N
  // Weight precision, as model.dtype: auto | fp32 | fp16 | bf16 | q8_0 | q4_0 | q4_k (the
  // last three on cpu only; auto: cpu keeps the file's formats, cuda stores fp16).
  std::string dtype = "auto";
  // KV cache element type, as kv_cache.dtype: fp32 | fp16 | bf16; empty: fp32 on cpu, the
  // weights' type on cuda (which accepts only that).
  std::string kv_dtype;
  std::string policy = "fused";        // fused | dynamic | instances | sequential
  int pipeline_depth = 1;              // plans scheduled ahead of their results
  int threads = 0;                     // 0 = OpenMP default
  int block_size = 16;
  double kv_cache_mib = 1024;
  int max_step_tokens = 512;
  int max_running = 256;
  uint64_t dummy_seed = 0;
};

// Returns the process exit code; errors are printed to stderr.
int RunCommand(const RunOptions& options);

}  // namespace flover
