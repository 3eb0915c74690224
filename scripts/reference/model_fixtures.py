#!/usr/bin/env python3
"""Reference fixtures for Flover's model loaders and decoder.

Writes, under --out, one folder per architecture Flover serves: a tiny random Hugging
Face checkpoint (config.json, generation_config.json, safetensors) and reference.json,
what Hugging Face `transformers` computes on it (prompts, greedy continuations, logits).
With --gguf it also converts the `tinyllama` folder to GGUF with llama.cpp's own
converter. tests/fixtures/models/README.md describes the layout; the tests read the
files and never run Python.

Environment (scripts/reference/setup-venv.sh [--gguf] does all of it):
    apt-get install -y python3-torch python3-protobuf   # Debian bookworm: torch 1.13.1
    /usr/bin/python3 -m venv --system-site-packages build/venv
    build/venv/bin/pip install numpy==1.24.2 protobuf==4.21.12 transformers==4.44.2 \
        tokenizers==0.19.1 huggingface-hub==0.36.2 safetensors==0.8.0 sentencepiece==0.2.0
  and for --gguf, the llama.cpp that PyPI's llama-cpp-python 0.3.36 source
  distribution vendors (convert_hf_to_gguf.py and gguf-py 0.19.0, used in place, not
  installed: it asks for numpy 2, which Debian's torch 1.13 cannot use):
    build/venv/bin/pip download --no-deps --no-binary :all: -d build/llama-cpp-src \
        llama-cpp-python==0.3.36
    tar -xzf build/llama-cpp-src/llama_cpp_python-0.3.36.tar.gz -C build/llama-cpp-src

Usage (the fixtures as committed):
    build/venv/bin/python scripts/reference/model_fixtures.py --out tests/fixtures/models \
        --gguf --llama-cpp build/llama-cpp-src/llama_cpp_python-0.3.36/vendor/llama.cpp
  --only NAME... regenerates some folders; regenerating tinyllama deletes its GGUF files,
  so give --gguf then too. Regenerating qwen2 deletes its tokenizer, GGUF files and text
  references: run qwen2_text_fixtures.py after it. tok512.model is read from $FLOVER_MODELS_DIR/stories260K,
  found as scripts/models-dir.sh finds it (--models-dir overrides).

Deterministic: seeds are fixed and torch runs on one thread, so a rerun with the same
package versions rewrites byte-identical files (checked with sha256sum).

How the numbers are made: each model is built in fp32 with a fixed seed, every weight
is rounded to the storage dtype (bf16/fp16/fp32) and saved; the references are then
computed by the model re-loaded from the saved folder in fp32 with eager attention. So a
reader that widens the stored values to fp32 sees exactly the weights the references
were computed with.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (GenerationConfig, GPTJConfig, GPTJForCausalLM, LlamaConfig,
                          LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)

VOCAB = 512
BOS, EOS = 1, 2
MIN_PROMPT_ID = 3            # ids 0..2 are unk/bos/eos in the tok512 vocabulary
N_NEW = 16                   # tokens generated per prompt
PROMPT_LENGTHS = (12, 1, 40, 5)
LONG_PROMPT_LENGTH = 200     # llama3 only: beyond original_max_position_embeddings (64)
NORM_STD = 0.1               # norm weights ~ 1 + N(0, NORM_STD), biases ~ N(0, BIAS_STD)
BIAS_STD = 0.1
# A greedy step whose best two logits are closer than this is called a near tie: an fp32
# engine that sums in another order could pick the other token. The prompts are drawn
# again (next seed) until no greedy step of any prompt is a near tie.
MIN_ARGMAX_MARGIN = 1e-3
TOKENIZER_MODEL = 'stories260K/tok512.model'   # under FLOVER_MODELS_DIR / --models-dir

STORAGE = {'float32': torch.float32, 'float16': torch.float16, 'bfloat16': torch.bfloat16}

COMMON_LLAMA = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=4, hidden_act='silu',
                    max_position_embeddings=256, bos_token_id=BOS, eos_token_id=EOS,
                    initializer_range=0.3)

# name -> how to build it. `seed` seeds the weights; `tokenizer` copies tok512 into the
# folder (SentencePiece tokenizer.model + the fast tokenizer.json transformers derives).
MODELS = {
    'llama2': dict(
        cls=LlamaForCausalLM, config_cls=LlamaConfig, dtype='float32', seed=1001,
        tokenizer=True,
        config=dict(COMMON_LLAMA, num_key_value_heads=4, rope_theta=10000.0,
                    rms_norm_eps=1e-5, tie_word_embeddings=False)),
    'tinyllama': dict(
        cls=LlamaForCausalLM, config_cls=LlamaConfig, dtype='float16', seed=1002,
        tokenizer=True,
        config=dict(COMMON_LLAMA, num_key_value_heads=2, rope_theta=10000.0,
                    rms_norm_eps=1e-5, tie_word_embeddings=False)),
    # hidden 48 = 4 heads x 12: the 6 rotary frequencies of head_dim 12 at theta 5e5 fall
    # in all three llama3 bands (original 64 positions: wavelength < 16 kept, 16..64
    # interpolated, > 64 divided by the factor 8).
    'llama3': dict(
        cls=LlamaForCausalLM, config_cls=LlamaConfig, dtype='bfloat16', seed=1003,
        tokenizer=False, max_shard_size='64KB', eos=[EOS, 3],
        config=dict(COMMON_LLAMA, hidden_size=48, intermediate_size=96,
                    num_key_value_heads=2, rope_theta=500000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=True,
                    rope_scaling={'rope_type': 'llama3', 'factor': 8.0,
                                  'low_freq_factor': 1.0, 'high_freq_factor': 4.0,
                                  'original_max_position_embeddings': 64})),
    'mistral': dict(
        cls=MistralForCausalLM, config_cls=MistralConfig, dtype='bfloat16', seed=1004,
        tokenizer=False,
        config=dict(COMMON_LLAMA, num_key_value_heads=2, rope_theta=10000.0,
                    rms_norm_eps=1e-5, sliding_window=128, tie_word_embeddings=False)),
    'qwen2': dict(
        cls=Qwen2ForCausalLM, config_cls=Qwen2Config, dtype='bfloat16', seed=1005,
        tokenizer=False,
        config=dict(COMMON_LLAMA, num_key_value_heads=2, rope_theta=10000.0,
                    rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False)),
    'gptj': dict(
        cls=GPTJForCausalLM, config_cls=GPTJConfig, dtype='float16', seed=1006,
        tokenizer=False,
        config=dict(vocab_size=VOCAB, n_positions=256, n_embd=32, n_layer=2, n_head=4,
                    rotary_dim=4, n_inner=128, activation_function='gelu_new',
                    layer_norm_epsilon=1e-5, initializer_range=0.3, bos_token_id=BOS,
                    eos_token_id=EOS, tie_word_embeddings=False)),
}


# Decode steps of prompt 0 whose logits are kept (the prefill and 2 decode steps): all
# 16 would triple the fixtures' size for little more coverage.
STEP_LOGITS = 3


def fmt(x):
    """6 significant digits, valid JSON."""
    if not math.isfinite(x):
        raise ValueError(f'non-finite logit {x}')
    return format(x, '.6g')


def vec(v):
    return '[' + ','.join(fmt(x) for x in v) + ']'


def ids(v):
    return '[' + ','.join(str(int(x)) for x in v) + ']'


def write_reference(path, ref):
    """JSON with one vector per line, so a diff shows which one changed."""
    out = ['{']
    items = list(ref.items())
    for i, (key, value) in enumerate(items):
        comma = ',' if i + 1 < len(items) else ''
        if isinstance(value, str):
            out.append(f'  {json.dumps(key)}: {json.dumps(value)}{comma}')
            continue
        rows = [vec(r) if key.endswith('logits') else ids(r) for r in value]
        out.append(f'  {json.dumps(key)}: [')
        out.append(',\n'.join('    ' + r for r in rows))
        out.append(f'  ]{comma}')
    out.append('}')
    Path(path).write_text('\n'.join(out) + '\n')


def randomize(model, seed):
    """Initialise in a fixed order: matrices ~ N(0, initializer_range) (transformers'
    own init, already done), then every 1-D tensor: norm weights ~ 1 + N(0, NORM_STD)
    and biases ~ N(0, BIAS_STD), so a loader that drops or swaps one changes the output."""
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.dim() != 1:
                continue
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith('.bias'):
                p.copy_(noise * BIAS_STD)
            else:
                p.copy_(1.0 + noise * NORM_STD)


def build(name, spec, folder):
    torch.manual_seed(spec['seed'])
    config = spec['config_cls'](**spec['config'])
    config._attn_implementation = 'eager'
    model = spec['cls'](config).eval()
    randomize(model, spec['seed'])
    # Biases the architecture has but transformers zeroes (qwen2's q/k/v, gptj's
    # fc_in/fc_out/lm_head) were just drawn: check that none stayed zero.
    for pname, p in model.named_parameters():
        if pname.endswith('.bias') and not p.abs().gt(0).all():
            raise AssertionError(f'{name}: bias {pname} has zeros')
    model.to(STORAGE[spec['dtype']])
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    eos = spec.get('eos', EOS)
    model.generation_config = GenerationConfig(bos_token_id=BOS, eos_token_id=eos)
    kwargs = {}
    if 'max_shard_size' in spec:
        kwargs['max_shard_size'] = spec['max_shard_size']
    model.save_pretrained(folder, safe_serialization=True, **kwargs)
    return model


def load_fp32(spec, folder):
    return spec['cls'].from_pretrained(folder, torch_dtype=torch.float32,
                                       attn_implementation='eager').eval()


def check_exact(name, stored, loaded):
    """The fp32 model the references use holds exactly the stored values."""
    s = dict(stored.named_parameters())
    for pname, p in loaded.named_parameters():
        if not torch.equal(s[pname].float(), p):
            raise AssertionError(f'{name}: {pname} differs after reload')


def greedy(model, prompt):
    """transformers' greedy continuation: exactly N_NEW tokens, no eos stopping, and
    the raw logits each token was picked from."""
    # generate() falls back to the model's eos ids where the config passed has none.
    model.generation_config = GenerationConfig(bos_token_id=BOS)
    cfg = GenerationConfig(do_sample=False, max_new_tokens=N_NEW, eos_token_id=None,
                           pad_token_id=0, bos_token_id=BOS)
    inp = torch.tensor([prompt], dtype=torch.long)
    with torch.no_grad():
        out = model.generate(inp, attention_mask=torch.ones_like(inp), generation_config=cfg,
                             output_logits=True, return_dict_in_generate=True)
    new = out.sequences[0, len(prompt):].tolist()
    logits = torch.stack([l[0] for l in out.logits]).float()
    assert len(new) == N_NEW and logits.shape == (N_NEW, VOCAB), (len(new), logits.shape)
    assert logits.argmax(-1).tolist() == new, 'greedy is not argmax of its logits'
    # The same logits from one uncached forward over the whole sequence.
    with torch.no_grad():
        full = model(out.sequences[:, :-1]).logits[0, len(prompt) - 1:].float()
    drift = (full - logits).abs().max().item()
    assert drift < 1e-4, f'cached and uncached logits differ by {drift}'
    return new, logits


def margin(logits):
    top2 = logits.topk(2, dim=-1).values
    return (top2[:, 0] - top2[:, 1]).min().item()


def draw_prompts(seed, lengths):
    g = np.random.default_rng(seed)
    prompts = []
    for i, n in enumerate(lengths):
        p = g.integers(MIN_PROMPT_ID, VOCAB, size=n).tolist()
        if i == 0:
            p[0] = BOS
        prompts.append(p)
    return prompts


def references(name, spec, model):
    """Prompts, greedy continuations and logits; prompts are redrawn until no greedy step
    is a near tie (see MIN_ARGMAX_MARGIN)."""
    long = name == 'llama3'
    for attempt in range(50):
        lengths = PROMPT_LENGTHS + ((LONG_PROMPT_LENGTH,) if long else ())
        prompts = draw_prompts(spec['seed'] * 100 + attempt, lengths)
        runs = [greedy(model, p) for p in prompts]
        m = min(margin(l) for _, l in runs)
        if m >= MIN_ARGMAX_MARGIN:
            break
        print(f'  {name}: prompt set {attempt} has a near tie ({m:.2e}), redrawing')
    else:
        raise RuntimeError(f'{name}: no prompt set without near ties')
    outs = [new for new, _ in runs]
    flat = [t for new in outs[:len(PROMPT_LENGTHS)] for t in new]
    if len(set(flat)) < 8 or any(len(set(new)) == 1 for new in outs):
        raise RuntimeError(f'{name}: degenerate greedy continuations {outs}')
    n = len(PROMPT_LENGTHS)
    ref = {
        'architecture': type(model).__name__,
        'dtype': spec['dtype'],
        'prompts': prompts[:n],
        'greedy': outs[:n],
        'logits': [runs[i][1][0].tolist() for i in range(n)],
        'step_logits': runs[0][1][:STEP_LOGITS].tolist(),
    }
    if long:
        ref['long_prompts'] = prompts[n:]
        ref['long_greedy'] = outs[n:]
        ref['long_logits'] = [runs[i][1][0].tolist() for i in range(n, len(prompts))]
    stats = dict(min_margin=m, distinct=len(set(flat)), attempt=attempt)
    return ref, stats


def check_scaling_matters(spec, folder, ref):
    """The long prompt's logits change clearly if rope_scaling is dropped, so a reader
    that ignores it fails the long-context check."""
    config = spec['config_cls'].from_pretrained(folder)
    config.rope_scaling = None
    plain = spec['cls'].from_pretrained(folder, config=config, torch_dtype=torch.float32,
                                        attn_implementation='eager').eval()
    with torch.no_grad():
        logits = plain(torch.tensor(ref['long_prompts'])).logits[:, -1]
    diff = (logits - torch.tensor(ref['long_logits'])).abs().max().item()
    assert diff > 0.1, f'rope_scaling changes the long logits by only {diff}'
    print(f'  without rope_scaling the long logits move by up to {diff:.3g}')


def add_tokenizer(folder, models_dir):
    """tok512 (SentencePiece BPE, 512 pieces) as tokenizer.model, plus the files
    transformers' LlamaTokenizerFast derives from it (tokenizer.json,
    tokenizer_config.json, special_tokens_map.json)."""
    import sentencepiece
    from transformers import LlamaTokenizerFast
    src = Path(models_dir) / TOKENIZER_MODEL
    tok = LlamaTokenizerFast(vocab_file=str(src), legacy=False, add_prefix_space=True,
                             from_slow=True)
    assert len(tok) == VOCAB, len(tok)
    assert tok.bos_token_id == BOS and tok.eos_token_id == EOS
    sp = sentencepiece.SentencePieceProcessor(model_file=str(src))
    # tokenizer.json encodes as SentencePiece does, except that SentencePiece also
    # collapses runs of spaces (its remove_extra_whitespaces), which these texts avoid.
    for text in ('Sara', 'The cat sat on the mat.', 'Ben had a red car',
                 'Once upon a time, there was a little girl.\nShe said: "1 ünï 日本!"'):
        assert tok(text).input_ids == [BOS] + sp.encode(text), text
    assert tok('Sara').input_ids == [1, 301, 295, 412]    # as stories260K's README says
    tok.save_pretrained(folder, legacy_format=False)
    shutil.copyfile(src, Path(folder) / 'tokenizer.model')


def tidy_json(folder):
    """Drop the name of the folder it was saved from, where transformers writes it."""
    for p in Path(folder).glob('*.json'):
        if p.name == 'reference.json':
            continue
        d = json.loads(p.read_text())
        if isinstance(d, dict) and d.pop('_name_or_path', None) is not None:
            p.write_text(json.dumps(d, indent=2, sort_keys=True) + '\n')


def make_folder(name, out, models_dir):
    spec = MODELS[name]
    folder = out / name
    stored = build(name, spec, folder)
    if spec['tokenizer']:
        add_tokenizer(folder, models_dir)
    tidy_json(folder)
    model = load_fp32(spec, folder)
    check_exact(name, stored, model)
    ref, stats = references(name, spec, model)
    if 'rope_scaling' in spec['config']:
        check_scaling_matters(spec, folder, ref)
    write_reference(folder / 'reference.json', ref)
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(f'{name}: {size} bytes, greedy margin >= {stats["min_margin"]:.3g}, '
          f'{stats["distinct"]} distinct greedy ids, prompt set {stats["attempt"]}')
    for g in ref['greedy']:
        print('   ', g)


def run_gguf(out, llama_cpp):
    """tinyllama (stored fp16) -> model-f16.gguf (the same values) and model-q8_0.gguf,
    by llama.cpp's convert_hf_to_gguf.py (through gguf_convert.py, for torch 1.13);
    then checks with gguf-py's dequantization that every GGUF tensor is the folder's
    tensor (q/k rows permuted as the converter does)."""
    folder = out / 'tinyllama'
    llama_cpp = Path(llama_cpp).resolve()
    sys.path.insert(1, str(llama_cpp / 'gguf-py'))    # the gguf-py that converter uses
    shim = Path(__file__).resolve().parent / 'gguf_convert.py'
    for outtype in ('f16', 'q8_0'):
        dst = folder / f'model-{outtype}.gguf'
        cmd = [sys.executable, str(shim), str(llama_cpp / 'convert_hf_to_gguf.py'),
               str(folder), '--outtype', outtype, '--outfile', str(dst)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        check_gguf(folder, dst)


def check_gguf(folder, path, permuted=True):
    """Every tensor of GGUF `path` is the folder's, exactly for F32/F16/BF16 ones and
    within Q8_0's step otherwise, and every tensor of the folder is in it. `permuted`:
    the converter permuted the attn_q/attn_k rows into adjacent rotary pairs (it does
    for architecture llama, not for qwen2)."""
    import gguf
    from gguf.quants import dequantize
    from safetensors.torch import load_file    # numpy has no bfloat16
    cfg = json.loads((folder / 'config.json').read_text())
    st = {}
    for f in sorted(folder.glob('*.safetensors')):
        st.update({k: v.float().numpy() for k, v in load_file(str(f)).items()})

    def permute(w, n_head):   # convert_hf_to_gguf's LlamaModel.permute
        return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
                .swapaxes(1, 2).reshape(w.shape))

    names = {'token_embd.weight': 'model.embed_tokens.weight',
             'output.weight': 'lm_head.weight', 'output_norm.weight': 'model.norm.weight'}
    per_layer = {'attn_norm': 'input_layernorm', 'ffn_norm': 'post_attention_layernorm',
                 'attn_q': 'self_attn.q_proj', 'attn_k': 'self_attn.k_proj',
                 'attn_v': 'self_attn.v_proj', 'attn_output': 'self_attn.o_proj',
                 'ffn_gate': 'mlp.gate_proj', 'ffn_up': 'mlp.up_proj',
                 'ffn_down': 'mlp.down_proj'}
    for i in range(cfg['num_hidden_layers']):
        for g, h in per_layer.items():
            names[f'blk.{i}.{g}.weight'] = f'model.layers.{i}.{h}.weight'
            names[f'blk.{i}.{g}.bias'] = f'model.layers.{i}.{h}.bias'     # qwen2's q/k/v
    exact = (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32,
             gguf.GGMLQuantizationType.BF16)
    reader = gguf.GGUFReader(str(path))
    worst = 0.0
    seen = set()
    for t in reader.tensors:
        hf = names[t.name]
        seen.add(hf)
        want = st[hf]
        if permuted and t.name.endswith('attn_q.weight'):
            want = permute(want, cfg['num_attention_heads'])
        elif permuted and t.name.endswith('attn_k.weight'):
            want = permute(want, cfg['num_key_value_heads'])
        got = dequantize(t.data, t.tensor_type).reshape(want.shape)
        err = float(np.abs(got - want).max())
        if t.tensor_type in exact:
            assert err == 0.0, f'{path.name}: {t.name} not exact ({err})'
        rel = err / max(float(np.abs(want).max()), 1e-30)
        # Q8_0: 8-bit steps of max|block| / 127, rounded to nearest, scale in fp16.
        assert rel < 0.005, f'{path.name}: {t.name} off by {rel:.3g} of its range'
        worst = max(worst, rel)
    assert seen == set(st), f'{path.name}: tensors missing: {set(st) - seen}'
    types = sorted({t.tensor_type.name for t in reader.tensors})
    print(f'  {path.name}: {path.stat().st_size} bytes, {len(reader.tensors)} tensors '
          f'({", ".join(types)}), max |err| / max |w| = {worst:.3g}')


def models_dir():
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, FLOVER_MODELS_OPTIONAL='1')   # never download from here
    out = subprocess.run(['bash', '-c', '. scripts/models-dir.sh && echo "$FLOVER_MODELS_DIR"'],
                         cwd=repo, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True, type=Path)
    ap.add_argument('--only', nargs='*', choices=sorted(MODELS), help='default: all')
    ap.add_argument('--models-dir', help='holds stories260K/tok512.model; default: '
                    '$FLOVER_MODELS_DIR as scripts/models-dir.sh sets it')
    ap.add_argument('--gguf', action='store_true', help='also write tinyllama/*.gguf')
    ap.add_argument('--llama-cpp', help="llama.cpp source tree (convert_hf_to_gguf.py)")
    args = ap.parse_args()
    if not args.models_dir:
        args.models_dir = models_dir()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f'transformers {transformers.__version__}, torch {torch.__version__}, '
          f'numpy {np.__version__}')
    for name in args.only or MODELS:
        make_folder(name, args.out, args.models_dir)
    if args.gguf:
        if not args.llama_cpp:
            ap.error('--gguf needs --llama-cpp')
        run_gguf(args.out, args.llama_cpp)
    total = sum(p.stat().st_size for p in args.out.rglob('*') if p.is_file())
    print(f'total under {args.out}: {total} bytes')


if __name__ == '__main__':
    main()
