// Tensor selection: dot-component globs, exact names, and their errors.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "index/checkpoint_access.h"
#include "plan/selection.h"
#include "shardload/loader.h"

namespace shardload {
namespace {

TEST_CASE("GlobMatch: * is one component, ** any number") {
  struct Case {
    const char* pattern;
    const char* name;
    bool match;
  };
  const Case cases[] = {
      {"a.b.c", "a.b.c", true},
      {"a.b.c", "a.b.d", false},
      {"a.*.c", "a.b.c", true},
      {"a.*.c", "a.b.x.c", false},
      {"a.*.c", "a.c", false},
      {"a.**.c", "a.c", true},  // zero components
      {"a.**.c", "a.b.c", true},
      {"a.**.c", "a.b.x.y.c", true},
      {"a.**.c", "a.b.x.y.d", false},
      {"**", "anything.at.all", true},
      {"**", "x", true},
      {"**.weight", "weight", true},
      {"**.weight", "model.layers.0.weight", true},
      {"model.**", "model", true},
      {"model.**", "model.a.b", true},
      {"model.**", "modelx", false},
      {"*", "a", true},
      {"*", "a.b", false},
      {"*.*", "a.b", true},
      {"layers.1*.w", "layers.10.w", true},
      {"layers.1*.w", "layers.1.w", true},
      {"layers.1*.w", "layers.2.w", false},
      {"layers.*0.w", "layers.10.w", true},
      {"**.*.**.b", "x.y.b", true},
      {"**.**", "a", true},
      {"a.**.b.**.c", "a.b.c", true},
      {"a.**.b.**.c", "a.x.c", false},
      {"model.embed", "model.embed_tokens", false},
  };
  for (const Case& c : cases) {
    CAPTURE(c.pattern);
    CAPTURE(c.name);
    CHECK(GlobMatch(c.pattern, c.name) == c.match);
  }
}

Checkpoint NamesOnly(std::vector<std::string> names) {
  std::vector<TensorInfo> tensors;
  for (std::string& n : names) {
    TensorInfo t;
    t.name = std::move(n);
    tensors.push_back(std::move(t));
  }
  ShardInfo shard;
  shard.name = shard.path = "x.safetensors";
  return internal::CheckpointAccess::Make("x.safetensors", "", {shard}, std::move(tensors), {}, {});
}

std::vector<std::string> Names(const Result<std::vector<const TensorInfo*>>& r) {
  std::vector<std::string> out;
  for (const TensorInfo* t : *r) out.push_back(t->name);
  return out;
}

TEST_CASE("Select: all, names, globs, union sorted by name") {
  Checkpoint ckpt = NamesOnly({"model.layers.1.mlp.weight", "lm_head.weight",
                               "model.layers.0.mlp.weight", "model.layers.0.attn.q.weight",
                               "model.embed.weight", "model.norm.weight"});
  CHECK(Select(ckpt, {}).value().size() == 6);

  Selection s;
  s.names = {"lm_head.weight"};
  s.globs = {"model.layers.*.mlp.weight", "model.layers.0.**"};
  auto r = Select(ckpt, s);
  REQUIRE(r);
  CHECK(Names(r) == std::vector<std::string>{"lm_head.weight", "model.layers.0.attn.q.weight",
                                             "model.layers.0.mlp.weight",
                                             "model.layers.1.mlp.weight"});

  Selection twice;
  twice.names = {"model.norm.weight", "model.norm.weight"};
  CHECK(Names(Select(ckpt, twice)) == std::vector<std::string>{"model.norm.weight"});
}

TEST_CASE("Select: unknown names and empty globs are errors") {
  Checkpoint ckpt = NamesOnly({"a.weight", "b.weight"});
  Selection unknown;
  unknown.names = {"a.weight", "c.weight"};
  auto r = Select(ckpt, unknown);
  REQUIRE(!r);
  CHECK(r.error().code == ErrorCode::kTensorNotFound);
  CHECK(r.error().tensor == "c.weight");

  Selection empty_glob;
  empty_glob.globs = {"*.weight", "x.**"};
  auto g = Select(ckpt, empty_glob);
  REQUIRE(!g);
  CHECK(g.error().code == ErrorCode::kTensorNotFound);
  CHECK(g.error().detail.find("x.**") != std::string::npos);

  Selection bad_glob;
  bad_glob.globs = {"a..weight"};
  auto b = Select(ckpt, bad_glob);
  REQUIRE(!b);
  CHECK(b.error().code == ErrorCode::kInvalidArgument);
  CHECK(b.error().detail.find("a..weight") != std::string::npos);
}

TEST_CASE("Select: re: globs are whole-name regexes, as in plans") {
  Checkpoint ckpt = NamesOnly({"a.weight", "b.weight", "b.bias"});
  Selection s;
  s.globs = {"re:b\\.(weight|bias)"};
  CHECK(Names(Select(ckpt, s)) == std::vector<std::string>{"b.bias", "b.weight"});
}

}  // namespace
}  // namespace shardload
