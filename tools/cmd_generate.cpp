// `shardload generate OUT`: writes a Llama-like synthetic checkpoint (and its
// config.json) with the project's writer, for demos, tests and benchmarks.
// Tensor bytes are a pure function of (seed, tensor name, byte offset), so
// any reader can recompute and verify them.
#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <iterator>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "commands.h"
#include "shardload/writer.h"

namespace shardload::cli {

const CommandSpec kGenerateSpec = {
    "generate",
    "OUT [--size BYTES] [--max-shard-size BYTES] [--seed N] [--json]",
    "Write a Llama-like synthetic checkpoint (BF16, sharded, with config.json) to OUT.",
    {"OUT"},
    {{"--size", "BYTES", "total tensor bytes, at most (within one layer; default 1GB)"},
     {"--max-shard-size", "BYTES", "largest shard (default: size / 4, so 4 shards)"},
     {"--seed", "N", "seed of the tensor contents (default 0)"},
     {"--json", "", "print a JSON summary"}},
};

namespace {

struct ModelShape {
  std::uint64_t hidden, intermediate, heads, kv_heads, head_dim, vocab, layers;
};

// Bytes of one decoder layer and of everything else (embeddings, norms).
std::uint64_t LayerBytes(const ModelShape& m) {
  const std::uint64_t kv = m.kv_heads * m.head_dim;
  return 2 * (2 * m.hidden * m.hidden + 2 * kv * m.hidden + 3 * m.hidden * m.intermediate +
              2 * m.hidden);
}
std::uint64_t FixedBytes(const ModelShape& m) { return 2 * (2 * m.vocab * m.hidden + m.hidden); }

// Dimensions by size: Llama-3-8B's from 4 GB, TinyLlama's from 1 GB, a small
// model from 64 MB, else a toy one; a class is taken only when its embeddings
// and one layer fit the size. The layer count then fills it: the tensor
// bytes are at most SIZE and within one layer of it (docs/cli.md), except
// below the toy model with one layer (5.6 MB), which is written whole.
ModelShape ShapeForSize(std::uint64_t size) {
  const ModelShape classes[] = {{4096, 14336, 32, 8, 128, 32000, 0},
                                {2048, 5632, 16, 4, 128, 32000, 0},
                                {1024, 2816, 16, 4, 64, 16000, 0},
                                {256, 688, 8, 2, 32, 4096, 0}};
  const std::uint64_t from[] = {4'000'000'000ULL, 1'000'000'000ULL, 64'000'000ULL, 0};
  std::size_t pick = 0;
  while (pick + 1 < std::size(classes) &&
         (size < from[pick] || FixedBytes(classes[pick]) + LayerBytes(classes[pick]) > size)) {
    ++pick;
  }
  ModelShape m = classes[pick];
  const std::uint64_t fixed = FixedBytes(m), per_layer = LayerBytes(m);
  m.layers = size >= fixed + per_layer ? (size - fixed) / per_layer : 1;
  return m;
}

std::uint64_t SplitMix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

std::uint64_t NameKey(std::uint64_t seed, const std::string& name) {
  std::uint64_t h = 1469598103934665603ULL ^ seed;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ULL;
  return h;
}

// BF16 value of element i: a finite number with |v| in [2^-15, 2).
std::uint16_t Bf16At(std::uint64_t key, std::uint64_t i) {
  std::uint64_t r = SplitMix(key + i);
  auto exponent = static_cast<std::uint16_t>(112 + (r >> 8) % 16);
  return static_cast<std::uint16_t>((r & 0x807F) | (exponent << 7));
}

TensorFiller Bf16Filler(std::uint64_t key) {
  return [key](std::uint64_t offset, std::span<std::byte> out) {
    for (std::size_t k = 0; k < out.size(); ++k) {
      std::uint64_t byte = offset + k;
      std::uint16_t v = Bf16At(key, byte / 2);
      out[k] = static_cast<std::byte>(byte % 2 == 0 ? v & 0xFF : v >> 8);
    }
  };
}

void AddTensor(std::vector<TensorData>& out, std::uint64_t seed, std::string name,
               std::vector<std::uint64_t> shape) {
  std::uint64_t key = NameKey(seed, name);
  out.push_back(TensorData{std::move(name), DType::kBF16, std::move(shape), {},
                           Bf16Filler(key)});
}

std::vector<TensorData> LlamaTensors(const ModelShape& m, std::uint64_t seed) {
  std::vector<TensorData> t;
  std::uint64_t kv = m.kv_heads * m.head_dim;
  AddTensor(t, seed, "model.embed_tokens.weight", {m.vocab, m.hidden});
  for (std::uint64_t l = 0; l < m.layers; ++l) {
    std::string p = fmt::format("model.layers.{}.", l);
    AddTensor(t, seed, p + "input_layernorm.weight", {m.hidden});
    AddTensor(t, seed, p + "self_attn.q_proj.weight", {m.heads * m.head_dim, m.hidden});
    AddTensor(t, seed, p + "self_attn.k_proj.weight", {kv, m.hidden});
    AddTensor(t, seed, p + "self_attn.v_proj.weight", {kv, m.hidden});
    AddTensor(t, seed, p + "self_attn.o_proj.weight", {m.hidden, m.heads * m.head_dim});
    AddTensor(t, seed, p + "post_attention_layernorm.weight", {m.hidden});
    AddTensor(t, seed, p + "mlp.gate_proj.weight", {m.intermediate, m.hidden});
    AddTensor(t, seed, p + "mlp.up_proj.weight", {m.intermediate, m.hidden});
    AddTensor(t, seed, p + "mlp.down_proj.weight", {m.hidden, m.intermediate});
  }
  AddTensor(t, seed, "model.norm.weight", {m.hidden});
  AddTensor(t, seed, "lm_head.weight", {m.vocab, m.hidden});
  return t;
}

std::string ConfigJson(const ModelShape& m) {
  return fmt::format(R"({{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": {},
  "intermediate_size": {},
  "num_attention_heads": {},
  "num_key_value_heads": {},
  "head_dim": {},
  "num_hidden_layers": {},
  "vocab_size": {},
  "torch_dtype": "bfloat16",
  "base_model_tp_plan": {{
    "layers.*.self_attn.q_proj": "colwise",
    "layers.*.self_attn.k_proj": "colwise",
    "layers.*.self_attn.v_proj": "colwise",
    "layers.*.self_attn.o_proj": "rowwise",
    "layers.*.mlp.gate_proj": "colwise",
    "layers.*.mlp.up_proj": "colwise",
    "layers.*.mlp.down_proj": "rowwise"
  }}
}}
)",
                     m.hidden, m.intermediate, m.heads, m.kv_heads, m.head_dim, m.layers,
                     m.vocab);
}

}  // namespace

int RunGenerate(int argc, char** argv) {
  int exit_code = kExitOk;
  auto args = ParseArgs(kGenerateSpec, argc, argv, &exit_code);
  if (!args) return exit_code;
  auto size = ParseBytes(args->Get("--size").value_or("1GB"));
  if (!size || *size == 0) return UsageError(kGenerateSpec, "--size needs a positive byte count");
  auto seed = ParseUint(args->Get("--seed").value_or("0"));
  if (!seed) return UsageError(kGenerateSpec, "--seed needs a non-negative integer");
  std::uint64_t default_shard = *size / 4 + 1;
  auto max_shard = ParseBytes(args->Get("--max-shard-size").value_or(std::to_string(default_shard)));
  if (!max_shard || *max_shard == 0) {
    return UsageError(kGenerateSpec, "--max-shard-size needs a positive byte count");
  }
  const std::string out = args->Positional(0);
  ModelShape shape = ShapeForSize(*size);
  std::vector<TensorData> tensors = LlamaTensors(shape, *seed);
  CheckpointWriteOptions options;
  options.max_shard_size = *max_shard;
  options.shard_metadata = Metadata{{"format", "pt"}};
  if (Status s = WriteCheckpoint(out, tensors, options); !s) {
    return ReportError(s.error(), args->Has("--json"));
  }
  if (!(std::ofstream(out + "/config.json") << ConfigJson(shape))) {
    return ReportError(MakeError(ErrorCode::kIoError, out + "/config.json", "",
                                 "cannot write config.json"),
                       args->Has("--json"));
  }
  std::uint64_t bytes = 0;
  for (const TensorData& t : tensors) {
    std::uint64_t n = 2;
    for (std::uint64_t d : t.shape) n *= d;
    bytes += n;
  }
  if (args->Has("--json")) {
    fmt::print("{{\"path\":{},\"tensors\":{},\"bytes\":{},\"layers\":{}}}\n", JsonString(out),
               tensors.size(), bytes, shape.layers);
  } else {
    fmt::print("wrote {}: {} tensors, {} layers, {} (seed {})\n", out, tensors.size(),
               shape.layers, HumanBytes(bytes), *seed);
  }
  return kExitOk;
}

}  // namespace shardload::cli
