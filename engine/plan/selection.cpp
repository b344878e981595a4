// Tensor selection (SelectTensors) over the plan patterns of engine/tp.
// Thread-safe: pure functions over an immutable Checkpoint.
#include "plan/selection.h"

#include <algorithm>
#include <string>
#include <vector>

#include "tp/pattern.h"
#include "util/clip_name.h"

namespace shardload {

bool GlobMatch(std::string_view pattern, std::string_view name) {
  Result<tp::Pattern> p = tp::Pattern::Compile(pattern);
  if (!p) return false;
  Result<bool> match = p->Match(name, nullptr);
  return match.has_value() && *match;
}

Result<std::vector<const TensorInfo*>> SelectTensors(const Checkpoint& checkpoint,
                                                     const std::vector<std::string>& names,
                                                     const std::vector<std::string>& globs) {
  const std::vector<TensorInfo>& all = checkpoint.tensors();
  std::vector<const TensorInfo*> out;
  if (names.empty() && globs.empty()) {
    out.reserve(all.size());
    for (const TensorInfo& t : all) out.push_back(&t);
    return out;
  }
  std::vector<char> picked(all.size(), 0);
  for (const std::string& name : names) {
    const TensorInfo* t = checkpoint.Find(name);
    if (t == nullptr) {
      return MakeError(ErrorCode::kTensorNotFound, checkpoint.path(), name,
                       "no tensor of this name in the checkpoint");
    }
    picked[static_cast<std::size_t>(t - all.data())] = 1;
  }
  for (const std::string& glob : globs) {
    Result<tp::Pattern> pattern = tp::Pattern::Compile(glob);
    if (!pattern) {
      return MakeError(ErrorCode::kInvalidArgument, checkpoint.path(), "",
                       "bad glob `" + ClipName(glob) + "`: " + pattern.error().detail);
    }
    bool any = false;
    for (std::size_t i = 0; i < all.size(); ++i) {
      Result<bool> match = pattern->Match(all[i].name, nullptr);
      if (!match) return std::move(match).error();
      if (*match) {
        picked[i] = 1;
        any = true;
      }
    }
    if (!any) {
      return MakeError(ErrorCode::kTensorNotFound, checkpoint.path(), "",
                       "glob `" + ClipName(glob) + "` matches no tensor");
    }
  }
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (picked[i]) out.push_back(&all[i]);
  }
  return out;
}

}  // namespace shardload
