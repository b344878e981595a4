"""Tensor-parallel loading into an existing model with shardload.torch.load_into.

    torchrun --nproc_per_node 2 --master_addr 127.0.0.1 --master_port 29500 \
        examples/torchrun_load_into.py [DIR]

Rank 0 writes a small Llama-style MLP checkpoint (RMSNorm, gate/up/down
projections, two layers) with a config.json whose base_model_tp_plan splits
gate/up by rows (colwise) and down by columns (rowwise). Every rank then builds
its own shard of the model (local shapes), reads its slices straight into the
parameters with load_into(..., rank, world, plan="hf") (no second copy), and
runs a forward pass: the partial outputs, summed over ranks (all_reduce), must
equal the full model's output computed from the whole checkpoint. Runs on CPU
(gloo). Exit status 0 when every rank agrees; a rank that never comes fails the
others after 60 s (the process group's timeout). Give torchrun the loopback
address (above): with --standalone it hands the ranks the machine's hostname,
and where that does not resolve (a minimal /etc/hosts) the rendezvous waits
forever."""
import datetime
import json
import os
import struct
import sys
import tempfile

import torch
import torch.distributed as dist

import shardload
import shardload.torch as st

HIDDEN, INTERMEDIATE, LAYERS = 32, 64, 2


class MLP(torch.nn.Module):
    """One layer: x + down(silu(gate(norm(x))) * up(norm(x))); with WORLD > 1,
    this rank's share of the intermediate features (its partial output)."""

    def __init__(self, world=1):
        super().__init__()
        local = INTERMEDIATE // world
        self.norm = torch.nn.Parameter(torch.ones(HIDDEN))  # replicated
        self.gate_proj = torch.nn.Linear(HIDDEN, local, bias=False)
        self.up_proj = torch.nn.Linear(HIDDEN, local, bias=False)
        self.down_proj = torch.nn.Linear(local, HIDDEN, bias=False)

    def partial(self, x):
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.norm
        return self.down_proj(torch.nn.functional.silu(self.gate_proj(h)) * self.up_proj(h))


class Model(torch.nn.Module):
    def __init__(self, world=1):
        super().__init__()
        self.layers = torch.nn.ModuleList(MLP(world) for _ in range(LAYERS))

    def forward(self, x, reduce=lambda y: y):
        for layer in self.layers:
            x = x + reduce(layer.partial(x))
        return x


def state_names(model):
    """Model keys -> checkpoint names, Hugging Face style: "layers.0.norm" ->
    "model.layers.0.post_attention_layernorm.weight", "layers.0.gate_proj.weight"
    -> "model.layers.0.mlp.gate_proj.weight"."""
    def name(key):
        layer, rest = key.split(".")[1], key.split(".", 2)[2]
        if rest == "norm":
            return f"model.layers.{layer}.post_attention_layernorm.weight"
        return f"model.layers.{layer}.mlp.{rest}"
    return {key: name(key) for key in model.state_dict()}


def write_checkpoint(directory, model):
    """model.safetensors (F32) and config.json, written by hand (json + struct)."""
    names = state_names(model)
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for key, tensor in sorted(model.state_dict().items(), key=lambda kv: names[kv[0]]):
        data = tensor.detach().contiguous().numpy().tobytes()
        header[names[key]] = {"dtype": "F32", "shape": list(tensor.shape),
                              "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(directory, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    config = {"model_type": "llama", "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE,
              "num_hidden_layers": LAYERS,
              "base_model_tp_plan": {"layers.*.mlp.gate_proj": "colwise",
                                     "layers.*.mlp.up_proj": "colwise",
                                     "layers.*.mlp.down_proj": "rowwise"}}
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)


def main():
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    directory = [sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="shardload-")]
    dist.broadcast_object_list(directory, src=0)  # every rank uses rank 0's directory
    directory = directory[0]
    if rank == 0:
        torch.manual_seed(0)
        write_checkpoint(directory, Model())
    dist.barrier()

    local = Model(world)
    pointers = {k: v.data_ptr() for k, v in local.state_dict().items()}
    names = state_names(local)
    to_key = {name: key for key, name in names.items()}
    result = st.load_into(local, directory, rank="env", world="env", plan="hf",
                          key_map=lambda name: to_key.get(name))
    assert result == ([], []), result
    assert all(v.data_ptr() == pointers[k] for k, v in local.state_dict().items())

    full = Model()
    full_state = st.load_file(directory)
    full.load_state_dict({key: full_state[name] for key, name in names.items()})

    torch.manual_seed(1)
    x = torch.randn(4, HIDDEN)

    def all_reduce(y):
        dist.all_reduce(y)
        return y

    with torch.no_grad():
        got = local(x, reduce=all_reduce)
        want = full(x)
    ok = torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    print(f"rank {rank} of {world}: loaded "
          f"{sum(v.numel() for v in local.state_dict().values())} of "
          f"{sum(v.numel() for v in full.state_dict().values())} parameters into the "
          f"existing model; forward pass {'matches' if ok else 'DIFFERS FROM'} the full model",
          flush=True)
    dist.barrier()
    dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
