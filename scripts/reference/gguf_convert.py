#!/usr/bin/env python3
"""Runs llama.cpp's convert_hf_to_gguf.py under Debian's torch 1.13.

The converter names float8 dtypes (torch.float8_e4m3fn, float8_e5m2, float8_e8m0fnu)
that torch gained in 2.1+, only to map checkpoints stored in float8. Under torch 1.13
those names are given stand-in objects that equal no real dtype, so a float8
checkpoint would fail to convert while every other one converts unchanged.

--pre-tokenizer NAME names the pre-tokenizer (GGUF tokenizer.ggml.pre: "qwen2",
"llama-bpe", ...) of a byte-level BPE tokenizer that the converter does not recognise.
The converter identifies a BPE tokenizer's pre-tokenizer by hashing the ids its test
text encodes to (get_vocab_base_pre), which only works for the released models' own
vocabularies: a small tokenizer with Qwen2's pre-tokenizer (a test fixture) hashes to
something unknown and is refused. With this option the converter's method is wrapped:
a hash it does not know gives NAME, a hash it knows must give NAME too (else the run
fails). Nothing else about the conversion changes.

Usage: python gguf_convert.py [--pre-tokenizer NAME] LLAMA_CPP/convert_hf_to_gguf.py \
           MODEL_DIR [converter args]
"""
import os
import runpy
import sys

import torch


class AbsentDtype:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f'torch.{self.name} (absent in torch {torch.__version__})'


for _name in ('float8_e4m3fn', 'float8_e5m2', 'float8_e8m0fnu'):
    if not hasattr(torch, _name):
        setattr(torch, _name, AbsentDtype(_name))


def name_pre_tokenizer(converter_dir, name):
    """Makes the converter's get_vocab_base_pre answer `name` for a tokenizer whose
    pre-tokenizer hash it does not know."""
    if 'NO_LOCAL_GGUF' not in os.environ:    # as the converter finds its gguf-py
        sys.path.insert(1, os.path.join(converter_dir, 'gguf-py'))
    from conversion import base
    recognise = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer):
        try:
            found = recognise(self, tokenizer)
        except NotImplementedError:
            base.logger.warning(f'pre-tokenizer not recognised by its hash; named {name!r} by --pre-tokenizer')
            return name
        if found != name:
            raise SystemExit(f'gguf_convert: the converter recognises the pre-tokenizer as {found!r}, '
                             f'but --pre-tokenizer says {name!r}')
        return found

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre


args = sys.argv[1:]
pre_tokenizer = None
if args[:1] == ['--pre-tokenizer']:
    if len(args) < 2:
        sys.exit('gguf_convert: --pre-tokenizer needs a name')
    pre_tokenizer, args = args[1], args[2:]
if not args:
    sys.exit(__doc__.split('Usage: ')[1])
converter = os.path.abspath(args[0])
sys.argv = args
sys.path.insert(0, os.path.dirname(converter))   # the converter imports its `conversion` package
if pre_tokenizer is not None:
    name_pre_tokenizer(os.path.dirname(converter), pre_tokenizer)
runpy.run_path(converter, run_name='__main__')
