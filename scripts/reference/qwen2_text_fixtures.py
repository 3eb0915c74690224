#!/usr/bin/env python3
"""Text fixtures for the qwen2 reference checkpoint (tests/fixtures/models/qwen2).

model_fixtures.py makes the folder's weights and reference.json, whose prompts are token
ids. This script adds, to the same folder and without touching those files, what serving
the model from text needs and what Flover's GGUF loader is checked with:

  tokenizer.json         a Qwen2-style byte-level BPE tokenizer (NFC, Qwen2's
                         pre-tokenizer regex Split + ByteLevel, ByteLevel decoder) trained
                         by `tokenizers` on tokenizer_fixtures.py's corpus to exactly the
                         model's 512 ids: <|im_start|> 0, <|endoftext|> 1 (config.json's
                         bos_token_id), <|im_end|> 2 (its eos_token_id), the 256 bytes,
                         253 merges
  tokenizer_config.json  Qwen2-Instruct's settings: no BOS token, EOS <|im_end|>, pad
                         <|endoftext|>, and its chat template
                         (tests/fixtures/chat_templates/qwen2.jinja)
  model-bf16.gguf        the folder converted by llama.cpp's convert_hf_to_gguf.py
  model-q8_0.gguf        (bf16: the folder's values exactly; q8_0: quantized), the
                         pre-tokenizer named "qwen2" through gguf_convert.py
  text_reference.json    text prompts, their ids (tokenizers and transformers agree),
                         transformers' 16 greedy tokens after each and their text

Usage (after model_fixtures.py, which deletes these files when it rewrites qwen2/):
    build/venv/bin/python scripts/reference/qwen2_text_fixtures.py \\
        --folder tests/fixtures/models/qwen2 \\
        --llama-cpp build/llama-cpp-src/llama_cpp_python-0.3.36/vendor/llama.cpp
The environment is model_fixtures.py's (setup-venv.sh --gguf). Deterministic: a rerun
rewrites byte-identical files.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tokenizers
import torch
import transformers
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_fixtures  # noqa: E402  (this folder's; its greedy() and checks are reused)
import tokenizer_fixtures  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# Qwen2-Instruct's chat template, without the file's final newline (as the model's
# tokenizer_config.json has it).
CHAT_TEMPLATE = (REPO / 'tests/fixtures/chat_templates/qwen2.jinja').read_text(encoding='utf-8').removesuffix('\n')
SPECIALS = ['<|im_start|>', '<|endoftext|>', '<|im_end|>']   # ids 0, 1, 2, in this order
PRE_TOKENIZER = 'qwen2'    # GGUF tokenizer.ggml.pre
GGUF_TYPES = ('bf16', 'q8_0')
MIN_DISTINCT = 8

# Candidate prompts per kind; the first of each kind whose greedy continuation has no
# near tie (model_fixtures.MIN_ARGMAX_MARGIN), no special token and at least
# MIN_DISTINCT different ids is kept.
CANDIDATES = {
    'ascii': ['Once upon a time, there was a little girl named Lily.',
              'The cat sat on the mat.',
              'def encode(self, text):'],
    'unicode': ['東京は日本の首都です。Café naïve résumé 😀👍🏽',
                '你好，世界！Привет 🎉 ✨',
                'Emoji: 😀 👨‍👩‍👧‍👦 🇫🇷 ❤️ — 東京, Straße, naïve',
                '我爱北京天安门 👍🏽 Ça coûte 3,50 €.',
                'Straße über 100 Bäume 日本語'],
    'digits': ['Numbers 12345 6789 and 3.14159, 2024-01-15',
               'Call +1 (555) 010-9999 at 12:30:45',
               '1,234,567.89 - 42 = 1234525.89'],
    'whitespace': ['Tabs\tand\tnewlines\n\nand   multiple   spaces    here.\r\n',
                   '    indented code\n        more indented\n',
                   'a    b\t\tc \n d'],
    'chat': ['<|im_start|>user\nHello, who are you?<|im_end|>\n<|im_start|>assistant\n',
             '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n'],
}


def build_tokenizer(vocab):
    split = pre_tokenizers.Split(Regex(tokenizer_fixtures.QWEN2_PATTERN), behavior='isolated', invert=False)
    pre = pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = tokenizer_fixtures.train_byte_level(pre, normalizers.NFC(), vocab, SPECIALS)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    assert tok.get_vocab_size(with_added_tokens=True) == vocab, tok.get_vocab_size(with_added_tokens=True)
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


def write_tokenizer(folder, tok, config):
    with open(folder / 'tokenizer.json', 'w', encoding='utf-8') as f:
        json.dump(json.loads(tok.to_str()), f, ensure_ascii=False, separators=(',', ':'))
    tokenizer_config = {
        'add_prefix_space': False,
        'bos_token': None,
        'chat_template': CHAT_TEMPLATE,
        'clean_up_tokenization_spaces': False,
        'eos_token': SPECIALS[config['eos_token_id']],
        'errors': 'replace',
        'model_max_length': config['max_position_embeddings'],
        'pad_token': SPECIALS[config['bos_token_id']],
        'split_special_tokens': False,
        'tokenizer_class': 'Qwen2Tokenizer',
        'unk_token': None,
    }
    with open(folder / 'tokenizer_config.json', 'w', encoding='utf-8') as f:
        json.dump(tokenizer_config, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write('\n')


def convert(folder, llama_cpp):
    shim = Path(__file__).resolve().parent / 'gguf_convert.py'
    for outtype in GGUF_TYPES:
        dst = folder / f'model-{outtype}.gguf'
        cmd = [sys.executable, str(shim), '--pre-tokenizer', PRE_TOKENIZER,
               str(llama_cpp / 'convert_hf_to_gguf.py'), str(folder), '--outtype', outtype,
               '--outfile', str(dst)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        model_fixtures.check_gguf(folder, dst, permuted=False)
        check_gguf_metadata(dst, folder)


def check_gguf_metadata(path, folder):
    """The architecture, shape and vocabulary keys the loader reads."""
    import gguf
    reader = gguf.GGUFReader(str(path))

    def value(key):
        field = reader.fields[key]
        if field.types[0] == gguf.GGUFValueType.STRING:
            return bytes(field.parts[field.data[0]]).decode('utf-8')
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            return len(field.data)
        return field.parts[field.data[0]].tolist()[0]

    cfg = json.loads((folder / 'config.json').read_text())
    want = {
        'general.architecture': 'qwen2',
        'qwen2.context_length': cfg['max_position_embeddings'],
        'qwen2.embedding_length': cfg['hidden_size'],
        'qwen2.feed_forward_length': cfg['intermediate_size'],
        'qwen2.block_count': cfg['num_hidden_layers'],
        'qwen2.attention.head_count': cfg['num_attention_heads'],
        'qwen2.attention.head_count_kv': cfg['num_key_value_heads'],
        'tokenizer.ggml.model': 'gpt2',
        'tokenizer.ggml.pre': PRE_TOKENIZER,
        'tokenizer.ggml.tokens': cfg['vocab_size'],
        'tokenizer.ggml.bos_token_id': cfg['bos_token_id'],
        'tokenizer.ggml.eos_token_id': cfg['eos_token_id'],
        'tokenizer.ggml.add_bos_token': False,
        'tokenizer.chat_template': CHAT_TEMPLATE,
    }
    for key, expected in want.items():
        got = value(key)
        assert got == expected, f'{path.name}: {key} = {got!r}, expected {expected!r}'
    for key, expected in (('qwen2.rope.freq_base', cfg['rope_theta']),
                          ('qwen2.attention.layer_norm_rms_epsilon', cfg['rms_norm_eps'])):
        assert value(key) == np.float32(expected), (key, value(key))
    assert 'output.weight' not in {t.name for t in reader.tensors}, 'tied embeddings written out'
    types = value('tokenizer.ggml.token_type')
    assert types == cfg['vocab_size'], types


def text_references(folder, tok, config):
    """Per kind, the first candidate prompt that is no near tie; its ids as tokenizers and
    transformers encode it, transformers' greedy tokens and their text."""
    auto = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = model_fixtures.load_fp32(model_fixtures.MODELS['qwen2'], folder)
    specials = set(range(len(SPECIALS)))
    out, margins = [], []
    for kind, texts in CANDIDATES.items():
        for text in texts:
            ids = tok.encode(text, add_special_tokens=False).ids
            assert tok.encode(text).ids == ids, f'{text!r}: the post-processor adds tokens'
            assert auto(text).input_ids == ids, f'{text!r}: transformers encodes {auto(text).input_ids}, not {ids}'
            new, logits = model_fixtures.greedy(model, ids)
            margin = model_fixtures.margin(logits)
            if margin < model_fixtures.MIN_ARGMAX_MARGIN or specials & set(new) or len(set(new)) < MIN_DISTINCT:
                print(f'  {kind}: {text!r} skipped (margin {margin:.2e}, greedy {new})')
                continue
            decoded = tok.decode(new, skip_special_tokens=False)
            assert auto.decode(new, skip_special_tokens=False) == decoded, text
            out.append({'kind': kind, 'text': text, 'ids': ids, 'greedy': new, 'greedy_text': decoded})
            margins.append(margin)
            print(f'  {kind}: {len(ids)} ids, greedy margin {margin:.3g}, text {decoded!r}')
            break
        else:
            raise RuntimeError(f'no {kind} prompt without a near tie')
    assert max(len(r['ids']) for r in out) + model_fixtures.N_NEW <= config['max_position_embeddings']
    return out, min(margins)


def write_text_reference(path, refs):
    """One prompt per line, so a diff shows which one changed."""
    head = {'tokenizers_version': tokenizers.__version__, 'transformers_version': transformers.__version__}
    lines = ['{'] + [f'  {json.dumps(k)}: {json.dumps(v)},' for k, v in head.items()] + ['  "prompts": [']
    lines.append(',\n'.join('    ' + json.dumps(r, ensure_ascii=False, separators=(', ', ': ')) for r in refs))
    lines += ['  ]', '}']
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--folder', required=True, type=Path, help='tests/fixtures/models/qwen2')
    ap.add_argument('--llama-cpp', required=True, type=Path, help='llama.cpp source tree (convert_hf_to_gguf.py)')
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    folder, llama_cpp = args.folder, args.llama_cpp.resolve()
    sys.path.insert(1, str(llama_cpp / 'gguf-py'))    # the gguf-py the converter uses
    config = json.loads((folder / 'config.json').read_text())
    generation = json.loads((folder / 'generation_config.json').read_text())
    assert config['architectures'] == ['Qwen2ForCausalLM'], config['architectures']
    assert (generation['bos_token_id'], generation['eos_token_id']) == (config['bos_token_id'], config['eos_token_id'])
    assert SPECIALS[config['bos_token_id']] == '<|endoftext|>' and SPECIALS[config['eos_token_id']] == '<|im_end|>'

    tok = build_tokenizer(config['vocab_size'])
    write_tokenizer(folder, tok, config)
    tok = Tokenizer.from_file(str(folder / 'tokenizer.json'))   # the references are of the file as written
    convert(folder, llama_cpp)
    refs, margin = text_references(folder, tok, config)
    write_text_reference(folder / 'text_reference.json', refs)
    names = ['tokenizer.json', 'tokenizer_config.json', 'text_reference.json'] + [f'model-{t}.gguf' for t in GGUF_TYPES]
    sizes = {n: (folder / n).stat().st_size for n in names}
    print(f'{folder}: {sizes}, {sum(sizes.values())} bytes added; greedy margin >= {margin:.3g}')


if __name__ == '__main__':
    main()
