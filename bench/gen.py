#!/usr/bin/python3
"""Write the two ~2 GiB safetensors checkpoints the streaming benchmark reads.

    /usr/bin/python3 bench/gen.py [DIR] [--force]

DIR (default /tmp/sresid-bench) receives
  stream-f32.safetensors   32 x [4096, 4096] F32  + 16 x [4096] F32 norms
  stream-bf16.safetensors  64 x [4096, 4096] BF16 + 32 x [4096] BF16 norms
Both hold 2 GiB of matrix data; the largest tensor is 16 Mi elements, i.e.
64 MiB once read as float32.

The header is written here with json + struct, as the format defines it: an
8-byte little-endian header length, the JSON header padded with spaces to a
multiple of 8, then the tensor data back to back. The content does not
matter for the benchmark: one random block (fixed seed) is tiled, so
generating costs little more than writing the bytes. Existing files are kept
unless --force is given. Files are written to a temporary name and renamed.
"""

import json
import os
import struct
import sys

import numpy as np

ROWS = COLS = 4096
BLOCK_ELEMS = 1 << 20  # 1 Mi elements tiled into each matrix


def layout(dtype, layers):
    """Tensor list (name, dtype, shape) of a Llama-style MLP stack."""
    tensors = []
    for layer in range(layers):
        pre = f"model.layers.{layer}."
        tensors.append((pre + "input_layernorm.weight", dtype, [COLS]))
        tensors.append((pre + "mlp.up_proj.weight", dtype, [ROWS, COLS]))
        tensors.append((pre + "mlp.down_proj.weight", dtype, [COLS, ROWS]))
    return tensors


def write(path, tensors, blocks):
    esize = {"F32": 4, "BF16": 2}
    header = {"__metadata__": {"format": "pt", "generator": "libsparseresid bench/gen.py"}}
    off = 0
    for name, dtype, shape in tensors:
        n = int(np.prod(shape)) * esize[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * (-len(hbytes) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for _name, dtype, shape in tensors:
            block = blocks[dtype]
            n = int(np.prod(shape))
            while n > 0:
                k = min(n, block.size)
                f.write(block[:k].tobytes())
                n -= k
    os.replace(tmp, path)
    return 8 + len(hbytes) + off


def main(argv):
    force = "--force" in argv
    args = [a for a in argv if a != "--force"]
    if any(a.startswith("-") for a in args) or len(args) > 1:
        sys.stderr.write(__doc__)
        return 2
    out = args[0] if args else "/tmp/sresid-bench"
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240601)
    f32 = (rng.standard_normal(BLOCK_ELEMS, dtype=np.float32) * 0.02).astype("<f4")
    # BF16 = the upper 16 bits of the float32 pattern (truncation; fine here).
    bf16 = (f32.view("<u4") >> 16).astype("<u2")
    blocks = {"F32": f32, "BF16": bf16}
    for fname, dtype, layers in (("stream-f32.safetensors", "F32", 16),
                                 ("stream-bf16.safetensors", "BF16", 32)):
        path = os.path.join(out, fname)
        if os.path.exists(path) and not force:
            print(f"{path}: exists, kept")
            continue
        size = write(path, layout(dtype, layers), blocks)
        print(f"{path}: {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
