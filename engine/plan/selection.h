// Tensor selection: exact names and globs over dot-separated names. The
// public entry point is shardload::Select (loader.h, defined in the loader
// stage over SelectTensors); the matcher is here so that it can be tested
// alone.
// Thread-safe: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "shardload/checkpoint.h"
#include "shardload/error.h"

namespace shardload {

// Matches `name` against `pattern`, both split at '.'. A pattern component
// `**` matches any number of name components (zero included); any other
// component matches exactly one, where `*` inside it matches any run of
// characters ("layers.*.mlp.*" or "layers.1*.weight"). Everything else is
// literal. This is the glob of tensor-parallel plan rules (tp::Pattern), so
// `re:` and `{expert}` work here too. A malformed pattern matches nothing.
bool GlobMatch(std::string_view pattern, std::string_view name);

// The tensors that `names` (exact) and `globs` pick, sorted by name; both
// empty: all of them. An unknown name or a glob matching nothing is
// kTensorNotFound, a malformed glob kInvalidArgument.
Result<std::vector<const TensorInfo*>> SelectTensors(const Checkpoint& checkpoint,
                                                     const std::vector<std::string>& names,
                                                     const std::vector<std::string>& globs);

}  // namespace shardload
