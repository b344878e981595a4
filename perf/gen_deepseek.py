#!/usr/bin/env python3
"""Writes a DeepSeek-V3-shaped sharded safetensors checkpoint for planning and
loading at scale: 90,427 tensors in 163 shards (61 layers: 3 dense, 58 MoE
with 256 routed experts and one shared expert; no MTP layer), F8_E4M3
weights with F32 `weight_scale_inv` companions of shape
[ceil(N/128), ceil(K/128)], BF16 norms/embeddings, and a config.json whose
base_model_tp_plan splits every MLP (dense, shared and routed experts) by
columns (gate/up) and rows (down), as vLLM does without expert parallelism;
attention (MLA) is replicated.

Files are sparse: each shard is its header followed by ftruncate to its full
size; only the tensors of --real-layer (default 3, an MoE layer) get real
random bytes (seeded), the rest read as zeros. --divide D divides every
dimension (and the 128 quantization block) by D, keeping the tensor and
shard counts, for a small copy in the tests (D = 64).

Full size: ~673 GB apparent, ~11.6 GB written for one MoE layer
(--real-layer -1 writes none). Single-threaded, role: perf/ and tests/ data.

usage: gen_deepseek.py OUT [--divide D] [--real-layer L] [--seed N]
"""
import argparse
import json
import math
import os
import sys

LAYERS = 61
DENSE_LAYERS = 3
EXPERTS = 256
SHARDS = 163


def dims(divide):
    d = lambda x: max(1, x // divide)
    return {
        "hidden": d(7168), "inter": d(18432), "moe_inter": d(2048), "vocab": d(129280),
        "q_lora": d(1536), "kv_lora": d(512), "rope": d(64), "nope": d(128), "v": d(128),
        "heads": 128 if divide == 1 else max(1, 128 // divide), "block": max(1, 128 // divide),
    }


def tensors(m):
    """(name, dtype, shape) in file order."""
    out = []
    block = m["block"]

    def fp8(name, n, k):
        out.append((name + ".weight", "F8_E4M3", [n, k]))
        out.append((name + ".weight_scale_inv", "F32",
                    [math.ceil(n / block), math.ceil(k / block)]))

    def mlp(prefix, inter):
        fp8(prefix + ".gate_proj", inter, m["hidden"])
        fp8(prefix + ".up_proj", inter, m["hidden"])
        fp8(prefix + ".down_proj", m["hidden"], inter)

    h, heads = m["hidden"], m["heads"]
    out.append(("model.embed_tokens.weight", "BF16", [m["vocab"], h]))
    for layer in range(LAYERS):
        p = f"model.layers.{layer}"
        out.append((p + ".input_layernorm.weight", "BF16", [h]))
        out.append((p + ".post_attention_layernorm.weight", "BF16", [h]))
        a = p + ".self_attn"
        fp8(a + ".q_a_proj", m["q_lora"], h)
        out.append((a + ".q_a_layernorm.weight", "BF16", [m["q_lora"]]))
        fp8(a + ".q_b_proj", heads * (m["nope"] + m["rope"]), m["q_lora"])
        fp8(a + ".kv_a_proj_with_mqa", m["kv_lora"] + m["rope"], h)
        out.append((a + ".kv_a_layernorm.weight", "BF16", [m["kv_lora"]]))
        fp8(a + ".kv_b_proj", heads * (m["nope"] + m["v"]), m["kv_lora"])
        fp8(a + ".o_proj", h, heads * m["v"])
        if layer < DENSE_LAYERS:
            mlp(p + ".mlp", m["inter"])
            continue
        out.append((p + ".mlp.gate.weight", "BF16", [EXPERTS, h]))
        out.append((p + ".mlp.gate.e_score_correction_bias", "F32", [EXPERTS]))
        mlp(p + ".mlp.shared_experts", m["moe_inter"])
        for e in range(EXPERTS):
            mlp(f"{p}.mlp.experts.{e}", m["moe_inter"])
    out.append(("model.norm.weight", "BF16", [h]))
    out.append(("lm_head.weight", "BF16", [m["vocab"], h]))
    return out


BITS = {"F8_E4M3": 8, "BF16": 16, "F32": 32}


def nbytes(dtype, shape):
    n = BITS[dtype] // 8
    for x in shape:
        n *= x
    return n


def config(m):
    mlp = {"gate_proj": "local_colwise", "up_proj": "local_colwise", "down_proj": "local_rowwise"}
    plan = {}
    for part in ("mlp.experts.*", "mlp.shared_experts", "mlp"):
        for proj, style in mlp.items():
            plan[f"layers.*.{part}.{proj}"] = style
    plan["layers.*.mlp.experts"] = "local"
    plan["layers.*.mlp.shared_experts"] = "local"
    plan["layers.*.mlp"] = "gather"
    return {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "hidden_size": m["hidden"], "intermediate_size": m["inter"],
        "moe_intermediate_size": m["moe_inter"], "num_hidden_layers": LAYERS,
        "first_k_dense_replace": DENSE_LAYERS, "n_routed_experts": EXPERTS,
        "n_shared_experts": 1, "num_attention_heads": m["heads"],
        "num_key_value_heads": m["heads"], "q_lora_rank": m["q_lora"],
        "kv_lora_rank": m["kv_lora"], "qk_rope_head_dim": m["rope"],
        "qk_nope_head_dim": m["nope"], "v_head_dim": m["v"], "vocab_size": m["vocab"],
        "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                                "weight_block_size": [m["block"], m["block"]]},
        "base_model_tp_plan": plan,
    }


def shard_of(items, shards):
    """Cuts ITEMS (in order) into SHARDS runs of about equal bytes."""
    total = sum(nbytes(d, s) for _, d, s in items)
    out, acc = [], 0
    for _, dtype, shape in items:
        out.append(min(shards - 1, acc * shards // max(total, 1)))
        acc += nbytes(dtype, shape)
    return out


def write_shard(path, entries, real_prefix, rng):
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in entries:
        size = nbytes(dtype, shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        base = 8 + len(text)
        for name, dtype, shape in entries:
            if real_prefix is None or not name.startswith(real_prefix):
                continue
            start = header[name]["data_offsets"][0]
            f.seek(base + start)
            size = nbytes(dtype, shape)
            step = 64 << 20
            for done in range(0, size, step):
                f.write(rng.bytes(min(step, size - done)))
        f.truncate(base + offset)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--divide", type=int, default=1)
    ap.add_argument("--real-layer", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import numpy as np  # only for fast seeded random bytes
    rng = np.random.default_rng(args.seed)
    m = dims(args.divide)
    items = tensors(m)
    owner = shard_of(items, SHARDS)
    os.makedirs(args.out, exist_ok=True)
    names = [f"model-{i + 1:05d}-of-{SHARDS:05d}.safetensors" for i in range(SHARDS)]
    per_shard = [[] for _ in range(SHARDS)]
    for item, s in zip(items, owner):
        per_shard[s].append(item)
    real = None if args.real_layer < 0 else f"model.layers.{args.real_layer}."
    for s in range(SHARDS):
        write_shard(os.path.join(args.out, names[s]), per_shard[s], real, rng)
    total = sum(nbytes(d, sh) for _, d, sh in items)
    index = {"metadata": {"total_size": total},
             "weight_map": {name: names[s] for (name, _, _), s in zip(items, owner)}}
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config(m), f, indent=2)
    print(f"wrote {args.out}: {len(items)} tensors, {SHARDS} shards, {total} bytes "
          f"(real bytes: {real or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
