"""One rank of the GPU run's cooperative check (perf/gpu_check.sh starts
LOCAL_WORLD_SIZE of them under a torchrun-like environment): loads its rank
of PATH (hf plan) onto cuda:0 cooperating with the node's other ranks
(staged through the node's shared staging: mode "buffered"), then alone to
host memory, and compares every tensor's bytes. Prints one JSON line:
{"rank", "ok", "mismatches", "seconds", "transfer", "how"}.

usage: gpu_coop_check.py PATH
"""
import json
import sys
import time

import torch

import shardload


def as_bytes(t):
    return t.contiguous().view(-1).view(torch.uint8)


def main():
    path = sys.argv[1]
    start = time.perf_counter()
    got = shardload.load(path, rank="env", world="env", plan="hf", device="cuda:0",
                         framework="torch", mode="buffered")
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    host = shardload.load(path, rank="env", world="env", plan="hf", framework="torch",
                          cooperate=False)
    bad = [n for n, t in got.items()
           if t.device.type != "cuda" or not torch.equal(as_bytes(t).cpu(), as_bytes(host[n]))]
    print(json.dumps({"rank": got.stats["rank"], "ok": not bad and sorted(got) == sorted(host),
                      "mismatches": bad[:10], "seconds": seconds,
                      "transfer": got.stats.get("transfer"),
                      "how": got.stats.get("cooperation", {}).get("how")}), flush=True)


if __name__ == "__main__":
    main()
