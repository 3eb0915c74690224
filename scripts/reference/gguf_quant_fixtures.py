#!/usr/bin/env python3
"""Reference data for Flover's GGUF dequantization, from gguf-py (PyPI `gguf`).

  fixtures [DIR]        writes tests/fixtures/gguf_quant/ (default DIR): for each type
                        Flover loads, random blocks (random bytes, with finite random fp16
                        scales) and gguf.quants.dequantize's fp32 values; and for Q8_0 also
                        random floats with gguf.quants.quantize's bytes. Deterministic.
  quantize IN OUT TYPE  copies the GGUF file IN to OUT with every 2-D F32 tensor whose
                        rows are a whole number of TYPE blocks quantized to TYPE (Q8_0,
                        Q4_0, Q4_1, Q5_0, Q5_1: the types gguf-py can quantize); the
                        other tensors and all metadata unchanged. For measurements only:
                        the output stays out of the repository.

Run it in a venv with the pinned packages (scripts/reference/requirements-gguf.txt):
  python3 -m venv build/gguf-venv
  build/gguf-venv/bin/pip install -r scripts/reference/requirements-gguf.txt
  build/gguf-venv/bin/python scripts/reference/gguf_quant_fixtures.py fixtures

Fixture layout (all little-endian): manifest.json lists the cases; a case has
`blocks` (the raw GGUF bytes of n_values values of `type`), `values` (n_values fp32,
the reference dequantization) and, for quantize cases, `input` (the fp32 values that
gguf.quants.quantize turned into `blocks`).
"""
import json
import pathlib
import sys

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

GGUF_VERSION = "0.19.0"
NUMPY_VERSION = "2.4.6"
SEED = 20240611

# (type, n_blocks, byte offsets of the fp16 scale fields inside a block)
DEQUANTIZE_CASES = [
    (T.BF16, 512, []),
    (T.Q4_0, 32, [0]),
    (T.Q4_1, 32, [0, 2]),
    (T.Q5_0, 32, [0]),
    (T.Q5_1, 32, [0, 2]),
    (T.Q8_0, 32, [0]),
    (T.Q4_K, 6, [0, 2]),
    (T.Q5_K, 6, [0, 2]),
    (T.Q6_K, 6, [208]),
]
QUANTIZE_CASES = [(T.Q8_0, 16), (T.Q4_0, 8)]


def check_versions():
    found = (gguf.__version__ if hasattr(gguf, "__version__") else _dist_version("gguf"), np.__version__)
    if found != (GGUF_VERSION, NUMPY_VERSION):
        sys.exit(f"needs gguf {GGUF_VERSION} and numpy {NUMPY_VERSION}, found gguf {found[0]} and numpy {found[1]}; "
                 "see scripts/reference/requirements-gguf.txt")


def _dist_version(name):
    from importlib.metadata import version
    return version(name)


def random_finite_halves(rng, n):
    """n random fp16 bit patterns that are finite (any sign, subnormals included)."""
    out = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
    bad = (out & 0x7C00) == 0x7C00
    while bad.any():
        out[bad] = rng.integers(0, 1 << 16, size=int(bad.sum()), dtype=np.uint16)
        bad = (out & 0x7C00) == 0x7C00
    # Keep most scales in a realistic range: exponent field 1..17 (2^-14 .. 2^2).
    exponent = rng.integers(1, 18, size=n, dtype=np.uint16)
    realistic = rng.random(n) < 0.9
    out[realistic] = (out[realistic] & 0x83FF) | (exponent[realistic] << 10)
    return out


def write_fixtures(out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    cases = []
    for qtype, n_blocks, scale_offsets in DEQUANTIZE_CASES:
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
        for off in scale_offsets:
            blocks[:, off:off + 2] = random_finite_halves(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
        values = gguf.quants.dequantize(blocks.reshape(-1), qtype).astype(np.float32).reshape(-1)
        assert values.size == n_blocks * block_size
        name = qtype.name.lower()
        (out_dir / f"{name}.blocks.bin").write_bytes(blocks.tobytes())
        (out_dir / f"{name}.values.bin").write_bytes(values.astype("<f4").tobytes())
        cases.append({"name": name, "type": qtype.name, "type_id": int(qtype), "n_values": int(values.size),
                      "blocks": f"{name}.blocks.bin", "values": f"{name}.values.bin"})
    for qtype, n_blocks in QUANTIZE_CASES:
        block_size, _ = gguf.GGML_QUANT_SIZES[qtype]
        x = (rng.standard_normal((n_blocks, block_size)) * rng.uniform(0.01, 3.0, (n_blocks, 1))).astype(np.float32)
        x[0, :] = 0.0  # an all-zero block (scale 0)
        blocks = gguf.quants.quantize(x, qtype)
        values = gguf.quants.dequantize(blocks, qtype).astype(np.float32).reshape(-1)
        name = qtype.name.lower() + "_quantize"
        (out_dir / f"{name}.input.bin").write_bytes(x.astype("<f4").tobytes())
        (out_dir / f"{name}.blocks.bin").write_bytes(np.ascontiguousarray(blocks).tobytes())
        (out_dir / f"{name}.values.bin").write_bytes(values.astype("<f4").tobytes())
        cases.append({"name": name, "type": qtype.name, "type_id": int(qtype), "n_values": int(values.size),
                      "input": f"{name}.input.bin", "blocks": f"{name}.blocks.bin", "values": f"{name}.values.bin"})
    manifest = {
        "generator": "scripts/reference/gguf_quant_fixtures.py fixtures",
        "gguf": GGUF_VERSION,
        "numpy": NUMPY_VERSION,
        "seed": SEED,
        "cases": cases,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out_dir.iterdir())
    print(f"wrote {len(cases)} cases to {out_dir} ({total} bytes)")


def quantize_file(src, dst, qtype):
    block_size, _ = gguf.GGML_QUANT_SIZES[qtype]
    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub_type)
    n_quantized = 0
    for t in reader.tensors:
        data = np.asarray(t.data)
        if t.tensor_type == T.F32 and data.ndim == 2 and data.shape[-1] % block_size == 0:
            q = gguf.quants.quantize(data.astype(np.float32), qtype)
            writer.add_tensor(t.name, q, raw_dtype=qtype)  # shape from the bytes per row
            n_quantized += 1
            print(f"  {t.name} {list(data.shape)} -> {qtype.name}")
        else:
            writer.add_tensor(t.name, data, raw_dtype=t.tensor_type)
            print(f"  {t.name} {list(data.shape)} kept as {t.tensor_type.name}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {dst}: {n_quantized} of {len(reader.tensors)} tensors as {qtype.name}")


def main(argv):
    check_versions()
    if len(argv) >= 1 and argv[0] == "fixtures" and len(argv) <= 2:
        default = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "gguf_quant"
        write_fixtures(pathlib.Path(argv[1]) if len(argv) == 2 else default)
    elif len(argv) == 4 and argv[0] == "quantize":
        quantize_file(argv[1], argv[2], T[argv[3]])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
