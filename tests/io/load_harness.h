// Test harness for the load engine: random raw safetensors checkpoints
// (written byte by byte here, described by hand, independent of the writer
// and resolver), an independent pread oracle, and checks shared by the
// io_uring and pread test executables.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "shardload/checkpoint.h"
#include "shardload/loader.h"
#include "support/test_util.h"

namespace shardload::test {

struct TensorSpec {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<std::uint64_t> shape;
};

// Bytes of a tensor of this dtype and shape.
std::uint64_t ByteSize(DType dtype, const std::vector<std::uint64_t>& shape);

// Writes shards[k] as `dir`/shard-k.safetensors (tensors in random file order,
// random bytes) and returns the description, built with Checkpoint's public
// constructor.
Checkpoint WriteShards(const std::string& dir, const std::vector<std::vector<TensorSpec>>& shards,
                       std::mt19937_64& rng);

// A mix: every dtype, empty and scalar tensors, odd sizes, tensors larger than
// `big` bytes, under names like model.layers.N.{attn,mlp}.{weight,bias}.
std::vector<TensorSpec> RandomTensors(std::mt19937_64& rng, int count, int first_layer,
                                      std::uint64_t big);
// `count` tensors of 1..16 bytes named tiny.N.w.
std::vector<TensorSpec> TinyTensors(int count);

// Plain pread of one tensor's bytes (the oracle).
std::string OracleRead(const Checkpoint& checkpoint, const TensorInfo& tensor);

// The checkpoint used by the matrix tests (built once per process):
// 3 shards of mixed tensors plus one of 2000 tiny ones.
struct Fixture {
  Fixture();
  TempDir dir;
  Checkpoint checkpoint;
  std::map<std::string, std::string> oracle;  // name -> bytes
};
const Fixture& SharedFixture();

// Loads SharedFixture() with `backend` for threads {1,2,8} x queue depth
// {1,64} x {all, a selection}, into library memory or caller buffers, and
// checks every byte against the oracle (and, for caller buffers, that nothing
// outside them was written).
void CheckLoadMatrix(Backend backend, bool direct, bool caller_memory);

// Error paths with `backend`: missing shard, unreadable shard, truncated
// shard, first error reported, no descriptor leaks.
void CheckErrorPaths(Backend backend, bool direct);

// Reload into the same memory picks up rewritten bytes.
void CheckReload(Backend backend, bool direct);

// Open file descriptors of this process.
int OpenFdCount();

}  // namespace shardload::test
