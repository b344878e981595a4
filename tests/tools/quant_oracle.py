#!/usr/bin/python3
"""Independent numpy oracle for quantized companions in `shardload split` and
`shardload plan` (issue 13).

Generates small quantized checkpoints (FP8 block scales shaped like a
DeepSeek-V3 layer, FP8 per-channel / per-tensor scales, GPTQ with and
without desc_act, AWQ, and an MXFP4 expert block shaped like gpt-oss), splits
each with the real CLI for W = 1..8 and, for every rank, dequantizes the
rank's weight slice with the rank's companion slices and compares it with
the matching slice of the fully dequantized weight. The rank's range of the
weight is computed here from the rule (torch.chunk over whole units), not
taken from shardload; the companion's local shape must be exactly the blocks
that cover that range, and `plan --json` must report the same ranges,
`follows` and `straddles`. Refusals (a GPTQ row split off group bounds, a
packed dimension cut inside an element) must exit 6 with tp_misaligned
before any rank is written.

usage: quant_oracle.py SHARDLOAD_BINARY WORK_DIR
Exit 0 when everything matches, 1 on a mismatch, 77 when numpy is missing.
"""
import json
import os
import shutil
import struct
import subprocess
import sys

try:
    import numpy as np
except ImportError:
    print("numpy not available: skipping")
    sys.exit(77)

RNG = np.random.default_rng(13)
NP_DTYPES = {"F8_E4M3": "u1", "U8": "u1", "I32": "<i4", "F16": "<f2", "F32": "<f4"}


# ---- safetensors in and out ----

def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, (dtype, arr) in sorted(tensors.items()):
        data = np.ascontiguousarray(arr).astype(NP_DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_dir(path):
    out = {}
    for fname in sorted(os.listdir(path)):
        if not fname.endswith(".safetensors"):
            continue
        with open(os.path.join(path, fname), "rb") as f:
            blob = f.read()
        (n,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8:8 + n])
        header.pop("__metadata__", None)
        for name, info in header.items():
            b, e = info["data_offsets"]
            raw = np.frombuffer(blob[8 + n + b:8 + n + e], dtype=NP_DTYPES[info["dtype"]])
            out[name] = raw.reshape(info["shape"])
    return out


# ---- number formats ----

def fp8_e4m3_table():
    """float32 value of every E4M3 (fn) byte; 0x7f/0xff are NaN."""
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exp, mant = (codes >> 3) & 0xF, codes & 0x7
    normal = (1 + mant / 8.0) * np.exp2(exp - 7.0)
    sub = (mant / 8.0) * np.exp2(-6.0)
    return (sign * np.where(exp == 0, sub, normal)).astype(np.float32)


FP8 = fp8_e4m3_table()
FP4 = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], np.float32)
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # AWQ's order of 8 nibbles in an int32


def fp8_bytes(shape):
    b = RNG.integers(0, 256, size=shape, dtype=np.uint8)
    return np.where((b & 0x7F) == 0x7F, 0x38, b).astype(np.uint8)  # no NaN


def pack_rows(q):
    """[K, N] nibbles -> int32 [K/8, N], GPTQ packing along K."""
    k, n = q.shape
    out = np.zeros((k // 8, n), np.uint32)
    for j in range(8):
        out |= q[j::8].astype(np.uint32) << (4 * j)
    return out.view(np.int32)


def pack_cols(q, order=None):
    """[K, N] nibbles -> int32 [K, N/8], packed along N (order: AWQ's)."""
    k, n = q.shape
    out = np.zeros((k, n // 8), np.uint32)
    for j in range(8):
        shift = 4 * (order.index(j) if order else j)
        out |= q[:, j::8].astype(np.uint32) << shift
    return out.view(np.int32)


def unpack_rows(p):
    u = p.view(np.uint32)
    return np.stack([(u >> (4 * j)) & 15 for j in range(8)], axis=1).reshape(u.shape[0] * 8, u.shape[1])


def unpack_cols(p, order=None):
    u = p.view(np.uint32)
    parts = [(u >> (4 * (order.index(j) if order else j))) & 15 for j in range(8)]
    return np.stack(parts, axis=2).reshape(u.shape[0], u.shape[1] * 8)


# ---- splitting rules, computed independently ----

def chunk(units, world, rank):
    c = -(-units // world)
    return min(rank * c, units), min((rank + 1) * c, units)


def rank_range(n, unit, world, rank):
    a, b = chunk(n // unit, world, rank)
    return a * unit, b * unit


def cover(s, e, per):
    """The elements of `per` indices each that cover [s, e)."""
    return (s // per, s // per) if s == e else (s // per, -(-e // per))


def straddles(s, e, n, per):
    return s != e and (s % per != 0 or (e % per != 0 and e != n))


# ---- formats: full tensors, dequantization of any slice ----
# Each linear: name, tensors (name -> (dtype, array)), logical shape [.., N, K],
# dequant(tensors, axis, s) -> float32 [.., n, k] given the local tensors, the
# split axis ("out", "in", "lead" or None) and the start of the rank's range.

class Fp8Block:
    def __init__(self, name, n, k, bn, bk):
        self.name, self.shape, self.bn, self.bk = name, (n, k), bn, bk
        w = fp8_bytes((n, k))
        sc = RNG.uniform(0.5, 2, size=(-(-n // bn), -(-k // bk))).astype(np.float32)
        self.tensors = {f"{name}.weight": ("F8_E4M3", w), f"{name}.weight_scale_inv": ("F32", sc)}
        self.companions = {f"{name}.weight_scale_inv": {"out": bn, "in": bk}}

    def dequant(self, t, axis, s):
        w, sc = t[f"{self.name}.weight"], t[f"{self.name}.weight_scale_inv"]
        r0, c0 = (s if axis == "out" else 0), (s if axis == "in" else 0)
        rows = (r0 + np.arange(w.shape[0])) // self.bn - r0 // self.bn
        cols = (c0 + np.arange(w.shape[1])) // self.bk - c0 // self.bk
        assert sc.shape == (len(set(rows)) if len(rows) else 0, len(set(cols))), \
            f"{self.name}: scale {sc.shape} is not exactly the covering blocks"
        if w.size == 0:
            return np.zeros(w.shape, np.float32)
        return FP8[w] * sc[rows][:, cols]


class Fp8Channel:
    def __init__(self, name, n, k, per_channel):
        self.name, self.shape = name, (n, k)
        w = fp8_bytes((n, k))
        shape = (n, 1) if per_channel else ()
        sc = RNG.uniform(0.5, 2, size=shape).astype(np.float32)
        self.tensors = {f"{name}.weight": ("F8_E4M3", w), f"{name}.weight_scale": ("F32", sc),
                        f"{name}.input_scale": ("F32", np.array([1.5], np.float32))}
        self.companions = {f"{name}.weight_scale": {"out": 1} if per_channel else {}}

    def dequant(self, t, axis, s):
        w, sc = t[f"{self.name}.weight"], t[f"{self.name}.weight_scale"]
        assert t[f"{self.name}.input_scale"].shape == (1,)
        return FP8[w] * sc


class Gptq:
    def __init__(self, name, n, k, g, desc_act):
        self.name, self.shape, self.g, self.desc_act = name, (n, k), g, desc_act
        q = RNG.integers(0, 16, size=(k, n), dtype=np.uint8)
        z = RNG.integers(0, 16, size=(k // g, n), dtype=np.uint8)
        sc = RNG.uniform(0.01, 1, size=(k // g, n)).astype(np.float16)
        gidx = RNG.permutation(np.arange(k) // g) if desc_act else np.arange(k) // g
        self.tensors = {f"{name}.qweight": ("I32", pack_rows(q)),
                        f"{name}.qzeros": ("I32", pack_cols(z)),
                        f"{name}.scales": ("F16", sc),
                        f"{name}.g_idx": ("I32", gidx.astype(np.int32))}
        groups = {} if desc_act else {"in": g}
        self.companions = {f"{name}.qzeros": dict(groups, out=8),
                           f"{name}.scales": dict(groups, out=1), f"{name}.g_idx": {"in": 1}}
        self.weight = f"{name}.qweight"

    def dequant(self, t, axis, s):
        n = self.name
        q, z = unpack_rows(t[f"{n}.qweight"]), unpack_cols(t[f"{n}.qzeros"])
        sc, gidx = t[f"{n}.scales"].astype(np.float32), t[f"{n}.g_idx"]
        assert len(gidx) == q.shape[0]
        k0 = s if axis == "in" else 0
        if self.desc_act:
            grp = gidx
        else:
            grp = (k0 + np.arange(q.shape[0])) // self.g - k0 // self.g
            assert np.array_equal(gidx, self.full_gidx[k0:k0 + q.shape[0]]), "g_idx slice"
        w = (q.astype(np.float32) - z[grp]) * sc[grp]
        return w.T  # logical [N, K]


class Awq:
    def __init__(self, name, n, k, g):
        self.name, self.shape, self.g = name, (n, k), g
        q = RNG.integers(0, 16, size=(k, n), dtype=np.uint8)
        z = RNG.integers(0, 16, size=(k // g, n), dtype=np.uint8)
        sc = RNG.uniform(0.01, 1, size=(k // g, n)).astype(np.float16)
        self.tensors = {f"{name}.qweight": ("I32", pack_cols(q, AWQ_ORDER)),
                        f"{name}.qzeros": ("I32", pack_cols(z, AWQ_ORDER)),
                        f"{name}.scales": ("F16", sc)}
        self.companions = {f"{name}.qzeros": {"in": g, "out": 8},
                           f"{name}.scales": {"in": g, "out": 1}}
        self.weight = f"{name}.qweight"

    def dequant(self, t, axis, s):
        n = self.name
        q = unpack_cols(t[f"{n}.qweight"], AWQ_ORDER)
        z = unpack_cols(t[f"{n}.qzeros"], AWQ_ORDER)
        sc = t[f"{n}.scales"].astype(np.float32)
        k0 = s if axis == "in" else 0
        grp = (k0 + np.arange(q.shape[0])) // self.g - k0 // self.g
        return ((q.astype(np.float32) - z[grp]) * sc[grp]).T


class Mxfp4:
    def __init__(self, name, e, rows, k):
        self.name, self.shape = name, (e, rows, k)
        blocks = RNG.integers(0, 256, size=(e, rows, k // 32, 16), dtype=np.uint8)
        scales = RNG.integers(120, 134, size=(e, rows, k // 32), dtype=np.uint8)
        self.tensors = {f"{name}_blocks": ("U8", blocks), f"{name}_scales": ("U8", scales)}
        self.companions = {f"{name}_scales": {"in": 32, "out": 1}}
        self.weight = f"{name}_blocks"

    def dequant(self, t, axis, s):
        b, sc = t[f"{self.name}_blocks"], t[f"{self.name}_scales"]
        vals = np.stack([FP4[b & 15], FP4[b >> 4]], axis=-1).reshape(*b.shape[:-1], 32)
        w = vals * np.exp2(sc.astype(np.float32) - 127)[..., None]
        return w.reshape(*b.shape[:-2], b.shape[-2] * 32)


# ---- checks ----

def run(binary, *args, check=True):
    return subprocess.run([binary, *args], capture_output=True, text=True, check=check)


def plan_json(binary, src, world, plan):
    out = run(binary, "plan", src, "--world", str(world), "--plan", plan, "--json")
    return json.loads(out.stdout.splitlines()[-1])


def check_linear(lin, split, full, got, planned, world, rank):
    """split: (axis, dim, unit) of the rule for LIN, or None (replicated)."""
    want_full = lin.dequant(full, None, 0)
    axis, dim, unit = split if split else (None, None, None)
    n = lin.shape[dim] if split else 0
    s, e = rank_range(n, unit, world, rank) if split else (0, 0)
    want = want_full if not split else np.take(want_full, np.arange(s, e), axis=dim)
    local = {name: got[name] for name in lin.tensors}
    have = lin.dequant(local, axis, s)
    where = f"{lin.name}: rank {rank} of {world}"
    assert have.shape == want.shape, f"{where}: shape {have.shape} != {want.shape}"
    assert np.array_equal(have, want), f"{where}: dequantized values differ"
    for comp, pers in lin.companions.items():
        p = planned[comp]
        if "quant" not in p:
            raise AssertionError(f"{where}: plan has no quant field for {comp}")
        q = p["quant"]
        assert q["follows"] == getattr(lin, "weight", f"{lin.name}.weight"), (comp, q)
        per = pers.get(axis) if axis in ("out", "in") else (1 if axis == "lead" else None)
        if per is None:  # no dimension of the companion follows this split
            assert q["ranges"] == [] and not q["straddles"], (comp, q)
            assert tuple(got[comp].shape) == tuple(full[comp].shape), (comp, "replicated")
            continue
        assert q["ranges"] == [{"weight": [s, e], "range": list(cover(s, e, per))}], \
            f"{where}: {comp} ranges {q['ranges']} != weight [{s},{e}) / {per}"
        assert q["straddles"] == straddles(s, e, n, per), (comp, q, s, e, n, per)


def check_case(binary, work, tag, src, plan, linears, splits, worlds, others=()):
    """Splits SRC under PLAN for each world and checks every rank."""
    full = read_dir(src)
    straddled = 0
    for world in worlds:
        out = os.path.join(work, f"{tag}-w{world}")
        shutil.rmtree(out, ignore_errors=True)
        run(binary, "split", src, "--world", str(world), "--plan", plan, "--out", out)
        pj = plan_json(binary, src, world, plan)
        for rank in range(world):
            got = read_dir(os.path.join(out, f"rank-{rank}"))
            planned = {t["name"]: t for t in pj["ranks"][rank]["tensors"]}
            for name in others:
                assert np.array_equal(got[name], full[name]), f"{name} replicated"
            for lin in linears:
                check_linear(lin, splits.get(lin.name), full, got, planned, world, rank)
                straddled += sum(planned[c]["quant"]["straddles"] for c in lin.companions)
    print(f"{tag}: W = {list(worlds)}, {len(linears)} linears x every rank match "
          f"({straddled} straddling companion slices)")
    return straddled


def expect_refusal(binary, work, tag, src, plan, world, tensor, needles):
    out = os.path.join(work, f"{tag}-refused")
    shutil.rmtree(out, ignore_errors=True)
    for args in (["plan", src, "--world", str(world), "--plan", plan, "--json"],
                 ["split", src, "--world", str(world), "--plan", plan, "--out", out, "--json"]):
        r = run(binary, *args, check=False)
        assert r.returncode == 6, f"{tag}: {args[0]} exit {r.returncode}: {r.stderr}"
        err = json.loads(r.stdout.splitlines()[-1])["error"]
        assert err["code_name"] == "tp_misaligned" and err["tensor"] == tensor, err
        for needle in needles:
            assert needle in err["detail"], f"{tag}: {needle!r} not in {err['detail']!r}"
    written = [f for _, _, fs in os.walk(out) for f in fs] if os.path.exists(out) else []
    assert not written, f"{tag}: refused split wrote {written}"
    print(f"{tag}: refused before any read ({err['detail'][:90]}...)")


def save(src, linears, config=None, plan=None, extra=None):
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    tensors = dict(extra or {})
    for lin in linears:
        tensors.update(lin.tensors)
        if isinstance(lin, Gptq):
            lin.full_gidx = lin.tensors[f"{lin.name}.g_idx"][1]
    write_safetensors(os.path.join(src, "model.safetensors"), tensors)
    if config is not None:
        with open(os.path.join(src, "config.json"), "w") as f:
            json.dump(config, f)
    if plan is not None:
        path = os.path.join(src, "..", os.path.basename(src) + "-plan.json")
        with open(path, "w") as f:
            json.dump(plan, f)
        return os.path.abspath(path)
    return "hf"


def our_plan(quant, rules):
    return {"tp_plan_version": 1, "quantization_config": quant, "rules": rules}


def main():
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    worlds = range(1, 9)
    straddled = 0

    # DeepSeek-V3-shaped FP8 layer at 1/16 (block 128 -> 8, 128 heads of 8):
    # o_proj [448, 1024] has weight_scale_inv [56, 128], as in the issue.
    ds = [Fp8Block("model.layers.0.self_attn.q_proj", 1024, 448, 8, 8),
          Fp8Block("model.layers.0.self_attn.o_proj", 448, 1024, 8, 8),
          Fp8Block("model.layers.0.mlp.gate_proj", 1152, 448, 8, 8),
          Fp8Block("model.layers.0.mlp.down_proj", 448, 1152, 8, 8)]
    config = {"hidden_size": 448, "num_attention_heads": 128, "head_dim": 8,
              "base_model_tp_plan": {"layers.*.self_attn.q_proj": "colwise",
                                     "layers.*.self_attn.o_proj": "rowwise",
                                     "layers.*.mlp.gate_proj": "colwise",
                                     "layers.*.mlp.down_proj": "rowwise"},
              "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                                      "activation_scheme": "dynamic",
                                      "weight_block_size": [8, 8]}}
    norm = {"model.layers.0.input_layernorm.weight": ("F32", np.ones(448, np.float32))}
    src = os.path.join(work, "fp8-block")
    plan = save(src, ds, config=config, extra=norm)
    splits = {ds[0].name: ("out", 0, 8), ds[1].name: ("in", 1, 8),
              ds[2].name: ("out", 0, 1), ds[3].name: ("in", 1, 1)}
    straddled += check_case(binary, work, "fp8-block (DeepSeek-V3 shape, --plan hf)", src, plan,
                            ds, splits, worlds, others=norm)
    w8 = plan_json(binary, src, 8, "hf")["ranks"][3]["tensors"]
    o_scale = {t["name"]: t for t in w8}["model.layers.0.self_attn.o_proj.weight_scale_inv"]
    assert o_scale["shape"] == [56, 16], o_scale  # the issue: was [56, 0]

    # FP8 per-channel and per-tensor scales.
    ch = [Fp8Channel("l.up", 96, 64, True), Fp8Channel("l.down", 64, 96, False)]
    src = os.path.join(work, "fp8-channel")
    plan = save(src, ch, plan=our_plan({"quant_method": "fp8"},
                                       [{"match": "**.up", "split": "col"},
                                        {"match": "**.down", "split": "row"}]))
    check_case(binary, work, "fp8 per-channel/per-tensor", src, plan, ch,
               {"l.up": ("out", 0, 1), "l.down": ("in", 1, 1)}, worlds)

    # GPTQ 4-bit, group 16: column split in whole int32s, row split on groups.
    gq = [Gptq("l.q_proj", 96, 128, 16, False), Gptq("l.o_proj", 128, 96, 16, False)]
    gptq = {"quant_method": "gptq", "bits": 4, "group_size": 16, "desc_act": False}
    src = os.path.join(work, "gptq")
    plan = save(src, gq, plan=our_plan(gptq, [
        {"match": "**.q_proj", "split": "col", "unit": 8},
        {"match": "**.o_proj", "split": "row", "unit": 16}]))
    check_case(binary, work, "gptq", src, plan, gq,
               {"l.q_proj": ("out", 0, 8), "l.o_proj": ("in", 1, 16)}, worlds)
    bad = save(src, gq, plan=our_plan(gptq, [{"match": "**.o_proj", "split": "row", "unit": 8}]))
    expect_refusal(binary, work, "gptq row split off group bounds", src, bad, 4, "l.o_proj.qzeros",
                   ["rules[0]", "groups", "[0, 24)", "24 is not a multiple of 16"])

    # GPTQ with desc_act: g_idx permuted, scales and qzeros stay whole.
    ga = [Gptq("l.o_proj", 128, 96, 16, True)]
    src = os.path.join(work, "gptq-act")
    plan = save(src, ga, plan=our_plan(dict(gptq, desc_act=True),
                                       [{"match": "**.o_proj", "split": "row", "unit": 8}]))
    check_case(binary, work, "gptq desc_act", src, plan, ga, {"l.o_proj": ("in", 1, 8)}, worlds)

    # AWQ 4-bit, group 16.
    aw = [Awq("l.q_proj", 96, 128, 16), Awq("l.o_proj", 128, 96, 16)]
    awq = {"quant_method": "awq", "bits": 4, "group_size": 16}
    src = os.path.join(work, "awq")
    plan = save(src, aw, plan=our_plan(awq, [
        {"match": "**.q_proj", "split": "col", "unit": 8},
        {"match": "**.o_proj", "split": "row", "unit": 16}]))
    check_case(binary, work, "awq", src, plan, aw,
               {"l.q_proj": ("out", 0, 8), "l.o_proj": ("in", 1, 16)}, worlds)
    bad = save(src, aw, plan=our_plan(awq, [{"match": "**.q_proj", "split": "col"}]))
    expect_refusal(binary, work, "awq packed column split off an int32", src, bad, 8,
                   "l.q_proj.qweight", ["packed elements", "[0, 12)", "12 is not a multiple of 8"])

    # gpt-oss-shaped MXFP4 expert block at 1/10 (H = 2880 -> 288, 90 -> 9
    # blocks of 32), 8 experts: expert, column and row splits.
    mx = [Mxfp4("model.layers.0.mlp.experts.gate_up_proj", 8, 576, 288),
          Mxfp4("model.layers.0.mlp.experts.down_proj", 8, 288, 288)]
    src = os.path.join(work, "mxfp4")
    mxq = {"quant_method": "mxfp4"}
    for kind, rules, split in [
            ("expert", [{"match": "**.experts.*", "split": "col", "dim": 0}],
             {m.name: ("lead", 0, 1) for m in mx}),
            ("col/row", [{"match": "**.experts.gate_up_proj", "split": "col", "unit": 2},
                         {"match": "**.experts.down_proj", "split": "row", "unit": 32}],
             {mx[0].name: ("out", 1, 2), mx[1].name: ("in", 2, 32)})]:
        plan = save(src, mx, plan=our_plan(mxq, rules))
        check_case(binary, work, f"mxfp4 {kind}", src, plan, mx, split, worlds)
    gpt_oss = {"base_model_tp_plan": {
        "layers.*.mlp.experts": "gather",
        "layers.*.mlp.experts.gate_up_proj": "grouped_gemm",
        "layers.*.mlp.experts.down_proj": "grouped_gemm"},
        "num_local_experts": 8, "quantization_config": {
            "quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn"]}}
    plan = save(src, mx, config=gpt_oss)
    check_case(binary, work, "mxfp4 grouped_gemm (--plan hf)", src, plan, mx,
               {m.name: ("lead", 0, 1) for m in mx}, (1, 2, 4, 8))
    bad = save(src, mx, plan=our_plan(mxq, [
        {"match": "**.experts.down_proj", "split": "row", "unit": 16}]))
    expect_refusal(binary, work, "mxfp4 row split inside a 32-value block", src, bad, 2,
                   "model.layers.0.mlp.experts.down_proj_blocks",
                   ["packed elements", "144 is not a multiple of 32"])

    assert straddled > 0, "no case straddled a block"
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (AssertionError, subprocess.CalledProcessError, KeyError) as e:
        if isinstance(e, subprocess.CalledProcessError):
            print(e.stderr)
        print(f"MISMATCH: {e!r}")
        sys.exit(1)
