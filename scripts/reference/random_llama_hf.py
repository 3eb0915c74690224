#!/usr/bin/env python3
"""Writes a random LLaMA as a Hugging Face model folder that both Flover and
`transformers` load: config.json, generation_config.json, safetensors weights
(model.safetensors, or shards of at most --max-shard-gib with
model.safetensors.index.json), and a tokenizer (tokenizer.json, tokenizer_config.json,
special_tokens_map.json). For side-by-side benchmarks on identical weights
(scripts/hf-side-by-side.sh).

The shapes (--shape: random_llama_gguf.py's presets, llama-7b and tiny among them) and
the vocabulary are random_llama_gguf.py's; the values are drawn here: matrices
~ N(0, 0.02) (LLaMA's initialisation), each from its own generator seeded by --seed
and the tensor's position, norm weights 1; stored as --dtype (float16 by default:
numpy's round to nearest even; bfloat16 likewise). So not the GGUF file's values: that
script draws every tensor from one generator, too slow for 7B (normal draws run at about
20 million values/s on a core; 6.7 billion of them take minutes), where --jobs processes
draw here in parallel.

The tokenizer is the GGUF file's vocabulary as a SentencePiece-style BPE tokenizer.json
(Metaspace, byte fallback, no merges): <unk>, <s>, </s>, the 256 byte tokens, then
filler pieces "▁tokN". Text encodes to byte tokens; the filler pieces decode to " tokN".
Benchmarks feed token ids, so its only job is to load in both engines and decode.

Memory: the safetensors headers are computed from the shapes and written first; then
each process draws one tensor at a time, converts it and writes it in place, so writing
the 7B shape (13.5 GB in float16) holds at most --jobs tensors (the largest, the
embedding, is 0.5 GB in fp32). A file `random_llama.json` (shape, seed, dtype) is written
last: a folder that has it is complete (--reuse keeps such a folder).

Usage: python random_llama_hf.py --out DIR [--shape llama-7b|tiny|...] [--seed 0]
           [--dtype float16|bfloat16|float32] [--max-shard-gib 4] [--jobs N] [--reuse]
Needs numpy only.
"""
import argparse
import json
import multiprocessing
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from random_llama_gguf import BOS, EOS, PRESETS, STD, Shape, tensor_shapes, vocabulary  # noqa: E402

STAMP = 'random_llama.json'
WRITER = 'random_llama_hf.py 1'   # changes when the same arguments would write other values
ST_DTYPE = {'float16': 'F16', 'bfloat16': 'BF16', 'float32': 'F32'}
ELEMENT_BYTES = {'float16': 2, 'bfloat16': 2, 'float32': 4}
RMS_NORM_EPS = 1e-5
ROPE_THETA = 10000.0


def hf_name(gguf_name: str) -> str:
    """transformers' name of the tensor random_llama_gguf.py names `gguf_name`."""
    per_layer = {'attn_norm': 'input_layernorm', 'ffn_norm': 'post_attention_layernorm',
                 'attn_q': 'self_attn.q_proj', 'attn_k': 'self_attn.k_proj',
                 'attn_v': 'self_attn.v_proj', 'attn_output': 'self_attn.o_proj',
                 'ffn_gate': 'mlp.gate_proj', 'ffn_up': 'mlp.up_proj', 'ffn_down': 'mlp.down_proj'}
    top = {'token_embd.weight': 'model.embed_tokens.weight', 'output_norm.weight': 'model.norm.weight',
           'output.weight': 'lm_head.weight'}
    if gguf_name in top:
        return top[gguf_name]
    _, layer, part, _ = gguf_name.split('.')
    return f'model.layers.{layer}.{per_layer[part]}.weight'


def convert(w: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == 'float32':
        return np.ascontiguousarray(w, dtype=np.float32)
    if dtype == 'float16':
        return np.ascontiguousarray(w.astype(np.float16))
    bits = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)   # bfloat16: round to nearest even
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def plan_shards(specs, dtype, max_shard_bytes):
    """[(file name, [(hf name, dims, begin, end)])]: the tensors in tensor_shapes' order,
    offsets relative to the end of the file's header, each file at most max_shard_bytes
    of data (or one tensor if that is larger)."""
    shards, current, size = [], [], 0
    for name, dims in specs:
        n = int(np.prod(dims)) * ELEMENT_BYTES[dtype]
        if current and size + n > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append((hf_name(name), dims, size, size + n))
        size += n
    shards.append(current)
    if len(shards) == 1:
        return [('model.safetensors', shards[0])]
    return [(f'model-{i + 1:05d}-of-{len(shards):05d}.safetensors', s) for i, s in enumerate(shards)]


def safetensors_header(entries, dtype) -> bytes:
    header = {'__metadata__': {'format': 'pt'}}
    for name, dims, begin, end in entries:
        header[name] = {'dtype': ST_DTYPE[dtype], 'shape': list(dims), 'data_offsets': [begin, end]}
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    return struct.pack('<Q', len(text)) + text


def draw(job):
    """One tensor, drawn from its own generator (seeded by the model seed and the tensor's
    position, so the values do not depend on how many processes draw them), converted
    and written at its offset in its file."""
    path, offset, dims, seed, index, dtype = job
    if len(dims) == 1:
        w = np.ones(dims, dtype=np.float32)
    else:
        rng = np.random.default_rng([seed, index])
        w = rng.standard_normal(dims, dtype=np.float32)
        w *= STD
    data = convert(w, dtype)
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data).cast('B')
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
    finally:
        os.close(fd)
    return index


def write_weights(folder: Path, shape: Shape, seed: int, dtype: str, max_shard_bytes: int, jobs: int):
    """The safetensors files: headers first, then every tensor written in place by `jobs`
    processes, each holding one tensor at a time."""
    specs = tensor_shapes(shape)
    shards = plan_shards(specs, dtype, max_shard_bytes)
    work = []
    for file, entries in shards:
        header = safetensors_header(entries, dtype)
        with open(folder / file, 'wb') as f:
            f.write(header)
            f.truncate(len(header) + entries[-1][3])
        for name, dims, begin, _ in entries:
            work.append((str(folder / file), len(header) + begin, dims, seed, len(work), dtype))
    if jobs > 1:
        with multiprocessing.get_context('fork').Pool(jobs) as pool:
            for _ in pool.imap_unordered(draw, work):
                pass
    else:
        for job in work:
            draw(job)
    if len(shards) > 1:
        total = sum(entries[-1][3] for _, entries in shards)
        index = {'metadata': {'total_size': total},
                 'weight_map': {name: file for file, entries in shards for name, _, _, _ in entries}}
        (folder / 'model.safetensors.index.json').write_text(json.dumps(index, indent=2) + '\n')
    return [file for file, _ in shards]


def write_json(path: Path, value):
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + '\n')


def write_config(folder: Path, shape: Shape, dtype: str):
    write_json(folder / 'config.json', {
        'architectures': ['LlamaForCausalLM'], 'model_type': 'llama',
        'hidden_size': shape.dim, 'intermediate_size': shape.hidden,
        'num_hidden_layers': shape.layers, 'num_attention_heads': shape.heads,
        'num_key_value_heads': shape.kv_heads, 'vocab_size': shape.vocab,
        'max_position_embeddings': shape.context, 'rms_norm_eps': RMS_NORM_EPS,
        'rope_theta': ROPE_THETA, 'rope_scaling': None, 'hidden_act': 'silu',
        'tie_word_embeddings': False, 'attention_bias': False, 'mlp_bias': False,
        'initializer_range': STD, 'pretraining_tp': 1, 'use_cache': True,
        'bos_token_id': BOS, 'eos_token_id': EOS, 'torch_dtype': dtype})
    write_json(folder / 'generation_config.json', {'bos_token_id': BOS, 'eos_token_id': EOS})


def write_tokenizer(folder: Path, vocab_size: int):
    pieces, _, kinds = vocabulary(vocab_size)
    special = [{'id': i, 'content': pieces[i], 'single_word': False, 'lstrip': False, 'rstrip': False,
                'normalized': False, 'special': True} for i, k in enumerate(kinds) if k in ('unknown', 'control')]
    bos = pieces[BOS]
    tokenizer = {
        'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': special,
        'normalizer': None,
        'pre_tokenizer': {'type': 'Metaspace', 'replacement': '\u2581', 'prepend_scheme': 'first', 'split': False},
        'post_processor': {
            'type': 'TemplateProcessing',
            'single': [{'SpecialToken': {'id': bos, 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}}],
            'pair': [{'SpecialToken': {'id': bos, 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}},
                     {'SpecialToken': {'id': bos, 'type_id': 1}}, {'Sequence': {'id': 'B', 'type_id': 1}}],
            'special_tokens': {bos: {'id': bos, 'ids': [BOS], 'tokens': [bos]}}},
        'decoder': {'type': 'Sequence', 'decoders': [
            {'type': 'Replace', 'pattern': {'String': '\u2581'}, 'content': ' '}, {'type': 'ByteFallback'},
            {'type': 'Fuse'}, {'type': 'Strip', 'content': ' ', 'start': 1, 'stop': 0}]},
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': pieces[0], 'continuing_subword_prefix': None,
                  'end_of_word_suffix': None, 'fuse_unk': True, 'byte_fallback': True, 'ignore_merges': False,
                  'vocab': {p: i for i, p in enumerate(pieces)}, 'merges': []},
    }
    (folder / 'tokenizer.json').write_text(json.dumps(tokenizer, ensure_ascii=False) + '\n')
    token = {s['content']: {k: s[k] for k in ('content', 'lstrip', 'normalized', 'rstrip', 'single_word')}
             for s in special}
    write_json(folder / 'special_tokens_map.json',
               {'bos_token': token[bos], 'eos_token': token[pieces[EOS]], 'unk_token': token[pieces[0]]})
    write_json(folder / 'tokenizer_config.json', {
        'tokenizer_class': 'PreTrainedTokenizerFast', 'add_bos_token': True, 'add_eos_token': False,
        'bos_token': bos, 'eos_token': pieces[EOS], 'unk_token': pieces[0], 'pad_token': None,
        'clean_up_tokenization_spaces': False, 'model_max_length': 1 << 20,
        'added_tokens_decoder': {str(s['id']): {k: v for k, v in s.items() if k != 'id'} for s in special}})


def stamp(shape_name: str, seed: int, dtype: str) -> dict:
    return {'writer': WRITER, 'shape': shape_name, 'dims': PRESETS[shape_name]._asdict(), 'seed': seed,
            'dtype': dtype}


def is_complete(folder: Path, shape_name: str, seed: int, dtype: str) -> bool:
    """The folder was written completely by this script with these arguments."""
    try:
        return json.loads((folder / STAMP).read_text()) == stamp(shape_name, seed, dtype)
    except (OSError, ValueError):
        return False


def write_folder(folder: Path, shape_name: str, seed: int, dtype: str, max_shard_gib: float, jobs: int):
    shape = PRESETS[shape_name]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    files = write_weights(folder, shape, seed, dtype, int(max_shard_gib * (1 << 30)), jobs)
    write_config(folder, shape, dtype)
    write_tokenizer(folder, shape.vocab)
    write_json(folder / STAMP, stamp(shape_name, seed, dtype))
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', required=True, type=Path, help='the folder (replaced if it exists)')
    ap.add_argument('--shape', default='tiny', choices=sorted(PRESETS),
                    help='llama-7b: dim 4096, 32 layers, 32 heads, hidden 11008, vocab 32000; '
                         'tiny: dim 256, 2 layers, 4 heads, hidden 688, vocab 32000')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--dtype', default='float16', choices=sorted(ST_DTYPE))
    ap.add_argument('--max-shard-gib', type=float, default=4.0)
    ap.add_argument('--jobs', type=int, default=min(16, len(os.sched_getaffinity(0))),
                    help='processes drawing tensors (default: the usable cores, at most 16)')
    ap.add_argument('--reuse', action='store_true',
                    help='keep the folder when it is complete and was written with these arguments')
    args = ap.parse_args()
    if args.reuse and is_complete(args.out, args.shape, args.seed, args.dtype):
        print(f'{args.out}: complete ({args.shape}, seed {args.seed}, {args.dtype}), kept')
        return
    files = write_folder(args.out, args.shape, args.seed, args.dtype, args.max_shard_gib, max(1, args.jobs))
    size = sum(os.path.getsize(args.out / f) for f in files)
    print(f'{args.out}: {args.shape} (seed {args.seed}, {args.dtype}), {len(files)} safetensors file(s), '
          f'{size} bytes of weights')


if __name__ == '__main__':
    main()
