#!/usr/bin/env python3
"""Writes a LLaMA-architecture GGUF file with random F32 weights, for benchmarks that
run Flover and llama.cpp on the same file (scripts/bench-cpu-dtypes.sh); llama.cpp's
llama-quantize then makes the F16, BF16, Q8_0, Q4_0 and Q4_K_M files from it.

The weights are drawn from a normal distribution (std 0.02, as LLaMA's initialisation;
norm weights 1), seeded, so every run writes the same file. The vocabulary is a
SentencePiece-style ("llama") one that both engines load: <unk>, <s>, </s>, the 256
byte tokens <0x00>..<0xFF>, then filler pieces; its text is meaningless, benchmarks
feed token ids or short prompts.

random_llama_hf.py writes Hugging Face folders of these shapes with this vocabulary
(its values are drawn differently: one generator per tensor, in parallel).

Usage: python random_llama_gguf.py --out FILE [--preset llama-110m] [--seed 0]
Needs numpy and gguf-py (llama.cpp's source has it: PYTHONPATH=LLAMA_CPP/gguf-py).
"""
import argparse
from typing import Iterator, NamedTuple

import numpy as np


class Shape(NamedTuple):
    dim: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    context: int


PRESETS = {
    'llama-110m': Shape(768, 2048, 12, 12, 12, 32000, 1024),
    'stories15m': Shape(288, 768, 6, 6, 6, 32000, 256),
    # Flover's dummy:llama-7b (LLaMA 2 7B), the paper's model.
    'llama-7b': Shape(4096, 11008, 32, 32, 32, 32000, 4096),
    # The 7B's vocabulary and head size on 2 layers of width 256: for tests on a CPU.
    'tiny': Shape(256, 688, 2, 4, 4, 32000, 4096),
}

STD = 0.02
BOS, EOS, UNK = 1, 2, 0


def tensor_shapes(shape: Shape) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor as (GGUF name, numpy shape): (rows, cols) for matrices (ggml ne =
    [cols, rows]), (n,) for norm weights; in the order draw_tensors draws them."""
    head_dim = shape.dim // shape.heads
    q_rows, kv_rows = shape.heads * head_dim, shape.kv_heads * head_dim
    specs = [('token_embd.weight', (shape.vocab, shape.dim))]
    for layer in range(shape.layers):
        p = f'blk.{layer}.'
        specs += [(p + 'attn_norm.weight', (shape.dim,)),
                  (p + 'attn_q.weight', (q_rows, shape.dim)),
                  (p + 'attn_k.weight', (kv_rows, shape.dim)),
                  (p + 'attn_v.weight', (kv_rows, shape.dim)),
                  (p + 'attn_output.weight', (shape.dim, q_rows)),
                  (p + 'ffn_norm.weight', (shape.dim,)),
                  (p + 'ffn_gate.weight', (shape.hidden, shape.dim)),
                  (p + 'ffn_up.weight', (shape.hidden, shape.dim)),
                  (p + 'ffn_down.weight', (shape.dim, shape.hidden))]
    specs += [('output_norm.weight', (shape.dim,)), ('output.weight', (shape.vocab, shape.dim))]
    return specs


def draw_tensors(shape: Shape, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """Every tensor of tensor_shapes as (GGUF name, fp32 array), drawn one after the other
    from one generator: matrices ~ N(0, STD), norm weights 1. The attn_q / attn_k rows are
    in GGUF's rotary order (adjacent pairs within a head), as a GGUF `llama` file holds
    them."""
    rng = np.random.default_rng(seed)
    for name, dims in tensor_shapes(shape):
        if len(dims) == 1:
            yield name, np.ones(dims, dtype=np.float32)
        else:
            yield name, (rng.standard_normal(dims, dtype=np.float32) * STD).astype(np.float32)


def vocabulary(size):
    """(pieces, scores, kinds): kinds are 'unknown', 'control', 'byte' or 'normal'."""
    pieces = ['<unk>', '<s>', '</s>'] + [f'<0x{b:02X}>' for b in range(256)]
    kinds = ['unknown', 'control', 'control'] + ['byte'] * 256
    while len(pieces) < size:
        pieces.append(f'\u2581tok{len(pieces)}')
        kinds.append('normal')
    scores = [0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(size - 259)]
    return pieces, scores, kinds


def main():
    import gguf
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--preset', default='llama-110m', choices=sorted(PRESETS))
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    shape = PRESETS[args.preset]
    w = gguf.GGUFWriter(args.out, 'llama')
    w.add_name(f'random {args.preset} (seed {args.seed})')
    w.add_context_length(shape.context)
    w.add_embedding_length(shape.dim)
    w.add_feed_forward_length(shape.hidden)
    w.add_block_count(shape.layers)
    w.add_head_count(shape.heads)
    w.add_head_count_kv(shape.kv_heads)
    w.add_rope_dimension_count(shape.dim // shape.heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    pieces, scores, kinds = vocabulary(shape.vocab)
    token_type = {'unknown': gguf.TokenType.UNKNOWN, 'control': gguf.TokenType.CONTROL,
                  'byte': gguf.TokenType.BYTE, 'normal': gguf.TokenType.NORMAL}
    w.add_tokenizer_model('llama')
    w.add_token_list([p.encode() for p in pieces])
    w.add_token_scores(scores)
    w.add_token_types([token_type[k] for k in kinds])
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(EOS)
    w.add_unk_token_id(UNK)
    w.add_add_bos_token(True)
    for name, tensor in draw_tensors(shape, args.seed):
        w.add_tensor(name, tensor)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(args.out)


if __name__ == '__main__':
    main()
