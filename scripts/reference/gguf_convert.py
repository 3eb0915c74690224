#!/usr/bin/env python3
"""Runs llama.cpp's convert_hf_to_gguf.py under Debian's torch 1.13.

The converter names float8 dtypes (torch.float8_e4m3fn, float8_e5m2, float8_e8m0fnu)
that torch gained in 2.1+, only to map checkpoints stored in float8. Under torch 1.13
those names are given stand-in objects that equal no real dtype, so a float8
checkpoint would fail to convert while every other one converts unchanged.

Usage: python gguf_convert.py LLAMA_CPP/convert_hf_to_gguf.py MODEL_DIR [converter args]
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

converter = os.path.abspath(sys.argv[1])
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(converter))   # the converter imports its `conversion` package
runpy.run_path(converter, run_name='__main__')
