#!/usr/bin/env python3
"""Independent reader for safetensors files, using only the Python standard library.

Used by tests/test_safetensors.c to check files written by dpformer against a second implementation,
and handy on its own to look inside a saved model:

    python3 tests/safetensors_check.py model.safetensors            # list tensors and metadata
    python3 tests/safetensors_check.py FILE --tensor NAME DTYPE SHAPE SUM WSUM ... --meta KEY VALUE ...

With --tensor, the file must hold exactly the tensors named, each with the given dtype, shape ("3x4",
"5", or "scalar") and values whose sum and position-weighted sum (sum of (i+1)*v[i], row-major) match
SUM and WSUM. With --meta, the metadata must be exactly the pairs given. Exit status: 0 when the file
is valid and matches, 1 otherwise (with the reason on stderr), 2 for bad usage.
"""
import argparse
import array
import json
import math
import struct
import sys

# dtype -> (element size, array typecode or None when decoded with struct)
DTYPES = {
    "F64": (8, "d"), "F32": (4, "f"), "F16": (2, None), "BF16": (2, None),
    "F8_E4M3": (1, None), "F8_E5M2": (1, None),
    "I64": (8, "q"), "I32": (4, "i"), "I16": (2, "h"), "I8": (1, "b"),
    "U64": (8, "Q"), "U32": (4, "I"), "U16": (2, "H"), "U8": (1, "B"), "BOOL": (1, "B"),
}
MAX_HEADER = 100_000_000


class Invalid(Exception):
    pass


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise Invalid("duplicate key in the JSON header")
    return dict(pairs)


def parse(path):
    """Return (metadata dict, list of (name, dtype, shape, bytes)) in header order, or raise Invalid."""
    with open(path, "rb") as fh:
        blob = fh.read()
    if len(blob) < 8:
        raise Invalid("file shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER or 8 + n > len(blob):
        raise Invalid(f"header length {n} does not fit the {len(blob)}-byte file")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise Invalid(f"header is not UTF-8 JSON: {e}")
    if not isinstance(header, dict):
        raise Invalid("header is not a JSON object")
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise Invalid("__metadata__ is not an object of strings")
    tensors, spans = [], []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise Invalid(f"tensor {name!r}: entry must have exactly dtype, shape, data_offsets")
        dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPES:
            raise Invalid(f"tensor {name!r}: unknown dtype {dtype!r}")
        ints = lambda xs: isinstance(xs, list) and all(type(x) is int and x >= 0 for x in xs)
        if not ints(shape) or not ints(offs) or len(offs) != 2:
            raise Invalid(f"tensor {name!r}: bad shape or data_offsets")
        begin, end = offs
        if not begin <= end <= len(data):
            raise Invalid(f"tensor {name!r}: offsets {offs} outside the {len(data)}-byte data section")
        if math.prod(shape) * DTYPES[dtype][0] != end - begin:
            raise Invalid(f"tensor {name!r}: shape {shape} x {dtype} does not match {end - begin} bytes")
        tensors.append((name, dtype, shape, data[begin:end]))
        spans.append((begin, end, name))
    covered = 0
    for begin, end, name in sorted(spans):
        if begin != covered:
            raise Invalid(f"tensor {name!r}: data does not follow on from the previous tensor (gap or overlap)")
        covered = end
    if covered != len(data):
        raise Invalid(f"data section has {len(data)} bytes, tensors cover {covered}")
    return meta, tensors


def values(dtype, raw):
    """Decode little-endian tensor bytes into a list of Python numbers."""
    size, code = DTYPES[dtype]
    count = len(raw) // size
    if code is not None and array.array(code).itemsize == size:
        a = array.array(code)
        a.frombytes(raw)
        if sys.byteorder == "big":
            a.byteswap()
        return list(a)
    if dtype == "F16":
        return list(struct.unpack(f"<{count}e", raw))
    if dtype == "BF16":  # the upper half of an F32
        halves = struct.unpack(f"<{count}H", raw)
        return list(struct.unpack(f"<{count}f", struct.pack(f"<{count}I", *(h << 16 for h in halves))))
    if code is not None:  # platform array item size differs: fall back to struct
        fmt = {"q": "q", "Q": "Q", "i": "i", "I": "I", "h": "h", "H": "H"}[code]
        return list(struct.unpack(f"<{count}{fmt}", raw))
    return list(raw)  # 8-bit floats: raw codes


def sums(vals):
    s = ws = 0.0
    for i, v in enumerate(vals):  # sequential, in the same order as the C test
        s += float(v)
        ws += float(i + 1) * float(v)
    return s, ws


def close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--tensor", nargs=5, action="append", metavar=("NAME", "DTYPE", "SHAPE", "SUM", "WSUM"))
    ap.add_argument("--meta", nargs=2, action="append", metavar=("KEY", "VALUE"))
    args = ap.parse_args()
    try:
        meta, tensors = parse(args.file)
    except (Invalid, OSError) as e:
        print(f"{args.file}: {e}", file=sys.stderr)
        return 1

    if not args.tensor and not args.meta:
        for k, v in meta.items():
            print(f"meta {k} = {v}")
        for name, dtype, shape, raw in tensors:
            s, _ = sums(values(dtype, raw))
            print(f"{name} {dtype} {shape} sum={s:.9g}")
        return 0

    problems = []
    if args.tensor:
        by_name = {t[0]: t for t in tensors}
        expected = {e[0] for e in args.tensor}
        for extra in sorted(set(by_name) - expected):
            problems.append(f"unexpected tensor {extra!r}")
        for name, dtype, shape_s, s_s, ws_s in args.tensor:
            if name not in by_name:
                problems.append(f"missing tensor {name!r}")
                continue
            _, got_dtype, got_shape, raw = by_name[name]
            shape = [] if shape_s == "scalar" else [int(x) for x in shape_s.split("x")]
            if got_dtype != dtype:
                problems.append(f"{name}: dtype {got_dtype}, expected {dtype}")
            if got_shape != shape:
                problems.append(f"{name}: shape {got_shape}, expected {shape}")
            s, ws = sums(values(got_dtype, raw))
            if not close(s, float(s_s)) or not close(ws, float(ws_s)):
                problems.append(f"{name}: sums {s!r}, {ws!r}, expected {s_s}, {ws_s}")
    if args.meta:
        want = dict(args.meta)
        if meta != want:
            problems.append(f"metadata {meta}, expected {want}")
    for p in problems:
        print(f"{args.file}: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
