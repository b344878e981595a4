#!/usr/bin/env bash
# The main job end to end: install what is missing, build, generate a demo
# Llama-like sharded checkpoint (about 1 GB) with shardload's own writer and
# run shardload on it. DEMO_DIR overrides where the checkpoint goes.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh
demo=${DEMO_DIR:-build/demo-checkpoint}
if [ ! -f "$demo/model.safetensors.index.json" ]; then
  build/tools/shardload generate "$demo" --size 1GB
fi
build/tools/shardload inspect "$demo"
build/tools/shardload load "$demo" --repeat 3
build/tools/shardload plan "$demo" --world 4 --plan hf --rank 0
