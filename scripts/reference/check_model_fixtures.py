#!/usr/bin/env python3
"""Independent check of tests/fixtures/models: a plain float64 numpy forward pass,
written from the README's description of each architecture (not from transformers'
code), must reproduce every reference.json's logits and greedy tokens.

It shows that the README says enough to implement the decoder, and how close an
implementation other than transformers' lands (printed, not a tolerance).

Usage: build/venv/bin/python scripts/reference/check_model_fixtures.py [tests/fixtures/models]
Exit status 1 if a logit differs by more than 1e-3 or a greedy token differs.
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.torch import load_file   # numpy has no bfloat16


def load_weights(folder):
    w = {}
    for f in sorted(folder.glob('*.safetensors')):
        w.update({k: v.double().numpy() for k, v in load_file(str(f)).items()})
    return w


def rms_norm(x, g, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def layer_norm(x, g, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b


def causal_attention(q, k, v, n_head, n_kv_head, head_dim):
    """q: [T, n_head * head_dim], k and v: [T, n_kv_head * head_dim]."""
    n = q.shape[0]
    q = q.reshape(n, n_head, head_dim)
    k = k.reshape(n, n_kv_head, head_dim)
    v = v.reshape(n, n_kv_head, head_dim)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    out = np.zeros((n, n_head, head_dim))
    for h in range(n_head):
        kv = h // (n_head // n_kv_head)
        s = q[:, h] @ k[:, kv].T / math.sqrt(head_dim) + mask
        p = np.exp(s - s.max(-1, keepdims=True))
        out[:, h] = (p / p.sum(-1, keepdims=True)) @ v[:, kv]
    return out.reshape(n, n_head * head_dim)


def llama_inv_freq(c, head_dim):
    inv = c.get('rope_theta', 10000.0) ** (-np.arange(0, head_dim, 2) / head_dim)
    rs = c.get('rope_scaling')
    if not rs:
        return inv
    assert rs.get('rope_type', rs.get('type')) == 'llama3', rs
    orig, lo, hi = rs['original_max_position_embeddings'], rs['low_freq_factor'], rs['high_freq_factor']
    out = []
    for f in inv:
        wavelen = 2 * math.pi / f
        if wavelen < orig / hi:
            out.append(f)
        elif wavelen > orig / lo:
            out.append(f / rs['factor'])
        else:
            s = (orig / wavelen - lo) / (hi - lo)
            out.append((1 - s) * f / rs['factor'] + s * f)
    return np.array(out)


def llama_forward(c, w, ids):
    """Llama, Mistral and Qwen2 (the latter's q/k/v biases where the file has them)."""
    n_head, n_kv = c['num_attention_heads'], c['num_key_value_heads']
    hd = c['hidden_size'] // n_head
    eps = c['rms_norm_eps']
    n = len(ids)
    angle = np.arange(n)[:, None, None] * llama_inv_freq(c, hd)[None, None, :]
    cos, sin = np.cos(angle), np.sin(angle)

    def rope(x, heads):   # half-split pairs (i, i + hd/2)
        x = x.reshape(n, heads, hd)
        a, b = x[..., :hd // 2], x[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], -1).reshape(n, -1)

    x = w['model.embed_tokens.weight'][ids]
    for layer in range(c['num_hidden_layers']):
        p = f'model.layers.{layer}.'

        def linear(name, h):
            y = h @ w[p + name + '.weight'].T
            return y + w[p + name + '.bias'] if p + name + '.bias' in w else y

        h = rms_norm(x, w[p + 'input_layernorm.weight'], eps)
        q = rope(linear('self_attn.q_proj', h), n_head)
        k = rope(linear('self_attn.k_proj', h), n_kv)
        v = linear('self_attn.v_proj', h)
        x = x + linear('self_attn.o_proj', causal_attention(q, k, v, n_head, n_kv, hd))
        h = rms_norm(x, w[p + 'post_attention_layernorm.weight'], eps)
        gate = linear('mlp.gate_proj', h)
        x = x + linear('mlp.down_proj', gate / (1 + np.exp(-gate)) * linear('mlp.up_proj', h))
    x = rms_norm(x, w['model.norm.weight'], eps)
    return x @ w.get('lm_head.weight', w['model.embed_tokens.weight']).T


def gptj_forward(c, w, ids):
    n_head = c['n_head']
    hd = c['n_embd'] // n_head
    rd = c['rotary_dim']
    eps = c['layer_norm_epsilon']
    n = len(ids)
    angle = np.arange(n)[:, None, None] * (10000.0 ** (-np.arange(0, rd, 2) / rd))[None, None, :]
    cos, sin = np.cos(angle), np.sin(angle)

    def rope(x):   # adjacent pairs (2i, 2i+1) of the first rotary_dim dims of each head
        x = x.reshape(n, n_head, hd).copy()
        a, b = x[..., 0:rd:2].copy(), x[..., 1:rd:2].copy()
        x[..., 0:rd:2] = a * cos - b * sin
        x[..., 1:rd:2] = b * cos + a * sin
        return x.reshape(n, -1)

    def gelu_new(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    x = w['transformer.wte.weight'][ids]
    for layer in range(c['n_layer']):
        p = f'transformer.h.{layer}.'
        h = layer_norm(x, w[p + 'ln_1.weight'], w[p + 'ln_1.bias'], eps)
        q = rope(h @ w[p + 'attn.q_proj.weight'].T)
        k = rope(h @ w[p + 'attn.k_proj.weight'].T)
        v = h @ w[p + 'attn.v_proj.weight'].T
        attn = causal_attention(q, k, v, n_head, n_head, hd) @ w[p + 'attn.out_proj.weight'].T
        mlp = gelu_new(h @ w[p + 'mlp.fc_in.weight'].T + w[p + 'mlp.fc_in.bias'])
        mlp = mlp @ w[p + 'mlp.fc_out.weight'].T + w[p + 'mlp.fc_out.bias']
        x = x + attn + mlp
    x = layer_norm(x, w['transformer.ln_f.weight'], w['transformer.ln_f.bias'], eps)
    return x @ w['lm_head.weight'].T + w['lm_head.bias']


def check(folder):
    c = json.loads((folder / 'config.json').read_text())
    ref = json.loads((folder / 'reference.json').read_text())
    w = load_weights(folder)
    forward = gptj_forward if c['model_type'] == 'gptj' else llama_forward
    prompts = ref['prompts'] + ref.get('long_prompts', [])
    greedy = ref['greedy'] + ref.get('long_greedy', [])
    logits = ref['logits'] + ref.get('long_logits', [])
    worst = max(np.abs(forward(c, w, p)[-1] - np.array(l)).max() for p, l in zip(prompts, logits))
    # Every decode step of prompt 0, from one uncached pass over prompt + continuation.
    n0 = len(ref['prompts'][0])
    steps = forward(c, w, ref['prompts'][0] + ref['greedy'][0][:-1])[n0 - 1:]
    kept = np.array(ref['step_logits'])
    worst_step = np.abs(steps[:len(kept)] - kept).max()
    same = steps.argmax(-1).tolist() == ref['greedy'][0] and all(
        forward(c, w, p + g[:-1])[len(p) - 1:].argmax(-1).tolist() == g
        for p, g in zip(prompts, greedy))
    ok = worst < 1e-3 and worst_step < 1e-3 and same
    print(f'{folder.name}: max |diff| logits {worst:.2e}, step_logits {worst_step:.2e}, '
          f'greedy {"same" if same else "DIFFERENT"}{"" if ok else "  FAILED"}')
    return ok


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else 'tests/fixtures/models')
    results = [check(d) for d in sorted(root.iterdir()) if (d / 'reference.json').exists()]
    sys.exit(0 if results and all(results) else 1)


if __name__ == '__main__':
    main()
