#!/usr/bin/env python3
"""Writes a LLaMA-architecture GGUF file with random F32 weights, for benchmarks that
run Flover and llama.cpp on the same file (scripts/bench-cpu-dtypes.sh); llama.cpp's
llama-quantize then makes the F16, BF16, Q8_0, Q4_0 and Q4_K_M files from it.

The weights are drawn from a normal distribution (std 0.02, as LLaMA's initialisation;
norm weights 1), seeded, so every run writes the same file. The vocabulary is a
SentencePiece-style ("llama") one that both engines load: <unk>, <s>, </s>, the 256
byte tokens <0x00>..<0xFF>, then filler pieces; its text is meaningless, benchmarks
feed token ids or short prompts.

Usage: python random_llama_gguf.py --out FILE [--preset llama-110m] [--seed 0]
Needs numpy and gguf-py (llama.cpp's source has it: PYTHONPATH=LLAMA_CPP/gguf-py).
"""
import argparse

import numpy as np
import gguf

PRESETS = {
    # dim, hidden, layers, heads, kv heads, vocab, context (Flover's dummy presets)
    'llama-110m': (768, 2048, 12, 12, 12, 32000, 1024),
    'stories15m': (288, 768, 6, 6, 6, 32000, 256),
}


def vocabulary(size):
    tokens = [b'<unk>', b'<s>', b'</s>'] + [f'<0x{b:02X}>'.encode() for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    while len(tokens) < size:
        tokens.append(f'\u2581tok{len(tokens)}'.encode())
        types.append(gguf.TokenType.NORMAL)
    scores = [0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(size - 259)]
    return tokens, scores, types


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--preset', default='llama-110m', choices=sorted(PRESETS))
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    dim, hidden, layers, heads, kv_heads, vocab, context = PRESETS[args.preset]
    head_dim = dim // heads
    rng = np.random.default_rng(args.seed)

    def matrix(rows, cols):  # ggml ne = [cols, rows]: numpy shape (rows, cols)
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float32)

    ones = np.ones(dim, dtype=np.float32)
    w = gguf.GGUFWriter(args.out, 'llama')
    w.add_name(f'random {args.preset} (seed {args.seed})')
    w.add_context_length(context)
    w.add_embedding_length(dim)
    w.add_feed_forward_length(hidden)
    w.add_block_count(layers)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens, scores, types = vocabulary(vocab)
    w.add_tokenizer_model('llama')
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_tensor('token_embd.weight', matrix(vocab, dim))
    for layer in range(layers):
        p = f'blk.{layer}.'
        w.add_tensor(p + 'attn_norm.weight', ones)
        w.add_tensor(p + 'attn_q.weight', matrix(heads * head_dim, dim))
        w.add_tensor(p + 'attn_k.weight', matrix(kv_heads * head_dim, dim))
        w.add_tensor(p + 'attn_v.weight', matrix(kv_heads * head_dim, dim))
        w.add_tensor(p + 'attn_output.weight', matrix(dim, heads * head_dim))
        w.add_tensor(p + 'ffn_norm.weight', ones)
        w.add_tensor(p + 'ffn_gate.weight', matrix(hidden, dim))
        w.add_tensor(p + 'ffn_up.weight', matrix(hidden, dim))
        w.add_tensor(p + 'ffn_down.weight', matrix(dim, hidden))
    w.add_tensor('output_norm.weight', ones)
    w.add_tensor('output.weight', matrix(vocab, dim))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(args.out)


if __name__ == '__main__':
    main()
