// GgufArchitecture: what distinguishes the GGUF architectures Flover loads
// (general.architecture), as data. llama.cpp names the tensors of both alike
// (token_embd, blk.N.attn_q, ...); they differ in
//   - the prefix of their metadata keys ("llama.embedding_length", "qwen2.block_count"),
//     which is the architecture's name;
//   - optional tensors: q/k/v biases (blk.N.attn_{q,k,v}.bias);
//   - the row order of Q/K. llama.cpp's converter permutes the rows of attn_q/attn_k of
//     "llama" into adjacent rotary pairs (llama.cpp's rope type NORM), which is Flover's
//     layout; it leaves those of "qwen2" (rope type NEOX) in Hugging Face's half-split
//     order, so the loader permutes them (and their biases) as the Hugging Face loader
//     does (rotary_layout.h).
//
//   llama   Llama 2 / 3 / 3.1, TinyLlama, Mistral   no biases, pairs as stored
//   qwen2   Qwen2, Qwen2.5                           q/k/v biases, halves permuted at load
//
// Thread-safety: constant tables.
#pragma once

#include <string>
#include <string_view>

namespace flover {

struct GgufArchitecture {
  const char* name;       // general.architecture, and the prefix of its metadata keys
  const char* spec_arch;  // ModelSpec::arch
  bool qkv_bias;          // blk.N.attn_{q,k,v}.bias are required (ModelSpec::qkv_bias)
  bool rotates_halves;    // attn_q/attn_k rows (and biases) are in half-split order
};

// nullptr for an architecture Flover does not load.
const GgufArchitecture* FindGgufArchitecture(std::string_view name);

// "\"llama\", \"qwen2\"": the supported names, for messages.
std::string SupportedGgufArchitectures();

}  // namespace flover
