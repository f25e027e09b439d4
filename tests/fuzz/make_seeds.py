#!/usr/bin/env python3
"""Writes the binary seed inputs of tests/fuzz/corpus (safetensors files, models, generator states):
small synthetic files, each under 4 KB, valid ones and ones broken in one precise way. The text seeds
(datasets, histories) are written by hand. Run from anywhere; it only (re)writes the files named here,
so crash reproducers added to the corpus are left alone.

    python3 tests/fuzz/make_seeds.py
"""
import json
import os
import struct

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < 4096, (target, name, len(data))
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def safetensors(tensors, meta=None, pad=True, header=None, extra=b""):
    """tensors: list of (name, dtype, shape, raw bytes), laid out in order."""
    hdr, data = {}, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = header if header is not None else json.dumps(hdr, separators=(",", ":"))
    if isinstance(text, str):
        text = text.encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data + extra


def f32(n, start=0.0):
    return struct.pack("<%df" % n, *[start + 0.01 * i for i in range(n)])


# ---- fuzz_safetensors ------------------------------------------------------------------------
T = "fuzz_safetensors"
mixed = [("w", "F32", [2, 3], f32(6)), ("ids", "I64", [2], struct.pack("<2q", 7, -1)),
         ("s", "F64", [], struct.pack("<d", 3.5)), ("flags", "BOOL", [3], b"\x01\x00\x01"),
         ("h", "BF16", [1], b"\x80\x3f"), ("e", "U8", [0, 5], b"")]
put(T, "valid_mixed.safetensors", safetensors(mixed, {"format": "pt", "note": "caf\u00e9"}))
# I8 first, then F32 at byte 3: the reader must hand out an aligned copy.
put(T, "valid_unaligned.safetensors", safetensors([("a", "I8", [3], b"\x01\x02\x03"), ("b", "F32", [2], f32(2))]))
put(T, "valid_empty.safetensors", safetensors([]))
put(T, "valid_all_dtypes.safetensors", safetensors(
    [(d, d, [1], b"\x00" * s) for d, s in [("F64", 8), ("F32", 4), ("F16", 2), ("BF16", 2), ("F8_E4M3", 1),
                                           ("F8_E5M2", 1), ("I64", 8), ("I32", 4), ("I16", 2), ("I8", 1),
                                           ("U64", 8), ("U32", 4), ("U16", 2), ("U8", 1), ("BOOL", 1)]]))
put(T, "bad_short.safetensors", b"\x10\x00\x00")
put(T, "bad_header_length.safetensors", struct.pack("<Q", 1 << 40) + b"{}      ")
put(T, "bad_truncated_data.safetensors", safetensors([("w", "F32", [4], f32(4))])[:-3])
put(T, "bad_json.safetensors", safetensors([], header='{"w": {"dtype": "F32", "shape": [1], '))
put(T, "bad_trailing.safetensors", safetensors([], header='{} x'))
put(T, "bad_overlap.safetensors", safetensors([], header=json.dumps(
    {"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
     "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}), extra=b"abc"))
put(T, "bad_gap.safetensors", safetensors([], header=json.dumps(
    {"a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}), extra=b"ab"))
put(T, "bad_extra_bytes.safetensors", safetensors([("a", "U8", [1], b"a")], extra=b"zz"))
put(T, "bad_duplicate.safetensors", safetensors([], header=(
    '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}')
    , extra=b"ab"))
put(T, "bad_dtype.safetensors", safetensors([("a", "F128", [1], b"\x00" * 16)]))
put(T, "bad_shape_size.safetensors", safetensors([], header=json.dumps(
    {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}), extra=b"\x00" * 8))
put(T, "bad_dims.safetensors", safetensors([("a", "U8", [1] * 9, b"x")]))
put(T, "bad_huge_shape.safetensors", safetensors([], header=json.dumps(
    {"a": {"dtype": "F64", "shape": [9007199254740992, 9007199254740992], "data_offsets": [0, 0]}})))
put(T, "bad_metadata_value.safetensors", safetensors([], meta={"k": 1}))
put(T, "bad_utf8.safetensors", safetensors([], header=b'{"\xff": 1}'))

# ---- fuzz_model -------------------------------------------------------------------------------
T = "fuzz_model"


def model(cfg, skip=(), shapes=None, value=None, version="1"):
    V1, L, C = cfg["n_items"] + 1, cfg["max_len"], cfg["d_model"]
    F = cfg["d_ff"] or 4 * C
    ts = [("item_emb.weight", [V1, C]), ("pos_emb.weight", [L, C])]
    for l in range(cfg["n_layers"]):
        p = "layers.%d." % l
        ts += [(p + "ln1.weight", [C]), (p + "ln1.bias", [C]), (p + "attn.qkv.weight", [3 * C, C]),
               (p + "attn.qkv.bias", [3 * C]), (p + "attn.proj.weight", [C, C]), (p + "attn.proj.bias", [C]),
               (p + "ln2.weight", [C]), (p + "ln2.bias", [C]), (p + "ffn.fc1.weight", [F, C]),
               (p + "ffn.fc1.bias", [F]), (p + "ffn.fc2.weight", [C, F]), (p + "ffn.fc2.bias", [C])]
    ts += [("ln_f.weight", [C]), ("ln_f.bias", [C])]
    if not cfg["tied"]:
        ts.append(("out.weight", [V1, C]))
    out = []
    for name, shape in ts:
        if name in skip:
            continue
        shape = (shapes or {}).get(name, shape)
        n = 1
        for d in shape:
            n *= d
        raw = f32(n, 0.5 if name.endswith("weight") and "ln" in name else 0.0)
        if value is not None and name == "pos_emb.weight":
            raw = struct.pack("<f", value) + raw[4:]
        out.append((name, "F32", shape, raw))
    meta = {"format": "pt", "dpformer.format_version": version, "dpformer.config": json.dumps(cfg),
            "dpformer.run": "{}"}
    return safetensors(out, meta)


base = {"n_items": 3, "max_len": 4, "d_model": 2, "n_heads": 1, "n_layers": 1, "d_ff": 2, "tied": True,
        "causal": True, "dropout": 0.2}
put(T, "valid_tied.safetensors", model(base))
put(T, "valid_untied_no_layers.safetensors", model(dict(base, n_layers=0, tied=False, causal=False)))
put(T, "valid_two_heads.safetensors", model(dict(base, d_model=2, n_heads=2, d_ff=0, max_len=2, n_items=1)))
# d_ff only matters with layers: before the loader's fix this file made dp_model_create allocate
# d_ff floats per position (8 GiB) for a buffer the model never uses.
put(T, "regress_no_layers_huge_d_ff.safetensors",
    model(dict(base, n_items=1, max_len=1, d_model=1, n_layers=0, d_ff=2147483647)))
# A configuration asking for 2^31 items of width 65536 with the tensors of a tiny model: refused before
# anything is allocated (it used to try to allocate 512 TiB and exit).
big = dict(base, n_items=2147483646, d_model=65536, n_heads=1)
put(T, "regress_config_larger_than_file.safetensors", safetensors(
    [("item_emb.weight", "F32", [4, 2], f32(8))], {"dpformer.format_version": "1", "dpformer.config": json.dumps(big)}))
put(T, "bad_missing_tensor.safetensors", model(base, skip=("ln_f.bias",)))
put(T, "bad_shape.safetensors", model(base, shapes={"pos_emb.weight": [5, 2]}))
put(T, "bad_nan.safetensors", model(base, value=float("nan")))
put(T, "bad_version.safetensors", model(base, version="2"))
put(T, "bad_config_heads.safetensors", model(dict(base, n_heads=3)))
put(T, "bad_config_field.safetensors", model(base).replace(b'"dropout": 0.2', b'"dropout": "x"'))
put(T, "bad_config_trailing.safetensors", safetensors(
    [], {"dpformer.format_version": "1", "dpformer.config": json.dumps(base) + " x"}))
put(T, "bad_not_a_model.safetensors", safetensors([("w", "F32", [1], f32(1))], {"format": "pt"}))


# Re-Attention stored with the model: metadata dpformer.reattention and the F64 tensor
# reattention.item_freq [n_items + 1], first in the data section (as dp_model_save writes it).
def with_reattention(cfg, freq=None, meta=None, dtype="F64", shape=None):
    blob = model(cfg)
    n = struct.unpack("<Q", blob[:8])[0]
    hdr, data = json.loads(blob[8:8 + n]), blob[8 + n:]
    freq = freq if freq is not None else [0.0] + [1.0 / (i + 1) for i in range(cfg["n_items"])]
    raw = struct.pack("<%d%s" % (len(freq), "d" if dtype == "F64" else "f"), *freq)
    meta_d = hdr.pop("__metadata__")
    meta_d["dpformer.reattention"] = meta if meta is not None else json.dumps(
        {"kappa": 1, "sigma": 1.5, "batch_size": 4, "n_examples": 10}, separators=(",", ":"))
    ts = [("reattention.item_freq", dtype, shape or [len(freq)], raw)]
    for name, info in hdr.items():
        b, e = info["data_offsets"]
        ts.append((name, info["dtype"], info["shape"], data[b:e]))
    return safetensors(ts, meta_d)


put(T, "valid_reattention.safetensors", with_reattention(base))
no_tensor = model(base)
n = struct.unpack("<Q", no_tensor[:8])[0]
hdr = json.loads(no_tensor[8:8 + n])
hdr["__metadata__"]["dpformer.reattention"] = '{"kappa":1,"sigma":1,"batch_size":4,"n_examples":10}'
put(T, "bad_reattention_no_tensor.safetensors",
    safetensors([], header=json.dumps(hdr, separators=(",", ":")), extra=no_tensor[8 + n:]))
put(T, "bad_reattention_freq.safetensors", with_reattention(base, freq=[0.0, 0.5, 1.5, 0.25]))
put(T, "bad_reattention_dtype.safetensors", with_reattention(base, dtype="F32"))
put(T, "bad_reattention_json.safetensors", with_reattention(base, meta='{"kappa":1,"sigma":'))

# ---- fuzz_rng_state ---------------------------------------------------------------------------
T = "fuzz_rng_state"


def fnv1a(b):
    h = 0x811C9DC5
    for x in b:
        h = ((h ^ x) * 0x01000193) & 0xFFFFFFFF
    return h


def state(mode=1, method=0, offset=0, block=0, key=bytes(range(32)), version=1, magic=b"dpRN", fix=True):
    s = magic + bytes([version, mode, method, offset]) + struct.pack("<Q", block) + key
    return s + struct.pack("<I", fnv1a(s) if fix else 0)


put(T, "hex_seeded.txt", "0" + state().hex())
put(T, "hex_seeded_upper_hardened.txt", "0" + state(method=1, offset=5, block=123456).hex().upper())
put(T, "hex_block_wraps.txt", "0" + state(offset=7, block=(1 << 64) - 3).hex())
put(T, "hex_secure.txt", "0" + state(mode=0, method=1, key=bytes(32)).hex())
put(T, "hex_bad_checksum.txt", "0" + state(fix=False).hex())
put(T, "hex_bad_digit.txt", "0" + state().hex()[:-1] + "g")
put(T, "hex_bad_length.txt", "0" + state().hex() + "00")
put(T, "hex_bad_offset.txt", "0" + state(offset=8).hex())
put(T, "bin_seeded.bin", b"1" + state(block=77))
put(T, "bin_bad_mode.bin", b"1" + state(mode=2))
put(T, "bin_bad_version.bin", b"1" + state(version=2))
put(T, "bin_short.bin", b"1" + state()[:51])
